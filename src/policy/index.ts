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
