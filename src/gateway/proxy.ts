import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import tls from 'node:tls';
import { errors as undiciErrors, type Dispatcher } from 'undici';
import type { AuditEvent, AuditSink, DecisionReason } from '../audit/event.js';
import { AirlockError } from '../errors.js';
import { API_HOST, decideEgress, sessionMayReachHost } from '../policy/delegation.js';
import type { PolicySource } from '../policy/types.js';
import type { GatewaySession } from '../sessions/types.js';
import { normalizeHost } from '../request/normalize.js';
import type { UpstreamResolver } from './resolve.js';
import { creatorDenyHint, denyHint, reservedHostDetail, sendJson, sendRawJson } from './responses.js';
import { normalizeRemoteAddress, type Identity, type SessionTable } from './sessions.js';
import {
  parseAbsoluteTarget,
  parseAuthority,
  parseConnectTarget,
  parseTunnelTarget,
  type Target,
} from './target.js';
import type { LeafCache } from './tls/leaf-cache.js';
import { errorCode, isTlsError, UpstreamDispatchers } from './upstream.js';

/** HTTPS interception settings (docs/tls.md). */
export interface InterceptOptions {
  /** Mints leaf certificates signed by the installation CA. */
  leaves: LeafCache;
  /** Hosts (policy host form: `name` or `name:port`) tunnelled unopened where a rule grants CONNECT. */
  passthrough?: readonly string[];
}

/** Options of the egress gateway. Durations in ms. */
export interface GatewayOptions {
  policy: PolicySource;
  sessions: SessionTable;
  audit: AuditSink;
  resolver: UpstreamResolver;
  /** Upstream TCP connect timeout, ms. @default 5000 */
  connectTimeoutMs?: number;
  /** Time to receive upstream response headers, ms. @default 30000 */
  headersTimeoutMs?: number;
  /** Idle time between upstream body chunks, ms. @default 300000 */
  bodyTimeoutMs?: number;
  /** Idle keep-alive time for sandbox connections, ms. @default 60000 */
  clientKeepAliveMs?: number;
  /** Extra CA certificates (PEM) trusted for upstream TLS besides the system roots. */
  upstreamCaPem?: string;
  /** HTTPS interception. Without it, CONNECT is only ever a passthrough tunnel granted by a rule. */
  intercept?: InterceptOptions;
}

/** Hop-by-hop headers (RFC 9110 7.6.1) plus proxy credentials: never forwarded either way. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'expect',
  'http2-settings',
]);

/** Minimal per-request record turned into one audit event. */
interface Pending {
  /** performance.now() at arrival, for durationMs. */
  started: number;
  /** Epoch ms at arrival: the audit event's `time` is when the call was decided, not when it ended. */
  at: number;
  session: GatewaySession | null;
  method: string;
  scheme: 'http' | 'https';
  host: string;
  port: number;
  path: string;
}

/** What the gateway knows about an intercepted tunnel, keyed by its TLS socket. */
interface Tunnel {
  session: GatewaySession;
  host: string;
  port: number;
}

function parseProxyAuthorization(header: string | undefined): { user: string; password: string } | null {
  if (!header) return null;
  const space = header.indexOf(' ');
  if (space < 0 || header.slice(0, space).toLowerCase() !== 'basic') return null;
  const decoded = Buffer.from(header.slice(space + 1).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return {
    user: decodeURIComponentSafe(decoded.slice(0, colon)),
    password: decodeURIComponentSafe(decoded.slice(colon + 1)),
  };
}

function decodeURIComponentSafe(s: string): string {
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * Rejects ambiguous message framing (DESIGN.md property 7): both Content-Length and
 * Transfer-Encoding, more than one Content-Length, or any Transfer-Encoding other than `chunked`.
 * Node's parser refuses most of these already; this keeps the rule explicit and tested.
 */
function framingProblem(rawHeaders: readonly string[]): string | null {
  let cl = 0;
  let te: string | null = null;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name === 'content-length') cl++;
    else if (name === 'transfer-encoding') {
      if (te !== null) return 'more than one Transfer-Encoding header';
      te = rawHeaders[i + 1]!.trim().toLowerCase();
    }
  }
  if (cl > 1) return 'more than one Content-Length header';
  if (te !== null && cl > 0) return 'both Content-Length and Transfer-Encoding';
  if (te !== null && te !== 'chunked') return `unsupported Transfer-Encoding "${te}"`;
  return null;
}

function upstreamHeaders(req: IncomingMessage, authority: string): string[] {
  const raw = req.rawHeaders;
  let connectionTokens: Set<string> | null = null;
  const conn = req.headers.connection;
  if (conn) connectionTokens = new Set(conn.split(',').map((t) => t.trim().toLowerCase()));
  const out: string[] = ['host', authority];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || connectionTokens?.has(lower)) continue;
    out.push(name, raw[i + 1]!);
  }
  return out;
}

function downstreamHeaders(headers: Record<string, string | string[] | undefined>): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  const conn = headers.connection;
  const tokens = conn
    ? new Set(
        (Array.isArray(conn) ? conn.join(',') : conn).split(',').map((t: string) => t.trim().toLowerCase()),
      )
    : null;
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || tokens?.has(name)) continue;
    const v = headers[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

function hostForUrl(host: string): string {
  return net.isIPv6(host) ? `[${host}]` : host;
}

/**
 * The egress gateway: an HTTP/1.1 forward proxy. Plain-HTTP calls arrive in absolute form; HTTPS
 * calls arrive as CONNECT tunnels, which the gateway terminates with a leaf certificate of the
 * installation CA so that every request inside is decided on its own (or, only where a rule grants
 * method CONNECT to a passthrough host, relays unopened). Per request, in this order:
 * 1. framing and target are parsed and normalised (400 on anything ambiguous);
 * 2. the caller is identified by source address + Proxy-Authorization (407 / 403 otherwise);
 *    inside a tunnel, by the tunnel's session, which must still be live;
 * 3. the policy decides on (role, host, path, method) and, when the session's creator has egress
 *    rules, on (creator, host, path, method) too (403 JSON deny otherwise); the reserved management
 *    pseudo-host `airlock.api` is refused before any policy is asked;
 * 4. the host is resolved once, the address checked, and that address dialled (403 when refused);
 * 5. the request streams upstream through a keep-alive pool (TLS verified for HTTPS) and the
 *    response streams back;
 * 6. one audit event is emitted when the exchange ends.
 */
export class EgressGateway {
  readonly server: http.Server;
  /** Serves HTTP inside intercepted tunnels; never listens itself. */
  private readonly inner: http.Server;
  private readonly upstream: UpstreamDispatchers;
  private readonly opts: GatewayOptions;
  private readonly tunnels = new Set<Socket>();
  private readonly tunnelOf = new WeakMap<Socket, Tunnel>();
  /** Proxy-Authorization header verified on a client connection, and for which registration. */
  private readonly verified = new WeakMap<Socket, { header: string; session: GatewaySession }>();
  private readonly passthrough: ReadonlySet<string>;

  constructor(opts: GatewayOptions) {
    this.opts = opts;
    this.passthrough = new Set(opts.intercept?.passthrough ?? []);
    this.upstream = new UpstreamDispatchers({
      connectTimeoutMs: opts.connectTimeoutMs ?? 5_000,
      headersTimeoutMs: opts.headersTimeoutMs ?? 30_000,
      bodyTimeoutMs: opts.bodyTimeoutMs ?? 300_000,
      ...(opts.upstreamCaPem ? { extraCaPem: opts.upstreamCaPem } : {}),
    });
    const serverOptions: http.ServerOptions = {
      keepAliveTimeout: opts.clientKeepAliveMs ?? 60_000,
      requestTimeout: 0,
      headersTimeout: 30_000,
      requireHostHeader: true,
      joinDuplicateHeaders: false,
    };
    this.server = http.createServer(serverOptions);
    this.inner = http.createServer(serverOptions);
    const lastResort = (res: ServerResponse) => (err: unknown) => {
      // The handlers answer every expected failure themselves; this is a last line of defence.
      if (!res.headersSent) sendJson(res, 502, { error: 'upstream_error', detail: String(err) });
      else res.destroy();
    };
    this.server.on('request', (req, res) => void this.handlePlain(req, res).catch(lastResort(res)));
    this.inner.on('request', (req, res) => void this.handleTunnelled(req, res).catch(lastResort(res)));
    this.server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      this.handleConnect(req, socket, head).catch(() => socket.destroy());
    });
    for (const s of [this.server, this.inner]) {
      s.on('upgrade', (req: IncomingMessage, socket: Socket) => {
        sendRawJson(socket, 400, { error: 'not_supported', detail: 'protocol upgrades are not supported' });
        this.emit(this.pending(req, null), 'deny', 'bad_request', null, 400, 0, 0, this.version());
      });
      s.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.clientError(err, socket));
    }
  }

  /** Starts listening. @returns the bound address (use port 0 for an ephemeral port). */
  listen(port: number, host = '0.0.0.0'): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Stops accepting, closes client connections and tunnels, and the upstream pools. */
  async close(): Promise<void> {
    for (const t of this.tunnels) t.destroy();
    this.inner.closeAllConnections();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await this.upstream.close();
  }

  private version(): string | null {
    return this.opts.policy.current()?.version ?? null;
  }

  private pending(req: IncomingMessage, session: GatewaySession | null): Pending {
    return {
      started: performance.now(),
      at: Date.now(),
      session,
      method: req.method ?? 'UNKNOWN',
      scheme: 'http',
      host: '',
      port: 0,
      path: '',
    };
  }

  private emit(
    p: Pending,
    decision: 'allow' | 'deny',
    reason: DecisionReason,
    rule: string | null,
    status: number,
    bytesOut: number,
    bytesIn: number,
    policyVersion: string | null,
  ): void {
    const event: AuditEvent = {
      time: new Date(p.at).toISOString(),
      sessionId: p.session?.id ?? null,
      role: p.session?.role ?? null,
      method: p.method,
      scheme: p.scheme,
      host: p.host,
      port: p.port,
      path: p.path,
      decision,
      rule,
      reason,
      status,
      durationMs: Math.round((performance.now() - p.started) * 1000) / 1000,
      bytesOut,
      bytesIn,
      policyVersion,
    };
    this.opts.audit.emit(event);
  }

  private clientError(err: NodeJS.ErrnoException, socket: Socket): void {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const tunnel = this.tunnelOf.get(socket);
    const session =
      tunnel?.session ?? this.opts.sessions.atAddress(normalizeRemoteAddress(socket.remoteAddress));
    sendRawJson(socket, 400, {
      error: 'bad_request',
      detail: `malformed HTTP request (${err.code ?? 'parse error'})`,
      sessionId: session?.id ?? null,
    });
    this.emit(
      {
        started: performance.now(),
        at: Date.now(),
        session,
        method: 'UNKNOWN',
        scheme: tunnel ? 'https' : 'http',
        host: tunnel?.host ?? '',
        port: tunnel?.port ?? 0,
        path: '',
      },
      'deny',
      'bad_request',
      null,
      400,
      0,
      0,
      this.version(),
    );
  }

  /**
   * Identifies the caller of a request on `socket`. A keep-alive connection that presents the exact
   * Proxy-Authorization header already verified on it, for a registration that is still the one at
   * this address and not expired, skips the SHA-256 (the header string is compared, not the secret;
   * a different header is verified in full).
   */
  private identify(
    address: string,
    authHeader: string | undefined,
    socket: Socket,
  ): Identity & { credentials: boolean } {
    const memo = this.verified.get(socket);
    if (memo && authHeader === memo.header && this.opts.sessions.stillValid(address, memo.session)) {
      return { ok: true, session: memo.session, credentials: true };
    }
    const creds = parseProxyAuthorization(authHeader);
    const id = this.opts.sessions.identify(address, creds?.user ?? null, creds?.password ?? null);
    if (id.ok && authHeader !== undefined)
      this.verified.set(socket, { header: authHeader, session: id.session });
    return { ...id, credentials: creds !== null };
  }

  private refuseIdentity(id: Exclude<Identity, { ok: true }> & { credentials: boolean }): {
    status: number;
    body: { error: 'proxy_auth_required' | 'identity_refused' | 'session_expired'; detail: string };
    headers: Record<string, string>;
  } {
    if (id.reason === 'session_expired') {
      return {
        status: 403,
        body: { error: 'session_expired', detail: 'the session has ended (TTL or kill switch)' },
        headers: {},
      };
    }
    if (!id.credentials) {
      return {
        status: 407,
        body: { error: 'proxy_auth_required', detail: 'send the session credential in Proxy-Authorization' },
        headers: { 'proxy-authenticate': 'Basic realm="airlock"' },
      };
    }
    const detail =
      id.reason === 'unknown_session'
        ? 'no session is registered at this address'
        : id.reason === 'address_mismatch'
          ? 'the credential belongs to another session than the one at this address'
          : 'invalid session credential';
    return {
      status: 407,
      body: { error: 'identity_refused', detail },
      headers: { 'proxy-authenticate': 'Basic realm="airlock"' },
    };
  }

  /** Answers 400 for a request that could not be parsed into a target. */
  private badRequest(req: IncomingMessage, res: ServerResponse, p: Pending, err: unknown): void {
    req.resume();
    res.shouldKeepAlive = false;
    sendJson(res, 400, {
      error: 'bad_request',
      detail: (err as Error).message,
      sessionId: p.session?.id ?? null,
    });
    this.emit(p, 'deny', 'bad_request', null, 400, 0, 0, this.version());
  }

  /** Plain HTTP: absolute-form target, identity from address + Proxy-Authorization. */
  private async handlePlain(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const at = Date.now();
    const address = normalizeRemoteAddress(req.socket.remoteAddress);
    const method = req.method ?? 'UNKNOWN';

    let target: Target;
    try {
      const framing = framingProblem(req.rawHeaders);
      if (framing) throw new AirlockError('AIRLOCK_REQUEST_INVALID', framing);
      target = parseAbsoluteTarget(req.url ?? '');
      const hostHeader = req.headers.host;
      if (hostHeader !== undefined && hostHeader.toLowerCase() !== target.authority) {
        // Compare normalised forms: the Host header may carry the default port or a trailing dot.
        const h = parseAuthority(hostHeader, 'http', 'host');
        if (h.host !== target.host || h.port !== target.port) {
          throw new AirlockError(
            'AIRLOCK_REQUEST_INVALID',
            'Host header and request target name different hosts',
          );
        }
      }
    } catch (err) {
      const session = this.opts.sessions.atAddress(address);
      return this.badRequest(
        req,
        res,
        { started, at, session, method, scheme: 'http', host: '', port: 0, path: '' },
        err,
      );
    }

    const id = this.identify(address, req.headers['proxy-authorization'], req.socket);
    const p: Pending = {
      started,
      at,
      session: id.session,
      method,
      scheme: 'http',
      host: target.host,
      port: target.port,
      path: target.path,
    };
    if (!id.ok) {
      req.resume();
      const r = this.refuseIdentity(id);
      sendJson(res, r.status, { ...r.body, sessionId: id.session?.id ?? null }, r.headers);
      this.emit(p, 'deny', id.reason, null, r.status, 0, 0, this.version());
      return;
    }
    this.opts.sessions.attachSocket(id.session.id, req.socket);
    await this.decideAndForward(req, res, target, id.session, p);
  }

  /** HTTPS inside an intercepted tunnel: origin-form target for the tunnel's host. */
  private async handleTunnelled(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const at = Date.now();
    const tunnel = this.tunnelOf.get(req.socket);
    const method = req.method ?? 'UNKNOWN';
    if (!tunnel) {
      res.destroy();
      return;
    }
    const p: Pending = {
      started,
      at,
      session: tunnel.session,
      method,
      scheme: 'https',
      host: tunnel.host,
      port: tunnel.port,
      path: '',
    };
    let target: Target;
    try {
      const framing = framingProblem(req.rawHeaders);
      if (framing) throw new AirlockError('AIRLOCK_REQUEST_INVALID', framing);
      target = parseTunnelTarget(req.url ?? '', req.headers.host, tunnel.host, tunnel.port);
    } catch (err) {
      return this.badRequest(req, res, p, err);
    }
    p.path = target.path;
    // The kill switch closes the tunnel's socket; this also covers a request racing it.
    if (!this.opts.sessions.isLive(tunnel.session.id)) {
      req.resume();
      res.shouldKeepAlive = false;
      sendJson(res, 403, {
        error: 'session_expired',
        detail: 'the session has ended (TTL or kill switch)',
        sessionId: tunnel.session.id,
      });
      this.emit(p, 'deny', 'session_expired', null, 403, 0, 0, this.version());
      return;
    }
    await this.decideAndForward(req, res, target, tunnel.session, p);
  }

  /** Steps 3-6: policy, destination check, forwarding, audit. */
  private async decideAndForward(
    req: IncomingMessage,
    res: ServerResponse,
    target: Target,
    session: GatewaySession,
    p: Pending,
  ): Promise<void> {
    const method = p.method;
    const policy = this.opts.policy.current();
    const url = `${target.scheme}://${target.authority}${target.path}`;
    /** Answers the contract's JSON 403 (the upstream is never contacted) and audits it. */
    const deny = (
      reason: DecisionReason,
      rule: string | null,
      policyVersion: string | null,
      hint: string,
    ): void => {
      req.resume();
      sendJson(res, 403, {
        error: 'egress_denied',
        sessionId: session.id,
        role: session.role,
        method,
        url,
        policyVersion,
        hint,
      });
      this.emit(p, 'deny', reason, rule, 403, 0, 0, policyVersion);
    };
    if (!policy) {
      return deny(
        'no_policy',
        null,
        null,
        'No valid egress policy is loaded, so Airlock denies every call (fail closed). Ask an operator to fix the policy.',
      );
    }
    if (target.host === API_HOST) {
      // Management rules' pseudo-host: never a destination, whatever a rule says.
      req.resume();
      sendJson(res, 403, {
        error: 'destination_refused',
        detail: reservedHostDetail(),
        sessionId: session.id,
      });
      this.emit(p, 'deny', 'destination_refused', null, 403, 0, 0, policy.version);
      return;
    }
    const { decision, by } = decideEgress(
      policy,
      { role: session.role, host: target.policyHost, path: target.path, method },
      session.creator,
    );
    if (!decision.allowed) {
      return deny(
        decision.reason,
        decision.rule,
        policy.version,
        by === 'creator'
          ? creatorDenyHint(session.role, session.creator ?? '', method, url)
          : denyHint(session.role, method, url),
      );
    }

    const resolution = await this.opts.resolver.resolve(target.host);
    if (!resolution.ok) {
      req.resume();
      if (resolution.reason === 'refused') {
        sendJson(res, 403, {
          error: 'destination_refused',
          detail: `${target.host} resolves to a ${resolution.addressClass} address, which the gateway does not dial`,
          sessionId: session.id,
        });
        this.emit(p, 'deny', 'destination_refused', decision.rule, 403, 0, 0, policy.version);
      } else {
        sendJson(res, 502, {
          error: 'upstream_unreachable',
          detail: `cannot resolve ${target.host} (${resolution.detail})`,
          sessionId: session.id,
        });
        this.emit(p, 'allow', 'upstream_error', decision.rule, 502, 0, 0, policy.version);
      }
      return;
    }
    this.forward(req, res, target, resolution.address, p, decision.rule, policy.version);
  }

  /**
   * Streams the call upstream with undici's dispatch() handler API: response head and chunks go
   * straight into `res` (no intermediate Readable, promise or AbortController per request; measured
   * in bench/README.md); the audit event is emitted once, when `res` closes.
   */
  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    target: Target,
    address: string,
    p: Pending,
    rule: string | null,
    policyVersion: string,
  ): void {
    let bytesOut = 0;
    let bytesIn = 0;
    let status = 0;
    let reason: DecisionReason = 'rule_allow';
    let controller: Dispatcher.DispatchController | null = null;
    let gone = false;
    res.once('close', () => {
      if (!res.writableFinished) {
        gone = true; // the sandbox went away (or was killed)
        controller?.abort(new Error('client closed'));
      }
      this.emit(p, 'allow', reason, rule, status, bytesOut, bytesIn, policyVersion);
    });

    const cl = req.headers['content-length'];
    const hasBody = cl !== undefined ? cl !== '0' : req.headers['transfer-encoding'] !== undefined;
    const body = hasBody
      ? (async function* () {
          for await (const chunk of req) {
            bytesOut += (chunk as Buffer).length;
            yield chunk as Buffer;
          }
        })()
      : null;
    if (!hasBody) req.resume();

    const { dispatcher, origin } = this.upstream.forTarget(target.scheme, address, target.port, target.host);
    const fail = (err: Error): void => {
      reason = isTlsError(err) ? 'upstream_tls_error' : 'upstream_error';
      if (gone) return;
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const code = errorCode(err);
      if (isTlsError(err)) {
        status = 502;
        sendJson(res, 502, {
          error: 'upstream_tls_error',
          detail: `${target.authority}: the upstream certificate was not accepted (${code})`,
          sessionId: p.session?.id ?? null,
        });
        return;
      }
      const timeout =
        err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.ConnectTimeoutError;
      status = timeout ? 504 : 502;
      sendJson(res, status, {
        error: timeout ? 'upstream_timeout' : 'upstream_unreachable',
        detail: `${target.authority}: ${code}`,
        sessionId: p.session?.id ?? null,
      });
    };
    try {
      dispatcher.dispatch(
        {
          origin,
          path: target.path + target.query,
          method: req.method as Dispatcher.HttpMethod,
          headers: upstreamHeaders(req, target.authority),
          // undici accepts any AsyncIterable body at runtime (docs/api/Dispatcher.md); its types lag.
          body: body as unknown as Readable | null,
        },
        {
          onRequestStart(c) {
            controller = c;
            if (gone) c.abort(new Error('client closed'));
          },
          onResponseStart(_c, statusCode, headers) {
            if (statusCode < 200) return; // 1xx: not relayed
            status = statusCode;
            res.writeHead(
              statusCode,
              downstreamHeaders(headers as Record<string, string | string[] | undefined>),
            );
          },
          onResponseData(c, chunk) {
            bytesIn += chunk.length;
            if (!res.write(chunk)) {
              c.pause();
              res.once('drain', () => c.resume());
            }
          },
          onResponseEnd() {
            res.end();
          },
          onResponseError(_c, err) {
            fail(err);
          },
        },
      );
    } catch (err) {
      fail(err as Error); // invalid request options (e.g. a header undici refuses)
    }
  }

  private async handleConnect(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    // The http server hands the socket over without an error listener: a reset must not crash us.
    socket.on('error', () => socket.destroy());
    const started = performance.now();
    const at = Date.now();
    const address = normalizeRemoteAddress(socket.remoteAddress);
    let t: ReturnType<typeof parseConnectTarget>;
    try {
      t = parseConnectTarget(req.url ?? '');
    } catch (err) {
      const session = this.opts.sessions.atAddress(address);
      sendRawJson(socket, 400, {
        error: 'bad_request',
        detail: (err as Error).message,
        sessionId: session?.id ?? null,
      });
      this.emit(
        { started, at, session, method: 'CONNECT', scheme: 'https', host: '', port: 0, path: '' },
        'deny',
        'bad_request',
        null,
        400,
        0,
        0,
        this.version(),
      );
      return;
    }
    const id = this.identify(address, req.headers['proxy-authorization'], req.socket);
    const p: Pending = {
      started,
      at,
      session: id.session,
      method: 'CONNECT',
      scheme: 'https',
      host: t.host,
      port: t.port,
      path: '',
    };
    if (!id.ok) {
      const r = this.refuseIdentity(id);
      sendRawJson(socket, r.status, { ...r.body, sessionId: id.session?.id ?? null }, r.headers);
      this.emit(p, 'deny', id.reason, null, r.status, 0, 0, this.version());
      return;
    }
    const session = id.session;
    const policy = this.opts.policy.current();
    const url = `https://${hostForUrl(t.host)}:${t.port}`;
    const deny = (reason: DecisionReason, rule: string | null, byCreator = false): void => {
      sendRawJson(socket, 403, {
        error: 'egress_denied',
        sessionId: session.id,
        role: session.role,
        method: 'CONNECT',
        url,
        policyVersion: policy?.version ?? null,
        hint: byCreator
          ? creatorDenyHint(session.role, session.creator ?? '', 'CONNECT', url)
          : denyHint(session.role, 'CONNECT', url),
      });
      this.emit(p, 'deny', reason, rule, 403, 0, 0, policy?.version ?? null);
    };
    if (t.host === API_HOST) {
      // Management rules' pseudo-host: never a destination, whatever a rule says.
      sendRawJson(socket, 403, {
        error: 'destination_refused',
        detail: reservedHostDetail(),
        sessionId: session.id,
      });
      this.emit(p, 'deny', 'destination_refused', null, 403, 0, 0, policy?.version ?? null);
      return;
    }
    if (!policy) return deny('no_policy', null);

    const intercept = this.opts.intercept;
    if (intercept && !this.passthrough.has(t.policyHost)) {
      // Interception: refuse at once when no allow rule of the role (and of a limiting creator) names
      // this host (and port).
      if (!policy.mayReachHost(session.role, t.policyHost)) return deny('no_match', null);
      if (!sessionMayReachHost(policy, session.role, session.creator, t.policyHost))
        return deny('no_match', null, true);
      return this.intercept(socket, head, t, session, p, intercept);
    }
    // Passthrough: only where a rule grants method CONNECT on this host and port.
    const { decision, by } = decideEgress(
      policy,
      { role: session.role, host: t.policyHost, path: '/', method: 'CONNECT' },
      session.creator,
    );
    if (!decision.allowed) return deny(decision.reason, decision.rule, by === 'creator');
    const resolution = await this.opts.resolver.resolve(t.host);
    if (!resolution.ok) {
      const refused = resolution.reason === 'refused';
      sendRawJson(socket, refused ? 403 : 502, {
        error: refused ? 'destination_refused' : 'upstream_unreachable',
        detail: refused
          ? `${t.host} resolves to a ${resolution.addressClass} address`
          : `cannot resolve ${t.host}`,
        sessionId: session.id,
      });
      this.emit(
        p,
        refused ? 'deny' : 'allow',
        refused ? 'destination_refused' : 'upstream_error',
        decision.rule,
        refused ? 403 : 502,
        0,
        0,
        policy.version,
      );
      return;
    }
    this.passthroughTunnel(socket, head, resolution.address, t.port, p, decision.rule, policy.version);
  }

  /** Terminates TLS from the sandbox with a leaf for the CONNECT host and serves HTTP inside. */
  private async intercept(
    socket: Socket,
    head: Buffer,
    t: { host: string; port: number },
    session: GatewaySession,
    p: Pending,
    opts: InterceptOptions,
  ): Promise<void> {
    this.opts.sessions.attachSocket(session.id, socket);
    const context = await opts.leaves.get(t.host);
    if (socket.destroyed) return;
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) socket.unshift(head);
    let sniMismatch: string | null = null;
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
        if (name === t.host) return cb(null, context);
        sniMismatch = servername;
        cb(new Error(`SNI ${servername} does not match CONNECT ${t.host}`));
      },
    });
    this.tunnels.add(socket);
    this.tunnelOf.set(tlsSocket as unknown as Socket, { session, host: t.host, port: t.port });
    const cleanup = (): void => {
      this.tunnels.delete(socket);
      socket.destroy();
    };
    tlsSocket.once('close', cleanup);
    tlsSocket.on('error', () => {
      if (sniMismatch !== null) {
        this.emit({ ...p, at: Date.now() }, 'deny', 'bad_request', null, 0, 0, 0, this.version());
        sniMismatch = null;
      }
      tlsSocket.destroy();
    });
    this.inner.emit('connection', tlsSocket);
  }

  /** Relays bytes unopened (granted CONNECT passthrough); audited with bytes and duration. */
  private passthroughTunnel(
    socket: Socket,
    head: Buffer,
    address: string,
    port: number,
    p: Pending,
    rule: string | null,
    policyVersion: string,
  ): void {
    this.opts.sessions.attachSocket(p.session!.id, socket);
    const upstream = net.connect({ host: address, port });
    upstream.setTimeout(this.opts.connectTimeoutMs ?? 5_000, () =>
      upstream.destroy(new Error('connect timeout')),
    );
    this.tunnels.add(socket);
    let established = false;
    upstream.once('connect', () => {
      established = true;
      upstream.setTimeout(0);
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      socket.pipe(upstream);
      upstream.pipe(socket);
    });
    const done = (): void => {
      if (!this.tunnels.delete(socket)) return;
      upstream.destroy();
      socket.destroy();
      this.emit(
        p,
        'allow',
        established ? 'rule_allow' : 'upstream_error',
        rule,
        established ? 200 : 502,
        upstream.bytesWritten,
        upstream.bytesRead,
        policyVersion,
      );
    };
    upstream.once('error', () => {
      if (!established) {
        sendRawJson(socket, 502, {
          error: 'upstream_unreachable',
          detail: `${p.host}:${port}`,
          sessionId: p.session?.id ?? null,
        });
      }
      done();
    });
    upstream.once('close', done);
    socket.once('close', done);
    socket.once('error', done);
  }
}
