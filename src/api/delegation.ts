/**
 * Who may do what through the sessions API (docs/policy.md "Delegation"). The caller is the name of
 * the API token that authenticated the request; the policy decides `(caller, airlock.api,
 * /sessions/ROLE, OPERATION)` once it has any `airlock.api` rule, and lets every caller do everything
 * while it has none.
 */
import { ForbiddenError, GatewayUnavailableError } from '../errors.js';
import { apiRequest, authorizeApi, delegationOf, type ApiOperation } from '../policy/delegation.js';
import type { PolicySnapshot, PolicySource } from '../policy/types.js';

const WHAT: Record<ApiOperation, string> = {
  CREATE: 'create',
  READ: 'read',
  EXEC: 'exec in',
  DELETE: 'delete',
  GRANT: 'grant rules to',
  APPROVE: 'approve the requests of',
  APPROVE_OWN: 'approve the requests of own',
};

/**
 * The policy in force, needed to authorize an API call.
 * @throws GatewayUnavailableError (503) when no valid policy is loaded: without one it cannot be told
 *   whether delegation applies, so nothing is allowed (fail closed).
 */
function policyFor(source: PolicySource, op: ApiOperation): PolicySnapshot {
  const policy = source.current();
  if (!policy) {
    throw new GatewayUnavailableError(
      `no valid policy is loaded, so the ${op} operation cannot be authorized; fix the policy and retry`,
    );
  }
  return policy;
}

/**
 * Checks that `caller` may do `op` on sessions of `role`.
 * @throws ForbiddenError (403) naming the operation, the role and the deciding rule (if any);
 *   GatewayUnavailableError (503) when no valid policy is loaded.
 */
export function authorizeSessionOp(
  source: PolicySource,
  caller: string,
  op: ApiOperation,
  role: string,
): void {
  const a = authorizeApi(policyFor(source, op), caller, op, role);
  if (a.allowed) return;
  const d = a.decision;
  const why =
    d?.reason === 'rule_deny' && d.rule !== null
      ? `denied by ${d.rule}`
      : `no rule of "${caller}" allows ${op} on airlock.api ${apiRequest(caller, op, role).path}`;
  throw new ForbiddenError(
    `caller "${caller}" may not ${WHAT[op]} sessions of role "${role}" (operation ${op}): ${why}`,
  );
}

/**
 * A filter for `GET /v1/sessions`: whether `caller` may READ sessions of a role (everything while
 * delegation is off).
 * @throws GatewayUnavailableError (503) when no valid policy is loaded.
 */
export function readableBy(source: PolicySource, caller: string): (role: string) => boolean {
  const policy = policyFor(source, 'READ');
  if (!delegationOf(policy).enabled) return () => true;
  const memo = new Map<string, boolean>();
  return (role) => {
    let ok = memo.get(role);
    if (ok === undefined) {
      ok = authorizeApi(policy, caller, 'READ', role).allowed;
      memo.set(role, ok);
    }
    return ok;
  };
}
