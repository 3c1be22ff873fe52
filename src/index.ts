/**
 * Airlock as a library: the package's only public entry (`import … from 'airlock'`, built to
 * `dist/index.js`). Everything not exported here is internal and may change without notice.
 *
 * What a library user gets:
 * - **Config**: {@link loadConfig} / {@link parseConfig} and the {@link Config} type (docs/config.md).
 * - **Policy**: load a directory ({@link loadPolicyDir}) or compile text ({@link compilePolicy}) into
 *   a {@link CompiledPolicy}; decide with `policy.decide(request)` on a normalised
 *   {@link PolicyRequest} (build one from a URL with {@link requestFromUrl}); explain with
 *   {@link explainRequest}; run `tests/*.yaml` with {@link runPolicyTests}; lint with
 *   {@link lintPolicy}; replay recorded calls with {@link replayCalls}; follow a directory or a Git
 *   ref with {@link openPolicySource} (docs/policy.md).
 * - **Audit**: the {@link AuditEvent} the gateway writes, one JSON line per decision.
 * - **Errors**: {@link AirlockError} and its subclasses, each with a stable `code` from
 *   {@link ErrorCodes} (docs/errors.md).
 * - **API and sessions**: the wire types of the REST API ({@link SessionView},
 *   {@link CreateSessionRequest}, {@link ExecOutput}, {@link Problem}) and the
 *   {@link SessionService} interface the API is built on (docs/api.md).
 *
 * @example
 * ```ts
 * import { loadPolicyDir, requestFromUrl } from 'airlock';
 * const policy = await loadPolicyDir('policies');
 * const r = requestFromUrl('http://forum.test:3000/posts/1', 'GET');
 * policy.decide({ role: 'analyst', host: r.policyHost, path: r.path, method: r.method });
 * // → { allowed: true, reason: 'rule_allow', rule: 'policy.csv:LINE: p, analyst, forum.test:3000, …' }
 * ```
 */

// --- config ---
export { loadConfig, parseConfig } from './config/load.js';
export type { Config, ConfigInput } from './config/schema.js';

// --- policy ---
export type { PolicyDecision, PolicyRequest, PolicySnapshot, PolicySource } from './policy/types.js';
export { CompiledPolicy, type Explanation } from './policy/compile.js';
export { compilePolicy, loadPolicyDir, policyVersion, readPolicyDir } from './policy/load.js';
export { CANONICAL_MODEL, MODEL_FILE } from './policy/model.js';
export { POLICY_FILE } from './policy/csv.js';
export { explainRequest, type ExplainReport, type RoleStep } from './policy/explain.js';
export {
  assertPolicyTestsPass,
  parsePolicyTestFile,
  readPolicyTestFiles,
  runPolicyTestFiles,
  runPolicyTests,
  TESTS_DIR,
  type PolicyTestCase,
  type PolicyTestFailure,
  type PolicyTestFile,
  type PolicyTestReport,
} from './policy/policy-tests.js';
export { lintPolicy, type LintFinding, type LintId, type LintSeverity } from './policy/lint.js';
export {
  parseAuditLines,
  replayCalls,
  type DecisionChange,
  type RecordedCall,
  type ReplayReport,
} from './policy/replay.js';
export { PolicyStore, type PolicyStoreOptions } from './policy/store.js';
export { GitPolicySource, type GitPolicySourceOptions } from './policy/git-source.js';
export type { PolicyListeners, PolicyLogger, ReloadResult } from './policy/last-good.js';
export {
  openPolicySource,
  type OpenPolicySourceOptions,
  type ReloadablePolicySource,
} from './policy/source.js';

// --- the request model the policy decides on ---
export { requestFromUrl, type NormalizedRequest } from './request/normalize.js';

// --- audit ---
export type { AuditEvent, DecisionOutcome, DecisionReason } from './audit/event.js';

// --- errors ---
export {
  AirlockError,
  ConfigError,
  ErrorCodes,
  ExecTimeoutError,
  ForbiddenError,
  GatewayUnavailableError,
  PolicyError,
  PolicyTestError,
  RequestValidationError,
  RuntimeError,
  RuntimeUnavailableError,
  SandboxRejectedError,
  SessionConflictError,
  SessionNotFoundError,
  UnauthorizedError,
  UnknownRoleError,
  type ErrorCode,
} from './errors.js';

// --- API wire types and the session service ---
export type { Problem } from './api/problem.js';
export type { CreateSessionRequest, ExecOutput, SessionService, SessionView } from './sessions/types.js';

// --- the TypeScript SDK (docs/sdk.md; also `airlock/sdk` with unprefixed error names) ---
export {
  AirlockApiError,
  AirlockClient,
  AirlockConnectionError,
  AirlockSdkError,
  InvalidRequestError,
  IsolationFailedError,
  RuntimeFailedError,
  RuntimeUnavailableError as SdkRuntimeUnavailableError,
  Sandbox,
  errorFromProblem,
  ExecTimeoutError as SdkExecTimeoutError,
  ForbiddenError as SdkForbiddenError,
  GatewayUnavailableError as SdkGatewayUnavailableError,
  SandboxRejectedError as SdkSandboxRejectedError,
  SessionConflictError as SdkSessionConflictError,
  SessionNotFoundError as SdkSessionNotFoundError,
  UnauthorizedError as SdkUnauthorizedError,
  UnknownRoleError as SdkUnknownRoleError,
  type AirlockClientOptions,
  type AirlockClientOptionsWithDefaults,
  type ApiComponents,
  type ApiOperations,
  type ApiPaths,
  type ApiProblem,
  type CreateSessionInput,
  type DecisionEvent,
  type DecisionsOptions,
  type ExecChunk,
  type ExecOptions,
  type ExecResult,
  type SandboxCreateOptions,
  type SessionInfo,
} from './sdk/index.js';
