/**
 * CONNECT tunnels after the decision (decide.ts): an intercepted tunnel is terminated with a leaf of
 * the installation CA and its requests are served by the gateway's inner HTTP server, each decided
 * on its own (docs/tls.md); a passthrough tunnel (a rule grants method CONNECT on a host listed in
 * `gateway.tls.passthrough`) relays bytes unopened and is audited once, with bytes and duration,
 * when it closes. Every tunnel's socket is tracked so the kill switch and `close()` can end it.
 */
import type http from 'node:http';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import { normalizeHost } from '../request/normalize.js';
import type { GatewaySession } from '../gateway-wire/session.js';
import type { BudgetMeter } from './budgets.js';
import type { Exchange } from './exchange.js';
import { sendRawJson } from './responses.js';
import type { SessionTable } from './sessions.js';
import type { LeafCache } from './tls/leaf-cache.js';

/** What the gateway knows about an intercepted tunnel, keyed by its TLS socket. */
export interface Tunnel {
  session: GatewaySession;
  host: string;
  port: number;
  /** The CONNECT's exchange, finished when the tunnel closes; counts the requests decided inside. */
  connect: Exchange;
  /**
   * `http`: the client spoke plain HTTP inside the tunnel (no TLS handshake: Node's fetch with
   * NODE_USE_ENV_PROXY, undici's ProxyAgent and others tunnel `http://` URLs too); `https`: TLS.
   */
  scheme: 'http' | 'https';
}

const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n';

export class Tunnels {
  private readonly open = new Set<Socket>();
  private readonly byTlsSocket = new WeakMap<Socket, Tunnel>();

  constructor(
    private readonly sessions: SessionTable,
    /** Serves HTTP inside intercepted tunnels; never listens itself. */
    private readonly inner: http.Server,
    /** Upstream TCP connect timeout of passthrough tunnels, ms. */
    private readonly connectTimeoutMs: number,
  ) {
    // Node checks an HTTP server's `headersTimeout` / `requestTimeout` only for the connections of a
    // server that emitted 'listening' (it starts the connection tracking and its checking timer
    // then). The inner server never listens, so without this a client inside an intercepted tunnel
    // could hold a request's headers open forever. With it, the same 408 `request_timeout` as on the
    // plain path (proxy.ts `clientError`, the tunnel's session audited).
    inner.emit('listening');
  }

  /** The intercepted tunnel a request's socket belongs to, if any. */
  of(socket: Socket): Tunnel | undefined {
    return this.byTlsSocket.get(socket);
  }

  /** Destroys every open tunnel (gateway shutdown) and stops the inner server's timeout checks. */
  destroyAll(): void {
    for (const t of this.open) t.destroy();
    this.inner.close();
  }

  /**
   * Answers 200 to the CONNECT, terminates the sandbox's TLS with a leaf for the CONNECT host and
   * hands the decrypted connection to the inner HTTP server. The CONNECT itself is audited once, when
   * the tunnel closes: `x` records the allow of the host pre-check (decide.ts, rule null), the bytes
   * that crossed the raw socket, the tunnel's lifetime and the number of requests decided inside; a
   * failed handshake is audited as a deny — `bad_request` when the SNI names another host than the
   * CONNECT, `tls_handshake_failed` otherwise (e.g. a client offering only h2).
   * @param x the CONNECT's exchange, target and session set, allow recorded.
   */
  async intercept(
    socket: Socket,
    head: Buffer,
    x: Exchange,
    session: GatewaySession,
    leaves: LeafCache,
  ): Promise<void> {
    this.sessions.attachSocket(session.id, socket);
    const host = x.host;
    const context = await leaves.get(host);
    if (socket.destroyed) {
      x.finish();
      return;
    }
    socket.write(ESTABLISHED);
    x.status = 200;
    if (head.length > 0) socket.unshift(head);
    // A TLS handshake starts with a handshake record (0x16); anything else is plain HTTP, read
    // request by request exactly as inside TLS (every request decided on its own, scheme http).
    const first = await firstByte(socket);
    if (first === null) {
      x.finish();
      return;
    }
    if (first !== 0x16) {
      this.open.add(socket);
      this.byTlsSocket.set(socket, { session, host, port: x.port, connect: x, scheme: 'http' });
      socket.once('close', () => {
        this.open.delete(socket);
        x.bytesOut = socket.bytesRead;
        x.bytesIn = socket.bytesWritten;
        x.finish();
      });
      this.inner.emit('connection', socket);
      return;
    }
    let sniMismatch = false;
    let secured = false;
    const tlsSocket = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext: context,
      ALPNProtocols: ['http/1.1'],
      SNICallback: (servername, cb) => {
        let name: string;
        try {
          name = normalizeHost(servername);
        } catch {
          name = servername;
        }
        if (name === host) return cb(null, context);
        sniMismatch = true;
        cb(new Error(`SNI ${servername} does not match CONNECT ${host}`));
      },
    });
    this.open.add(socket);
    this.byTlsSocket.set(tlsSocket as unknown as Socket, {
      session,
      host,
      port: x.port,
      connect: x,
      scheme: 'https',
    });
    tlsSocket.once('secure', () => (secured = true));
    tlsSocket.once('close', () => {
      this.open.delete(socket);
      socket.destroy();
      x.bytesOut = socket.bytesRead;
      x.bytesIn = socket.bytesWritten;
      x.finish();
    });
    tlsSocket.on('error', () => {
      if (!secured && x.decision !== 'deny') {
        x.decision = 'deny';
        x.reason = sniMismatch ? 'bad_request' : 'tls_handshake_failed';
      }
      tlsSocket.destroy();
    });
    this.inner.emit('connection', tlsSocket);
  }

  /**
   * Relays bytes unopened to `address` (granted CONNECT passthrough); answers 200 once the upstream
   * connection is up, 502 `upstream_unreachable` if it cannot be made within the connect timeout.
   * Finishes `x` (which records the allow) when either side closes.
   * @param meter the bytes budgets of the CONNECT (decide.ts), or null: every byte the sandbox sends
   *   through the tunnel counts as bytes out; once a budget is used up the tunnel is closed and its
   *   event records decision `deny`, reason `budget_exceeded` (with the bytes that crossed).
   */
  passthrough(
    socket: Socket,
    head: Buffer,
    address: string,
    x: Exchange,
    session: GatewaySession,
    meter: BudgetMeter | null = null,
  ): void {
    this.sessions.attachSocket(session.id, socket);
    const upstream = net.connect({ host: address, port: x.port });
    upstream.setTimeout(this.connectTimeoutMs, () => upstream.destroy(new Error('connect timeout')));
    this.open.add(socket);
    let established = false;
    upstream.once('connect', () => {
      established = true;
      upstream.setTimeout(0);
      socket.write(ESTABLISHED);
      if (meter) {
        const count = (n: number): void => {
          meter.addBytesOut(n);
          if (!meter.exhausted) return;
          x.decision = 'deny';
          x.reason = 'budget_exceeded';
          done();
        };
        if (head.length > 0) count(head.length);
        socket.on('data', (c: Buffer) => count(c.length));
      }
      if (head.length > 0) upstream.write(head);
      socket.pipe(upstream);
      upstream.pipe(socket);
    });
    const done = (): void => {
      if (!this.open.delete(socket)) return;
      upstream.destroy();
      socket.destroy();
      if (established) x.status = 200;
      else if (x.reason !== 'budget_exceeded') {
        x.reason = 'upstream_error';
        x.status = 502;
      }
      x.bytesOut = upstream.bytesWritten;
      x.bytesIn = upstream.bytesRead;
      x.finish();
    };
    upstream.once('error', () => {
      if (!established) {
        sendRawJson(socket, {
          error: 'upstream_unreachable',
          detail: `${x.host}:${x.port}`,
          sessionId: session.id,
        });
      }
      done();
    });
    upstream.once('close', done);
    socket.once('close', done);
    socket.once('error', done);
  }
}

/**
 * The first byte the client sends on `socket` (left unread for the next reader), or null when the
 * socket ends or fails first.
 */
function firstByte(socket: Socket): Promise<number | null> {
  return new Promise((resolve) => {
    const done = (v: number | null): void => {
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onEnd);
      resolve(v);
    };
    const onEnd = (): void => done(null);
    const onReadable = (): void => {
      const chunk = socket.read() as Buffer | null;
      if (chunk === null || chunk.length === 0) return;
      socket.unshift(chunk);
      done(chunk[0] as number);
    };
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onEnd);
    onReadable();
  });
}
