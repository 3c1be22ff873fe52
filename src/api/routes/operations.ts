import type { Express } from 'express';
import type { ApiContext } from '../context.js';
import { methodNotAllowed } from '../middleware.js';
import { readiness } from '../readiness.js';

/** Registers the unauthenticated operations routes: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`. */
export function registerOperationsRoutes(app: Express, ctx: ApiContext): void {
  const getOnly = methodNotAllowed(['GET']);

  app
    .route('/healthz')
    .get((_req, res) => {
      res.json({ status: 'ok' });
    })
    .all(getOnly);

  app
    .route('/readyz')
    .get((_req, res) => {
      const r = readiness(ctx.policy, ctx.sessions);
      res.status(r.ready ? 200 : 503).json(r);
    })
    .all(getOnly);

  app
    .route('/metrics')
    .get(async (_req, res) => {
      const text = await ctx.metrics.registry.metrics();
      res.type(ctx.metrics.registry.contentType).send(text);
    })
    .all(getOnly);

  app
    .route('/openapi.json')
    .get((_req, res) => {
      res.json(ctx.openapi);
    })
    .all(getOnly);
}
