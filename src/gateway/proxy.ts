/**
 * The egress gateway: an HTTP/1.1 forward proxy. Plain-HTTP calls arrive in absolute form; HTTPS
 * calls arrive as CONNECT tunnels, which the gateway terminates with a leaf certificate of the
 * installation CA so that every request inside is decided on its own (or, only where a rule grants
 * method CONNECT to a passthrough host, relays unopened). This file is the wiring; each step of a
 * request's path lives in the file named for it, read top to bottom:
 *
 * 1. parse — target.ts (framing, absolute/origin/CONNECT target, Host agreement; 400 otherwise),
 *    ambiguity.ts (method overrides, URL-rewrite headers, GET bodies: what the upstream executes);
 * 2. identify — identify.ts (source address + Proxy-Authorization; inside a tunnel, the tunnel's
 *    session, which must still be live; 407 / 403 otherwise);
 * 3. and 4. decide — decide.ts (reserved host, policy with deny-override and delegation, DNS once
 *    and the address checked), the same for plain, intercepted and CONNECT;
 * 5. forward — forward.ts (HTTP through keep-alive pools) or tunnel.ts (intercept / passthrough),
 *    with headers.ts deciding what crosses;
 * 6. audit — exchange.ts: every path builds one {@link Exchange} and finishes it exactly once.
 *
 * Refusals are data ({@link Refusal}), answered by responses.ts with the status and
 * `x-airlock-decision` of the catalogue in src/errors.ts.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { AmbiguousRequestError } from '../errors.js';
import type { GatewaySession } from '../gateway-wire/session.js';
import { methodOverrideOf } from './ambiguity.js';
import { decide, decideBody, type AskHandler, type DecideContext, type Outcome } from './decide.js';
import { ApprovalGate } from './approvals.js';
import { Exchange, type Refusal } from './exchange.js';
import { BudgetCounters } from './budgets.js';
import { readBody, type BodyRead } from './body.js';
import {
  auditMessages,
  decideMcpMessages,
  mcpApprovalBinding,
  denialMessage,
  denialResponse,
  mayCallTool,
  parseJsonRpc,
} from './mcp.js';
import { ANY_ID, toolsListFilter, type ResponseRewriter } from './mcp-response.js';
import type { PolicySnapshot } from '../policy/types.js';
import { ToolPins } from './mcp-pins.js';
import { foldPathCase } from '../request/normalize.js';
import { requestHeaderBytes } from './headers.js';
import { forward, type ForwardContext } from './forward.js';
import { identityRefusal, Identifier } from './identify.js';
import { SessionLimits } from './limits.js';
import type { GatewayOptions } from './options.js';
import { sendJson, sendJsonRpc, sendRawJson } from './responses.js';
import { MCP_METHOD, type McpEndpoint } from '../policy/mcp.js';
import { normalizeRemoteAddress } from './sessions.js';
import {
  connectUrl,
  parseConnectTarget,
  parsePlainRequest,
  parseTunnelledRequest,
  targetUrl,
  type Target,
} from './target.js';
import { Tunnels } from './tunnel.js';
import { UpstreamDispatchers } from './upstream.js';
import { isWebSocketUpgrade, upgradeRefusal, WEBSOCKET_METHOD, WebSockets } from './websocket.js';

export type { GatewayOptions, GatewayOptionsInput, InterceptOptions } from './options.js';
export { withGatewayDefaults } from './options.js';

/** A refusal for a request that could not be parsed (step 1). */
function badRequest(err: unknown, session: GatewaySession | null, policyVersion: string | null): Refusal {
  const kind = err instanceof AmbiguousRequestError ? 'ambiguous_request' : 'bad_request';
  return {
    kind: 'refuse',
    reason: kind,
    rule: null,
    policyVersion,
    body: { error: kind, detail: (err as Error).message, sessionId: session?.id ?? null },
  };
}

export class EgressGateway {
  readonly server: http.Server;
  /** Serves HTTP inside intercepted tunnels; never listens itself. */
  private readonly inner: http.Server;
  private readonly upstream: UpstreamDispatchers;
  private readonly identifier: Identifier;
  private readonly tunnels: Tunnels;
  private readonly websockets: WebSockets;
  private readonly ctx: DecideContext;
  private readonly passthrough: ReadonlySet<string>;
  /** Policy hosts declared `pathCase: insensitive` (`gateway.upstreams`). */
  private readonly caseInsensitive: ReadonlySet<string>;
  /** Per-session limits (limits.ts): requests in flight, connections, tunnels. */
  private readonly limits: SessionLimits;
  private readonly fwd: ForwardContext;
  /** Tool descriptions pinned per session and MCP endpoint (mcp-pins.ts). */
  private readonly pins: ToolPins;
  /** Settles calls that `ask` rules match (approvals.ts). */
  private readonly approvals: ApprovalGate;

  /** @param opts options with defaults applied ({@link withGatewayDefaults}). */
  constructor(private readonly opts: GatewayOptions) {
    this.passthrough = new Set(opts.intercept?.passthrough ?? []);
    this.caseInsensitive = new Set(
      Object.entries(opts.upstreams ?? {})
        .filter(([, u]) => u.pathCase === 'insensitive')
        .map(([host]) => host),
    );
    this.ctx = {
      policy: opts.policy,
      resolver: opts.resolver,
      budgets: opts.budgets ?? new BudgetCounters(),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      ...(opts.onExfiltration ? { onExfiltration: opts.onExfiltration } : {}),
      ...(opts.auditAvailable ? { auditAvailable: opts.auditAvailable } : {}),
    };
    this.limits = new SessionLimits(opts.limits);
    this.pins = new ToolPins((id) => opts.sessions.isLive(id));
    this.approvals = opts.approvals ?? new ApprovalGate(null, { holdSeconds: 0, holdRules: {} });
    this.identifier = new Identifier(opts.sessions, (address, session, suppressed) => {
      // One event for the refusals of an authentication backoff that were not audited one by one.
      const x = this.exchange('UNKNOWN', 'http', session);
      x.clientAddress = address;
      x.reason = 'auth_backoff';
      x.status = 429;
      x.suppressed = suppressed;
      x.finish();
    });
    this.upstream = new UpstreamDispatchers({
      connectTimeoutMs: opts.connectTimeoutMs,
      headersTimeoutMs: opts.headersTimeoutMs,
      bodyTimeoutMs: opts.bodyTimeoutMs,
      ...(opts.upstreamCaPem ? { extraCaPem: opts.upstreamCaPem } : {}),
      connectionsPerSessionOrigin: opts.limits.upstreamConnectionsPerOrigin,
      isLive: (id) => opts.sessions.isLive(id),
    });
    this.fwd = {
      upstream: this.upstream,
      limits: opts.limits,
      done: (sessionId) => this.limits.releaseRequest(sessionId),
    };
    const serverOptions: http.ServerOptions = {
      keepAliveTimeout: opts.clientKeepAliveMs,
      // Client timeouts (gateway.limits): Node answers through 'clientError' (408 request_timeout).
      requestTimeout: opts.limits.clientRequestTimeoutMs,
      headersTimeout: opts.limits.clientHeadersTimeoutMs,
      connectionsCheckingInterval: Math.max(
        50,
        Math.min(1_000, Math.floor(opts.limits.clientHeadersTimeoutMs / 4)),
      ),
      requireHostHeader: true,
      joinDuplicateHeaders: false,
    };
    this.server = http.createServer(serverOptions);
    // Connections count against the session registered at their source address (limits.ts).
    this.server.on('connection', (socket: Socket) =>
      this.limits.connectionOpened(
        socket,
        this.opts.sessions.atAddress(normalizeRemoteAddress(socket.remoteAddress)),
      ),
    );
    this.inner = http.createServer(serverOptions);
    this.tunnels = new Tunnels(opts.sessions, this.inner, opts.connectTimeoutMs);
    this.websockets = new WebSockets(opts.sessions, this.upstream, {
      connectTimeoutMs: opts.connectTimeoutMs,
      headersTimeoutMs: opts.headersTimeoutMs,
    });
    const lastResort = (res: ServerResponse) => (): void => {
      // The handlers answer every expected failure themselves; this is a last line of defence, and
      // an internal error's text never reaches the sandbox.
      if (!res.headersSent) {
        sendJson(res, { error: 'upstream_error', detail: 'the gateway failed while handling this call' });
      } else res.destroy();
    };
    this.server.on('request', (req, res) => void this.handlePlain(req, res).catch(lastResort(res)));
    this.inner.on('request', (req, res) => void this.handleTunnelled(req, res).catch(lastResort(res)));
    this.server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      this.handleConnect(req, socket, head).catch(() => socket.destroy());
    });
    for (const s of [this.server, this.inner]) {
      s.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
        this.handleUpgrade(req, socket, head, s === this.inner).catch(() => socket.destroy());
      });
      s.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.clientError(err, socket));
    }
    this.inner.on('connect', (req: IncomingMessage, socket: Socket) => this.refuseNestedConnect(req, socket));
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
    this.tunnels.destroyAll();
    this.websockets.destroyAll();
    this.inner.closeAllConnections();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await this.upstream.close();
  }

  /**
   * The form of a parsed target the decision and the upstream see: for an upstream declared
   * `pathCase: insensitive`, the path lowercased outside its percent-escapes (docs/policy.md "Path
   * case"); otherwise the target as parsed.
   */
  private upstreamForm(target: Target): Target {
    if (this.caseInsensitive.size === 0 || !this.caseInsensitive.has(target.policyHost)) return target;
    return { ...target, path: foldPathCase(target.path) };
  }

  private version(): string | null {
    return this.opts.policy.current()?.version ?? null;
  }

  /** A new exchange; `req` given: its head's size is recorded (`headerBytes`). */
  private exchange(
    method: string,
    scheme: 'http' | 'https',
    session: GatewaySession | null,
    req?: IncomingMessage,
  ): Exchange {
    const x = new Exchange(this.opts.audit, method, scheme, session, this.version());
    if (this.opts.auditQuery === 'full') x.recordQuery = true;
    if (req) x.headerBytes = requestHeaderBytes(req);
    return x;
  }

  /** Answers a refusal on an HTTP response and finishes the exchange. */
  private refuse(req: IncomingMessage, res: ServerResponse, x: Exchange, r: Refusal): void {
    req.resume();
    // A malformed request or an ended session: do not keep the connection for another request.
    const e = r.body.error;
    if (e === 'bad_request' || e === 'ambiguous_request' || e === 'session_expired')
      res.shouldKeepAlive = false;
    // A body still arriving (a denied 1 GB upload) is not waited for: the connection closes as soon
    // as the answer is written, whatever the client is still sending (issue 13). So does a
    // connection accepted over its session's connection limit.
    if (!req.complete || (e === 'limit_exceeded' && r.body.limit === 'connections'))
      res.shouldKeepAlive = false;
    x.refuse(r);
    sendJson(res, r.body, r.headers);
    x.finish();
  }

  /** Answers a refusal on a raw socket (CONNECT) and finishes the exchange. */
  private refuseRaw(socket: Socket, x: Exchange, r: Refusal): void {
    x.refuse(r);
    sendRawJson(socket, r.body, r.headers);
    x.finish();
  }

  /** Plain HTTP: absolute-form target, identity from address + Proxy-Authorization. */
  private async handlePlain(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const x = this.exchange(req.method ?? 'UNKNOWN', 'http', null, req);
    const address = normalizeRemoteAddress(req.socket.remoteAddress);
    let target: Target;
    try {
      target = this.upstreamForm(parsePlainRequest(req.url ?? '', req.headers.host, req.rawHeaders));
      x.methodOverride = methodOverrideOf(req, target.query);
    } catch (err) {
      x.session = this.opts.sessions.atAddress(address);
      return this.refuse(req, res, x, badRequest(err, x.session, x.policyVersion));
    }
    x.setTarget({ ...target, url: targetUrl(target) });
    const id = this.identifier.identify(address, req.headers['proxy-authorization'], req.socket);
    x.session = id.session;
    if (!id.ok) return this.refuse(req, res, x, identityRefusal(id, x.policyVersion));
    this.opts.sessions.attachSocket(id.session.id, req.socket);
    await this.decideAndForward(req, res, target, x, id.session);
  }

  /** HTTPS inside an intercepted tunnel: origin-form target for the tunnel's host. */
  private async handleTunnelled(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const tunnel = this.tunnels.of(req.socket);
    if (!tunnel) {
      res.destroy();
      return;
    }
    const x = this.exchange(req.method ?? 'UNKNOWN', tunnel.scheme, tunnel.session, req);
    tunnel.connect.requests = (tunnel.connect.requests ?? 0) + 1;
    x.host = tunnel.host;
    x.port = tunnel.port;
    let target: Target;
    try {
      target = this.upstreamForm(
        parseTunnelledRequest(
          req.url ?? '',
          req.headers.host,
          req.rawHeaders,
          tunnel.host,
          tunnel.port,
          tunnel.scheme,
        ),
      );
      x.methodOverride = methodOverrideOf(req, target.query);
    } catch (err) {
      return this.refuse(req, res, x, badRequest(err, tunnel.session, x.policyVersion));
    }
    x.setTarget({ ...target, url: targetUrl(target) });
    // The kill switch closes the tunnel's socket; this also covers a request racing it.
    const ended = this.identifier.stillLive(tunnel.session, x.policyVersion);
    if (ended) return this.refuse(req, res, x, ended);
    await this.decideAndForward(req, res, target, x, tunnel.session);
  }

  /** Steps 3-6 of an identified HTTP request (plain or intercepted). */
  private async decideAndForward(
    req: IncomingMessage,
    res: ServerResponse,
    target: Target,
    x: Exchange,
    session: GatewaySession,
  ): Promise<void> {
    const over = this.limits.admitRequest(session, req.socket, x.policyVersion);
    if (over) return this.refuse(req, res, x, over);
    // Counted until answered: released here when refused, by forward() when the response closes.
    const cl = req.headers['content-length'];
    // An `ask` rule (docs/approvals.md): the body is read here, bound by its hash, and forwarded as read.
    let asked = null as Buffer | null; // set by `ask` (a closure: not narrowed by TypeScript)
    const ask: AskHandler = async (decision, method, policyVersion) => {
      const read = await readBody(req, this.opts.limits);
      if (!read.ok) {
        res.shouldKeepAlive = false;
        const why = `${read.detail} (a call that needs approval is bound to its whole body)`;
        return bodyRefusal(read.why, why, decision.rule, policyVersion, session.id);
      }
      asked = read.body;
      const ct = req.headers['content-type'];
      return this.approvals.settle({
        x,
        session,
        decision,
        method,
        policyVersion,
        body: read.body,
        contentType: ct ?? '',
      });
    };
    const outcome = await decide(
      x,
      session,
      'forward',
      this.ctx,
      cl === undefined ? null : Number(cl),
      { url: req.url ?? '', rawHeaders: req.rawHeaders },
      ask,
    );
    if (outcome.kind === 'refuse') {
      this.limits.releaseRequest(session.id);
      return this.refuse(req, res, x, outcome);
    }
    if (outcome.kind === 'intercept') throw new Error('intercept outcome for an HTTP request'); // unreachable
    x.allow(outcome.rule, outcome.policyVersion);
    // Every POST, and any other request with a body, to an MCP endpoint is read and decided (a
    // server that would accept JSON-RPC in a PUT gains nothing undecided).
    const hasBody =
      req.method === 'POST' ||
      (req.headers['content-length'] ?? '0') !== '0' ||
      req.headers['transfer-encoding'] !== undefined;
    const endpoint = hasBody ? outcome.policy.mcp?.match(x.policyHost, x.path) : null;
    // The older HTTP+SSE transport: its tools/list answers travel on the GET stream (docs/mcp.md).
    const stream =
      !hasBody && req.method === 'GET' ? outcome.policy.mcp?.matchStream(x.policyHost, x.path) : null;
    if (stream) {
      const rewrite = this.toolsListRewriter(x, session, stream, outcome.policy, ANY_ID);
      forward(
        req,
        res,
        target,
        outcome.address,
        x,
        this.fwd,
        outcome.meter,
        outcome.credential,
        null,
        rewrite,
      );
      return;
    }
    // The leak stop covers bodies (docs/credentials.md): of every session while the gateway holds a
    // value, and of a session with placeholders.
    const scan = hasBody && this.ctx.credentials !== undefined && this.ctx.credentials.scans(session);
    if (!endpoint && !scan) {
      forward(req, res, target, outcome.address, x, this.fwd, outcome.meter, outcome.credential, asked);
      return;
    }
    // The buffered-body stage: read once (body.ts), every consumer decides on the same bytes, and
    // exactly those bytes are forwarded.
    const body = asked ?? (await this.bufferBody(req, res, x, session));
    if (body === null) return;
    if (scan) {
      const leak = decideBody(x, session, body, outcome.policy, this.ctx);
      if (leak) {
        this.limits.releaseRequest(session.id);
        return this.refuse(req, res, x, leak);
      }
    }
    if (endpoint) return this.decideMcp(req, res, target, x, session, endpoint, outcome, body);
    forward(req, res, target, outcome.address, x, this.fwd, outcome.meter, outcome.credential, body);
  }

  /**
   * Reads an allowed request's body whole (body.ts, `gateway.limits.bufferedBodyBytes`), for the
   * steps that decide on it. On failure answers itself (413 `body_too_large`, 408
   * `request_timeout`; nothing for a client gone) and finishes the exchange.
   * @returns the body, or null when the exchange is over.
   */
  private async bufferBody(
    req: IncomingMessage,
    res: ServerResponse,
    x: Exchange,
    session: GatewaySession,
  ): Promise<Buffer | null> {
    const read = await readBody(req, this.opts.limits);
    if (read.ok) return read.body;
    this.limits.releaseRequest(session.id);
    if (read.why === 'closed') {
      x.reason = 'client_timeout';
      x.finish();
      return null;
    }
    res.shouldKeepAlive = false;
    this.refuse(req, res, x, bodyRefusal(read.why, read.detail, x.rule, x.policyVersion, session.id));
    return null;
  }

  /**
   * A POST to an MCP endpoint of mcp.yaml, allowed by its HTTP rule (mcp.ts): the body, read whole
   * by {@link bufferBody}, is parsed, every tool call / resource read / prompt decided on its virtual path with
   * method MCP; one refused → the whole body is answered with JSON-RPC errors (HTTP 200,
   * `x-airlock-decision: deny`), nothing forwarded; all allowed → the same bytes are forwarded.
   */
  private async decideMcp(
    req: IncomingMessage,
    res: ServerResponse,
    target: Target,
    x: Exchange,
    session: GatewaySession,
    endpoint: McpEndpoint,
    outcome: Extract<Outcome, { kind: 'allow' }>,
    body: Buffer,
  ): Promise<void> {
    const refuse = (r: Refusal): void => {
      this.limits.releaseRequest(session.id);
      this.refuse(req, res, x, r);
    };
    const parsed = parseJsonRpc(body);
    if (!parsed.ok) {
      x.mcp = { endpoint: endpoint.name, batch: false, messages: [] };
      return refuse({
        kind: 'refuse',
        reason: 'bad_request',
        rule: x.rule,
        policyVersion: x.policyVersion,
        body: { error: 'bad_request', detail: parsed.detail, sessionId: session.id },
      });
    }
    // The messages are decided by the snapshot that allowed the POST (its version is audited).
    const policy = outcome.policy;
    const { decisions, denied, asked } = decideMcpMessages(
      policy,
      session,
      x.policyHost,
      endpoint.path,
      parsed.messages,
      (tool) => this.pins.changed(session.id, endpoint.name, tool),
    );
    x.mcp = {
      endpoint: endpoint.name,
      batch: parsed.batch,
      messages: auditMessages(parsed.messages, decisions),
    };
    if (denied) {
      const message = denialMessage(denied, session, endpoint.name, x.policyHost);
      const text = denialResponse(parsed, denied, message, {
        sessionId: session.id,
        policyVersion: policy.version,
      });
      const reason = denied.changed ? 'tool_changed' : denied.rule ? 'rule_deny' : 'no_match';
      if (endpoint.transport === 'sse') {
        // HTTP+SSE: the POST's own response is never read as JSON-RPC (answers travel on the SSE
        // stream), so the call is refused with the contract's 403, the sentence as its hint.
        return refuse({
          kind: 'refuse',
          reason,
          rule: denied.rule,
          policyVersion: policy.version,
          body: {
            error: 'egress_denied',
            sessionId: session.id,
            role: session.role,
            method: MCP_METHOD,
            url: `${x.scheme}://${x.policyHost}${denied.path ?? x.path}`,
            policyVersion: policy.version,
            hint: message,
          },
        });
      }
      this.limits.releaseRequest(session.id);
      x.refuse({
        kind: 'refuse',
        reason,
        rule: denied.rule,
        policyVersion: policy.version,
        body: { error: 'mcp_denied', detail: message, sessionId: session.id },
      });
      sendJsonRpc(res, text, 'deny');
      x.finish();
      return;
    }
    if (asked) {
      // An ask rule (docs/approvals.md "MCP"): the approval is bound to the decided messages' methods
      // and params (not the JSON-RPC ids: a client retries under a new id).
      const decision = { allowed: false, reason: 'rule_ask', rule: asked.rule } as const;
      const verdict = await this.approvals.settle({
        x,
        session,
        decision,
        method: req.method ?? 'POST',
        policyVersion: policy.version,
        body,
        contentType: req.headers['content-type'] ?? '',
        bindingSha256: mcpApprovalBinding(parsed.messages),
      });
      if (verdict.kind === 'refuse') {
        if (endpoint.transport === 'sse') return refuse(verdict);
        const b = verdict.body as { hint?: string; detail?: string };
        const message = `Airlock: ${b.hint ?? b.detail ?? "this call needs a person's approval"}`;
        const text = denialResponse(parsed, asked, message, {
          sessionId: session.id,
          policyVersion: policy.version,
          approvalId: x.approvalId,
        });
        this.limits.releaseRequest(session.id);
        x.refuse({
          kind: 'refuse',
          reason: verdict.reason,
          rule: asked.rule,
          policyVersion: policy.version,
          body: { error: 'mcp_denied', detail: message, sessionId: session.id },
        });
        sendJsonRpc(res, text, 'deny');
        x.finish();
        return;
      }
      x.reason = 'approved';
    }
    // A single decided call is audited with its MCP rule; a batch keeps the endpoint's HTTP rule.
    if (!parsed.batch && decisions.length === 1) x.rule = decisions[0]!.rule;
    // tools/list answers: without the tools this session may not call (mcp-response.ts).
    let rewrite: ResponseRewriter | null = null;
    const listIds = new Set<string | number>();
    for (const m of parsed.messages) if (m.method === 'tools/list' && m.id !== null) listIds.add(m.id);
    if (listIds.size > 0 && endpoint.transport === 'streamable-http')
      rewrite = this.toolsListRewriter(x, session, endpoint, policy, listIds);
    forward(req, res, target, outcome.address, x, this.fwd, outcome.meter, outcome.credential, body, rewrite);
  }

  /**
   * The rewriter of `tools/list` answers (mcp-response.ts): filtered (`toolsList: filter`) and pinned
   * (mcp-pins.ts) — a tool whose description changed since the session first saw it is removed, and
   * its calls refused from then on. Records hidden and changed tools on the exchange's `mcp`.
   * @param ids the list requests' ids, or ANY_ID on the older transport's SSE stream.
   */
  private toolsListRewriter(
    x: Exchange,
    session: GatewaySession,
    endpoint: McpEndpoint,
    policy: PolicySnapshot,
    ids: ReadonlySet<string | number>,
  ): ResponseRewriter {
    const hidden: string[] = [];
    const changed: string[] = [];
    x.mcp ??= { endpoint: endpoint.name, batch: false, messages: [] };
    x.mcp.hiddenTools = hidden;
    x.mcp.changedTools = changed;
    const host = x.policyHost;
    const filter = endpoint.toolsList === 'filter';
    return toolsListFilter(
      ids,
      (name, tool) => {
        if (filter && !mayCallTool(policy, session, host, endpoint.path, name)) return false;
        if (this.pins.check(session.id, endpoint.name, name, tool)) return true;
        changed.push(name);
        return false;
      },
      hidden,
    );
  }

  /** CONNECT: identified like plain HTTP, then intercepted or (granted passthrough) relayed. */
  private async handleConnect(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    // The http server hands the socket over without an error listener: a reset must not crash us.
    socket.on('error', () => socket.destroy());
    const x = this.exchange('CONNECT', 'https', null, req);
    const address = normalizeRemoteAddress(socket.remoteAddress);
    let t: ReturnType<typeof parseConnectTarget>;
    try {
      t = parseConnectTarget(req.url ?? '');
    } catch (err) {
      x.session = this.opts.sessions.atAddress(address);
      return this.refuseRaw(socket, x, badRequest(err, x.session, x.policyVersion));
    }
    x.setTarget({
      host: t.host,
      port: t.port,
      path: '',
      policyHost: t.policyHost,
      url: connectUrl(t.host, t.port),
    });
    const id = this.identifier.identify(address, req.headers['proxy-authorization'], socket);
    x.session = id.session;
    if (!id.ok) return this.refuseRaw(socket, x, identityRefusal(id, x.policyVersion));
    const overLimit = this.limits.admitTunnel(id.session, socket, x.policyVersion);
    if (overLimit) return this.refuseRaw(socket, x, overLimit);

    const leaves = this.opts.intercept?.leaves;
    const mode = leaves && !this.passthrough.has(t.policyHost) ? 'intercept' : 'forward';
    const outcome = await decide(x, id.session, mode, this.ctx);
    if (outcome.kind === 'refuse') return this.refuseRaw(socket, x, outcome);
    if (outcome.kind === 'intercept') {
      // Every request inside is decided and audited on its own; the CONNECT when the tunnel closes.
      x.allow(null, outcome.policyVersion);
      x.requests = 0;
      return this.tunnels.intercept(socket, head, x, id.session, leaves!);
    }
    x.allow(outcome.rule, outcome.policyVersion);
    this.tunnels.passthrough(socket, head, outcome.address, x, id.session, outcome.meter);
  }

  /**
   * Protocol upgrades, plain or inside an intercepted tunnel (websocket.ts): parsed and identified
   * like any request; a WebSocket handshake is then decided as method `WEBSOCKET` on its path and,
   * allowed, relayed; any other upgrade (h2c, …) is refused 400 `not_supported`. Every outcome is
   * audited with the session and target.
   */
  private async handleUpgrade(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    tunnelled: boolean,
  ): Promise<void> {
    // The http server hands the socket over without an error listener: a reset must not crash us.
    socket.on('error', () => socket.destroy());
    const tunnel = tunnelled ? this.tunnels.of(socket) : undefined;
    if (tunnelled && !tunnel) {
      socket.destroy();
      return;
    }
    const method = isWebSocketUpgrade(req) ? WEBSOCKET_METHOD : (req.method ?? 'UNKNOWN');
    const x = this.exchange(method, tunnel ? tunnel.scheme : 'http', tunnel?.session ?? null, req);
    if (tunnel) tunnel.connect.requests = (tunnel.connect.requests ?? 0) + 1;
    if (tunnel?.scheme === 'http') {
      // Plain HTTP inside a CONNECT tunnel (tunnel.ts): requests are decided, upgrades are not relayed.
      x.host = tunnel.host;
      x.port = tunnel.port;
      return this.refuseRaw(socket, x, {
        kind: 'refuse',
        reason: 'bad_request',
        rule: null,
        policyVersion: x.policyVersion,
        body: {
          error: 'not_supported',
          detail:
            'an upgrade inside a plain (not TLS) CONNECT tunnel is not supported: send ws:// requests to the proxy in absolute form, or use wss://',
          sessionId: tunnel.session.id,
        },
      });
    }
    const address = normalizeRemoteAddress(socket.remoteAddress);
    let target: Target;
    try {
      target = this.upstreamForm(
        tunnel
          ? parseTunnelledRequest(req.url ?? '', req.headers.host, req.rawHeaders, tunnel.host, tunnel.port)
          : parsePlainRequest(req.url ?? '', req.headers.host, req.rawHeaders),
      );
      x.methodOverride = methodOverrideOf(req, target.query);
    } catch (err) {
      if (tunnel) {
        x.host = tunnel.host;
        x.port = tunnel.port;
      } else x.session = this.opts.sessions.atAddress(address);
      return this.refuseRaw(socket, x, badRequest(err, x.session, x.policyVersion));
    }
    x.setTarget({ ...target, url: targetUrl(target) });
    let session: GatewaySession;
    if (tunnel) {
      const ended = this.identifier.stillLive(tunnel.session, x.policyVersion);
      if (ended) return this.refuseRaw(socket, x, ended);
      session = tunnel.session;
    } else {
      const id = this.identifier.identify(address, req.headers['proxy-authorization'], socket);
      x.session = id.session;
      if (!id.ok) return this.refuseRaw(socket, x, identityRefusal(id, x.policyVersion));
      session = id.session;
      // A plain channel is as long-lived as a tunnel: it counts as one (limits.ts); inside an
      // intercepted tunnel the CONNECT that carries it is counted already.
      const over = this.limits.admitTunnel(session, socket, x.policyVersion);
      if (over) return this.refuseRaw(socket, x, over);
    }
    const unsupported = upgradeRefusal(req);
    if (unsupported) {
      return this.refuseRaw(socket, x, {
        kind: 'refuse',
        reason: 'bad_request',
        rule: null,
        policyVersion: x.policyVersion,
        body: { ...unsupported, sessionId: session.id },
      });
    }
    // The handshake's URL and headers go through the leak stop (no credential is injected into it).
    const outcome = await decide(x, session, 'forward', this.ctx, null, {
      url: req.url ?? '',
      rawHeaders: req.rawHeaders,
    });
    if (outcome.kind === 'refuse') return this.refuseRaw(socket, x, outcome);
    if (outcome.kind === 'intercept') throw new Error('intercept outcome for an upgrade'); // unreachable
    // A channel outlives its handshake: a kill switch during the decision (DNS) must not open one.
    const ended = this.identifier.stillLive(session, outcome.policyVersion);
    if (ended) return this.refuseRaw(socket, x, ended);
    x.allow(outcome.rule, outcome.policyVersion);
    this.websockets.relay(req, socket, head, target, outcome.address, x, session, outcome.meter);
  }

  /** A CONNECT inside an intercepted tunnel: refused (400 `not_supported`) and audited with the session. */
  private refuseNestedConnect(req: IncomingMessage, socket: Socket): void {
    const tunnel = this.tunnels.of(socket);
    const x = this.exchange('CONNECT', 'https', tunnel?.session ?? null, req);
    try {
      const t = parseConnectTarget(req.url ?? '');
      x.setTarget({
        host: t.host,
        port: t.port,
        path: '',
        policyHost: t.policyHost,
        url: connectUrl(t.host, t.port),
      });
    } catch {
      // audited without a target
    }
    this.refuseRaw(socket, x, {
      kind: 'refuse',
      reason: 'bad_request',
      rule: null,
      policyVersion: x.policyVersion,
      body: {
        error: 'not_supported',
        detail: 'CONNECT inside a tunnel is not supported',
        sessionId: tunnel?.session.id ?? null,
      },
    });
  }

  /**
   * A client too slow with its request headers (`gateway.limits.clientHeadersTimeoutMs`) or whole
   * request (`clientRequestTimeoutMs`): 408 `request_timeout`, audited with reason `client_timeout`,
   * and the connection closed.
   */
  private clientTimeout(socket: Socket): void {
    // Inside an intercepted tunnel: the tunnel's session and host (tunnel.ts runs the same timeouts).
    const tunnel = this.tunnels.of(socket);
    const session =
      tunnel?.session ?? this.opts.sessions.atAddress(normalizeRemoteAddress(socket.remoteAddress));
    const x = this.exchange('UNKNOWN', tunnel ? 'https' : 'http', session);
    if (tunnel) {
      x.host = tunnel.host;
      x.port = tunnel.port;
    }
    this.refuseRaw(socket, x, {
      kind: 'refuse',
      reason: 'client_timeout',
      rule: null,
      policyVersion: x.policyVersion,
      body: {
        error: 'request_timeout',
        detail:
          'the request was not received in time (gateway.limits.clientHeadersTimeoutMs / clientRequestTimeoutMs)',
        sessionId: session?.id ?? null,
      },
    });
  }

  /** A request Node's parser refused (bad framing, oversized headers): 400 and an audit event. */
  private clientError(err: NodeJS.ErrnoException, socket: Socket): void {
    // A response in progress (a request being forwarded): its exchange audits itself; never write
    // a second answer into it.
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || inFlight) {
      socket.destroy();
      return;
    }
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return this.clientTimeout(socket);
    const tunnel = this.tunnels.of(socket);
    const session =
      tunnel?.session ?? this.opts.sessions.atAddress(normalizeRemoteAddress(socket.remoteAddress));
    const x = this.exchange('UNKNOWN', tunnel ? 'https' : 'http', session);
    if (tunnel) {
      x.host = tunnel.host;
      x.port = tunnel.port;
    }
    this.refuseRaw(
      socket,
      x,
      badRequest(
        new Error(`malformed HTTP request (${err.code ?? 'parse error'})`),
        session,
        x.policyVersion,
      ),
    );
  }
}

/**
 * The refusal of a body the gateway had to read whole and could not: 413 `body_too_large` (over
 * `gateway.limits.bufferedBodyBytes`) or 408 `request_timeout` (too slow), nothing forwarded.
 */
function bodyRefusal(
  why: Exclude<BodyRead, { ok: true }>['why'],
  detail: string,
  rule: string | null,
  policyVersion: string | null,
  sessionId: string,
): Refusal {
  const tooLarge = why === 'too_large';
  return {
    kind: 'refuse',
    reason: tooLarge ? 'body_too_large' : 'client_timeout',
    rule,
    policyVersion,
    body: { error: tooLarge ? 'body_too_large' : 'request_timeout', detail, sessionId },
  };
}
