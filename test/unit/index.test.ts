/**
 * The package's public entry (src/index.ts → dist/index.js): exactly these runtime names, the
 * documented types, and a decision made through it alone. A name added or removed here is a change
 * of the public API.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, expectTypeOf, it } from 'vitest';
import * as airlock from '../../src/index.js';
import type {
  AuditEvent,
  Config,
  CreateSessionRequest,
  ErrorCode,
  ExecOutput,
  PolicyDecision,
  PolicyRequest,
  PolicySnapshot,
  Problem,
  ReloadResult,
  SessionService,
  SessionView,
} from '../../src/index.js';

const POLICIES = fileURLToPath(new URL('../../policies', import.meta.url));

/** Every runtime export of src/index.ts, sorted. */
const RUNTIME_EXPORTS = [
  'AirlockError',
  'CANONICAL_MODEL',
  'CompiledPolicy',
  'ConfigError',
  'ErrorCodes',
  'ExecTimeoutError',
  'ForbiddenError',
  'GatewayUnavailableError',
  'GitPolicySource',
  'MODEL_FILE',
  'POLICY_FILE',
  'PolicyError',
  'PolicyStore',
  'PolicyTestError',
  'RequestValidationError',
  'RuntimeError',
  'RuntimeUnavailableError',
  'SandboxRejectedError',
  'SessionConflictError',
  'SessionNotFoundError',
  'TESTS_DIR',
  'UnauthorizedError',
  'UnknownRoleError',
  'assertPolicyTestsPass',
  'compilePolicy',
  'explainRequest',
  'lintPolicy',
  'loadConfig',
  'loadPolicyDir',
  'openPolicySource',
  'parseAuditLines',
  'parseConfig',
  'parsePolicyTestFile',
  'policyVersion',
  'readPolicyDir',
  'readPolicyTestFiles',
  'replayCalls',
  'requestFromUrl',
  'runPolicyTestFiles',
  'runPolicyTests',
  // the TypeScript SDK (src/sdk, docs/sdk.md)
  'AirlockApiError',
  'AirlockClient',
  'AirlockConnectionError',
  'AirlockSdkError',
  'InvalidRequestError',
  'IsolationFailedError',
  'RuntimeFailedError',
  'Sandbox',
  'SdkExecTimeoutError',
  'SdkForbiddenError',
  'SdkGatewayUnavailableError',
  'SdkRuntimeUnavailableError',
  'SdkSandboxRejectedError',
  'SdkSessionConflictError',
  'SdkSessionNotFoundError',
  'SdkUnauthorizedError',
  'SdkUnknownRoleError',
  'errorFromProblem',
];

describe('public entry (src/index.ts)', () => {
  it('exports exactly the public runtime names', () => {
    expect(Object.keys(airlock).sort()).toEqual([...RUNTIME_EXPORTS].sort());
  });

  it('keeps internals out (gateway, runtime, API server, CLI, logger)', () => {
    const names = Object.keys(airlock);
    for (const internal of [
      'EgressGateway',
      'startGatewayService',
      'DockerRuntime',
      'KubernetesRuntime',
      'createApiApp',
      'SessionManager',
      'startServer',
      'LastKnownGood',
      'createLogger',
      'firstIssue',
    ]) {
      expect(names).not.toContain(internal);
    }
  });

  it('every error class is an AirlockError with a code from ErrorCodes', () => {
    const codes = new Set<string>(Object.values(airlock.ErrorCodes));
    const err = new airlock.PolicyError('bad line', 'policy.csv:1');
    expect(err).toBeInstanceOf(airlock.AirlockError);
    expect(codes.has(err.code)).toBe(true);
  });

  it('loads, decides, explains and tests the example policy through the entry alone', async () => {
    const policy = await airlock.loadPolicyDir(POLICIES);
    const r = airlock.requestFromUrl('http://forum.test:3000/posts/1', 'get');
    const req: PolicyRequest = { role: 'analyst', host: r.policyHost, path: r.path, method: r.method };
    const d: PolicyDecision = policy.decide(req);
    expect(d).toMatchObject({ allowed: true, reason: 'rule_allow' });
    expect(airlock.explainRequest(policy, req).decision).toEqual(d);
    const report = await airlock.runPolicyTests(policy, POLICIES);
    expect(report.failures).toEqual([]);
  });

  it('exports the documented types', () => {
    expectTypeOf<ReturnType<typeof airlock.parseConfig>>().toEqualTypeOf<Config>();
    expectTypeOf<airlock.CompiledPolicy>().toExtend<PolicySnapshot>();
    expectTypeOf<AuditEvent['decision']>().toEqualTypeOf<'allow' | 'deny' | 'would_deny'>();
    expectTypeOf<ErrorCode>().toExtend<string>();
    expectTypeOf<ReloadResult['version']>().toEqualTypeOf<string | null>();
    expectTypeOf<SessionService['get']>().returns.toEqualTypeOf<SessionView>();
    expectTypeOf<CreateSessionRequest['role']>().toEqualTypeOf<string>();
    expectTypeOf<ExecOutput['exitCode']>().toEqualTypeOf<number>();
    expectTypeOf<Problem>().toHaveProperty('code');
  });
});
