import type { Logger } from '../log.js';
import type { CredentialSource } from '../policy/credentials.js';
import type { PolicySource } from '../policy/types.js';
import type { ApprovalService } from '../sessions/approvals.js';
import type { SessionGrantView, SessionService } from '../sessions/types.js';
import type { TokenVerifier } from './auth.js';
import type { ApiMetrics } from './metrics.js';

/** What the route modules share (internal to src/api). */
export interface ApiContext {
  sessions: SessionService;
  policy: PolicySource;
  verifier: TokenVerifier;
  metrics: ApiMetrics;
  logger: Logger;
  /** Value versions for `GET /v1/credentials`; absent: every version is null. */
  credentialVersions?: CredentialVersions;
  /** Last-use times for `GET /v1/credentials`; absent: every time is null. */
  credentialUse?: CredentialUse;
  /** The OpenAPI document, built once. */
  openapi: Record<string, unknown>;
  /** Approvals (docs/approvals.md); absent: `/v1/approvals` is not served. */
  approvals?: ApprovalService;
  /** Time-boxed grants; absent: `POST /v1/sessions/{id}/grants` is not served. */
  grants?: SessionGrants;
}

/** Grants a session an allow rule for a limited time (SessionManager.grant). */
export interface SessionGrants {
  grant(
    id: string,
    caller: string,
    g: { host: string; path: string; method: string; ttlSeconds: number; reason: string },
  ): Promise<SessionGrantView>;
}

/** `res.locals` keys set by the API's middleware. */
export interface ApiLocals {
  /** Random id of this request, also sent as `X-Request-Id` and logged. */
  requestId: string;
  /** Name of the API token that authenticated the request (set on /v1 routes only). */
  caller?: string;
}

/**
 * Reads a credential source's value version the way the gateway would see it (the Docker runtime:
 * src/runtime/docker/credentials.ts); null when unavailable. Never returns a value.
 */
export interface CredentialVersions {
  versionOf(source: CredentialSource): string | null;
}

/** When a credential was last injected (src/audit/credential-use.ts); never a value. */
export interface CredentialUse {
  /** ISO 8601 time, or null when no injection is on record. */
  lastUsedAt(name: string): string | null;
}
