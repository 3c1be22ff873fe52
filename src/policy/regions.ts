/**
 * Set algebra over rule patterns, for the linter (`airlock policy check`, src/policy/lint.ts).
 *
 * A `p` rule matches a *region* of request space: the product of the policy hosts its host pattern
 * matches, the normalised paths its path pattern matches, and the methods its method pattern matches.
 * These functions answer overlap, containment and coverage questions about regions exactly, with the
 * same semantics as the matchers in ./matchers.ts (they are in fact answered by running those
 * matchers on finitely many representative requests, see {@link coverage}).
 */
import {
  matchHostPattern,
  matchMethodPattern,
  matchPathPattern,
  NAMED_ONLY_METHODS,
  wildcardKeyOf,
  type HostPattern,
  type PathPattern,
} from './matchers.js';

/** A region of request space: hosts × paths × methods, each a parsed pattern. */
export interface Region {
  readonly host: HostPattern;
  readonly path: PathPattern;
  /** A method pattern: an uppercase method or `*` (every method except CONNECT, WEBSOCKET and MCP). */
  readonly method: string;
}

/** Whether two host patterns match at least one common policy host. */
export function hostsOverlap(a: HostPattern, b: HostPattern): boolean {
  if (a.kind === 'exact' && b.kind === 'exact') return a.key === b.key;
  if (a.kind === 'wildcard' && b.kind === 'wildcard') return a.key === b.key;
  const exact = a.kind === 'exact' ? a : b;
  const wild = a.kind === 'exact' ? b : a;
  return wildcardKeyOf(exact.key) === wild.key;
}

/** Whether two method patterns match at least one common method. */
export function methodsOverlap(a: string, b: string): boolean {
  if (a === '*' && b === '*') return true;
  if (a === '*') return !NAMED_ONLY_METHODS.has(b);
  if (b === '*') return !NAMED_ONLY_METHODS.has(a);
  return a === b;
}

/**
 * The intersection of two path patterns as a path pattern, or null when no path matches both.
 * Literal segments must agree, a literal meets a `:param` as the literal, and the result has the `*`
 * tail only when both have it.
 */
export function intersectPaths(a: PathPattern, b: PathPattern): PathPattern | null {
  const na = a.segments.length;
  const nb = b.segments.length;
  if (!a.tail && !b.tail && na !== nb) return null;
  if (!a.tail && na < nb) return null;
  if (!b.tail && nb < na) return null;
  const n = Math.max(na, nb);
  const segments: (string | null)[] = [];
  for (let k = 0; k < n; k++) {
    const x = k < na ? a.segments[k] : null; // beyond a pattern's length only its `*` tail reaches
    const y = k < nb ? b.segments[k] : null;
    if (x !== null && x !== undefined && y !== null && y !== undefined) {
      if (x !== y) return null;
      segments.push(x);
    } else {
      segments.push(x ?? y ?? null);
    }
  }
  return { segments, tail: a.tail && b.tail };
}

/** Whether two regions share at least one request. */
export function regionsOverlap(a: Region, b: Region): boolean {
  return (
    hostsOverlap(a.host, b.host) &&
    methodsOverlap(a.method, b.method) &&
    intersectPaths(a.path, b.path) !== null
  );
}

/** The outcome of {@link coverage}. */
export interface Coverage {
  /**
   * `true`: every request of the region is in some cover region. `false`: at least one is not.
   * `null`: undecided because the region needs more than `maxProbes` representative requests.
   */
  readonly covered: boolean | null;
  /** Indexes (into `covers`) of the cover regions that contain at least one request of the region. */
  readonly used: readonly number[];
  /** When `covered` is false: a request of the region that no cover contains (policy host, path, method). */
  readonly witness?: { readonly host: string; readonly path: string; readonly method: string };
}

/** A normal-form path segment none of `taken` equals. */
function freshSegment(taken: ReadonlySet<string> | undefined): string {
  let seg = 'airlock-lint-probe';
  for (let i = 0; taken?.has(seg); i++) seg = `airlock-lint-probe${i}`;
  return seg;
}

function freshLabel(taken: ReadonlySet<string>): string {
  let label = 'airlock-lint-probe';
  for (let i = 0; taken.has(label); i++) label = `airlock-lint-probe${i}`;
  return label;
}

function freshMethod(taken: ReadonlySet<string>): string {
  let m = 'AIRLOCK-LINT-PROBE';
  for (let i = 0; taken.has(m); i++) m = `AIRLOCK-LINT-PROBE${i}`;
  return m;
}

/** Representative policy hosts of `p`: one per class of hosts the `covers` cannot tell apart. */
function hostProbes(p: HostPattern, covers: readonly Region[]): string[] {
  if (p.kind === 'exact') return [p.key];
  const named = new Set<string>();
  const labels = new Set<string>();
  for (const c of covers) {
    if (c.host.kind === 'exact' && wildcardKeyOf(c.host.key) === p.key) {
      named.add(c.host.key);
      labels.add(c.host.key.slice(0, c.host.key.indexOf('.')));
    }
  }
  return [...named, `${freshLabel(labels)}.${p.key}`];
}

/** Representative methods of `m`. */
function methodProbes(m: string, covers: readonly Region[]): string[] {
  if (m !== '*') return [m];
  const named = new Set<string>();
  for (const c of covers) if (c.method !== '*' && !NAMED_ONLY_METHODS.has(c.method)) named.add(c.method);
  return [...named, freshMethod(named)];
}

/**
 * Representative normalised paths of `p`, or null when there would be more than `max`. Two paths
 * with the same number of segments that agree on every segment some cover names at that position
 * (and use a fresh segment elsewhere) are matched by exactly the same cover patterns; lengths beyond
 * the longest cover pattern behave alike.
 */
function pathProbes(p: PathPattern, covers: readonly Region[], max: number): string[] | null {
  const n = p.segments.length;
  let longest = 0;
  const literalsAt: Set<string>[] = [];
  for (const c of covers) {
    const segs = c.path.segments;
    longest = Math.max(longest, segs.length);
    segs.forEach((s, k) => {
      if (s === null) return;
      (literalsAt[k] ??= new Set()).add(s);
    });
  }
  const maxLen = p.tail ? Math.max(n, longest + 1) : n;
  const choices: string[][] = [];
  for (let k = 0; k < maxLen; k++) {
    const own = k < n ? p.segments[k] : null;
    choices.push(
      own !== null && own !== undefined ? [own] : [...(literalsAt[k] ?? []), freshSegment(literalsAt[k])],
    );
  }
  const out: string[] = [];
  for (let len = n; len <= maxLen; len++) {
    let count = 1;
    for (let k = 0; k < len; k++) count *= (choices[k] as string[]).length;
    if (out.length + count > max) return null;
    const idx = new Array<number>(len).fill(0);
    for (;;) {
      out.push('/' + idx.map((i, k) => (choices[k] as string[])[i]).join('/'));
      let k = len - 1;
      while (k >= 0 && (idx[k] as number) + 1 >= (choices[k] as string[]).length) {
        idx[k] = 0;
        k--;
      }
      if (k < 0) break;
      idx[k] = (idx[k] as number) + 1;
    }
  }
  return out;
}

function inRegion(r: Region, host: string, path: string, method: string): boolean {
  return (
    matchHostPattern(r.host, host) && matchMethodPattern(r.method, method) && matchPathPattern(r.path, path)
  );
}

/**
 * Whether `covers` together contain every request of `region` (exact, not a heuristic).
 *
 * The region is split into finitely many classes of requests that no cover region can tell apart
 * (hosts, paths and methods the covers name, plus one fresh representative for everything else), and
 * one representative request per class is checked against the covers with the real matchers. When
 * that would take more than `maxProbes` requests the answer is `null` (callers treat it as "not
 * known to be covered").
 * @param maxProbes upper bound on representative requests. @default 20000
 */
export function coverage(region: Region, covers: readonly Region[], maxProbes = 20_000): Coverage {
  const relevant: number[] = [];
  covers.forEach((c, i) => {
    if (regionsOverlap(region, c)) relevant.push(i);
  });
  const rel = relevant.map((i) => covers[i] as Region);
  const hosts = hostProbes(region.host, rel);
  const methods = methodProbes(region.method, rel);
  const budget = Math.floor(maxProbes / (hosts.length * methods.length));
  const paths = budget < 1 ? null : pathProbes(region.path, rel, budget);
  if (paths === null) return { covered: null, used: relevant };
  for (const host of hosts) {
    for (const method of methods) {
      for (const path of paths) {
        if (!rel.some((c) => inRegion(c, host, path, method))) {
          return { covered: false, used: relevant, witness: { host, path, method } };
        }
      }
    }
  }
  return { covered: true, used: relevant };
}

/** Formats a path pattern back to policy text (`/a/:p/*`; parameter names are not kept: `:p`). */
export function pathText(p: PathPattern): string {
  const body = p.segments.map((s) => (s === null ? ':p' : s)).join('/');
  if (p.tail) return body === '' ? '/*' : `/${body}/*`;
  return `/${body}`;
}
