import type { Express } from 'express';
import type { z } from 'zod';
import type { PolicySnapshot, PolicySource } from '../../policy/types.js';
import type { ApiContext } from '../context.js';
import { methodNotAllowed, requireAuth } from '../middleware.js';
import type { policyStatusSchema } from '../schemas.js';

/** Every role of the policy with its enforcement mode (modes.yaml), roles sorted. */
function modesOf(snapshot: PolicySnapshot): Record<string, 'enforce' | 'complain'> {
  const modes: Record<string, 'enforce' | 'complain'> = {};
  for (const role of [...snapshot.roles].sort())
    modes[role] = snapshot.complainRoles?.has(role) ? 'complain' : 'enforce';
  return modes;
}

/** The body of `GET /v1/policy` (and the event stream's `policy` event): every field null while none is loaded. */
export function policyStatus(source: PolicySource): z.output<typeof policyStatusSchema> {
  const snapshot = source.current();
  return {
    version: snapshot?.version ?? null,
    loadedAt: snapshot?.loadedAt.toISOString() ?? null,
    rules: snapshot?.rules ?? null,
    lastError: source.lastError(),
    modes: snapshot ? modesOf(snapshot) : null,
  };
}

/** Registers `GET /v1/policy`: the policy in force, every field null while none is loaded. */
export function registerPolicyRoutes(app: Express, ctx: ApiContext): void {
  app
    .route('/v1/policy')
    .get(requireAuth(ctx), (_req, res) => {
      res.json(policyStatus(ctx.policy));
    })
    .all(methodNotAllowed(['GET']));
}
