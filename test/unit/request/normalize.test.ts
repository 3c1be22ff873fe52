import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RequestValidationError } from '../../../src/errors.js';
import { err } from '../../helpers/errors.js';
import {
  isNormalizedPath,
  normalizeHost,
  normalizeMethod,
  normalizePath,
  policyHost,
  requestFromUrl,
} from '../../../src/request/normalize.js';

function refused(fn: () => unknown, field: string, message?: RegExp): void {
  const caught = err(fn, RequestValidationError);
  expect(caught.field).toBe(field);
  if (message) expect(caught.message).toMatch(message);
}

describe('normalizeHost', () => {
  it.each([
    ['example.com', 'example.com'],
    ['API.Example.COM', 'api.example.com'],
    ['api.example.com.', 'api.example.com'],
    ['Bücher.DE.', 'xn--bcher-kva.de'],
    ['xn--bcher-kva.de', 'xn--bcher-kva.de'],
    ['forum.test', 'forum.test'],
    ['under_score.example', 'under_score.example'],
    ['127.0.0.1', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['[::1]', '[::1]'],
    ['[0:0:0:0:0:0:0:1]', '[::1]'],
    ['[FE80::ABCD]', '[fe80::abcd]'],
  ])('%s → %s', (raw, want) => {
    expect(normalizeHost(raw)).toBe(want);
  });

  it.each([
    ['', /empty/],
    ['.', /empty/],
    ['a..', /empty label/],
    ['a..b', /empty label/],
    ['.a', /empty label/],
    ['-a.example', /"-"/],
    ['a-.example', /"-"/],
    ['*.example.com', /"\*"/],
    ['a b', /character/],
    ['a%41.com', /"%"/],
    ['a\\b.com', /character/],
    ['a/b', /character/],
    ['api.example.com:443', /port/],
    ['user@api.example.com', /character/],
    [`${'a'.repeat(64)}.com`, /longer than 63/],
    [`${'a.'.repeat(127)}com`, /longer than 253/],
    ['[::1', /unclosed/],
    ['[fe80::1%25eth0]', /zone/],
    ['[1.2.3.4]', /IPv6/],
    ['1.2.3.999', /not a valid/],
  ])('refuses %j', (raw, message) => {
    refused(() => normalizeHost(raw), 'host', message);
  });

  it('is idempotent on what it accepts', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.domain(),
          fc.string(),
          fc.ipV4(),
          fc.ipV6().map((a) => `[${a}]`),
        ),
        (raw) => {
          let once: string;
          try {
            once = normalizeHost(raw);
          } catch (err) {
            expect(err).toBeInstanceOf(RequestValidationError);
            return;
          }
          expect(normalizeHost(once)).toBe(once);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('policyHost', () => {
  it('omits only the scheme default port', () => {
    expect(policyHost('forum.test', 80, 'http')).toBe('forum.test');
    expect(policyHost('forum.test', 443, 'https')).toBe('forum.test');
    expect(policyHost('forum.test', 443, 'http')).toBe('forum.test:443');
    expect(policyHost('forum.test', 80, 'https')).toBe('forum.test:80');
    expect(policyHost('forum.test', 3000, 'http')).toBe('forum.test:3000');
    expect(policyHost('[::1]', 8080, 'http')).toBe('[::1]:8080');
  });
  it('refuses impossible ports', () => {
    refused(() => policyHost('a.test', 0, 'http'), 'port');
    refused(() => policyHost('a.test', 65536, 'http'), 'port');
    refused(() => policyHost('a.test', 1.5, 'http'), 'port');
  });
});

describe('normalizePath', () => {
  it.each([
    ['/', '/'],
    ['', '/'],
    ['posts', '/posts'],
    ['/posts/1', '/posts/1'],
    ['/posts/', '/posts/'],
    ['//posts///1', '/posts/1'],
    ['/a/./b', '/a/b'],
    ['/a/b/../c', '/a/c'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/../../a', '/a'],
    ['/..', '/'],
    ['/a/%2e%2E/b', '/b'],
    ['/a/.%2e/b', '/b'],
    ['/a/%2E/b', '/a/b'],
    ['/a//../b', '/b'],
    ['/.../a', '/.../a'],
    ['/a..b/c', '/a..b/c'],
    ['/%41%62%7e%2d%5f%2e', '/Ab~-_.'],
    ['/a%3ab', '/a%3Ab'],
    ['/a%3Ab', '/a%3Ab'],
    ['/a%25b', '/a%25b'],
    ['/a%252Fb', '/a%252Fb'],
    ['/a b', '/a%20b'],
    ['/a"<>[]^`{|}', '/a%22%3C%3E%5B%5D%5E%60%7B%7C%7D'],
    ["/a!$&'()*+,;=:@b", "/a!$&'()*+,;=:@b"],
    ['/v3/kv/%70ut', '/v3/kv/put'],
  ])('%j → %j', (raw, want) => {
    expect(normalizePath(raw)).toBe(want);
    expect(isNormalizedPath(want)).toBe(true);
  });

  it.each([
    ['/a%2Fb', /encoded slash/],
    ['/a%2fb', /encoded slash/],
    ['/a%5Cb', /encoded backslash/],
    ['/a%5cb', /encoded backslash/],
    ['/a%00b', /NUL/],
    ['/a\\b', /backslash/],
    ['/a\u0000b', /control/],
    ['/a\nb', /control/],
    ['/a\tb', /control/],
    ['/a\u007fb', /control/],
    ['/a%', /percent-escape/],
    ['/a%4', /percent-escape/],
    ['/a%zz', /percent-escape/],
    ['/a?b', /query/],
    ['/a#b', /"#"/],
    ['/é', /non-ASCII/],
    [`/${'a'.repeat(9000)}`, /longer/],
  ])('refuses %j', (raw, message) => {
    refused(() => normalizePath(raw), 'path', message);
  });

  const pathChars = fc.constantFrom(
    ...'/./../%2e%2E%2F%2f%41%7e%3a%3A%25%00%5C \\?#aZ09-_~!$&\'()*+,;=:@"<>[]^`{|}é\t'.split(''),
    '%2e',
    '%2E',
    '..',
    '/../',
    '//',
    '%',
    '%4',
    '%61',
  );
  const pathLike = fc.array(pathChars, { maxLength: 30 }).map((parts) => parts.join(''));

  it('is idempotent: normalizePath(normalizePath(x)) === normalizePath(x)', () => {
    fc.assert(
      fc.property(fc.oneof(pathLike, fc.string(), fc.webPath()), (raw) => {
        let once: string;
        try {
          once = normalizePath(raw);
        } catch (err) {
          expect(err).toBeInstanceOf(RequestValidationError);
          return;
        }
        expect(normalizePath(once)).toBe(once);
        expect(isNormalizedPath(once)).toBe(true);
      }),
      { numRuns: 20_000 },
    );
  });

  it('produces no dot segments, empty segments, encoded separators or lowercase escapes', () => {
    fc.assert(
      fc.property(pathLike, (raw) => {
        let out: string;
        try {
          out = normalizePath(raw);
        } catch {
          return;
        }
        expect(out.startsWith('/')).toBe(true);
        expect(out).not.toMatch(/\/\/|\/\.\.?(\/|$)|\\/);
        expect(out).not.toMatch(/%(2F|5C|00)/i);
        expect(out).not.toMatch(/%[0-9A-Fa-f]?[a-f]/);
        for (const m of out.matchAll(/%([0-9A-F]{2})/g)) {
          expect(String.fromCharCode(parseInt(m[1] as string, 16))).not.toMatch(/[A-Za-z0-9._~-]/);
        }
      }),
      { numRuns: 20_000 },
    );
  });

  it('isNormalizedPath agrees with normalizePath', () => {
    fc.assert(
      fc.property(pathLike, (raw) => {
        let out: string | undefined;
        try {
          out = normalizePath(raw);
        } catch {
          out = undefined;
        }
        if (isNormalizedPath(raw)) expect(out).toBe(raw);
        if (out !== undefined && out !== raw) expect(isNormalizedPath(raw)).toBe(false);
      }),
      { numRuns: 20_000 },
    );
  });
});

describe('normalizeMethod', () => {
  it('uppercases tokens and refuses the rest', () => {
    expect(normalizeMethod('get')).toBe('GET');
    expect(normalizeMethod('M-SEARCH')).toBe('M-SEARCH');
    refused(() => normalizeMethod('GE T'), 'method');
    refused(() => normalizeMethod(''), 'method');
    refused(() => normalizeMethod('GET\r\n'), 'method');
  });
});

describe('requestFromUrl', () => {
  it('splits and normalises an absolute URL', () => {
    expect(requestFromUrl('http://Forum.Test:3000/posts/./1?x=1#frag', 'get')).toEqual({
      scheme: 'http',
      host: 'forum.test',
      port: 3000,
      path: '/posts/1',
      query: 'x=1',
      policyHost: 'forum.test:3000',
      method: 'GET',
    });
  });
  it('uses the scheme default port and root path', () => {
    expect(requestFromUrl('HTTPS://api.example.com', 'POST')).toMatchObject({
      scheme: 'https',
      port: 443,
      path: '/',
      query: null,
      policyHost: 'api.example.com',
    });
    expect(requestFromUrl('http://api.example.com:80/?', 'GET')).toMatchObject({
      port: 80,
      policyHost: 'api.example.com',
      query: '',
    });
    expect(requestFromUrl('https://api.example.com:80/', 'GET').policyHost).toBe('api.example.com:80');
  });
  it('handles IPv6 and IDN hosts', () => {
    expect(requestFromUrl('http://[::1]:8080/a', 'GET')).toMatchObject({
      host: '[::1]',
      policyHost: '[::1]:8080',
    });
    expect(requestFromUrl('http://bücher.de/a', 'GET').host).toBe('xn--bcher-kva.de');
  });
  it.each([
    ['ftp://a.example/', 'url'],
    ['//a.example/', 'url'],
    ['/relative', 'url'],
    ['http://user:pw@a.example/', 'url'],
    ['http://a.example@b.example/', 'url'],
    ['http://a.example:/', 'port'],
    ['http://a.example:0/', 'port'],
    ['http://a.example:65536/', 'port'],
    ['http://a.example:x/', 'port'],
    ['http://a.example\\b/', 'url'],
    ['http://a.example/a\\b', 'path'],
    ['http://a.example/a%2Fb', 'path'],
    ['http:///path', 'host'],
    ['http://a example/', 'url'],
    ['http://a.example/\n', 'url'],
    ['http://a.example/?q=é', 'url'],
    ['http://[::1/', 'url'],
    ['http://[::1]x/', 'url'],
  ])('refuses %j (field %s)', (url, field) => {
    refused(() => requestFromUrl(url, 'GET'), field);
  });
  it('ignores the fragment but never lets it hide a path', () => {
    expect(requestFromUrl('http://a.example/x#/../../admin', 'GET').path).toBe('/x');
  });
});

describe('normalizeHost fast path', () => {
  it('returns exactly what domainToASCII-based normalisation returns', async () => {
    const { domainToASCII } = await import('node:url');
    const label = fc.stringMatching(/^[a-z0-9_-]{1,8}$/);
    const name = fc.oneof(
      fc
        .array(fc.oneof(label, fc.constantFrom('xn--bcher-kva', '0x7f', '0x', '1', '255', 'x', '-a', 'a-')), {
          minLength: 1,
          maxLength: 5,
        })
        .map((ls) => ls.join('.')),
      fc.domain(),
    );
    fc.assert(
      fc.property(name, (n) => {
        let got: string | undefined;
        try {
          got = normalizeHost(n);
        } catch {
          got = undefined;
        }
        // Reference: the slow path (domainToASCII, then the label rules) without the fast path.
        const ascii = domainToASCII(n);
        const labelOk = (l: string) => l.length <= 63 && /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/.test(l);
        const want =
          ascii !== '' && ascii.length <= 253 && ascii.split('.').every(labelOk) ? ascii : undefined;
        expect(got).toBe(want);
      }),
      { numRuns: 20_000 },
    );
  });
});
