import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { Agent, errors as undiciErrors } from 'undici';
import type { AuditEvent, AuditSink, DecisionReason } from '../audit/event.js';
import { AirlockError } from '../errors.js';
import type { PolicySource } from '../policy/types.js';
import type { GatewaySession } from '../sessions/types.js';
import type { UpstreamResolver } from './resolve.js';
import { denyHint, sendJson, sendRawJson } from './responses.js';
import { normalizeRemoteAddress, type Identity, type SessionTable } from './sessions.js';
import { parseAbsoluteTarget, parseAuthority, parseConnectTarget, type Target } from './target.js';

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
  at?: number;
  session: GatewaySession | null;
  method: string;
  scheme: 'http' | 'https';
  host: string;
  port: number;
  path: string;
}

function parseProxyAuthorization(header: string | undefined): { user: string; password: string } | null {
  if (!header) return null;
  const space = header.indexOf(' ');
  if (space < 0 || header.slice(0, space).toLowerCase() !== 'basic') return null;
  const decoded = Buffer.from(header.slice(space + 1).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
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
 * The egress gateway: an HTTP/1.1 forward proxy (absolute-form requests, and CONNECT only where a
 * rule grants method CONNECT). Per request, in this order:
 * 1. framing and target are parsed and normalised (400 on anything ambiguous);
 * 2. the caller is identified by source address + Proxy-Authorization (407 / 403 otherwise);
 * 3. the policy decides on (role, host, path, method) (403 JSON deny otherwise);
 * 4. the host is resolved once, the address checked, and that address dialled (403 when refused);
 * 5. the request streams upstream through a keep-alive pool and the response streams back;
 * 6. one audit event is emitted when the exchange ends.
 */
export class EgressGateway {
  readonly server: http.Server;
  private readonly agent: Agent;
  private readonly opts: GatewayOptions;
  private readonly tunnels = new Set<Socket>();

  constructor(opts: GatewayOptions) {
    this.opts = opts;
    this.agent = new Agent({
      connectTimeout: opts.connectTimeoutMs ?? 5_000,
      headersTimeout: opts.headersTimeoutMs ?? 30_000,
      bodyTimeout: opts.bodyTimeoutMs ?? 300_000,
      keepAliveTimeout: 4_000,
      connections: 256,
    });
    this.server = http.createServer({
      keepAliveTimeout: opts.clientKeepAliveMs ?? 60_000,
      requestTimeout: 0,
      headersTimeout: 30_000,
      requireHostHeader: true,
      joinDuplicateHeaders: false,
    });
    this.server.on('request', (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        // handle() answers every expected failure itself; this is a last line of defence.
        if (!res.headersSent) sendJson(res, 502, { error: 'upstream_error', detail: String(err) });
        else res.destroy();
      });
    });
    this.server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      this.handleConnect(req, socket, head).catch(() => socket.destroy());
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
      const p = this.pending(req, null);
      sendRawJson(socket, 400, { error: 'not_supported', detail: 'protocol upgrades are not supported' });
      this.emit(p, 'deny', 'bad_request', null, 400, 0, 0, this.opts.policy.current()?.version ?? null);
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (err.code === 'ECONNRESET' || !socket.writable) {
        socket.destroy();
        return;
      }
      const address = normalizeRemoteAddress(socket.remoteAddress);
      const session = this.opts.sessions.atAddress(address);
      sendRawJson(socket, 400, {
        error: 'bad_request',
        detail: `malformed HTTP request (${err.code ?? 'parse error'})`,
        sessionId: session?.id ?? null,
      });
      this.emit(
        {
          started: performance.now(),
          session,
          method: 'UNKNOWN',
          scheme: 'http',
          host: '',
          port: 0,
          path: '',
        },
        'deny',
        'bad_request',
        null,
        400,
        0,
        0,
        this.opts.policy.current()?.version ?? null,
      );
    });
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

  /** Stops accepting, closes client connections and tunnels, and the upstream pool. */
  async close(): Promise<void> {
    for (const t of this.tunnels) t.destroy();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await this.agent.close();
  }

  private pending(req: IncomingMessage, session: GatewaySession | null, target?: Target): Pending {
    return {
      started: performance.now(),
      session,
      method: req.method ?? 'UNKNOWN',
      scheme: 'http',
      host: target?.host ?? '',
      port: target?.port ?? 0,
      path: target?.path ?? '',
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
      time: new Date(p.at ?? Date.now()).toISOString(),
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

  /** Identifies the caller; on failure answers (407/403), audits, and returns null. */
  private identify(address: string, authHeader: string | undefined): Identity & { credentials: boolean } {
    const creds = parseProxyAuthorization(authHeader);
    const id = this.opts.sessions.identify(address, creds?.user ?? null, creds?.password ?? null);
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

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const at = Date.now();
    const policyAtStart = this.opts.policy.current();
    const address = normalizeRemoteAddress(req.socket.remoteAddress);
    const method = req.method ?? 'UNKNOWN';

    // 1. framing and target
    let target: Target;
    const framing = framingProblem(req.rawHeaders);
    try {
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
      const p: Pending = { started, session, method, scheme: 'http', host: '', port: 0, path: '' };
      req.resume();
      res.shouldKeepAlive = false;
      sendJson(res, 400, {
        error: 'bad_request',
        detail: (err as Error).message,
        sessionId: session?.id ?? null,
      });
      this.emit(p, 'deny', 'bad_request', null, 400, 0, 0, policyAtStart?.version ?? null);
      return;
    }

    // 2. identity
    const id = this.identify(address, req.headers['proxy-authorization']);
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
      this.emit(p, 'deny', id.reason, null, r.status, 0, 0, policyAtStart?.version ?? null);
      return;
    }
    const session = id.session;
    this.opts.sessions.attachSocket(session.id, req.socket);

    // 3. policy
    const policy = this.opts.policy.current();
    const url = `http://${target.authority}${target.path}`;
    if (!policy) {
      req.resume();
      sendJson(res, 403, {
        error: 'egress_denied',
        sessionId: session.id,
        role: session.role,
        method,
        url,
        policyVersion: null,
        hint: 'No valid egress policy is loaded, so Airlock denies every call (fail closed). Ask an operator to fix the policy.',
      });
      this.emit(p, 'deny', 'no_policy', null, 403, 0, 0, null);
      return;
    }
    const decision = policy.decide({
      role: session.role,
      host: target.policyHost,
      path: target.path,
      method,
    });
    if (!decision.allowed) {
      req.resume();
      sendJson(res, 403, {
        error: 'egress_denied',
        sessionId: session.id,
        role: session.role,
        method,
        url,
        policyVersion: policy.version,
        hint: denyHint(session.role, method, url),
      });
      this.emit(p, 'deny', decision.reason, decision.rule, 403, 0, 0, policy.version);
      return;
    }

    // 4. destination check after DNS
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

    // 5. forward
    await this.forward(req, res, target, resolution.address, p, decision.rule, policy.version);
  }

  private async forward(
    req: IncomingMessage,
    res: ServerResponse,
    target: Target,
    address: string,
    p: Pending,
    rule: string | null,
    policyVersion: string,
  ): Promise<void> {
    let bytesOut = 0;
    let bytesIn = 0;
    let status = 0;
    let reason: DecisionReason = 'rule_allow';
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
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

    try {
      const up = await this.agent.request({
        origin: `http://${hostForUrl(address)}:${target.port}`,
        path: target.path + target.query,
        method: req.method as 'GET',
        headers: upstreamHeaders(req, target.authority),
        // undici accepts any AsyncIterable body at runtime (docs/api/Dispatcher.md); its types lag.
        body: body as unknown as Readable | null,
        signal: abort.signal,
      });
      status = up.statusCode;
      res.writeHead(up.statusCode, downstreamHeaders(up.headers));
      up.body.on('data', (chunk: Buffer) => {
        bytesIn += chunk.length;
        if (!res.write(chunk)) {
          up.body.pause();
          res.once('drain', () => up.body.resume());
        }
      });
      await new Promise<void>((resolve) => {
        up.body.once('end', () => {
          res.end();
          resolve();
        });
        up.body.once('error', () => {
          reason = 'upstream_error';
          res.destroy();
          resolve();
        });
      });
    } catch (err) {
      reason = 'upstream_error';
      if (abort.signal.aborted) return; // the sandbox went away (or was killed)
      const code = (err as { code?: string }).code ?? 'UND_ERR';
      const timeout =
        err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.ConnectTimeoutError;
      status = timeout ? 504 : 502;
      sendJson(res, status, {
        error: timeout ? 'upstream_timeout' : 'upstream_unreachable',
        detail: `${target.authority}: ${code}`,
        sessionId: p.session?.id ?? null,
      });
    }
  }

  private async handleConnect(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const started = performance.now();
    const address = normalizeRemoteAddress(socket.remoteAddress);
    let t: ReturnType<typeof parseConnectTarget>;
    const versionAtStart = this.opts.policy.current()?.version ?? null;
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
        { started, session, method: 'CONNECT', scheme: 'https', host: '', port: 0, path: '' },
        'deny',
        'bad_request',
        null,
        400,
        0,
        0,
        versionAtStart,
      );
      return;
    }
    const id = this.identify(address, req.headers['proxy-authorization']);
    const p: Pending = {
      started,
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
      this.emit(p, 'deny', id.reason, null, r.status, 0, 0, versionAtStart);
      return;
    }
    const session = id.session;
    const policy = this.opts.policy.current();
    const url = `https://${hostForUrl(t.host)}:${t.port}`;
    const decision = policy?.decide({ role: session.role, host: t.policyHost, path: '/', method: 'CONNECT' });
    if (!policy || !decision?.allowed) {
      sendRawJson(socket, 403, {
        error: 'egress_denied',
        sessionId: session.id,
        role: session.role,
        method: 'CONNECT',
        url,
        policyVersion: policy?.version ?? null,
        hint: denyHint(session.role, 'CONNECT', url),
      });
      this.emit(
        p,
        'deny',
        decision?.reason ?? 'no_policy',
        decision?.rule ?? null,
        403,
        0,
        0,
        policy?.version ?? null,
      );
      return;
    }
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
    // Passthrough tunnel, explicitly granted by a CONNECT rule: audited with bytes and duration.
    this.opts.sessions.attachSocket(session.id, socket);
    const upstream = net.connect({ host: resolution.address, port: t.port });
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
        decision.rule,
        established ? 200 : 502,
        upstream.bytesWritten,
        upstream.bytesRead,
        policy.version,
      );
    };
    upstream.once('error', () => {
      if (!established)
        sendRawJson(socket, 502, {
          error: 'upstream_unreachable',
          detail: `${t.host}:${t.port}`,
          sessionId: session.id,
        });
      done();
    });
    upstream.once('close', done);
    socket.once('close', done);
    socket.once('error', done);
  }
}
