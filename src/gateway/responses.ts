/**
 * The answers the gateway writes itself (never an upstream's): the contract's deny body, the other
 * refusals of the catalogue in src/errors.ts ({@link GatewayAnswers}), and the writers for a
 * `ServerResponse` (plain and intercepted HTTP) and a raw socket (CONNECT, client errors). The
 * status and the `x-airlock-decision` header come from the catalogue, so a body can never be sent
 * with another status or a header that misstates what was decided.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { GatewayAnswers, type GatewayAnswer } from '../errors.js';

/** Body of a denied call (DESIGN.md "A denied call"). */
export interface DenyBody {
  error: 'egress_denied';
  sessionId: string;
  role: string;
  method: string;
  /** scheme://host[:port]/path, without the query string. */
  url: string;
  policyVersion: string | null;
  hint: string;
}

/** Every other answer of the gateway: a stable `error` string and a sentence for people. */
export interface GatewayErrorBody {
  error: Exclude<
    GatewayAnswer,
    'egress_denied' | 'budget_exceeded' | 'approval_required' | 'approval_timeout'
  >;
  detail: string;
  sessionId?: string | null;
  /** `limit_exceeded` only: which per-session limit (`concurrentRequests`, `connections`, `tunnels`). */
  limit?: string;
}

/**
 * A budget of the policy is used up (budgets.yaml; 429 with `Retry-After`): the deny body's fields,
 * plus the budget's name and when it renews.
 */
export interface BudgetBody {
  error: 'budget_exceeded';
  sessionId: string;
  role: string;
  method: string;
  url: string;
  policyVersion: string | null;
  /** The budget's `name` in budgets.yaml. */
  budget: string;
  /** Seconds until the budget's window renews (also the `Retry-After` header). */
  retryAfterSeconds: number;
  hint: string;
}

/**
 * A call an `ask` rule matched waits for a person (docs/approvals.md; 403): the deny body's fields,
 * plus the approval to wait for. The agent's way forward: retry the same request once it is approved.
 */
export interface ApprovalBody {
  error: 'approval_required' | 'approval_timeout';
  sessionId: string;
  role: string;
  method: string;
  url: string;
  policyVersion: string | null;
  /** The approval opened for (or already open for) exactly this request; null when none can be. */
  approvalId: string | null;
  /** The `ask` rule that matched. */
  rule: string | null;
  hint: string;
}

/** What the gateway may send as a body of its own. */
export type GatewayBody = DenyBody | GatewayErrorBody | BudgetBody | ApprovalBody;

/**
 * The deny body as sent: the contract's fields plus those of a Kubernetes `Status` object
 * (`kind`, `apiVersion`, `status`, `reason`, `code`, `message` = the hint), so that client-go and
 * kubectl show the hint ("Error from server (Forbidden): Airlock egress policy ...") instead of an
 * opaque "unknown" (client-go only prints bodies that are a Status). Other clients ignore them.
 */
function wireBody(body: GatewayBody): object {
  if (body.error !== 'egress_denied') return body;
  return {
    ...body,
    kind: 'Status',
    apiVersion: 'v1',
    status: 'Failure',
    reason: 'Forbidden',
    code: 403,
    message: body.hint,
  };
}

/** HTTP status of a body of the gateway (the catalogue's). */
export function statusOf(body: GatewayBody): number {
  return GatewayAnswers[body.error].status;
}

export function denyHint(role: string, method: string, url: string): string {
  return (
    `Airlock egress policy does not let role "${role}" ${method} ${url}. This is a policy decision, ` +
    `not a network fault: retrying will not help. If the call is needed, ask the session's owner to ` +
    `grant it with a rule in the policy repository (policy.csv).`
  );
}

/**
 * Hint of a call the session's role allows but its creator's own egress rules do not (delegation:
 * a session never exceeds the API caller that created it).
 */
export function creatorDenyHint(role: string, creator: string, method: string, url: string): string {
  return (
    `Airlock egress policy lets role "${role}" ${method} ${url}, but this session was created by API ` +
    `caller "${creator}", who lacks that permission, and a session never exceeds its creator. This is a ` +
    `policy decision, not a network fault: retrying will not help. If the call is needed, ask for a ` +
    `session created by a caller allowed to make it, or for a rule granting it to "${creator}" in the ` +
    `policy repository (policy.csv).`
  );
}

/** Hint when no valid policy is loaded (DESIGN.md property 3: fail closed). */
export const NO_POLICY_HINT =
  'No valid egress policy is loaded, so Airlock denies every call (fail closed). Ask an operator to fix the policy.';

/** Detail of a call refused because the audit cannot be written (`audit.onFailure: deny`, decide.ts step 0). */
export const AUDIT_UNAVAILABLE_DETAIL =
  'The gateway cannot write its audit trail (disk full or audit file unwritable), so it refuses every ' +
  'call until it can (fail closed). Nothing was sent. Retry later; an operator frees space or fixes the audit file.';

/** Detail of a call to the reserved pseudo-host `airlock.api` (management rules), which is never dialled. */
export const RESERVED_HOST_DETAIL =
  'airlock.api names the Airlock API in policy rules (delegation); it is not a network destination ' +
  'and the gateway never connects to it';

/**
 * Writes a JSON answer from the gateway itself on an HTTP response; status and `x-airlock-decision`
 * from the catalogue. When headers were already sent (an upstream response had started), the
 * response is destroyed instead. @returns the body's length in bytes (0 when destroyed).
 */
export function sendJson(
  res: ServerResponse,
  body: GatewayBody,
  headers: Record<string, string> = {},
): number {
  if (res.headersSent) {
    res.destroy();
    return 0;
  }
  const text = JSON.stringify(wireBody(body));
  const answer = GatewayAnswers[body.error];
  res.writeHead(answer.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-airlock-decision': answer.decision,
    ...headers,
  });
  res.end(text);
  return Buffer.byteLength(text);
}

/**
 * Writes a JSON-RPC answer of the gateway itself (an MCP call refused, src/gateway/mcp.ts): HTTP 200,
 * as MCP clients expect a JSON-RPC error in a successful HTTP response, with `x-airlock-decision`.
 */
export function sendJsonRpc(res: ServerResponse, text: string, decision: 'deny'): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(GatewayAnswers.mcp_denied.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-airlock-decision': decision,
  });
  res.end(text);
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  413: 'Content Too Large',
  429: 'Too Many Requests',
  502: 'Bad Gateway',
  504: 'Gateway Timeout',
};

/** Writes a complete JSON answer on a raw socket (CONNECT and client errors) and ends it. */
export function sendRawJson(socket: Socket, body: GatewayBody, headers: Record<string, string> = {}): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const text = JSON.stringify(wireBody(body));
  const answer = GatewayAnswers[body.error];
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${answer.status} ${STATUS_TEXT[answer.status] ?? 'Error'}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n` +
      `x-airlock-decision: ${answer.decision}\r\nconnection: close\r\n${extra}\r\n${text}`,
  );
}
