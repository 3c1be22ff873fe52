import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { loadOrCreateCa, rotateCa } from '../../src/pki/ca.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'airlock-ca-'));
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
import { LeafCache } from '../../src/gateway/tls/leaf-cache.js';

function handshake(ctx: tls.SecureContext, ca: string, servername: string): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const server = tls.createServer({ SNICallback: (_n, cb) => cb(null, ctx) }, (s) => s.end());
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      const c = tls.connect({ host: '127.0.0.1', port, servername, ca }, () => {
        const peer = c.getPeerX509Certificate();
        c.destroy();
        server.close();
        if (!peer) reject(new Error('no peer certificate'));
        else resolve(peer);
      });
      c.once('error', (e) => {
        server.close();
        reject(e);
      });
    });
  });
}

describe('installation CA', () => {
  it('is ECDSA P-256, a CA, stored with a 0600 key, and reused on the next start', async () => {
    const dir = tempDir();
    const a = await loadOrCreateCa(dir);
    const cert = new X509Certificate(a.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(statSync(path.join(dir, 'ca.key')).mode & 0o777).toBe(0o600);
    const b = await loadOrCreateCa(dir);
    expect(b.certPem).toBe(a.certPem);
    expect(readFileSync(path.join(dir, 'ca.key'), 'utf8')).toBe(a.keyPem);
  });

  it('mints leaves that verify against the CA for the host name, and caches them', async () => {
    const ca = await loadOrCreateCa(tempDir());
    const leaves = new LeafCache(ca, 2);
    const ctx = await leaves.get('forum.test');
    const peer = await handshake(ctx, ca.certPem, 'forum.test');
    expect(peer.subjectAltName).toBe('DNS:forum.test');
    expect(Date.parse(peer.validTo) - Date.now()).toBeLessThanOrEqual(24 * 3600 * 1000);
    expect(await leaves.get('forum.test')).toBe(ctx);
    await leaves.get('a.test');
    await leaves.get('b.test');
    expect(leaves.size).toBe(2); // bounded LRU
    expect(leaves.minted).toBe(3);
    await expect(handshake(ctx, ca.certPem, 'other.test')).rejects.toThrow(/altnames|does not match/i);
  });

  it('rotates with an overlap: both CAs are trusted until the overlap ends', async () => {
    const dir = tempDir();
    const old = await loadOrCreateCa(dir);
    const next = await rotateCa(dir, 60_000);
    expect(next.certPem).not.toBe(old.certPem);
    expect(next.trustPem).toContain(old.certPem.trim());
    const oldLeaf = await new LeafCache(old).get('forum.test');
    await handshake(oldLeaf, next.trustPem, 'forum.test'); // still trusted
    const later = await loadOrCreateCa(dir, Date.now() + 120_000);
    expect(later.trustPem).not.toContain(old.certPem.trim());
  });
});
