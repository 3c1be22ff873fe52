/**
 * Fuzzing the path normaliser (src/request/normalize.ts), issue 15 section 3:
 * - differential against a reference model written from its spec (decode unreserved escapes,
 *   uppercase the others, encode the few printable characters a path may not carry raw, refuse the
 *   rest, merge slashes, RFC 3986 §5.2.4 remove_dot_segments);
 * - the decision on the canonical form equals the decision on every equivalent encoding the
 *   normaliser accepts, and a non-canonical spelling given straight to the policy matches nothing;
 * - it refuses rather than guesses: encoded separators, backslashes, NUL, non-ASCII and control
 *   characters are errors (RequestValidationError), never silently rewritten.
 * Seeds: test/fuzz/corpus/path.jsonl.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RequestValidationError } from '../../../src/errors.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import { parseAbsoluteTarget } from '../../../src/gateway/target.js';
import { isNormalizedPath, normalizePath } from '../../../src/request/normalize.js';
import { corpus, runs } from './corpus.js';

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const KEEP = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~!$&'()*+,;=:@";
const ENCODE = ' "<>[]^`{|}';

/** RFC 3986 §5.2.4, literally (input buffer / output buffer). */
function removeDotSegments(input: string): string {
  let out = '';
  let inp = input;
  while (inp.length > 0) {
    if (inp.startsWith('../')) inp = inp.slice(3);
    else if (inp.startsWith('./')) inp = inp.slice(2);
    else if (inp.startsWith('/./')) inp = inp.slice(2);
    else if (inp === '/.') inp = '/';
    else if (inp.startsWith('/../')) {
      inp = inp.slice(3);
      out = out.slice(0, Math.max(0, out.lastIndexOf('/')));
    } else if (inp === '/..') {
      inp = '/';
      out = out.slice(0, Math.max(0, out.lastIndexOf('/')));
    } else if (inp === '.' || inp === '..') inp = '';
    else {
      const next = inp.indexOf('/', 1);
      const seg = next < 0 ? inp : inp.slice(0, next);
      out += seg;
      inp = inp.slice(seg.length);
    }
  }
  return out;
}

/** The normaliser's spec as a model: the canonical path, or 'refused'. */
function model(raw: string): string {
  if (raw.length > 8192) return 'refused';
  let s = '';
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    const c = raw.charCodeAt(i);
    if (c >= 0x80 || c < 0x20 || c === 0x7f || ch === '\\' || ch === '?' || ch === '#') return 'refused';
    if (ch === '%') {
      const hex = raw.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return 'refused';
      const v = parseInt(hex, 16);
      if (v === 0x2f || v === 0x5c || v === 0) return 'refused';
      const d = String.fromCharCode(v);
      s += UNRESERVED.test(d) ? d : `%${hex.toUpperCase()}`;
      i += 2;
    } else if (ENCODE.includes(ch)) s += `%${c.toString(16).toUpperCase().padStart(2, '0')}`;
    else s += ch; // KEEP, '/', '.'
  }
  if (!s.startsWith('/')) s = `/${s}`;
  s = s.replace(/\/{2,}/g, '/');
  const r = removeDotSegments(s);
  return r === '' ? '/' : r;
}

/** Characters that stress the scanner: every class, escapes of each kind, non-ASCII. */
const pathChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...KEEP.split('')) },
  { weight: 4, arbitrary: fc.constantFrom('/', '/', '.', '..', '%2e', '%2E', '%') },
  { weight: 2, arbitrary: fc.constantFrom(...ENCODE.split('')) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.constantFrom(...'0123456789abcdefABCDEFgG'), fc.constantFrom(...'0123456789abcdefABCDEFzZ'))
      .map(([a, b]) => `%${a}${b}`),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom('\\', '?', '#', '\u0000', '\t', '\u007f', 'é', '\u2028', '%2F', '%5c', '%00'),
  },
);
const rawPath = fc.array(pathChar, { maxLength: 40 }).map((a) => a.join(''));

function outcome(raw: string): string {
  try {
    return normalizePath(raw);
  } catch (err) {
    if (!(err instanceof RequestValidationError)) throw err; // any other error is a crash
    return 'refused';
  }
}

describe('fuzz: path normaliser', () => {
  it('agrees with the spec model on generated and arbitrary paths; output canonical and idempotent', () => {
    const seeds = corpus('path').map((p) => [p] as [string]);
    fc.assert(
      fc.property(
        fc.oneof(rawPath, fc.string({ maxLength: 30 }), fc.string({ unit: 'binary', maxLength: 20 })),
        (raw) => {
          const got = outcome(raw);
          expect(got, JSON.stringify(raw)).toBe(model(raw));
          if (got !== 'refused') {
            expect(isNormalizedPath(got)).toBe(true);
            expect(normalizePath(got)).toBe(got);
          }
        },
      ),
      { numRuns: runs(4000), examples: seeds },
    );
  });

  // Canonical paths: segments of kept characters and escapes of non-unreserved bytes, no dot segment.
  const segment = fc
    .array(
      fc.oneof(
        fc.constantFrom(...'abcXYZ019-_~!$&()*+,=:@'.split('')),
        fc.constantFrom('%3A', '%C3%A9', '%40', '%22'),
      ),
      {
        minLength: 1,
        maxLength: 5,
      },
    )
    .map((a) => a.join(''))
    .filter((s) => !/^\.+$/.test(s));
  const canonical = fc
    .tuple(fc.array(segment, { maxLength: 5 }), fc.boolean())
    .map(([segs, slash]) => `/${segs.join('/')}${slash && segs.length > 0 ? '/' : ''}`);

  /** An equivalent spelling of a canonical path (what an agent could send to reach the same place). */
  const variantOf = (p: string): fc.Arbitrary<string> =>
    fc.array(fc.nat(), { minLength: p.length + 1, maxLength: p.length + 1 }).map((r) => {
      let out = '';
      for (let i = 0; i < p.length; i++) {
        const ch = p[i]!;
        const k = r[i]! % 7;
        if (ch === '%') {
          const hex = p.slice(i + 1, i + 3);
          out += k < 3 ? `%${hex.toLowerCase()}` : `%${hex}`;
          i += 2;
        } else if (ch === '/') {
          out += ['/', '//', '/./', '/%2e/', '/zz/../', '/zz/%2E%2e/', '/'][k];
        } else if (UNRESERVED.test(ch) && k < 3) {
          const hex = ch.charCodeAt(0).toString(16);
          out += `%${k === 0 ? hex.toUpperCase() : hex.toLowerCase()}`;
        } else out += ch;
      }
      return out;
    });

  const rules = [
    'p, r, a.test, /a/*, GET, allow',
    'p, r, a.test, /*, GET, allow',
    'p, r, a.test, /b%3A/*, GET, deny',
    'p, r, a.test, /%C3%A9/*, GET, deny',
    'p, r, a.test, /X/:id, GET, deny',
  ];
  const policy = compilePolicy(CANONICAL_MODEL, rules.join('\n') + '\n');

  it('decision on the canonical form = decision on every equivalent encoding; raw spellings match nothing', () => {
    fc.assert(
      fc.property(
        canonical.chain((p) => fc.tuple(fc.constant(p), variantOf(p))),
        ([canon, variant]) => {
          expect(normalizePath(variant)).toBe(canon);
          const t = parseAbsoluteTarget(`http://a.test${variant}?q=1`);
          expect(t.path).toBe(canon);
          const decide = (path: string) => policy.decide({ role: 'r', host: 'a.test', path, method: 'GET' });
          const want = decide(canon);
          expect(decide(t.path)).toEqual(want);
          // The policy itself refuses a path nobody normalised: no rule matches a raw spelling.
          if (variant !== canon) expect(decide(variant).allowed).toBe(false);
        },
      ),
      { numRuns: runs(3000) },
    );
  });

  it('refuses rather than guesses: encoded separators, backslash, NUL, non-ASCII, controls', () => {
    const refused = fc.constantFrom(
      '%2F',
      '%2f',
      '%5C',
      '%5c',
      '%00',
      '\\',
      '\u0000',
      '\u001f',
      '\u007f',
      'é',
      '\u{1F600}',
      '?',
      '#',
    );
    fc.assert(
      fc.property(canonical, refused, fc.nat(), (p, bad, at) => {
        const i = p.length === 0 ? 0 : at % (p.length + 1);
        const raw = p.slice(0, i) + bad + p.slice(i);
        expect(() => normalizePath(raw)).toThrow(RequestValidationError);
      }),
      { numRuns: runs(2000) },
    );
  });
});
