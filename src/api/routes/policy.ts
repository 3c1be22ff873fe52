import type { Express } from 'express';
import type { z } from 'zod';
import type { ApiContext } from '../context.js';
import { methodNotAllowed, requireAuth } from '../middleware.js';
import type { policyStatusSchema } from '../schemas.js';

/** Registers `GET /v1/policy`: the policy in force, every field null while none is loaded. */
export function registerPolicyRoutes(app: Express, ctx: ApiContext): void {
  app
    .route('/v1/policy')
    .get(requireAuth(ctx), (_req, res) => {
      const snapshot = ctx.policy.current();
      const body: z.output<typeof policyStatusSchema> = {
        version: snapshot?.version ?? null,
        loadedAt: snapshot?.loadedAt.toISOString() ?? null,
        rules: snapshot?.rules ?? null,
        lastError: ctx.policy.lastError(),
      };
      res.json(body);
    })
    .all(methodNotAllowed(['GET']));
}
