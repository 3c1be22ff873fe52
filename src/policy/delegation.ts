/**
 * Delegation, the confused-deputy fix (docs/policy.md "Delegation"): API callers are Casbin subjects
 * in the same policy as session roles.
 *
 * - **Management permissions** are rules on the reserved pseudo-host {@link API_HOST}
 *   (`p, oncall, airlock.api, /sessions/responder, CREATE, allow`): method = the operation
 *   (`CREATE`, `READ`, `EXEC`, `DELETE`), path = `/sessions/ROLE` for the session's role. They are
 *   decided by the same compiled index as egress (`decide` with the caller as subject), so `g` lines,
 *   deny-overrides, `:param` and `*` work as everywhere else. Delegation is on as soon as the policy
 *   has one rule on `airlock.api`; without any, every authenticated caller may do everything.
 * - **Effective egress**: a session may make a call only if its role allows it *and*, when the
 *   session's creator has egress rules of its own (rules on other hosts, via its role closure), the
 *   creator's rules allow it too. A session never exceeds the caller who started it.
 *
 * Nothing here changes a snapshot: {@link delegationOf} computes a small per-snapshot view once
 * (memoised by snapshot identity) so the gateway's hot path costs one WeakMap lookup and one Set
 * lookup per call of a session whose creator is known.
 */
import { CompiledPolicy } from './compile.js';
import { POLICY_FILE, type PolicyRule } from './csv.js';
import type { PolicyDecision, PolicyRequest, PolicySnapshot } from './types.js';

/** The reserved pseudo-host of management rules. Never a network destination (the gateway refuses it). */
export const API_HOST = 'airlock.api';

/** Operations of the sessions API a management rule can grant (its METHOD field). */
export const API_OPERATIONS = [
  'CREATE',
  'READ',
  'EXEC',
  'DELETE',
  'GRANT',
  'APPROVE',
  'APPROVE_OWN',
] as const;
/**
 * `CREATE` (POST /v1/sessions), `READ` (get, list, audit), `EXEC`, `DELETE` and `GRANT` (time-boxed
 * grants) on `/sessions/ROLE`; `APPROVE` (approve or deny the approvals of sessions of ROLE) and
 * `APPROVE_OWN` (also those of sessions the caller created itself: separation of duties, off unless a
 * rule grants it) on `/approvals/ROLE` (docs/approvals.md).
 */
export type ApiOperation = (typeof API_OPERATIONS)[number];

/** Operations decided on `/approvals/ROLE` rather than `/sessions/ROLE`. */
const APPROVAL_OPERATIONS: ReadonlySet<string> = new Set(['APPROVE', 'APPROVE_OWN']);

/** What delegation knows about one policy snapshot. */
export interface DelegationView {
  /** Whether the policy has any rule on {@link API_HOST}: API operations then need a rule. */
  readonly enabled: boolean;
  /**
   * Whether `subject` (an API caller's name) has egress rules: any rule, allow or deny, on a host
   * other than {@link API_HOST}, of its own or inherited through `g` lines. Such a caller's sessions
   * are limited to what its own rules allow.
   */
  hasEgressRules(subject: string): boolean;
}

const DISABLED: DelegationView = Object.freeze({ enabled: false, hasEgressRules: () => false });

const views = new WeakMap<PolicySnapshot, DelegationView>();

/** Whether a rule is a management rule: host `airlock.api` (with or without a port, which lint refuses). */
export function isApiRule(rule: PolicyRule): boolean {
  const h = rule.hostPattern;
  return h.kind === 'exact' && (h.key === API_HOST || h.key.startsWith(`${API_HOST}:`));
}

/**
 * The delegation view of a snapshot, computed once per snapshot. Snapshots that are not a
 * {@link CompiledPolicy} (test doubles) carry no rules to look at: delegation is off for them and no
 * subject has egress rules.
 */
export function delegationOf(snapshot: PolicySnapshot): DelegationView {
  let view = views.get(snapshot);
  if (view === undefined) {
    view = snapshot instanceof CompiledPolicy ? build(snapshot) : DISABLED;
    views.set(snapshot, view);
  }
  return view;
}

function build(policy: CompiledPolicy): DelegationView {
  let enabled = false;
  const own = new Set<string>(); // subjects with egress rules of their own
  for (const r of policy.policyRules) {
    if (isApiRule(r)) enabled = true;
    else own.add(r.role);
  }
  const egress = new Set<string>();
  for (const subject of policy.roles) {
    if (own.has(subject) || policy.inheritedRoles(subject).some((p) => own.has(p))) egress.add(subject);
  }
  return Object.freeze({ enabled, hasEgressRules: (s: string) => egress.has(s) });
}

/** The policy request that stands for `caller` doing `op` on sessions of `role`. */
export function apiRequest(caller: string, op: ApiOperation, role: string): PolicyRequest {
  const collection = APPROVAL_OPERATIONS.has(op) ? 'approvals' : 'sessions';
  return { role: caller, host: API_HOST, path: `/${collection}/${role}`, method: op };
}

/** Answer of {@link authorizeApi}. */
export interface ApiAuthorization {
  readonly allowed: boolean;
  /** False when delegation is off (no `airlock.api` rule): everything is allowed, no rule consulted. */
  readonly enforced: boolean;
  /** The policy's decision when enforced (reason and deciding rule), otherwise null. */
  readonly decision: PolicyDecision | null;
}

const NOT_ENFORCED: ApiAuthorization = Object.freeze({ allowed: true, enforced: false, decision: null });

/**
 * May `caller` do `op` on sessions of `role`? Always yes while delegation is off; otherwise the
 * policy decides `(caller, airlock.api, /sessions/ROLE, OP)` (no match = deny).
 */
export function authorizeApi(
  snapshot: PolicySnapshot,
  caller: string,
  op: ApiOperation,
  role: string,
): ApiAuthorization {
  if (!delegationOf(snapshot).enabled) return NOT_ENFORCED;
  const decision = snapshot.decide(apiRequest(caller, op, role));
  return { allowed: decision.allowed, enforced: true, decision };
}

/** Answer of {@link decideEgress}: the effective decision, and whose rules decided a deny. */
export interface EgressVerdict {
  readonly decision: PolicyDecision;
  /** `creator` when the role allowed the call and the creator's rules denied it; otherwise `role`. */
  readonly by: 'role' | 'creator';
}

/** Whether a decision lets the call go on: allowed, or allowed once a person approves (`ask`). */
function passes(d: PolicyDecision): boolean {
  return d.allowed || d.reason === 'rule_ask';
}

/**
 * The effective egress decision of a session call: the role's decision, AND — when the session's
 * `creator` has egress rules — the creator's decision for the same request. An allow names the role's
 * rule; a deny names the deciding rule of whichever side denied (the role is asked first). `ask`
 * (docs/approvals.md) combines like a weaker allow: deny on either side → deny; else ask on either
 * side → ask (naming that side's ask rule); else allow.
 * @param req the request with `role` = the session's role.
 * @param creator the API caller that created the session (undefined or empty: no creator limit).
 * @param grant a time-boxed grant of the session matching the request (docs/approvals.md "Grants"),
 *   as a decision: it stands in for the role's answer only where the role's rules have no match, so
 *   deny and ask rules still win; the creator's limit still applies.
 */
export function decideEgress(
  snapshot: PolicySnapshot,
  req: PolicyRequest,
  creator?: string,
  grant?: (req: PolicyRequest) => PolicyDecision | null,
): EgressVerdict {
  let decision = snapshot.decide(req);
  if (decision.reason === 'no_match' && grant !== undefined) decision = grant(req) ?? decision;
  if (!passes(decision) || !creator || !delegationOf(snapshot).hasEgressRules(creator)) {
    return { decision, by: 'role' };
  }
  const limit = snapshot.decide({ role: creator, host: req.host, path: req.path, method: req.method });
  if (!passes(limit)) return { decision: limit, by: 'creator' };
  if (decision.allowed && limit.reason === 'rule_ask') return { decision: limit, by: 'creator' };
  return { decision, by: 'role' };
}

/**
 * {@link PolicySnapshot.mayReachHost} for a session: the role may reach the host and, when the
 * creator has egress rules, so may the creator. Used before opening an intercepted CONNECT tunnel.
 */
export function sessionMayReachHost(
  snapshot: PolicySnapshot,
  role: string,
  creator: string | undefined,
  host: string,
): boolean {
  if (!snapshot.mayReachHost(role, host)) return false;
  if (!creator || !delegationOf(snapshot).hasEgressRules(creator)) return true;
  return snapshot.mayReachHost(creator, host);
}

/** One problem with a management rule (same shape as the linter's findings). */
export interface DelegationFinding {
  readonly id: 'delegation-rule';
  readonly severity: 'error' | 'warning';
  /** Always `policy.csv`. */
  readonly file: string;
  readonly line: number;
  readonly message: string;
}

/**
 * Checks the management rules of a policy (`airlock policy check`). Errors: `airlock.api` with a port,
 * a method that is not an API operation (`GET`, `CONNECT`, ...), a path that can never be
 * `/sessions/ROLE`. Warning: `/sessions/ROLE` naming a role no `p` or `g` line defines (a typo grants
 * nothing). Pure; never throws.
 */
export function lintDelegation(policy: CompiledPolicy): DelegationFinding[] {
  const out: DelegationFinding[] = [];
  const add = (severity: 'error' | 'warning', line: number, message: string): void => {
    out.push({ id: 'delegation-rule', severity, file: POLICY_FILE, line, message });
  };
  const ops: readonly string[] = API_OPERATIONS;
  for (const r of policy.policyRules) {
    if (!isApiRule(r)) continue;
    if (r.hostPattern.key !== API_HOST) {
      add(
        'error',
        r.line,
        `"${r.host}": management rules name the bare host "${API_HOST}" (it is not a network host and has no ports)`,
      );
      continue;
    }
    if (r.effect === 'ask') {
      add(
        'error',
        r.line,
        `an ask rule on "${API_HOST}" has no meaning: approvals are for egress calls of sessions, and API operations are allowed or denied (use allow or deny)`,
      );
      continue;
    }
    if (r.method !== '*' && !ops.includes(r.method)) {
      add(
        'error',
        r.line,
        `method "${r.method}" is not an API operation on "${API_HOST}": use ${API_OPERATIONS.join(', ')} or "*" ` +
          `(the gateway never lets a session reach "${API_HOST}")`,
      );
      continue;
    }
    const { segments, tail } = r.pathPattern;
    const first = segments[0];
    const collection = r.method === '*' ? null : APPROVAL_OPERATIONS.has(r.method) ? 'approvals' : 'sessions';
    const firstOk =
      first === null ||
      (collection === null ? first === 'sessions' || first === 'approvals' : first === collection);
    const shapeOk =
      (segments.length === 0 && tail) || // /*
      (segments.length === 1 && tail && firstOk) || // /sessions/*
      (segments.length === 2 && !tail && firstOk); // /sessions/ROLE, /sessions/:role
    if (!shapeOk) {
      add(
        'error',
        r.line,
        `path "${r.path}" never matches an API operation (${r.method}): management paths are /sessions/ROLE ` +
          '(write /sessions/ROLE, /sessions/:role or /sessions/*), and /approvals/ROLE for APPROVE and APPROVE_OWN',
      );
      continue;
    }
    const role = segments[1];
    if (segments.length === 2 && typeof role === 'string' && !policy.roles.has(role)) {
      add(
        'warning',
        r.line,
        `"${r.path}": no rule or g line defines role "${role}", so no session of it can exist (a typo?)`,
      );
    }
  }
  return out;
}
