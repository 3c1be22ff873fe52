import type { Express, Request } from 'express';
import { RequestValidationError } from '../../errors.js';
import type { ApiContext } from '../context.js';
import { methodNotAllowed, requireAuth } from '../middleware.js';
import { createSessionBody, execBody, sessionIdParam } from '../schemas.js';
import { jsonBody, parseBody } from '../validate.js';

/**
 * The path parameter `{id}`, validated.
 * @throws RequestValidationError (`field: "id"`) when it cannot be a session id.
 */
function sessionId(req: Request): string {
  const result = sessionIdParam.safeParse(req.params.id);
  if (!result.success) {
    throw new RequestValidationError(`id: ${result.error.issues[0]?.message ?? 'invalid session id'}`, 'id');
  }
  return result.data;
}

/** Registers `/v1/sessions` and its sub-routes (DESIGN.md "API"). Every route requires a bearer token. */
export function registerSessionRoutes(app: Express, ctx: ApiContext): void {
  const auth = requireAuth(ctx);
  const { sessions } = ctx;
  const readJson = jsonBody();

  app
    .route('/v1/sessions')
    .post(auth, readJson, async (req, res) => {
      const body = parseBody(createSessionBody, req.body);
      const view = await sessions.create(body, res.locals.caller as string);
      res
        .status(201)
        .location(`/v1/sessions/${encodeURIComponent(view.id)}`)
        .json(view);
    })
    .get(auth, (_req, res) => {
      res.json({ sessions: sessions.list() });
    })
    .all(methodNotAllowed(['GET', 'POST']));

  app
    .route('/v1/sessions/:id')
    .get(auth, (req, res) => {
      res.json(sessions.get(sessionId(req)));
    })
    .delete(auth, async (req, res) => {
      await sessions.remove(sessionId(req));
      res.status(204).end();
    })
    .all(methodNotAllowed(['GET', 'DELETE']));

  app
    .route('/v1/sessions/:id/exec')
    .post(auth, readJson, async (req, res) => {
      const id = sessionId(req);
      const { command, timeoutSeconds, stream } = parseBody(execBody, req.body);
      if (!stream) {
        res.json(await sessions.exec(id, command, timeoutSeconds * 1000));
        return;
      }
      sessions.get(id); // 404 before any streamed byte
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
        const e = err as { code?: string; message?: string };
        line({ error: e.code ?? 'AIRLOCK_INTERNAL', detail: e.message ?? String(err) });
      }
      res.end();
    })
    .all(methodNotAllowed(['POST']));

  app
    .route('/v1/sessions/:id/audit')
    .get(auth, async (req, res) => {
      res.json({ events: await sessions.audit(sessionId(req)) });
    })
    .all(methodNotAllowed(['GET']));
}
