/** The sandbox REST API: the app factory, its metrics and the wire schemas (docs/api.md). */
export { createApiApp, type ApiAppOptions } from './app.js';
export { type ApiToken, TokenVerifier, bearerToken } from './auth.js';
export { ApiMetrics, type ApiMetricsOptions } from './metrics.js';
export { buildOpenApiDocument } from './openapi.js';
export { ApiErrorCodes, type ApiErrorCode, type Problem, statusForCode } from './problem.js';
export {
  createSessionBody,
  execBody,
  sessionSchema,
  sessionListSchema,
  execResultSchema,
  auditEventSchema,
  auditListSchema,
  policyStatusSchema,
  readinessSchema,
  problemSchema,
  RESERVED_ENV_NAMES,
  MAX_BODY_BYTES,
  DEFAULT_EXEC_TIMEOUT_SECONDS,
  MAX_EXEC_TIMEOUT_SECONDS,
} from './schemas.js';
