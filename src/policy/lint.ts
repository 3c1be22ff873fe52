/**
 * The policy linter behind `airlock policy check` (docs/policy.md "Checking a policy"). It works on a
 * policy that already parsed and validated (a {@link CompiledPolicy}) and reports rules that are
 * legal but almost certainly wrong or dangerous. Every finding names `policy.csv:LINE`.
 *
 * | id | severity | finding |
 * | --- | --- | --- |
 * | `unknown-parent` | error | `g, ROLE, PARENT` where PARENT has no rules and no parents: a typo silently drops the inherited rules (guard rails included) |
 * | `dangerous-allow` | error | an allow of a state-changing method (POST, PUT, PATCH, DELETE, CONNECT, WEBSOCKET, MCP or `*`) on a wildcard host, or a `*` path granting a state-changing method other than CONNECT over an admin-looking API ({@link ADMIN_PATHS}) that the role's deny rules do not cover |
 * | `shadowed-allow` | warning | an allow every request of which is denied by deny rules the role inherits (deny overrides allow) |
 * | `unreachable-rule` | warning | an allow covered entirely by its own role's deny rules, or a CONNECT rule whose path can never match (CONNECT is decided with path `/`) |
 * | `deny-carve-out` | warning | a deny carved out of a broader allow on the same host: it holds only as far as the upstream names the resource the way the rule does ({@link CARVE_OUT_ADVICE}) |
 *
 * A finding is suppressed by a comment line directly above the rule (other comment lines may sit in
 * between): `# airlock-lint-ignore: dangerous-allow, shadowed-allow -- why`.
 */
import type { CompiledPolicy } from './compile.js';
import { POLICY_FILE, type PolicyRule } from './csv.js';
import { API_HOST } from './delegation.js';
import { matchPathPattern, parsePathPattern, type PathPattern } from './matchers.js';
import { coverage, intersectPaths, pathText, type Region } from './regions.js';

/** Lint identifiers (stable; used in suppression comments and `--json` output). */
export const LINT_IDS = [
  'unknown-parent',
  'dangerous-allow',
  'shadowed-allow',
  'unreachable-rule',
  'deny-carve-out',
] as const;
export type LintId = (typeof LINT_IDS)[number];

export type LintSeverity = 'error' | 'warning';

/** One finding. */
export interface LintFinding {
  readonly id: LintId;
  readonly severity: LintSeverity;
  /** File relative to the policy directory (`policy.csv`). */
  readonly file: string;
  /** 1-based line. */
  readonly line: number;
  readonly message: string;
}

/** Methods that change state: an allow of one of these (or of `*`) is what the dangerous-allow lint looks at. */
export const STATE_CHANGING_METHODS: ReadonlySet<string> = new Set([
  'POST',
  'PUT',
  'PATCH',
  'DELETE',
  'CONNECT',
  'WEBSOCKET',
  // One MCP tool call may write (create_issue, delete_file): a wildcard grant is as broad as POST.
  'MCP',
  '*',
]);

/**
 * Path prefixes of well-known administrative APIs (users, roles, ACLs, auth switches, cluster RBAC).
 * An allow whose path pattern ends in `*` and reaches into one of these with a state-changing method
 * is a `dangerous-allow` unless the role's deny rules cover that part. Listed in docs/policy.md.
 */
export const ADMIN_PATHS: readonly string[] = [
  // generic
  '/admin/*',
  '/_admin/*',
  '/api/admin/*',
  '/acl/*',
  '/acls/*',
  // etcd (v3 JSON gateway; v3beta/v3alpha on older releases; v2)
  '/v3/auth/*',
  '/v3beta/auth/*',
  '/v3alpha/auth/*',
  '/v2/auth/*',
  // Kubernetes RBAC, admission and certificates
  '/apis/rbac.authorization.k8s.io/*',
  '/apis/admissionregistration.k8s.io/*',
  '/apis/certificates.k8s.io/*',
  '/api/v1/namespaces/:ns/roles/*',
  '/api/v1/namespaces/:ns/rolebindings/*',
  '/api/v1/namespaces/:ns/serviceaccounts/*',
  // Vault (system backend, auth methods), Consul ACLs
  '/v1/sys/*',
  '/v1/auth/*',
  '/v1/acl/*',
  // GitHub and GitLab membership and branch protection
  '/orgs/:org/members/*',
  '/orgs/:org/memberships/*',
  '/orgs/:org/teams/*',
  '/repos/:owner/:repo/collaborators/*',
  '/repos/:owner/:repo/branches/:branch/protection/*',
  '/api/v4/projects/:id/members/*',
  '/api/v4/groups/:id/members/*',
];

const ADMIN_PATTERNS: readonly { text: string; pattern: PathPattern }[] = ADMIN_PATHS.map((text) => ({
  text,
  pattern: parsePathPattern(text),
}));

/**
 * What a `deny-carve-out` finding tells the author: which upstream behaviours Airlock closes for
 * every deny rule, and which it cannot see (docs/security.md "Bypass classes").
 */
export const CARVE_OUT_ADVICE =
  'Airlock already closes case variants (deny rules match any case), ";" path parameters, double ' +
  'percent-encoding, trailing dots and spaces, X-Original-URL/X-Rewrite-URL and method overrides; it ' +
  'cannot see other names the upstream has for the same resource (another path, API version or alias), ' +
  'query parameters that select it (?id=...) or bodies that name it (GraphQL, batch APIs). Prefer ' +
  'allowing the paths the agent needs over denying the ones it must not reach';

const IGNORE = /^#\s*airlock-lint-ignore:\s*([a-z-]+(?:\s*,\s*[a-z-]+)*)/;

/** line → lint ids suppressed for the rule on that line. */
function suppressions(policyText: string): Map<number, Set<string>> {
  const lines = policyText.replace(/^\uFEFF/, '').split('\n');
  const out = new Map<number, Set<string>>();
  let pending = new Set<string>();
  lines.forEach((raw, i) => {
    const t = raw.trim();
    if (t.startsWith('#')) {
      const m = IGNORE.exec(t);
      if (m) for (const id of (m[1] as string).split(',')) pending.add(id.trim());
      return;
    }
    if (t !== '' && pending.size > 0) out.set(i + 1, pending);
    pending = new Set();
  });
  return out;
}

function region(r: PolicyRule): Region {
  return { host: r.hostPattern, path: r.pathPattern, method: r.method };
}

function ruleRef(r: PolicyRule): string {
  return `${POLICY_FILE}:${r.line}`;
}

function refs(rules: readonly PolicyRule[], max = 3): string {
  const shown = rules.slice(0, max).map((r) => `${ruleRef(r)} (${r.role}: ${r.host} ${r.path} ${r.method})`);
  return rules.length > max ? `${shown.join(', ')} and ${rules.length - max} more` : shown.join(', ');
}

/**
 * Lints a compiled policy. Pure; never throws.
 * @returns findings sorted by line, errors and warnings mixed; suppressed findings left out.
 */
export function lintPolicy(policy: CompiledPolicy): LintFinding[] {
  const findings: LintFinding[] = [];
  const add = (id: LintId, severity: LintSeverity, line: number, message: string): void => {
    findings.push({ id, severity, file: POLICY_FILE, line, message });
  };

  // unknown-parent
  const withRules = new Set(policy.policyRules.map((r) => r.role));
  const withParents = new Set(policy.roleLinks.map((l) => l.role));
  for (const l of policy.roleLinks) {
    if (!withRules.has(l.parent) && !withParents.has(l.parent)) {
      add(
        'unknown-parent',
        'error',
        l.line,
        `parent role "${l.parent}" of "${l.role}" has no rules and no parents of its own (a typo?): ` +
          `"${l.role}" inherits nothing from it`,
      );
    }
  }

  const denies = new Map<string, PolicyRule[]>(); // role → its own deny rules
  for (const r of policy.policyRules) {
    if (r.effect !== 'deny') continue;
    const list = denies.get(r.role);
    if (list) list.push(r);
    else denies.set(r.role, [r]);
  }

  for (const r of policy.policyRules) {
    // unreachable-rule: CONNECT is decided with path "/"
    if (r.method === 'CONNECT' && !matchPathPattern(r.pathPattern, '/')) {
      add(
        'unreachable-rule',
        'warning',
        r.line,
        `never matches: CONNECT requests are decided with path "/", and "${r.path}" does not match it ` +
          '(write "/" or "/*")',
      );
      continue;
    }
    if (r.effect !== 'allow') continue;
    const own = denies.get(r.role) ?? [];
    const inherited = policy.inheritedRoles(r.role).flatMap((role) => denies.get(role) ?? []);
    const all = [...own, ...inherited];

    if (all.length > 0) {
      const ownCover = own.length > 0 ? coverage(region(r), own.map(region)) : null;
      if (ownCover?.covered === true) {
        add(
          'unreachable-rule',
          'warning',
          r.line,
          `allow can never match: every request it matches is denied by ${r.role}'s own deny ` +
            `${ownCover.used.length === 1 ? 'rule' : 'rules'} ${refs(ownCover.used.map((i) => own[i] as PolicyRule))}`,
        );
        continue;
      }
      const cover = coverage(region(r), all.map(region));
      if (cover.covered === true) {
        add(
          'shadowed-allow',
          'warning',
          r.line,
          `allow is shadowed by broader deny ${cover.used.length === 1 ? 'rule' : 'rules'} ` +
            `${refs(cover.used.map((i) => all[i] as PolicyRule))}: every request it matches is denied ` +
            '(deny overrides allow)',
        );
        continue;
      }
    }

    if (!STATE_CHANGING_METHODS.has(r.method)) continue;
    if (r.hostPattern.kind === 'wildcard') {
      add(
        'dangerous-allow',
        'error',
        r.line,
        `allows ${r.method === '*' ? 'every method' : r.method} on every host matching "${r.host}": ` +
          'state-changing methods on a wildcard host reach hosts nobody reviewed; name the hosts',
      );
      continue;
    }
    // CONNECT is decided with path "/" only (a tunnel has no paths to look at): not an admin-path grant.
    if (!r.pathPattern.tail || r.method === 'CONNECT') continue;
    const exposed: string[] = [];
    for (const a of ADMIN_PATTERNS) {
      const overlap = intersectPaths(r.pathPattern, a.pattern);
      if (overlap === null) continue;
      const c = coverage({ host: r.hostPattern, path: overlap, method: r.method }, all.map(region));
      if (c.covered === true) continue;
      const same =
        overlap.tail === a.pattern.tail &&
        overlap.segments.length === a.pattern.segments.length &&
        overlap.segments.every((s, k) => s === a.pattern.segments[k]);
      exposed.push(same ? a.text : `${a.text} (as ${pathText(overlap)})`);
    }
    if (exposed.length > 0) {
      const list = exposed.length > 4 ? `${exposed.slice(0, 4).join(', ')}, ...` : exposed.join(', ');
      add(
        'dangerous-allow',
        'error',
        r.line,
        `allows ${r.method === '*' ? 'every method' : r.method} on "${r.path}", which reaches admin-looking ` +
          `APIs (${list}) that no deny rule of "${r.role}" covers; grant admin paths one by one, or deny them`,
      );
    }
  }

  // deny-carve-out: a deny inside a broader allow that applies to the same requests (same host,
  // overlapping methods, the allow's paths reaching beyond the deny's).
  for (const d of policy.policyRules) {
    // The management pseudo-host is Airlock's own API, not an upstream that could read paths loosely.
    if (d.effect !== 'deny' || d.host === API_HOST) continue;
    const carvedFrom = policy.policyRules.filter(
      (a) =>
        a.effect === 'allow' &&
        a.host === d.host &&
        (a.method === d.method || a.method === '*' || d.method === '*') &&
        (a.role === d.role || policy.inheritedRoles(a.role).includes(d.role)) &&
        intersectPaths(a.pathPattern, d.pathPattern) !== null &&
        coverage(region(a), [region(d)]).covered !== true,
    );
    if (carvedFrom.length === 0) continue;
    add(
      'deny-carve-out',
      'warning',
      d.line,
      `deny carved out of the broader allow ${refs(carvedFrom)}: it holds only as far as the upstream ` +
        `names the resource as "${d.path}" does. ${CARVE_OUT_ADVICE}`,
    );
  }

  const ignored = suppressions(policy.source.policyText);
  return findings
    .filter((f) => !ignored.get(f.line)?.has(f.id))
    .sort((a, b) => a.line - b.line || (a.severity === b.severity ? 0 : a.severity === 'error' ? -1 : 1));
}
