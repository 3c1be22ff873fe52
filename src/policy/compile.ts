/**
 * Compiles parsed rules into an index that answers exactly as Casbin's `enforce` would on the Airlock
 * model (test/unit/policy/differential*.test.ts check this against casbin itself), in time
 * independent of the number of roles and hosts, and — for hosts with many rules — of the number of
 * rules on that host.
 *
 * Layout: role → (exact policy host → bucket, wildcard key → bucket); a bucket holds the rules of the
 * role and all its ancestors for that host, deny rules and allow rules apart, in file order. Each rule
 * carries its precomputed, frozen decision object.
 *
 * A bucket with more than {@link TRIE_MIN_RULES} rules also gets a path trie: one node per pattern
 * prefix (literal segments by name, `:param` as one wildcard child), and at each node, per method
 * pattern, the first deny rule and the last allow rule (in file order) that end there, or that end
 * there with the `*` tail. A decision walks the request's path segments (following the literal child
 * and the parameter child) and takes the smallest deny line and the largest allow line it meets: the
 * same rule Casbin's deny-overrides effect names, in O(path depth) instead of O(rules on the host).
 * Small buckets are scanned linearly (faster below the threshold, and allocation-free).
 */
import { BUDGETS_FILE, NO_BUDGETS, parseBudgets, type BudgetSet } from './budgets.js';
import { CREDENTIALS_FILE, NO_CREDENTIALS, parseCredentials, type CredentialSet } from './credentials.js';
import { MCP_FILE, NO_MCP, parseMcp, type McpEndpointSet } from './mcp.js';
import { MODES_FILE, NO_MODES, parseModes } from './modes.js';
import type { OptionalPolicyTexts } from './optional-files.js';
import type { PolicyDecision, PolicyRequest, PolicySnapshot } from './types.js';
import { foldPathCase, hasUpperCase, isNormalizedPath } from '../request/normalize.js';
import {
  matchMethodPattern,
  matchPathPattern,
  wildcardKeyOf,
  matchHostPattern,
  NAMED_ONLY_METHODS,
} from './matchers.js';
import type { ParsedPolicy, PolicyRule, RoleLink } from './csv.js';
import type { PathPattern } from './matchers.js';

interface CompiledRule {
  readonly rule: PolicyRule;
  readonly line: number;
  readonly method: string;
  /** `rule.pathPattern`, one indirection closer. */
  readonly path: PathPattern;
  readonly decision: PolicyDecision;
  /** Signature fields (see {@link Entries}): method id, path shape, first-segment hash. */
  readonly mid: number;
  readonly shape: number;
  readonly h1: number;
}

/**
 * The rules of one role (with its ancestors) for one host key: a range of the policy's entry arrays
 * ({@link Entries}) holding its deny rules, then its allow rules, each in file order.
 */
interface Bucket {
  /** First entry. */
  readonly start: number;
  /** Entries `[start, start + denies)` are deny rules. */
  readonly denies: number;
  /** Entries `[start + denies, start + denies + allows)` are allow rules. */
  readonly allows: number;
  /** Path trie over the same rules, for buckets of more than TRIE_MIN_RULES rules; otherwise null. */
  readonly trie: TrieNode | null;
  /** The method patterns of its rules (`GET`, `*`): a request with none of them cannot match. */
  readonly methods: ReadonlySet<string>;
  /**
   * The method patterns of the `ask` rules for the same (role, host key), or null when there are
   * none: set once after construction, so an allow decision pays one null check where no ask rule
   * could apply.
   */
  askMethods: ReadonlySet<string> | null;
}

/**
 * Every bucket's rules in one array, and beside it one flat signature array, so a scan can reject
 * most rules without touching them: at 100k rules the index does not fit in CPU caches and every
 * object touched is a likely cache miss, while a bucket's signatures sit together in one or two cache
 * lines. Four int32 per entry: `[4i]` the method id (see `methodIds`; 0 is `*`), `[4i+1]` the path
 * shape (2 × segments + 1 if the pattern has the `*` tail), `[4i+2]` the line, `[4i+3]` a hash of the
 * first path segment when it is a literal (0 otherwise: a `:param`, or no segment).
 */
interface Entries {
  readonly rules: readonly CompiledRule[];
  readonly sig: Int32Array;
}

/** The deciding candidates among rules that end at one trie node with the same method pattern. */
interface Slot {
  /** First deny rule in file order. */
  deny: CompiledRule | null;
  /** Last allow rule in file order. */
  allow: CompiledRule | null;
}

/** A path-pattern prefix. */
interface TrieNode {
  /** Children by literal segment. */
  lit: Map<string, TrieNode> | null;
  /** Child for a `:param` segment. */
  param: TrieNode | null;
  /** Rules whose pattern ends here without the tail, by method pattern (`GET`, `*`). */
  end: Map<string, Slot> | null;
  /** Rules whose pattern ends here with the `*` tail, by method pattern. */
  tail: Map<string, Slot> | null;
}

/** Buckets with more rules than this get a path trie. */
export const TRIE_MIN_RULES = 64;

/** Method id of the `*` pattern. Other method names get ids from 1 per policy. */
const STAR_ID = 0;

/** Key of a role's bucket for an exact policy host: `role \n host` (neither contains a newline). */
function exactKey(role: string, host: string): string {
  return `${role}\n${host}`;
}

/** Key of a role's bucket for a wildcard pattern `*.key`: `role \n *.key`. */
function wildKey(role: string, key: string): string {
  return `${role}\n*.${key}`;
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
  /** The optional files present, name → text (budgets.yaml, ...: src/policy/optional-files.ts). */
  readonly files: OptionalPolicyTexts;
}

/**
 * The best candidates of the decision in progress: the matching deny rule with the smallest line
 * and the matching allow rule with the largest line seen so far. `decide` is synchronous and never
 * re-entered, so one module-level scratch object serves every call without allocating.
 */
const best: { deny: CompiledRule | null; allow: CompiledRule | null } = { deny: null, allow: null };

/**
 * Looks for the first matching deny and, when none, the last matching allow in one bucket.
 * @param mid the request method's id (-1 when no rule names it), `star` whether `*` rules apply
 *   (not for CONNECT), `segs` the request path's number of segments, `h1` the hash of its first
 *   segment (see {@link firstSegmentHash}).
 */
function searchBucket(
  b: Bucket,
  e: Entries,
  path: string,
  method: string,
  mid: number,
  star: boolean,
  segs: number,
  h1: number,
): void {
  if (b.trie !== null) {
    walk(b.trie, path, 0, method, star);
    return;
  }
  const sig = e.sig;
  let deny = best.deny;
  for (let i = b.start, end = b.start + b.denies; i < end; i++) {
    const j = 4 * i;
    if (deny !== null && (sig[j + 2] as number) > deny.line) break;
    if (!candidate(sig, j, mid, star, segs, h1)) continue;
    const c = e.rules[i] as CompiledRule;
    if (matchPathPattern(c.path, path)) {
      deny = c;
      break;
    }
  }
  best.deny = deny;
  if (deny !== null) return; // a deny decides; allows no longer matter
  let allow = best.allow;
  for (let i = b.start + b.denies + b.allows - 1, first = b.start + b.denies; i >= first; i--) {
    const j = 4 * i;
    if (allow !== null && (sig[j + 2] as number) < allow.line) break;
    if (!candidate(sig, j, mid, star, segs, h1)) continue;
    const c = e.rules[i] as CompiledRule;
    if (matchPathPattern(c.path, path)) {
      allow = c;
      break;
    }
  }
  best.allow = allow;
}

/** Whether the rule at `sig[j..j+3]` can match a request with these properties (no false negatives). */
function candidate(
  sig: Int32Array,
  j: number,
  mid: number,
  star: boolean,
  segs: number,
  h1: number,
): boolean {
  const m = sig[j] as number;
  if (m !== mid && (m !== STAR_ID || !star)) return false;
  const shape = sig[j + 1] as number;
  if ((shape & 1) === 0 ? shape >> 1 !== segs : shape >> 1 > segs) return false;
  const h = sig[j + 3] as number;
  return h === 0 || h === h1;
}

/**
 * FNV-1a hash (31 bits, never 0) of the path's first segment, `path.slice(1, nextSlash)`, computed
 * without allocating; 0 for the root.
 */
function firstSegmentHash(path: string): number {
  let h = 0x811c9dc5;
  let i = 1;
  for (; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x2f) break;
    h = Math.imul(h ^ c, 0x01000193);
  }
  if (i === 1) return 0;
  return h & 0x7fffffff || 1;
}

/** Number of segments of a normalised path (`/` 0, `/a` 1, `/a/` 1, `/a/b` 2). */
function segmentCount(path: string): number {
  let n = 0;
  for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 0x2f) n++;
  return path.charCodeAt(path.length - 1) === 0x2f ? n - 1 : n; // a trailing slash is not a segment
}

function take(slots: Map<string, Slot>, method: string, star: boolean): void {
  let s = slots.get(method);
  for (let k = 0; k < 2; k++) {
    if (s !== undefined) {
      if (s.deny !== null && (best.deny === null || s.deny.line < best.deny.line)) best.deny = s.deny;
      if (s.allow !== null && (best.allow === null || s.allow.line > best.allow.line)) best.allow = s.allow;
    }
    if (!star) return;
    s = slots.get('*');
  }
}

/**
 * Visits every trie node whose pattern prefix matches the path up to `pos` (the index of the `/`
 * before the next segment, or the path's end). Needs a normalised path: non-empty segments, at most
 * one trailing slash.
 */
function walk(node: TrieNode, path: string, pos: number, method: string, star: boolean): void {
  if (node.tail !== null) take(node.tail, method, star);
  const n = path.length;
  if (pos >= n - 1) {
    // No segment left ("/a" at its end, or "/a/" at its trailing slash; "/" is the root).
    if (node.end !== null) take(node.end, method, star);
    return;
  }
  let end = path.indexOf('/', pos + 1);
  if (end === -1) end = n;
  if (node.lit !== null) {
    const child = node.lit.get(path.slice(pos + 1, end));
    if (child !== undefined) walk(child, path, end, method, star);
  }
  if (node.param !== null) walk(node.param, path, end, method, star);
}

function newNode(): TrieNode {
  return { lit: null, param: null, end: null, tail: null };
}

/** Builds a bucket's trie; `deny` and `allow` are in file order. */
function buildTrie(deny: readonly CompiledRule[], allow: readonly CompiledRule[]): TrieNode {
  const root = newNode();
  const insert = (c: CompiledRule, effect: 'deny' | 'allow'): void => {
    let node = root;
    for (const seg of c.rule.pathPattern.segments) {
      if (seg === null) node = node.param ??= newNode();
      else {
        const lit = (node.lit ??= new Map());
        let child = lit.get(seg);
        if (child === undefined) lit.set(seg, (child = newNode()));
        node = child;
      }
    }
    const slots = c.rule.pathPattern.tail ? (node.tail ??= new Map()) : (node.end ??= new Map());
    let slot = slots.get(c.method);
    if (slot === undefined) slots.set(c.method, (slot = { deny: null, allow: null }));
    if (effect === 'deny')
      slot.deny ??= c; // file order: the first one stays
    else slot.allow = c; // file order: the last one wins
  };
  for (const c of deny) insert(c, 'deny');
  for (const c of allow) insert(c, 'allow');
  return root;
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
  /** The budgets of budgets.yaml (empty without one), validated against this policy's roles. */
  readonly budgets: BudgetSet;
  /** The credential definitions of credentials.yaml (empty without one), roles checked against this policy. */
  readonly credentials: CredentialSet;
  /** The MCP endpoints of mcp.yaml (empty without one). */
  readonly mcp: McpEndpointSet;
  /** Roles in complain mode (modes.yaml; empty without one). */
  readonly complainRoles: ReadonlySet<string>;
  /**
   * Every (role, host key) bucket in one map ({@link exactKey}, {@link wildKey}): one hash lookup per
   * host kind instead of role → host maps (fewer cache misses on large policies).
   */
  readonly #buckets: Map<string, Bucket>;
  /** Wildcard keys (`suffix[:port]`) named by any rule: a wildcard lookup happens only for these. */
  readonly #wildKeys: ReadonlySet<string>;
  readonly #entries: Entries;
  readonly #ancestors: Map<string, readonly string[]>;
  /** Method name → id for the rule signatures (`*` is 0). */
  readonly #methodIds: Map<string, number>;
  /**
   * The deny rules with case-folded path patterns, as allow rules of an index of their own (null when
   * the policy has no deny rule): a deny also matches every case variant of its path (docs/policy.md
   * "Path case"). A match there answers the original rule's deny decision ({@link #denyByText}).
   */
  readonly #foldedDenies: CompiledPolicy | null;
  readonly #denyByText: ReadonlyMap<string, PolicyDecision>;
  /** Whether some deny pattern has an uppercase letter (then even a lowercase path is checked folded). */
  readonly #upperDenyPattern: boolean;
  /**
   * The `ask` rules with case-folded path patterns, as allow rules of an index of their own (null when
   * the policy has none). An ask, like a deny, restricts what an allow grants, so it too matches every
   * case variant of its path; a match answers the original rule's ask decision ({@link #askByText}).
   */
  readonly #asks: CompiledPolicy | null;
  readonly #askByText: ReadonlyMap<string, PolicyDecision>;

  /**
   * @param parsed the rules and role links of policy.csv.
   * @param version content hash or commit SHA.
   * @param foldDenies build the case-folded deny index (false only for that index itself).
   */
  constructor(
    parsed: ParsedPolicy,
    version: string,
    source: SnapshotSource,
    loadedAt = new Date(),
    foldDenies = true,
  ) {
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
    // modes.yaml (complain mode): enforcement only, never the decision; its roles are known roles.
    const modesText = foldDenies ? source.files[MODES_FILE] : undefined;
    this.complainRoles = modesText !== undefined ? parseModes(modesText).complain : NO_MODES.complain;
    for (const r of this.complainRoles) roles.add(r);
    this.roles = roles;
    const budgetsText = source.files[BUDGETS_FILE];
    const credentialsText = source.files[CREDENTIALS_FILE];
    const mcpText = source.files[MCP_FILE];
    this.budgets = foldDenies && budgetsText !== undefined ? parseBudgets(budgetsText, roles) : NO_BUDGETS;
    this.credentials =
      foldDenies && credentialsText !== undefined ? parseCredentials(credentialsText, roles) : NO_CREDENTIALS;
    this.mcp = foldDenies && mcpText !== undefined ? parseMcp(mcpText) : NO_MCP;
    this.#ancestors = ancestorsOf(roles, parsed.links);
    this.#methodIds = new Map([['*', STAR_ID]]);
    for (const r of parsed.rules)
      if (!this.#methodIds.has(r.method)) this.#methodIds.set(r.method, this.#methodIds.size);
    // `ask` rules are not in the main index: Casbin's effect ignores them too (it counts allow and
    // deny only), so the main index stays exactly Casbin's answer; they get an index of their own.
    const askRules = parsed.rules.filter((r) => r.effect === 'ask');
    const built = buildIndex(
      askRules.length === 0 ? parsed.rules : parsed.rules.filter((r) => r.effect !== 'ask'),
      this.#ancestors,
      this.#methodIds,
    );
    this.#buckets = built.buckets;
    this.#wildKeys = built.wildKeys;
    this.#entries = built.entries;

    const denies = foldDenies ? parsed.rules.filter((r) => r.effect === 'deny') : [];
    this.#upperDenyPattern = denies.some((r) => hasUpperCase(r.path));
    this.#denyByText = new Map(
      denies.map((r) => [
        r.text,
        Object.freeze({ allowed: false, reason: 'rule_deny', rule: r.text } as const),
      ]),
    );
    this.#foldedDenies =
      denies.length === 0
        ? null
        : new CompiledPolicy(
            {
              rules: denies.map((r) => foldedAsAllow(r)),
              links: parsed.links,
            },
            version,
            source,
            loadedAt,
            false,
          );
    this.#askByText = new Map(
      askRules.map((r) => [
        r.text,
        Object.freeze({ allowed: false, reason: 'rule_ask', rule: r.text } as const),
      ]),
    );
    this.#asks =
      askRules.length === 0
        ? null
        : new CompiledPolicy(
            { rules: askRules.map((r) => foldedAsAllow(r)), links: parsed.links },
            version,
            source,
            loadedAt,
            false,
          );
    if (this.#asks !== null) {
      // Every (role, host key) with ask rules gets a main bucket (empty when the role has no allow or
      // deny rule there) carrying the ask rules' methods, so the one bucket lookup of a decision
      // also tells whether an ask rule could apply.
      for (const [key, b] of this.#asks.#buckets) {
        const main = this.#buckets.get(key);
        if (main !== undefined) main.askMethods = b.methods;
        else
          this.#buckets.set(key, {
            start: 0,
            denies: 0,
            allows: 0,
            trie: null,
            methods: new Set(),
            askMethods: b.methods,
          });
      }
      for (const k of this.#asks.#wildKeys) (this.#wildKeys as Set<string>).add(k);
    }
  }

  /**
   * Whether any rule of `role` (or its ancestors) names `host` with `method` or `*`: a cheap
   * pre-check (two map lookups) before a full decision on this index.
   */
  #mayMatch(role: string, host: string, method: string): boolean {
    const h = host.toLowerCase();
    const m = method.toUpperCase();
    const exact = this.#buckets.get(exactKey(role, h));
    if (exact !== undefined && (exact.methods.has(m) || exact.methods.has('*'))) return true;
    if (this.#wildKeys.size === 0) return false;
    const key = wildcardKeyOf(h);
    const wild =
      key !== undefined && this.#wildKeys.has(key) ? this.#buckets.get(wildKey(role, key)) : undefined;
    return wild !== undefined && (wild.methods.has(m) || wild.methods.has('*'));
  }

  /** Whether the policy has `ask` rules (docs/approvals.md). */
  get hasAskRules(): boolean {
    return this.#asks !== null;
  }

  /** The ask rule matching a case variant of the request (the last in file order), else null. */
  #ask(req: PolicyRequest, path: string): PolicyDecision | null {
    const asks = this.#asks;
    if (asks === null || !asks.#mayMatch(req.role, req.host, req.method)) return null; // no fold, no allocation
    // The ask index's patterns are lowercase: a request path without uppercase is its own fold.
    const folded = hasUpperCase(path) ? foldPathCase(path) : path;
    const d = asks.decide(
      folded === path ? req : { role: req.role, host: req.host, path: folded, method: req.method },
    );
    return d.allowed && d.rule !== null ? (this.#askByText.get(d.rule) ?? null) : null;
  }

  /**
   * The deny rule that matches a case variant of the request's path when the exact decision
   * allowed it, else null (naming one matching deny rule: the last in file order).
   */
  #foldedDeny(req: PolicyRequest, path: string): PolicyDecision | null {
    const folded = this.#foldedDenies;
    if (folded === null || (!this.#upperDenyPattern && !hasUpperCase(path))) return null;
    const d = folded.decide({ role: req.role, host: req.host, path: foldPathCase(path), method: req.method });
    return d.allowed && d.rule !== null ? (this.#denyByText.get(d.rule) ?? null) : null;
  }

  /**
   * Whether any allow rule of `role` (or its ancestors) names `host` (a policy host: `name` or
   * `name:port`). The gateway asks this before opening a CONNECT tunnel for interception, so a role
   * with no business on a host is refused at CONNECT, before any TLS handshake.
   */
  mayReachHost(role: string, host: string): boolean {
    if (this.#asks !== null && this.#asks.mayReachHost(role, host)) return true; // approval may allow
    const h = host.toLowerCase();
    if ((this.#buckets.get(exactKey(role, h))?.allows ?? 0) > 0) return true;
    const key = this.#wildKeys.size !== 0 ? wildcardKeyOf(h) : undefined;
    return key !== undefined && (this.#buckets.get(wildKey(role, key))?.allows ?? 0) > 0;
  }

  /**
   * Decides a request. Inputs are expected normalised (src/request/normalize.ts); as a safety net the
   * host is lowercased and the method uppercased here, and a path that is not in normal form matches
   * no rule (so it is denied as `no_match`). Deny overrides allow; no match is a deny.
   *
   * `rule` names, as Casbin's `enforceEx` does: for a deny the first matching deny rule in file order,
   * for an allow the last matching allow rule in file order.
   *
   * Beyond Casbin: a deny rule also matches every ASCII case variant of its path (a deny carve-out
   * holds on upstreams that route case-insensitively), while allow rules match exactly. Defined as
   * `casbin(policy)(req) && !casbin(foldedDenies)(fold(req))`, where `foldedDenies` is the deny rules
   * with lowercased paths turned into allow rules; test/unit/policy/differential.test.ts checks
   * exactly that against two casbin enforcers.
   *
   * `ask` rules (docs/approvals.md): precedence deny > ask > allow. With A = `casbin(foldedAsks)(fold(req))`
   * (the ask rules with lowercased paths as allow rules of a policy of their own) and D the decision
   * above: D denied by a rule → that deny; else A matched → `rule_ask` naming the last matching ask
   * rule; else D. Casbin itself, given the whole file, ignores `ask` lines (its effect counts allow and
   * deny only), so D is still casbin's answer; test/unit/policy/differential-ask.test.ts checks the
   * composition against three casbin enforcers.
   */
  decide(req: PolicyRequest): PolicyDecision {
    const path = req.path;
    if (!isNormalizedPath(path)) return NO_MATCH;
    const host = req.host.toLowerCase();
    const method = req.method.toUpperCase();
    const exact = this.#buckets.get(exactKey(req.role, host));
    let wild: Bucket | undefined;
    if (this.#wildKeys.size !== 0) {
      const key = wildcardKeyOf(host);
      if (key !== undefined && this.#wildKeys.has(key)) wild = this.#buckets.get(wildKey(req.role, key));
    }
    if (exact === undefined && wild === undefined) {
      // No allow or deny rule of the role names the host; an ask rule may (folded denies cannot).
      return this.#asks === null ? NO_MATCH : (this.#ask(req, path) ?? NO_MATCH);
    }

    const star = !NAMED_ONLY_METHODS.has(method);
    const mid = this.#methodIds.get(method) ?? -1;
    const segs = segmentCount(path);
    const h1 = firstSegmentHash(path);
    best.deny = null;
    best.allow = null;
    const e = this.#entries;
    if (exact !== undefined) searchBucket(exact, e, path, method, mid, star, segs, h1);
    if (wild !== undefined) searchBucket(wild, e, path, method, mid, star, segs, h1);
    const deny = best.deny as CompiledRule | null;
    const allow = best.allow as CompiledRule | null;
    best.deny = null;
    best.allow = null;
    if (deny !== null) return deny.decision;
    if (
      this.#asks !== null &&
      ((exact !== undefined && mayAsk(exact.askMethods, method)) ||
        (wild !== undefined && mayAsk(wild.askMethods, method)))
    ) {
      const ask = this.#ask(req, path);
      if (ask !== null) return this.#foldedDeny(req, path) ?? ask;
    }
    if (allow === null) return NO_MATCH;
    return this.#foldedDeny(req, path) ?? allow.decision;
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
        (matchPathPattern(r.pathPattern, req.path) ||
          (r.effect !== 'allow' && matchFolded(r.pathPattern, req.path))),
    );
    return { decision, roles, matched };
  }

  /** The role's ancestors (not including itself), nearest first; empty for unknown roles. */
  inheritedRoles(role: string): readonly string[] {
    return (this.#ancestors.get(role) ?? []).slice(1);
  }
}

/** Whether ask rules with these method patterns (null: none) can match `method` (uppercase). */
function mayAsk(methods: ReadonlySet<string> | null, method: string): boolean {
  return methods !== null && (methods.has(method) || methods.has('*'));
}

/** A deny or ask rule as an allow rule with its path pattern case-folded (see CompiledPolicy.decide). */
function foldedAsAllow(r: PolicyRule): PolicyRule {
  return {
    ...r,
    effect: 'allow',
    pathPattern: {
      segments: r.pathPattern.segments.map((seg) => (seg === null ? null : foldPathCase(seg))),
      tail: r.pathPattern.tail,
    },
  };
}

/** Whether a case variant of `path` matches the pattern (deny and ask rules; see CompiledPolicy.decide). */
function matchFolded(p: PathPattern, path: string): boolean {
  const folded: PathPattern = {
    segments: p.segments.map((seg) => (seg === null ? null : foldPathCase(seg))),
    tail: p.tail,
  };
  return matchPathPattern(folded, foldPathCase(path));
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

/** Deny and allow rules of one (role, host key), each in file order. */
interface Lists {
  deny: CompiledRule[];
  allow: CompiledRule[];
}

/** One list in file order from lists that each are in file order (reused as is when alone). */
function mergeByLine(lists: CompiledRule[][]): CompiledRule[] {
  if (lists.length === 1) return lists[0] as CompiledRule[];
  const out: CompiledRule[] = [];
  for (const l of lists) for (const c of l) out.push(c);
  return out.sort((a, b) => a.line - b.line);
}

function buildIndex(
  rules: readonly PolicyRule[],
  ancestors: Map<string, readonly string[]>,
  methodIds: Map<string, number>,
): { buckets: Map<string, Bucket>; wildKeys: Set<string>; entries: Entries } {
  // Each role's own rules by host key ("=" + exact key, "*" + wildcard key), in file order.
  const own = new Map<string, Map<string, Lists>>();
  const wildKeys = new Set<string>();
  for (const rule of rules) {
    const path = rule.pathPattern;
    const first = path.segments[0];
    const c: CompiledRule = {
      rule,
      line: rule.line,
      method: rule.method,
      path,
      decision: Object.freeze({
        allowed: rule.effect === 'allow',
        reason: rule.effect === 'allow' ? 'rule_allow' : 'rule_deny',
        rule: rule.text,
      }),
      mid: methodIds.get(rule.method) as number,
      shape: path.segments.length * 2 + (path.tail ? 1 : 0),
      h1: typeof first === 'string' ? firstSegmentHash(`/${first}`) : 0,
    };
    const hp = rule.hostPattern;
    if (hp.kind === 'wildcard') wildKeys.add(hp.key);
    const tag = (hp.kind === 'exact' ? '=' : '*') + hp.key;
    let byHost = own.get(rule.role);
    if (!byHost) own.set(rule.role, (byHost = new Map()));
    let lists = byHost.get(tag);
    if (!lists) byHost.set(tag, (lists = { deny: [], allow: [] }));
    (rule.effect === 'deny' ? lists.deny : lists.allow).push(c);
  }

  const all: CompiledRule[] = [];
  const sig: number[] = [];
  const flatten = (deny: CompiledRule[], allow: CompiledRule[]): Bucket => {
    const start = all.length;
    for (const list of [deny, allow]) {
      for (const c of list) {
        all.push(c);
        sig.push(c.mid, c.shape, c.line, c.h1);
      }
    }
    const trie = deny.length + allow.length > TRIE_MIN_RULES ? buildTrie(deny, allow) : null;
    const methods = new Set<string>();
    for (const c of deny) methods.add(c.method);
    for (const c of allow) methods.add(c.method);
    return { start, denies: deny.length, allows: allow.length, trie, methods, askMethods: null };
  };
  const buckets = new Map<string, Bucket>();
  for (const [role, chain] of ancestors) {
    // The role's and its ancestors' lists per host key, merged in file order.
    const merged = new Map<string, { deny: CompiledRule[][]; allow: CompiledRule[][] }>();
    for (const r of chain) {
      for (const [tag, lists] of own.get(r) ?? []) {
        let m = merged.get(tag);
        if (!m) merged.set(tag, (m = { deny: [], allow: [] }));
        if (lists.deny.length > 0) m.deny.push(lists.deny);
        if (lists.allow.length > 0) m.allow.push(lists.allow);
      }
    }
    for (const [tag, m] of merged) {
      const key = tag.startsWith('=') ? exactKey(role, tag.slice(1)) : wildKey(role, tag.slice(1));
      buckets.set(key, flatten(mergeByLine(m.deny), mergeByLine(m.allow)));
    }
  }
  return { buckets, wildKeys, entries: { rules: all, sig: Int32Array.from(sig) } };
}
