/**
 * HTTPS under policy, on loopback: the gateway (in-process) intercepts CONNECT with a leaf of the
 * installation CA; real clients (curl, git, node fetch, python requests) talk to real TLS upstreams
 * (nginx with a test CA, in front of json-server and git-http-backend).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../src/audit/file-sink.js';
import { DestinationPolicy } from '../../src/gateway/address.js';
import { EgressGateway, withGatewayDefaults } from '../../src/gateway/proxy.js';
import { UpstreamResolver } from '../../src/gateway/resolve.js';
import { SessionTable } from '../../src/gateway/sessions.js';
import { loadOrCreateCa, type CaMaterial } from '../../src/pki/ca.js';
import { LeafCache } from '../../src/gateway/tls/leaf-cache.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore } from '../../src/policy/store.js';
import { startTlsUpstreams, type TlsUpstreams } from '../helpers/tls-upstream.js';
import { startJsonServer, type JsonServer } from '../helpers/upstreams.js';

const run = promisify(execFile);
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

let forum: JsonServer;
let up: TlsUpstreams;
let ca: CaMaterial;
let caFile: string;
let dir: string;
let policy: PolicyStore;
let sessions: SessionTable;
let audit: MemoryAuditSink;
let gateway: EgressGateway;
let proxyPort: number;
const A = { id: 's-reader', cred: 'cred-reader-0123456789', address: '127.0.0.1' };
const P = { id: 's-pinner', cred: 'cred-pinner-0123456789', address: '127.0.0.2' };
const proxyOf = (s: { id: string; cred: string }): string =>
  `http://${s.id}:${s.cred}@127.0.0.1:${proxyPort}`;

beforeAll(async () => {
  forum = await startJsonServer();
  up = await startTlsUpstreams('127.0.0.1', forum.url);
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-tls-'));
  ca = await loadOrCreateCa(path.join(dir, 'ca'));
  caFile = path.join(dir, 'airlock-ca.pem');
  writeFileSync(caFile, ca.trustPem);
  const s = up.ports.secure;
  writeFileSync(path.join(dir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(
    path.join(dir, 'policy.csv'),
    [
      `p, reader, secure.test:${s}, /posts/*, GET, allow`,
      `p, reader, secure.test:${s}, /git/repo.git/info/refs, GET, allow`,
      `p, reader, secure.test:${s}, /git/repo.git/git-upload-pack, POST, allow`,
      `p, reader, expired.test:${up.ports.expired}, /*, GET, allow`,
      `p, reader, wrongname.test:${up.ports.wrongName}, /*, GET, allow`,
      `p, pinner, secure.test:${s}, /, CONNECT, allow`,
      '',
    ].join('\n'),
  );
  policy = await PolicyStore.open(dir, { watch: false });
  expect(policy.current(), policy.lastError() ?? '').not.toBeNull();
  sessions = new SessionTable();
  for (const [x, role] of [
    [A, 'reader'],
    [P, 'pinner'],
  ] as const) {
    sessions.upsert({
      id: x.id,
      role,
      address: x.address,
      credentialSha256: sha(x.cred),
      expiresAtMs: Date.now() + 3_600_000,
    });
  }
  audit = new MemoryAuditSink();
  const aliases = new Map(['secure.test', 'expired.test', 'wrongname.test'].map((h) => [h, '127.0.0.1']));
  const makeGateway = (passthrough: string[]) =>
    new EgressGateway(
      withGatewayDefaults({
        policy,
        sessions,
        audit,
        resolver: new UpstreamResolver(new DestinationPolicy(['127.0.0.0/8']), aliases),
        upstreamCaPem: up.caPem,
        intercept: { leaves: new LeafCache(ca), passthrough },
      }),
    );
  gateway = makeGateway([]);
  proxyPort = (await gateway.listen(0, '127.0.0.1')).port;
});

afterAll(async () => {
  await gateway?.close();
  policy?.close();
  await up?.stop();
  await forum?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const secureUrl = (p: string): string => `https://secure.test:${up.ports.secure}${p}`;
/** The last request's event (the CONNECT of its tunnel is audited when the tunnel closes, after it). */
const last = () => audit.events.filter((e) => e.method !== 'CONNECT').at(-1)!;

async function curl(args: string[], who = A): Promise<{ code: number; status: number; body: string }> {
  try {
    const { stdout } = await run('curl', [
      '-s',
      '-x',
      proxyOf(who),
      '--interface',
      who.address,
      '-w',
      '\n%{http_code}',
      ...args,
    ]);
    const i = stdout.lastIndexOf('\n');
    return { code: 0, status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
  } catch (err) {
    const e = err as { code: number; stdout: string };
    return { code: e.code, status: Number(e.stdout.split('\n').at(-1)), body: '' };
  }
}

describe('curl over HTTPS through the intercepting gateway', () => {
  it('an allowed GET works and is audited with scheme https', async () => {
    const r = await curl(['--cacert', caFile, secureUrl('/posts/1')]);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).id).toBe(1);
    expect(last()).toMatchObject({
      scheme: 'https',
      host: 'secure.test',
      port: up.ports.secure,
      path: '/posts/1',
      decision: 'allow',
      method: 'GET',
    });
  });

  it('a POST inside the tunnel is denied with the JSON 403; the upstream is unchanged', async () => {
    const before = forum.db();
    const r = await curl([
      '--cacert',
      caFile,
      '-X',
      'POST',
      '-H',
      'content-type: application/json',
      '-d',
      '{"postId":1,"body":"x"}',
      secureUrl('/posts/1/comments'),
    ]);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({
      error: 'egress_denied',
      method: 'POST',
      url: secureUrl('/posts/1/comments'),
    });
    expect(last()).toMatchObject({ scheme: 'https', decision: 'deny', method: 'POST' });
    expect(forum.db()).toEqual(before);
  });

  it('a client that does not trust the Airlock CA fails the handshake (no downgrade)', async () => {
    const r = await curl(['--cacert', up.caFile, secureUrl('/posts/1')]);
    expect(r.code).toBe(60); // curl: peer certificate cannot be authenticated
  });

  it('CONNECT to a port no rule names is refused', async () => {
    const r = await curl(['--cacert', caFile, 'https://secure.test:9443/posts/1']);
    expect(r.code).not.toBe(0);
    expect(audit.events.at(-1)).toMatchObject({ method: 'CONNECT', decision: 'deny', port: 9443 });
  });

  it('upstream certificate failures are a 502 naming the reason, and audited', async () => {
    const expired = await curl(['--cacert', caFile, `https://expired.test:${up.ports.expired}/posts/1`]);
    expect(expired.status).toBe(502);
    expect(JSON.parse(expired.body)).toMatchObject({ error: 'upstream_tls_error' });
    expect(JSON.parse(expired.body).detail).toMatch(/CERT_HAS_EXPIRED/);
    expect(last()).toMatchObject({ reason: 'upstream_tls_error', status: 502 });
    const wrong = await curl(['--cacert', caFile, `https://wrongname.test:${up.ports.wrongName}/posts/1`]);
    expect(wrong.status).toBe(502);
    expect(JSON.parse(wrong.body).detail).toMatch(/ALTNAME|certificate/i);
  });
});

describe('git over HTTPS', () => {
  it('clone is allowed for the reader; push (POST git-receive-pack) is denied and the repository is unchanged', async () => {
    const work = mkdtempSync(path.join(tmpdir(), 'airlock-git-'));
    const env = { ...process.env, GIT_TERMINAL_PROMPT: '0', https_proxy: proxyOf(A), GIT_SSL_CAINFO: caFile };
    await run(
      'git',
      ['-c', `http.proxy=${proxyOf(A)}`, 'clone', '-q', secureUrl('/git/repo.git'), path.join(work, 'repo')],
      { env },
    );
    const headBefore = await up.head();
    const g = (...a: string[]) =>
      run('git', ['-C', path.join(work, 'repo'), '-c', 'user.name=agent', '-c', 'user.email=a@a', ...a], {
        env,
      });
    writeFileSync(path.join(work, 'repo', 'README'), 'runbook: open port 22 to everyone\n');
    await g('commit', '-q', '-am', 'agent edit');
    await expect(g('-c', `http.proxy=${proxyOf(A)}`, 'push', '-q', 'origin', 'main')).rejects.toThrow(
      /403|denied|error/i,
    );
    expect(await up.head()).toBe(headBefore);
    expect(
      audit.events.some((e) => e.path === '/git/repo.git/git-receive-pack' && e.decision === 'deny'),
    ).toBe(true);
    rmSync(work, { recursive: true, force: true });
  });
});

describe('Node and Python clients through the environment proxy', () => {
  it('node fetch: one allowed, one denied', async () => {
    const script = `
      const a = await fetch(${JSON.stringify(secureUrl('/posts/1'))});
      const d = await fetch(${JSON.stringify(secureUrl('/posts/1'))}, { method: 'DELETE' });
      console.log(a.status, d.status, (await d.json()).error);`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, HTTPS_PROXY: proxyOf(A), NODE_USE_ENV_PROXY: '1', NODE_EXTRA_CA_CERTS: caFile },
    });
    expect(stdout.trim()).toBe('200 403 egress_denied');
  });

  it('python requests: one allowed, one denied', async () => {
    const script = [
      'import requests',
      `a = requests.get(${JSON.stringify(secureUrl('/posts/1'))})`,
      `d = requests.put(${JSON.stringify(secureUrl('/posts/1'))}, json={"title": "x"})`,
      'print(a.status_code, d.status_code, d.json()["error"])',
    ].join('\n');
    const { stdout } = await run('python3', ['-c', script], {
      env: { ...process.env, HTTPS_PROXY: proxyOf(A), REQUESTS_CA_BUNDLE: caFile },
    });
    expect(stdout.trim()).toBe('200 403 egress_denied');
  });
});

/** Opens CONNECT + TLS by hand, so SNI, Host and keep-alive can be controlled. */
function openTunnel(who: typeof A, authority: string, servername: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: '127.0.0.1', port: proxyPort, localAddress: who.address });
    raw.once('error', reject);
    raw.write(
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${Buffer.from(`${who.id}:${who.cred}`).toString('base64')}\r\n\r\n`,
    );
    raw.once('data', (chunk: Buffer) => {
      if (!chunk.toString().startsWith('HTTP/1.1 200')) return reject(new Error(chunk.toString()));
      const t = tls.connect({ socket: raw, servername, ca: ca.trustPem }, () => {
        t.on('error', () => undefined); // later resets (kill switch) are expected
        resolve(t);
      });
      t.once('error', reject);
      raw.on('error', () => undefined);
    });
  });
}

function httpOver(t: tls.TLSSocket, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (c: Buffer) => {
      buf += c.toString();
      const m = /content-length: (\d+)\r\n/i.exec(buf);
      const end = buf.indexOf('\r\n\r\n');
      if (m && end >= 0 && buf.length >= end + 4 + Number(m[1])) {
        t.off('data', onData);
        resolve(buf);
      }
    };
    t.on('data', onData);
    t.once('error', reject);
    t.once('close', () => resolve(buf));
    t.write(request);
  });
}

describe('one request line, one host (property 7) inside tunnels', () => {
  const authority = () => `secure.test:${up.ports.secure}`;
  it('an SNI that differs from the CONNECT authority is refused', async () => {
    await expect(openTunnel(A, authority(), 'evil.test')).rejects.toThrow();
  });
  it('a Host header that differs from the CONNECT authority is a 400', async () => {
    const t = await openTunnel(A, authority(), 'secure.test');
    const answer = await httpOver(t, `GET /posts/1 HTTP/1.1\r\nHost: evil.test:${up.ports.secure}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    t.destroy();
  });
});

describe('the intercepted CONNECT is audited itself (issue 13, audit gaps)', () => {
  const authority = () => `secure.test:${up.ports.secure}`;
  // A session of its own: no other test's tunnel can close into these assertions.
  const T = { id: 's-tunnels', cred: 'cred-tunnels-0123456789', address: '127.0.0.7' };
  beforeAll(() => {
    sessions.upsert({
      id: T.id,
      role: 'reader',
      address: T.address,
      credentialSha256: sha(T.cred),
      expiresAtMs: Date.now() + 3_600_000,
    });
  });
  const connectEvents = () => audit.events.filter((e) => e.method === 'CONNECT' && e.sessionId === T.id);
  const closedAndAudited = async (n: number): Promise<void> => {
    for (let i = 0; i < 200 && connectEvents().length < n; i++) await new Promise((r) => setTimeout(r, 10));
  };

  it('a tunnel that carries no request leaves an event with its bytes and zero requests', async () => {
    const before = connectEvents().length;
    const t = await openTunnel(T, authority(), 'secure.test');
    t.destroy();
    await closedAndAudited(before + 1);
    expect(connectEvents().at(-1)).toMatchObject({
      decision: 'allow',
      reason: 'rule_allow',
      status: 200,
      requests: 0,
      host: 'secure.test',
      port: up.ports.secure,
    });
    expect(connectEvents().at(-1)!.bytesOut).toBeGreaterThan(0); // the ClientHello
  });

  it('a failed handshake (the client offers only h2) is audited as tls_handshake_failed', async () => {
    const before = connectEvents().length;
    await expect(
      new Promise<void>((resolve, reject) => {
        const raw = net.connect({ host: '127.0.0.1', port: proxyPort, localAddress: T.address });
        raw.once('error', reject);
        raw.write(
          `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\nProxy-Authorization: Basic ${Buffer.from(`${T.id}:${T.cred}`).toString('base64')}\r\n\r\n`,
        );
        raw.once('data', () => {
          const t = tls.connect({
            socket: raw,
            servername: 'secure.test',
            ca: ca.trustPem,
            ALPNProtocols: ['h2'],
          });
          t.once('secureConnect', () => resolve());
          t.once('error', reject);
        });
      }),
    ).rejects.toThrow();
    await closedAndAudited(before + 1);
    expect(connectEvents().at(-1)).toMatchObject({
      decision: 'deny',
      reason: 'tls_handshake_failed',
      requests: 0,
    });
  });

  it('a CONNECT inside a tunnel is refused and audited with the session', async () => {
    const t = await openTunnel(T, authority(), 'secure.test');
    const answer = await httpOver(t, `CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect(answer).toContain('not_supported');
    expect(audit.events.find((e) => e.host === 'evil.test' && e.sessionId === T.id)).toMatchObject({
      method: 'CONNECT',
      decision: 'deny',
      port: 443,
    });
    t.destroy();
  });
});

describe('kill switch inside tunnels (property 5)', () => {
  it('revoking the session closes an open keep-alive tunnel: the next request on it fails', async () => {
    const K = { id: 's-kill-tls', cred: 'cred-kill-tls-0123456789', address: '127.0.0.3' };
    sessions.upsert({
      id: K.id,
      role: 'reader',
      address: K.address,
      credentialSha256: sha(K.cred),
      expiresAtMs: Date.now() + 60_000,
    });
    const t = await openTunnel(K, `secure.test:${up.ports.secure}`, 'secure.test');
    const first = await httpOver(t, `GET /posts/1 HTTP/1.1\r\nHost: secure.test:${up.ports.secure}\r\n\r\n`);
    expect(first).toMatch(/^HTTP\/1\.1 200/);
    const closed = new Promise<void>((r) => t.once('close', () => r()));
    sessions.revoke(K.id);
    await closed;
    expect(t.destroyed).toBe(true);
    expect(() => t.write(`GET /posts/1 HTTP/1.1\r\nHost: secure.test\r\n\r\n`)).not.toThrow();
    const allowed = audit.events.filter((e) => e.sessionId === K.id && e.decision === 'allow');
    // The one request, and the CONNECT itself, audited when the tunnel closed, with one request inside.
    expect(allowed.map((e) => e.method)).toEqual(['GET', 'CONNECT']);
    expect(allowed[1]).toMatchObject({ reason: 'rule_allow', status: 200, requests: 1 });
  });
});

describe('passthrough only by explicit grant', () => {
  it('a host listed for passthrough is tunnelled unopened for a role granted CONNECT, audited with bytes', async () => {
    const pass = new EgressGateway(
      withGatewayDefaults({
        policy,
        sessions,
        audit,
        resolver: new UpstreamResolver(
          new DestinationPolicy(['127.0.0.0/8']),
          new Map([['secure.test', '127.0.0.1']]),
        ),
        upstreamCaPem: up.caPem,
        intercept: { leaves: new LeafCache(ca), passthrough: [`secure.test:${up.ports.secure}`] },
      }),
    );
    const port = (await pass.listen(0, '127.0.0.1')).port;
    // The client sees nginx's own certificate (test CA), not an Airlock leaf.
    const { stdout } = await run('curl', [
      '-s',
      '-x',
      `http://${P.id}:${P.cred}@127.0.0.1:${port}`,
      '--interface',
      P.address,
      '--cacert',
      up.caFile,
      secureUrl('/posts/1'),
    ]);
    expect(JSON.parse(stdout).id).toBe(1);
    await expect
      .poll(() => audit.events.filter((e) => e.sessionId === P.id && e.method === 'CONNECT').length)
      .toBe(1);
    const e = audit.events.filter((x) => x.sessionId === P.id && x.method === 'CONNECT').at(-1)!;
    expect(e).toMatchObject({ decision: 'allow', reason: 'rule_allow' });
    expect(e.bytesIn).toBeGreaterThan(0);
    // The reader has no CONNECT grant: refused.
    const denied = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_connect}',
      '-x',
      `http://${A.id}:${A.cred}@127.0.0.1:${port}`,
      '--cacert',
      up.caFile,
      secureUrl('/posts/1'),
    ]).catch((err: { stdout: string }) => err);
    expect(denied.stdout).toBe('403');
    await pass.close();
  });
});
