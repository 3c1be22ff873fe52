/**
 * Differential test at scale: 100,000 generated requests over generated policies of more than
 * 10,000 `p` lines (deny rules, five levels of inheritance with several parents, wildcard hosts,
 * ports, IP literals, `:param` and `*` paths, `*` and CONNECT methods, non-normalised paths, unknown
 * roles), with zero differences allowed between `CompiledPolicy.decide()` and Casbin 5.51's
 * `enforceExSync()` on the same model and policy — verdict and deciding rule.
 *
 * ## Why not 100,000 plain full-policy Casbin calls, and why what we do instead is sound
 *
 * Casbin scans every policy line per call: ~4 µs a line here when the subject does not match and
 * ~10 µs when it does, ~40 ms a call at 10,000 lines, so 100,000 calls would take over an hour. Each
 * request is therefore decided by a real Casbin enforcer built from the full policy (same model, same
 * role manager, built from every `g` line) whose policy array (`model.p.p.policy`, what
 * `privateEnforce` iterates) is swapped, for that call, to the *candidate lines*: the lines, in file
 * order, whose subject is the request's role or a role Casbin's own role manager says it inherits
 * (`getImplicitRolesForUser`, not Airlock's code) and whose host pattern `hostMatch` (the very function
 * Casbin's matcher calls) accepts for the request's host; plus one sentinel line for a subject no
 * request uses (a policy with no line takes another code path in Casbin).
 *
 * This is exactly the full policy's answer: in `privateEnforce` each line's matcher is evaluated on
 * its own; a left-out line has `g(r.sub, p.sub)` or `hostMatch(r.host, p.host)` false, so the
 * conjunction is false and its effect is `Indeterminate`; and the deny-overrides
 * `DefaultEffectorStream` ignores `Indeterminate` (the result is unchanged and the line is not
 * recorded as the explanation). Leaving out lines whose effect is `Indeterminate` and keeping the
 * rest in order changes neither the verdict nor which line is named. Casbin still does the rest: the
 * role check, path and method matching, deny-overrides and the choice of the deciding line. The
 * reduction is also checked empirically: 40 requests per policy are decided by an untouched Casbin
 * enforcer on the whole 10,000+ line policy and must give the same answer.
 *
 * The policies spread their lines over 1,000 roles (about 10 each) and a few host patterns; 20 "hot"
 * roles also get about 100 rules each on one host (a big API granted path by path), so part of the
 * decisions go through the index's path tries (buckets of more than 64 rules) and the rest through its
 * linear scan (the share of each is printed and must exceed 10%). The test
 * asserts that allow, deny and no-match outcomes and both index paths each make up over 10% of the
 * requests, and prints the shares.
 *
 * Run time: 1.5–3 minutes on this project's 2-vCPU VM depending on its load, half of it in Casbin. Policies and requests come from
 * fast-check (a fixed number of runs, no shrinking: a 10,000-line counterexample is printed with the
 * candidate lines instead, and fast-check prints the seed to replay). `AIRLOCK_DIFF_POLICIES` and
 * `AIRLOCK_DIFF_REQUESTS` shrink the run for local iteration only.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Enforcer } from 'casbin';
import { newCasbinEnforcer } from '../../../src/policy/casbin.js';
import { hostMatch } from '../../../src/policy/matchers.js';
import { TRIE_MIN_RULES } from '../../../src/policy/compile.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import type { PolicyRequest } from '../../../src/policy/types.js';

/** Overridable for quick local runs only; the defaults are the test (≥ 100,000 requests). */
const POLICIES = Number(process.env.AIRLOCK_DIFF_POLICIES ?? 4);
const REQUESTS_PER_POLICY = Number(process.env.AIRLOCK_DIFF_REQUESTS ?? 25_000);
const MIN_P_LINES = 10_000;
const ROLES = 1000;
const LEVELS = 5; // roles 0-199 level 0, 200-399 level 1, ...; parents only one level down
const FULL_SCAN_SAMPLE = 40;

const role = (i: number) => `r${i}`;
const levelOf = (i: number) => Math.floor((i * LEVELS) / ROLES);
/** 20 roles spread over the levels that get many rules on one host. */
const HOT_ROLES = Array.from({ length: 20 }, (_, k) => 7 + 50 * k);

const HOST_POOL = [
  'a.test',
  'b.test',
  'a.test:8080',
  '*.a.test',
  '*.a.test:8080',
  'x.a.test',
  'x.y.a.test',
  '*.y.a.test',
  '127.0.0.1:9000',
  '[::1]:9000',
  'api.c.test',
  '*.c.test',
];
const SEGMENTS = ['api', 'v1', 'v2', 'items', 'x', 'users', 'admin', 'files'];
const METHOD_PATTERNS = ['GET', 'GET', 'POST', 'PUT', 'DELETE', 'CONNECT', '*', '*'];

interface GenRule {
  role: number;
  host: string;
  path: string;
  method: string;
  effect: 'allow' | 'deny';
}

const pathPatternArb = fc
  .tuple(
    fc.array(fc.oneof(fc.constantFrom(...SEGMENTS), fc.constant(':id')), { minLength: 0, maxLength: 4 }),
    fc.boolean(),
  )
  .map(([segs, tail]) => {
    const base = `/${segs.join('/')}`;
    return tail ? (base === '/' ? '/*' : `${base}/*`) : base;
  });

/** Deny rules are narrower (at least two segments): guard rails rather than blanket denies. */
const denyPathArb = fc
  .tuple(
    fc.constantFrom(...SEGMENTS),
    fc.array(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...SEGMENTS) }, fc.constant(':id')), {
      minLength: 1,
      maxLength: 3,
    }),
    fc.boolean(),
  )
  .map(([first, rest, tail]) => `/${[first, ...rest].join('/')}${tail ? '/*' : ''}`);

/** Policy-level choices: which host patterns this policy uses (few → large buckets). */
const shapeArb = fc.record({
  hosts: fc.shuffledSubarray(HOST_POOL, { minLength: 3, maxLength: 6 }),
  /** Chance that a level-0 role's rule is a deny (guard-rail roles). */
  guardDeny: fc.double({ min: 0.1, max: 0.3, noNaN: true }),
  /** Chance that another role's rule is a deny. */
  deny: fc.double({ min: 0.02, max: 0.08, noNaN: true }),
  seed: fc.integer(),
});

interface GenPolicy {
  text: string;
  rules: GenRule[];
  pLines: number;
  gLines: number;
  /** role index → indexes of roles inheriting it, directly. */
  children: number[][];
  hosts: readonly string[];
}

type Shape = { hosts: string[]; guardDeny: number; deny: number; seed: number };

function buildPolicy(shape: Shape): GenPolicy {
  // Inheritance: each role above level 0 inherits 1 role of the level below, sometimes 2.
  const edges = fc.sample(
    fc.array(fc.tuple(fc.integer({ min: 0, max: 199 }), fc.integer({ min: 0, max: 199 }), fc.boolean()), {
      minLength: ROLES,
      maxLength: ROLES,
    }),
    { numRuns: 1, seed: shape.seed },
  )[0] as [number, number, boolean][];
  const children: number[][] = Array.from({ length: ROLES }, () => []);
  const gLines: string[] = [];
  for (let i = 0; i < ROLES; i++) {
    const lvl = levelOf(i);
    if (lvl === 0) continue;
    const [a, b, two] = edges[i] as [number, number, boolean];
    const below = (lvl - 1) * (ROLES / LEVELS);
    const parents = new Set([below + a]);
    if (two && b % 3 === 0) parents.add(below + b);
    for (const p of parents) {
      gLines.push(`g, ${role(i)}, ${role(p)}`);
      children[p]?.push(i);
    }
  }
  const ruleFor = (roleArb: fc.Arbitrary<number>, hostArb: fc.Arbitrary<string>) =>
    fc.tuple(roleArb, hostArb, fc.double({ min: 0, max: 1, noNaN: true })).chain(([r, host, u]) => {
      const effect = u < (levelOf(r) === 0 ? shape.guardDeny : shape.deny) ? 'deny' : 'allow';
      return fc
        .tuple(effect === 'deny' ? denyPathArb : pathPatternArb, fc.constantFrom(...METHOD_PATTERNS))
        .map(([path, method]): GenRule => ({ role: r, host, path, method, effect }));
    });
  const ruleArb = fc.oneof(
    {
      weight: 85,
      arbitrary: ruleFor(fc.integer({ min: 0, max: ROLES - 1 }), fc.constantFrom(...shape.hosts)),
    },
    // "Hot" roles: ~100 rules each on one host (a big API granted path by path): path tries.
    { weight: 15, arbitrary: ruleFor(fc.constantFrom(...HOT_ROLES), fc.constant(shape.hosts[0] as string)) },
  );
  const drawn = fc.sample(
    fc.array(ruleArb, { minLength: MIN_P_LINES + 3000, maxLength: MIN_P_LINES + 3000 }),
    {
      numRuns: 1,
      seed: shape.seed ^ 0x9e3779b9,
    },
  )[0] as GenRule[];
  const seen = new Set<string>();
  const rules: GenRule[] = [];
  const lines: string[] = [];
  const text = (r: GenRule) => `p, ${role(r.role)}, ${r.host}, ${r.path}, ${r.method}, ${r.effect}`;
  // Interleave g lines among the p lines (file order matters to Casbin's explanation, not to g).
  const gEvery = Math.ceil(drawn.length / gLines.length);
  let g = 0;
  for (let i = 0; i < drawn.length; i++) {
    if (i % gEvery === 0 && g < gLines.length) lines.push(gLines[g++] as string);
    if (i % 997 === 0) lines.push('# a comment line');
    const r = drawn[i] as GenRule;
    const t = text(r);
    if (seen.has(t) || rules.length >= MIN_P_LINES + 500) continue;
    seen.add(t);
    rules.push(r);
    lines.push(t);
  }
  while (g < gLines.length) lines.push(gLines[g++] as string);
  return {
    text: lines.join('\n') + '\n',
    rules,
    pLines: rules.length,
    gLines: gLines.length,
    children,
    hosts: shape.hosts,
  };
}

const LABELS = ['x', 'y', 'z', 'api', 'w1'];

/** A request host near a host pattern: itself, case and port variants, wildcard children and misses. */
const hostNearCache = new Map<string, fc.Arbitrary<string>>();
function hostNear(pattern: string): fc.Arbitrary<string> {
  let arb = hostNearCache.get(pattern);
  if (arb === undefined) hostNearCache.set(pattern, (arb = makeHostNear(pattern)));
  return arb;
}

function makeHostNear(pattern: string): fc.Arbitrary<string> {
  const wild = pattern.startsWith('*.');
  const key = wild ? pattern.slice(2) : pattern;
  const [name, port] = key.startsWith('[')
    ? [key.slice(0, key.indexOf(']') + 1), key.slice(key.indexOf(']') + 2)]
    : (key.split(':') as [string, string?]);
  const withPort = (h: string, p: string | undefined) => (p ? `${h}:${p}` : h);
  const variants: fc.Arbitrary<string>[] = [
    wild ? fc.constantFrom(...LABELS).map((l) => withPort(`${l}.${name}`, port)) : fc.constant(key),
    wild
      ? fc.constantFrom(...LABELS).map((l) => withPort(`${l}.${name}`.toUpperCase(), port))
      : fc.constant(key.toUpperCase()),
    fc.constant(withPort(name, port === undefined ? '8080' : undefined)), // other port
    fc.constantFrom(...LABELS).map((l) => withPort(`${l}.q.${name}`, port)), // deeper
    fc.constant(withPort(name, port)), // the apex of a wildcard
  ];
  return fc.oneof({ weight: 6, arbitrary: variants[0] as fc.Arbitrary<string> }, ...variants.slice(1));
}

/** A normalised (mostly) request path near a path pattern. */
const pathNearCache = new Map<string, fc.Arbitrary<string>>();
function pathNear(pattern: string): fc.Arbitrary<string> {
  let arb = pathNearCache.get(pattern);
  if (arb === undefined) pathNearCache.set(pattern, (arb = makePathNear(pattern)));
  return arb;
}

const segArb = fc.oneof(fc.constantFrom(...SEGMENTS, '1', '42'), fc.stringMatching(/^[a-z0-9]{1,3}$/));

function makePathNear(pattern: string): fc.Arbitrary<string> {
  const segs = pattern === '/' || pattern === '/*' ? [] : pattern.slice(1).split('/');
  const tail = segs[segs.length - 1] === '*';
  const fixed = tail ? segs.slice(0, -1) : segs;
  const seg = segArb;
  return fc
    .tuple(
      fc.tuple(
        ...fixed.map((s) => (s === ':id' ? seg : fc.oneof({ weight: 9, arbitrary: fc.constant(s) }, seg))),
      ),
      fc.array(seg, { maxLength: tail ? 3 : 1 }),
      fc.boolean(),
      fc.integer({ min: 0, max: 99 }),
    )
    .map(([own, extra, slash, odd]) => {
      const all = [...own, ...(tail || odd < 10 ? extra : [])];
      const p = `/${all.join('/')}${slash && all.length > 0 ? '/' : ''}`;
      if (odd === 0) return `${p}/../x`; // not normalised: must match nothing on both sides
      if (odd === 1) return `${p}//x`;
      return p;
    });
}

function descendants(children: number[][], r: number): number[] {
  const out = [r];
  const seen = new Set(out);
  for (let i = 0; i < out.length; i++) {
    for (const c of children[out[i] as number] ?? []) {
      if (!seen.has(c)) {
        seen.add(c);
        out.push(c);
      }
    }
  }
  return out;
}

function requestArb(pol: GenPolicy): fc.Arbitrary<PolicyRequest> {
  const under = new Map<number, fc.Arbitrary<string>>();
  /** The role or one inheriting it (its rules apply to all of them). */
  const rolesUnder = (r: number): fc.Arbitrary<string> => {
    let arb = under.get(r);
    if (arb === undefined)
      under.set(r, (arb = fc.constantFrom(...descendants(pol.children, r).slice(0, 50)).map(role)));
    return arb;
  };
  const fromRule = fc.integer({ min: 0, max: pol.rules.length - 1 }).chain((i) => {
    const r = pol.rules[i] as GenRule;
    return fc.record({
      role: rolesUnder(r.role),
      host: hostNear(r.host),
      path: pathNear(r.path === '/*' ? '/*' : r.path),
      method:
        r.method === '*'
          ? fc.constantFrom('GET', 'POST', 'PATCH', 'HEAD', 'CONNECT', 'get')
          : fc.oneof(
              { weight: 5, arbitrary: fc.constant(r.method) },
              fc.constantFrom('GET', 'DELETE', 'CONNECT', 'post'),
            ),
    });
  });
  const random = fc.record({
    role: fc.oneof(fc.integer({ min: 0, max: ROLES - 1 }).map(role), fc.constantFrom('nobody', 'R1', '')),
    host: fc.constantFrom(...pol.hosts).chain(hostNear),
    path: pathPatternArb.chain(pathNear),
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS'),
  });
  return fc.oneof({ weight: 4, arbitrary: fromRule }, { weight: 1, arbitrary: random });
}

type Explained = [boolean, string[]];

/** Casbin's answer in the form compared with Airlock's: verdict and the deciding rule's fields. */
function casbinAnswer(e: Enforcer, r: PolicyRequest): { allowed: boolean; rule: string | null } {
  const [allowed, ex] = e.enforceExSync(r.role, r.host, r.path, r.method) as Explained;
  return { allowed, rule: ex.length === 0 ? null : ex.join(', ') };
}

/** A line no request's role matches: keeps Casbin on its per-line path even for an empty subset. */
const SENTINEL = ['airlock-differential-sentinel', 'sentinel.test', '/', 'GET', 'allow'];

describe('compiled index vs casbin.Enforcer at scale', () => {
  it(`agrees on ${POLICIES * REQUESTS_PER_POLICY} requests over ${POLICIES} generated policies of ${MIN_P_LINES}+ lines`, async () => {
    const stats = { requests: 0, allow: 0, deny: 0, noMatch: 0, viaTrie: 0, fullScan: 0, subset: 0 };
    const pLines: number[] = [];
    const started = performance.now();
    let casbinMs = 0;
    await fc.assert(
      fc.asyncProperty(shapeArb, async (shape) => {
        const tPol = performance.now();
        const pol = buildPolicy(shape);
        expect(pol.pLines).toBeGreaterThanOrEqual(MIN_P_LINES);
        pLines.push(pol.pLines);
        const compiled = compilePolicy(CANONICAL_MODEL, pol.text);
        const tFull = performance.now();
        // `full` is never touched; `oracle` is the same enforcer whose policy array is swapped per request.
        const full = await newCasbinEnforcer(CANONICAL_MODEL, pol.text);
        const oracle = await newCasbinEnforcer(CANONICAL_MODEL, pol.text);
        if (process.env.AIRLOCK_DIFF_DEBUG) {
          console.log(
            `policy ${(tFull - tPol).toFixed(0)} ms; casbin enforcers ${(performance.now() - tFull).toFixed(0)} ms`,
          );
        }
        const pAst = oracle.getModel().model.get('p')?.get('p');
        if (!pAst) throw new Error('casbin model has no p assertion');
        const all = pAst.policy; // file order, as Casbin loaded it
        expect(all.length).toBe(pol.pLines);
        const bySubject = new Map<string, number[]>();
        all.forEach((row, i) => {
          const sub = row[0] as string;
          (bySubject.get(sub) ?? bySubject.set(sub, []).get(sub))?.push(i);
        });
        const closures = new Map<string, string[]>();
        const subsets = new Map<string, { rows: string[][]; exact: number; wild: number }>();
        /** Casbin's own view of the lines that can match: subject in the role's closure, host pattern matching. */
        const subsetFor = async (r: PolicyRequest) => {
          const key = `${r.role}\0${r.host}`;
          let sub = subsets.get(key);
          if (sub) return sub;
          let closure = closures.get(r.role);
          if (!closure)
            closures.set(r.role, (closure = [r.role, ...(await full.getImplicitRolesForUser(r.role))]));
          const idx = closure
            .flatMap((c) => bySubject.get(c) ?? [])
            .filter((i) => hostMatch(r.host, (all[i] as string[])[1] as string));
          idx.sort((x, y) => x - y);
          const rows = [SENTINEL, ...idx.map((i) => all[i] as string[])];
          const wild = idx.filter((i) => ((all[i] as string[])[1] as string).startsWith('*.')).length;
          sub = { rows, exact: idx.length - wild, wild };
          subsets.set(key, sub);
          return sub;
        };

        const tGen = performance.now();
        const reqs = fc.sample(requestArb(pol), {
          numRuns: REQUESTS_PER_POLICY,
          seed: shape.seed ^ 0x5bd1e995,
        });
        if (process.env.AIRLOCK_DIFF_DEBUG)
          console.log(`requests ${(performance.now() - tGen).toFixed(0)} ms`);
        for (let i = 0; i < reqs.length; i++) {
          const r = reqs[i] as PolicyRequest;
          const ours = compiled.decide(r);
          const sub = await subsetFor(r);
          pAst.policy = sub.rows;
          const t0 = performance.now();
          const theirs = casbinAnswer(oracle, r);
          casbinMs += performance.now() - t0;
          pAst.policy = all;
          const oursRule = ours.rule?.replace(/^policy\.csv:\d+: p, /, '') ?? null;
          if (ours.allowed !== theirs.allowed || oursRule !== theirs.rule) {
            expect.fail(
              `difference on ${JSON.stringify(r)}: airlock ${ours.allowed} (${ours.rule}), ` +
                `casbin ${theirs.allowed} (${theirs.rule}); lines considered:\n` +
                sub.rows.map((row) => row.join(', ')).join('\n'),
            );
          }
          // A sample against the full, unreduced policy: checks the reduction itself.
          if (i % Math.floor(REQUESTS_PER_POLICY / FULL_SCAN_SAMPLE) === 0) {
            expect(casbinAnswer(full, r), `full-policy casbin on ${JSON.stringify(r)}`).toEqual(theirs);
            stats.fullScan++;
          }
          stats.requests++;
          stats.subset += sub.rows.length - 1;
          if (ours.reason === 'rule_allow') stats.allow++;
          else if (ours.reason === 'rule_deny') stats.deny++;
          else stats.noMatch++;
          if (sub.exact > TRIE_MIN_RULES || sub.wild > TRIE_MIN_RULES) stats.viaTrie++;
        }
      }),
      { numRuns: POLICIES, endOnFailure: true },
    );
    const pct = (n: number) => `${((100 * n) / stats.requests).toFixed(1)}%`;
    console.log(
      `differential at scale: ${stats.requests} requests over ${POLICIES} policies of ${pLines.join(', ')} p lines ` +
        `(+ g lines): allow ${pct(stats.allow)}, deny by rule ${pct(stats.deny)}, no match ${pct(stats.noMatch)}; ` +
        `~${pct(stats.viaTrie)} decided through path tries; ${(stats.subset / stats.requests).toFixed(1)} candidate ` +
        `lines per casbin call; ${stats.fullScan} requests also checked against full-policy casbin; ` +
        `casbin ${(casbinMs / 1000).toFixed(1)} s of ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    expect(stats.requests).toBe(POLICIES * REQUESTS_PER_POLICY);
    // The generator must exercise every outcome and both index paths substantially.
    for (const n of [stats.allow, stats.deny, stats.noMatch, stats.viaTrie, stats.requests - stats.viaTrie]) {
      expect(n / stats.requests).toBeGreaterThan(0.1);
    }
  }, 600_000);
});
