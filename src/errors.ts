/**
 * Every error Airlock raises on purpose, in one place (the undici habit): a base class plus one
 * subclass per failure kind, each with a stable `code` that callers, the API's problem+json bodies
 * and docs/errors.md share. `test/unit/errors.test.ts` keeps this file and docs/errors.md in sync.
 */

/** Stable error codes. Adding one requires a row in docs/errors.md. */
export const ErrorCodes = {
  CONFIG_INVALID: 'AIRLOCK_CONFIG_INVALID',
  POLICY_INVALID: 'AIRLOCK_POLICY_INVALID',
  POLICY_TEST_FAILED: 'AIRLOCK_POLICY_TEST_FAILED',
  REQUEST_INVALID: 'AIRLOCK_REQUEST_INVALID',
  UNAUTHORIZED: 'AIRLOCK_UNAUTHORIZED',
  FORBIDDEN: 'AIRLOCK_FORBIDDEN',
  SESSION_NOT_FOUND: 'AIRLOCK_SESSION_NOT_FOUND',
  SESSION_CONFLICT: 'AIRLOCK_SESSION_CONFLICT',
  UNKNOWN_ROLE: 'AIRLOCK_UNKNOWN_ROLE',
  RUNTIME_FAILED: 'AIRLOCK_RUNTIME_FAILED',
  GATEWAY_UNAVAILABLE: 'AIRLOCK_GATEWAY_UNAVAILABLE',
  EXEC_TIMEOUT: 'AIRLOCK_EXEC_TIMEOUT',
  SANDBOX_REJECTED: 'AIRLOCK_SANDBOX_REJECTED',
  ISOLATION_FAILED: 'AIRLOCK_ISOLATION_FAILED',
  RUNTIME_UNAVAILABLE: 'AIRLOCK_RUNTIME_UNAVAILABLE',
  APPROVAL_NOT_FOUND: 'AIRLOCK_APPROVAL_NOT_FOUND',
  APPROVAL_CONFLICT: 'AIRLOCK_APPROVAL_CONFLICT',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Base class: `code` is stable, `message` is for people. */
export class AirlockError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AirlockError';
    this.code = code;
  }
}

/** A config file or value failed validation. `path` is the dotted key path (`gateway.port`). */
export class ConfigError extends AirlockError {
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(ErrorCodes.CONFIG_INVALID, message);
    this.name = 'ConfigError';
  }
}

/** A policy directory failed to parse, validate or compile. `location` is `file:line` when known. */
export class PolicyError extends AirlockError {
  constructor(
    message: string,
    readonly location?: string,
  ) {
    super(ErrorCodes.POLICY_INVALID, location ? `${location}: ${message}` : message);
    this.name = 'PolicyError';
  }
}

/** The policy's own tests (`policies/tests/*.yaml`) failed; the policy is not used. */
export class PolicyTestError extends AirlockError {
  constructor(
    message: string,
    readonly failures: readonly string[],
  ) {
    super(ErrorCodes.POLICY_TEST_FAILED, message);
    this.name = 'PolicyTestError';
  }
}

/** An API request body or parameter is invalid. `field` is the offending field path (`command.0`). */
export class RequestValidationError extends AirlockError {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(ErrorCodes.REQUEST_INVALID, message);
    this.name = 'RequestValidationError';
  }
}

/**
 * A request the gateway cannot classify unambiguously: upstreams are known to read it differently
 * from the policy (path parameters, double encoding, trailing dots, method-override or URL-rewrite
 * headers, a GET with a body). Refused with 400 `ambiguous_request` (docs/security.md, bypass classes).
 */
export class AmbiguousRequestError extends RequestValidationError {
  constructor(message: string, field: string) {
    super(message, field);
    this.name = 'AmbiguousRequestError';
  }
}

export class UnauthorizedError extends AirlockError {
  constructor(message = 'missing or invalid bearer token') {
    super(ErrorCodes.UNAUTHORIZED, message);
    this.name = 'UnauthorizedError';
  }
}

export class ForbiddenError extends AirlockError {
  constructor(message: string) {
    super(ErrorCodes.FORBIDDEN, message);
    this.name = 'ForbiddenError';
  }
}

export class SessionNotFoundError extends AirlockError {
  constructor(readonly sessionId: string) {
    super(ErrorCodes.SESSION_NOT_FOUND, `session ${sessionId} not found`);
    this.name = 'SessionNotFoundError';
  }
}

/** No approval has this id (never existed, or ended more than a day ago; docs/approvals.md). */
export class ApprovalNotFoundError extends AirlockError {
  constructor(readonly approvalId: string) {
    super(ErrorCodes.APPROVAL_NOT_FOUND, `approval ${approvalId} not found`);
    this.name = 'ApprovalNotFoundError';
  }
}

/** The approval exists but is no longer pending (already decided, used, expired or cancelled). */
export class ApprovalConflictError extends AirlockError {
  constructor(
    readonly approvalId: string,
    message: string,
  ) {
    super(ErrorCodes.APPROVAL_CONFLICT, message);
    this.name = 'ApprovalConflictError';
  }
}

export class SessionConflictError extends AirlockError {
  constructor(
    readonly sessionId: string,
    message: string,
  ) {
    super(ErrorCodes.SESSION_CONFLICT, message);
    this.name = 'SessionConflictError';
  }
}

export class UnknownRoleError extends AirlockError {
  constructor(readonly role: string) {
    super(ErrorCodes.UNKNOWN_ROLE, `role "${role}" is not defined by the loaded policy`);
    this.name = 'UnknownRoleError';
  }
}

/** The sandbox runtime (the Docker engine or the Kubernetes API) failed; `cause` carries its error. */
export class RuntimeError extends AirlockError {
  constructor(message: string, options?: { cause?: unknown }, code: ErrorCode = ErrorCodes.RUNTIME_FAILED) {
    super(code, message, options);
    this.name = 'RuntimeError';
  }
}

/**
 * The container engine cannot be reached at all (its socket is gone or refuses: dockerd stopped or
 * restarting). A RuntimeError, answered 503 `AIRLOCK_RUNTIME_UNAVAILABLE`: retry later.
 */
export class RuntimeUnavailableError extends RuntimeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options, ErrorCodes.RUNTIME_UNAVAILABLE);
    this.name = 'RuntimeUnavailableError';
  }
}

/** The control plane could not reach or update the egress gateway. */
export class GatewayUnavailableError extends AirlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.GATEWAY_UNAVAILABLE, message, options);
    this.name = 'GatewayUnavailableError';
  }
}

export class ExecTimeoutError extends AirlockError {
  constructor(readonly timeoutMs: number) {
    super(ErrorCodes.EXEC_TIMEOUT, `command did not finish within ${timeoutMs} ms`);
    this.name = 'ExecTimeoutError';
  }
}

/**
 * The platform refused the sandbox as specified (Kubernetes: the API server answered 422 Invalid or
 * 400 BadRequest for the Pod, Secret or NetworkPolicy). `reason` is the server's own message, e.g.
 * `metadata.labels: Invalid value: "…": must be no more than 63 characters`. Nothing is left behind.
 */
export class SandboxRejectedError extends AirlockError {
  constructor(
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(ErrorCodes.SANDBOX_REJECTED, `the platform rejected the sandbox: ${reason}`, options);
    this.name = 'SandboxRejectedError';
  }
}

/**
 * The isolation self-test at session start (src/sessions/self-test.ts) found the sandbox could reach
 * something other than its gateway, or could not show that it cannot. The session was not started
 * and everything created for it was removed. `findings` are the self-test's sentences.
 */
export class IsolationFailedError extends AirlockError {
  constructor(
    readonly sessionId: string,
    readonly findings: readonly string[],
  ) {
    super(
      ErrorCodes.ISOLATION_FAILED,
      `isolation self-test failed for session ${sessionId}, which was not started and is removed: ` +
        findings.join('; '),
    );
    this.name = 'IsolationFailedError';
  }
}

/**
 * Answers the egress gateway writes itself to a sandboxed program (never an upstream's): the JSON
 * body's `error` string, its HTTP status, and the `x-airlock-decision` header sent with it. These
 * are not API errors (no problem+json); docs/errors.md "Gateway answers" lists them and
 * `test/unit/errors.test.ts` keeps that table and this one in sync.
 * - `deny`: the gateway refused the call (policy, identity, request, destination, a per-session
 *   limit or a policy budget; `mcp_denied` is answered with status 200 and a JSON-RPC error body, as
 *   MCP clients expect — src/gateway/mcp.ts; `audit_unavailable` 503 while the audit cannot be
 *   written, `audit.onFailure: deny`): nothing reached the upstream — except for `request_timeout` of a body
 *   too slow or too long, whose upstream request was cut off; the audit event says `decision: "deny"`.
 * - `upstream-error`: the policy allowed the call but it failed on the way (the upstream could not be
 *   resolved or reached, timed out, or its certificate was refused, or the credential it is bound to
 *   has no value); audited as `decision: "allow"` with reason `upstream_error` / `upstream_tls_error`
 *   / `credential_unavailable`.
 */
export const GatewayAnswers = {
  egress_denied: { status: 403, decision: 'deny' },
  destination_refused: { status: 403, decision: 'deny' },
  session_expired: { status: 403, decision: 'deny' },
  proxy_auth_required: { status: 407, decision: 'deny' },
  identity_refused: { status: 407, decision: 'deny' },
  too_many_auth_failures: { status: 429, decision: 'deny' },
  bad_request: { status: 400, decision: 'deny' },
  not_supported: { status: 400, decision: 'deny' },
  ambiguous_request: { status: 400, decision: 'deny' },
  request_timeout: { status: 408, decision: 'deny' },
  limit_exceeded: { status: 429, decision: 'deny' },
  budget_exceeded: { status: 429, decision: 'deny' },
  credential_not_bound: { status: 403, decision: 'deny' },
  body_too_large: { status: 413, decision: 'deny' },
  mcp_denied: { status: 200, decision: 'deny' },
  audit_unavailable: { status: 503, decision: 'deny' },
  approval_required: { status: 403, decision: 'deny' },
  approval_timeout: { status: 403, decision: 'deny' },
  approval_unavailable: { status: 503, decision: 'deny' },
  credential_unavailable: { status: 503, decision: 'upstream-error' },
  upstream_unreachable: { status: 502, decision: 'upstream-error' },
  upstream_tls_error: { status: 502, decision: 'upstream-error' },
  upstream_error: { status: 502, decision: 'upstream-error' },
  upstream_timeout: { status: 504, decision: 'upstream-error' },
} as const satisfies Record<string, { status: number; decision: 'deny' | 'upstream-error' }>;

/** The `error` string of a gateway answer (see {@link GatewayAnswers}). */
export type GatewayAnswer = keyof typeof GatewayAnswers;
