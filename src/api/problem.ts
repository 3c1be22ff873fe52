import type { Response } from 'express';
import { AirlockError, ErrorCodes, RequestValidationError, RuntimeError, type ErrorCode } from '../errors.js';

/**
 * Error answers as RFC 9457 problem details (`application/problem+json`) carrying Airlock's stable
 * `code`. Which error becomes which status is decided here and only here; docs/errors.md is the
 * reader's copy of the same table.
 */

/**
 * Codes the API answers with that have no error class in src/errors.ts: they describe the HTTP
 * exchange itself, not a failure of Airlock's parts. Documented in docs/errors.md ("API-only codes").
 */
export const ApiErrorCodes = {
  /** No route matches the method and path. */
  ROUTE_NOT_FOUND: 'AIRLOCK_ROUTE_NOT_FOUND',
  /** An unexpected failure; details are in the server log under the response's `X-Request-Id`. */
  INTERNAL: 'AIRLOCK_INTERNAL',
} as const;

/** Every code an API error body may carry. */
export type ApiErrorCode = ErrorCode | (typeof ApiErrorCodes)[keyof typeof ApiErrorCodes];

/** The body of every error answer. */
export interface Problem {
  /** `urn:airlock:error:<code>`. */
  type: string;
  /** Short, fixed summary of the code. */
  title: string;
  /** HTTP status, repeated from the status line. */
  status: number;
  /** What went wrong in this request, for people. */
  detail: string;
  /** Stable code (docs/errors.md). */
  code: ApiErrorCode;
  /** For request validation failures: the offending field path (`command.0`, `(body)`). */
  field?: string;
}

interface Mapping {
  status: number;
  title: string;
}

/** HTTP status and title of each code the API may answer with. Codes absent here become 500. */
const byCode: Partial<Record<ApiErrorCode, Mapping>> = {
  [ErrorCodes.REQUEST_INVALID]: { status: 400, title: 'Invalid request' },
  [ErrorCodes.UNAUTHORIZED]: { status: 401, title: 'Unauthorized' },
  [ErrorCodes.FORBIDDEN]: { status: 403, title: 'Forbidden' },
  [ErrorCodes.SESSION_NOT_FOUND]: { status: 404, title: 'Session not found' },
  [ErrorCodes.SESSION_CONFLICT]: { status: 409, title: 'Session conflict' },
  [ErrorCodes.APPROVAL_NOT_FOUND]: { status: 404, title: 'Approval not found' },
  [ErrorCodes.APPROVAL_CONFLICT]: { status: 409, title: 'Approval not pending' },
  [ErrorCodes.UNKNOWN_ROLE]: { status: 422, title: 'Unknown role' },
  [ErrorCodes.SANDBOX_REJECTED]: { status: 422, title: 'Sandbox rejected by the platform' },
  [ErrorCodes.RUNTIME_FAILED]: { status: 502, title: 'Container runtime failed' },
  [ErrorCodes.RUNTIME_UNAVAILABLE]: { status: 503, title: 'Container runtime unavailable' },
  [ErrorCodes.GATEWAY_UNAVAILABLE]: { status: 503, title: 'Egress gateway unavailable' },
  [ErrorCodes.ISOLATION_FAILED]: { status: 503, title: 'Sandbox isolation self-test failed' },
  [ErrorCodes.EXEC_TIMEOUT]: { status: 504, title: 'Command timed out' },
  [ApiErrorCodes.ROUTE_NOT_FOUND]: { status: 404, title: 'Not found' },
  [ApiErrorCodes.INTERNAL]: { status: 500, title: 'Internal error' },
};

/**
 * The HTTP status an error code is answered with (e.g. `AIRLOCK_UNKNOWN_ROLE` → 422), or 500 for codes
 * that are not API answers (config and policy errors belong to startup and the CLI).
 */
export function statusForCode(code: string): number {
  return byCode[code as ApiErrorCode]?.status ?? 500;
}

/** Builds a problem for `code`; `status` overrides the code's usual status (413/415/405 for REQUEST_INVALID). */
export function problem(
  code: ApiErrorCode,
  detail: string,
  extra: { status?: number; field?: string } = {},
): Problem {
  const mapping = byCode[code] ?? { status: 500, title: 'Internal error' };
  const p: Problem = {
    type: `urn:airlock:error:${code}`,
    title: mapping.title,
    status: extra.status ?? mapping.status,
    detail,
    code,
  };
  if (extra.field !== undefined) p.field = extra.field;
  return p;
}

/**
 * Converts anything thrown by a handler into a problem. Airlock errors with an API mapping keep their
 * code and message; a RuntimeError's detail also carries the engine's own message (its `cause`).
 * Anything else is `internal: true`: the caller logs it and the client sees a generic detail naming
 * `requestId`, never the error's text.
 */
export function toProblem(err: unknown, requestId: string): { problem: Problem; internal: boolean } {
  if (err instanceof AirlockError && byCode[err.code]) {
    if (err instanceof RequestValidationError) {
      return { problem: problem(err.code, err.message, { field: err.field }), internal: false };
    }
    if (err instanceof RuntimeError) {
      const cause = err.cause instanceof Error ? err.cause.message : undefined;
      const detail = cause && !err.message.includes(cause) ? `${err.message}: ${cause}` : err.message;
      return { problem: problem(err.code, detail), internal: false };
    }
    return { problem: problem(err.code, err.message), internal: false };
  }
  return {
    problem: problem(
      ApiErrorCodes.INTERNAL,
      `internal error; the server log has the details (request ${requestId})`,
    ),
    internal: true,
  };
}

/** Sends `p` as `application/problem+json` with its status. */
export function sendProblem(res: Response, p: Problem): void {
  res.status(p.status).type('application/problem+json').send(JSON.stringify(p));
}
