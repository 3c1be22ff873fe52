/**
 * Issue 14: credentials the sandbox never holds, on the gateway in-process, loopback only. Upstreams
 * that require the secret are real: nginx with `auth_basic` (a `{PLAIN}` user file) in front of
 * json-server, and nginx checking a bearer token in front of the same json-server. A small recording
 * server stands for "the upstream": it counts what reaches it, to prove that refused calls send
 * nothing.
 *
 * Waits are for events (a vault rotation, an audit event), never for time.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../src/audit/file-sink.js';
import { DestinationPolicy } from '../../src/gateway/address.js';
import { CredentialVault } from '../../src/gateway/credentials.js';
import { newPlaceholder } from '../../src/policy/credentials.js';
import { EgressGateway, withGatewayDefaults } from '../../src/gateway/proxy.js';
import { UpstreamResolver } from '../../src/gateway/resolve.js';
import { SessionTable } from '../../src/gateway/sessions.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore } from '../../src/policy/store.js';
import { proxyRequest, type ProxyTarget } from '../helpers/proxy-client.js';
import { freePort, startJsonServer, type JsonServer } from '../helpers/upstreams.js';

const run = promisify(execFile);
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

const BASIC_USER = 'robot';
const BASIC_PASS = 'pw-7f3c9a1e5b2d4c6e8a0b';
const TOKEN_1 = 'tok1-9d8c7b6a5f4e3d2c1b0a';
const TOKEN_2 = 'tok2-0a1b2c3d4e5f6a7b8c9d';
const SEARCH_KEY = 'sk-live-31415926535897932384';

const AGENT = { id: 's-agent', cred: 'cred-agent-0123456789', address: '127.0.0.1', role: 'agent' };
const OTHER = { id: 's-other', cred: 'cred-other-0123456789', address: '127.0.0.2', role: 'other' };
/** A session of role agent with placeholders (what the control plane registers: session.ts). */
const PH = { id: 's-ph', cred: 'cred-ph-0123456789abc', address: '127.0.0.3', role: 'agent' };
const PLACEHOLDERS = {
  'forum-bearer': newPlaceholder('forum-bearer'),
  'search-key': newPlaceholder('search-key'),
};
/** Largest body the gateway buffers here (gateway.limits.bufferedBodyBytes). */
const BODY_LIMIT = 64 * 1024;
const auth = (s: typeof AGENT): string => `${s.id}:${s.cred}`;

let json: JsonServer;
let nginx: ChildProcess;
let dir: string;
let policyDir: string;
let secretsDir: string;
let ports: { basic: number; bearer: number; rec: number };
let recorder: http.Server;
const seen: { url: string; headers: IncomingHttpHeaders; body: Buffer }[] = [];
const exfiltrations: string[] = [];
let sessions: SessionTable;
let policy: PolicyStore;
let vault: CredentialVault;
let gateway: EgressGateway;
let audit: MemoryAuditSink;
let proxy: ProxyTarget;
const rotations = new EventEmitter();

function credentialsYaml(withBearer = true): string {
  return [
    'version: 1',
    'credentials:',
    '  - name: forum-basic',
    '    roles: [agent]',
    `    bindings: [{ host: "basic.test:${ports.basic}", path: /*, methods: [GET] }]`,
    '    apply: { type: basic }',
    `    source: { file: ${path.join(secretsDir, 'basic')} }`,
    ...(withBearer
      ? [
          '  - name: forum-bearer',
          '    roles: [agent]',
          `    bindings: [{ host: "bearer.test:${ports.bearer}", path: /posts/*, methods: [GET] }]`,
          '    apply: { type: bearer }',
          `    source: { file: ${path.join(secretsDir, 'bearer')} }`,
        ]
      : []),
    '  - name: search-key',
    '    roles: [agent]',
    `    bindings: [{ host: "rec.test:${ports.rec}", path: /q, methods: [GET] }]`,
    '    apply: { type: query, name: api_key }',
    '    source: { env: TEST_SEARCH_KEY }',
    '',
  ].join('\n');
}

function policyCsv(): string {
  return [
    `p, agent, basic.test:${ports.basic}, /*, GET, allow`,
    `p, agent, bearer.test:${ports.bearer}, /posts/*, GET, allow`,
    `p, agent, bearer.test:${ports.bearer}, /posts/2, GET, deny`,
    `p, agent, bearer.test:${ports.bearer}, /comments, GET, allow`,
    `p, agent, rec.test:${ports.rec}, /*, *, allow`,
    `p, other, bearer.test:${ports.bearer}, /posts/*, GET, allow`,
    `p, other, rec.test:${ports.rec}, /*, *, allow`,
    '',
  ].join('\n');
}

async function startNginx(): Promise<void> {
  writeFileSync(path.join(dir, 'htpasswd'), `${BASIC_USER}:{PLAIN}${BASIC_PASS}\n`);
  writeFileSync(
    path.join(dir, 'nginx.conf'),
    `daemon off;
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  map $http_authorization $token_id { "Bearer ${TOKEN_1}" 1; "Bearer ${TOKEN_2}" 2; default 0; }
  server {
    listen 127.0.0.1:${ports.basic};
    auth_basic "forum";
    auth_basic_user_file ${path.join(dir, 'htpasswd')};
    location / { proxy_pass ${json.url}; }
  }
  server {
    listen 127.0.0.1:${ports.bearer};
    location / {
      if ($token_id = 0) { return 401; }
      add_header x-token-id $token_id always;
      proxy_pass ${json.url};
    }
  }
}
`,
  );
  nginx = spawn('nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await run('curl', ['-s', '-o', '/dev/null', `http://127.0.0.1:${ports.basic}/`]);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`nginx did not start: ${String(err)}`, { cause: err });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const url = (host: 'basic' | 'bearer' | 'rec', p: string): string => `http://${host}.test:${ports[host]}${p}`;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-creds-'));
  secretsDir = path.join(dir, 'secrets');
  policyDir = path.join(dir, 'policy');
  mkdirSync(secretsDir, { mode: 0o700 });
  mkdirSync(policyDir);
  json = await startJsonServer();
  recorder = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      res.end('recorded');
    });
  });
  await new Promise<void>((r) => recorder.listen(0, '127.0.0.1', r));
  ports = {
    basic: await freePort(),
    bearer: await freePort(),
    rec: (recorder.address() as AddressInfo).port,
  };
  await startNginx();
  writeFileSync(path.join(secretsDir, 'basic'), `${BASIC_USER}:${BASIC_PASS}\n`, { mode: 0o600 });
  writeFileSync(path.join(secretsDir, 'bearer'), `${TOKEN_1}\n`, { mode: 0o600 });
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(path.join(policyDir, 'policy.csv'), policyCsv());
  writeFileSync(path.join(policyDir, 'credentials.yaml'), credentialsYaml());
  policy = await PolicyStore.open(policyDir, { watch: false, pollIntervalMs: 0 });
  expect(policy.current(), policy.lastError() ?? '').not.toBeNull();
  vault = new CredentialVault({
    env: { TEST_SEARCH_KEY: SEARCH_KEY },
    pollIntervalMs: 0,
    onRotate: (names, version) => rotations.emit('rotate', names, version),
  });
  sessions = new SessionTable();
  for (const s of [AGENT, OTHER, PH]) {
    sessions.upsert({
      id: s.id,
      role: s.role,
      address: s.address,
      credentialSha256: sha(s.cred),
      expiresAtMs: Date.now() + 3_600_000,
      ...(s === PH ? { placeholders: PLACEHOLDERS } : {}),
    });
  }
  audit = new MemoryAuditSink();
  gateway = new EgressGateway(
    withGatewayDefaults({
      policy,
      sessions,
      audit,
      credentials: vault,
      onExfiltration: (name) => exfiltrations.push(name),
      limits: { bufferedBodyBytes: BODY_LIMIT },
      resolver: new UpstreamResolver(
        new DestinationPolicy(['127.0.0.0/8']),
        new Map([
          ['basic.test', '127.0.0.1'],
          ['bearer.test', '127.0.0.1'],
          ['rec.test', '127.0.0.1'],
        ]),
      ),
    }),
  );
  const addr = await gateway.listen(0, '127.0.0.1');
  proxy = { host: '127.0.0.1', port: addr.port };
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  vault?.close();
  await policy?.close();
  if (nginx && nginx.exitCode === null) {
    nginx.kill('SIGTERM');
    await once(nginx, 'exit');
  }
  await json?.stop();
  await new Promise((r) => recorder?.close(r));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('injection (issue 14)', () => {
  it('nginx auth_basic: the call succeeds only because the gateway adds the credential', async () => {
    const direct = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `http://127.0.0.1:${ports.basic}/posts/1`,
    ]);
    expect(direct.stdout).toBe('401');
    const r = await proxyRequest(proxy, url('basic', '/posts/1'), { auth: auth(AGENT) });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ id: 1 });
    const e = audit.events.at(-1)!;
    expect(e).toMatchObject({ decision: 'allow', reason: 'rule_allow', status: 200 });
    expect(e.credential).toEqual({ name: 'forum-basic', version: expect.stringMatching(/^[0-9a-f]{12}$/) });
  });

  it("nginx bearer check: the agent's own Authorization is overwritten", async () => {
    const r = await proxyRequest(proxy, url('bearer', '/posts/1'), {
      auth: auth(AGENT),
      headers: { authorization: 'Bearer agent-made-this-up' },
    });
    expect(r.status).toBe(200);
    expect(r.headers['x-token-id']).toBe('1');
    // Allowed, but not bound: no credential, nginx refuses.
    const unbound = await proxyRequest(proxy, url('bearer', '/comments'), { auth: auth(AGENT) });
    expect(unbound.status).toBe(401);
    expect(audit.events.at(-1)!.credential).toBeUndefined();
    // A role the credential does not list gets nothing either.
    const other = await proxyRequest(proxy, url('bearer', '/posts/1'), {
      auth: auth(OTHER),
      localAddress: OTHER.address,
    });
    expect(other.status).toBe(401);
  });

  it('a denied call gets no credential (deny overrides the binding) and reaches nothing', async () => {
    const r = await proxyRequest(proxy, url('bearer', '/posts/2'), { auth: auth(AGENT) });
    expect(r.status).toBe(403);
    expect(r.json()).toMatchObject({ error: 'egress_denied' });
    const e = audit.events.at(-1)!;
    expect(e).toMatchObject({ decision: 'deny', reason: 'rule_deny' });
    expect(e.credential).toBeUndefined();
  });

  it('a query-parameter credential replaces the sandbox parameter of that name', async () => {
    seen.length = 0;
    const r = await proxyRequest(proxy, url('rec', '/q?term=x&api_key=mine'), { auth: auth(AGENT) });
    expect(r.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.url).toBe(`/q?term=x&api_key=${SEARCH_KEY}`);
    expect(audit.events.at(-1)!.credential?.name).toBe('search-key');
  });
});

describe('known-secret leak stop (issue 14)', () => {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  it.each([
    ['in a query string', '/exfil?d=' + TOKEN_1, {}],
    ['URL-encoded in a query', '/exfil?d=' + encodeURIComponent(`${BASIC_USER}:${BASIC_PASS}`), {}],
    ['hex in the path', '/exfil/' + Buffer.from(SEARCH_KEY).toString('hex'), {}],
    ['in a custom header', '/exfil', { 'x-note': `token=${TOKEN_1}` }],
    ['base64 in a header', '/exfil', { 'x-data': b64(`{"k":"${SEARCH_KEY}"}`) }],
    ['in Authorization to an unbound endpoint', '/exfil', { authorization: `Bearer ${TOKEN_1}` }],
    ['base64url in a cookie', '/exfil', { cookie: 'c=' + Buffer.from(TOKEN_1).toString('base64url') }],
  ])('a secret %s -> 403 credential_not_bound, nothing upstream', async (_n, p, headers) => {
    seen.length = 0;
    const before = audit.events.length;
    const r = await proxyRequest(proxy, url('rec', p), { auth: auth(AGENT), headers });
    expect(r.status).toBe(403);
    expect(r.json()).toMatchObject({ error: 'credential_not_bound', sessionId: AGENT.id });
    expect(r.body).not.toContain(TOKEN_1);
    expect(seen).toHaveLength(0);
    const e = audit.events.at(-1)!;
    expect(audit.events.length).toBe(before + 1);
    expect(e).toMatchObject({ decision: 'deny', reason: 'exfiltration_attempt', status: 403 });
    expect(e.credential?.name).toMatch(/^(forum-basic|forum-bearer|search-key)$/);
    expect(e.querySha256).toBeUndefined();
  });

  it('the same secret in the header the gateway sets for this call is not a leak (it is replaced)', async () => {
    const r = await proxyRequest(proxy, url('bearer', '/posts/1'), {
      auth: auth(AGENT),
      headers: { authorization: `Bearer ${TOKEN_1}` },
    });
    expect(r.status).toBe(200);
  });

  it('a role without the binding sending the value is refused even where the rules allow', async () => {
    const r = await proxyRequest(proxy, url('bearer', '/posts/1'), {
      auth: auth(OTHER),
      localAddress: OTHER.address,
      headers: { authorization: `Bearer ${TOKEN_1}` },
    });
    expect(r.status).toBe(403);
    expect(r.json()).toMatchObject({ error: 'credential_not_bound' });
  });

  it('no secret appears anywhere in the audit', () => {
    const text = JSON.stringify(audit.events);
    for (const s of [BASIC_PASS, TOKEN_1, TOKEN_2, SEARCH_KEY, b64(`${BASIC_USER}:${BASIC_PASS}`)]) {
      expect(text).not.toContain(s);
    }
  });
});

describe('known-secret leak stop in request bodies (issue 14)', () => {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const multipart = (field: string, value: string): { body: string; type: string } => {
    const boundary = '----airlock-test-7MA4YWxkTrZu0gW';
    return {
      type: `multipart/form-data; boundary=${boundary}`,
      body:
        `--${boundary}\r\nContent-Disposition: form-data; name="${field}"\r\n\r\n${value}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n` +
        `Content-Type: application/octet-stream\r\n\r\nxyz\r\n--${boundary}--\r\n`,
    };
  };
  it.each([
    ['JSON', 'application/json', JSON.stringify({ note: 'hi', token: TOKEN_1 })],
    [
      'form URL-encoded',
      'application/x-www-form-urlencoded',
      `a=1&auth=${encodeURIComponent(`${BASIC_USER}:${BASIC_PASS}`)}`,
    ],
    ['multipart', ...((m) => [m.type, m.body] as const)(multipart('key', SEARCH_KEY))],
    ['base64 inside JSON', 'application/json', JSON.stringify({ blob: b64(`prefix ${TOKEN_1} suffix`) })],
    ['base64url', 'text/plain', Buffer.from(`..${SEARCH_KEY}`).toString('base64url')],
    ['hex', 'text/plain', Buffer.from(TOKEN_1).toString('hex')],
    [
      'HEX in multipart',
      ...((m) => [m.type, m.body] as const)(
        multipart('h', Buffer.from(SEARCH_KEY).toString('hex').toUpperCase()),
      ),
    ],
  ])('a secret in a %s body -> 403 credential_not_bound, nothing upstream', async (_n, type, body) => {
    seen.length = 0;
    const before = exfiltrations.length;
    const r = await proxyRequest(proxy, url('rec', '/upload'), {
      auth: auth(AGENT),
      method: 'POST',
      headers: { 'content-type': type },
      body,
    });
    expect(r.status).toBe(403);
    expect(r.json()).toMatchObject({ error: 'credential_not_bound', sessionId: AGENT.id });
    expect(r.json().detail).toContain('in its body');
    expect(seen).toHaveLength(0);
    expect(audit.events.at(-1)).toMatchObject({
      decision: 'deny',
      reason: 'exfiltration_attempt',
      secretFoundIn: 'body',
    });
    expect(exfiltrations.length).toBe(before + 1);
  });

  it('a body without a secret is forwarded byte for byte (chunked too)', async () => {
    seen.length = 0;
    const body = JSON.stringify({ note: 'the token is tok1-9d8c7b6a5f4e3d2c1b0 (one char short)', n: 42 });
    const r = await proxyRequest(proxy, url('rec', '/upload'), { auth: auth(AGENT), method: 'POST', body });
    expect(r.status).toBe(200);
    expect(seen[0]!.body.toString()).toBe(body);
    const chunked = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-x',
      `http://${auth(AGENT)}@127.0.0.1:${proxy.port}`,
      '-H',
      'transfer-encoding: chunked',
      '--data-binary',
      'hello chunked world',
      url('rec', '/upload'),
    ]);
    expect(chunked.stdout).toBe('200');
    expect(seen.at(-1)!.body.toString()).toBe('hello chunked world');
  });

  it(`a body over gateway.limits.bufferedBodyBytes (${BODY_LIMIT}) -> 413 body_too_large while secrets are held`, async () => {
    seen.length = 0;
    const r = await proxyRequest(proxy, url('rec', '/upload'), {
      auth: auth(AGENT),
      method: 'POST',
      body: 'a'.repeat(BODY_LIMIT + 1),
    });
    expect(r.status).toBe(413);
    expect(r.json()).toMatchObject({ error: 'body_too_large' });
    expect(seen).toHaveLength(0);
  });
});

describe('placeholders (issue 14)', () => {
  const ph = PLACEHOLDERS['forum-bearer'];
  const asPh = { auth: auth(PH), localAddress: PH.address };

  it('the placeholder in the bound header is swapped for the real value', async () => {
    const r = await proxyRequest(proxy, url('bearer', '/posts/1'), {
      ...asPh,
      headers: { authorization: `Bearer ${ph}` },
    });
    expect(r.status).toBe(200);
    expect(r.headers['x-token-id']).toBe('1');
    expect(audit.events.at(-1)!.credential?.name).toBe('forum-bearer');
    // A query placeholder where its binding sets the parameter: replaced too.
    seen.length = 0;
    const q = await proxyRequest(proxy, url('rec', `/q?api_key=${PLACEHOLDERS['search-key']}`), asPh);
    expect(q.status).toBe(200);
    expect(seen[0]!.url).toBe(`/q?api_key=${SEARCH_KEY}`);
  });

  it.each([
    [
      'to another allowed host',
      ['rec', '/anything'] as const,
      { authorization: `Bearer ${ph}` },
      'GET',
      undefined,
    ],
    [
      'in a header to an unbound path of the bound host',
      ['bearer', '/comments'] as const,
      { authorization: `Bearer ${ph}` },
      'GET',
      undefined,
    ],
    ['in a query string', ['rec', `/anything?t=${ph}`] as const, {}, 'GET', undefined],
    [
      'in a custom header, base64',
      ['rec', '/x'] as const,
      { 'x-d': Buffer.from(`:${ph}`).toString('base64') },
      'GET',
      undefined,
    ],
    [
      'in a POST body to an allowed endpoint',
      ['rec', '/upload'] as const,
      { 'content-type': 'application/json' },
      'POST',
      JSON.stringify({ t: ph }),
    ],
    ['hex in a POST body', ['rec', '/upload'] as const, {}, 'POST', Buffer.from(ph).toString('hex')],
  ])(
    'the placeholder %s -> 403 credential_not_bound, audited, counted',
    async (_n, u, headers, method, body) => {
      seen.length = 0;
      const before = exfiltrations.length;
      const r = await proxyRequest(proxy, url(u[0], u[1]), {
        ...asPh,
        headers,
        method,
        ...(body ? { body } : {}),
      });
      expect(r.status).toBe(403);
      expect(r.json()).toMatchObject({ error: 'credential_not_bound', sessionId: PH.id });
      expect(r.json().detail).toContain('placeholder of credential "forum-bearer"');
      expect(seen).toHaveLength(0);
      const e = audit.events.at(-1)!;
      expect(e).toMatchObject({ decision: 'deny', reason: 'exfiltration_attempt', sessionId: PH.id });
      expect(e.secretFoundIn).toMatch(/:placeholder$/);
      expect(e.credential?.name).toBe('forum-bearer');
      expect(exfiltrations.slice(before)).toEqual(['forum-bearer']);
    },
  );

  it('a WebSocket handshake carrying the placeholder is refused too (handshakes are scanned, never injected)', async () => {
    const before = exfiltrations.length;
    const socket = net.connect({ port: proxy.port, host: '127.0.0.1', localAddress: PH.address });
    await once(socket, 'connect');
    const host = `rec.test:${ports.rec}`;
    socket.write(
      `GET http://${host}/ws HTTP/1.1\r\nHost: ${host}\r\n` +
        `Proxy-Authorization: Basic ${Buffer.from(auth(PH)).toString('base64')}\r\n` +
        'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
        `Sec-WebSocket-Key: ${Buffer.from('0123456789abcdef').toString('base64')}\r\n` +
        `Sec-WebSocket-Protocol: ${Buffer.from(ph).toString('hex')}\r\n\r\n`,
    );
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    await once(socket, 'close');
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('credential_not_bound');
    expect(audit.events.at(-1)).toMatchObject({
      method: 'WEBSOCKET',
      reason: 'exfiltration_attempt',
      secretFoundIn: 'header:sec-websocket-protocol:placeholder',
    });
    expect(exfiltrations.length).toBe(before + 1);
  });

  it("another session's placeholder is unknown data to this one (placeholders are per session)", async () => {
    seen.length = 0;
    const r = await proxyRequest(proxy, url('rec', '/anything'), {
      auth: auth(AGENT),
      headers: { 'x-t': ph },
    });
    expect(r.status).toBe(200);
    expect(seen[0]!.headers['x-t']).toBe(ph);
  });

  it('after the kill switch the placeholder is worthless: the session is refused, and the upstream never takes it', async () => {
    sessions.revoke(PH.id);
    const r = await proxyRequest(proxy, url('bearer', '/posts/1'), {
      ...asPh,
      headers: { authorization: `Bearer ${ph}` },
    });
    expect([403, 407]).toContain(r.status);
    expect(r.headers['x-token-id']).toBeUndefined();
    // The placeholder itself opens nothing at the upstream.
    const direct = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-H',
      `authorization: Bearer ${ph}`,
      `http://127.0.0.1:${ports.bearer}/posts/1`,
    ]);
    expect(direct.stdout).toBe('401');
  });

  it('no placeholder-swapped secret appears in the audit', () => {
    const text = JSON.stringify(audit.events);
    for (const s of [BASIC_PASS, TOKEN_1, TOKEN_2, SEARCH_KEY]) expect(text).not.toContain(s);
  });
});

describe('rotation and revocation (issue 14)', () => {
  it('a changed file is used by the next request (measured)', async () => {
    const tmp = path.join(secretsDir, '.bearer.tmp');
    writeFileSync(tmp, `${TOKEN_2}\n`, { mode: 0o600 });
    const t0 = performance.now();
    renameSync(tmp, path.join(secretsDir, 'bearer')); // how Secret volumes and careful writers swap files
    // The directory watcher re-reads the file: wait for the vault's rotation, then call.
    await once(rotations, 'rotate');
    const seenAt = performance.now() - t0;
    const r = await proxyRequest(proxy, url('bearer', '/posts/1'), { auth: auth(AGENT) });
    expect(r.status).toBe(200);
    expect(r.headers['x-token-id']).toBe('2');
    const ms = performance.now() - t0;
    console.log(
      `credential rotation: file renamed -> vault holds the new value in ${seenAt.toFixed(1)} ms, ` +
        `-> upstream answered a call made with it in ${ms.toFixed(1)} ms`,
    );
    const versions = audit.events
      .filter((e) => e.credential?.name === 'forum-bearer')
      .map((e) => e.credential!.version);
    expect(new Set(versions).size).toBeGreaterThanOrEqual(2);
    // The old value is now unknown to the vault: it is no longer a "known secret".
    const old = await proxyRequest(proxy, url('rec', '/x?d=' + TOKEN_1), { auth: auth(AGENT) });
    expect(old.status).toBe(200);
  });

  it('a removed binding stops injection at once (next policy snapshot)', async () => {
    writeFileSync(path.join(policyDir, 'credentials.yaml'), credentialsYaml(false));
    const result = await policy.reload();
    expect(result.error).toBeNull();
    const r = await proxyRequest(proxy, url('bearer', '/posts/1'), { auth: auth(AGENT) });
    expect(r.status).toBe(401);
    expect(audit.events.at(-1)!.credential).toBeUndefined();
    // Still bound: basic auth keeps working.
    expect((await proxyRequest(proxy, url('basic', '/posts/1'), { auth: auth(AGENT) })).status).toBe(200);
  });
});
