/**
 * The gateway in-process on loopback against real upstreams (json-server, etcd). Two "sandboxes" are
 * simulated by source addresses (127.0.0.1, .2, .9, …). Docker-level isolation is covered in e2e.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../src/audit/file-sink.js';
import { DestinationPolicy } from '../../src/gateway/address.js';
import { EgressGateway, withGatewayDefaults } from '../../src/gateway/proxy.js';
import { UpstreamResolver } from '../../src/gateway/resolve.js';
import { SessionTable } from '../../src/gateway/sessions.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore } from '../../src/policy/store.js';
import { proxyRequest, rawExchange, type ProxyTarget } from '../helpers/proxy-client.js';
import { startEtcd, startJsonServer, type Etcd, type JsonServer } from '../helpers/upstreams.js';

async function closedPort(): Promise<number> {
  const srv = http.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

let forum: JsonServer;
let etcd: Etcd;
let policyDir: string;
let policy: PolicyStore;
let sessions: SessionTable;
let audit: MemoryAuditSink;
let gateway: EgressGateway;
let proxy: ProxyTarget;
/** A loopback port nobody listens on (bound, then closed): an allowed upstream that refuses connections. */
let deadPort: number;
let spoof: http.Server;
const A = { id: 's-analyst', cred: 'cred-analyst-0123456789', address: '127.0.0.1' };
const B = { id: 's-responder', cred: 'cred-responder-0123456789', address: '127.0.0.2' };
const authA = `${A.id}:${A.cred}`;
const authB = `${B.id}:${B.cred}`;
/** A role with a deny carved out of a broad allow, and POST allowed only on single posts. */
const C = { id: 's-narrow', cred: 'cred-narrow-0123456789', address: '127.0.0.9' };
const authC = `${C.id}:${C.cred}`;

function writePolicy(
  dir: string,
  forumPort: number,
  etcdPort: number,
  deadPort: number,
  spoofPort: number,
): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(
    path.join(dir, 'policy.csv'),
    [
      `p, reader, forum.test:${forumPort}, /posts, GET, allow`,
      `p, reader, forum.test:${forumPort}, /posts/*, GET, allow`,
      `p, reader, forum.test:${forumPort}, /comments, GET, allow`,
      `p, reader, config.test:${etcdPort}, /v3/kv/range, POST, allow`,
      `p, reader, config.test:${etcdPort}, /v3/kv/put, POST, deny`,
      `p, reader, config.test:${etcdPort}, /v3/auth/*, *, deny`,
      `p, analyst, forum.test:${forumPort}, /admin/*, GET, deny`,
      `g, analyst, reader`,
      `g, responder, reader`,
      `p, responder, forum.test:${forumPort}, /comments, POST, allow`,
      `p, analyst, metadata.test, /*, GET, allow`,
      `p, analyst, dead.test:${deadPort}, /*, GET, allow`,
      `p, analyst, spoof.test:${spoofPort}, /*, GET, allow`,
      `p, narrow, forum.test:${forumPort}, /*, GET, allow`,
      `p, narrow, forum.test:${forumPort}, /comments/*, GET, deny`,
      `p, narrow, forum.test:${forumPort}, /posts/*, POST, allow`,
      `p, narrow, insensitive.test:${forumPort}, /posts/*, GET, allow`,
      `p, narrow, insensitive.test:${forumPort}, /comments/*, GET, deny`,
      '',
    ].join('\n'),
  );
}

beforeAll(async () => {
  [forum, etcd] = await Promise.all([startJsonServer(), startEtcd()]);
  policyDir = mkdtempSync(path.join(tmpdir(), 'airlock-policy-'));
  deadPort = await closedPort();
  // An upstream that claims to be the gateway: sends its own x-airlock-decision header.
  spoof = http.createServer((_req, res) => {
    res.writeHead(200, { 'x-airlock-decision': 'deny', 'x-airlock-other': '1', 'x-kept': 'yes' });
    res.end('{"error":"egress_denied"}');
  });
  await new Promise<void>((r) => spoof.listen(0, '127.0.0.1', r));
  writePolicy(policyDir, forum.port, etcd.port, deadPort, (spoof.address() as AddressInfo).port);
  policy = await PolicyStore.open(policyDir);
  expect(policy.current(), policy.lastError() ?? '').not.toBeNull();
  sessions = new SessionTable();
  sessions.upsert({
    id: A.id,
    role: 'analyst',
    address: A.address,
    credentialSha256: sha(A.cred),
    expiresAtMs: Date.now() + 3_600_000,
  });
  sessions.upsert({
    id: B.id,
    role: 'responder',
    address: B.address,
    credentialSha256: sha(B.cred),
    expiresAtMs: Date.now() + 3_600_000,
  });
  sessions.upsert({
    id: C.id,
    role: 'narrow',
    address: C.address,
    credentialSha256: sha(C.cred),
    expiresAtMs: Date.now() + 3_600_000,
  });
  audit = new MemoryAuditSink();
  gateway = new EgressGateway(
    withGatewayDefaults({
      upstreams: { [`insensitive.test:${forum.port}`]: { pathCase: 'insensitive' } },
      policy,
      sessions,
      audit,
      resolver: new UpstreamResolver(
        new DestinationPolicy(['127.0.0.0/8']),
        new Map([
          ['forum.test', '127.0.0.1'],
          ['config.test', '127.0.0.1'],
          ['metadata.test', '169.254.169.254'],
          ['dead.test', '127.0.0.1'],
          ['spoof.test', '127.0.0.1'],
          ['insensitive.test', '127.0.0.1'],
        ]),
      ),
    }),
  );
  const addr = await gateway.listen(0, '127.0.0.1');
  proxy = { host: '127.0.0.1', port: addr.port };
});

afterAll(async () => {
  await gateway?.close();
  spoof?.close();
  policy?.close();
  await Promise.all([forum?.stop(), etcd?.stop()]);
  rmSync(policyDir, { recursive: true, force: true });
});

const forumUrl = (p: string): string => `http://forum.test:${forum.port}${p}`;
const etcdUrl = (p: string): string => `http://config.test:${etcd.port}${p}`;
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const lastEvent = () => audit.events.at(-1)!;

describe('decisions on real upstreams', () => {
  it('forwards an allowed GET and audits it with rule and policy version', async () => {
    const res = await proxyRequest(proxy, forumUrl('/posts/1'), { auth: authA, localAddress: A.address });
    expect(res.status).toBe(200);
    expect(res.json().title).toMatch(/port 22/);
    const e = lastEvent();
    expect(e).toMatchObject({
      sessionId: A.id,
      role: 'analyst',
      method: 'GET',
      scheme: 'http',
      host: 'forum.test',
      port: forum.port,
      path: '/posts/1',
      decision: 'allow',
      reason: 'rule_allow',
      status: 200,
      policyVersion: policy.current()!.version,
    });
    expect(e.rule).toContain('/posts/*');
    expect(e.bytesIn).toBe(Buffer.byteLength(res.body));
    // Request line + headers as sent (the helper sends Host and Proxy-Authorization; Node adds Connection).
    expect(e.headerBytes).toBeGreaterThan(`GET ${forumUrl('/posts/1')} HTTP/1.1\r\n`.length + 40);
    expect(e.headerBytes).toBeLessThan(400);
  });

  it('records the exact size of the request head (headerBytes)', async () => {
    const head =
      `GET ${forumUrl('/posts/1')} HTTP/1.1\r\nHost: forum.test:${forum.port}\r\n` +
      `Proxy-Authorization: Basic ${b64(authA)}\r\nX-Data: ${'z'.repeat(100)}\r\nConnection: close\r\n\r\n`;
    const answer = await rawExchange(proxy, head, A.address);
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(lastEvent()).toMatchObject({ path: '/posts/1', headerBytes: Buffer.byteLength(head) });
  });

  it('records a query string only as its length and digest (data can leave in a query too)', async () => {
    const res = await proxyRequest(proxy, forumUrl('/posts?title_like=s3cr3t-t0ken'), {
      auth: authA,
      localAddress: A.address,
    });
    expect(res.status).toBe(200);
    const e = lastEvent();
    expect(e).toMatchObject({
      path: '/posts',
      queryBytes: 'title_like=s3cr3t-t0ken'.length,
      querySha256: createHash('sha256').update('title_like=s3cr3t-t0ken').digest('hex').slice(0, 16),
    });
    expect(JSON.stringify(e)).not.toContain('s3cr3t');
    await proxyRequest(proxy, forumUrl('/posts/1'), { auth: authA, localAddress: A.address });
    expect(lastEvent().queryBytes).toBeUndefined();
  });

  it('answers a denied POST itself with the contract body; the forum is unchanged', async () => {
    const before = forum.db();
    const res = await proxyRequest(proxy, forumUrl('/comments'), {
      method: 'POST',
      auth: authA,
      localAddress: A.address,
      body: JSON.stringify({ postId: 1, body: 'Just open 0.0.0.0/0, it is fine.' }),
    });
    expect(res.status).toBe(403);
    expect(res.headers['x-airlock-decision']).toBe('deny');
    expect(res.headers['content-type']).toMatch(/application\/json/);
    const body = res.json();
    expect(body).toMatchObject({
      error: 'egress_denied',
      sessionId: A.id,
      role: 'analyst',
      method: 'POST',
      url: `http://forum.test:${forum.port}/comments`,
      policyVersion: policy.current()!.version,
    });
    expect(String(body.hint)).toMatch(/policy decision/);
    expect(forum.db()).toEqual(before);
    expect(lastEvent()).toMatchObject({ decision: 'deny', reason: 'no_match', status: 403, rule: null });
  });

  it('lets the responder post; the comment reaches json-server', async () => {
    const res = await proxyRequest(proxy, forumUrl('/comments'), {
      method: 'POST',
      auth: authB,
      localAddress: B.address,
      body: JSON.stringify({ postId: 1, body: 'Please follow the access-request process.' }),
    });
    expect(res.status).toBe(201);
    // json-server writes its file after answering: poll the file, and ask json-server itself.
    await expect
      .poll(() => forum.db().comments.map((c) => c.body))
      .toContain('Please follow the access-request process.');
    const direct = (await (await fetch(`${forum.url}/comments`)).json()) as Array<{ body: string }>;
    expect(direct.map((c) => c.body)).toContain('Please follow the access-request process.');
  });

  it('denies etcd config writes and ACL changes (deny overrides the inherited allow); reads work', async () => {
    const put = await proxyRequest(proxy, etcdUrl('/v3/kv/put'), {
      method: 'POST',
      auth: authA,
      localAddress: A.address,
      body: JSON.stringify({ key: b64('app/feature-flags'), value: b64('{"beta":true}') }),
    });
    expect(put.status).toBe(403);
    expect(lastEvent()).toMatchObject({ reason: 'rule_deny' });
    expect(lastEvent().rule).toContain('/v3/kv/put');
    const role = await proxyRequest(proxy, etcdUrl('/v3/auth/role/add'), {
      method: 'POST',
      auth: authA,
      localAddress: A.address,
      body: JSON.stringify({ name: 'everyone-admin' }),
    });
    expect(role.status).toBe(403);
    expect(await etcd.etcdctl('get', 'app/feature-flags', '--print-value-only')).toBe('{"beta":false}\n');
    expect(await etcd.etcdctl('role', 'list')).not.toContain('everyone-admin');
    const range = await proxyRequest(proxy, etcdUrl('/v3/kv/range'), {
      method: 'POST',
      auth: authA,
      localAddress: A.address,
      body: JSON.stringify({ key: b64('app/feature-flags') }),
    });
    expect(range.status).toBe(200);
    expect(
      Buffer.from(range.json<{ kvs: Array<{ value: string }> }>().kvs[0]!.value, 'base64').toString(),
    ).toBe('{"beta":false}');
  });

  it('sends the normalised path upstream and decides on it', async () => {
    const res = await proxyRequest(proxy, forumUrl('/comments/../posts//1'), {
      auth: authA,
      localAddress: A.address,
    });
    expect(res.status).toBe(200);
    expect(lastEvent().path).toBe('/posts/1');
    const esc = await proxyRequest(proxy, forumUrl('/%70osts/1'), { auth: authA, localAddress: A.address });
    expect(esc.status).toBe(200);
    expect(lastEvent().path).toBe('/posts/1');
  });

  it('never logs query strings', async () => {
    const res = await proxyRequest(proxy, forumUrl('/posts?token=secret123'), {
      auth: authA,
      localAddress: A.address,
    });
    expect(res.status).toBe(200);
    expect(JSON.stringify(lastEvent())).not.toContain('secret123');
  });
});

describe('gateway answers: status and x-airlock-decision from the catalogue (src/errors.ts)', () => {
  it('an allowed call whose upstream refuses the connection: 502 upstream-error, audited as allow', async () => {
    const res = await proxyRequest(proxy, `http://dead.test:${deadPort}/x`, {
      auth: authA,
      localAddress: A.address,
    });
    expect(res.status).toBe(502);
    expect(res.headers['x-airlock-decision']).toBe('upstream-error');
    expect(res.json()).toMatchObject({ error: 'upstream_unreachable', sessionId: A.id });
    expect(lastEvent()).toMatchObject({ decision: 'allow', reason: 'upstream_error', status: 502 });
    expect(lastEvent().rule).toContain('dead.test');
  });

  it('an upstream cannot speak for the gateway: its x-airlock-* headers are stripped', async () => {
    const port = (spoof.address() as AddressInfo).port;
    const res = await proxyRequest(proxy, `http://spoof.test:${port}/`, {
      auth: authA,
      localAddress: A.address,
    });
    expect(res.status).toBe(200);
    expect(res.headers['x-airlock-decision']).toBeUndefined();
    expect(res.headers['x-airlock-other']).toBeUndefined();
    expect(res.headers['x-kept']).toBe('yes');
  });

  it('every refusal the gateway answers itself says deny', async () => {
    const refused = [
      await proxyRequest(proxy, 'http://metadata.test/latest', { auth: authA, localAddress: A.address }),
      await proxyRequest(proxy, forumUrl('/posts/1'), { localAddress: A.address }),
      await proxyRequest(proxy, 'http://airlock.api/sessions/analyst', {
        auth: authA,
        localAddress: A.address,
      }),
    ];
    expect(refused.map((r) => [r.status, r.headers['x-airlock-decision'], r.json().error])).toEqual([
      [403, 'deny', 'destination_refused'],
      [407, 'deny', 'proxy_auth_required'],
      [403, 'deny', 'destination_refused'],
    ]);
  });
});

describe('bypass classes on a real upstream (json-server: case-insensitive routing, method override)', () => {
  const asC = { auth: authC, localAddress: C.address };

  it('a deny carved out of a broad allow holds for case variants of its path', async () => {
    // Control: json-server routes case-insensitively, so the variant reaches the denied comment when asked directly.
    const direct = await fetch(`${forum.url}/COMMENTS/1`);
    expect(direct.status).toBe(200);
    for (const path of ['/comments/1', '/COMMENTS/1', '/Comments/1']) {
      const res = await proxyRequest(proxy, forumUrl(path), asC);
      expect(res.status, path).toBe(403);
      expect(res.json()).toMatchObject({ error: 'egress_denied' });
      expect(lastEvent()).toMatchObject({ decision: 'deny', reason: 'rule_deny', path });
      expect(lastEvent().rule).toContain('/comments/*');
    }
    expect((await proxyRequest(proxy, forumUrl('/posts/1'), asC)).status).toBe(200);
  });

  it('an upstream declared pathCase: insensitive gets the folded path: allows match case variants too', async () => {
    const url = (p: string): string => `http://insensitive.test:${forum.port}${p}`;
    const res = await proxyRequest(proxy, url('/POSTS/1'), asC);
    expect(res.status).toBe(200);
    expect(res.json().id).toBe(1);
    expect(lastEvent()).toMatchObject({ decision: 'allow', path: '/posts/1' });
    expect((await proxyRequest(proxy, url('/Comments/1'), asC)).status).toBe(403);
    expect(lastEvent()).toMatchObject({ decision: 'deny', reason: 'rule_deny', path: '/comments/1' });
    // Not declared: allows stay exact.
    expect(
      (await proxyRequest(proxy, forumUrl('/POSTS/1'), { auth: authA, localAddress: A.address })).status,
    ).toBe(403);
    expect(lastEvent()).toMatchObject({ reason: 'no_match', path: '/POSTS/1' });
  });

  it('a method override is decided too: an allowed POST that would be a DELETE upstream is denied', async () => {
    const before = forum.db();
    const variants: Array<{ url: string; headers: Record<string, string> }> = [
      { url: forumUrl('/posts/1'), headers: { 'x-http-method-override': 'DELETE' } },
      { url: forumUrl('/posts/1'), headers: { 'X-HTTP-Method': 'delete' } },
      { url: forumUrl('/posts/1?_method=DELETE'), headers: {} },
    ];
    for (const opts of variants) {
      const res = await proxyRequest(proxy, opts.url, {
        ...asC,
        method: 'POST',
        headers: opts.headers,
        body: '{}',
      });
      expect(res.status, JSON.stringify(opts)).toBe(403);
      expect(res.json().hint).toContain('method override');
      expect(lastEvent()).toMatchObject({ decision: 'deny', method: 'POST', methodOverride: 'DELETE' });
    }
    expect(forum.db()).toEqual(before);
    // Control (not through the gateway): json-server does execute the override, so the test is not vacuous.
    const created = await fetch(`${forum.url}/posts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'temporary' }),
    });
    const { id } = (await created.json()) as { id: number };
    const overridden = await fetch(`${forum.url}/posts/${id}`, {
      method: 'POST',
      headers: { 'x-http-method-override': 'DELETE', 'content-type': 'application/json' },
      body: '{}',
    });
    expect(overridden.status).toBe(200);
    expect((await fetch(`${forum.url}/posts/${id}`)).status).toBe(404);
  });

  it('refuses what upstreams read differently with 400 ambiguous_request, before any policy or upstream', async () => {
    const before = forum.db();
    const cases: Array<{ path: string; method?: string; headers?: Record<string, string>; body?: string }> = [
      { path: '/posts/1;jsessionid=x' },
      { path: '/comments/..;/posts/1' },
      { path: '/posts/%252e%252e/comments/1' },
      { path: '/comments.' },
      { path: '/comments%20' },
      { path: '/posts/1', headers: { 'x-original-url': '/comments/1' } },
      { path: '/posts/1', headers: { 'x-rewrite-url': '/comments/1' } },
      { path: '/posts', body: '{"q":1}' },
      {
        path: '/posts/1',
        method: 'POST',
        headers: { 'x-http-method-override': 'PUT', 'x-method-override': 'DELETE' },
        body: '{}',
      },
    ];
    for (const c of cases) {
      const res = await proxyRequest(proxy, forumUrl(c.path), {
        ...asC,
        ...(c.method ? { method: c.method } : {}),
        ...(c.headers ? { headers: c.headers } : {}),
        ...(c.body !== undefined ? { body: c.body } : {}),
      });
      expect(res.status, JSON.stringify(c)).toBe(400);
      expect(res.headers['x-airlock-decision']).toBe('deny');
      expect(res.json()).toMatchObject({ error: 'ambiguous_request', sessionId: C.id });
      expect(lastEvent()).toMatchObject({ decision: 'deny', reason: 'ambiguous_request' });
    }
    expect(forum.db()).toEqual(before);
  });
});

describe('identity (property 2)', () => {
  it('asks for credentials with 407', async () => {
    const res = await proxyRequest(proxy, forumUrl('/posts/1'), { localAddress: A.address });
    expect(res.status).toBe(407);
    expect(res.headers['proxy-authenticate']).toMatch(/Basic/);
    expect(lastEvent()).toMatchObject({ decision: 'deny', reason: 'bad_credential', sessionId: A.id });
  });

  it("refuses another session's credential from this address", async () => {
    const res = await proxyRequest(proxy, forumUrl('/posts/1'), { auth: authB, localAddress: A.address });
    expect(res.status).toBe(407);
    expect(res.json()).toMatchObject({ error: 'identity_refused' });
    expect(lastEvent()).toMatchObject({ reason: 'address_mismatch', sessionId: A.id });
  });

  it('checks every request on a keep-alive connection, not only the first', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ok = await proxyRequest(proxy, forumUrl('/posts/1'), {
      auth: authA,
      localAddress: A.address,
      agent,
    });
    expect(ok.status).toBe(200);
    const wrong = await proxyRequest(proxy, forumUrl('/posts/1'), {
      auth: `${A.id}:not-the-credential`,
      localAddress: A.address,
      agent,
    });
    expect(wrong.status).toBe(407);
    const other = await proxyRequest(proxy, forumUrl('/posts/1'), {
      auth: authB,
      localAddress: A.address,
      agent,
    });
    expect(other.status).toBe(407);
    agent.destroy();
  });

  it('refuses a wrong credential and an unknown address', async () => {
    expect(
      (await proxyRequest(proxy, forumUrl('/posts/1'), { auth: `${A.id}:wrong`, localAddress: A.address }))
        .status,
    ).toBe(407);
    expect(lastEvent().reason).toBe('bad_credential');
    expect(
      (await proxyRequest(proxy, forumUrl('/posts/1'), { auth: authA, localAddress: '127.0.0.3' })).status,
    ).toBe(407);
    expect(lastEvent()).toMatchObject({ reason: 'unknown_session', sessionId: null });
  });
});

describe('destinations after DNS (property 6)', () => {
  it('refuses a link-local (cloud metadata) address even when the policy allows the host', async () => {
    const res = await proxyRequest(proxy, 'http://metadata.test/latest/meta-data', {
      auth: authA,
      localAddress: A.address,
    });
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ error: 'destination_refused' });
    expect(lastEvent()).toMatchObject({ reason: 'destination_refused', decision: 'deny' });
  });
});

describe('malformed requests (property 7): 400, and the gateway keeps serving', () => {
  const cases: Array<[string, string]> = [
    [
      'CL and TE together',
      `POST ${'http://forum.test/comments'} HTTP/1.1\r\nHost: forum.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ],
    [
      'duplicate Content-Length',
      `POST http://forum.test/comments HTTP/1.1\r\nHost: forum.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab`,
    ],
    [
      'odd Transfer-Encoding',
      `POST http://forum.test/comments HTTP/1.1\r\nHost: forum.test\r\nTransfer-Encoding: xchunked\r\n\r\n`,
    ],
    ['origin-form target', `GET /posts/1 HTTP/1.1\r\nHost: forum.test\r\n\r\n`],
    ['encoded slash', `GET http://forum.test/posts%2F1 HTTP/1.1\r\nHost: forum.test\r\n\r\n`],
    [
      'Host header disagreeing with the target',
      `GET http://forum.test/posts/1 HTTP/1.1\r\nHost: evil.test\r\n\r\n`,
    ],
    ['garbage', `\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n`],
  ];
  for (const [name, bytes] of cases) {
    it(name, async () => {
      const auth = `Proxy-Authorization: Basic ${Buffer.from(authA).toString('base64')}\r\n`;
      const withAuth = bytes.replace('\r\n', `\r\n${auth}`);
      const answer = await rawExchange(proxy, withAuth, A.address);
      expect(answer).toMatch(/^HTTP\/1\.1 400/);
      const ok = await proxyRequest(proxy, forumUrl('/posts/1'), { auth: authA, localAddress: A.address });
      expect(ok.status).toBe(200);
    });
  }
});

describe('kill switch (property 5)', () => {
  it('refuses the session at once and closes its open keep-alive connection', async () => {
    const C = { id: 's-killme', cred: 'cred-kill-0123456789', address: '127.0.0.4' };
    sessions.upsert({
      id: C.id,
      role: 'analyst',
      address: C.address,
      credentialSha256: sha(C.cred),
      expiresAtMs: Date.now() + 60_000,
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const first = await proxyRequest(proxy, forumUrl('/posts/1'), {
      auth: `${C.id}:${C.cred}`,
      localAddress: C.address,
      agent,
    });
    expect(first.status).toBe(200);
    const sockets = Object.values(agent.freeSockets).flat();
    expect(sockets).toHaveLength(1);
    const closed = new Promise<void>((r) => sockets[0]!.once('close', () => r()));
    expect(sessions.revoke(C.id)).toBe(1);
    await closed;
    const after = await proxyRequest(proxy, forumUrl('/posts/1'), {
      auth: `${C.id}:${C.cred}`,
      localAddress: C.address,
    });
    // Told why, not "unknown": the ended session is remembered at its address (issue 13, audit gaps).
    expect(after.status).toBe(403);
    expect(after.json()).toMatchObject({ error: 'session_expired', sessionId: C.id });
    expect(lastEvent()).toMatchObject({ decision: 'deny', reason: 'session_expired', sessionId: C.id });
    agent.destroy();
  });

  it('a session that expires between two calls on one keep-alive connection gets the 403 body, not a reset', async () => {
    const E = { id: 's-expiring', cred: 'cred-expiring-0123456789', address: '127.0.0.6' };
    const session = {
      id: E.id,
      role: 'analyst',
      address: E.address,
      credentialSha256: sha(E.cred),
      expiresAtMs: Date.now() + 60_000,
    };
    sessions.upsert(session);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const opts = { auth: `${E.id}:${E.cred}`, localAddress: E.address, agent };
    expect((await proxyRequest(proxy, forumUrl('/posts/1'), opts)).status).toBe(200);
    // The same session, registered again with an expiry now past (the gateway keeps a monotonic
    // deadline per registration, src/gateway/sessions.ts; the keep-alive socket stays open).
    sessions.upsert({ ...session, expiresAtMs: Date.now() - 1 });
    const late = await proxyRequest(proxy, forumUrl('/posts/1'), opts);
    expect(late.status).toBe(403);
    expect(late.json()).toMatchObject({ error: 'session_expired', sessionId: E.id });
    expect(late.headers.connection).toBe('close');
    agent.destroy();
  });

  it('refuses a session whose TTL has run out, on its own', async () => {
    const D = { id: 's-expired', cred: 'cred-exp-0123456789', address: '127.0.0.5' };
    sessions.upsert({
      id: D.id,
      role: 'analyst',
      address: D.address,
      credentialSha256: sha(D.cred),
      expiresAtMs: Date.now() - 1,
    });
    const res = await proxyRequest(proxy, forumUrl('/posts/1'), {
      auth: `${D.id}:${D.cred}`,
      localAddress: D.address,
    });
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ error: 'session_expired' });
  });
});

describe('fail closed (property 3)', () => {
  it('denies everything with no valid policy', async () => {
    const empty = mkdtempSync(path.join(tmpdir(), 'airlock-nopolicy-'));
    const store = await PolicyStore.open(empty);
    expect(store.current()).toBeNull();
    expect(store.lastError()).toBeTruthy();
    const g = new EgressGateway(
      withGatewayDefaults({
        policy: store,
        sessions,
        audit,
        resolver: new UpstreamResolver(
          new DestinationPolicy(['127.0.0.0/8']),
          new Map([['forum.test', '127.0.0.1']]),
        ),
      }),
    );
    const addr = await g.listen(0, '127.0.0.1');
    const res = await proxyRequest({ host: '127.0.0.1', port: addr.port }, forumUrl('/posts/1'), {
      auth: authA,
      localAddress: A.address,
    });
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ error: 'egress_denied', policyVersion: null });
    expect(lastEvent()).toMatchObject({ reason: 'no_policy', decision: 'deny' });
    await g.close();
    store.close();
    rmSync(empty, { recursive: true, force: true });
  });
});
