/**
 * WebSocket under policy (issue 13 section 4), on loopback: the gateway in-process between a real
 * WebSocket client and real WebSocket servers (the `ws` package on both sides), over plain HTTP and
 * inside an intercepted HTTPS tunnel (wss). A handshake is decided as method WEBSOCKET on its path:
 * a GET grant, or a `*` grant, never opens a channel; other upgrades (h2c) are refused 400
 * `not_supported`, audited with the session; the kill switch and TTL expiry close open channels.
 */
import 'reflect-metadata';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import type { AuditEvent } from '../../src/audit/event.js';
import { MemoryAuditSink } from '../../src/audit/file-sink.js';
import { DestinationPolicy } from '../../src/gateway/address.js';
import { EgressGateway, withGatewayDefaults } from '../../src/gateway/proxy.js';
import { UpstreamResolver } from '../../src/gateway/resolve.js';
import { SessionTable } from '../../src/gateway/sessions.js';
import { LeafCache } from '../../src/gateway/tls/leaf-cache.js';
import { loadOrCreateCa, type CaMaterial } from '../../src/pki/ca.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore } from '../../src/policy/store.js';
import { rawExchange } from '../helpers/proxy-client.js';
import { makeTestPki } from '../helpers/tls-upstream.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

interface Sandbox {
  id: string;
  cred: string;
  address: string;
  role: string;
}
/** WEBSOCKET granted on /ws and /teapot (plain and wss). */
const S: Sandbox = {
  id: 's-streamer',
  cred: 'cred-streamer-0123456789',
  address: '127.0.0.1',
  role: 'streamer',
};
/** GET and `*` granted on the same paths, WEBSOCKET nowhere. */
const G: Sandbox = { id: 's-getter', cred: 'cred-getter-0123456789', address: '127.0.0.2', role: 'getter' };
/** Role streamer, revoked by the kill switch in its test. */
const K: Sandbox = { id: 's-killed', cred: 'cred-killed-0123456789', address: '127.0.0.3', role: 'streamer' };
/** Role streamer, revoked while its handshake is being decided. */
const R: Sandbox = { id: 's-racing', cred: 'cred-racing-0123456789', address: '127.0.0.5', role: 'streamer' };
/** Role streamer, on the gateway with a tunnel limit of 1. */
const L: Sandbox = {
  id: 's-limited',
  cred: 'cred-limited-0123456789',
  address: '127.0.0.6',
  role: 'streamer',
};
/** Role mstreamer: its channels' bytes count against a bytes budget (budgets.yaml). */
const M: Sandbox = {
  id: 's-metered',
  cred: 'cred-metered-0123456789',
  address: '127.0.0.7',
  role: 'mstreamer',
};
/** Role streamer, expired (TTL) in its test. */
const T: Sandbox = {
  id: 's-expiring',
  cred: 'cred-expiring-0123456789',
  address: '127.0.0.4',
  role: 'streamer',
};

/** A real WebSocket upstream: says hello, echoes every message, and records what it saw. */
interface WsUpstream {
  port: number;
  /** TCP connections accepted. */
  connections: number;
  /** Handshakes seen: request target and headers. */
  handshakes: { url: string; headers: http.IncomingHttpHeaders }[];
  /** Server-side channels currently open. */
  open: Set<WebSocket>;
  close(): Promise<void>;
}

async function startWsUpstream(tlsMaterial?: { cert: string; key: string }): Promise<WsUpstream> {
  const server = tlsMaterial ? https.createServer(tlsMaterial) : http.createServer();
  const wss = new WebSocketServer({ noServer: true });
  const up: WsUpstream = {
    port: 0,
    connections: 0,
    handshakes: [],
    open: new Set(),
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of up.open) c.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  server.on(tlsMaterial ? 'secureConnection' : 'connection', () => up.connections++);
  server.on('request', (_req, res) => res.writeHead(426).end('upgrade required'));
  server.on('upgrade', (req: IncomingMessage, socket: net.Socket, head: Buffer) => {
    up.handshakes.push({ url: req.url ?? '', headers: req.headers });
    if (!(req.url ?? '').startsWith('/ws')) {
      // Not a WebSocket endpoint: an ordinary answer, which the gateway relays as a response.
      socket.end("HTTP/1.1 418 I'm a teapot\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nnope!");
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      up.open.add(ws);
      ws.on('close', () => up.open.delete(ws));
      ws.on('message', (data) => ws.send(`echo:${String(data)}`));
      ws.send('hello');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.port = (server.address() as AddressInfo).port;
  return up;
}

let dir: string;
let ca: CaMaterial;
let plain: WsUpstream;
let secure: WsUpstream;
/** A wss upstream whose certificate comes from a CA the gateway does not trust. */
let untrusted: WsUpstream;
let policy: PolicyStore;
let sessions: SessionTable;
let audit: MemoryAuditSink;
let gateway: EgressGateway;
let proxyPort: number;
/** Name resolution the race test holds until the session is revoked. */
let gate: GatedResolver;

/** The gateway's resolver, except that names resolve only once `open()` was called. */
class GatedResolver extends UpstreamResolver {
  calls = 0;
  open!: () => void;
  private readonly opened = new Promise<void>((r) => (this.open = r));

  override async resolve(host: string): ReturnType<UpstreamResolver['resolve']> {
    this.calls++;
    await this.opened;
    return super.resolve(host);
  }
}

const basic = (s: Sandbox): string => 'Basic ' + Buffer.from(`${s.id}:${s.cred}`).toString('base64');
const plainUrl = (p: string): string => `http://stream.test:${plain.port}${p}`;
const secureUrl = (p: string): string => `wss://secure-stream.test:${secure.port}${p}`;

function register(s: Sandbox, ttlMs = 3_600_000): void {
  sessions.upsert({
    id: s.id,
    role: s.role,
    address: s.address,
    credentialSha256: sha(s.cred),
    expiresAtMs: Date.now() + ttlMs,
  });
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-ws-'));
  ca = await loadOrCreateCa(path.join(dir, 'ca'));
  const pki = await makeTestPki();
  plain = await startWsUpstream();
  secure = await startWsUpstream(await pki.issue('secure-stream.test'));
  untrusted = await startWsUpstream(await (await makeTestPki()).issue('untrusted-stream.test'));
  const p = plain.port;
  const s = secure.port;
  const policyDir = path.join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(
    path.join(policyDir, 'policy.csv'),
    [
      `p, streamer, stream.test:${p}, /ws, WEBSOCKET, allow`,
      `p, streamer, stream.test:${p}, /teapot, WEBSOCKET, allow`,
      `p, streamer, secure-stream.test:${s}, /ws, WEBSOCKET, allow`,
      `p, streamer, untrusted-stream.test:${untrusted.port}, /ws, WEBSOCKET, allow`,
      `p, getter, stream.test:${p}, /ws, GET, allow`,
      `p, getter, stream.test:${p}, /*, *, allow`,
      `p, getter, secure-stream.test:${s}, /ws, GET, allow`,
      `p, getter, secure-stream.test:${s}, /*, *, allow`,
      `p, mstreamer, stream.test:${p}, /ws, WEBSOCKET, allow`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    path.join(policyDir, 'budgets.yaml'),
    [
      'version: 1',
      'budgets:',
      '  - name: stream-bytes',
      '    role: mstreamer',
      `    host: stream.test:${p}`,
      '    bytesOutPerHour: 200',
      '',
    ].join('\n'),
  );
  policy = await PolicyStore.open(policyDir, { watch: false });
  expect(policy.current(), policy.lastError() ?? '').not.toBeNull();
  sessions = new SessionTable();
  for (const x of [S, G, K, T, R, L, M]) register(x);
  audit = new MemoryAuditSink();
  gateway = new EgressGateway(
    withGatewayDefaults({
      policy,
      sessions,
      audit,
      resolver: new UpstreamResolver(
        new DestinationPolicy(['127.0.0.0/8']),
        new Map([
          ['stream.test', '127.0.0.1'],
          ['secure-stream.test', '127.0.0.1'],
          ['untrusted-stream.test', '127.0.0.1'],
        ]),
      ),
      upstreamCaPem: pki.caPem,
      intercept: { leaves: new LeafCache(ca), passthrough: [] },
    }),
  );
  proxyPort = (await gateway.listen(0, '127.0.0.1')).port;
  gate = new GatedResolver(new DestinationPolicy(['127.0.0.0/8']), new Map([['stream.test', '127.0.0.1']]));
});

afterAll(async () => {
  await gateway?.close();
  gate?.open();
  policy?.close();
  await plain?.close();
  await secure?.close();
  await untrusted?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Resolves when `cond()` holds; fails after `ms` (checked every 10 ms: a bounded wait on a condition). */
async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The first audit event (from index `from` on) that matches. */
function eventWhere(from: number, match: (e: AuditEvent) => boolean): AuditEvent | undefined {
  return audit.events.slice(from).find(match);
}

/**
 * A ws client through the gateway over plain HTTP: connects to the proxy from the sandbox's address
 * and sends the handshake in absolute form (`target`, default the URL) with Proxy-Authorization.
 */
function wsPlain(who: Sandbox, url: string, target = url, port = proxyPort): WebSocket {
  return new WebSocket(url, {
    createConnection: () => net.connect({ host: '127.0.0.1', port, localAddress: who.address }) as never,
    finishRequest: (req) => {
      req.path = target;
      req.setHeader('proxy-authorization', basic(who));
      req.end();
    },
  });
}

/** Opens a CONNECT tunnel through the gateway; resolves with the socket once the 200 arrived. */
function connectTunnel(who: Sandbox, authority: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: proxyPort, localAddress: who.address });
    let got = '';
    const onData = (c: Buffer): void => {
      got += c.toString('latin1');
      if (!got.includes('\r\n\r\n')) return;
      s.off('data', onData);
      if (got.startsWith('HTTP/1.1 200')) resolve(s);
      else reject(new Error(`CONNECT refused: ${got}`));
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${basic(who)}\r\n\r\n`,
    );
  });
}

/** A ws client through the gateway's intercepted HTTPS tunnel (wss), trusting the installation CA. */
async function wsSecure(who: Sandbox, url: string): Promise<WebSocket> {
  const u = new URL(url);
  const raw = await connectTunnel(who, u.host);
  return new WebSocket(url, {
    createConnection: () =>
      tls.connect({
        socket: raw,
        servername: u.hostname,
        ca: ca.trustPem,
        ALPNProtocols: ['http/1.1'],
      }) as never,
  });
}

/** Waits for the channel to open and the upstream's hello; then records every later message. */
async function opened(ws: WebSocket): Promise<string[]> {
  const messages: string[] = [];
  ws.on('message', (d) => messages.push(String(d)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered ${res.statusCode}`)));
  });
  await until(() => messages.includes('hello'), 'the upstream hello');
  return messages;
}

/** The non-101 answer a handshake got: status, decision header and body. */
function refused(ws: WebSocket): Promise<{ status: number; decision: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => reject(new Error('the channel opened')));
    ws.once('error', () => undefined); // ws reports the aborted handshake after the response
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.once('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          decision: res.headers['x-airlock-decision'] as string | undefined,
          body,
        }),
      );
    });
  });
}

function closed(ws: WebSocket): Promise<number> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve(0);
  return new Promise((resolve) => ws.once('close', (code) => resolve(code)));
}

describe('WebSocket over plain HTTP', () => {
  it('a WEBSOCKET rule opens the channel: messages flow both ways; the upgrade and its close are audited', async () => {
    const from = audit.events.length;
    const seen = plain.handshakes.length;
    // A non-normalised path with a query: the upstream gets the normalised path the policy decided on.
    const ws = wsPlain(S, plainUrl('/ws'), plainUrl('/x/../ws?stream=1'));
    const messages = await opened(ws);
    for (const m of ['ping-1', 'ping-2']) ws.send(m);
    await until(() => messages.includes('echo:ping-2'), 'the echoes');
    expect(messages).toEqual(['hello', 'echo:ping-1', 'echo:ping-2']);

    const hs = plain.handshakes[seen]!;
    expect(hs.url).toBe('/ws?stream=1');
    expect(hs.headers['proxy-authorization']).toBeUndefined();
    expect(hs.headers.upgrade).toBe('websocket');
    expect(hs.headers['sec-websocket-key']).toMatch(/=$/);
    expect(hs.headers.host).toBe(`stream.test:${plain.port}`);

    // Open channel: not audited yet (the upgrade's exchange is finished at close, with its bytes).
    expect(eventWhere(from, (e) => e.method === 'WEBSOCKET')).toBeUndefined();
    ws.close(1000, 'done');
    expect(await closed(ws)).toBe(1000);
    await until(() => eventWhere(from, (e) => e.method === 'WEBSOCKET') !== undefined, 'the audit event');
    const e = eventWhere(from, (x) => x.method === 'WEBSOCKET')!;
    expect(e).toMatchObject({
      sessionId: S.id,
      role: 'streamer',
      method: 'WEBSOCKET',
      scheme: 'http',
      host: 'stream.test',
      port: plain.port,
      path: '/ws',
      decision: 'allow',
      reason: 'rule_allow',
      status: 101,
    });
    expect(e.rule).toContain('/ws, WEBSOCKET, allow');
    // Client frames are masked (6 bytes of header + mask for short frames): 2 pings and a close.
    expect(e.bytesOut).toBeGreaterThanOrEqual('ping-1ping-2'.length + 3 * 6);
    expect(e.bytesIn).toBeGreaterThanOrEqual('helloecho:ping-1echo:ping-2'.length + 3 * 2);
    expect(e.durationMs).toBeGreaterThan(0);
    expect(audit.events.slice(from).filter((x) => x.sessionId === S.id)).toHaveLength(1);
  });

  it('a GET grant (and a "*" grant) does not open a channel: 403 egress_denied, the upstream never contacted', async () => {
    const from = audit.events.length;
    const before = plain.connections;
    for (const p of ['/ws', '/ws/other']) {
      const r = await refused(wsPlain(G, plainUrl(p)));
      expect(r.status).toBe(403);
      expect(r.decision).toBe('deny');
      expect(JSON.parse(r.body)).toMatchObject({
        error: 'egress_denied',
        sessionId: G.id,
        role: 'getter',
        method: 'WEBSOCKET',
        url: plainUrl(p),
      });
    }
    expect(plain.connections).toBe(before);
    const events = audit.events.slice(from);
    expect(events).toHaveLength(2);
    for (const e of events) {
      expect(e).toMatchObject({
        sessionId: G.id,
        method: 'WEBSOCKET',
        decision: 'deny',
        reason: 'no_match',
        status: 403,
      });
    }
    // The same grant still lets plain GETs through: the upgrade is what is refused.
    const get = await rawExchange(
      { host: '127.0.0.1', port: proxyPort },
      `GET ${plainUrl('/ws')} HTTP/1.1\r\nHost: stream.test:${plain.port}\r\nProxy-Authorization: ${basic(G)}\r\nConnection: close\r\n\r\n`,
      G.address,
    );
    expect(get).toMatch(/^HTTP\/1\.1 426 /);
  });

  it('an upstream that does not switch protocols is relayed as a normal response', async () => {
    const from = audit.events.length;
    const r = await refused(wsPlain(S, plainUrl('/teapot')));
    expect(r).toEqual({ status: 418, decision: undefined, body: 'nope!' });
    await until(() => eventWhere(from, (e) => e.path === '/teapot') !== undefined, 'the audit event');
    expect(eventWhere(from, (e) => e.path === '/teapot')).toMatchObject({
      sessionId: S.id,
      method: 'WEBSOCKET',
      decision: 'allow',
      status: 418,
      bytesIn: 5,
    });
  });

  it('h2c is refused 400 not_supported and audited with the session, host and path', async () => {
    const from = audit.events.length;
    const before = plain.connections;
    const answer = await rawExchange(
      { host: '127.0.0.1', port: proxyPort },
      `GET ${plainUrl('/ws')} HTTP/1.1\r\nHost: stream.test:${plain.port}\r\n` +
        `Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n` +
        `Proxy-Authorization: ${basic(S)}\r\n\r\n`,
      S.address,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('x-airlock-decision: deny');
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({
      error: 'not_supported',
      sessionId: S.id,
    });
    expect(plain.connections).toBe(before);
    expect(audit.events.slice(from)).toEqual([
      expect.objectContaining({
        sessionId: S.id,
        role: 'streamer',
        method: 'GET',
        host: 'stream.test',
        port: plain.port,
        path: '/ws',
        decision: 'deny',
        reason: 'bad_request',
        status: 400,
      }),
    ]);
  });

  it('an upgrade without the session credential is 407, audited with the session at that address', async () => {
    const from = audit.events.length;
    const ws = new WebSocket(plainUrl('/ws'), {
      createConnection: () =>
        net.connect({ host: '127.0.0.1', port: proxyPort, localAddress: S.address }) as never,
      finishRequest: (req) => {
        req.path = plainUrl('/ws');
        req.end();
      },
    });
    const r = await refused(ws);
    expect(r.status).toBe(407);
    expect(audit.events.slice(from)).toEqual([
      expect.objectContaining({
        sessionId: S.id,
        method: 'WEBSOCKET',
        host: 'stream.test',
        path: '/ws',
        status: 407,
      }),
    ]);
  });

  it('the kill switch closes an open channel at once, and the close is audited with its bytes', async () => {
    const from = audit.events.length;
    const ws = wsPlain(K, plainUrl('/ws'));
    const messages = await opened(ws);
    ws.send('before-kill');
    await until(() => messages.includes('echo:before-kill'), 'the echo');
    const upstreamOpen = plain.open.size;
    expect(upstreamOpen).toBeGreaterThan(0);

    const closedAt = Date.now();
    expect(sessions.revoke(K.id)).toBeGreaterThan(0);
    await closed(ws);
    expect(Date.now() - closedAt).toBeLessThan(1_000);
    await until(() => plain.open.size === upstreamOpen - 1, 'the upstream side to close');
    await until(() => eventWhere(from, (e) => e.sessionId === K.id) !== undefined, 'the audit event');
    const e = eventWhere(from, (x) => x.sessionId === K.id)!;
    expect(e).toMatchObject({ method: 'WEBSOCKET', decision: 'allow', status: 101, path: '/ws' });
    expect(e.bytesOut).toBeGreaterThanOrEqual('before-kill'.length);
    expect(e.bytesIn).toBeGreaterThanOrEqual('helloecho:before-kill'.length);

    // And the session can open no new channel.
    const again = await refused(wsPlain(K, plainUrl('/ws')));
    expect([403, 407]).toContain(again.status);
  });

  it('a kill switch while the handshake is being decided opens no channel (403 session_expired)', async () => {
    const racing = new EgressGateway(withGatewayDefaults({ policy, sessions, audit, resolver: gate }));
    const port = (await racing.listen(0, '127.0.0.1')).port;
    try {
      const from = audit.events.length;
      const before = plain.connections;
      const ws = new WebSocket(plainUrl('/ws'), {
        createConnection: () => net.connect({ host: '127.0.0.1', port, localAddress: R.address }) as never,
        finishRequest: (req) => {
          req.path = plainUrl('/ws');
          req.setHeader('proxy-authorization', basic(R));
          req.end();
        },
      });
      const answer = refused(ws);
      await until(() => gate.calls > 0, 'the decision to reach name resolution');
      sessions.revoke(R.id);
      gate.open();
      const r = await answer;
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body)).toMatchObject({ error: 'session_expired', sessionId: R.id });
      expect(plain.connections).toBe(before);
      expect(audit.events.slice(from)).toEqual([
        expect.objectContaining({
          sessionId: R.id,
          method: 'WEBSOCKET',
          reason: 'session_expired',
          status: 403,
        }),
      ]);
    } finally {
      await racing.close();
    }
  });

  it('TTL expiry closes an open channel (the gateway sweep revokes expired sessions)', async () => {
    const ws = wsPlain(T, plainUrl('/ws'));
    await opened(ws);
    register(T, -1); // the control plane's record now says the TTL ran out
    expect(sessions.sweepExpired()).toBe(1);
    await closed(ws);
    await until(() => audit.events.some((e) => e.sessionId === T.id && e.status === 101), 'the audit event');
  });
});

describe('WebSocket inside an intercepted HTTPS tunnel (wss)', () => {
  it('a WEBSOCKET rule opens the channel to the TLS upstream (verified with the configured CA)', async () => {
    const from = audit.events.length;
    const ws = await wsSecure(S, secureUrl('/ws'));
    const messages = await opened(ws);
    ws.send('over-tls');
    await until(() => messages.includes('echo:over-tls'), 'the echo');
    ws.close(1000);
    await closed(ws);
    await until(() => eventWhere(from, (e) => e.method === 'WEBSOCKET') !== undefined, 'the audit event');
    expect(eventWhere(from, (e) => e.method === 'WEBSOCKET')).toMatchObject({
      sessionId: S.id,
      scheme: 'https',
      host: 'secure-stream.test',
      port: secure.port,
      path: '/ws',
      decision: 'allow',
      status: 101,
    });
    expect(secure.handshakes.at(-1)!.headers['proxy-authorization']).toBeUndefined();
  });

  it('an upstream certificate the gateway does not trust: 502 upstream_tls_error, no channel', async () => {
    const from = audit.events.length;
    const url = `wss://untrusted-stream.test:${untrusted.port}/ws`;
    const r = await refused(await wsSecure(S, url));
    expect(r.status).toBe(502);
    expect(r.decision).toBe('upstream-error');
    expect(JSON.parse(r.body)).toMatchObject({ error: 'upstream_tls_error', sessionId: S.id });
    expect(untrusted.open.size).toBe(0);
    await until(() => eventWhere(from, (e) => e.method === 'WEBSOCKET') !== undefined, 'the audit event');
    expect(eventWhere(from, (e) => e.method === 'WEBSOCKET')).toMatchObject({
      host: 'untrusted-stream.test',
      decision: 'allow',
      reason: 'upstream_tls_error',
      status: 502,
    });
  });

  it('a GET / "*" grant inside the tunnel does not open a channel: 403, the upstream never contacted', async () => {
    const from = audit.events.length;
    const before = secure.connections;
    const r = await refused(await wsSecure(G, secureUrl('/ws')));
    expect(r.status).toBe(403);
    expect(r.decision).toBe('deny');
    expect(JSON.parse(r.body)).toMatchObject({
      error: 'egress_denied',
      method: 'WEBSOCKET',
      sessionId: G.id,
    });
    expect(secure.connections).toBe(before);
    expect(eventWhere(from, (e) => e.method === 'WEBSOCKET')).toMatchObject({
      sessionId: G.id,
      scheme: 'https',
      host: 'secure-stream.test',
      path: '/ws',
      decision: 'deny',
      status: 403,
    });
  });

  it('h2c inside the tunnel is refused 400 not_supported, audited with the tunnel session', async () => {
    const from = audit.events.length;
    const raw = await connectTunnel(S, `secure-stream.test:${secure.port}`);
    const t = tls.connect({ socket: raw, servername: 'secure-stream.test', ca: ca.trustPem });
    const chunks: Buffer[] = [];
    t.on('data', (c: Buffer) => chunks.push(c));
    const done = new Promise<void>((r) => t.once('close', () => r()));
    t.once('secureConnect', () =>
      t.write(
        `GET /ws HTTP/1.1\r\nHost: secure-stream.test:${secure.port}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n`,
      ),
    );
    await done;
    const answer = Buffer.concat(chunks).toString('utf8');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('"not_supported"');
    expect(eventWhere(from, (e) => e.status === 400)).toMatchObject({
      sessionId: S.id,
      method: 'GET',
      scheme: 'https',
      host: 'secure-stream.test',
      path: '/ws',
      decision: 'deny',
    });
  });
});

describe('WebSocket channels under the per-session limits and budgets', () => {
  let limited: EgressGateway;
  let limitedPort: number;
  beforeAll(async () => {
    limited = new EgressGateway(
      withGatewayDefaults({
        policy,
        sessions,
        audit,
        resolver: new UpstreamResolver(
          new DestinationPolicy(['127.0.0.0/8']),
          new Map([['stream.test', '127.0.0.1']]),
        ),
        limits: { tunnels: 1 },
      }),
    );
    limitedPort = (await limited.listen(0, '127.0.0.1')).port;
  });
  afterAll(async () => {
    await limited?.close();
  });

  it('a plain channel counts as a tunnel: over gateway.limits.tunnels the handshake (and a CONNECT) get 429', async () => {
    const first = wsPlain(L, plainUrl('/ws'), plainUrl('/ws'), limitedPort);
    await opened(first);
    const r = await refused(wsPlain(L, plainUrl('/ws'), plainUrl('/ws'), limitedPort));
    expect(r.status).toBe(429);
    expect(r.decision).toBe('deny');
    expect(JSON.parse(r.body)).toMatchObject({ error: 'limit_exceeded', limit: 'tunnels', sessionId: L.id });
    const connect = await rawExchange(
      { host: '127.0.0.1', port: limitedPort },
      `CONNECT stream.test:${plain.port} HTTP/1.1\r\nHost: stream.test:${plain.port}\r\n` +
        `Proxy-Authorization: ${basic(L)}\r\n\r\n`,
      L.address,
    );
    expect(connect).toMatch(/^HTTP\/1\.1 429 /);
    expect(connect).toContain('"limit":"tunnels"');
    // Closing the channel frees the slot (the count drops when the gateway's socket closes: each
    // further attempt is a whole handshake, at most 50).
    first.close(1000);
    await closed(first);
    let status = 0;
    for (let attempt = 0; attempt < 50 && status !== 101; attempt++) {
      const ws = wsPlain(L, plainUrl('/ws'), plainUrl('/ws'), limitedPort);
      status = await new Promise<number>((resolve) => {
        ws.once('open', () => resolve(101));
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.once('error', () => resolve(0));
      });
      ws.terminate();
    }
    expect(status).toBe(101);
  });

  it("a channel's bytes towards the upstream count against a bytes budget: past it the channel is closed, audited budget_exceeded", async () => {
    const from = audit.events.length;
    const ws = wsPlain(M, plainUrl('/ws'));
    const messages = await opened(ws);
    ws.send('small');
    await until(() => messages.includes('echo:small'), 'the echo');
    // stream-bytes: 200 bytes per hour; this frame takes the channel past it.
    ws.send('x'.repeat(300));
    await closed(ws);
    expect(messages).not.toContain(`echo:${'x'.repeat(300)}`);
    const mine = (e: AuditEvent): boolean => e.method === 'WEBSOCKET' && e.sessionId === M.id;
    await until(() => eventWhere(from, mine) !== undefined, 'the audit event');
    const e = eventWhere(from, mine)!;
    expect(e).toMatchObject({ sessionId: M.id, decision: 'deny', reason: 'budget_exceeded', status: 101 });
    expect(e.bytesOut).toBeLessThanOrEqual(200);
    // The budget is used up: the next handshake is refused before any upstream contact.
    const r = await refused(wsPlain(M, plainUrl('/ws')));
    expect(r.status).toBe(429);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'budget_exceeded', budget: 'stream-bytes' });
  });
});
