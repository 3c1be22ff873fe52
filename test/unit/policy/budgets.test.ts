/**
 * budgets.yaml (issue 13 section 2): parsing and validation with file:line errors, matching, the
 * version hash, loading with the policy directory, and the gateway's counters (fixed windows,
 * Retry-After, per session / per role).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PolicyError } from '../../../src/errors.js';
import { BudgetCounters } from '../../../src/gateway/budgets.js';
import type { GatewaySession } from '../../../src/gateway-wire/session.js';
import { parseBudgets } from '../../../src/policy/budgets.js';
import { compilePolicy, loadPolicyDir, policyVersion } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';

const CSV = 'p, analyst, forum.test, /*, GET, allow\np, uploader, files.test:8443, /*, POST, allow\n';
const GOOD = `version: 1
budgets:
  - name: forum-reads
    role: analyst
    host: forum.test
    methods: [GET]
    requestsPerMinute: 2
  - name: uploads
    role: uploader
    host: files.test:8443
    per: role
    bytesOutPerHour: 100
  - name: everything
    role: "*"
    host: "*"
    requestsPerMinute: 1000
`;

function errorOf(text: string, roles?: Set<string>): PolicyError {
  try {
    parseBudgets(text, roles);
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return err as PolicyError;
  }
  throw new Error('expected a PolicyError');
}

describe('parseBudgets', () => {
  it('parses budgets with defaults and matches by role, host and method', () => {
    const set = parseBudgets(GOOD, new Set(['analyst', 'uploader']));
    expect(set.size).toBe(3);
    expect(set.budgets[0]).toMatchObject({ name: 'forum-reads', per: 'session' });
    expect(set.matching('analyst', 'forum.test', 'GET').map((b) => b.name)).toEqual([
      'forum-reads',
      'everything',
    ]);
    expect(set.matching('analyst', 'forum.test', 'POST').map((b) => b.name)).toEqual(['everything']);
    expect(set.matching('analyst', 'other.test', 'GET').map((b) => b.name)).toEqual(['everything']);
    expect(set.matching('uploader', 'files.test:8443', 'POST').map((b) => b.name)).toEqual([
      'uploads',
      'everything',
    ]);
  });

  it.each([
    [
      'unknown key',
      'version: 1\nbudgets:\n  - name: a\n    role: analyst\n    host: x\n    rpm: 3\n',
      /budgets\.yaml:3: budgets\.0\.rpm/,
    ],
    [
      'no figure',
      'version: 1\nbudgets:\n  - name: a\n    role: analyst\n    host: x\n',
      /requestsPerMinute, bytesOutPerHour or both/,
    ],
    [
      'zero',
      'version: 1\nbudgets:\n  - name: a\n    role: analyst\n    host: x\n    requestsPerMinute: 0\n',
      /budgets\.yaml:6: budgets\.0\.requestsPerMinute/,
    ],
    [
      'uppercase host',
      'version: 1\nbudgets:\n  - name: a\n    role: analyst\n    host: X.test\n    requestsPerMinute: 1\n',
      /budgets\.0\.host: expected "\*" or a lowercase policy host/,
    ],
    ['wrong version', 'version: 2\nbudgets: []\n', /budgets\.yaml:1: version/],
    [
      'duplicate names',
      'version: 1\nbudgets:\n  - {name: a, role: analyst, host: x, requestsPerMinute: 1}\n  - {name: a, role: analyst, host: y, requestsPerMinute: 1}\n',
      /budgets\.yaml:4: budgets\.1\.name: duplicate budget name "a"/,
    ],
    ['a list', '- name: a\n', /expected a mapping/],
    ['YAML syntax', 'version: 1\nbudgets: [\n', /YAML syntax error/],
  ])('refuses %s, naming the file, line and field', (_name, text, message) => {
    expect(errorOf(text).message).toMatch(message);
  });

  it('refuses a role the policy does not define', () => {
    const text =
      'version: 1\nbudgets:\n  - name: a\n    role: anlyst\n    host: x\n    requestsPerMinute: 1\n';
    expect(errorOf(text, new Set(['analyst'])).message).toBe(
      'budgets.yaml:4: budgets.0.role: role "anlyst" is not defined by policy.csv',
    );
  });
});

describe('budgets.yaml in the policy snapshot', () => {
  let dir = '';
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is optional, loaded with the directory, and covered by the version hash', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'airlock-budgets-'));
    writeFileSync(path.join(dir, 'model.conf'), CANONICAL_MODEL);
    writeFileSync(path.join(dir, 'policy.csv'), CSV);
    const without = await loadPolicyDir(dir);
    expect(without.budgets.size).toBe(0);
    // A policy without budgets keeps the version it had before budgets existed.
    expect(without.version).toBe(policyVersion(CANONICAL_MODEL, CSV));
    writeFileSync(path.join(dir, 'budgets.yaml'), GOOD);
    const withBudgets = await loadPolicyDir(dir);
    expect(withBudgets.budgets.size).toBe(3);
    expect(withBudgets.version).not.toBe(without.version);
    writeFileSync(
      path.join(dir, 'budgets.yaml'),
      GOOD.replace('requestsPerMinute: 2', 'requestsPerMinute: 3'),
    );
    expect((await loadPolicyDir(dir)).version).not.toBe(withBudgets.version);
  });

  it('an invalid budgets.yaml makes the whole policy invalid', () => {
    expect(() =>
      compilePolicy(CANONICAL_MODEL, CSV, {
        files: { 'budgets.yaml': GOOD.replace('role: uploader', 'role: nobody') },
      }),
    ).toThrow(/budgets\.yaml:9: budgets\.1\.role: role "nobody" is not defined/);
  });
});

describe('BudgetCounters', () => {
  const set = parseBudgets(GOOD);
  const s1: GatewaySession = {
    id: 's1',
    role: 'analyst',
    address: '10.0.0.3',
    credentialSha256: '00',
    expiresAtMs: Number.MAX_SAFE_INTEGER,
  };
  const s2: GatewaySession = { ...s1, id: 's2', address: '10.0.0.11' };
  const up1: GatewaySession = { ...s1, id: 'u1', role: 'uploader' };
  const up2: GatewaySession = { ...s1, id: 'u2', role: 'uploader' };

  it('requests per minute: a fixed window per session, Retry-After until it renews', () => {
    let now = 1_000_000;
    const c = new BudgetCounters(() => now);
    expect(c.admit(set, s1, 'forum.test', 'GET', null).ok).toBe(true);
    now += 10_000;
    expect(c.admit(set, s1, 'forum.test', 'GET', null).ok).toBe(true);
    now += 5_500;
    const over = c.admit(set, s1, 'forum.test', 'GET', null);
    expect(over).toMatchObject({ ok: false, what: 'requestsPerMinute', retryAfterSeconds: 45 });
    expect(!over.ok && over.budget.name).toBe('forum-reads');
    // Another session of the role has its own counter (per: session).
    expect(c.admit(set, s2, 'forum.test', 'GET', null).ok).toBe(true);
    // POST is not counted by a GET budget.
    expect(c.admit(set, s1, 'forum.test', 'POST', null).ok).toBe(true);
    now += 45_000; // the window renewed
    expect(c.admit(set, s1, 'forum.test', 'GET', null).ok).toBe(true);
  });

  it('bytes per hour: shared by the role (per: role), a declared body crossing it is refused', () => {
    let now = 5_000_000;
    const c = new BudgetCounters(() => now);
    const a = c.admit(set, up1, 'files.test:8443', 'POST', 60);
    expect(a.ok).toBe(true);
    if (a.ok) a.meter!.addBytesOut(60);
    const b = c.admit(set, up2, 'files.test:8443', 'POST', 60);
    expect(b).toMatchObject({ ok: false, what: 'bytesOutPerHour', retryAfterSeconds: 3600 });
    // A chunked body (no declared size) is admitted while the budget is not used up, and counted.
    const d = c.admit(set, up2, 'files.test:8443', 'POST', null);
    expect(d.ok).toBe(true);
    if (d.ok) d.meter!.addBytesOut(50);
    now += 1_000;
    expect(c.admit(set, up1, 'files.test:8443', 'POST', null)).toMatchObject({
      ok: false,
      retryAfterSeconds: 3599,
    });
  });

  it('forgets counters whose windows ended', () => {
    let now = 0 + 1;
    const c = new BudgetCounters(() => now);
    c.admit(set, s1, 'forum.test', 'GET', null);
    expect(c.size).toBeGreaterThan(0);
    now += 61_000;
    expect(c.sweep()).toBeGreaterThan(0);
    expect(c.size).toBe(0);
  });
});
