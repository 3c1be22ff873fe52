import { randomUUID } from 'node:crypto';
import type { ErrorRequestHandler, Request, RequestHandler } from 'express';
import { ErrorCodes, UnauthorizedError } from '../errors.js';
import { bearerToken } from './auth.js';
import type { ApiContext } from './context.js';
import { ApiErrorCodes, problem, sendProblem, toProblem } from './problem.js';

/** Route label for requests no route matched (keeps metric label cardinality bounded). */
export const UNMATCHED_ROUTE = '(unmatched)';

/** Paths probed often by machines; their request log lines go to `debug` instead of `info`. */
const quietPaths = new Set(['/healthz', '/readyz', '/metrics']);

/** The route pattern that served `req` (`/v1/sessions/:id`), or {@link UNMATCHED_ROUTE}. */
function routeLabel(req: Request): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  return typeof path === 'string' ? path : UNMATCHED_ROUTE;
}

/**
 * First middleware: gives the request an id (`X-Request-Id`), sets headers every answer carries
 * (`Cache-Control: no-store`, `X-Content-Type-Options: nosniff`), and on completion records metrics
 * and one log line `{requestId, method, route, status, durationMs, caller}`.
 */
export function observe(ctx: ApiContext): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    const requestId = randomUUID();
    res.locals.requestId = requestId;
    res.setHeader('X-Request-Id', requestId);
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = routeLabel(req);
      ctx.metrics.observe(req.method, route, res.statusCode, seconds);
      const line = {
        requestId,
        method: req.method,
        route,
        status: res.statusCode,
        durationMs: Math.round(seconds * 1e6) / 1e3,
        caller: res.locals.caller as string | undefined,
      };
      if (quietPaths.has(req.path)) ctx.logger.debug(line, 'api request');
      else ctx.logger.info(line, 'api request');
    });
    next();
  };
}

const bearerChallengeInvalid = 'Bearer realm="airlock", error="invalid_token"';

/**
 * Bearer-token check for /v1 routes: sets `res.locals.caller` to the token's name, or answers 401
 * with `WWW-Authenticate: Bearer` (RFC 6750 §3; `error="invalid_token"` when a token was sent).
 */
export function requireAuth(ctx: ApiContext): RequestHandler {
  return (req, res, next) => {
    const token = bearerToken(req.headers.authorization);
    const caller = token === null ? null : ctx.verifier.verify(token);
    if (caller === null) {
      ctx.metrics.authFailures.inc();
      res.setHeader('WWW-Authenticate', token === null ? 'Bearer realm="airlock"' : bearerChallengeInvalid);
      const err = new UnauthorizedError(token === null ? undefined : 'invalid bearer token');
      sendProblem(res, problem(err.code, err.message));
      return;
    }
    res.locals.caller = caller;
    next();
  };
}

/** Answers 405 with `Allow` for a known path asked with a method it does not serve. */
export function methodNotAllowed(allowed: readonly string[]): RequestHandler {
  const allow = allowed.join(', ');
  return (req, res) => {
    res.setHeader('Allow', allow);
    sendProblem(
      res,
      problem(ErrorCodes.REQUEST_INVALID, `${req.method} is not allowed on ${req.path}; use ${allow}`, {
        status: 405,
      }),
    );
  };
}

/** Last route: 404 problem for any path no route serves. */
export const notFound: RequestHandler = (req, res) => {
  sendProblem(res, problem(ApiErrorCodes.ROUTE_NOT_FOUND, `no route for ${req.method} ${req.path}`));
};

/**
 * Error middleware: every thrown error becomes a problem+json answer (mapping in ./problem.ts).
 * Unexpected errors are logged with their stack under the request id and answered with a generic 500.
 */
export function errorHandler(ctx: ApiContext): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    const requestId = String(res.locals.requestId ?? '');
    const { problem: p, internal } = toProblem(err, requestId);
    if (internal)
      ctx.logger.error({ err, requestId, method: req.method, path: req.path }, 'api internal error');
    else if (p.status >= 500)
      ctx.logger.warn({ requestId, code: p.code, detail: p.detail }, 'api upstream failure');
    if (res.headersSent) {
      next(err);
      return;
    }
    if (p.status === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="airlock"');
    sendProblem(res, p);
  };
}
