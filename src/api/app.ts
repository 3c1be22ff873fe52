import express from 'express';
import { silentLogger, type Logger } from '../log.js';
import type { PolicySource } from '../policy/types.js';
import type { SessionService } from '../sessions/types.js';
import { TokenVerifier, type ApiToken } from './auth.js';
import type { ApiContext, CredentialUse, CredentialVersions, SessionGrants } from './context.js';
import type { ApprovalService } from '../sessions/approvals.js';
import { registerApprovalRoutes } from './routes/approvals.js';
import { ApiMetrics } from './metrics.js';
import { errorHandler, notFound, observe } from './middleware.js';
import { buildOpenApiDocument } from './openapi.js';
import { registerConsoleRoutes } from './routes/console.js';
import { registerCredentialRoutes } from './routes/credentials.js';
import { registerEventRoutes, type AuditFeed } from './routes/events.js';
import { registerOperationsRoutes } from './routes/operations.js';
import { registerPolicyRoutes } from './routes/policy.js';
import { registerSessionRoutes } from './routes/sessions.js';

/** Options of {@link createApiApp}. */
export interface ApiAppOptions {
  /** The session layer (SessionManager in production). */
  sessions: SessionService;
  /** The policy store's read side; `/readyz` and `GET /v1/policy` read it. */
  policy: PolicySource;
  /**
   * Accepted bearer tokens. Empty means every /v1 request is refused with 401 (fail closed).
   * The matching token's `name` becomes the caller passed to `sessions.create`.
   */
  tokens: readonly ApiToken[];
  /** Metrics registry wrapper served at `/metrics`. @default a new ApiMetrics with default process metrics */
  metrics?: ApiMetrics;
  /** Where request lines and errors are logged. @default a silent logger */
  logger?: Logger;
  /** Value versions `GET /v1/credentials` shows (Docker runtime). @default none: versions are null */
  credentialVersions?: CredentialVersions;
  /** Last-use times `GET /v1/credentials` shows (from the audit trail). @default none: null */
  credentialUse?: CredentialUse;
  /**
   * New audit events for `GET /v1/events` (the control plane's AuditIndex). @default none: the
   * event stream carries sessions and policy status only
   */
  auditFeed?: AuditFeed;
  /** Approvals (docs/approvals.md): `/v1/approvals`. @default none: not served */
  approvals?: ApprovalService;
  /** Time-boxed grants: `POST /v1/sessions/{id}/grants`. @default none: not served */
  grants?: SessionGrants;
}

/**
 * Builds the sandbox REST API (DESIGN.md "API"; reference in docs/api.md) as an Express app, not yet
 * listening: pass it to `http.createServer` or call `.listen()`.
 *
 * Routes: `POST|GET /v1/sessions`, `GET|DELETE /v1/sessions/:id`, `POST /v1/sessions/:id/exec`,
 * `GET /v1/sessions/:id/audit`, `GET /v1/policy`, `GET /v1/credentials`, `GET /v1/events` (server-sent
 * events; all with `Authorization: Bearer <token>`), the web console's static files under `/ui/`, and
 * `GET /healthz`, `/readyz`, `/metrics`, `/openapi.json` (no token). Errors are
 * `application/problem+json` with a stable `code` (src/api/problem.ts, docs/errors.md).
 *
 * Exec requests hold the connection for up to `timeoutSeconds` (≤ 3600 s); a server placed in front
 * must not time out idle responses sooner.
 *
 * @throws ConfigError when a token or its name is empty, or a token is listed twice.
 */
export function createApiApp(opts: ApiAppOptions): express.Express {
  const metrics = opts.metrics ?? new ApiMetrics();
  metrics.bind(opts.sessions, opts.policy);
  const ctx: ApiContext = {
    sessions: opts.sessions,
    policy: opts.policy,
    verifier: new TokenVerifier(opts.tokens),
    metrics,
    logger: opts.logger ?? silentLogger(),
    openapi: buildOpenApiDocument(),
    ...(opts.credentialVersions ? { credentialVersions: opts.credentialVersions } : {}),
    ...(opts.credentialUse ? { credentialUse: opts.credentialUse } : {}),
    ...(opts.approvals ? { approvals: opts.approvals } : {}),
    ...(opts.grants ? { grants: opts.grants } : {}),
  };

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('case sensitive routing', true);
  app.set('strict routing', true);

  app.use(observe(ctx));
  registerOperationsRoutes(app, ctx);
  registerSessionRoutes(app, ctx);
  registerApprovalRoutes(app, ctx);
  registerPolicyRoutes(app, ctx);
  registerCredentialRoutes(app, ctx);
  registerEventRoutes(app, ctx, opts.auditFeed);
  registerConsoleRoutes(app, ctx);
  app.use(notFound);
  app.use(errorHandler(ctx));
  return app;
}
