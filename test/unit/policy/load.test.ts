/**
 * Loading policy directories: every broken fixture under test/fixtures/policies is rejected with a
 * PolicyError naming file:line; the valid ones load; the version is the content hash.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PolicyError } from '../../../src/errors.js';
import { err } from '../../helpers/errors.js';
import { MAX_ROLE_DEPTH } from '../../../src/policy/csv.js';
import { compilePolicy, loadPolicyDir, policyVersion } from '../../../src/policy/load.js';
import { CANONICAL_MODEL, validateModel } from '../../../src/policy/model.js';

const fixtures = fileURLToPath(new URL('../../fixtures/policies/', import.meta.url));
const fixture = (name: string): string => `${fixtures}${name}`;

function loadError(name: string): Promise<PolicyError> {
  return err(() => loadPolicyDir(fixture(name)), PolicyError);
}

describe('loadPolicyDir', () => {
  it('loads a valid directory', async () => {
    const p = await loadPolicyDir(fixture('valid'));
    expect(p.rules).toBe(5);
    expect([...p.roles].sort()).toEqual(['reader', 'writer']);
    expect(p.loadedAt).toBeInstanceOf(Date);
    expect(p.source.dir).toBe(fixture('valid'));
    expect(
      p.decide({ role: 'writer', host: 'api.example.com', path: '/items/1', method: 'PUT' }).allowed,
    ).toBe(true);
    expect(
      p.decide({ role: 'writer', host: 'api.example.com', path: '/items/1/lock', method: 'PUT' }).reason,
    ).toBe('rule_deny');
  });

  it('versions a policy by the first 12 hex of sha256(model.conf + policy.csv)', async () => {
    const model = await readFile(fixture('valid/model.conf'), 'utf8');
    const csv = await readFile(fixture('valid/policy.csv'), 'utf8');
    const want = createHash('sha256')
      .update(model + csv)
      .digest('hex')
      .slice(0, 12);
    expect((await loadPolicyDir(fixture('valid'))).version).toBe(want);
    expect(policyVersion(model, csv)).toBe(want);
    expect(policyVersion(model, csv + '\n')).not.toBe(want);
    expect(compilePolicy(model, csv, { version: 'abc123' }).version).toBe('abc123');
  });

  it.each([
    ['unknown-effect', 'policy.csv:3', /unknown effect "permit" \(expected allow, deny or ask\)/],
    [
      'cycle',
      'policy.csv:4',
      /role inheritance cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c) \(lines/,
    ],
    ['self-parent', 'policy.csv:2', /role "a" cannot inherit from itself/],
    ['too-deep', 'policy.csv:1', new RegExp(`more than ${MAX_ROLE_DEPTH} levels`)],
    ['host-wildcard-middle', 'policy.csv:1', /"\*" is only allowed as the whole first label/],
    ['host-bare-star', 'policy.csv:2', /host "\*" is not allowed/],
    ['host-leading-star', 'policy.csv:1', /"\*" is only allowed as the whole first label/],
    [
      'host-default-port',
      'policy.csv:1',
      /port 443 is a scheme default; write the bare host "api.example.com"/,
    ],
    ['host-uppercase', 'policy.csv:1', /not in canonical form; write "api.example.com"/],
    ['host-tld-wildcard', 'policy.csv:1', /at least two labels/],
    ['path-star-middle', 'policy.csv:1', /"\*" is only allowed as the whole last segment/],
    ['path-relative', 'policy.csv:1', /must start with "\/"/],
    ['path-dot-segment', 'policy.csv:1', /not in normal form; write "\/admin"/],
    ['path-encoded-slash', 'policy.csv:1', /encoded slash/],
    ['method-lowercase', 'policy.csv:1', /must be uppercase: "GET"/],
    ['field-count', 'policy.csv:1', /5 fields after "p".*got 4/],
    ['inline-comment', 'policy.csv:1', /"#" comments must be on a line of their own/],
    ['duplicate-line', 'policy.csv:3', /duplicate of policy.csv:1/],
    ['unknown-line-type', 'policy.csv:2', /unknown line type "p2"/],
    ['quoted-field', 'policy.csv:1', /quotes are not supported/],
    ['missing-model', 'model.conf', /file is missing/],
    ['missing-policy', 'policy.csv', /file is missing/],
    [
      'model-unsafe-matcher',
      'model.conf:14',
      /matcher calls "keyMatch2"; only g, hostMatch, pathMatch and methodMatch/,
    ],
    ['model-or-matcher', 'model.conf:14', /matcher must be the conjunction/],
    ['model-allow-override', 'model.conf:11', /policy effect must be/],
    ['model-wrong-request', 'model.conf:2', /must be "r = sub, host, path, method"/],
    ['model-domain-roles', 'model.conf:8', /must be "g = _, _"/],
    ['model-missing-matcher', 'model.conf', /missing \[matchers\]/],
  ])('rejects %s at %s', async (name, location, message) => {
    const err = await loadError(name);
    expect(err.location).toBe(location);
    expect(err.code).toBe('AIRLOCK_POLICY_INVALID');
    expect(err.message.startsWith(`${location}: `)).toBe(true);
    expect(err.message).toMatch(message);
  });
});

describe('policy.csv syntax', () => {
  const compile = (csv: string) => compilePolicy(CANONICAL_MODEL, csv);

  it('skips blank lines and whole-line comments, tolerates CRLF and a BOM, counts lines from 1', () => {
    const p = compile('\uFEFF# header\r\n\r\n   # indented\r\np, r, a.test, /x, GET, allow\r\n');
    expect(p.rules).toBe(1);
    expect(p.decide({ role: 'r', host: 'a.test', path: '/x', method: 'GET' }).rule).toBe(
      'policy.csv:4: p, r, a.test, /x, GET, allow',
    );
  });

  it.each([
    ['g, a', /2 fields after "g"/],
    ['g, a, b, c', /2 fields after "g"/],
    ['p, , a.test, /, GET, allow', /role is empty/],
    ['p, a b, a.test, /, GET, allow', /not a valid role name/],
    ['p, a$, a.test, /, GET, allow', /not a valid role name/],
    ['g, a, ', /parent role is empty/],
    ['p, r, a.test, /, GET, Allow', /unknown effect "Allow"/],
    ['p, r, a.test, /, GET, ', /unknown effect ""/],
    ['m, r, a.test', /unknown line type "m"/],
  ])('rejects %j', (line, message) => {
    expect(() => compile(`${line}\n`)).toThrow(message);
  });

  it('accepts chains exactly as deep as Casbin follows, and no deeper', () => {
    const chain = (n: number) => Array.from({ length: n }, (_, i) => `g, r${i}, r${i + 1}`).join('\n');
    const ok = compile(`${chain(MAX_ROLE_DEPTH)}\np, r${MAX_ROLE_DEPTH}, a.test, /, GET, allow\n`);
    expect(ok.decide({ role: 'r0', host: 'a.test', path: '/', method: 'GET' }).allowed).toBe(true);
    expect(() => compile(chain(MAX_ROLE_DEPTH + 1))).toThrow(/more than 10 levels/);
  });

  it('names a cycle with the lines that form it', () => {
    expect(() => compile('g, x, y\ng, y, x\n')).toThrow(
      /policy\.csv:2: role inheritance cycle: x -> y -> x \(lines 1, 2\)/,
    );
  });
});

describe('model.conf syntax', () => {
  it('accepts the canonical model with comments, blank lines and reordered matcher terms', () => {
    const text = CANONICAL_MODEL.replace(
      /^m = .*$/m,
      'm = methodMatch(r.method, p.method) && g(r.sub, p.sub) && pathMatch(r.path,p.path) && hostMatch( r.host , p.host ) # safe',
    ).replace('[request_definition]', '# Airlock\n; also a comment\n[request_definition]');
    expect(() => validateModel(text)).not.toThrow();
  });

  it.each([
    [CANONICAL_MODEL.replace('[matchers]', '[matcher]'), /unknown section \[matcher\]/],
    [CANONICAL_MODEL + '\n[matchers]\nm = x\n', /duplicate section \[matchers\]/],
    [CANONICAL_MODEL.replace('r = sub', 'r2 = sub'), /unknown key "r2"/],
    [CANONICAL_MODEL.replace('g = _, _', 'g = _, _\ng = _, _'), /duplicate key "g"/],
    [
      CANONICAL_MODEL.replace('p = sub, host, path, method, eft', 'p = sub, host, path, method'),
      /p = sub, host, path, method, eft/,
    ],
    [
      CANONICAL_MODEL.replace('e = some', 'e  =  some').replace('(p.eft == deny)', '(p.eft==deny)'),
      /policy effect/,
    ],
    [CANONICAL_MODEL.replace(' && methodMatch(r.method, p.method)', ''), /missing the term methodMatch/],
    [
      CANONICAL_MODEL.replace(
        'methodMatch(r.method, p.method)',
        'methodMatch(r.method, p.method) && g(r.sub, p.sub)',
      ),
      /not one of its terms/,
    ],
    [
      CANONICAL_MODEL.replace('hostMatch(r.host, p.host)', 'hostMatch(r.path, p.host)'),
      /not one of its terms/,
    ],
    [
      CANONICAL_MODEL.replace('hostMatch(r.host, p.host)', 'regexMatch(r.host, p.host)'),
      /calls "regexMatch"/,
    ],
    [CANONICAL_MODEL.replace('hostMatch(r.host, p.host)', 'r.host == p.host'), /not one of its terms/],
    [CANONICAL_MODEL.replace('g(r.sub, p.sub)', 'eval(p.sub)'), /calls "eval"/],
    [CANONICAL_MODEL.replace('m = g(r.sub, p.sub)', 'm = g(r.sub, p.sub) \\\n'), /line continuations/],
    ['r = sub, host, path, method\n', /key outside any section/],
    ['[matchers\n', /malformed section header/],
    ['[matchers]\nnot a key value\n', /expected "key = value"/],
  ])('rejects variant %#', (text, message) => {
    expect(() => validateModel(text)).toThrow(message);
  });
});
