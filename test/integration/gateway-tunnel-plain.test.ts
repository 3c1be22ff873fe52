/**
 * Plain HTTP inside a CONNECT tunnel, on loopback: clients that tunnel `http://` URLs through an
 * HTTP proxy (Node's fetch with NODE_USE_ENV_PROXY — which Airlock sets in every sandbox — and
 * undici's ProxyAgent by default) send no TLS handshake after the CONNECT. The gateway must decide
 * each request inside such a tunnel like any other (scheme http), not fail the tunnel as a broken
 * handshake. Upstream: json-server (a real server nobody here wrote). Client: undici's ProxyAgent
 * with its default CONNECT tunnel — the same code Node's built-in fetch runs.
 */
import 'reflect-metadata';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fetch, Pool, ProxyAgent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../src/audit/file-sink.js';
import { DestinationPolicy } from '../../src/gateway/address.js';
import { EgressGateway, withGatewayDefaults } from '../../src/gateway/proxy.js';
import { UpstreamResolver } from '../../src/gateway/resolve.js';
import { SessionTable } from '../../src/gateway/sessions.js';
import { LeafCache } from '../../src/gateway/tls/leaf-cache.js';
import { loadOrCreateCa } from '../../src/pki/ca.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore } from '../../src/policy/store.js';
import { startJsonServer, type JsonServer } from '../helpers/upstreams.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const S = { id: 's-node', cred: 'cred-node-0123456789', address: '127.0.0.1', role: 'reader' };

let dir: string;
let forum: JsonServer;
let policy: PolicyStore;
let sessions: SessionTable;
let audit: MemoryAuditSink;
let gateway: EgressGateway;
let agent: ProxyAgent;
let base: string;
let gatewayPort: number;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-tunnel-plain-'));
  const ca = await loadOrCreateCa(path.join(dir, 'ca'));
  forum = await startJsonServer('127.0.0.1');
  base = `http://forum.test:${forum.port}`;
  const policyDir = path.join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(
    path.join(policyDir, 'policy.csv'),
    `p, reader, forum.test:${forum.port}, /*, GET, allow\np, reader, forum.test:${forum.port}, /comments, POST, deny\n`,
  );
  policy = await PolicyStore.open(policyDir, { watch: false });
  sessions = new SessionTable();
  sessions.upsert({
    id: S.id,
    role: S.role,
    address: S.address,
    credentialSha256: sha(S.cred),
    expiresAtMs: Date.now() + 3_600_000,
  });
  audit = new MemoryAuditSink();
  gateway = new EgressGateway(
    withGatewayDefaults({
      policy,
      sessions,
      audit,
      resolver: new UpstreamResolver(
        new DestinationPolicy(['127.0.0.0/8']),
        new Map([['forum.test', '127.0.0.1']]),
      ),
      intercept: { leaves: new LeafCache(ca), passthrough: [] },
    }),
  );
  const port = (await gateway.listen(0, '127.0.0.1')).port;
  gatewayPort = port;
  agent = new ProxyAgent({
    uri: `http://127.0.0.1:${port}`,
    token: 'Basic ' + Buffer.from(`${S.id}:${S.cred}`).toString('base64'),
    // proxyTunnel left at its default (true): http:// URLs go through CONNECT, as Node's fetch does.
    clientFactory: (origin, opts) => new Pool(origin, { ...opts, localAddress: S.address }),
  });
});

afterAll(async () => {
  await agent?.close();
  await gateway?.close();
  policy?.close();
  await forum?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('plain HTTP inside a CONNECT tunnel', () => {
  it('an allowed GET is forwarded and audited as http; the CONNECT is not a failed handshake', async () => {
    const from = audit.events.length;
    const res = await fetch(`${base}/posts/1`, { dispatcher: agent });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { title: string }).title).toMatch(/port 22/);
    const inner = audit.events.slice(from).find((e) => e.method === 'GET');
    expect(inner).toMatchObject({ scheme: 'http', path: '/posts/1', decision: 'allow', status: 200 });
  });

  it('each request inside is decided on its own: a denied POST is refused and json-server unchanged', async () => {
    const before = forum.db().comments.length;
    const res = await fetch(`${base}/comments`, {
      dispatcher: agent,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ postId: 1, body: 'through a tunnel' }),
    });
    expect(res.status).toBe(403);
    expect(res.headers.get('x-airlock-decision')).toBe('deny');
    expect(((await res.json()) as { error: string; url: string }).url).toBe(`${base}/comments`);
    expect(forum.db().comments.length).toBe(before);
  });

  it('a Host header naming another host than the CONNECT is refused (raw socket)', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port: gatewayPort, localAddress: S.address }, () => {
        const auth = Buffer.from(`${S.id}:${S.cred}`).toString('base64');
        sock.write(
          `CONNECT forum.test:${forum.port} HTTP/1.1\r\nHost: forum.test:${forum.port}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
        );
      });
      let buf = '';
      let sent = false;
      sock.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        if (!sent && buf.includes('\r\n\r\n')) {
          sent = true;
          buf = '';
          sock.write('GET /posts/1 HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n');
        }
      });
      sock.on('end', () => resolve(buf));
      sock.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
  });

  it('a WebSocket upgrade inside a plain tunnel is refused 400 not_supported', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port: gatewayPort, localAddress: S.address }, () => {
        const auth = Buffer.from(`${S.id}:${S.cred}`).toString('base64');
        sock.write(
          `CONNECT forum.test:${forum.port} HTTP/1.1\r\nHost: forum.test:${forum.port}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
        );
      });
      let buf = '';
      let sent = false;
      sock.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        if (!sent && buf.includes('\r\n\r\n')) {
          sent = true;
          buf = '';
          sock.write(
            `GET /ws HTTP/1.1\r\nHost: forum.test:${forum.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
              'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
          );
        }
      });
      sock.on('close', () => resolve(buf));
      sock.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('not_supported');
  });

  it('the kill switch closes the tunnel', async () => {
    sessions.revoke(S.id);
    const err = await fetch(`${base}/posts/1`, { dispatcher: agent }).then(
      (r) => r.status,
      (e: unknown) => e,
    );
    // The tunnel's socket was closed by the revocation; a new CONNECT is refused (403 for a session
    // the gateway knows was revoked, 407 once forgotten), never forwarded.
    expect(err === 403 || err === 407 || err instanceof Error, String(err)).toBe(true);
    const events = audit.events.filter((e) => e.method === 'CONNECT');
    expect(events.every((e) => e.reason !== 'tls_handshake_failed')).toBe(true);
  });
});
