/**
 * Compiles parsed rules into an index that answers exactly as Casbin's `enforce` would on the Airlock
 * model (test/unit/policy/differential.test.ts checks this against casbin itself), in time
 * independent of the number of roles and hosts.
 *
 * Layout: role → (exact policy host → bucket, wildcard key → bucket); a bucket holds the rules of the
 * role and all its ancestors for that host, deny rules and allow rules apart, in file order. Each rule
 * carries its precomputed, frozen decision object, so `decide` allocates nothing except, for roles
 * with wildcard rules, one substring.
 */
import type { PolicyDecision, PolicyRequest, PolicySnapshot } from './types.js';
import { isNormalizedPath } from '../gateway/normalize.js';
import { matchMethodPattern, matchPathPattern, wildcardKeyOf, matchHostPattern } from './matchers.js';
import type { ParsedPolicy, PolicyRule, RoleLink } from './csv.js';

interface CompiledRule {
  readonly rule: PolicyRule;
  readonly line: number;
  readonly method: string;
  readonly decision: PolicyDecision;
}

interface Bucket {
  /** Deny rules in file order. */
  readonly deny: CompiledRule[];
  /** Allow rules in file order. */
  readonly allow: CompiledRule[];
}

interface RoleIndex {
  readonly exact: Map<string, Bucket>;
  readonly wildcard: Map<string, Bucket>;
}

const NO_MATCH: PolicyDecision = Object.freeze({ allowed: false, reason: 'no_match', rule: null });

/** Everything a matching-rules listing needs (`airlock policy explain`). */
export interface Explanation {
  readonly decision: PolicyDecision;
  /** Roles whose rules applied: the request's role and its ancestors, nearest first. */
  readonly roles: readonly string[];
  /** Every rule that matched, in file order. */
  readonly matched: readonly PolicyRule[];
}

/** Source of a snapshot, for diagnostics and `GET /v1/policy`. */
export interface SnapshotSource {
  readonly dir: string | null;
  readonly modelText: string;
  readonly policyText: string;
}

function matches(c: CompiledRule, path: string, method: string): boolean {
  return matchMethodPattern(c.method, method) && matchPathPattern(c.rule.pathPattern, path);
}

/**
 * An immutable, validated policy (one load of a policy directory). Safe for any number of concurrent
 * users: nothing in it changes after construction; reloads build a new instance.
 */
export class CompiledPolicy implements PolicySnapshot {
  readonly version: string;
  readonly loadedAt: Date;
  readonly rules: number;
  readonly roles: ReadonlySet<string>;
  /** The `p` lines, in file order. */
  readonly policyRules: readonly PolicyRule[];
  /** The `g` lines, in file order. */
  readonly roleLinks: readonly RoleLink[];
  readonly source: SnapshotSource;
  readonly #index: Map<string, RoleIndex>;
  readonly #ancestors: Map<string, readonly string[]>;

  constructor(parsed: ParsedPolicy, version: string, source: SnapshotSource, loadedAt = new Date()) {
    this.version = version;
    this.loadedAt = loadedAt;
    this.source = source;
    this.policyRules = Object.freeze([...parsed.rules]);
    this.roleLinks = Object.freeze([...parsed.links]);
    this.rules = parsed.rules.length + parsed.links.length;
    const roles = new Set<string>();
    for (const r of parsed.rules) roles.add(r.role);
    for (const l of parsed.links) {
      roles.add(l.role);
      roles.add(l.parent);
    }
    this.roles = roles;
    this.#ancestors = ancestorsOf(roles, parsed.links);
    this.#index = buildIndex(parsed.rules, this.#ancestors);
  }

  /**
   * Whether any allow rule of `role` (or its ancestors) names `host` (a policy host: `name` or
   * `name:port`). The gateway asks this before opening a CONNECT tunnel for interception, so a role
   * with no business on a host is refused at CONNECT, before any TLS handshake.
   */
  mayReachHost(role: string, host: string): boolean {
    const idx = this.#index.get(role);
    if (idx === undefined) return false;
    const h = host.toLowerCase();
    if ((idx.exact.get(h)?.allow.length ?? 0) > 0) return true;
    const key = idx.wildcard.size !== 0 ? wildcardKeyOf(h) : undefined;
    return key !== undefined && (idx.wildcard.get(key)?.allow.length ?? 0) > 0;
  }

  /**
   * Decides a request. Inputs are expected normalised (src/gateway/normalize.ts); as a safety net the
   * host is lowercased and the method uppercased here, and a path that is not in normal form matches
   * no rule (so it is denied as `no_match`). Deny overrides allow; no match is a deny.
   *
   * `rule` names, as Casbin's `enforceEx` does: for a deny the first matching deny rule in file order,
   * for an allow the last matching allow rule in file order.
   */
  decide(req: PolicyRequest): PolicyDecision {
    const idx = this.#index.get(req.role);
    if (idx === undefined) return NO_MATCH;
    const path = req.path;
    if (!isNormalizedPath(path)) return NO_MATCH;
    const host = req.host.toLowerCase();
    const method = req.method.toUpperCase();
    const exact = idx.exact.get(host);
    let wild: Bucket | undefined;
    if (idx.wildcard.size !== 0) {
      const key = wildcardKeyOf(host);
      if (key !== undefined) wild = idx.wildcard.get(key);
    }
    if (exact === undefined && wild === undefined) return NO_MATCH;

    let deny: CompiledRule | undefined;
    if (exact !== undefined) {
      for (const c of exact.deny) {
        if (matches(c, path, method)) {
          deny = c;
          break;
        }
      }
    }
    if (wild !== undefined) {
      for (const c of wild.deny) {
        if (deny !== undefined && c.line > deny.line) break;
        if (matches(c, path, method)) {
          deny = c;
          break;
        }
      }
    }
    if (deny !== undefined) return deny.decision;

    let allow: CompiledRule | undefined;
    if (exact !== undefined) {
      for (let i = exact.allow.length - 1; i >= 0; i--) {
        const c = exact.allow[i] as CompiledRule;
        if (matches(c, path, method)) {
          allow = c;
          break;
        }
      }
    }
    if (wild !== undefined) {
      for (let i = wild.allow.length - 1; i >= 0; i--) {
        const c = wild.allow[i] as CompiledRule;
        if (allow !== undefined && c.line < allow.line) break;
        if (matches(c, path, method)) {
          allow = c;
          break;
        }
      }
    }
    return allow !== undefined ? allow.decision : NO_MATCH;
  }

  /**
   * Like {@link decide}, plus every rule that matched and the roles consulted. Not for the hot path.
   */
  explain(req: PolicyRequest): Explanation {
    const decision = this.decide(req);
    const roles = this.#ancestors.get(req.role) ?? [];
    const roleSet = new Set(roles);
    const host = req.host.toLowerCase();
    const method = req.method.toUpperCase();
    const normal = isNormalizedPath(req.path);
    const matched = this.policyRules.filter(
      (r) =>
        normal &&
        roleSet.has(r.role) &&
        matchHostPattern(r.hostPattern, host) &&
        matchMethodPattern(r.method, method) &&
        matchPathPattern(r.pathPattern, req.path),
    );
    return { decision, roles, matched };
  }

  /** The role's ancestors (not including itself), nearest first; empty for unknown roles. */
  inheritedRoles(role: string): readonly string[] {
    return (this.#ancestors.get(role) ?? []).slice(1);
  }
}

/** role → [role, parents..., grandparents...] (breadth-first, each once). */
function ancestorsOf(roles: ReadonlySet<string>, links: readonly RoleLink[]): Map<string, readonly string[]> {
  const parents = new Map<string, string[]>();
  for (const l of links) {
    const list = parents.get(l.role);
    if (list) list.push(l.parent);
    else parents.set(l.role, [l.parent]);
  }
  const out = new Map<string, readonly string[]>();
  for (const role of roles) {
    const seen = new Set<string>([role]);
    const order = [role];
    for (let i = 0; i < order.length; i++) {
      for (const p of parents.get(order[i] as string) ?? []) {
        if (!seen.has(p)) {
          seen.add(p);
          order.push(p);
        }
      }
    }
    out.set(role, Object.freeze(order));
  }
  return out;
}

function buildIndex(
  rules: readonly PolicyRule[],
  ancestors: Map<string, readonly string[]>,
): Map<string, RoleIndex> {
  const compiled = new Map<string, CompiledRule[]>(); // rules by their own role, file order
  for (const rule of rules) {
    const c: CompiledRule = {
      rule,
      line: rule.line,
      method: rule.method,
      decision: Object.freeze({
        allowed: rule.effect === 'allow',
        reason: rule.effect === 'allow' ? 'rule_allow' : 'rule_deny',
        rule: rule.text,
      }),
    };
    const list = compiled.get(rule.role);
    if (list) list.push(c);
    else compiled.set(rule.role, [c]);
  }
  const index = new Map<string, RoleIndex>();
  for (const [role, chain] of ancestors) {
    const applicable: CompiledRule[] = [];
    for (const r of chain) applicable.push(...(compiled.get(r) ?? []));
    applicable.sort((a, b) => a.line - b.line);
    const ri: RoleIndex = { exact: new Map(), wildcard: new Map() };
    for (const c of applicable) {
      const map = c.rule.hostPattern.kind === 'exact' ? ri.exact : ri.wildcard;
      let bucket = map.get(c.rule.hostPattern.key);
      if (!bucket) {
        bucket = { deny: [], allow: [] };
        map.set(c.rule.hostPattern.key, bucket);
      }
      (c.rule.effect === 'deny' ? bucket.deny : bucket.allow).push(c);
    }
    index.set(role, ri);
  }
  return index;
}
