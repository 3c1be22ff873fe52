/**
 * WebSocket under policy (issue 13 section 4): protocol upgrades, after steps 1-4 of the request
 * path (proxy.ts `handleUpgrade`: parsed, identified and decided like any request).
 *
 * - Only a WebSocket handshake (RFC 6455 4.1: `GET` with `Upgrade: websocket`) is relayed, and it is
 *   decided as method {@link WEBSOCKET_METHOD} on its path: a `GET` grant never opens a
 *   bidirectional channel, and `*` does not cover it (src/policy/matchers.ts). Any other upgrade
 *   (`h2c`, …) is refused 400 `not_supported` ({@link upgradeRefusal}).
 * - Allowed: the gateway dials the checked address itself (plain TCP for `ws`, TLS verified with
 *   the HTTPS pools' trust store for `wss`: upstream.ts `tlsOptions`), sends the handshake with the
 *   normalised path and the filtered headers (headers.ts `upstreamHeaders`, plus the
 *   `Connection: Upgrade` / `Upgrade: websocket` pair the handshake needs; `Sec-WebSocket-*` pass
 *   as end-to-end headers), relays the upstream's `101` and then bytes both ways, unopened. Any other
 *   answer of the upstream is relayed as a normal response (then the connection closes).
 * - Audit: the upgrade's {@link Exchange} is finished once, when the channel closes (as a passthrough
 *   tunnel's is): decision, rule, status `101`, `bytesOut`/`bytesIn` = channel bytes each way after
 *   the handshake, `durationMs` = how long the channel was open. A refused upgrade is audited at once,
 *   like any refusal.
 * - Every channel's sandbox-side socket is attached to its session (`SessionTable.attachSocket`), so
 *   the kill switch and TTL expiry close it, and tracked here so the gateway's `close()` does too.
 */
import http, { type IncomingMessage } from 'node:http';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import type { GatewaySession } from '../gateway-wire/session.js';
import type { BudgetMeter } from './budgets.js';
import type { Exchange } from './exchange.js';
import { downstreamHeaders, upstreamHeaders } from './headers.js';
import { sendRawJson, statusOf, type GatewayErrorBody } from './responses.js';
import type { SessionTable } from './sessions.js';
import type { Target } from './target.js';
import { errorCode, isTlsError, type UpstreamDispatchers } from './upstream.js';

/** The method a WebSocket handshake is decided as: rules grant it by name (`p, r, host, /ws, WEBSOCKET, allow`). */
export const WEBSOCKET_METHOD = 'WEBSOCKET';

/**
 * How long a side of a closing channel may take to flush what the other side sent last before it
 * is destroyed, ms.
 */
const CLOSE_GRACE_MS = 2_000;

/** Headers of the upstream's `101` never relayed to the sandbox (hop-by-hop other than the upgrade pair, proxy ones, the gateway's own). */
const DROPPED_101_HEADERS: ReadonlySet<string> = new Set([
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'content-length',
]);

/** Whether a request asks for a WebSocket (its Upgrade header is exactly the token `websocket`). */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? '').trim().toLowerCase() === 'websocket';
}

/**
 * Why an upgrade request is not relayed: `not_supported` for any protocol but WebSocket (h2c, …),
 * `bad_request` for a WebSocket handshake that is not a `GET` (RFC 6455 4.1). @returns null for a
 * WebSocket handshake the gateway relays once the policy allows it.
 */
export function upgradeRefusal(
  req: IncomingMessage,
): { error: 'not_supported' | 'bad_request'; detail: string } | null {
  if (!isWebSocketUpgrade(req)) {
    const asked = (req.headers.upgrade ?? '').trim().slice(0, 64);
    return {
      error: 'not_supported',
      detail: `protocol upgrade "${asked}" is not supported; only WebSocket (Upgrade: websocket) is relayed`,
    };
  }
  if (req.method !== 'GET') {
    return { error: 'bad_request', detail: 'a WebSocket handshake is a GET request (RFC 6455 4.1)' };
  }
  return null;
}

/** Timeouts of the upstream handshake, ms. */
export interface WebSocketOptions {
  /** Upstream TCP (and TLS) connect timeout. */
  connectTimeoutMs: number;
  /** Time the upstream may take to answer the handshake once connected. */
  headersTimeoutMs: number;
}

/** The `HTTP/1.1 …` head of a response relayed on a raw socket, from `[name, value, …]` pairs. */
function responseHead(status: number, message: string, pairs: readonly string[]): string {
  let head = `HTTP/1.1 ${status} ${message}\r\n`;
  for (let i = 0; i < pairs.length; i += 2) head += `${pairs[i]}: ${pairs[i + 1]}\r\n`;
  return head + '\r\n';
}

/** The upstream's `101` headers as relayed: everything but {@link DROPPED_101_HEADERS} and `x-airlock-*`. */
function switchingHeaders(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (DROPPED_101_HEADERS.has(lower) || lower.startsWith('x-airlock-')) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** Open WebSocket channels (and handshakes in flight), by their sandbox-side socket. */
export class WebSockets {
  private readonly open = new Set<Socket>();

  constructor(
    private readonly sessions: SessionTable,
    private readonly upstream: UpstreamDispatchers,
    private readonly opts: WebSocketOptions,
  ) {}

  /** Channels open or being set up now. */
  get size(): number {
    return this.open.size;
  }

  /** Destroys every channel (gateway shutdown); each is audited as it closes. */
  destroyAll(): void {
    for (const s of this.open) s.destroy();
  }

  /**
   * Relays an allowed WebSocket handshake to `address` and, on `101`, the channel. Answers 502
   * `upstream_unreachable` / `upstream_tls_error` or 504 `upstream_timeout` itself when the upstream
   * cannot be reached or does not answer in time. Finishes `x` (which records the allow) once, when
   * the exchange is over.
   * @param socket the sandbox's connection, handed over by the `upgrade` event (TLS inside a tunnel).
   * @param head bytes the sandbox sent after the handshake's headers; sent upstream after the 101.
   * @param address the resolved and checked upstream address (decide.ts); the name is not resolved again.
   * @param meter the handshake's bytes budgets (decide.ts), or null: the channel's bytes towards the
   *   upstream count as bytes out; once a budget is used up the channel is closed, audited with
   *   decision `deny`, reason `budget_exceeded`.
   */
  relay(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    target: Target,
    address: string,
    x: Exchange,
    session: GatewaySession,
    meter: BudgetMeter | null = null,
  ): void {
    if (socket.destroyed) {
      // The sandbox went away (or was killed) while the handshake was being decided.
      x.finish();
      return;
    }
    this.sessions.attachSocket(session.id, socket);
    this.open.add(socket);
    let up: Socket | null = null;
    /** Whether the upstream answered 101 and bytes flow both ways. */
    let channel = false;
    let answered = false;
    let timedOut = false;
    let upClosed = false;
    let clientClosed = false;

    const finish = (): void => {
      if (!this.open.delete(socket)) return;
      socket.destroy();
      up?.destroy();
      upReq.destroy();
      x.finish();
    };
    // One side of the channel closed: the other may flush what it still holds, briefly.
    const closeSoon = (other: Socket): void => {
      other.end();
      setTimeout(finish, CLOSE_GRACE_MS).unref();
    };
    socket.once('close', () => {
      clientClosed = true;
      if (channel && !upClosed && up !== null) closeSoon(up);
      else finish();
    });

    const upReq = http.request({
      method: 'GET',
      path: target.path + target.query,
      headers: [...upstreamHeaders(req, target.authority), 'connection', 'Upgrade', 'upgrade', 'websocket'],
      createConnection: () => {
        const port = target.port;
        const s =
          target.scheme === 'https'
            ? tls.connect({ host: address, port, ...this.upstream.tlsOptions(target.host) })
            : net.connect({ host: address, port });
        s.setTimeout(this.opts.connectTimeoutMs);
        s.once(target.scheme === 'https' ? 'secureConnect' : 'connect', () =>
          s.setTimeout(this.opts.headersTimeoutMs),
        );
        s.once('timeout', () => {
          timedOut = true;
          s.destroy(new Error('upstream timeout'));
        });
        up = s;
        return s;
      },
    });

    upReq.once('upgrade', (res: IncomingMessage, upSocket: Socket, upHead: Buffer) => {
      answered = true;
      upSocket.setTimeout(0);
      if ((res.headers.upgrade ?? '').trim().toLowerCase() !== 'websocket') {
        // The upstream switched to something else than what was decided: nothing is relayed.
        x.reason = 'upstream_error';
        return this.fail(socket, upSocket, x, {
          error: 'upstream_error',
          detail: `${target.authority} switched to "${res.headers.upgrade ?? ''}", not websocket`,
          sessionId: session.id,
        });
      }
      if (clientClosed) return finish();
      channel = true;
      x.status = 101;
      socket.write(
        responseHead(101, res.statusMessage || 'Switching Protocols', switchingHeaders(res.rawHeaders)),
      );
      if (upHead.length > 0) {
        x.bytesIn += upHead.length;
        socket.write(upHead);
      }
      // bytesOut: what was relayed (a chunk that takes the channel past a budget is not).
      const count = (n: number): void => {
        meter?.addBytesOut(n);
        if (!meter?.exhausted) {
          x.bytesOut += n;
          return;
        }
        x.decision = 'deny';
        x.reason = 'budget_exceeded';
        finish();
      };
      if (head.length > 0) {
        count(head.length);
        upSocket.write(head);
      }
      socket.on('data', (c: Buffer) => count(c.length));
      upSocket.on('data', (c: Buffer) => (x.bytesIn += c.length));
      socket.pipe(upSocket);
      upSocket.pipe(socket);
      upSocket.on('error', () => upSocket.destroy());
      upSocket.once('close', () => {
        upClosed = true;
        if (!clientClosed) closeSoon(socket);
        else finish();
      });
    });

    upReq.once('response', (res: IncomingMessage) => {
      // Not a 101: relayed as a normal response, then the connection closes.
      answered = true;
      up?.setTimeout(0);
      x.status = res.statusCode ?? 0;
      const headers = downstreamHeaders(res.headers);
      const pairs: string[] = [];
      for (const [name, value] of Object.entries(headers)) {
        for (const v of Array.isArray(value) ? value : [value]) pairs.push(name, String(v));
      }
      pairs.push('connection', 'close');
      socket.write(responseHead(x.status, res.statusMessage ?? '', pairs));
      res.on('data', (c: Buffer) => {
        x.bytesIn += c.length;
        if (!socket.write(c)) {
          res.pause();
          socket.once('drain', () => res.resume());
        }
      });
      res.once('end', () => socket.end());
      res.once('error', () => socket.destroy());
      res.once('close', () => {
        if (!res.complete) socket.destroy();
      });
    });

    upReq.on('error', (err: Error) => {
      if (answered || clientClosed) return finish();
      const tlsFailure = isTlsError(err);
      x.reason = tlsFailure ? 'upstream_tls_error' : 'upstream_error';
      const code = timedOut ? 'timeout' : errorCode(err);
      this.fail(
        socket,
        up,
        x,
        tlsFailure
          ? {
              error: 'upstream_tls_error',
              detail: `${target.authority}: the upstream certificate was not accepted (${code})`,
              sessionId: session.id,
            }
          : {
              error: timedOut ? 'upstream_timeout' : 'upstream_unreachable',
              detail: `${target.authority}: ${code}`,
              sessionId: session.id,
            },
      );
    });
    upReq.end();
  }

  /**
   * Answers a failure of the allowed handshake on the sandbox's socket and closes both connections
   * (the exchange is finished when the sandbox's socket closes).
   */
  private fail(socket: Socket, up: Socket | null, x: Exchange, body: GatewayErrorBody): void {
    up?.destroy();
    x.status = statusOf(body);
    sendRawJson(socket, body);
  }
}
