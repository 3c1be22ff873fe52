import { describe, expect, it } from 'vitest';
import { PolicyError } from '../../../src/errors.js';
import { lintCredentials } from '../../../src/policy/credentials-lint.js';
import { appliedAs, parseCredentials } from '../../../src/policy/credentials.js';
import { compilePolicy, policyVersion } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';

const POLICY = [
  'p, analyst, api.example.com, /repos/*, GET, allow',
  'p, analyst, api.example.com, /repos/:id/issues, POST, allow',
  'p, writer, api.example.com, /*, *, allow',
  'g, lead, analyst',
  '',
].join('\n');

const GOOD = `version: 1
credentials:
  - name: github
    roles: [analyst, lead]
    bindings:
      - host: api.example.com
        path: /repos/*
        methods: [GET]
      - host: api.example.com
        path: /repos/:id/issues
        methods: [POST]
    apply: { type: bearer }
    source: { file: /run/secrets/github }
  - name: search
    roles: [writer]
    bindings:
      - host: api.example.com
    apply: { type: query, name: api_key }
    source: { env: SEARCH_KEY }
`;

function errorOf(text: string, roles?: Set<string>): PolicyError {
  try {
    parseCredentials(text, roles);
  } catch (err) {
    if (err instanceof PolicyError) return err;
    throw err;
  }
  throw new Error('expected a PolicyError');
}

describe('credentials.yaml parsing', () => {
  it('parses definitions with defaults and lines', () => {
    const set = parseCredentials(GOOD, new Set(['analyst', 'lead', 'writer']));
    expect(set.size).toBe(2);
    const [gh, search] = set.definitions;
    expect(gh!.bindings.map((b) => b.line)).toEqual([6, 9]);
    expect(search!.bindings[0]!.path).toBe('/*');
    expect(search!.bindings[0]!.methods).toEqual(['*']);
    expect(appliedAs(gh!.apply)).toBe('authorization');
    expect(appliedAs(search!.apply)).toBe('?api_key');
  });

  it('matches the first binding of the role, with the rules matchers', () => {
    const set = parseCredentials(GOOD);
    expect(set.match('analyst', 'api.example.com', '/repos/x', 'GET')?.credential.name).toBe('github');
    expect(set.match('analyst', 'api.example.com', '/repos/x/issues', 'POST')?.binding.line).toBe(9);
    expect(set.match('analyst', 'api.example.com', '/repos/x', 'DELETE')).toBeNull();
    expect(set.match('analyst', 'API.example.com.evil', '/repos/x', 'GET')).toBeNull();
    expect(set.match('analyst', 'api.example.com:8443', '/repos/x', 'GET')).toBeNull();
    expect(set.match('writer', 'api.example.com', '/anything', 'PUT')?.credential.name).toBe('search');
    // "*" never covers CONNECT or WEBSOCKET, as in rules.
    expect(set.match('writer', 'api.example.com', '/', 'CONNECT')).toBeNull();
    expect(set.match('nobody', 'api.example.com', '/repos/x', 'GET')).toBeNull();
  });

  it.each([
    ['unknown key', GOOD.replace('roles: [writer]', 'roles: [writer]\n    value: hunter2'), /value/],
    ['value in source', GOOD.replace('{ env: SEARCH_KEY }', '{ value: abc }'), /source/],
    ['relative file', GOOD.replace('/run/secrets/github', 'secrets/github'), /absolute path/],
    [
      'bad host',
      GOOD.replace(
        'host: api.example.com\n        path: /repos/*',
        'host: API.example.com\n        path: /repos/*',
      ),
      /bindings\.0\.host/,
    ],
    ['bad path', GOOD.replace('path: /repos/*', 'path: /repos/**'), /bindings\.0\.path/],
    ['bad method', GOOD.replace('methods: [GET]', 'methods: [get]'), /bindings\.0\.methods/],
    [
      'reserved header',
      GOOD.replace('{ type: bearer }', '{ type: header, name: Proxy-Authorization }'),
      /owned by the gateway/,
    ],
    ['duplicate name', GOOD.replace('name: search', 'name: github'), /duplicate credential name/],
    ['wrong version', GOOD.replace('version: 1', 'version: 2'), /version/],
  ])('refuses %s, naming the field and line', (_name, text, message) => {
    const err = errorOf(text);
    expect(err.message).toMatch(message);
    expect(err.location).toMatch(/^credentials\.yaml(:\d+)?$/);
  });

  it('refuses a role policy.csv does not define', () => {
    const err = errorOf(GOOD, new Set(['analyst', 'writer']));
    expect(err.message).toBe(
      'credentials.yaml:4: credentials.0.roles.1: role "lead" is not defined by policy.csv',
    );
    expect(err.location).toBe('credentials.yaml:4');
  });
});

describe('credentials in the policy snapshot', () => {
  it('is loaded into the snapshot and its version; no file keeps the old version', () => {
    const without = compilePolicy(CANONICAL_MODEL, POLICY);
    expect(without.credentials.size).toBe(0);
    expect(without.version).toBe(policyVersion(CANONICAL_MODEL, POLICY));
    const withCreds = compilePolicy(CANONICAL_MODEL, POLICY, { files: { 'credentials.yaml': GOOD } });
    expect(withCreds.credentials.size).toBe(2);
    expect(withCreds.version).not.toBe(without.version);
    expect(withCreds.version).toBe(policyVersion(CANONICAL_MODEL, POLICY, { 'credentials.yaml': GOOD }));
  });
});

describe('lintCredentials', () => {
  it('accepts bindings the roles allow (inherited rules count)', () => {
    const p = compilePolicy(CANONICAL_MODEL, POLICY, { files: { 'credentials.yaml': GOOD } });
    expect(lintCredentials(p)).toEqual([]);
  });

  it('reports a binding broader than the allow rules, with a witness', () => {
    const text = GOOD.replace('path: /repos/*\n        methods: [GET]', 'path: /*\n        methods: [GET]');
    const p = compilePolicy(CANONICAL_MODEL, POLICY, { files: { 'credentials.yaml': text } });
    const f = lintCredentials(p);
    expect(f).toHaveLength(2); // analyst and lead
    expect(f[0]).toMatchObject({ severity: 'error', file: 'credentials.yaml', line: 6 });
    expect(f[0]!.message).toMatch(
      /broader than the allow rules of role "analyst" \(e\.g\. GET api\.example\.com\//,
    );
  });

  it('reports a binding no allow rule overlaps', () => {
    const text = GOOD.replace(
      'host: api.example.com\n        path: /repos/*',
      'host: other.example.com\n        path: /repos/*',
    );
    const p = compilePolicy(CANONICAL_MODEL, POLICY, { files: { 'credentials.yaml': text } });
    expect(lintCredentials(p)[0]!.message).toMatch(/no allow rule of role "analyst" overlaps it/);
  });
});
