/**
 * Differential test: the compiled index must answer exactly as Casbin 5.51.1's enforcer does on the
 * same model.conf and policy.csv (with Airlock's matchers registered) — the same allow/deny, and the
 * same deciding rule as enforceEx's explanation. (differential-scale.test.ts does the same with
 * 100,000 requests over policies of 10,000+ lines.)
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { newCasbinEnforcer } from '../../../src/policy/casbin.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import type { PolicyRequest } from '../../../src/policy/types.js';
import { foldPathCase } from '../../../src/request/normalize.js';

const ROLES = ['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7'];
const HOST_PATTERNS = [
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
];
const REQUEST_HOSTS = [
  'a.test',
  'A.TEST',
  'a.test:8080',
  'a.test:9000',
  'x.a.test',
  'x.a.test:8080',
  'y.a.test',
  'x.y.a.test',
  'z.y.a.test',
  'b.test',
  'b.test:8080',
  'c.test',
  '127.0.0.1:9000',
  '127.0.0.1',
  '[::1]:9000',
  'xa.test',
];
// MCP-shaped segments (issue 10): virtual paths such as /mcp/tools/call/search_issues and encoded
// resource URIs (src/policy/mcp.ts mcpSegment) decided as the named-only method MCP.
const SEGMENTS = ['api', 'v1', 'items', 'x', 'mcp', 'tools', 'call', 'search_issues', 'repo%3A!!a!b'];
const METHOD_PATTERNS = ['GET', 'POST', 'DELETE', 'CONNECT', 'WEBSOCKET', 'MCP', '*'];
const REQUEST_METHODS = [
  'GET',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'WEBSOCKET',
  'websocket',
  'get',
  'MCP',
  'mcp',
];

const pathPattern = fc
  .tuple(fc.array(fc.oneof(fc.constantFrom(...SEGMENTS), fc.constant(':id')), { maxLength: 3 }), fc.boolean())
  .map(([segs, tail]) => {
    const base = `/${segs.join('/')}`;
    return tail ? (base === '/' ? '/*' : `${base}/*`) : base;
  });

const pRule = fc
  .tuple(
    fc.constantFrom(...ROLES),
    fc.constantFrom(...HOST_PATTERNS),
    pathPattern,
    fc.constantFrom(...METHOD_PATTERNS),
    fc.constantFrom('allow', 'allow', 'allow', 'deny'),
  )
  .map((f) => `p, ${f.join(', ')}`);

/** Inheritance edges only from a lower to a higher role index: acyclic, depth < 8. */
const gRule = fc
  .tuple(fc.integer({ min: 0, max: ROLES.length - 2 }), fc.integer({ min: 1, max: ROLES.length - 1 }))
  .filter(([a, b]) => a < b)
  .map(([a, b]) => `g, ${ROLES[a]}, ${ROLES[b]}`);

const filler = fc.constantFrom('', '# a comment', '   # indented comment');

function policyText(lines: string[]): string {
  return [...new Set(lines)].join('\n') + '\n';
}

const policyArb = (min: number, max: number) =>
  fc
    .array(
      fc.oneof(
        { weight: 10, arbitrary: pRule },
        { weight: 2, arbitrary: gRule },
        { weight: 1, arbitrary: filler },
      ),
      {
        minLength: min,
        maxLength: max,
      },
    )
    .map(policyText);

const requestPath = fc.oneof(
  {
    weight: 12,
    arbitrary: fc
      .tuple(fc.array(fc.constantFrom(...SEGMENTS, '1', 'zz'), { maxLength: 4 }), fc.boolean())
      .map(([segs, slash]) => `/${segs.join('/')}${slash && segs.length > 0 ? '/' : ''}`),
  },
  // Not normalised: must match no rule on either side.
  { weight: 1, arbitrary: fc.constantFrom('/api/../x', '/api//v1', '/./api', 'api', '/api/%2e%2e/x', '') },
);

const requestArb: fc.Arbitrary<PolicyRequest> = fc.record({
  role: fc.constantFrom(...ROLES, 'nobody'),
  host: fc.constantFrom(...REQUEST_HOSTS),
  path: requestPath,
  method: fc.constantFrom(...REQUEST_METHODS),
});

/** Requests drawn from a seed, so a counterexample prints as (policy, seed) rather than a long list. */
function requests(seed: number, n: number): PolicyRequest[] {
  return fc.sample(requestArb, { numRuns: n, seed });
}

async function compare(text: string, requests: readonly PolicyRequest[]): Promise<void> {
  const compiled = compilePolicy(CANONICAL_MODEL, text);
  const enforcer = await newCasbinEnforcer(CANONICAL_MODEL, text);
  for (const r of requests) {
    const ours = compiled.decide(r);
    const [allowed, explain] = enforcer.enforceExSync(r.role, r.host, r.path, r.method) as [
      boolean,
      string[],
    ];
    const ctx = `${JSON.stringify(r)}\n${text}`;
    expect(ours.allowed, ctx).toBe(allowed);
    if (explain.length === 0) {
      expect(ours.rule, ctx).toBeNull();
      expect(ours.reason, ctx).toBe('no_match');
    } else {
      expect(ours.rule?.replace(/^policy\.csv:\d+: p, /, ''), ctx).toBe(explain.join(', '));
      expect(ours.reason, ctx).toBe(allowed ? 'rule_allow' : 'rule_deny');
    }
  }
}

describe('compiled index vs casbin.Enforcer', () => {
  it('agrees on large generated policies (a few hundred lines, thousands of requests)', async () => {
    await fc.assert(
      fc.asyncProperty(policyArb(200, 320), fc.integer(), (text, seed) => compare(text, requests(seed, 700))),
      { numRuns: 5, endOnFailure: true },
    );
  }, 120_000);

  it('agrees when few hosts carry many rules each (path tries: buckets of more than 64 rules)', async () => {
    const crowded = fc
      .array(
        fc.oneof(
          {
            weight: 10,
            arbitrary: pRule.map((line) =>
              line.replace(/^p, (r\d), [^,]+,/, (_, r: string) => `p, ${r}, a.test,`),
            ),
          },
          {
            weight: 4,
            arbitrary: pRule.map((line) =>
              line.replace(/^p, (r\d), [^,]+,/, (_, r: string) => `p, ${r}, *.a.test,`),
            ),
          },
          { weight: 2, arbitrary: gRule },
        ),
        { minLength: 300, maxLength: 400 },
      )
      .map(policyText);
    await fc.assert(
      fc.asyncProperty(crowded, fc.integer(), (text, seed) => compare(text, requests(seed, 700))),
      { numRuns: 5, endOnFailure: true },
    );
  }, 120_000);

  it('agrees on many small policies', async () => {
    await fc.assert(
      fc.asyncProperty(policyArb(1, 25), fc.integer(), (text, seed) => compare(text, requests(seed, 60))),
      { numRuns: 200 },
    );
  }, 120_000);

  it('agrees on the example policy for every role, host and method it names', async () => {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(new URL('../../../policies/policy.csv', import.meta.url), 'utf8');
    const reqs: PolicyRequest[] = [];
    for (const role of ['base', 'analyst', 'responder', 'nobody']) {
      for (const host of ['forum.test:3000', 'forum.test', 'config.test:2379', 'config.test']) {
        for (const path of [
          '/',
          '/posts',
          '/posts/1',
          '/posts/1/comments',
          '/comments',
          '/v3/kv/range',
          '/v3/kv/put',
          '/v3/auth/enable',
          '/v3beta/kv/put',
        ]) {
          for (const method of ['GET', 'POST', 'PUT', 'DELETE']) reqs.push({ role, host, path, method });
        }
      }
    }
    await compare(text, reqs);
  });
});

/**
 * Deny rules match every case variant of their path (docs/policy.md "Path case"); casbin has no such
 * notion, so equivalence is defined with two enforcers: Airlock allows exactly when casbin on the
 * policy allows AND casbin on the folded deny rules (paths lowercased, turned into allow rules, same
 * role links) does not allow the request with its path lowercased.
 */
describe('deny rules and case variants vs two casbin enforcers', () => {
  const MIXED = ['api', 'Api', 'API', 'v1', 'items', 'Items', 'x'];
  const mixedPattern = fc
    .tuple(fc.array(fc.oneof(fc.constantFrom(...MIXED), fc.constant(':id')), { maxLength: 3 }), fc.boolean())
    .map(([segs, tail]) => {
      const base = `/${segs.join('/')}`;
      return tail ? (base === '/' ? '/*' : `${base}/*`) : base;
    });
  const mixedRule = fc
    .tuple(
      fc.constantFrom(...ROLES.slice(0, 4)),
      fc.constantFrom('a.test', '*.a.test'),
      mixedPattern,
      fc.constantFrom('GET', 'POST', '*'),
      fc.constantFrom('allow', 'allow', 'deny'),
    )
    .map((f) => `p, ${f.join(', ')}`);
  const mixedPolicy = fc
    .array(fc.oneof({ weight: 8, arbitrary: mixedRule }, { weight: 2, arbitrary: gRule }), {
      minLength: 1,
      maxLength: 40,
    })
    .map(policyText);
  const mixedRequest: fc.Arbitrary<PolicyRequest> = fc.record({
    role: fc.constantFrom(...ROLES.slice(0, 4)),
    host: fc.constantFrom('a.test', 'x.a.test'),
    path: fc
      .array(fc.constantFrom(...MIXED, 'ITEMS', 'iTeMs', '1'), { minLength: 0, maxLength: 4 })
      .map((segs) => `/${segs.join('/')}`),
    method: fc.constantFrom('GET', 'POST'),
  });

  function foldedDenies(text: string): string {
    const lines = new Set<string>();
    for (const line of text.split('\n')) {
      const f = line.split(',').map((x) => x.trim());
      if (f[0] === 'g') lines.add(line);
      if (f[0] === 'p' && f[5] === 'deny')
        lines.add(`p, ${f[1]}, ${f[2]}, ${foldPathCase(f[3]!)}, ${f[4]}, allow`);
    }
    return [...lines].join('\n') + '\n';
  }

  it('agrees on generated policies with mixed-case paths', async () => {
    await fc.assert(
      fc.asyncProperty(
        mixedPolicy,
        fc.array(mixedRequest, { minLength: 50, maxLength: 50 }),
        async (text, reqs) => {
          const compiled = compilePolicy(CANONICAL_MODEL, text);
          const exact = await newCasbinEnforcer(CANONICAL_MODEL, text);
          const folded = await newCasbinEnforcer(CANONICAL_MODEL, foldedDenies(text));
          for (const r of reqs) {
            const expected =
              exact.enforceSync(r.role, r.host, r.path, r.method) &&
              !folded.enforceSync(r.role, r.host, foldPathCase(r.path), r.method);
            const ours = compiled.decide(r);
            expect(ours.allowed, `${JSON.stringify(r)}\n${text}`).toBe(expected);
            if (!ours.allowed && ours.rule !== null) expect(ours.reason).toBe('rule_deny');
          }
        },
      ),
      { numRuns: 150 },
    );
  }, 120_000);

  it('a deny carve-out holds for case variants; allows stay exact', () => {
    const p = compilePolicy(
      CANONICAL_MODEL,
      ['p, narrow, json.test, /*, GET, allow', 'p, narrow, json.test, /comments/*, GET, deny', ''].join('\n'),
    );
    const d = (path: string) => p.decide({ role: 'narrow', host: 'json.test', path, method: 'GET' });
    expect(d('/comments/1')).toMatchObject({ allowed: false, reason: 'rule_deny' });
    expect(d('/COMMENTS/1')).toMatchObject({ allowed: false, reason: 'rule_deny' });
    expect(d('/Comments/1').rule).toContain('/comments/*');
    expect(d('/posts/1').allowed).toBe(true);
    const exactAllow = compilePolicy(CANONICAL_MODEL, 'p, r, json.test, /posts/*, GET, allow\n');
    expect(exactAllow.decide({ role: 'r', host: 'json.test', path: '/POSTS/1', method: 'GET' }).allowed).toBe(
      false,
    );
  });
});
