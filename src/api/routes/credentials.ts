import type { Express } from 'express';
import type { z } from 'zod';
import type { ApiContext } from '../context.js';
import { methodNotAllowed, requireAuth } from '../middleware.js';
import type { credentialListSchema } from '../schemas.js';

type CredentialList = z.output<typeof credentialListSchema>;

/**
 * Registers `GET /v1/credentials`: the credential definitions (credentials.yaml) of the policy in
 * force, with each value's version, never a value (docs/credentials.md, docs/api.md). Any
 * authenticated caller may read it: definitions are reviewed policy text, not secrets, and the
 * management rules (`airlock.api`) govern sessions, not reading the policy (as `GET /v1/policy`).
 */
export function registerCredentialRoutes(app: Express, ctx: ApiContext): void {
  app
    .route('/v1/credentials')
    .get(requireAuth(ctx), (_req, res) => {
      const snapshot = ctx.policy.current();
      const body: CredentialList = {
        policyVersion: snapshot?.version ?? null,
        credentials: (snapshot?.credentials?.definitions ?? []).map((c) => ({
          name: c.name,
          roles: [...c.roles],
          bindings: c.bindings.map((b) => ({ host: b.host, path: b.path, methods: [...b.methods] })),
          apply: 'name' in c.apply ? { type: c.apply.type, name: c.apply.name } : { type: c.apply.type },
          source:
            'file' in c.source
              ? { kind: 'file', ref: c.source.file }
              : 'env' in c.source
                ? { kind: 'env', ref: c.source.env }
                : { kind: 'secret', ref: `${c.source.secretRef.name}/${c.source.secretRef.key}` },
          valueVersion: ctx.credentialVersions?.versionOf(c.source) ?? null,
          placeholder: c.placeholder ? { env: c.placeholder.env } : null,
          lastUsedAt: ctx.credentialUse?.lastUsedAt(c.name) ?? null,
        })),
      };
      res.json(body);
    })
    .all(methodNotAllowed(['GET']));
}
