/**
 * `ask` rules (docs/approvals.md): precedence deny > ask > allow, case-folded like deny rules, in the
 * compiled index, `decideEgress` (delegation and grants) and `policy explain`.
 *
 * Equivalence with Casbin, which has no `ask`: with E = casbin(the file without its ask lines) and
 * A = casbin(the ask lines rewritten as allow lines, plus the g lines), the compiled answer must be:
 * E denied by a rule → that deny; else A allowed → `rule_ask` naming A's rule; else E's answer. The
 * generated paths here are lowercase, so the case folding of deny and ask rules is the identity and
 * the composition is exactly that (test/unit/policy/differential.test.ts covers folding).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { newCasbinEnforcer } from '../../../src/policy/casbin.js';
import { decideEgress, lintDelegation } from '../../../src/policy/delegation.js';
import { grantMatcher } from '../../../src/policy/grants.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import type { PolicyRequest } from '../../../src/policy/types.js';

const ROLES = ['r0', 'r1', 'r2', 'r3'];
const HOSTS = ['a.test', '*.a.test', 'b.test', 'x.a.test'];
const SEGMENTS = ['api', 'v1', 'items', 'comments'];
const METHODS = ['GET', 'POST', 'DELETE', '*'];

const pathPattern = fc
  .tuple(fc.array(fc.oneof(fc.constantFrom(...SEGMENTS), fc.constant(':id')), { maxLength: 3 }), fc.boolean())
  .map(([segs, tail]) => {
    const base = `/${segs.join('/')}`;
    return tail ? (base === '/' ? '/*' : `${base}/*`) : base;
  });

const pRule = fc
  .tuple(
    fc.constantFrom(...ROLES),
    fc.constantFrom(...HOSTS),
    pathPattern,
    fc.constantFrom(...METHODS),
    fc.constantFrom('allow', 'allow', 'deny', 'ask', 'ask'),
  )
  .map((f) => `p, ${f.join(', ')}`);
const gRule = fc
  .tuple(fc.integer({ min: 0, max: ROLES.length - 2 }), fc.integer({ min: 1, max: ROLES.length - 1 }))
  .filter(([a, b]) => a < b)
  .map(([a, b]) => `g, ${ROLES[a]}, ${ROLES[b]}`);
const policyArb = fc
  .array(fc.oneof({ weight: 6, arbitrary: pRule }, { weight: 1, arbitrary: gRule }), {
    minLength: 1,
    maxLength: 40,
  })
  .map((lines) => [...new Set(lines)].join('\n') + '\n');
const requestArb: fc.Arbitrary<PolicyRequest> = fc.record({
  role: fc.constantFrom(...ROLES, 'nobody'),
  host: fc.constantFrom('a.test', 'x.a.test', 'b.test', 'c.test'),
  path: fc.array(fc.constantFrom(...SEGMENTS, '1'), { maxLength: 4 }).map((segs) => `/${segs.join('/')}`),
  method: fc.constantFrom('GET', 'POST', 'DELETE', 'PUT'),
});

async function compare(text: string, reqs: readonly PolicyRequest[]): Promise<void> {
  const lines = text.split('\n');
  const withoutAsk = lines.filter((l) => !l.endsWith(', ask')).join('\n');
  const asksAsAllow = lines
    .filter((l) => l.endsWith(', ask') || l.startsWith('g,'))
    .map((l) => l.replace(/, ask$/, ', allow'))
    .join('\n');
  const compiled = compilePolicy(CANONICAL_MODEL, text);
  const e = await newCasbinEnforcer(CANONICAL_MODEL, withoutAsk);
  const a = await newCasbinEnforcer(CANONICAL_MODEL, asksAsAllow);
  for (const r of reqs) {
    const ours = compiled.decide(r);
    const [eAllowed, eExplain] = e.enforceExSync(r.role, r.host, r.path, r.method) as [boolean, string[]];
    const [aAllowed, aExplain] = a.enforceExSync(r.role, r.host, r.path, r.method) as [boolean, string[]];
    const ctx = `${JSON.stringify(r)}\n${text}`;
    const rule = ours.rule?.replace(/^policy\.csv:\d+: p, /, '') ?? null;
    if (!eAllowed && eExplain.length > 0) {
      expect(ours.reason, ctx).toBe('rule_deny');
      expect(rule, ctx).toBe(eExplain.join(', '));
    } else if (aAllowed) {
      expect(ours.reason, ctx).toBe('rule_ask');
      expect(ours.allowed, ctx).toBe(false);
      expect(rule, ctx).toBe(aExplain.join(', ').replace(/, allow$/, ', ask'));
    } else if (eAllowed) {
      expect(ours.reason, ctx).toBe('rule_allow');
      expect(rule, ctx).toBe(eExplain.join(', '));
    } else {
      expect(ours.reason, ctx).toBe('no_match');
    }
  }
}

describe('ask rules', () => {
  it('compiled index = the composition of two casbin enforcers (deny > ask > allow)', async () => {
    await fc.assert(
      fc.asyncProperty(policyArb, fc.integer(), (text, seed) =>
        compare(text, fc.sample(requestArb, { numRuns: 80, seed })),
      ),
      { numRuns: 150 },
    );
  }, 120_000);

  const POLICY = [
    'p, analyst, forum.test, /*, GET, allow',
    'p, analyst, forum.test, /comments, POST, ask',
    'p, analyst, forum.test, /comments, DELETE, deny',
    'p, analyst, forum.test, /comments, DELETE, ask',
    'p, lead, forum.test, /*, *, allow',
    'p, lead, forum.test, /admin/*, POST, ask',
    'p, lead, forum.test, /admin/*, *, deny',
  ].join('\n');
  const policy = compilePolicy(CANONICAL_MODEL, POLICY);
  const req = (role: string, method: string, path: string): PolicyRequest => ({
    role,
    host: 'forum.test',
    path,
    method,
  });

  it('an ask rule is not an allow: allowed is false, reason rule_ask, naming the rule', () => {
    const d = policy.decide(req('analyst', 'POST', '/comments'));
    expect(d).toEqual({
      allowed: false,
      reason: 'rule_ask',
      rule: 'policy.csv:2: p, analyst, forum.test, /comments, POST, ask',
    });
  });

  it('deny beats ask, ask beats allow, whatever the order in the file', () => {
    expect(policy.decide(req('analyst', 'DELETE', '/comments')).reason).toBe('rule_deny');
    expect(policy.decide(req('lead', 'POST', '/admin/x')).reason).toBe('rule_deny');
    expect(policy.decide(req('analyst', 'GET', '/comments')).reason).toBe('rule_allow');
  });

  it('an ask rule matches every case variant of its path (no bypass by case on case-insensitive upstreams)', () => {
    for (const p of ['/COMMENTS', '/Comments', '/comMents'])
      expect(policy.decide(req('analyst', 'POST', p)).reason, p).toBe('rule_ask');
  });

  it('a host an ask rule names may be reached (CONNECT pre-check for interception)', () => {
    const only = compilePolicy(CANONICAL_MODEL, 'p, bot, api.test, /x, POST, ask\n');
    expect(only.mayReachHost('bot', 'api.test')).toBe(true);
    expect(only.mayReachHost('bot', 'other.test')).toBe(false);
  });

  it('explain lists the matching ask rule', () => {
    const ex = policy.explain(req('analyst', 'POST', '/COMMENTS'));
    expect(ex.decision.reason).toBe('rule_ask');
    expect(ex.matched.map((r) => r.effect)).toEqual(['ask']);
  });

  it('delegation: a creator that denies wins over the role asking; a creator that asks makes an allowed call ask', () => {
    const p = compilePolicy(
      CANONICAL_MODEL,
      [
        'p, bot, forum.test, /*, *, allow',
        'p, bot, forum.test, /comments, POST, ask',
        'p, alice, forum.test, /*, GET, allow',
        'p, carol, forum.test, /*, *, allow',
        'p, carol, forum.test, /posts, POST, ask',
        'p, oncall, airlock.api, /sessions/bot, CREATE, allow',
      ].join('\n'),
    );
    const v1 = decideEgress(p, req('bot', 'POST', '/comments'), 'alice');
    expect(v1.by).toBe('creator');
    expect(v1.decision.reason).toBe('no_match');
    expect(decideEgress(p, req('bot', 'POST', '/comments'), 'carol').decision.reason).toBe('rule_ask');
    const v3 = decideEgress(p, req('bot', 'POST', '/posts'), 'carol');
    expect(v3.by).toBe('creator');
    expect(v3.decision.reason).toBe('rule_ask');
  });

  it('a grant stands in only where the role has no match: deny and ask rules still win, expiry ends it', () => {
    const now = Date.now();
    const grants = [
      { id: 'gr-1', host: 'forum.test', path: '/*', method: '*', expiresAt: now + 60_000 },
      { id: 'gr-2', host: 'forum.test', path: '/old', method: 'PUT', expiresAt: now - 1 },
    ];
    const g = grantMatcher(grants, now);
    expect(decideEgress(policy, req('analyst', 'PUT', '/posts/1'), undefined, g).decision).toMatchObject({
      allowed: true,
      rule: 'grant gr-1: forum.test, /*, *',
    });
    expect(decideEgress(policy, req('analyst', 'POST', '/comments'), undefined, g).decision.reason).toBe(
      'rule_ask',
    );
    expect(decideEgress(policy, req('analyst', 'DELETE', '/comments'), undefined, g).decision.reason).toBe(
      'rule_deny',
    );
    const expired = grantMatcher([grants[1]!], now);
    expect(decideEgress(policy, req('nobody', 'PUT', '/old'), undefined, expired).decision.reason).toBe(
      'no_match',
    );
  });

  it('policy check refuses an ask rule on airlock.api (API operations are allowed or denied)', () => {
    const p = compilePolicy(
      CANONICAL_MODEL,
      'p, lead, airlock.api, /approvals/bot, APPROVE, ask\np, bot, a.test, /*, GET, allow\n',
    );
    const f = lintDelegation(p);
    expect(f).toEqual([
      expect.objectContaining({
        severity: 'error',
        line: 1,
        message: expect.stringMatching(/ask rule on "airlock.api"/),
      }),
    ]);
  });

  it('policy check accepts APPROVE and APPROVE_OWN on /approvals/ROLE and refuses them on /sessions/ROLE', () => {
    const p = compilePolicy(
      CANONICAL_MODEL,
      [
        'p, lead, airlock.api, /approvals/bot, APPROVE, allow',
        'p, lead, airlock.api, /approvals/*, APPROVE_OWN, allow',
        'p, lead, airlock.api, /sessions/bot, GRANT, allow',
        'p, lead, airlock.api, /sessions/bot, APPROVE, allow',
        'p, bot, a.test, /*, GET, allow',
      ].join('\n'),
    );
    const f = lintDelegation(p);
    expect(f.map((x) => [x.severity, x.line])).toEqual([['error', 4]]);
  });
});
