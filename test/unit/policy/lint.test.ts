/**
 * The linter of `airlock policy check` (src/policy/lint.ts) and the region algebra under it
 * (src/policy/regions.ts): each lint on a minimal policy, suppression comments, the example policy
 * clean, and property tests holding the algebra to the real matchers.
 */
import { readFile } from 'node:fs/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lintPolicy, type LintFinding } from '../../../src/policy/lint.js';
import { compilePolicy } from '../../../src/policy/load.js';
import {
  matchHostPattern,
  matchMethodPattern,
  matchPathPattern,
  parseHostPattern,
  parsePathPattern,
} from '../../../src/policy/matchers.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import { coverage, intersectPaths, type Region } from '../../../src/policy/regions.js';
import { policy } from './helpers.js';

/** Findings other than deny-carve-out (each test below pins one lint; carve-outs have their own). */
function lint(...lines: string[]): LintFinding[] {
  return lintPolicy(policy(...lines)).filter((f) => f.id !== 'deny-carve-out');
}
const ids = (f: LintFinding[]) => f.map((x) => `${x.line}:${x.id}:${x.severity}`);

describe('lintPolicy', () => {
  it('deny-carve-out: a deny inside a broader allow of the same (or an inheriting) role on the same host', () => {
    const f = lintPolicy(
      policy(
        'p, narrow, json.test, /*, GET, allow',
        'p, narrow, json.test, /comments/*, GET, deny',
        'p, base, json.test, /admin/*, *, deny',
        'g, narrow, base',
        // not carve-outs: another host, another method, a deny no allow reaches beyond
        'p, narrow, other.test, /comments/*, GET, deny',
        'p, narrow, json.test, /posts/*, DELETE, deny',
        'p, narrow, api.test, /x, GET, allow',
        'p, narrow, api.test, /x, GET, deny',
      ),
    ).filter((x) => x.id === 'deny-carve-out');
    expect(ids(f)).toEqual(['2:deny-carve-out:warning', '3:deny-carve-out:warning']);
    expect(f[0]?.message).toMatch(
      /carved out of the broader allow policy\.csv:1 \(narrow: json\.test \/\* GET\)/,
    );
    expect(f[0]?.message).toMatch(/case variants/);
    expect(f[0]?.message).toMatch(/query parameters/);
  });

  it('deny-carve-out is not reported for the management pseudo-host airlock.api', () => {
    const f = lintPolicy(
      policy('p, dave, airlock.api, /sessions/*, *, allow', 'p, dave, airlock.api, /sessions/*, EXEC, deny'),
    );
    expect(f.filter((x) => x.id === 'deny-carve-out')).toEqual([]);
  });

  it('the example policy is clean', async () => {
    const text = await readFile(new URL('../../../policies/policy.csv', import.meta.url), 'utf8');
    expect(lintPolicy(compilePolicy(CANONICAL_MODEL, text))).toEqual([]);
  });

  it('unknown-parent: a parent with no rules and no parents (error)', () => {
    const f = lint('p, base, a.test, /*, GET, allow', 'g, r, bsae', 'g, s, base');
    expect(ids(f)).toEqual(['2:unknown-parent:error']);
    expect(f[0]?.message).toMatch(/"bsae" of "r" has no rules/);
  });

  it('a parent that only has parents of its own is known', () => {
    expect(lint('p, base, a.test, /*, GET, allow', 'g, mid, base', 'g, r, mid')).toEqual([]);
  });

  it('shadowed-allow: covered by an inherited deny (warning), naming it', () => {
    const f = lint(
      'p, base, c.test, /v3/auth/*, *, deny',
      'g, r, base',
      'p, r, c.test, /v3/auth/user/add, POST, allow',
    );
    expect(ids(f)).toEqual(['3:shadowed-allow:warning']);
    expect(f[0]?.message).toContain('policy.csv:1 (base: c.test /v3/auth/* *)');
  });

  it('shadowed-allow: covered only by several denies together', () => {
    const f = lint(
      'p, base, a.test, /x/*, GET, deny',
      'p, base, a.test, /x/*, POST, deny',
      'p, base, *.a.test, /x, GET, deny',
      'g, r, base',
      'p, r, a.test, /x/:id, GET, allow',
      // Not covered: PUT is not denied.
      'p, r, a.test, /x/:id, *, allow',
    );
    expect(ids(f)).toEqual(['5:shadowed-allow:warning']);
  });

  it('a partly denied allow is fine', () => {
    expect(lint('p, r, a.test, /x/*, GET, allow', 'p, r, a.test, /x/secret, GET, deny')).toEqual([]);
  });

  it("unreachable-rule: covered by the role's own deny", () => {
    const f = lint('p, r, a.test, /posts/*, DELETE, deny', 'p, r, a.test, /posts/:id, DELETE, allow');
    expect(ids(f)).toEqual(['2:unreachable-rule:warning']);
    expect(f[0]?.message).toMatch(/can never match.*r's own deny rule policy\.csv:1/);
  });

  it('unreachable-rule: CONNECT rules whose path is not "/" or "/*"', () => {
    const f = lint(
      'p, r, git.test, /repo/*, CONNECT, allow',
      'p, r, git2.test, /*, CONNECT, allow',
      'p, r, git3.test, /, CONNECT, allow',
    );
    expect(ids(f)).toEqual(['1:unreachable-rule:warning']);
  });

  it('wildcard "*" methods do not cover CONNECT', () => {
    expect(lint('p, r, a.test, /*, *, deny', 'p, r, a.test, /, CONNECT, allow')).toEqual([]);
  });

  it('dangerous-allow: a state-changing method on a wildcard host (error)', () => {
    for (const m of ['POST', 'PUT', 'PATCH', 'DELETE', 'CONNECT', '*']) {
      const path = m === 'CONNECT' ? '/' : '/x';
      expect(ids(lint(`p, r, *.a.test, ${path}, ${m}, allow`))).toEqual(['1:dangerous-allow:error']);
    }
    expect(lint('p, r, *.a.test, /*, GET, allow')).toEqual([]);
    expect(lint('p, r, *.a.test, /x, POST, deny')).toEqual([]);
  });

  it('dangerous-allow: a "*" path with a state-changing method over admin-looking APIs', () => {
    const f = lint('p, r, a.test, /*, POST, allow');
    expect(ids(f)).toEqual(['1:dangerous-allow:error']);
    expect(f[0]?.message).toContain('/admin/*');
    expect(ids(lint('p, r, k8s.test, /api/v1/namespaces/:ns/*, *, allow'))).toEqual([
      '1:dangerous-allow:error',
    ]);
    expect(lint('p, r, k8s.test, /api/v1/namespaces/:ns/*, *, allow')[0]?.message).toContain(
      '/api/v1/namespaces/:ns/roles/*',
    );
    // Reads, exact paths and paths that stay clear of admin APIs are not dangerous.
    expect(lint('p, r, a.test, /*, GET, allow')).toEqual([]);
    expect(lint('p, r, a.test, /admin/users, POST, allow')).toEqual([]);
    expect(lint('p, r, a.test, /posts/*, POST, allow')).toEqual([]);
  });

  it('dangerous-allow: not when deny rules cover the admin part', () => {
    const guard = ['p, base, c.test:2379, /v3/auth/*, *, deny', 'g, r, base'];
    expect(lint(...guard, 'p, r, c.test:2379, /v3/*, POST, allow')).toEqual([]);
    // The deny is on another host: still dangerous.
    expect(ids(lint(...guard, 'p, r, d.test:2379, /v3/*, POST, allow'))).toEqual(['3:dangerous-allow:error']);
    // Denied only for GET: POST still reaches /v3/auth.
    expect(ids(lint('p, r, c.test, /v3/auth/*, GET, deny', 'p, r, c.test, /v3/*, POST, allow'))).toEqual([
      '2:dangerous-allow:error',
    ]);
  });

  it('a comment line above a rule suppresses named lints only', () => {
    expect(
      lint(
        '# airlock-lint-ignore: dangerous-allow -- reviewed',
        '# another comment',
        'p, r, *.a.test, /x, POST, allow',
      ),
    ).toEqual([]);
    expect(ids(lint('# airlock-lint-ignore: shadowed-allow', 'p, r, *.a.test, /x, POST, allow'))).toEqual([
      '2:dangerous-allow:error',
    ]);
    // A blank line ends the comment block.
    expect(
      ids(lint('# airlock-lint-ignore: dangerous-allow', '', 'p, r, *.a.test, /x, POST, allow')),
    ).toEqual(['3:dangerous-allow:error']);
  });

  it('findings are sorted by line', () => {
    const f = lint(
      'p, r, *.a.test, /x, POST, allow',
      'g, r, nobody',
      'p, r, a.test, /x, GET, deny',
      'p, r, a.test, /x, GET, allow',
    );
    expect(f.map((x) => x.line)).toEqual([1, 2, 4]);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Region algebra against the real matchers

const HOSTS = ['a.test', 'x.a.test', 'y.a.test', '*.a.test', 'a.test:8080', '*.a.test:8080', 'b.test'];
const SEGS = ['api', 'v1', 'x'];
const METHODS = ['GET', 'POST', 'DELETE', 'CONNECT', '*'];

const pathPatternArb = fc
  .tuple(fc.array(fc.oneof(fc.constantFrom(...SEGS), fc.constant(':id')), { maxLength: 3 }), fc.boolean())
  .map(([segs, tail]) => {
    const base = `/${segs.join('/')}`;
    return tail ? (base === '/' ? '/*' : `${base}/*`) : base;
  });

const regionArb = fc
  .tuple(fc.constantFrom(...HOSTS), pathPatternArb, fc.constantFrom(...METHODS))
  .map(([h, p, m]): Region => ({ host: parseHostPattern(h), path: parsePathPattern(p), method: m }));

const segArb = fc.oneof(fc.constantFrom(...SEGS, 'zz'), fc.stringMatching(/^[a-z]{1,4}$/));
const anyPathArb = fc
  .tuple(fc.array(segArb, { maxLength: 5 }), fc.boolean())
  .map(([s, slash]) => `/${s.join('/')}${slash && s.length > 0 ? '/' : ''}`);

function inRegion(r: Region, host: string, path: string, method: string): boolean {
  return (
    matchHostPattern(r.host, host) && matchPathPattern(r.path, path) && matchMethodPattern(r.method, method)
  );
}

/** A request inside `r`, built from random parts. */
function requestIn(r: Region): fc.Arbitrary<{ host: string; path: string; method: string }> {
  const host =
    r.host.kind === 'exact'
      ? fc.constant(r.host.key)
      : fc
          .oneof(fc.constantFrom('x', 'y', 'www'), fc.stringMatching(/^[a-z]{1,5}$/))
          .map((l) => `${l}.${r.host.key}`);
  const path = fc
    .tuple(
      fc.tuple(...r.path.segments.map((s) => (s === null ? segArb : fc.constant(s)))),
      r.path.tail ? fc.array(segArb, { maxLength: 3 }) : fc.constant([] as string[]),
      fc.boolean(),
    )
    .map(([own, extra, slash]) => {
      const segs = [...own, ...extra];
      return `/${segs.join('/')}${slash && segs.length > 0 ? '/' : ''}`;
    });
  const method =
    r.method === '*'
      ? fc
          .oneof(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD'), fc.stringMatching(/^[A-Z]{3,7}$/))
          .filter((m) => m !== 'CONNECT')
      : fc.constant(r.method);
  return fc.record({ host, path, method });
}

describe('regions', () => {
  it('intersectPaths matches exactly the paths both patterns match', () => {
    fc.assert(
      fc.property(
        pathPatternArb,
        pathPatternArb,
        fc.array(anyPathArb, { minLength: 20, maxLength: 20 }),
        (a, b, paths) => {
          const pa = parsePathPattern(a);
          const pb = parsePathPattern(b);
          const i = intersectPaths(pa, pb);
          for (const p of paths) {
            const both = matchPathPattern(pa, p) && matchPathPattern(pb, p);
            expect(i === null ? false : matchPathPattern(i, p)).toBe(both);
          }
          if (i === null) {
            // Nothing in a is in b: check on requests drawn from a.
            fc.assert(
              fc.property(requestIn({ host: parseHostPattern('a.test'), path: pa, method: 'GET' }), (r) => {
                expect(matchPathPattern(pb, r.path)).toBe(false);
              }),
              { numRuns: 20 },
            );
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it('coverage: a witness when not covered, and no uncovered request when covered', () => {
    fc.assert(
      fc.property(regionArb, fc.array(regionArb, { maxLength: 6 }), fc.integer(), (region, covers, seed) => {
        const c = coverage(region, covers);
        expect(c.covered).not.toBeNull();
        if (c.covered === false) {
          const w = c.witness;
          expect(w).toBeDefined();
          if (!w) return;
          expect(inRegion(region, w.host, w.path, w.method)).toBe(true);
          expect(covers.some((d) => inRegion(d, w.host, w.path, w.method))).toBe(false);
        } else {
          for (const r of fc.sample(requestIn(region), { numRuns: 60, seed })) {
            expect(
              covers.some((d) => inRegion(d, r.host, r.path, r.method)),
              JSON.stringify(r),
            ).toBe(true);
          }
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('coverage gives up (null) rather than enumerating too many classes', () => {
    const region: Region = { host: parseHostPattern('a.test'), path: parsePathPattern('/*'), method: 'GET' };
    const covers: Region[] = [];
    for (let i = 0; i < 40; i++) {
      covers.push({
        host: parseHostPattern('a.test'),
        path: parsePathPattern(`/s${i}/:a/t${i}/:b/u${i}`),
        method: 'GET',
      });
    }
    expect(coverage(region, covers, 1000).covered).toBeNull();
  });
});
