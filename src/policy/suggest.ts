/**
 * `airlock policy suggest`: proposes the `p` lines a role needs from its recorded calls (audit events,
 * src/audit/event.ts), like SELinux's audit2allow — for a person to review, never applied by itself
 * (docs/policy.md "`airlock policy suggest`").
 *
 * Every recorded call is decided again by the current policy:
 * - allowed: already covered; the proposal only adds allow lines, so it stays covered;
 * - denied by a deny rule: nothing is suggested (a suggestion never overrides a deny); the deny is named;
 * - denied because no rule matched: covered by a suggested line.
 *
 * Suggested lines are grouped per (role, policy host, method); the host is always exact. Paths:
 * - Methods other than GET, HEAD and OPTIONS (POST, PUT, PATCH, DELETE, MCP, WEBSOCKET, CONNECT, ...)
 *   get one line per exact path observed: never generalised.
 * - GET/HEAD/OPTIONS paths are generalised in two steps, each only on evidence:
 *   1. ids: paths of the same shape (same number of segments, same segments except id-like ones)
 *      observed with at least two different id-like values at a position get `:id` there. Id-like:
 *      a decimal number, a UUID (8-4-4-4-12 hex), or a hex string of 16 or more digits (hashes, git
 *      SHAs). A position whose id-like value never varied stays literal; a path seen alone stays exact.
 *   2. tails: a prefix of at least one segment under which {@link TAIL_SIBLINGS} or more distinct
 *      next segments were observed (an `:id` counts once) becomes `PREFIX/*` (the prefix itself and
 *      everything below it); the shallowest such prefix wins. The root is never generalised (`/*`
 *      on a host is never suggested).
 */
import { SAFE_METHODS } from './modes.js';
import { requestFromUrl } from '../request/normalize.js';
import { compilePolicy } from './load.js';
import type { CompiledPolicy } from './compile.js';
import { lintPolicy, type LintFinding } from './lint.js';
import { matchPathPattern, parsePathPattern } from './matchers.js';
import {
  AuditLineError,
  callsOfAuditEvent,
  replayCalls,
  requestOfCall,
  type RecordedCall,
  type ReplayReport,
} from './replay.js';
import type { PolicyDecision, PolicyRequest } from './types.js';

/** Methods whose paths may be generalised (they do not change state). */
export { SAFE_METHODS };

/** Distinct next segments under a prefix that justify a `PREFIX/*` tail (safe methods only). */
export const TAIL_SIBLINGS = 3;

/**
 * Audit reasons that are not a policy decision about the call (identity failures, malformed or
 * ambiguous requests, refused destinations): such events are never suggested for.
 */
export const NOT_POLICY_REASONS: ReadonlySet<string> = new Set([
  'unknown_session',
  'bad_credential',
  'address_mismatch',
  'session_expired',
  'destination_refused',
  'bad_request',
  'ambiguous_request',
  'auth_backoff',
  'tls_handshake_failed',
]);

/** A recorded call with the fields suggest filters on. */
export interface ObservedCall extends RecordedCall {
  readonly sessionId: string | null;
  /** ISO time of the event ('' when absent). */
  readonly time: string;
  /** The recorded reason ('' when absent). */
  readonly reason: string;
  /**
   * The CONNECT of a tunnel the gateway intercepted (the event counts the `requests` inside): no
   * CONNECT rule decided it, the requests inside were decided one by one. Absent: false.
   */
  readonly intercepted?: boolean;
}

/**
 * Parses JSON-lines audit text like {@link parseAuditLines} (MCP messages included), keeping
 * `sessionId`, `time` and `reason`. Events without a role come back as null.
 * @throws AuditLineError (1-based line) as parseAuditLines does.
 */
export function parseObservedLines(text: string): (ObservedCall | null)[] {
  const out: (ObservedCall | null)[] = [];
  // One pass, one JSON.parse per line, one object per call (100,000 events: bench/suggest.mjs).
  let start = 0;
  for (let i = 1; start <= text.length; i++) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    const raw = text.slice(start, end);
    start = end + 1;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (err) {
      if (raw.trim() === '') continue; // blank lines are skipped
      throw new AuditLineError(`not JSON (${(err as Error).message})`, i);
    }
    const e = (typeof v === 'object' && v !== null ? v : {}) as {
      sessionId?: unknown;
      time?: unknown;
      reason?: unknown;
      requests?: unknown;
    };
    const extra = {
      sessionId: typeof e.sessionId === 'string' ? e.sessionId : null,
      time: typeof e.time === 'string' ? e.time : '',
      reason: typeof e.reason === 'string' ? e.reason : '',
      intercepted: typeof e.requests === 'number',
    };
    for (const c of callsOfAuditEvent(v, i, extra)) out.push(c);
  }
  return out;
}

/** Which recorded calls to learn from. */
export interface SuggestFilter {
  /** Only this role (default: every role recorded). */
  readonly role?: string;
  readonly session?: string;
  /** Only events at or after this time. */
  readonly since?: Date;
}

/** A distinct observed call: request, scheme (for test URLs), count and current decision. */
export interface Observation {
  readonly request: PolicyRequest;
  readonly scheme: 'http' | 'https';
  readonly count: number;
  readonly decision: PolicyDecision;
}

/** A proposed `p` line and the observations it makes allowed. */
export interface SuggestedLine {
  readonly role: string;
  readonly host: string;
  readonly path: string;
  readonly method: string;
  /** `p, ROLE, HOST, PATH, METHOD, allow`. */
  readonly text: string;
  /** 1-based line in the proposed policy.csv. */
  readonly line: number;
  readonly covers: readonly Observation[];
}

export interface SuggestReport {
  /** Events read (MCP messages count as events of their own, as in `policy diff`). */
  readonly events: number;
  /** Events learned from after the filters. */
  readonly considered: number;
  readonly skipped: {
    readonly noRole: number;
    readonly badTarget: number;
    /**
     * Not a policy decision (identity failure, malformed request, refused destination), or the
     * CONNECT of an intercepted tunnel (the requests inside are learned instead).
     */
    readonly notPolicy: number;
    /** Excluded by --role, --session or --since. */
    readonly filtered: number;
    /** Denied calls whose path cannot be written as a policy.csv literal (`,`, `#`, `"`, `*`, `:x`). */
    readonly unrepresentable: number;
  };
  /** Distinct calls the current policy already allows. */
  readonly allowed: readonly Observation[];
  /** Distinct calls a deny rule of the current policy blocks: nothing is suggested for them. */
  readonly blocked: readonly Observation[];
  readonly lines: readonly SuggestedLine[];
  /** The lines to append to policy.csv (comments included), each ending with a newline. */
  readonly addition: string;
  /** The current policy.csv with the addition. */
  readonly proposedPolicyText: string;
  /** Lint findings of the proposed policy on the added lines. */
  readonly lint: readonly LintFinding[];
  /** A tests/*.yaml file for the observed calls, passing against the proposed policy ('' if none). */
  readonly tests: string;
  /** Cases of `tests` that fail against the proposal (always 0 unless there is a bug). */
  readonly testFailures: number;
  /** `policy diff` of current → proposed on the same calls. */
  readonly diff: ReplayReport;
  /** The compiled proposal (its version names it). */
  readonly proposed: CompiledPolicy;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LONG_HEX = /^[0-9a-f]{16,}$/i;
const DIGITS = /^[0-9]+$/;

/** A decimal number, a UUID or a hex string of 16+ digits: a segment that names one object. */
export function isIdSegment(seg: string): boolean {
  return DIGITS.test(seg) || UUID.test(seg) || LONG_HEX.test(seg);
}

/** Whether a request path segment can be written as a literal path-pattern segment. */
function literalOk(seg: string): boolean {
  return !seg.startsWith(':') && !/[,#"*\s]/.test(seg);
}

function segmentsOf(path: string): string[] {
  if (path === '/' || path === '') return [];
  const segs = path.slice(1).split('/');
  if (segs[segs.length - 1] === '') segs.pop(); // a trailing slash is not significant
  return segs;
}

function patternText(segs: readonly string[], tail: boolean): string {
  const base = '/' + segs.join('/');
  if (!tail) return base;
  return base === '/' ? '/*' : `${base}/*`;
}

/** A pattern under construction: segments (`:id` for a parameter) and the `/*` tail. */
interface Pat {
  segs: string[];
  tail: boolean;
}

/**
 * Generalises the observed paths of one (role, host, safe method) group: ids, then tails (see the
 * module comment). Returns the patterns, sorted; every input path is matched by one of them.
 */
export function generalisePaths(paths: readonly string[]): string[] {
  // Step 1: ids. Cluster by shape (id-like segments blanked out).
  const clusters = new Map<string, string[][]>();
  for (const p of new Set(paths)) {
    const segs = segmentsOf(p);
    const key = segs.map((s) => (isIdSegment(s) ? '\0' : s)).join('/') + `#${segs.length}`;
    const c = clusters.get(key);
    if (c) c.push(segs);
    else clusters.set(key, [segs]);
  }
  const pats = new Map<string, Pat>();
  const add = (p: Pat): void => void pats.set(patternText(p.segs, p.tail), p);
  for (const members of clusters.values()) {
    const first = members[0] as string[];
    const segs = first.map((s, i) => (isIdSegment(s) && members.some((m) => m[i] !== s) ? ':id' : s));
    // Members that agree on every varying position collapse into one pattern; the rest stay exact.
    add({ segs, tail: false });
  }
  // Step 2: tails. For each prefix (>= 1 segment), the distinct next segments below it.
  const below = new Map<string, Set<string>>();
  for (const p of pats.values()) {
    for (let d = 1; d < p.segs.length; d++) {
      const prefix = p.segs.slice(0, d).join('/');
      let s = below.get(prefix);
      if (!s) below.set(prefix, (s = new Set()));
      s.add(p.segs[d] as string);
    }
  }
  const out = new Set<string>();
  for (const p of pats.values()) {
    let tailAt = -1;
    for (let d = 1; d < p.segs.length + 1; d++) {
      const prefix = p.segs.slice(0, d).join('/');
      if ((below.get(prefix)?.size ?? 0) >= TAIL_SIBLINGS) {
        tailAt = d;
        break;
      }
    }
    out.add(tailAt === -1 ? patternText(p.segs, false) : patternText(p.segs.slice(0, tailAt), true));
  }
  return [...out].sort();
}

function keyOf(r: PolicyRequest): string {
  return `${r.role}\0${r.method}\0${r.host}\0${r.path}`;
}

/** `String.prototype.localeCompare`'s order, with the collator built once (sorting 100,000s of calls). */
const collate = new Intl.Collator().compare;

/** `collate`, skipping the collator for equal strings (most comparisons within a group). */
function cmp(a: string, b: string): number {
  return a === b ? 0 : collate(a, b);
}

function compareObs(a: Observation, b: Observation): number {
  const x = a.request;
  const y = b.request;
  return cmp(x.role, y.role) || cmp(x.host, y.host) || cmp(x.method, y.method) || cmp(x.path, y.path);
}

/** The URL a test case uses for an observation (CONNECT: `/`). */
export function urlOf(o: Observation): string {
  return `${o.scheme}://${o.request.host}${o.request.path}`;
}

function describeCovers(covers: readonly Observation[]): string {
  const shown = covers.slice(0, 5).map((o) => `${o.request.path}${o.count > 1 ? ` (x${o.count})` : ''}`);
  const more = covers.length > 5 ? `, and ${covers.length - 5} more` : '';
  const total = covers.reduce((n, o) => n + o.count, 0);
  const first = covers[0] as Observation;
  return (
    `# suggested from ${total} denied call${total === 1 ? '' : 's'}: ${first.request.method} ` +
    `${first.request.host} ${shown.join(', ')}${more}`
  );
}

const MAX_TESTS_PER_LINE = 3;
const MAX_BLOCKED_TESTS = 50;

function yamlString(s: string): string {
  return JSON.stringify(s);
}

/** One generated test case, as written to the tests file. */
interface GeneratedCase {
  readonly role: string;
  readonly method: string;
  readonly url: string;
  readonly expect: 'allow' | 'deny';
}

function testCases(
  lines: readonly SuggestedLine[],
  allowed: readonly Observation[],
  blocked: readonly Observation[],
): { text: string; cases: GeneratedCase[] } {
  const cases: string[] = [];
  const generated: GeneratedCase[] = [];
  const push = (name: string, o: Observation, expect: 'allow' | 'deny'): void => {
    generated.push({ role: o.request.role, method: o.request.method, url: urlOf(o), expect });
    cases.push(
      `  - name: ${yamlString(name)}\n` +
        `    role: ${yamlString(o.request.role)}\n` +
        `    method: ${o.request.method}\n` +
        `    url: ${yamlString(urlOf(o))}\n` +
        `    expect: ${expect}\n`,
    );
  };
  for (const l of lines) {
    for (const o of l.covers.slice(0, MAX_TESTS_PER_LINE))
      push(`observed, allowed by: ${l.text}`, o, 'allow');
  }
  // One case per rule already allowing observed calls of a (role, host, method).
  const seen = new Set<string>();
  for (const o of allowed) {
    const k = `${o.request.role}\0${o.request.host}\0${o.request.method}\0${o.decision.rule ?? ''}`;
    if (seen.has(k)) continue;
    seen.add(k);
    push('observed, already allowed', o, 'allow');
  }
  for (const o of blocked.slice(0, MAX_BLOCKED_TESTS)) {
    push(`observed, denied by ${(o.decision.rule ?? '').replace(/^policy\.csv:\d+: /, '')}`, o, 'deny');
  }
  if (cases.length === 0) return { text: '', cases: [] };
  return {
    text:
      '# generated by airlock policy suggest from recorded calls; review before committing\ncases:\n' +
      cases.join(''),
    cases: generated,
  };
}

/**
 * Proposes allow lines for the recorded calls `calls` against `current`.
 * @throws PolicyError only if the proposal does not compile (a bug: suggested lines are validated).
 */
export function suggestPolicy(
  current: CompiledPolicy,
  calls: Iterable<ObservedCall | null>,
  filter: SuggestFilter = {},
): SuggestReport {
  let events = 0;
  let noRole = 0;
  let badTarget = 0;
  let notPolicy = 0;
  let filtered = 0;
  let unrepresentable = 0;
  let considered = 0;
  // Distinct calls, each with its first recorded call (replayed with its count for the diff).
  type Distinct = { request: PolicyRequest; scheme: 'http' | 'https'; count: number; call: RecordedCall };
  const distinct = new Map<string, Distinct>();
  const byRecorded = new Map<string, Distinct | null>();
  const since = filter.since?.getTime();
  for (const c of calls) {
    events++;
    if (c === null) {
      noRole++;
      continue;
    }
    // An intercepted tunnel's CONNECT is not a call to learn: what went through it is learned instead.
    if (NOT_POLICY_REASONS.has(c.reason) || (c.intercepted === true && c.method === 'CONNECT')) {
      notPolicy++;
      continue;
    }
    if (
      (filter.role !== undefined && c.role !== filter.role) ||
      (filter.session !== undefined && c.sessionId !== filter.session) ||
      (since !== undefined && !(Date.parse(c.time) >= since))
    ) {
      filtered++;
      continue;
    }
    // Recorded calls repeat: each recorded target is normalised to its request once.
    const rk = `${c.role}\0${c.method}\0${c.scheme}\0${c.host}\0${c.port}\0${c.path}`;
    let d = byRecorded.get(rk);
    if (d === undefined) {
      const request = requestOfCall(c);
      d = null;
      if (request !== null) {
        const k = keyOf(request);
        d = distinct.get(k) ?? null;
        if (d === null) distinct.set(k, (d = { request, scheme: c.scheme, count: 0, call: c }));
      }
      byRecorded.set(rk, d);
    }
    if (d === null) {
      badTarget++;
      continue;
    }
    considered++;
    d.count++;
  }
  const allowed: Observation[] = [];
  const blocked: Observation[] = [];
  // (role, host, method) → denied observations without a matching rule.
  const groups = new Map<string, Observation[]>();
  for (const d of distinct.values()) {
    const o: Observation = {
      request: d.request,
      scheme: d.scheme,
      count: d.count,
      decision: current.decide(d.request),
    };
    if (o.decision.allowed) allowed.push(o);
    else if (o.decision.reason === 'rule_deny') blocked.push(o);
    else if (!segmentsOf(o.request.path).every(literalOk)) unrepresentable += o.count;
    else {
      const k = `${o.request.role}\0${o.request.host}\0${o.request.method}`;
      const g = groups.get(k);
      if (g) g.push(o);
      else groups.set(k, [o]);
    }
  }
  allowed.sort(compareObs);
  blocked.sort(compareObs);
  const drafts: Omit<SuggestedLine, 'line'>[] = [];
  for (const obs of groups.values()) {
    obs.sort(compareObs);
    const { role, host, method } = (obs[0] as Observation).request;
    const patterns = SAFE_METHODS.has(method)
      ? generalisePaths(obs.map((o) => o.request.path))
      : [...new Set(obs.map((o) => patternText(segmentsOf(o.request.path), false)))];
    const parsed = patterns.map((p) => ({ p, pat: parsePathPattern(p) }));
    const covers = new Map<string, Observation[]>(patterns.map((p) => [p, []]));
    for (const o of obs) {
      // An exact pattern first (every line of a mutation method): no scan of the patterns.
      const exact = covers.get(patternText(segmentsOf(o.request.path), false));
      if (exact) {
        exact.push(o);
        continue;
      }
      const m = parsed.find((x) => matchPathPattern(x.pat, o.request.path));
      if (m) covers.get(m.p)?.push(o);
    }
    for (const p of patterns) {
      drafts.push({
        role,
        host,
        path: p,
        method,
        text: `p, ${role}, ${host}, ${p}, ${method}, allow`,
        covers: covers.get(p) ?? [],
      });
    }
  }
  drafts.sort(
    (a, b) =>
      collate(a.role, b.role) ||
      collate(a.host, b.host) ||
      collate(a.method, b.method) ||
      collate(a.path, b.path),
  );
  const src = current.source;
  const base =
    src.policyText === '' || src.policyText.endsWith('\n') ? src.policyText : `${src.policyText}\n`;
  let lineNo = base === '' ? 0 : base.split('\n').length - 1;
  let addition = '';
  const lines: SuggestedLine[] = [];
  if (drafts.length > 0) {
    addition += '\n# --- suggested by `airlock policy suggest` from recorded calls: review each line ---\n';
    lineNo += 2;
    for (const d of drafts) {
      addition += `${describeCovers(d.covers)}\n${d.text}\n`;
      lineNo += 2;
      lines.push({ ...d, line: lineNo });
    }
  }
  const proposedPolicyText = base + addition;
  const proposed = compilePolicy(src.modelText, proposedPolicyText, {
    ...(src.dir !== null ? { dir: src.dir } : {}),
    files: src.files,
  });
  // A suggestion never overrides a deny: every call it is for must now be allowed, by an allow rule.
  for (const l of lines) {
    for (const o of l.covers) {
      const d = proposed.decide(o.request);
      if (!d.allowed) {
        throw new Error(
          `suggested line ${l.text} does not allow ${o.request.method} ${o.request.path}: ${d.rule ?? d.reason}`,
        );
      }
    }
  }
  const firstAdded = lines[0]?.line ?? Infinity;
  const lint = lintPolicy(proposed).filter((f) => f.line >= firstAdded);
  // The same replay as `policy diff` on every considered event: each distinct call once, with its count.
  const diff = replayCalls(
    current,
    proposed,
    [...distinct.values()].map((d) => ({ ...d.call, count: d.count })),
  );
  const { text: tests, cases } = testCases(lines, allowed, blocked);
  // Each generated case decided as `policy test` would (URL normalised, the proposal asked).
  let testFailures = 0;
  for (const c of cases) {
    const n = requestFromUrl(c.url, c.method);
    const d = proposed.decide({ role: c.role, host: n.policyHost, path: n.path, method: n.method });
    const verdict = d.allowed ? 'allow' : d.reason === 'rule_deny' || d.reason === 'no_match' ? 'deny' : null;
    if (verdict !== c.expect) testFailures++;
  }
  return {
    events,
    considered,
    skipped: { noRole, badTarget, notPolicy, filtered, unrepresentable },
    allowed,
    blocked,
    lines,
    addition,
    proposedPolicyText,
    lint,
    tests,
    testFailures,
    diff,
    proposed,
  };
}
