/**
 * The audit event: one JSON line per gateway decision (DESIGN.md "Audit event"). Query strings and
 * credentials are never recorded: `path` is the normalised path without its query.
 */
/**
 * - `allow` / `deny`: the call was forwarded / refused.
 * - `would_deny`: the role's rules deny the call, and it was forwarded because the role is in complain
 *   mode (modes.yaml, docs/policy.md "Learning a policy") and the call's methods are safe (GET, HEAD,
 *   OPTIONS); `rule` and `reason` are the denial's (`rule_deny` / `no_match`), or `upstream_error` /
 *   `upstream_tls_error` when the forwarded call then failed.
 */
export type DecisionOutcome = 'allow' | 'deny' | 'would_deny';

/**
 * Fixed reason strings (the Smokescreen habit: a decision is data, its reason one of a closed set).
 * - `rule_allow`: an allow rule matched and no deny rule did.
 * - `rule_deny`: a deny rule matched (deny overrides allow).
 * - `no_match`: no rule matched the request (default deny).
 * - `no_policy`: no valid policy is loaded (fail closed).
 * - `unknown_session` / `bad_credential` / `address_mismatch` / `session_expired`: identity failures.
 * - `destination_refused`: the resolved upstream address is loopback/private/link-local/... , or the
 *   host is `airlock.api` (the pseudo-host of management rules, never dialled).
 * - `bad_request`: malformed request (framing, host disagreement, encoded separators).
 * - `ambiguous_request`: a request upstreams may read differently from the policy (`;` path
 *   parameters, double encoding, trailing dots, URL-rewrite headers, disagreeing method overrides, a
 *   GET with a body); refused with 400.
 * - `auth_backoff`: the source address failed authentication too often (20 in 10 s) and is refused
 *   429 for 10 s without its credential being checked; the refusals after the first are summarised
 *   in one event with `suppressed`.
 * - `tls_handshake_failed`: an intercepted CONNECT whose TLS handshake with the sandbox failed (a
 *   client offering only h2, a client that does not trust the installation CA); nothing was forwarded.
 * - `limit_exceeded`: a per-session limit of the gateway (`gateway.limits.*`: concurrent requests,
 *   connections, tunnels) was reached; answered 429 with `Retry-After`.
 * - `budget_exceeded`: a budget of the policy (budgets.yaml: requests per minute, bytes out per hour)
 *   is used up; answered 429 with `Retry-After`.
 * - `client_timeout`: the client was too slow: request headers or the whole request not received in
 *   time, or a request body below the minimum rate or over the maximum time; answered 408.
 * - `exfiltration_attempt`: the request carried the value of a credential the gateway holds
 *   (credentials.yaml) in its URL or a header where no binding of the role puts it; refused 403
 *   `credential_not_bound`, nothing forwarded, the value never recorded (docs/credentials.md).
 * - `credential_unavailable`: allowed and bound to a credential whose value the gateway does not
 *   have (file missing, variable unset); answered 503, nothing forwarded.
 * - `body_too_large`: a body the gateway must read to decide (an MCP call) was larger than
 *   `gateway.limits.bufferedBodyBytes`; refused 413, nothing forwarded.
 * - `tool_changed`: an MCP tool call of a tool whose description or schema changed during the
 *   session (tool pinning, docs/mcp.md); refused with a JSON-RPC error, nothing forwarded.
 * - `audit_unavailable`: the audit file could not be written (disk full, unwritable) and
 *   `audit.onFailure` is `deny`: every new call is refused 503 before it is decided; the event
 *   itself is kept in the sink's buffer and written when the file can be again.
 * - `approval_required`: an `ask` rule matched (docs/approvals.md) and no approval of a person covers
 *   exactly this request (session, method, URL, body hash) yet, or it was denied or is used up;
 *   refused 403 with the `approvalId` (`approvalId` on the event), nothing forwarded.
 * - `approval_timeout`: hold mode: no person decided within the hold time; refused 403.
 * - `approval_unavailable`: the control plane, which holds approvals, did not answer; refused 503.
 * - `approved`: an `ask` rule matched and an approval of a person covered exactly this request: one
 *   of its uses was spent and the call allowed (`approvalId` on the event).
 * - `approval_requested` / `approval_approved` / `approval_denied` / `approval_expired` /
 *   `approval_cancelled` / `approval_used`: a step in an approval's life, written by the control plane
 *   (not a gateway decision: `status` 0; `approval` on the event says who and why).
 * - `upstream_error`: allowed, but the upstream could not be reached or failed mid-response.
 * - `upstream_tls_error`: allowed, but the upstream's certificate failed verification (HTTPS).
 */
export const DecisionReasons = [
  'rule_allow',
  'rule_deny',
  'no_match',
  'no_policy',
  'unknown_session',
  'bad_credential',
  'address_mismatch',
  'session_expired',
  'destination_refused',
  'bad_request',
  'ambiguous_request',
  'limit_exceeded',
  'budget_exceeded',
  'client_timeout',
  'tls_handshake_failed',
  'auth_backoff',
  'exfiltration_attempt',
  'credential_unavailable',
  'body_too_large',
  'tool_changed',
  'audit_unavailable',
  'approval_required',
  'approval_timeout',
  'approval_unavailable',
  'approved',
  'approval_requested',
  'approval_approved',
  'approval_denied',
  'approval_expired',
  'approval_cancelled',
  'approval_used',
  'upstream_error',
  'upstream_tls_error',
] as const;
export type DecisionReason = (typeof DecisionReasons)[number];

/** One JSON-RPC message of an MCP exchange, as audited (AuditEvent `mcp`). */
export interface McpAuditMessage {
  /** The JSON-RPC method; absent for a response the client sends to a server request. */
  method?: string;
  /** The JSON-RPC id; absent for a notification. */
  id?: string | number;
  /** Tool or prompt name, or resource URI (decided messages only). */
  name?: string;
  /** The virtual path the message was decided on with method MCP (decided messages only). */
  path?: string;
  /** The decision of a decided message. */
  decision?: 'allow' | 'deny';
  /** The deciding rule of a decided message, or null (no rule matched). */
  rule?: string | null;
}

/** The MCP part of an audit event (AuditEvent `mcp`). */
export interface McpAudit {
  /** The endpoint's `name` in mcp.yaml. */
  endpoint: string;
  /** True when the body was a JSON-RPC batch (an array). */
  batch: boolean;
  messages: McpAuditMessage[];
  /**
   * Tools removed from `tools/list` answers: the session may not call them, or (also in
   * `changedTools`) their description changed since the session first saw them. Absent when the
   * body carried no `tools/list` request.
   */
  hiddenTools?: string[];
  /** Tools whose description or schema changed during the session (tool pinning; calls refused). */
  changedTools?: string[];
}

export interface AuditEvent {
  /** ISO-8601 time the decision was made. */
  time: string;
  /** Session the call came from; null when the caller could not be identified at all. */
  sessionId: string | null;
  role: string | null;
  method: string;
  scheme: 'http' | 'https';
  host: string;
  port: number;
  /** Normalised path, no query string. */
  path: string;
  decision: DecisionOutcome;
  /** The rule that decided (`policy.csv:12: p, analyst, ...`), or null when none did. */
  rule: string | null;
  reason: DecisionReason;
  /** HTTP status the sandbox received. */
  status: number;
  /** Decision + upstream time, in ms. */
  durationMs: number;
  /** Request body bytes sent upstream. */
  bytesOut: number;
  /** Response body bytes returned to the sandbox. */
  bytesIn: number;
  /** Version of the policy that decided (content hash or git SHA); null when none was loaded. */
  policyVersion: string | null;
  /**
   * The method the upstream will execute when the request carries a method override that differs
   * from `method` (`X-HTTP-Method-Override`, `_method`, …); both were decided. Absent otherwise.
   */
  methodOverride?: string;
  /**
   * Intercepted CONNECT only (audited when the tunnel closes): the number of requests decided inside
   * it; `bytesOut`/`bytesIn` are then the encrypted bytes that crossed the tunnel.
   */
  requests?: number;
  /**
   * Bytes of the request's head as received (request line and headers): with `bytesOut`, everything
   * the sandbox sent (data can leave in headers too). Absent on events without a request (summaries).
   */
  headerBytes?: number;
  /**
   * Length in bytes of the request's query string (without `?`), when it had one: data can leave in a
   * query as well as in a body. The query itself is never recorded.
   */
  queryBytes?: number;
  /**
   * First 16 hex digits of the SHA-256 of the query string (without `?`): lets the same query be
   * recognised across events; not a secret (a short query can be guessed from it).
   */
  querySha256?: string;
  /** The query string itself (without `?`), only with `audit.query: full` (docs/config.md). */
  query?: string;
  /**
   * The credential of credentials.yaml the gateway injected into the call (reason `rule_allow`), found
   * in it (`exfiltration_attempt`) or could not inject (`credential_unavailable`): its name and the
   * version of its value (a hash prefix, never the value). Absent otherwise.
   */
  credential?: { name: string; version: string | null };
  /** `exfiltration_attempt` only: where the value was found (`url` or `header:NAME`). */
  secretFoundIn?: string;
  /**
   * A call an `ask` rule matched (docs/approvals.md): the approval it opened or used (reasons
   * `approval_required`, `approval_timeout`, `approved`).
   */
  approvalId?: string;
  /** A step in an approval's life (control-plane events, reasons `approval_*`; docs/approvals.md). */
  approval?: {
    event: 'requested' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'used';
    /** Who approved or denied (an API caller), else null. */
    by: string | null;
    reason: string | null;
    uses: number;
    used: number;
    bodySha256: string;
  };
  /**
   * A POST to an MCP endpoint of mcp.yaml (docs/mcp.md): the endpoint's name and each JSON-RPC
   * message of the body in order — its method, request id, and for `tools/call` / `prompts/get` /
   * `resources/read` the tool or prompt name or resource URI, the virtual path it was decided on and
   * the decision (`allow`/`deny`) with the deciding rule. Absent on every other call.
   */
  mcp?: McpAudit;
  /** An authentication backoff's summary: the refusals not audited one by one (reason `auth_backoff`). */
  suppressed?: number;
  /** The caller's source address, on an authentication backoff's summary (the caller may have no session). */
  clientAddress?: string;
  /** The gateway worker that decided (1..N), when the gateway runs several (`gateway.workers`). */
  worker?: number;
  /**
   * The event's link in its writer's hash chain (tamper-evident audit, src/audit/chain.ts): set by
   * the audit file sink as it writes the line. Absent on events written before chaining.
   */
  chain?: AuditChainLink;
}

/** A link of the audit hash chain (AuditEvent `chain`). */
export interface AuditChainLink {
  /** The writer's stream id (a random UUID per gateway process or worker). */
  stream: string;
  /** Position in the stream: 1, 2, … */
  seq: number;
  /** SHA-256 (hex) of the stream's previous line as written (no newline); null for seq 1. */
  prev: string | null;
}

/** Where audit events go. Implementations must not throw from `emit`. */
export interface AuditSink {
  emit(event: AuditEvent): void;
}
