import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type { z } from 'zod';
import { ErrorCodes, RequestValidationError } from '../errors.js';
import { firstIssue } from '../validation.js';
import { problem, sendProblem } from './problem.js';
import { MAX_BODY_BYTES } from './schemas.js';

/** The field path reported when the body as a whole is wrong (not JSON, not an object, absent). */
export const BODY_FIELD = '(body)';

/**
 * Turns the first zod issue into a RequestValidationError naming the offending field:
 * an unknown field is named itself (`foo`), a bad record key its full path (`env.HTTP_PROXY`), a
 * wrong body as a whole {@link BODY_FIELD}. The message starts with the field path.
 */
export function issueToError(error: z.ZodError): RequestValidationError {
  const f = firstIssue(error);
  if (!f) return new RequestValidationError('invalid request body', BODY_FIELD);
  if (f.unknownKeys) {
    const extra = f.unknownKeys.length > 1 ? ` (and ${f.unknownKeys.length - 1} more)` : '';
    return new RequestValidationError(`unknown field "${f.field}"${extra}`, f.field);
  }
  const { issue } = f;
  const field = f.field || BODY_FIELD;
  let message = f.message;
  if (issue.code === 'invalid_key') message = issue.issues[0]?.message ?? 'invalid key';
  if (field === BODY_FIELD && issue.code === 'invalid_type')
    message = 'the request body must be a JSON object';
  return new RequestValidationError(`${field}: ${message}`, field);
}

/**
 * Validates `value` with `schema` and returns the parsed output.
 * @throws RequestValidationError naming the first offending field path.
 */
export function parseBody<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value, {
    // Schema-level messages take precedence; this only rewords zod's default for an absent field.
    error: (iss) => (iss.code === 'invalid_type' && iss.input === undefined ? 'required' : undefined),
  });
  if (!result.success) throw issueToError(result.error);
  return result.data;
}

/** True when the request carries a body (RFC 9112 §6.3: Transfer-Encoding or a non-zero Content-Length). */
function hasBody(req: Request): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const len = req.headers['content-length'];
  return len !== undefined && len !== '0';
}

/**
 * Middleware that reads a JSON request body: 415 when a body is present with another media type,
 * 413 beyond {@link MAX_BODY_BYTES}, 400 (`field: "(body)"`) for malformed JSON. Leaves `req.body`
 * undefined when no body was sent (the route's schema then rejects it).
 */
export function jsonBody(): RequestHandler {
  const parse = express.json({ limit: MAX_BODY_BYTES, strict: true, type: 'application/json' });
  return (req, res, next) => {
    if (hasBody(req) && !req.is('application/json')) {
      sendProblem(
        res,
        problem(ErrorCodes.REQUEST_INVALID, 'the request body must be application/json', {
          status: 415,
          field: BODY_FIELD,
        }),
      );
      return;
    }
    parse(req, res, (err?: unknown) => {
      if (err === undefined || err === null) next();
      else translateBodyError(err, res, next);
    });
  };
}

/** Maps body-parser's errors (identified by their `type`) to problems. */
function translateBodyError(err: unknown, res: Response, next: NextFunction): void {
  const type = (err as { type?: unknown }).type;
  const message = err instanceof Error ? err.message : String(err);
  if (type === 'entity.too.large') {
    sendProblem(
      res,
      problem(ErrorCodes.REQUEST_INVALID, `the request body exceeds ${MAX_BODY_BYTES} bytes`, {
        status: 413,
        field: BODY_FIELD,
      }),
    );
  } else if (type === 'encoding.unsupported' || type === 'charset.unsupported') {
    sendProblem(
      res,
      problem(ErrorCodes.REQUEST_INVALID, `the request body must be UTF-8 JSON: ${message}`, {
        status: 415,
        field: BODY_FIELD,
      }),
    );
  } else if (type === 'entity.parse.failed') {
    next(new RequestValidationError(`the request body is not valid JSON: ${message}`, BODY_FIELD));
  } else if (typeof type === 'string') {
    // request.aborted, request.size.invalid, stream.encoding.set, ...: the body could not be read.
    next(new RequestValidationError(`the request body could not be read (${type})`, BODY_FIELD));
  } else {
    next(err);
  }
}
