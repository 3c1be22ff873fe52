import type { Logger } from '../log.js';
import type { PolicySource } from '../policy/types.js';
import type { SessionService } from '../sessions/types.js';
import type { TokenVerifier } from './auth.js';
import type { ApiMetrics } from './metrics.js';

/** What the route modules share (internal to src/api). */
export interface ApiContext {
  sessions: SessionService;
  policy: PolicySource;
  verifier: TokenVerifier;
  metrics: ApiMetrics;
  logger: Logger;
  /** The OpenAPI document, built once. */
  openapi: Record<string, unknown>;
}

/** `res.locals` keys set by the API's middleware. */
export interface ApiLocals {
  /** Random id of this request, also sent as `X-Request-Id` and logged. */
  requestId: string;
  /** Name of the API token that authenticated the request (set on /v1 routes only). */
  caller?: string;
}
