import type { Express, Request, Response } from 'express';
import type { AuditEvent } from '../../audit/event.js';
import { RequestValidationError, SessionNotFoundError } from '../../errors.js';
import type { ApiOperation } from '../../policy/delegation.js';
import type { SessionService } from '../../sessions/types.js';
import { firstIssue } from '../../validation.js';
import type { ApiContext } from '../context.js';
import { authorizeSessionOp, readableBy } from '../delegation.js';
import { methodNotAllowed, requireAuth } from '../middleware.js';
import { toProblem } from '../problem.js';
import { createSessionBody, execBody, sessionIdParam } from '../schemas.js';
import { jsonBody, parseBody } from '../validate.js';

/**
 * The path parameter `{id}`, validated.
 * @throws RequestValidationError (`field: "id"`) when it cannot be a session id.
 */
function sessionId(req: Request): string {
  const result = sessionIdParam.safeParse(req.params.id);
  if (!result.success) {
    throw new RequestValidationError(
      `id: ${firstIssue(result.error)?.message ?? 'invalid session id'}`,
      'id',
    );
  }
  return result.data;
}

/** The caller name `requireAuth` put in `res.locals`. */
function callerOf(res: Response): string {
  return res.locals.caller as string;
}

/**
 * Looks the session up (404 first) and checks that the caller may do `op` on sessions of its role.
 * @returns `id`.
 * @throws SessionNotFoundError, ForbiddenError, GatewayUnavailableError (no policy)
 */
function authorizedSession(ctx: ApiContext, res: Response, id: string, op: ApiOperation): string {
  authorizeSessionOp(ctx.policy, callerOf(res), op, ctx.sessions.get(id).role);
  return id;
}

/**
 * The role of a live or ended session, for authorizing its audit trail: the live session's role, or
 * the role its audit events name once it has ended.
 * @throws SessionNotFoundError when the session neither exists nor has events.
 */
async function auditedSession(
  sessions: SessionService,
  id: string,
): Promise<{ role: string | null; events: AuditEvent[] }> {
  let role: string | null = null;
  try {
    role = sessions.get(id).role;
  } catch (err) {
    if (!(err instanceof SessionNotFoundError)) throw err;
  }
  const events = await sessions.audit(id);
  role ??= events.find((e) => e.role !== null)?.role ?? null;
  return { role, events };
}

/**
 * Registers `/v1/sessions` and its sub-routes (DESIGN.md "API"). Every route requires a bearer token,
 * and once the policy has management rules each operation needs one that allows it (delegation:
 * docs/policy.md); `GET /v1/sessions` lists only the sessions the caller may READ.
 */
export function registerSessionRoutes(app: Express, ctx: ApiContext): void {
  const auth = requireAuth(ctx);
  const { sessions } = ctx;
  const readJson = jsonBody();

  app
    .route('/v1/sessions')
    .post(auth, readJson, async (req, res) => {
      const body = parseBody(createSessionBody, req.body);
      authorizeSessionOp(ctx.policy, callerOf(res), 'CREATE', body.role);
      const view = await sessions.create(body, callerOf(res));
      res
        .status(201)
        .location(`/v1/sessions/${encodeURIComponent(view.id)}`)
        .json(view);
    })
    .get(auth, (_req, res) => {
      const readable = readableBy(ctx.policy, callerOf(res));
      res.json({ sessions: sessions.list().filter((s) => readable(s.role)) });
    })
    .all(methodNotAllowed(['GET', 'POST']));

  app
    .route('/v1/sessions/:id')
    .get(auth, (req, res) => {
      res.json(sessions.get(authorizedSession(ctx, res, sessionId(req), 'READ')));
    })
    .delete(auth, async (req, res) => {
      await sessions.remove(authorizedSession(ctx, res, sessionId(req), 'DELETE'));
      res.status(204).end();
    })
    .all(methodNotAllowed(['GET', 'DELETE']));

  app
    .route('/v1/sessions/:id/exec')
    .post(auth, readJson, async (req, res) => {
      const id = sessionId(req);
      const { command, timeoutSeconds, stream } = parseBody(execBody, req.body);
      authorizedSession(ctx, res, id, 'EXEC'); // 404 and 403 before any streamed byte
      if (!stream) {
        res.json(await sessions.exec(id, command, timeoutSeconds * 1000));
        return;
      }
      res.status(200).type('application/x-ndjson');
      res.flushHeaders();
      const line = (o: unknown): void => {
        res.write(JSON.stringify(o) + '\n');
      };
      try {
        const out = await sessions.exec(id, command, timeoutSeconds * 1000, (s, data) =>
          line({ stream: s, data }),
        );
        line({ exitCode: out.exitCode });
      } catch (err) {
        // The same mapping as a non-streamed answer: Airlock errors keep code and message, anything
        // else is logged and the client sees only the request id (docs/errors.md AIRLOCK_INTERNAL).
        const requestId = String(res.locals.requestId ?? '');
        const { problem: p, internal } = toProblem(err, requestId);
        if (internal) ctx.logger.error({ err, requestId, sessionId: id }, 'exec stream internal error');
        line({ error: p.code, detail: p.detail });
      }
      res.end();
    })
    .all(methodNotAllowed(['POST']));

  app
    .route('/v1/sessions/:id/audit')
    .get(auth, async (req, res) => {
      const id = sessionId(req);
      const { role, events } = await auditedSession(sessions, id);
      // An ended session's role comes from its events; with none to name it, only a caller allowed to
      // READ every role (`/sessions/*`) could be right, and "*" is what such a rule matches.
      authorizeSessionOp(ctx.policy, callerOf(res), 'READ', role ?? '*');
      res.json({ events });
    })
    .all(methodNotAllowed(['GET']));
}
