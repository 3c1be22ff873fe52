import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

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

/**
 * The deny body as sent: the contract's fields plus those of a Kubernetes `Status` object
 * (`kind`, `apiVersion`, `status`, `reason`, `code`, `message` = the hint), so that client-go and
 * kubectl show the hint ("Error from server (Forbidden): Airlock egress policy ...") instead of an
 * opaque "unknown" (client-go only prints bodies that are a Status). Other clients ignore them.
 */
function wireBody(body: DenyBody | GatewayErrorBody): object {
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

/** Other refusals the gateway answers itself, each with a stable `error` string. */
export interface GatewayErrorBody {
  error:
    | 'proxy_auth_required'
    | 'identity_refused'
    | 'session_expired'
    | 'bad_request'
    | 'destination_refused'
    | 'upstream_unreachable'
    | 'upstream_timeout'
    | 'upstream_error'
    | 'upstream_tls_error'
    | 'not_supported';
  detail: string;
  sessionId?: string | null;
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

/** Detail of a call to the reserved pseudo-host `airlock.api` (management rules), which is never dialled. */
export function reservedHostDetail(): string {
  return (
    'airlock.api names the Airlock API in policy rules (delegation); it is not a network destination ' +
    'and the gateway never connects to it'
  );
}

/** Writes a JSON answer from the gateway itself (never from an upstream). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: DenyBody | GatewayErrorBody,
  headers: Record<string, string> = {},
): number {
  const text = JSON.stringify(wireBody(body));
  if (res.headersSent) {
    res.destroy();
    return 0;
  }
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-airlock-decision': 'deny',
    ...headers,
  });
  res.end(text);
  return Buffer.byteLength(text);
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  407: 'Proxy Authentication Required',
  502: 'Bad Gateway',
  504: 'Gateway Timeout',
};

/** Writes a complete JSON response on a raw socket (CONNECT and client errors) and ends it. */
export function sendRawJson(
  socket: Socket,
  status: number,
  body: DenyBody | GatewayErrorBody,
  headers: Record<string, string> = {},
): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const text = JSON.stringify(wireBody(body));
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(text)}\r\nx-airlock-decision: deny\r\nconnection: close\r\n${extra}\r\n${text}`,
  );
}
