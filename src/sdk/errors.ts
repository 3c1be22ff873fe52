/**
 * The SDK's errors. Every error the API answers (`application/problem+json`, RFC 9457) becomes an
 * {@link AirlockApiError} subclass chosen by its stable `code` (docs/errors.md), so callers can
 * `catch (e) { if (e instanceof SessionNotFoundError) … }` or switch on `e.code`. Failures to reach the
 * API at all are {@link AirlockConnectionError}.
 */
import type { components } from './openapi.gen.js';

/** The body of an API error answer (generated from the OpenAPI document). */
export type ApiProblem = components['schemas']['Problem'];

/** Base class of every error the SDK throws. */
export class AirlockSdkError extends Error {
  override name = 'AirlockSdkError';
}

/** The API could not be reached, or its answer could not be read (after the retries, for GET/DELETE). */
export class AirlockConnectionError extends AirlockSdkError {
  override name = 'AirlockConnectionError';
  constructor(
    message: string,
    /** `METHOD /path` of the call. */
    readonly call: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** An error answer of the API: HTTP status, stable `code`, the problem's `type` and `detail`. */
export class AirlockApiError extends AirlockSdkError {
  override name = 'AirlockApiError';
  /** Stable code, e.g. `AIRLOCK_SESSION_NOT_FOUND` (docs/errors.md). */
  readonly code: string;
  /** HTTP status of the answer. */
  readonly status: number;
  /** The problem's `type`: `urn:airlock:error:<code>`. */
  readonly type: string;
  /** What went wrong in this request, as the API said it. */
  readonly detail: string;
  /** For 400: the offending field path (`command.0`, `(body)`). */
  readonly field: string | undefined;
  /** The `x-request-id` of the answer (the server log's key), when present. */
  readonly requestId: string | undefined;
  /** `METHOD /path` of the call. */
  readonly call: string;

  constructor(problem: ApiProblem, call: string, requestId?: string) {
    super(`${call}: ${problem.status} ${problem.code}: ${problem.detail}`);
    this.code = problem.code;
    this.status = problem.status;
    this.type = problem.type;
    this.detail = problem.detail;
    this.field = problem.field;
    this.requestId = requestId;
    this.call = call;
  }
}

/** 400 `AIRLOCK_REQUEST_INVALID`: the body or a parameter is invalid; `field` names it. */
export class InvalidRequestError extends AirlockApiError {
  override name = 'InvalidRequestError';
}
/** 401 `AIRLOCK_UNAUTHORIZED`: no token, or one the API does not know. */
export class UnauthorizedError extends AirlockApiError {
  override name = 'UnauthorizedError';
}
/** 403 `AIRLOCK_FORBIDDEN`: the caller's token may not do this (delegation rules, docs/policy.md). */
export class ForbiddenError extends AirlockApiError {
  override name = 'ForbiddenError';
}
/** 404 `AIRLOCK_SESSION_NOT_FOUND`: no such session (or it has been removed). */
export class SessionNotFoundError extends AirlockApiError {
  override name = 'SessionNotFoundError';
}
/** 409 `AIRLOCK_SESSION_CONFLICT`: the session is not in a state that allows this (e.g. stopping). */
export class SessionConflictError extends AirlockApiError {
  override name = 'SessionConflictError';
}
/** 422 `AIRLOCK_UNKNOWN_ROLE`: the policy has no rule for this role. */
export class UnknownRoleError extends AirlockApiError {
  override name = 'UnknownRoleError';
}
/** 422 `AIRLOCK_SANDBOX_REJECTED`: the platform refused the sandbox (image, resources). */
export class SandboxRejectedError extends AirlockApiError {
  override name = 'SandboxRejectedError';
}
/** 502 `AIRLOCK_RUNTIME_FAILED`: the container runtime failed. */
export class RuntimeFailedError extends AirlockApiError {
  override name = 'RuntimeFailedError';
}
/** 503 `AIRLOCK_RUNTIME_UNAVAILABLE`: the container engine cannot be reached (stopped, restarting): retry later. */
export class RuntimeUnavailableError extends AirlockApiError {
  override name = 'RuntimeUnavailableError';
}
/** 503 `AIRLOCK_GATEWAY_UNAVAILABLE`: the egress gateway (or a valid policy) is not available. */
export class GatewayUnavailableError extends AirlockApiError {
  override name = 'GatewayUnavailableError';
}
/** 503 `AIRLOCK_ISOLATION_FAILED`: the sandbox isolation self-test failed; no session is created. */
export class IsolationFailedError extends AirlockApiError {
  override name = 'IsolationFailedError';
}
/** 504 `AIRLOCK_EXEC_TIMEOUT`: the command ran past its `timeoutSeconds`. */
export class ExecTimeoutError extends AirlockApiError {
  override name = 'ExecTimeoutError';
}

type ApiErrorClass = new (problem: ApiProblem, call: string, requestId?: string) => AirlockApiError;

/** The class for each stable code; other codes (AIRLOCK_INTERNAL, AIRLOCK_ROUTE_NOT_FOUND, …) get the base class. */
const byCode: Readonly<Record<string, ApiErrorClass>> = {
  AIRLOCK_REQUEST_INVALID: InvalidRequestError,
  AIRLOCK_UNAUTHORIZED: UnauthorizedError,
  AIRLOCK_FORBIDDEN: ForbiddenError,
  AIRLOCK_SESSION_NOT_FOUND: SessionNotFoundError,
  AIRLOCK_SESSION_CONFLICT: SessionConflictError,
  AIRLOCK_UNKNOWN_ROLE: UnknownRoleError,
  AIRLOCK_SANDBOX_REJECTED: SandboxRejectedError,
  AIRLOCK_RUNTIME_FAILED: RuntimeFailedError,
  AIRLOCK_RUNTIME_UNAVAILABLE: RuntimeUnavailableError,
  AIRLOCK_GATEWAY_UNAVAILABLE: GatewayUnavailableError,
  AIRLOCK_ISOLATION_FAILED: IsolationFailedError,
  AIRLOCK_EXEC_TIMEOUT: ExecTimeoutError,
};

/** The error for a problem body: the subclass of its code, else {@link AirlockApiError}. */
export function errorFromProblem(problem: ApiProblem, call: string, requestId?: string): AirlockApiError {
  const Cls = byCode[problem.code] ?? AirlockApiError;
  return new Cls(problem, call, requestId);
}
