import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearerToken, TokenVerifier } from '../../../src/api/auth.js';
import { ConfigError } from '../../../src/errors.js';
import { readProblem, startApi, TOKENS, type TestApi } from './helpers.js';

let api: TestApi;
beforeAll(async () => {
  api = await startApi();
});
afterAll(async () => {
  await api.close();
});

const v1Routes: Array<[string, string]> = [
  ['POST', '/v1/sessions'],
  ['GET', '/v1/sessions'],
  ['GET', '/v1/sessions/s-1'],
  ['DELETE', '/v1/sessions/s-1'],
  ['POST', '/v1/sessions/s-1/exec'],
  ['GET', '/v1/sessions/s-1/audit'],
  ['GET', '/v1/policy'],
];

describe('bearer token on /v1 routes', () => {
  for (const [method, path] of v1Routes) {
    it(`${method} ${path} without a token answers 401 with WWW-Authenticate`, async () => {
      const res = await fetch(`${api.url}${path}`, { method });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect(await readProblem(res)).toMatchObject({ status: 401, code: 'AIRLOCK_UNAUTHORIZED' });
    });
  }

  it('refuses a wrong token with error="invalid_token"', async () => {
    const res = await fetch(`${api.url}/v1/sessions`, {
      headers: { authorization: 'Bearer not-a-real-token' },
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"');
  });

  it('refuses a prefix of a valid token', async () => {
    const res = await fetch(`${api.url}/v1/sessions`, {
      headers: { authorization: `Bearer ${TOKENS[0]!.token.slice(0, -1)}` },
    });
    expect(res.status).toBe(401);
  });

  it('refuses another auth scheme carrying a valid token', async () => {
    const res = await fetch(`${api.url}/v1/sessions`, {
      headers: { authorization: `Basic ${TOKENS[0]!.token}` },
    });
    expect(res.status).toBe(401);
  });

  it('accepts the scheme in any case', async () => {
    const res = await fetch(`${api.url}/v1/sessions`, {
      headers: { authorization: `bearer ${TOKENS[1]!.token}` },
    });
    expect(res.status).toBe(200);
  });

  it('counts refusals in airlock_api_auth_failures_total', async () => {
    const before = (await api.metrics.authFailures.get()).values[0]?.value ?? 0;
    await fetch(`${api.url}/v1/policy`);
    const after = (await api.metrics.authFailures.get()).values[0]?.value ?? 0;
    expect(after).toBe(before + 1);
  });

  for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
    it(`${path} needs no token`, async () => {
      const res = await fetch(`${api.url}${path}`);
      expect(res.status).toBe(200);
    });
  }
});

describe('TokenVerifier', () => {
  it('returns the caller name of a matching token and null otherwise', () => {
    const v = new TokenVerifier(TOKENS);
    expect(v.verify(TOKENS[0]!.token)).toBe('alice');
    expect(v.verify(TOKENS[1]!.token)).toBe('bob');
    expect(v.verify('')).toBeNull();
    expect(v.verify(`${TOKENS[0]!.token}x`)).toBeNull();
  });

  it('refuses nothing but matches nothing when no tokens are configured (fail closed)', () => {
    expect(new TokenVerifier([]).verify('anything')).toBeNull();
  });

  it('rejects empty and repeated tokens at construction, naming the entry', () => {
    expect(() => new TokenVerifier([{ name: 'a', token: '' }])).toThrow(ConfigError);
    expect(() => new TokenVerifier([{ name: '', token: 'x' }])).toThrow(/api\.tokens\.0\.name/);
    expect(
      () =>
        new TokenVerifier([
          { name: 'a', token: 'same-token' },
          { name: 'b', token: 'same-token' },
        ]),
    ).toThrow(/api\.tokens\.1\.token repeats/);
  });
});

describe('bearerToken', () => {
  it.each([
    [undefined, null],
    ['', null],
    ['Bearer', null],
    ['Bearer ', null],
    ['Basic abc', null],
    ['Bearer abc def', null],
    ['Bearer abc', 'abc'],
    ['BEARER a.b-c_d~e+f/g==', 'a.b-c_d~e+f/g=='],
  ])('%j -> %j', (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });
});
