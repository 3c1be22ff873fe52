/**
 * Delegation on the policy side (src/policy/delegation.ts): management rules on `airlock.api`, which
 * subjects have egress rules, the effective egress decision (role AND creator), and the lint of
 * management rules.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { policyCheck } from '../../../src/cli/policy.js';
import {
  API_HOST,
  apiRequest,
  authorizeApi,
  decideEgress,
  delegationOf,
  lintDelegation,
  sessionMayReachHost,
} from '../../../src/policy/delegation.js';
import { lintPolicy } from '../../../src/policy/lint.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import { runPolicyTestFiles } from '../../../src/policy/policy-tests.js';
import type { PolicySnapshot } from '../../../src/policy/types.js';
import { policy, req } from './helpers.js';

const FORUM = 'http://forum.test:3000';

/** Roles as in the example policy, plus callers. */
const ROLES = [
  'p, base, forum.test:3000, /admin/*, *, deny',
  'g, analyst, base',
  'p, analyst, forum.test:3000, /*, GET, allow',
  'g, responder, analyst',
  'p, responder, forum.test:3000, /comments, POST, allow',
];

const DELEGATION = [
  ...ROLES,
  // oncall may start and run responder and analyst sessions; alice and bob are on call.
  'p, oncall, airlock.api, /sessions/responder, *, allow',
  'p, oncall, airlock.api, /sessions/analyst, *, allow',
  'g, alice, oncall',
  'g, bob, oncall',
  // bob's own egress is an analyst's: his sessions never post, whatever their role.
  'g, bob, analyst',
  // carol reads and starts analyst sessions only, and may read (not delete) every session.
  'p, carol, airlock.api, /sessions/analyst, CREATE, allow',
  'p, carol, airlock.api, /sessions/:role, READ, allow',
  // dave may do everything except exec, and posts nothing to /comments even where his sessions could.
  'p, dave, airlock.api, /sessions/*, *, allow',
  'p, dave, airlock.api, /sessions/*, EXEC, deny',
  'p, dave, forum.test:3000, /comments, POST, deny',
];

describe('delegationOf', () => {
  it('is off without airlock.api rules, on with one, and memoised per snapshot', () => {
    const off = policy(...ROLES);
    expect(delegationOf(off).enabled).toBe(false);
    const on = policy(...DELEGATION);
    expect(delegationOf(on).enabled).toBe(true);
    expect(delegationOf(on)).toBe(delegationOf(on));
    // A single deny rule is enough to switch it on (and then everything else is denied).
    expect(delegationOf(policy(...ROLES, 'p, x, airlock.api, /sessions/*, DELETE, deny')).enabled).toBe(true);
  });

  it('knows which subjects have egress rules: own or inherited, allow or deny; not API-only ones', () => {
    const d = delegationOf(policy(...DELEGATION));
    expect(d.hasEgressRules('bob')).toBe(true); // via g, bob, analyst
    expect(d.hasEgressRules('dave')).toBe(true); // a deny rule of his own
    expect(d.hasEgressRules('responder')).toBe(true);
    expect(d.hasEgressRules('base')).toBe(true);
    expect(d.hasEgressRules('alice')).toBe(false); // oncall has only airlock.api rules
    expect(d.hasEgressRules('oncall')).toBe(false);
    expect(d.hasEgressRules('carol')).toBe(false);
    expect(d.hasEgressRules('nobody')).toBe(false);
  });

  it('is off for snapshots that are not compiled policies (test doubles)', () => {
    const fake: PolicySnapshot = {
      version: 'v',
      loadedAt: new Date(),
      rules: 1,
      roles: new Set(['a']),
      decide: () => ({ allowed: false, reason: 'no_match', rule: null }),
      mayReachHost: () => false,
    };
    expect(delegationOf(fake).enabled).toBe(false);
    expect(delegationOf(fake).hasEgressRules('a')).toBe(false);
  });
});

describe('authorizeApi (who may do what through the API)', () => {
  const p = policy(...DELEGATION);
  const may = (caller: string, op: 'CREATE' | 'READ' | 'EXEC' | 'DELETE', role: string): boolean =>
    authorizeApi(p, caller, op, role).allowed;

  it('allows everything, unenforced, while delegation is off', () => {
    const a = authorizeApi(policy(...ROLES), 'anyone', 'DELETE', 'responder');
    expect(a).toEqual({ allowed: true, enforced: false, decision: null });
  });

  it('grants through groups (g, alice, oncall) and * methods', () => {
    for (const op of ['CREATE', 'READ', 'EXEC', 'DELETE'] as const) {
      expect(may('alice', op, 'responder')).toBe(true);
      expect(may('alice', op, 'analyst')).toBe(true);
    }
    expect(may('alice', 'CREATE', 'base')).toBe(false);
  });

  it('keeps operations apart, matches :param and * paths, and lets deny override', () => {
    expect(may('carol', 'CREATE', 'analyst')).toBe(true);
    expect(may('carol', 'CREATE', 'responder')).toBe(false);
    expect(may('carol', 'READ', 'responder')).toBe(true); // /sessions/:role
    expect(may('carol', 'EXEC', 'analyst')).toBe(false);
    expect(may('carol', 'DELETE', 'analyst')).toBe(false);
    expect(may('dave', 'DELETE', 'responder')).toBe(true); // /sessions/*
    const exec = authorizeApi(p, 'dave', 'EXEC', 'responder');
    expect(exec).toMatchObject({ allowed: false, enforced: true });
    expect(exec.decision).toMatchObject({ reason: 'rule_deny' });
    expect(exec.decision?.rule).toMatch(/p, dave, airlock\.api, \/sessions\/\*, EXEC, deny$/);
  });

  it('denies callers the policy does not name (fail closed once delegation is on)', () => {
    const a = authorizeApi(p, 'mallory', 'READ', 'analyst');
    expect(a).toEqual({
      allowed: false,
      enforced: true,
      decision: { allowed: false, reason: 'no_match', rule: null },
    });
  });

  it('is the request (caller, airlock.api, /sessions/ROLE, OP), so explain and policy tests can use it', () => {
    expect(apiRequest('carol', 'READ', 'a.b:c-d')).toEqual({
      role: 'carol',
      host: API_HOST,
      path: '/sessions/a.b:c-d',
      method: 'READ',
    });
    const report = runPolicyTestFiles(p, [
      {
        file: 'tests/delegation.yaml',
        text: [
          'cases:',
          '  - { role: carol, method: CREATE, url: "http://airlock.api/sessions/analyst", expect: allow }',
          '  - { role: carol, method: CREATE, url: "http://airlock.api/sessions/responder", expect: deny }',
          '  - { role: alice, method: EXEC, url: "http://airlock.api/sessions/responder", expect: allow }',
          '',
        ].join('\n'),
      },
    ]);
    expect(report.failures).toEqual([]);
    expect(report.cases).toBe(3);
  });
});

describe('decideEgress (a session never exceeds its creator)', () => {
  const p = policy(...DELEGATION);
  const post = req('responder', 'POST', `${FORUM}/comments`);
  const get = req('responder', 'GET', `${FORUM}/posts/1`);

  it('is the role decision when there is no creator, or the creator has no egress rules', () => {
    for (const creator of [undefined, '', 'alice', 'carol', 'nobody']) {
      const v = decideEgress(p, post, creator);
      expect(v.by).toBe('role');
      expect(v.decision).toBe(p.decide(post));
      expect(v.decision.allowed).toBe(true);
    }
  });

  it("denies what the role allows but the creator's rules do not (no_match, by creator)", () => {
    const v = decideEgress(p, post, 'bob');
    expect(v).toEqual({ by: 'creator', decision: { allowed: false, reason: 'no_match', rule: null } });
    // What both allow stays allowed and names the role's rule.
    const g = decideEgress(p, get, 'bob');
    expect(g.by).toBe('role');
    expect(g.decision).toMatchObject({ allowed: true, reason: 'rule_allow' });
    expect(g.decision.rule).toMatch(/p, analyst, forum\.test:3000, \/\*, GET, allow$/);
  });

  it("names the creator's deny rule", () => {
    const v = decideEgress(p, post, 'dave');
    expect(v.by).toBe('creator');
    expect(v.decision).toMatchObject({ allowed: false, reason: 'rule_deny' });
    expect(v.decision.rule).toMatch(/p, dave, forum\.test:3000, \/comments, POST, deny$/);
  });

  it("a role's deny stays the role's, whatever the creator may do", () => {
    const r = req('analyst', 'POST', `${FORUM}/comments`);
    expect(decideEgress(p, r, 'alice')).toEqual({ by: 'role', decision: p.decide(r) });
    const admin = req('responder', 'GET', `${FORUM}/admin/users`);
    expect(decideEgress(p, admin, 'bob')).toMatchObject({ by: 'role', decision: { reason: 'rule_deny' } });
  });

  it('sessionMayReachHost: the role and a limiting creator must both name the host', () => {
    const q = policy(...DELEGATION, 'p, responder, api.test, /*, GET, allow');
    expect(sessionMayReachHost(q, 'responder', undefined, 'api.test')).toBe(true);
    expect(sessionMayReachHost(q, 'responder', 'alice', 'api.test')).toBe(true);
    expect(sessionMayReachHost(q, 'responder', 'bob', 'api.test')).toBe(false);
    expect(sessionMayReachHost(q, 'responder', 'bob', 'forum.test:3000')).toBe(true);
    expect(sessionMayReachHost(q, 'analyst', 'alice', 'api.test')).toBe(false);
  });
});

describe('lintDelegation', () => {
  const lint = (...lines: string[]) =>
    lintDelegation(policy(...ROLES, ...lines)).map((f) => `${f.line - ROLES.length}:${f.severity}`);

  it('accepts the management rules of the docs', () => {
    expect(lintDelegation(policy(...DELEGATION))).toEqual([]);
    expect(
      lint('p, ops, airlock.api, /*, READ, allow', 'p, ops, airlock.api, /:x/analyst, READ, allow'),
    ).toEqual([]);
  });

  it('refuses ports, non-operations and paths that are never /sessions/ROLE', () => {
    const p = policy(
      ...ROLES,
      'p, a, airlock.api:8080, /sessions/analyst, READ, allow',
      'p, a, airlock.api, /sessions/analyst, GET, allow',
      'p, a, airlock.api, /, CONNECT, allow',
      'p, a, airlock.api, /sessions, READ, allow',
      'p, a, airlock.api, /sessions/analyst/x, READ, allow',
      'p, a, airlock.api, /v1/sessions/*, READ, allow',
      'p, a, airlock.api, /sessions/anlyst, READ, allow',
    );
    const f = lintDelegation(p);
    expect(f.map((x) => `${x.line - ROLES.length}:${x.severity}`)).toEqual([
      '1:error',
      '2:error',
      '3:error',
      '4:error',
      '5:error',
      '6:error',
      '7:warning',
    ]);
    expect(f[0]?.message).toMatch(/bare host "airlock\.api"/);
    expect(f[1]?.message).toMatch(/method "GET" is not an API operation/);
    expect(f[3]?.message).toMatch(/never matches an API operation/);
    expect(f[6]?.message).toMatch(/role "anlyst"/);
    expect(f.every((x) => x.id === 'delegation-rule' && x.file === 'policy.csv')).toBe(true);
  });

  it('the general linter has nothing against /sessions/* grants', () => {
    // (base's /admin/* deny inside analyst's GET /* is a forum carve-out, not a delegation finding)
    const findings = lintPolicy(policy(...DELEGATION));
    expect(findings.filter((f) => f.id !== 'deny-carve-out')).toEqual([]);
    expect(findings.map((f) => f.line)).toEqual([1]);
  });

  it('airlock policy check reports them with the other findings, by line, and fails on errors', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'airlock-delegation-check-'));
    try {
      writeFileSync(path.join(dir, 'model.conf'), CANONICAL_MODEL);
      writeFileSync(
        path.join(dir, 'policy.csv'),
        [...DELEGATION, 'p, eve, airlock.api, /sessions/analyst, GET, allow', ''].join('\n'),
      );
      let out = '';
      const code = await policyCheck(dir, { json: true }, { out: (t) => (out += t), err: () => undefined });
      expect(code).toBe(1);
      const report = JSON.parse(out) as { findings: Array<{ line: number; id: string; severity: string }> };
      expect(report.findings.filter((f) => f.id !== 'deny-carve-out')).toEqual([
        expect.objectContaining({ line: DELEGATION.length + 1, id: 'delegation-rule', severity: 'error' }),
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
