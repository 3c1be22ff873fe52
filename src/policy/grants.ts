/**
 * Time-boxed grants (docs/approvals.md "Grants"): an allow rule a person gives one session for a
 * limited time, with the policy's own pattern syntax (host pattern, path pattern, method pattern) and
 * matching semantics. A grant never weakens a deny or an ask rule: {@link decideEgress} consults it
 * only where the role's rules have no match.
 */
import {
  PatternError,
  matchHostPattern,
  matchMethodPattern,
  matchPathPattern,
  parseHostPattern,
  parseMethodPattern,
  parsePathPattern,
  type HostPattern,
  type PathPattern,
} from './matchers.js';
import type { PolicyDecision, PolicyRequest } from './types.js';

/** The rule fields of a grant and its expiry (ms since the epoch). */
export interface GrantRule {
  readonly id: string;
  readonly host: string;
  readonly path: string;
  readonly method: string;
  readonly expiresAt: number;
}

interface ParsedGrant {
  readonly host: HostPattern;
  readonly path: PathPattern;
  readonly method: string;
  readonly decision: PolicyDecision;
}

const parsed = new WeakMap<GrantRule, ParsedGrant | null>();

/**
 * Checks a grant's rule fields as `airlock policy check` checks a rule's.
 * @throws PatternError naming the field and what is wrong.
 */
export function validateGrantRule(rule: { host: string; path: string; method: string }): void {
  parseHostPattern(rule.host);
  parsePathPattern(rule.path);
  parseMethodPattern(rule.method);
}

function parse(g: GrantRule): ParsedGrant | null {
  let p = parsed.get(g);
  if (p === undefined) {
    try {
      p = {
        host: parseHostPattern(g.host),
        path: parsePathPattern(g.path),
        method: parseMethodPattern(g.method),
        decision: Object.freeze({
          allowed: true,
          reason: 'rule_allow',
          rule: `grant ${g.id}: ${g.host}, ${g.path}, ${g.method}`,
        } as const),
      };
    } catch (e) {
      if (!(e instanceof PatternError)) throw e;
      p = null; // validated by the API on the way in; an unparsable one grants nothing
    }
    parsed.set(g, p);
  }
  return p;
}

/**
 * A matcher over a session's grants for {@link decideEgress}, or undefined when it has none.
 * @param now the decision's time (ms since the epoch): a grant whose `expiresAt` is not after it
 *   grants nothing.
 */
export function grantMatcher(
  grants: readonly GrantRule[] | undefined,
  now: number,
): ((req: PolicyRequest) => PolicyDecision | null) | undefined {
  if (grants === undefined || grants.length === 0) return undefined;
  return (req) => {
    for (const g of grants) {
      if (g.expiresAt <= now) continue;
      const p = parse(g);
      if (
        p !== null &&
        matchHostPattern(p.host, req.host) &&
        matchMethodPattern(p.method, req.method) &&
        matchPathPattern(p.path, req.path)
      )
        return p.decision;
    }
    return null;
  };
}
