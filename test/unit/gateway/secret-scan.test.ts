import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { queryWithCredential } from '../../../src/gateway/credentials.js';
import { encodedForms, SecretScanner } from '../../../src/gateway/secret-scan.js';

const SECRET = 'ghp_R3alT0kenValue_0123456789abcdef';

describe('SecretScanner', () => {
  const scanner = new SecretScanner(
    new Map([
      ['github', SECRET],
      ['short', 'abc'],
    ]),
  );

  it.each([
    ['plain', `token ${SECRET}`],
    ['in a query', `/search?q=1&key=${SECRET}&x=2`],
    ['URL-encoded', `/x?k=${encodeURIComponent(SECRET + '/+=')}`],
    ['base64', Buffer.from(SECRET).toString('base64')],
    ['base64url', Buffer.from(SECRET).toString('base64url')],
    ['base64 inside a longer text (offset 1)', Buffer.from(`x${SECRET}y`).toString('base64')],
    ['base64 inside a longer text (offset 2)', Buffer.from(`user:${SECRET}`).toString('base64')],
    ['basic auth header', 'Basic ' + Buffer.from(`me:${SECRET}`).toString('base64')],
    ['hex', Buffer.from(SECRET).toString('hex')],
    ['HEX', Buffer.from(SECRET).toString('hex').toUpperCase()],
    ['URL-encoded base64', encodeURIComponent(Buffer.from(`??${SECRET}`).toString('base64'))],
  ])('finds the value %s', (_name, text) => {
    expect(scanner.find(text)).toBe('github');
  });

  it('has no false positives on unrelated data, and skips values shorter than 8 bytes', () => {
    for (let i = 0; i < 2000; i++) {
      const text = randomBytes(64).toString(i % 2 ? 'base64' : 'hex');
      expect(scanner.find(text)).toBeNull();
    }
    expect(scanner.find('abc abc abc')).toBeNull();
    expect(scanner.find(SECRET.slice(0, -1))).toBeNull();
    expect(scanner.find('')).toBeNull();
  });

  it('finds each of many values at any position', () => {
    const values = new Map(Array.from({ length: 50 }, (_, i) => [`c${i}`, randomBytes(24).toString('hex')]));
    const many = new SecretScanner(values);
    for (const [id, v] of values) {
      for (const pad of ['', 'a', 'ab', 'abc', 'abcdefg']) {
        expect(many.find(`${pad}${v}${pad}`)).toBe(id);
        expect(many.find(pad + Buffer.from(pad + v).toString('base64'))).toBe(id);
      }
    }
  });

  it('precomputes a bounded number of forms', () => {
    expect(encodedForms(SECRET).length).toBeLessThanOrEqual(18);
  });
});

describe('SecretScanner properties (fast-check)', () => {
  const value = fc
    .string({ minLength: 8, maxLength: 48, unit: 'binary' })
    .filter((v) => Buffer.byteLength(v) >= 8);
  /** The reference: some searched form of `v` occurs in `text`. */
  const occurs = (v: string, text: string): boolean => encodedForms(v).some((f) => text.includes(f));

  it('exact match: a hit if and only if a form of the value occurs (no false positives)', () => {
    fc.assert(
      fc.property(
        value,
        fc.array(fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme-ascii' })), {
          maxLength: 6,
        }),
        fc.nat(),
        fc.nat(30),
        (v, parts, pick, cut) => {
          const forms = encodedForms(v);
          // Sometimes a whole form, sometimes a form cut short (must not match), among random data.
          const form = forms[pick % forms.length]!;
          const piece = cut % 3 === 0 ? form : form.slice(0, Math.max(0, form.length - 1 - (cut % 5)));
          const text = [...parts.slice(0, pick % 7), piece, ...parts.slice(pick % 7)].join('');
          const hit = new SecretScanner(new Map([['c', v]])).find(text);
          expect(hit !== null).toBe(occurs(v, text));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('never matches random data that holds no form', () => {
    fc.assert(
      fc.property(value, fc.uint8Array({ maxLength: 4096 }), (v, bytes) => {
        const text = Buffer.from(bytes).toString('latin1');
        fc.pre(!occurs(v, text));
        expect(new SecretScanner(new Map([['c', v]])).find(text)).toBeNull();
      }),
      { numRuns: 500 },
    );
  });

  it('finds the value inside any surrounding bytes, encoded whole (base64 std/url, hex, URL-encoding)', () => {
    fc.assert(
      fc.property(
        value,
        fc.uint8Array({ maxLength: 40 }),
        fc.uint8Array({ maxLength: 40 }),
        (v, pre, post) => {
          const s = new SecretScanner(new Map([['c', v]]));
          const whole = Buffer.concat([Buffer.from(pre), Buffer.from(v, 'utf8'), Buffer.from(post)]);
          expect(s.find(whole.toString('base64'))).toBe('c');
          expect(s.find(whole.toString('base64url'))).toBe('c');
          expect(s.find(whole.toString('hex'))).toBe('c');
          expect(s.find(whole.toString('hex').toUpperCase())).toBe('c');
          expect(s.find(whole.toString('latin1'))).toBe('c');
          expect(s.find(`a=${encodeURIComponent(v)}&b=1`)).toBe('c');
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('queryWithCredential', () => {
  it("replaces the sandbox's parameter of that name and appends the gateway's", () => {
    expect(queryWithCredential('', 'key', 'v')).toBe('?key=v');
    expect(queryWithCredential('?a=1&key=mine&b=2&key=x', 'key', 'v%2B')).toBe('?a=1&b=2&key=v%2B');
  });
});
