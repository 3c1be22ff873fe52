/**
 * Issue 13 section 2, "One session can starve every other session": per-session limits, fairness on
 * a shared upstream, client timeouts, denied uploads closed at once, and the policy's budgets — on the
 * gateway in-process, loopback only. Sessions are simulated by source addresses (127.0.0.x).
 *
 * No timing is asserted: the fairness test checks the structural property (another session's calls
 * complete while one session holds every connection of its pool with uploads that do not end), and
 * the waits are for events (a response, a close, the upstream seeing a request).
 */
import 'reflect-metadata';
import { createHash } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { MemoryAuditSink } from '../../src/audit/file-sink.js';
import type { GatewayLimitsInput } from '../../src/config/schema.js';
import { DestinationPolicy } from '../../src/gateway/address.js';
import { EgressGateway, withGatewayDefaults } from '../../src/gateway/proxy.js';
import { UpstreamResolver } from '../../src/gateway/resolve.js';
import { SessionTable } from '../../src/gateway/sessions.js';
import { LeafCache } from '../../src/gateway/tls/leaf-cache.js';
import { loadOrCreateCa, type CaMaterial } from '../../src/pki/ca.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore } from '../../src/policy/store.js';
import { proxyRequest, type ProxyTarget } from '../helpers/proxy-client.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const basic = (auth: string): string => 'Basic ' + Buffer.from(auth).toString('base64');

interface Sess {
  id: string;
  cred: string;
  address: string;
  role: string;
}
const A: Sess = { id: 's-hog', cred: 'cred-hog-0123456789', address: '127.0.0.1', role: 'worker' };
const B: Sess = { id: 's-other', cred: 'cred-other-0123456789', address: '127.0.0.2', role: 'worker' };
const C: Sess = { id: 's-budget', cred: 'cred-budget-0123456789', address: '127.0.0.3', role: 'metered' };
const D: Sess = { id: 's-budget2', cred: 'cred-budget2-0123456789', address: '127.0.0.4', role: 'metered' };
const auth = (s: Sess): string => `${s.id}:${s.cred}`;

/** The upstream: `/sink` reads a request body to its end, `/fast` answers at once. */
class Upstream extends EventEmitter {
  server = http.createServer((req, res) => {
    if (req.url?.startsWith('/sink')) {
      this.open++;
      this.emit('upload', this.open);
      let bytes = 0;
      req.on('data', (c: Buffer) => (bytes += c.length));
      req.on('end', () => {
        this.open--;
        res.end(JSON.stringify({ bytes }));
      });
      req.on('close', () => {
        if (!req.complete) {
          this.open--;
          this.aborted++;
          this.emit('aborted');
        }
      });
      return;
    }
    res.end('ok');
  });
  /** Uploads the upstream is receiving now. */
  open = 0;
  aborted = 0;
  port = 0;
  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }
  /** Resolves once `n` uploads are open at the same time. */
  async openUploads(n: number): Promise<void> {
    while (this.open < n) await once(this, 'upload');
  }
  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** A memory sink that also announces each event (waits on audit events, not on time). */
class WatchedSink extends MemoryAuditSink {
  readonly bus = new EventEmitter();
  override emit(event: AuditEvent): void {
    super.emit(event);
    this.bus.emit('event', event);
  }
  /** Resolves with the first event (already recorded or to come) that `match` accepts. */
  async next(match: (e: AuditEvent) => boolean): Promise<AuditEvent> {
    const seen = this.events.find(match);
    if (seen) return seen;
    for (;;) {
      const [e] = (await once(this.bus, 'event')) as [AuditEvent];
      if (match(e)) return e;
    }
  }
}

let upstream: Upstream;
let policyDir: string;
let policy: PolicyStore;
let sessions: SessionTable;
/** The installation CA of gateways that intercept HTTPS (`gatewayWith(…, {intercept: true})`). */
let ca: CaMaterial;
const opened: EgressGateway[] = [];

function writePolicy(dir: string, port: number): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(
    path.join(dir, 'policy.csv'),
    [
      `p, worker, up.test:${port}, /*, GET, allow`,
      `p, worker, up.test:${port}, /sink, POST, allow`,
      `p, worker, up.test:${port}, /, CONNECT, allow`,
      `p, metered, up.test:${port}, /*, GET, allow`,
      `p, metered, up.test:${port}, /sink, POST, allow`,
      `p, metered, up.test:${port}, /, CONNECT, allow`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    path.join(dir, 'budgets.yaml'),
    [
      'version: 1',
      'budgets:',
      '  - name: metered-calls',
      '    role: metered',
      `    host: up.test:${port}`,
      '    methods: [GET]',
      '    requestsPerMinute: 3',
      '  - name: metered-uploads',
      '    role: metered',
      `    host: up.test:${port}`,
      '    bytesOutPerHour: 100',
      '',
    ].join('\n'),
  );
}

/**
 * A gateway with its own limits, sharing the policy, sessions and upstream. Without `intercept`, a
 * CONNECT a rule grants is a passthrough tunnel; with it, tunnels are intercepted (installation CA).
 */
async function gatewayWith(
  limits: GatewayLimitsInput,
  opts: { intercept?: boolean } = {},
): Promise<{
  proxy: ProxyTarget;
  audit: WatchedSink;
  gateway: EgressGateway;
}> {
  const audit = new WatchedSink();
  const gateway = new EgressGateway(
    withGatewayDefaults({
      policy,
      sessions,
      audit,
      resolver: new UpstreamResolver(
        new DestinationPolicy(['127.0.0.0/8']),
        new Map([['up.test', '127.0.0.1']]),
      ),
      limits,
      ...(opts.intercept ? { intercept: { leaves: new LeafCache(ca), passthrough: [] } } : {}),
    }),
  );
  opened.push(gateway);
  const addr = await gateway.listen(0, '127.0.0.1');
  return { proxy: { host: '127.0.0.1', port: addr.port }, audit, gateway };
}

/** A chunked POST to `/sink` through the proxy that stays open until `end()`. */
function upload(
  proxy: ProxyTarget,
  s: Sess,
): {
  response: Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>;
  end(): void;
  write(s: string): void;
} {
  const req = http.request({
    host: proxy.host,
    port: proxy.port,
    method: 'POST',
    path: `http://up.test:${upstream.port}/sink`,
    headers: {
      host: `up.test:${upstream.port}`,
      'proxy-authorization': basic(auth(s)),
      'transfer-encoding': 'chunked',
    },
    localAddress: s.address,
    agent: false,
  });
  const response = new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>(
    (resolve, reject) => {
      req.once('error', reject);
      req.once('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.once('error', reject);
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      });
    },
  );
  req.write('first chunk');
  return { response, end: () => req.end('last chunk'), write: (s: string) => void req.write(s) };
}

/** Opens a raw socket from `localAddress`; resolves once connected. */
async function rawSocket(proxy: ProxyTarget, localAddress: string): Promise<net.Socket> {
  const s = net.connect({ host: proxy.host, port: proxy.port, localAddress });
  await once(s, 'connect');
  return s;
}

/** Everything the server sends on `s` until it ends or closes the connection. */
function readAll(s: net.Socket): Promise<{ text: string; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let ended = false;
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => (ended = true));
    s.once('error', () => undefined);
    s.once('close', () => resolve({ text: Buffer.concat(chunks).toString('utf8'), closedByServer: ended }));
  });
}

beforeAll(async () => {
  upstream = new Upstream();
  await upstream.start();
  policyDir = mkdtempSync(path.join(tmpdir(), 'airlock-limits-'));
  ca = await loadOrCreateCa(path.join(policyDir, '..', `${path.basename(policyDir)}-ca`));
  writePolicy(policyDir, upstream.port);
  policy = await PolicyStore.open(policyDir, { watch: false, pollIntervalMs: 0 });
  expect(policy.current(), policy.lastError() ?? '').not.toBeNull();
  expect(policy.current()!.budgets.size).toBe(2);
  sessions = new SessionTable();
  for (const s of [A, B, C, D]) {
    sessions.upsert({
      id: s.id,
      role: s.role,
      address: s.address,
      credentialSha256: sha(s.cred),
      expiresAtMs: Date.now() + 3_600_000,
    });
  }
});

afterAll(async () => {
  await Promise.all(opened.map((g) => g.close()));
  await upstream?.close();
  await policy?.close();
  if (policyDir) {
    rmSync(policyDir, { recursive: true, force: true });
    rmSync(`${policyDir}-ca`, { recursive: true, force: true });
  }
});

describe('fairness on a shared upstream (issue 13 section 2)', () => {
  it("one session's uploads that never end do not hold up another session's calls to the same upstream", async () => {
    const { proxy } = await gatewayWith({
      upstreamConnectionsPerOrigin: 4,
      concurrentRequests: 32,
      bodyMinBytesPerSecond: 0,
    });
    // A fills its whole pool (4 connections) and queues 2 more behind it: 6 uploads, none ends.
    const hog = Array.from({ length: 6 }, () => upload(proxy, A));
    await upstream.openUploads(4);
    // B's calls to the same upstream all complete while A's uploads are still open.
    const others = await Promise.all(
      Array.from({ length: 20 }, () =>
        proxyRequest(proxy, `http://up.test:${upstream.port}/fast`, {
          auth: auth(B),
          localAddress: B.address,
        }),
      ),
    );
    expect(others.map((r) => r.status)).toEqual(Array(20).fill(200));
    // A got exactly its share: the 5th and 6th upload wait in A's own pool, not in B's.
    expect(upstream.open).toBe(4);
    for (const h of hog) h.end();
    const done = await Promise.all(hog.map((h) => h.response));
    expect(done.map((r) => r.status)).toEqual(Array(6).fill(200));
  });
});

describe('fairness, functional part: one session trickling uploads up to its limits', () => {
  it("another session's calls all complete (no head-of-line blocking, no timeouts) while one session trickles uploads at its limit", async () => {
    const { proxy, audit } = await gatewayWith({
      concurrentRequests: 8,
      upstreamConnectionsPerOrigin: 4,
      // Slow but legal: 1 byte every 50 ms is 20 B/s, above this minimum, so no upload is cut.
      bodyMinBytesPerSecond: 5,
      bodyRateWindowMs: 1_000,
    });
    const hog = Array.from({ length: 8 }, () => upload(proxy, A));
    await upstream.openUploads(4);
    // A is at its limit of requests in flight: one more is refused, not queued.
    const over = await proxyRequest(proxy, `http://up.test:${upstream.port}/fast`, {
      auth: auth(A),
      localAddress: A.address,
    });
    expect(over.status).toBe(429);
    expect(over.json()).toMatchObject({ error: 'limit_exceeded', limit: 'concurrentRequests' });
    // A keeps trickling (bounded: until B is done, at most 2,000 ticks) while B calls the same upstream.
    let ticks = 0;
    let trickling = true;
    const trickle = setInterval(() => {
      if (!trickling || ticks++ > 2_000) return clearInterval(trickle);
      for (const h of hog) h.write('x');
    }, 50);
    const others: number[] = [];
    // 5 at a time: B stays below its own limit of 8 in flight (the same limits apply to every session).
    for (let round = 0; round < 20; round++) {
      const batch = await Promise.all(
        Array.from({ length: 5 }, () =>
          proxyRequest(proxy, `http://up.test:${upstream.port}/fast`, {
            auth: auth(B),
            localAddress: B.address,
          }),
        ),
      );
      others.push(...batch.map((r) => r.status));
    }
    trickling = false;
    clearInterval(trickle);
    expect(others).toEqual(Array(100).fill(200));
    // A's uploads were never cut or timed out: each ends with the upstream's answer.
    for (const h of hog) h.end();
    const done = await Promise.all(hog.map((h) => h.response));
    expect(done.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(ticks).toBeGreaterThan(0);
    const failures = audit.events.filter((e) =>
      ['client_timeout', 'upstream_error', 'upstream_tls_error'].includes(e.reason),
    );
    expect(failures).toEqual([]);
    expect(audit.events.filter((e) => e.sessionId === B.id && e.status === 200)).toHaveLength(100);
  });
});

describe('per-session limits: 429 limit_exceeded with Retry-After, audited', () => {
  it('concurrent requests: the one over the limit is refused, other sessions are not', async () => {
    const { proxy, audit } = await gatewayWith({ concurrentRequests: 2, bodyMinBytesPerSecond: 0 });
    const held = [upload(proxy, A), upload(proxy, A)];
    await upstream.openUploads(2);
    const over = await proxyRequest(proxy, `http://up.test:${upstream.port}/fast`, {
      auth: auth(A),
      localAddress: A.address,
    });
    expect(over.status).toBe(429);
    expect(over.headers['retry-after']).toBe('1');
    expect(over.headers['x-airlock-decision']).toBe('deny');
    expect(over.json()).toMatchObject({
      error: 'limit_exceeded',
      limit: 'concurrentRequests',
      sessionId: A.id,
    });
    const other = await proxyRequest(proxy, `http://up.test:${upstream.port}/fast`, {
      auth: auth(B),
      localAddress: B.address,
    });
    expect(other.status).toBe(200);
    for (const h of held) h.end();
    await Promise.all(held.map((h) => h.response));
    // Released: A may call again.
    const again = await proxyRequest(proxy, `http://up.test:${upstream.port}/fast`, {
      auth: auth(A),
      localAddress: A.address,
    });
    expect(again.status).toBe(200);
    const ev = audit.events.find((e) => e.reason === 'limit_exceeded');
    expect(ev).toMatchObject({ sessionId: A.id, decision: 'deny', status: 429, path: '/fast' });
  });

  it('connections: a connection over the limit gets 429 and is closed', async () => {
    const { proxy, audit } = await gatewayWith({ connections: 2 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    // Two connections, each kept alive after a request.
    const first = await Promise.all(
      [0, 1].map(() =>
        proxyRequest(proxy, `http://up.test:${upstream.port}/fast`, {
          auth: auth(A),
          localAddress: A.address,
          agent,
        }),
      ),
    );
    expect(first.map((r) => r.status)).toEqual([200, 200]);
    const s = await rawSocket(proxy, A.address);
    const answer = readAll(s);
    s.write(
      `GET http://up.test:${upstream.port}/fast HTTP/1.1\r\nHost: up.test:${upstream.port}\r\n` +
        `Proxy-Authorization: ${basic(auth(A))}\r\n\r\n`,
    );
    const { text, closedByServer } = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 429 /);
    expect(text).toMatch(/retry-after: 1/i);
    expect(text).toContain('"limit":"connections"');
    expect(closedByServer).toBe(true);
    // Another session is not affected.
    const other = await proxyRequest(proxy, `http://up.test:${upstream.port}/fast`, {
      auth: auth(B),
      localAddress: B.address,
    });
    expect(other.status).toBe(200);
    agent.destroy();
    expect(audit.events.filter((e) => e.reason === 'limit_exceeded')).toHaveLength(1);
  });

  it('tunnels: a CONNECT over the limit gets 429', async () => {
    const { proxy, audit } = await gatewayWith({ tunnels: 1 });
    const connect = `CONNECT up.test:${upstream.port} HTTP/1.1\r\nHost: up.test:${upstream.port}\r\nProxy-Authorization: ${basic(auth(A))}\r\n\r\n`;
    const t1 = await rawSocket(proxy, A.address);
    t1.write(connect);
    const [established] = (await once(t1, 'data')) as [Buffer];
    expect(established.toString()).toMatch(/^HTTP\/1\.1 200 /);
    const t2 = await rawSocket(proxy, A.address);
    const answer = readAll(t2);
    t2.write(connect);
    const { text } = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 429 Too Many Requests/);
    expect(text).toContain('"limit":"tunnels"');
    expect(audit.events.find((e) => e.reason === 'limit_exceeded')).toMatchObject({
      method: 'CONNECT',
      sessionId: A.id,
      status: 429,
    });
    // Closing the first tunnel frees the slot once the gateway has closed its side (the tunnel is
    // audited then; the count drops on the socket's close, which may come a loop turn later: each
    // further attempt is a whole CONNECT exchange, at most 50).
    t1.destroy();
    await audit.next((e) => e.method === 'CONNECT' && e.decision === 'allow');
    let reply = '';
    for (let attempt = 0; attempt < 50; attempt++) {
      const t3 = await rawSocket(proxy, A.address);
      t3.write(connect);
      const [data] = (await once(t3, 'data')) as [Buffer];
      reply = data.toString();
      t3.destroy();
      if (!reply.includes(' 429 ')) break;
    }
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
  });
});

describe('client timeouts and request bodies: 408 request_timeout, audited client_timeout', () => {
  it('a body below the minimum rate is cut off: 408, upstream call aborted, connection closed', async () => {
    const { proxy, audit } = await gatewayWith({ bodyMinBytesPerSecond: 10_000, bodyRateWindowMs: 200 });
    const aborted = once(upstream, 'aborted');
    const s = await rawSocket(proxy, A.address);
    const answer = readAll(s);
    s.write(
      `POST http://up.test:${upstream.port}/sink HTTP/1.1\r\nHost: up.test:${upstream.port}\r\n` +
        `Proxy-Authorization: ${basic(auth(A))}\r\nContent-Length: 1000000\r\n\r\n` +
        'a few bytes, then nothing',
    );
    const { text, closedByServer } = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(text).toContain('"error":"request_timeout"');
    expect(text).toContain('bodyMinBytesPerSecond');
    expect(closedByServer).toBe(true);
    await aborted;
    expect(audit.events.at(-1)).toMatchObject({
      reason: 'client_timeout',
      decision: 'deny',
      status: 408,
      sessionId: A.id,
      path: '/sink',
    });
  });

  it('a body taking longer than bodyMaxMs is cut off even at a good rate', async () => {
    const { proxy, audit } = await gatewayWith({ bodyMinBytesPerSecond: 0, bodyMaxMs: 300 });
    const s = await rawSocket(proxy, A.address);
    const answer = readAll(s);
    s.write(
      `POST http://up.test:${upstream.port}/sink HTTP/1.1\r\nHost: up.test:${upstream.port}\r\n` +
        `Proxy-Authorization: ${basic(auth(A))}\r\nTransfer-Encoding: chunked\r\n\r\n`,
    );
    // Keeps sending (bounded: at most 100 chunks) until the gateway closes.
    let sent = 0;
    const pump = setInterval(() => {
      if (s.destroyed || sent++ > 100) return clearInterval(pump);
      s.write('400\r\n' + 'x'.repeat(1024) + '\r\n');
    }, 20);
    const { text } = await answer;
    clearInterval(pump);
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(text).toContain('within 300 ms');
    expect(audit.events.at(-1)).toMatchObject({ reason: 'client_timeout', status: 408 });
  });

  it('request headers not finished within clientHeadersTimeoutMs: 408 and closed', async () => {
    const { proxy, audit } = await gatewayWith({ clientHeadersTimeoutMs: 300, clientRequestTimeoutMs: 600 });
    const s = await rawSocket(proxy, A.address);
    const answer = readAll(s);
    s.write(`GET http://up.test:${upstream.port}/fast HTTP/1.1\r\nHost: up.test:${upstream.port}\r\n`);
    const { text, closedByServer } = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 408 Request Timeout/);
    expect(closedByServer).toBe(true);
    expect(audit.events.at(-1)).toMatchObject({ reason: 'client_timeout', status: 408, sessionId: A.id });
  });
});

describe('client timeouts inside an intercepted tunnel (as on the plain path)', () => {
  /** A CONNECT to up.test and a TLS session inside it, trusting the installation CA. */
  async function tunnel(proxy: ProxyTarget): Promise<tls.TLSSocket> {
    const raw = await rawSocket(proxy, A.address);
    raw.write(
      `CONNECT up.test:${upstream.port} HTTP/1.1\r\nHost: up.test:${upstream.port}\r\n` +
        `Proxy-Authorization: ${basic(auth(A))}\r\n\r\n`,
    );
    const [established] = (await once(raw, 'data')) as [Buffer];
    expect(established.toString()).toMatch(/^HTTP\/1\.1 200 /);
    const t = tls.connect({
      socket: raw,
      servername: 'up.test',
      ca: ca.trustPem,
      ALPNProtocols: ['http/1.1'],
    });
    await once(t, 'secureConnect');
    return t;
  }

  it('request headers not finished within clientHeadersTimeoutMs: 408, closed, audited with the tunnel session', async () => {
    const { proxy, audit } = await gatewayWith(
      { clientHeadersTimeoutMs: 300, clientRequestTimeoutMs: 600 },
      { intercept: true },
    );
    const t = await tunnel(proxy);
    const answer = readAll(t as unknown as net.Socket);
    t.write(`GET /fast HTTP/1.1\r\nHost: up.test:${upstream.port}\r\n`); // never finished
    const { text } = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 408 Request Timeout/);
    expect(text).toContain('"error":"request_timeout"');
    const e = await audit.next((x) => x.reason === 'client_timeout');
    expect(e).toMatchObject({
      status: 408,
      decision: 'deny',
      sessionId: A.id,
      scheme: 'https',
      host: 'up.test',
    });
    // The tunnel itself is audited when it closes, with the one request attempt inside.
    await audit.next((x) => x.method === 'CONNECT' && x.decision === 'allow');
  });
});

describe('passthrough tunnels count against bytes budgets', () => {
  it('bytes sent through a passthrough tunnel are counted: the tunnel is closed once past the budget, the next CONNECT gets 429', async () => {
    // No interception: the CONNECT that role metered is granted is relayed unopened.
    const { proxy, audit } = await gatewayWith({});
    const connect = `CONNECT up.test:${upstream.port} HTTP/1.1\r\nHost: up.test:${upstream.port}\r\nProxy-Authorization: ${basic(auth(D))}\r\n\r\n`;
    const t = await rawSocket(proxy, D.address);
    t.write(connect);
    const [established] = (await once(t, 'data')) as [Buffer];
    expect(established.toString()).toMatch(/^HTTP\/1\.1 200 /);
    // Within the budget (metered-uploads: 100 bytes per hour): a request through the tunnel.
    const get = `GET /fast HTTP/1.1\r\nHost: up.test:${upstream.port}\r\n\r\n`;
    expect(get.length).toBeLessThan(100);
    t.write(get);
    const [first] = (await once(t, 'data')) as [Buffer];
    expect(first.toString()).toMatch(/^HTTP\/1\.1 200 OK/);
    // Then past it: the gateway closes the tunnel rather than relay these bytes.
    const answer = readAll(t);
    const aborted = upstream.aborted;
    t.write('POST /sink HTTP/1.1\r\nHost: up.test\r\nContent-Length: 80\r\n\r\n' + 'z'.repeat(80));
    const { text } = await answer;
    expect(text).toBe(''); // nothing more: the POST never reached the upstream
    expect(upstream.aborted).toBe(aborted);
    const e = await audit.next((x) => x.method === 'CONNECT' && x.sessionId === D.id);
    expect(e).toMatchObject({ decision: 'deny', reason: 'budget_exceeded', status: 200 });
    expect(e.bytesOut).toBe(get.length);
    const again = await rawSocket(proxy, D.address);
    const refusal = readAll(again);
    again.write(connect);
    const r = await refusal;
    expect(r.text).toMatch(/^HTTP\/1\.1 429 /);
    expect(r.text).toContain('"budget":"metered-uploads"');
  });
});

describe('a denied request with a body still arriving', () => {
  it('gets its 403 and the connection closed at once, while the client is still sending', async () => {
    const { proxy, audit } = await gatewayWith({ bodyMinBytesPerSecond: 0 });
    const s = await rawSocket(proxy, A.address);
    const answer = readAll(s);
    // A 1 GB POST the policy denies (worker may not POST to /denied), trickled.
    s.write(
      `POST http://up.test:${upstream.port}/denied HTTP/1.1\r\nHost: up.test:${upstream.port}\r\n` +
        `Proxy-Authorization: ${basic(auth(A))}\r\nContent-Length: 1000000000\r\n\r\nxxxx`,
    );
    let sent = 0;
    const trickle = setInterval(() => {
      if (s.destroyed || sent++ > 200) return clearInterval(trickle);
      s.write('x');
    }, 10);
    const { text, closedByServer } = await answer;
    clearInterval(trickle);
    expect(text).toMatch(/^HTTP\/1\.1 403 /);
    expect(text).toMatch(/connection: close/i);
    expect(closedByServer).toBe(true);
    expect(sent).toBeLessThan(200); // closed long before the client stopped
    expect(audit.events.at(-1)).toMatchObject({ decision: 'deny', status: 403, path: '/denied' });
  });

  it('a denied request without a body keeps its keep-alive connection', async () => {
    const { proxy } = await gatewayWith({});
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const url = `http://up.test:${upstream.port}/`;
    const r1 = await proxyRequest(proxy, url, {
      method: 'DELETE',
      auth: auth(A),
      localAddress: A.address,
      agent,
    });
    expect(r1.status).toBe(403);
    expect(r1.headers.connection).not.toBe('close');
    agent.destroy();
  });
});

describe('budgets (budgets.yaml): 429 budget_exceeded with Retry-After, audited', () => {
  it('requests per minute, per session', async () => {
    const { proxy, audit } = await gatewayWith({});
    const url = `http://up.test:${upstream.port}/fast`;
    for (let i = 0; i < 3; i++) {
      const r = await proxyRequest(proxy, url, { auth: auth(C), localAddress: C.address });
      expect(r.status).toBe(200);
    }
    const over = await proxyRequest(proxy, url, { auth: auth(C), localAddress: C.address });
    expect(over.status).toBe(429);
    expect(over.headers['x-airlock-decision']).toBe('deny');
    const retry = Number(over.headers['retry-after']);
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);
    expect(over.json()).toMatchObject({
      error: 'budget_exceeded',
      budget: 'metered-calls',
      sessionId: C.id,
      role: 'metered',
      method: 'GET',
      url,
      policyVersion: policy.current()!.version,
      retryAfterSeconds: retry,
    });
    expect(over.json<{ hint: string }>().hint).toContain('budgets.yaml');
    expect(audit.events.at(-1)).toMatchObject({
      reason: 'budget_exceeded',
      decision: 'deny',
      status: 429,
      sessionId: C.id,
    });
    // per: session — another session of the same role has its own counter.
    const other = await proxyRequest(proxy, url, { auth: auth(D), localAddress: D.address });
    expect(other.status).toBe(200);
  });

  it('request-body bytes per hour: a declared body that would cross the budget is refused', async () => {
    const { proxy, audit } = await gatewayWith({});
    const url = `http://up.test:${upstream.port}/sink`;
    const body = 'y'.repeat(60);
    const r1 = await proxyRequest(proxy, url, {
      method: 'POST',
      body,
      auth: auth(C),
      localAddress: C.address,
    });
    expect(r1.status).toBe(200);
    const r2 = await proxyRequest(proxy, url, {
      method: 'POST',
      body,
      auth: auth(C),
      localAddress: C.address,
    });
    expect(r2.status).toBe(429);
    expect(r2.json()).toMatchObject({ error: 'budget_exceeded', budget: 'metered-uploads' });
    expect(Number(r2.headers['retry-after'])).toBeGreaterThan(60);
    expect(audit.events.at(-1)).toMatchObject({ reason: 'budget_exceeded', path: '/sink' });
  });
});
