/**
 * policy.csv parsing and validation. Every error is a PolicyError located at `policy.csv:LINE`.
 */
import { PolicyError } from '../errors.js';
import {
  PatternError,
  parseHostPattern,
  parseMethodPattern,
  parsePathPattern,
  type HostPattern,
  type PathPattern,
} from './matchers.js';

export const POLICY_FILE = 'policy.csv';

/**
 * Longest allowed role-inheritance chain, in `g` edges. Casbin's default role manager stops looking
 * after 10 levels (and then silently answers "not inherited"); refusing deeper chains at load keeps
 * Airlock's answers equal to Casbin's.
 */
export const MAX_ROLE_DEPTH = 10;

/** A `p` line. */
export interface PolicyRule {
  /** 1-based line in policy.csv. */
  readonly line: number;
  readonly role: string;
  readonly host: string;
  readonly path: string;
  readonly method: string;
  readonly effect: 'allow' | 'deny' | 'ask';
  /** `policy.csv:LINE: p, role, host, path, method, eft` — what decisions and audit events name. */
  readonly text: string;
  readonly hostPattern: HostPattern;
  readonly pathPattern: PathPattern;
}

/** A `g, ROLE, PARENT` line: ROLE inherits every rule of PARENT. */
export interface RoleLink {
  readonly line: number;
  readonly role: string;
  readonly parent: string;
}

export interface ParsedPolicy {
  readonly rules: readonly PolicyRule[];
  readonly links: readonly RoleLink[];
}

const ROLE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/; // the same rule as the API (src/api/schemas.ts)

function checkRole(name: string, what: string, loc: string): void {
  if (name === '') throw new PolicyError(`${what} is empty`, loc);
  if (!ROLE_NAME.test(name)) {
    throw new PolicyError(
      `${what} "${name}" is not a valid role name (letters, digits, "_", ".", ":", "-"; at most 128)`,
      loc,
    );
  }
}

/**
 * Parses policy.csv text.
 *
 * Accepted lines: blank lines, whole-line comments starting with `#` (after optional spaces), `p,
 * ROLE, HOST, PATH, METHOD, allow|deny` and `g, ROLE, PARENT`. Fields are comma-separated and trimmed.
 * Refused: quotes (no Airlock field needs them), `#` after the start of a line (Casbin would read it
 * as part of a field, not as a comment), other line types (`p2`, `g2`, ...), wrong field counts,
 * invalid patterns, duplicate lines, a role inheriting itself, inheritance cycles (named in the
 * error), and inheritance chains deeper than {@link MAX_ROLE_DEPTH}.
 * @throws PolicyError at `policy.csv:LINE`.
 */
export function parsePolicyCsv(text: string): ParsedPolicy {
  const rules: PolicyRule[] = [];
  const links: RoleLink[] = [];
  const seen = new Map<string, number>();
  const hostPatterns = new Map<string, HostPattern>();
  const pathPatterns = new Map<string, PathPattern>();
  const methods = new Set<string>();
  const roleNames = new Set<string>(); // already validated
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const loc = `${POLICY_FILE}:${lineNo}`;
    const line = lines[i] as string;
    const raw = line.charCodeAt(line.length - 1) === 0x0d ? line.slice(0, -1) : line;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    if (raw.includes('"')) throw new PolicyError('quotes are not supported in policy.csv', loc);
    if (raw.includes('#')) {
      throw new PolicyError(
        '"#" comments must be on a line of their own (Casbin does not strip trailing comments)',
        loc,
      );
    }
    const fields = trimmed.split(',').map((f) => f.trim());
    const kind = fields[0] as string;
    const key = fields.join(', ');
    const first = seen.get(key);
    if (first !== undefined) throw new PolicyError(`duplicate of ${POLICY_FILE}:${first}`, loc);
    seen.set(key, lineNo);
    if (kind === 'p') {
      if (fields.length !== 6) {
        throw new PolicyError(
          `a "p" line has 5 fields after "p" (ROLE, HOST, PATH, METHOD, allow|deny|ask), got ${fields.length - 1}`,
          loc,
        );
      }
      const [, role, host, path, method, effect] = fields as [string, string, string, string, string, string];
      if (!roleNames.has(role)) {
        checkRole(role, 'role', loc);
        roleNames.add(role);
      }
      if (effect !== 'allow' && effect !== 'deny' && effect !== 'ask') {
        throw new PolicyError(`unknown effect "${effect}" (expected allow, deny or ask)`, loc);
      }
      let hostPattern: HostPattern;
      let pathPattern: PathPattern;
      try {
        // Patterns repeat a lot in large policies; parsed patterns are immutable and shared.
        hostPattern = hostPatterns.get(host) ?? cacheSet(hostPatterns, host, parseHostPattern(host));
        pathPattern = pathPatterns.get(path) ?? cacheSet(pathPatterns, path, parsePathPattern(path));
        if (!methods.has(method)) methods.add(parseMethodPattern(method));
      } catch (e) {
        if (e instanceof PatternError) throw new PolicyError(e.message, loc);
        throw e;
      }
      rules.push({
        line: lineNo,
        role,
        host,
        path,
        method,
        effect,
        text: `${loc}: ${key}`,
        hostPattern,
        pathPattern,
      });
    } else if (kind === 'g') {
      if (fields.length !== 3) {
        throw new PolicyError(
          `a "g" line has 2 fields after "g" (ROLE, PARENT), got ${fields.length - 1}`,
          loc,
        );
      }
      const [, role, parent] = fields as [string, string, string];
      checkRole(role, 'role', loc);
      checkRole(parent, 'parent role', loc);
      if (role === parent) throw new PolicyError(`role "${role}" cannot inherit from itself`, loc);
      links.push({ line: lineNo, role, parent });
    } else {
      throw new PolicyError(`unknown line type "${kind}" (expected "p" or "g")`, loc);
    }
  }
  checkHierarchy(links);
  return { rules, links };
}

function cacheSet<T>(cache: Map<string, T>, key: string, value: T): T {
  cache.set(key, value);
  return value;
}

/** Rejects cycles (naming them) and chains deeper than MAX_ROLE_DEPTH. */
function checkHierarchy(links: readonly RoleLink[]): void {
  const parents = new Map<string, RoleLink[]>();
  for (const l of links) {
    const list = parents.get(l.role);
    if (list) list.push(l);
    else parents.set(l.role, [l]);
  }
  const state = new Map<string, 'visiting' | number>(); // number = depth (longest chain upward)
  const stack: RoleLink[] = [];
  const visit = (role: string): number => {
    const s = state.get(role);
    if (typeof s === 'number') return s;
    if (s === 'visiting') {
      const from = stack.findIndex((l) => l.role === role);
      const cycle = stack.slice(from);
      const names = [...cycle.map((l) => l.role), role].join(' -> ');
      const where = cycle.map((l) => l.line).join(', ');
      throw new PolicyError(
        `role inheritance cycle: ${names} (lines ${where})`,
        `${POLICY_FILE}:${(cycle[cycle.length - 1] as RoleLink).line}`,
      );
    }
    state.set(role, 'visiting');
    let depth = 0;
    for (const l of parents.get(role) ?? []) {
      stack.push(l);
      const d = visit(l.parent) + 1;
      stack.pop();
      if (d > MAX_ROLE_DEPTH) {
        throw new PolicyError(
          `role "${role}" inherits through more than ${MAX_ROLE_DEPTH} levels (Casbin's limit); flatten the hierarchy`,
          `${POLICY_FILE}:${l.line}`,
        );
      }
      depth = Math.max(depth, d);
    }
    state.set(role, depth);
    return depth;
  };
  for (const role of parents.keys()) visit(role);
}
