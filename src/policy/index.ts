/** Public surface of the policy module (docs/policy.md). */
export type { PolicyDecision, PolicyRequest, PolicySnapshot, PolicySource } from './types.js';
export { CompiledPolicy, type Explanation, type SnapshotSource } from './compile.js';
export {
  MAX_ROLE_DEPTH,
  POLICY_FILE,
  parsePolicyCsv,
  type ParsedPolicy,
  type PolicyRule,
  type RoleLink,
} from './csv.js';
export { compilePolicy, loadPolicyDir, policyVersion, readPolicyDir } from './load.js';
export {
  hostMatch,
  methodMatch,
  pathMatch,
  parseHostPattern,
  parseMethodPattern,
  parsePathPattern,
  PatternError,
  type HostPattern,
  type PathPattern,
} from './matchers.js';
export { CANONICAL_MODEL, MODEL_FILE, validateModel } from './model.js';
export {
  assertPolicyTestsPass,
  listPolicyTestFiles,
  parsePolicyTestFile,
  readPolicyTestFiles,
  runPolicyTestFiles,
  runPolicyTests,
  TESTS_DIR,
  type PolicyTestCase,
  type PolicyTestFailure,
  type PolicyTestFile,
  type PolicyTestReport,
} from './policy-tests.js';
export { PolicyStore, type PolicyLogger, type PolicyStoreOptions, type ReloadResult } from './store.js';
export { newCasbinEnforcer } from './casbin.js';
export {
  ADMIN_PATHS,
  LINT_IDS,
  lintPolicy,
  STATE_CHANGING_METHODS,
  type LintFinding,
  type LintId,
  type LintSeverity,
} from './lint.js';
export { explainRequest, type ExplainReport, type RoleStep } from './explain.js';
export {
  AuditLineError,
  parseAuditLines,
  replayCalls,
  requestOfCall,
  type DecisionChange,
  type RecordedCall,
  type ReplayReport,
} from './replay.js';
export { gitSourceSchema, policyConfigSchema, type GitSourceConfig, type PolicyConfig } from './config.js';
export { gitCacheDir, GitCommandError, GitPolicySource, type GitPolicySourceOptions } from './git-source.js';
export { openPolicySource, type OpenPolicySourceOptions, type ReloadablePolicySource } from './source.js';
