/** The `tests/*.yaml` runner, and the example policy in policies/ passing its own tests. */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PolicyError, PolicyTestError } from '../../../src/errors.js';
import { err } from '../../helpers/errors.js';
import { loadPolicyDir } from '../../../src/policy/load.js';
import {
  assertPolicyTestsPass,
  parsePolicyTestFile,
  runPolicyTestFiles,
  runPolicyTests,
} from '../../../src/policy/policy-tests.js';
import { policy } from './helpers.js';

const fixtures = fileURLToPath(new URL('../../fixtures/policies/', import.meta.url));
const examples = fileURLToPath(new URL('../../../policies/', import.meta.url));

describe('parsePolicyTestFile', () => {
  it('reads cases with their lines', () => {
    const cases = parsePolicyTestFile(
      'tests/a.yaml',
      '# comment\ncases:\n  - role: r\n    method: GET\n    url: https://a.test/\n    expect: allow\n  - name: second\n    role: r\n    method: post\n    url: https://a.test/x\n    expect: deny\n',
    );
    expect(cases.map((c) => c.line)).toEqual([3, 7]);
    expect(cases[1]?.case).toEqual({
      name: 'second',
      role: 'r',
      method: 'post',
      url: 'https://a.test/x',
      expect: 'deny',
    });
  });

  const bad = (text: string) => err(() => parsePolicyTestFile('tests/a.yaml', text), PolicyError);

  it('names file, line, case index and field for schema errors', () => {
    const text =
      'cases:\n  - role: r\n    method: GET\n    url: https://a.test/\n    expect: allow\n  - role: r\n    method: GET\n    url: https://a.test/\n    expect: maybe\n';
    const err = bad(text);
    expect(err.location).toBe('tests/a.yaml:9');
    expect(err.message).toMatch(/^tests\/a\.yaml:9: case 1: expect: /);
  });

  it.each([
    [
      'cases:\n  - role: r\n    method: GET\n    url: https://a.test/\n',
      /tests\/a\.yaml:2: case 0: expect: /,
    ],
    [
      'cases:\n  - role: r\n    method: GET\n    url: https://a.test/\n    expect: allow\n    extra: 1\n',
      /case 0: unknown key "extra"/,
    ],
    ['- role: r\n  method: GET\n  url: https://a.test/\n  expect: allow\n', /got a bare list/],
    ['cases: []\n', /at least one case/],
    [
      'cases:\n  - role: r\n    method: GET\n    url: ftp://a.test/\n    expect: allow\n',
      /tests\/a\.yaml:2: case 0: url: /,
    ],
    [
      'cases:\n  - role: r\n    method: G E T\n    url: https://a.test/\n    expect: allow\n',
      /case 0: method: /,
    ],
    [
      'cases:\n  - role: r\n    method: GET\n    url: https://a.test/a%2Fb\n    expect: allow\n',
      /case 0: path: .*encoded slash/,
    ],
    ['cases:\n  - [unclosed\n', /tests\/a\.yaml:\d+: YAML syntax error/],
    ['other: 1\n', /unknown key "other"|cases/],
  ])('rejects %j', (text, message) => {
    expect(bad(text).message).toMatch(message);
  });
});

describe('runPolicyTests', () => {
  it('reports failing cases with a diff-like message, and passes the rest', async () => {
    const p = await loadPolicyDir(`${fixtures}failing-tests`);
    const report = await runPolicyTests(p, `${fixtures}failing-tests`);
    expect(report.files).toEqual(['tests/reader.yaml']);
    expect(report.cases).toBe(2);
    expect(report.failures).toHaveLength(1);
    const f = report.failures[0];
    expect(f?.index).toBe(1);
    expect(f?.line).toBe(7);
    expect(f?.message).toBe(
      'tests/reader.yaml:7 case 1 "writes are allowed (wrong on purpose)": PUT https://api.example.com/items/1 as reader\n' +
        '  - expected: allow\n' +
        '  + actual:   deny (no_match)',
    );
    const e = err(() => assertPolicyTestsPass(report), PolicyTestError);
    expect(e.failures).toEqual([f?.message]);
    expect(e.message).toMatch(/^1 of 2 policy test cases failed:\n/);
  });

  it('names the deciding rule when the actual answer came from one', () => {
    const p = policy('p, r, a.test, /*, GET, allow');
    const report = runPolicyTestFiles(p, [
      {
        file: 'tests/x.yaml',
        text: 'cases:\n  - role: r\n    method: GET\n    url: https://a.test/x\n    expect: deny\n',
      },
    ]);
    expect(report.failures[0]?.message).toContain(
      '+ actual:   allow (rule_allow: policy.csv:1: p, r, a.test, /*, GET, allow)',
    );
  });

  it('throws PolicyError for an invalid test file', async () => {
    const p = await loadPolicyDir(`${fixtures}bad-test-file`);
    await expect(runPolicyTests(p, `${fixtures}bad-test-file`)).rejects.toThrow(
      /tests\/reader\.yaml:9: case 1: expect/,
    );
  });

  it('treats a missing tests/ directory as no cases', async () => {
    const p = await loadPolicyDir(`${fixtures}valid`);
    expect(await runPolicyTests(p, `${fixtures}valid`)).toEqual({ files: [], cases: 0, failures: [] });
  });
});

describe('the example policy (policies/)', () => {
  it('loads and passes all of its own tests', async () => {
    const p = await loadPolicyDir(examples);
    expect([...p.roles].sort()).toEqual(['analyst', 'base', 'responder']);
    const report = await runPolicyTests(p, examples);
    expect(report.files).toEqual(['tests/etcd.yaml', 'tests/forum.yaml']);
    expect(report.cases).toBeGreaterThanOrEqual(30);
    expect(report.failures.map((f) => f.message)).toEqual([]);
  });

  it('guards etcd writes with explicit deny rules every role inherits', async () => {
    const p = await loadPolicyDir(examples);
    for (const role of ['analyst', 'responder']) {
      for (const path of ['/v3/kv/put', '/v3/auth/enable', '/v3/auth/user/add']) {
        const d = p.decide({ role, host: 'config.test:2379', path, method: 'POST' });
        expect(d.reason).toBe('rule_deny');
        expect(d.rule).toMatch(/^policy\.csv:\d+: p, base, config\.test:2379, /);
      }
    }
  });
});
