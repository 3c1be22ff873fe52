/**
 * The per-request record of the gateway (Smokescreen's request context): who called, what they
 * asked for, what was decided and why, what flowed. Every path through the gateway (plain HTTP,
 * HTTP inside an intercepted tunnel, CONNECT) builds one, fills it in as it goes, and calls
 * {@link Exchange.finish} once when the exchange is over; `finish` writes the one audit event of
 * the decision (DESIGN.md "Audit event").
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { AuditEvent, AuditSink, DecisionOutcome, DecisionReason, McpAudit } from '../audit/event.js';
import { GatewayAnswers } from '../errors.js';
import type { GatewaySession } from '../gateway-wire/session.js';
import type { GatewayBody } from './responses.js';

/** A refusal or failure the gateway answers itself (see decide.ts). */
export interface Refusal {
  kind: 'refuse';
  reason: DecisionReason;
  /** The rule that decided, when one did (a deny rule, or the allow rule of a refused destination). */
  rule: string | null;
  policyVersion: string | null;
  body: GatewayBody;
  /** Extra response headers (`proxy-authenticate` on 407, `retry-after` on 429). */
  headers?: Record<string, string>;
  /**
   * false: not audited by itself because a summarising event covers it (refusals inside an
   * authentication backoff, identify.ts). @default true
   */
  audit?: boolean;
}

/** Where the request is going, as parsed and normalised (target.ts). */
export interface ExchangeTarget {
  host: string;
  port: number;
  /** Normalised path without query; `''` for CONNECT. */
  path: string;
  /** `host` or `host:port` as the policy sees it (request/normalize.ts `policyHost`). */
  policyHost: string;
  /** `scheme://authority/path` without query: the `url` of a deny body. */
  url: string;
  /** `?query` as received, or `''`; audited only as its length and digest (see AuditEvent). */
  query?: string;
}

/** The last epoch ms formatted by {@link isoTime} and its text (calls of one ms share it). */
let isoAt = -1;
let isoText = '';

/** `new Date(ms).toISOString()`, reused for calls decided in the same millisecond (~0.4 µs each). */
function isoTime(ms: number): string {
  if (ms !== isoAt) {
    isoAt = ms;
    isoText = new Date(ms).toISOString();
  }
  return isoText;
}

export class Exchange {
  /** performance.now() at arrival, for `durationMs`. */
  readonly started = performance.now();
  /** Epoch ms at arrival: the audit event's `time` is when the call was decided, not when it ended. */
  readonly at = Date.now();
  session: GatewaySession | null;
  host = '';
  port = 0;
  path = '';
  policyHost = '';
  url = '';
  /** `?query` as received (never emitted: the audit has its length and digest). */
  private query = '';
  /** `audit.query: full`: the query text is recorded too (`query`), not only its length and digest. */
  recordQuery = false;
  /** The overriding method the upstream will execute (ambiguity.ts), decided as well as `method`. */
  methodOverride: string | null = null;
  decision: DecisionOutcome = 'deny';
  /**
   * Complain mode (modes.yaml; decide.ts step 4a): the rules denied this call, which goes on because
   * it is a safe call of a role in complain mode — the denial's reason and rule. {@link allow} then
   * records decision `would_deny` with them; null otherwise.
   */
  wouldDeny: { reason: DecisionReason; rule: string | null } | null = null;
  reason: DecisionReason = 'bad_request';
  rule: string | null = null;
  policyVersion: string | null;
  /** HTTP status the sandbox received (0: none, e.g. the client went away first). */
  status = 0;
  /** Request body bytes sent upstream. */
  bytesOut = 0;
  /** Response body bytes returned to the sandbox. */
  bytesIn = 0;
  /** Bytes of the request's head (request line and headers) as received; null when not known. */
  headerBytes: number | null = null;
  /** Requests decided inside an intercepted tunnel (CONNECT exchanges only; null otherwise). */
  requests: number | null = null;
  /** Refusals inside an authentication backoff (Refusal.audit false) are not audited one by one. */
  private silent = false;
  /** Refusals folded into this event (an authentication backoff's summary); null otherwise. */
  suppressed: number | null = null;
  /** The caller's source address, recorded on a backoff summary (the caller may have no session). */
  clientAddress: string | null = null;
  /** The credential injected, found (exfiltration attempt) or missing: name and value version only. */
  credential: { name: string; version: string | null } | null = null;
  /** Where a known secret was found (`url`, `header:NAME`), for an exfiltration attempt. */
  secretFoundIn: string | null = null;
  /** The approval an `ask` rule's call opened or used (docs/approvals.md), else null. */
  approvalId: string | null = null;
  /** The JSON-RPC messages of a POST to an MCP endpoint (src/gateway/mcp.ts); null otherwise. */
  mcp: McpAudit | null = null;
  private finished = false;

  constructor(
    private readonly sink: AuditSink,
    readonly method: string,
    readonly scheme: 'http' | 'https',
    session: GatewaySession | null,
    policyVersion: string | null,
  ) {
    this.session = session;
    this.policyVersion = policyVersion;
  }

  /** `url` with the query as forwarded (`?a=1`): what an approval is bound to (approvals.ts). */
  get urlWithQuery(): string {
    return this.url + this.query;
  }

  /** Records the parsed target. */
  setTarget(t: ExchangeTarget): void {
    this.host = t.host;
    this.port = t.port;
    this.path = t.path;
    this.policyHost = t.policyHost;
    this.url = t.url;
    this.query = t.query ?? '';
  }

  /**
   * Records that the policy allowed the call (before anything is dialled), or — with
   * {@link wouldDeny} set — that it goes on in complain mode (`would_deny`, the denial's reason and rule).
   */
  allow(rule: string | null, policyVersion: string): void {
    this.decision = 'allow';
    this.reason = this.approvalId !== null ? 'approved' : 'rule_allow';
    this.rule = rule;
    this.policyVersion = policyVersion;
    if (this.wouldDeny) {
      this.decision = 'would_deny';
      this.reason = this.wouldDeny.reason;
      this.rule = this.wouldDeny.rule;
    }
  }

  /**
   * Records a refusal or failure answered by the gateway itself: `deny` for the catalogue's refusals,
   * `allow` for upstream failures of an allowed call (src/errors.ts GatewayAnswers) — `would_deny`
   * for those of a call going on in complain mode.
   */
  refuse(r: Refusal): void {
    const answer = GatewayAnswers[r.body.error];
    this.decision = answer.decision === 'deny' ? 'deny' : this.wouldDeny ? 'would_deny' : 'allow';
    this.reason = r.reason;
    this.rule = r.rule;
    this.policyVersion = r.policyVersion;
    this.status = answer.status;
    this.silent = r.audit === false;
  }

  /** Writes the audit event; later calls do nothing (an exchange is audited exactly once). */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.silent) return;
    const event: AuditEvent = {
      time: isoTime(this.at),
      sessionId: this.session?.id ?? null,
      role: this.session?.role ?? null,
      method: this.method,
      scheme: this.scheme,
      host: this.host,
      port: this.port,
      path: this.path,
      decision: this.decision,
      rule: this.rule,
      reason: this.reason,
      status: this.status,
      durationMs: Math.round((performance.now() - this.started) * 1000) / 1000,
      bytesOut: this.bytesOut,
      bytesIn: this.bytesIn,
      policyVersion: this.policyVersion,
    };
    if (this.methodOverride !== null) event.methodOverride = this.methodOverride;
    // A query carrying a secret is not digested: a digest of a short query confirms a guessed value.
    if (this.query.length > 1 && this.reason !== 'exfiltration_attempt') {
      // Data can leave in a query string as well as in a body: its size and a digest are on record.
      event.queryBytes = Buffer.byteLength(this.query) - 1;
      event.querySha256 = createHash('sha256').update(this.query.slice(1)).digest('hex').slice(0, 16);
      if (this.recordQuery) event.query = this.query.slice(1);
    }
    if (this.headerBytes !== null) event.headerBytes = this.headerBytes;
    if (this.requests !== null) event.requests = this.requests;
    if (this.suppressed !== null) event.suppressed = this.suppressed;
    if (this.clientAddress !== null) event.clientAddress = this.clientAddress;
    if (this.credential !== null) event.credential = this.credential;
    if (this.secretFoundIn !== null) event.secretFoundIn = this.secretFoundIn;
    if (this.approvalId !== null) event.approvalId = this.approvalId;
    if (this.mcp !== null) event.mcp = this.mcp;
    this.sink.emit(event);
  }
}
