/**
 * The compiled index's two scan paths (linear with signatures, and path tries for buckets of more than
 * TRIE_MIN_RULES rules) give the same answers on the edge cases of path matching, and mayReachHost.
 */
import { describe, expect, it } from 'vitest';
import { TRIE_MIN_RULES } from '../../../src/policy/compile.js';
import type { PolicyDecision } from '../../../src/policy/types.js';
import { policy } from './helpers.js';

const RULES = [
  'p, r, a.test, /, HEAD, allow',
  'p, r, a.test, /*, OPTIONS, allow',
  'p, r, a.test, /posts, GET, allow',
  'p, r, a.test, /posts/:id, GET, allow',
  'p, r, a.test, /posts/:id/comments, POST, allow',
  'p, r, a.test, /posts/42, GET, deny',
  'p, r, a.test, /files/*, *, allow',
  'p, r, a.test, /files/secret/*, GET, deny',
  'p, r, a.test, /files/secret/*, GET, allow',
  'p, r, a.test, /tunnel, CONNECT, allow',
  'p, r, a.test, /, CONNECT, allow',
  'p, r, *.a.test, /posts/:id, *, allow',
  'p, r, *.a.test, /posts/7, DELETE, deny',
  'g, s, r',
  'p, s, a.test, /posts/:id, PUT, allow',
  'p, s, a.test, /files/:name, GET, deny',
];

/** Rules on the same hosts that match none of the probes: they only make the buckets big. */
const FILLER = Array.from({ length: TRIE_MIN_RULES + 10 }, (_, i) => [
  `p, r, a.test, /filler/${i}/:x, GET, allow`,
  `p, r, *.a.test, /filler/${i}, POST, deny`,
]).flat();

const PROBES: [string, string, string, string][] = [];
for (const role of ['r', 's', 'nobody']) {
  for (const host of ['a.test', 'x.a.test', 'x.y.a.test']) {
    for (const path of [
      '/',
      '/posts',
      '/posts/',
      '/posts/1',
      '/posts/42',
      '/posts/42/',
      '/posts/7',
      '/posts/1/comments',
      '/posts/1/comments/2',
      '/files',
      '/files/',
      '/files/a/b',
      '/files/secret',
      '/files/secret/x',
      '/tunnel',
      '/other',
      '/posts/../files',
    ]) {
      for (const method of ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'DELETE', 'CONNECT', 'get']) {
        PROBES.push([role, host, path, method]);
      }
    }
  }
}

describe('compiled index', () => {
  it('path tries answer exactly like the linear scan, rule for rule', () => {
    const small = policy(...RULES);
    const big = policy(...RULES.slice(0, 13), ...FILLER, ...RULES.slice(13));
    const strip = (d: PolicyDecision) => ({ ...d, rule: d.rule?.replace(/^policy\.csv:\d+: /, '') ?? null });
    let allowed = 0;
    for (const [role, host, path, method] of PROBES) {
      const req = { role, host, path, method };
      const a = strip(small.decide(req));
      expect(strip(big.decide(req)), JSON.stringify(req)).toEqual(a);
      if (a.allowed) allowed++;
    }
    expect(allowed).toBeGreaterThan(50);
  });

  it('names the first matching deny and the last matching allow, across exact and wildcard buckets', () => {
    for (const filler of [[], FILLER]) {
      const p = policy(
        'p, r, *.a.test, /x/*, GET, allow',
        ...filler,
        'p, r, b.a.test, /x/:id, GET, allow',
        'p, r, *.a.test, /x/1, GET, deny',
        'p, r, b.a.test, /x/1, GET, deny',
      );
      const lines = (p.source.policyText.match(/\n/g) ?? []).length;
      expect(p.decide({ role: 'r', host: 'b.a.test', path: '/x/2', method: 'GET' }).rule).toMatch(
        /^policy\.csv:\d+: p, r, b\.a\.test, \/x\/:id, GET, allow$/,
      );
      expect(p.decide({ role: 'r', host: 'b.a.test', path: '/x/1', method: 'GET' }).rule).toBe(
        `policy.csv:${lines - 1}: p, r, *.a.test, /x/1, GET, deny`,
      );
    }
  });

  it('mayReachHost: an allow rule of the role or an ancestor names the host (exact or wildcard)', () => {
    const p = policy(
      'p, base, a.test, /*, GET, allow',
      'g, r, base',
      'p, r, *.b.test:8443, /x, POST, allow',
      'p, r, c.test, /*, *, deny',
    );
    expect(p.mayReachHost('r', 'a.test')).toBe(true);
    expect(p.mayReachHost('r', 'A.TEST')).toBe(true);
    expect(p.mayReachHost('base', 'a.test')).toBe(true);
    expect(p.mayReachHost('r', 'x.b.test:8443')).toBe(true);
    expect(p.mayReachHost('r', 'x.b.test')).toBe(false);
    expect(p.mayReachHost('base', 'x.b.test:8443')).toBe(false);
    expect(p.mayReachHost('r', 'c.test')).toBe(false); // deny rules only
    expect(p.mayReachHost('nobody', 'a.test')).toBe(false);
  });
});
