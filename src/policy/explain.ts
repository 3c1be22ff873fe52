/**
 * `airlock policy explain`: why a policy decides a request the way it does — the decision, the role
 * chain (with the `g` lines that link it), every matching rule, and the reason in words.
 */
import { isNormalizedPath } from '../request/normalize.js';
import type { CompiledPolicy } from './compile.js';
import { POLICY_FILE, type PolicyRule } from './csv.js';
import { matchHostPattern } from './matchers.js';
import type { PolicyDecision, PolicyRequest } from './types.js';

/** One role whose rules apply, with how it was reached. */
export interface RoleStep {
  readonly role: string;
  /** The role that inherits it (null for the request's own role). */
  readonly via: string | null;
  /** The `g` line linking `via` to `role` (null for the request's own role). */
  readonly line: number | null;
  /** Roles from the request's role down to this one (`['responder', 'analyst', 'base']`). */
  readonly path: readonly string[];
}

/** Everything `airlock policy explain` prints. */
export interface ExplainReport {
  readonly request: PolicyRequest;
  readonly decision: PolicyDecision;
  /** Whether any rule or `g` line names the role. */
  readonly knownRole: boolean;
  /** The request's role and every role it inherits, breadth-first (nearest first), each once. */
  readonly chain: readonly RoleStep[];
  /** Every matching rule, in file order; `decides` marks the one the decision names. */
  readonly matched: readonly { readonly rule: PolicyRule; readonly decides: boolean }[];
  /** Rules of the chain for the request's host that did not match (path or method differ), file order, at most 10. */
  readonly nearMisses: readonly PolicyRule[];
  /** The reason in one sentence. */
  readonly why: string;
}

function lines(rules: readonly PolicyRule[]): string {
  return rules.map((r) => r.line).join(', ');
}

/**
 * Explains a decision. `req` must be normalised like a gateway request (see `requestFromUrl`).
 * Never throws.
 */
export function explainRequest(policy: CompiledPolicy, req: PolicyRequest): ExplainReport {
  const ex = policy.explain(req);
  const knownRole = policy.roles.has(req.role);

  const parents = new Map<string, { parent: string; line: number }[]>();
  for (const l of policy.roleLinks) {
    const list = parents.get(l.role);
    if (list) list.push({ parent: l.parent, line: l.line });
    else parents.set(l.role, [{ parent: l.parent, line: l.line }]);
  }
  const chain: RoleStep[] = [{ role: req.role, via: null, line: null, path: [req.role] }];
  const seen = new Set([req.role]);
  for (let i = 0; i < chain.length; i++) {
    const step = chain[i] as RoleStep;
    for (const p of parents.get(step.role) ?? []) {
      if (seen.has(p.parent)) continue;
      seen.add(p.parent);
      chain.push({ role: p.parent, via: step.role, line: p.line, path: [...step.path, p.parent] });
    }
  }

  const decider = ex.decision.rule;
  const matched = ex.matched.map((rule) => ({ rule, decides: rule.text === decider }));
  const host = req.host.toLowerCase();
  const matchedSet = new Set(ex.matched);
  const nearMisses = policy.policyRules
    .filter((r) => seen.has(r.role) && !matchedSet.has(r) && matchHostPattern(r.hostPattern, host))
    .slice(0, 10);

  const allows = ex.matched.filter((r) => r.effect === 'allow');
  const denies = ex.matched.filter((r) => r.effect === 'deny');
  const decidingRule = ex.matched.find((r) => r.text === decider);
  let why: string;
  if (ex.decision.reason === 'rule_deny' && decidingRule) {
    why =
      `deny overrides allow: ${POLICY_FILE}:${decidingRule.line} (role ${decidingRule.role}) denies this request` +
      (denies.length > 1 ? ` (first of ${denies.length} matching deny rules: lines ${lines(denies)})` : '') +
      (allows.length > 0
        ? `; ${allows.length} matching allow ${allows.length === 1 ? 'rule is' : 'rules are'} overridden (lines ${lines(allows)})`
        : '');
  } else if (ex.decision.reason === 'rule_ask' && decidingRule) {
    why =
      `needs a person's approval: ${POLICY_FILE}:${decidingRule.line} (role ${decidingRule.role}) is an ask rule ` +
      '(deny > ask > allow; no deny rule matches)' +
      (allows.length > 0
        ? `; ${allows.length} matching allow ${allows.length === 1 ? 'rule waits' : 'rules wait'} for the approval (lines ${lines(allows)})`
        : '') +
      '. The gateway forwards this exact request (method, URL, body) once approved (docs/approvals.md)';
  } else if (ex.decision.reason === 'rule_allow' && decidingRule) {
    why =
      `allowed by ${POLICY_FILE}:${decidingRule.line} (role ${decidingRule.role}) and no deny rule matches` +
      (allows.length > 1
        ? ` (${allows.length} allow rules match: lines ${lines(allows)}; the last in file order is named, as Casbin does)`
        : '');
  } else if (!knownRole) {
    why = `no match: role "${req.role}" is not named by any rule or g line, so nothing is allowed (no match = deny)`;
  } else if (!isNormalizedPath(req.path)) {
    why = `no match: path "${req.path}" is not in normal form, so no rule matches it (no match = deny)`;
  } else {
    const names = chain.map((s) => s.role).join(', ');
    why =
      `no match: no rule of ${chain.length === 1 ? `role ${names}` : `roles ${names}`} matches ` +
      `${req.method} ${req.host}${req.path} (no match = deny)` +
      (nearMisses.length > 0
        ? `; ${nearMisses.length} rule(s) name this host but differ in path or method`
        : '');
  }
  return { request: req, decision: ex.decision, knownRole, chain, matched, nearMisses, why };
}
