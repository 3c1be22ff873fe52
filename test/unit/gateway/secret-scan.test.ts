import { randomBytes } from 'node:crypto';
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

describe('queryWithCredential', () => {
  it("replaces the sandbox's parameter of that name and appends the gateway's", () => {
    expect(queryWithCredential('', 'key', 'v')).toBe('?key=v');
    expect(queryWithCredential('?a=1&key=mine&b=2&key=x', 'key', 'v%2B')).toBe('?a=1&b=2&key=v%2B');
  });
});
