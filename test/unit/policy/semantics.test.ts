/**
 * The matching and decision semantics of docs/policy.md, one rule at a time, including each
 * node-casbin pitfall of DESIGN.md shown impossible.
 */
import { describe, expect, it } from 'vitest';
import { PolicyError } from '../../../src/errors.js';
import { hostMatch, methodMatch, pathMatch } from '../../../src/policy/matchers.js';
import type { CompiledPolicy } from '../../../src/policy/compile.js';
import { err } from '../../helpers/errors.js';
import { decision, policy, verdict } from './helpers.js';

/** One table row: request method, absolute URL, expected verdict for role `r`. */
type Row = readonly [method: string, url: string, expected: 'allow' | 'deny'];

/** One named case per row (`TITLE: GET https://… → allow`), all against `p` as role `r`. */
function verdicts(p: CompiledPolicy, title: string, rows: readonly Row[]): void {
  it.each(rows)(`${title}: %s %s → %s`, (method, url, expected) => {
    expect(verdict(p, 'r', method, url)).toBe(expected);
  });
}

describe('hosts', () => {
  const p = policy(
    'p, r, api.example.com, /*, GET, allow',
    'p, r, forum.test:3000, /*, GET, allow',
    'p, r, *.cdn.example.com, /*, GET, allow',
    'p, r, *.ports.example.com:8443, /*, GET, allow',
    'p, r, 127.0.0.1:9000, /*, GET, allow',
    'p, r, [::1]:9000, /*, GET, allow',
  );

  verdicts(p, 'an exact name matches itself, case-insensitively, with or without a trailing dot', [
    ['GET', 'https://api.example.com/x', 'allow'],
    ['GET', 'https://API.Example.COM/x', 'allow'],
    ['GET', 'https://api.example.com./x', 'allow'],
  ]);
  it('an exact name matches itself, case-insensitively, with or without a trailing dot', () => {
    expect(p.decide({ role: 'r', host: 'API.EXAMPLE.COM', path: '/x', method: 'GET' }).allowed).toBe(true);
  });

  verdicts(p, 'dots are literal (keyMatch2/keyMatch5 pitfall: api.example.com matched apiXexample.com)', [
    ['GET', 'https://apiXexample.com/x', 'deny'],
    ['GET', 'https://api-example.com/x', 'deny'],
  ]);
  it('dots are literal (keyMatch2/keyMatch5 pitfall: api.example.com matched apiXexample.com)', () => {
    expect(hostMatch('apixexample.com', 'api.example.com')).toBe(false);
  });

  verdicts(p, 'matching is anchored at both ends', [
    ['GET', 'https://xapi.example.com/x', 'deny'],
    ['GET', 'https://v2.api.example.com/x', 'deny'],
    ['GET', 'https://api.example.com.evil.test/x', 'deny'],
    ['GET', 'https://api.example.co/x', 'deny'],
  ]);

  verdicts(p, 'a bare name matches only the scheme default port: http 80 and https 443', [
    ['GET', 'http://api.example.com/x', 'allow'],
    ['GET', 'http://api.example.com:80/x', 'allow'],
    ['GET', 'https://api.example.com:443/x', 'allow'],
    ['GET', 'http://api.example.com:443/x', 'deny'],
    ['GET', 'https://api.example.com:80/x', 'deny'],
    ['GET', 'https://api.example.com:8443/x', 'deny'],
  ]);

  verdicts(p, 'a pattern with a port matches that port only', [
    ['GET', 'http://forum.test:3000/posts', 'allow'],
    ['GET', 'https://forum.test:3000/posts', 'allow'],
    ['GET', 'http://forum.test/posts', 'deny'],
    ['GET', 'http://forum.test:3001/posts', 'deny'],
    ['GET', 'http://forum.test:30000/posts', 'deny'],
  ]);

  verdicts(p, '"*.suffix" matches exactly one extra label, never the apex or deeper names', [
    ['GET', 'https://a.cdn.example.com/x', 'allow'],
    ['GET', 'https://A-1_b.CDN.example.com/x', 'allow'],
    ['GET', 'https://cdn.example.com/x', 'deny'],
    ['GET', 'https://a.b.cdn.example.com/x', 'deny'],
    ['GET', 'https://acdn.example.com/x', 'deny'],
    ['GET', 'https://a.cdn.example.com.evil.test/x', 'deny'],
    ['GET', 'https://a.cdn.example.com:8080/x', 'deny'],
  ]);

  verdicts(p, 'wildcards respect ports too', [
    ['GET', 'https://a.ports.example.com:8443/x', 'allow'],
    ['GET', 'https://a.ports.example.com/x', 'deny'],
    ['GET', 'https://ports.example.com:8443/x', 'deny'],
  ]);

  verdicts(p, 'IP literals match exactly, with their port', [
    ['GET', 'http://127.0.0.1:9000/x', 'allow'],
    ['GET', 'http://0x7f.1:9000/x', 'allow'],
    ['GET', 'http://127.0.0.1/x', 'deny'],
    ['GET', 'http://[::1]:9000/x', 'allow'],
    ['GET', 'http://[0::1]:9000/x', 'allow'],
  ]);

  it.each([
    ['*', /host "\*" is not allowed/],
    ['*example.com', /only allowed as the whole first label/],
    ['api.*.example.com', /only allowed as the whole first label/],
    ['**.example.com', /only allowed as the whole first label/],
    ['*.com', /at least two labels/],
    ['*.1.2.3', /IP/],
    ['API.example.com', /canonical form; write "api.example.com"/],
    ['api.example.com.', /canonical form; write "api.example.com"/],
    ['bücher.de', /canonical form; write "xn--bcher-kva.de"/],
    ['api.example.com:443', /scheme default; write the bare host "api.example.com"/],
    ['api.example.com:80', /scheme default/],
    ['api.example.com:0', /1-65535/],
    ['api.example.com:65536', /1-65535/],
    ['api.example.com:', /1-65535/],
    ['api.example.com:08080', /1-65535/],
    ['', /empty/],
    ['a b.com', /host "a b.com"/],
  ])('refuses the host pattern %j', (host, message) => {
    const e = err(() => policy(`p, r, ${host}, /*, GET, allow`), PolicyError);
    expect(e.location).toBe('policy.csv:1');
    expect(e.message).toMatch(message);
  });
});

describe('paths', () => {
  const p = policy(
    'p, r, a.test, /posts, GET, allow',
    'p, r, a.test, /posts/:id, GET, allow',
    'p, r, a.test, /posts/:id/comments, POST, allow',
    'p, r, a.test, /files/*, GET, allow',
    'p, r, a.test, /, HEAD, allow',
    'p, r, a.test, /v1/things%3Abatch, POST, allow',
  );

  verdicts(p, 'literal segments match exactly and are anchored', [
    ['GET', 'https://a.test/posts', 'allow'],
    ['GET', 'https://a.test/posts-admin', 'deny'],
    ['GET', 'https://a.test/x/posts', 'deny'],
    ['GET', 'https://a.test/Posts', 'deny'],
  ]);

  verdicts(p, 'a trailing slash in the request is not significant', [
    ['GET', 'https://a.test/posts/', 'allow'],
    ['GET', 'https://a.test/posts/1/', 'allow'],
  ]);

  verdicts(p, ':param matches one non-empty segment', [
    ['GET', 'https://a.test/posts/1', 'allow'],
    ['GET', 'https://a.test/posts/anything-at-all', 'allow'],
    ['GET', 'https://a.test/posts/1/2', 'deny'],
    ['POST', 'https://a.test/posts/7/comments', 'allow'],
    ['POST', 'https://a.test/posts/7/8/comments', 'deny'],
    ['POST', 'https://a.test/posts/comments', 'deny'],
  ]);

  verdicts(p, 'a final "*" matches the prefix itself and everything below it, nothing beside it', [
    ['GET', 'https://a.test/files', 'allow'],
    ['GET', 'https://a.test/files/', 'allow'],
    ['GET', 'https://a.test/files/a/b/c', 'allow'],
    ['GET', 'https://a.test/filesystem', 'deny'],
    ['GET', 'https://a.test/', 'deny'],
  ]);

  verdicts(p, '"/" matches only the root', [
    ['HEAD', 'https://a.test/', 'allow'],
    ['HEAD', 'https://a.test', 'allow'],
    ['HEAD', 'https://a.test/x', 'deny'],
  ]);

  const dots = policy('p, r, a.test, /public/*, GET, allow', 'p, r, a.test, /public/secret/*, GET, deny');
  verdicts(dots, '".." is normalised before matching (keyMatch pitfall: dot segments were not)', [
    ['GET', 'https://a.test/public/../admin', 'deny'],
    ['GET', 'https://a.test/public/%2e%2e/admin', 'deny'],
    ['GET', 'https://a.test/public/x/../secret/key', 'deny'],
    ['GET', 'https://a.test/public//secret/key', 'deny'],
    ['GET', 'https://a.test/public/./x', 'allow'],
  ]);
  it('".." is normalised before matching (keyMatch pitfall: dot segments were not)', () => {
    expect(decision(dots, 'r', 'GET', 'https://a.test/public/x/../secret/key').reason).toBe('rule_deny');
  });

  it('a path that is not normalised matches no rule at all (decide is fail-closed on bad input)', () => {
    const q = policy('p, r, a.test, /*, GET, allow');
    for (const path of ['/a/../b', '/a//b', 'a', '/a/./b', '/%2e%2e/x', '/a%2Fb', '/a%3ab', '/a\\b', '']) {
      expect(q.decide({ role: 'r', host: 'a.test', path, method: 'GET' })).toEqual({
        allowed: false,
        reason: 'no_match',
        rule: null,
      });
      expect(pathMatch(path, '/*')).toBe(false);
    }
  });

  verdicts(p, 'percent-escapes are matched in normal form', [
    ['POST', 'https://a.test/v1/things%3abatch', 'allow'],
    ['POST', 'https://a.test/v1/things:batch', 'deny'],
    ['GET', 'https://a.test/%70osts', 'allow'],
  ]);

  it.each([
    ['posts', /must start with "\/"/],
    ['*', /must start with "\/"/],
    ['', /must start with "\/"/],
    ['/posts/', /trailing slash/],
    ['/a/*/b', /whole last segment/],
    ['/a*', /whole last segment/],
    ['/a/b*', /whole last segment/],
    ['/**', /whole last segment/],
    ['/a/../b', /normal form; write "\/b"/],
    ['/a//b', /normal form; write "\/a\/b"/],
    ['/%70osts', /normal form; write "\/posts"/],
    ['/a%3ab', /normal form; write "\/a%3Ab"/],
    ['/a%2Fb', /encoded slash/],
    ['/a/:', /bad parameter/],
    ['/a/:1d', /bad parameter/],
    ['/a\\b', /backslash/],
  ])('refuses the path pattern %j', (path, message) => {
    expect(() => policy(`p, r, a.test, ${path}, GET, allow`)).toThrow(message);
  });
});

describe('methods', () => {
  const p = policy(
    'p, r, a.test, /get-only, GET, allow',
    'p, r, a.test, /any, *, allow',
    'p, r, a.test:8443, /, CONNECT, allow',
    'p, r, a.test, /ws, WEBSOCKET, allow',
  );

  verdicts(p, 'a method matches exactly; the request method is compared uppercased', [
    ['GET', 'https://a.test/get-only', 'allow'],
    ['get', 'https://a.test/get-only', 'allow'],
    ['POST', 'https://a.test/get-only', 'deny'],
    ['GETS', 'https://a.test/get-only', 'deny'],
  ]);

  it('"*" matches every method except CONNECT', () => {
    for (const m of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'PROPFIND']) {
      expect(verdict(p, 'r', m, 'https://a.test/any')).toBe('allow');
    }
    expect(verdict(p, 'r', 'CONNECT', 'https://a.test/any')).toBe('deny');
    expect(methodMatch('connect', '*')).toBe(false);
    expect(p.decide({ role: 'r', host: 'a.test:8443', path: '/', method: 'CONNECT' }).allowed).toBe(true);
  });

  it('"*" does not match WEBSOCKET either: a WebSocket is granted by name, on its path', () => {
    expect(verdict(p, 'r', 'WEBSOCKET', 'https://a.test/any')).toBe('deny');
    expect(methodMatch('websocket', '*')).toBe(false);
    expect(verdict(p, 'r', 'WEBSOCKET', 'https://a.test/ws')).toBe('allow');
    expect(verdict(p, 'r', 'GET', 'https://a.test/ws')).toBe('deny');
    expect(verdict(p, 'r', 'WEBSOCKET', 'https://a.test/ws/x')).toBe('deny');
  });

  it.each([
    ['get', /must be uppercase: "GET"/],
    ['G E T', /not a method name/],
    ['', /not a method name/],
    ['GET|POST', /not a method name/],
  ])('refuses the method pattern %j', (method, message) => {
    expect(() => policy(`p, r, a.test, /, ${method}, allow`)).toThrow(message);
  });
});

describe('decisions', () => {
  it('no matching rule is a deny with reason no_match and no rule', () => {
    const p = policy('p, r, a.test, /x, GET, allow');
    expect(decision(p, 'r', 'GET', 'https://a.test/y')).toEqual({
      allowed: false,
      reason: 'no_match',
      rule: null,
    });
    expect(decision(p, 'nobody', 'GET', 'https://a.test/x')).toEqual({
      allowed: false,
      reason: 'no_match',
      rule: null,
    });
  });

  it('an empty policy denies everything', () => {
    const p = policy('# nothing here');
    expect(p.rules).toBe(0);
    expect(verdict(p, 'r', 'GET', 'https://a.test/')).toBe('deny');
  });

  it('deny overrides allow whatever the line order', () => {
    const before = policy('p, r, a.test, /x/secret, GET, deny', 'p, r, a.test, /x/*, GET, allow');
    const after = policy('p, r, a.test, /x/*, GET, allow', 'p, r, a.test, /x/secret, GET, deny');
    for (const p of [before, after]) {
      expect(decision(p, 'r', 'GET', 'https://a.test/x/secret').reason).toBe('rule_deny');
      expect(verdict(p, 'r', 'GET', 'https://a.test/x/other')).toBe('allow');
    }
  });

  it('names the deciding rule: the first matching deny, or the last matching allow (as Casbin does)', () => {
    const p = policy(
      'p, r, a.test, /*, GET, allow',
      'p, r, a.test, /x/*, GET, deny',
      'p, r, a.test, /x/y, *, deny',
      'p, r, a.test, /z, GET, allow',
      '',
      '# comment',
      'p, r, *.b.test, /*, GET, allow',
      'p, r, a.b.test, /*, *, allow',
      'p, r, *.b.test, /no/*, GET, deny',
    );
    expect(decision(p, 'r', 'GET', 'https://a.test/x/y')).toEqual({
      allowed: false,
      reason: 'rule_deny',
      rule: 'policy.csv:2: p, r, a.test, /x/*, GET, deny',
    });
    expect(decision(p, 'r', 'GET', 'https://a.test/z').rule).toBe(
      'policy.csv:4: p, r, a.test, /z, GET, allow',
    );
    expect(decision(p, 'r', 'GET', 'https://a.test/q').rule).toBe(
      'policy.csv:1: p, r, a.test, /*, GET, allow',
    );
    expect(decision(p, 'r', 'GET', 'https://a.b.test/q').rule).toBe(
      'policy.csv:8: p, r, a.b.test, /*, *, allow',
    );
    expect(decision(p, 'r', 'GET', 'https://c.b.test/q').rule).toBe(
      'policy.csv:7: p, r, *.b.test, /*, GET, allow',
    );
    expect(decision(p, 'r', 'GET', 'https://a.b.test/no/x').rule).toBe(
      'policy.csv:9: p, r, *.b.test, /no/*, GET, deny',
    );
  });

  it('rule text is normalised to single ", " separators', () => {
    const p = policy('  p ,r,   a.test ,/x,GET ,allow  ');
    expect(decision(p, 'r', 'GET', 'https://a.test/x').rule).toBe(
      'policy.csv:1: p, r, a.test, /x, GET, allow',
    );
  });

  it('decisions are plain data and are not cached (CachedEnforcer pitfall: rvals.join("$$") keys collided)', () => {
    const p = policy('p, r, h.example, /a, *, allow');
    // Both requests join to "r$$h.example$$/a$$/b$$GET".
    const a = p.decide({ role: 'r', host: 'h.example', path: '/a$$/b', method: 'GET' });
    const b = p.decide({ role: 'r', host: 'h.example', path: '/a', method: '/b$$GET' });
    expect(a.allowed).toBe(false);
    expect(b.allowed).toBe(true);
    expect(p.decide({ role: 'r', host: 'h.example', path: '/a$$/b', method: 'GET' }).allowed).toBe(false);
  });
});

describe('role inheritance', () => {
  const p = policy(
    'p, base, cfg.test:2379, /v3/auth/*, *, deny',
    'g, analyst, base',
    'p, analyst, forum.test:3000, /*, GET, allow',
    'g, responder, analyst',
    'p, responder, forum.test:3000, /comments, POST, allow',
    'p, admin, cfg.test:2379, /v3/*, POST, allow',
    'g, admin, responder',
    'g, auditor, base',
    'g, auditor, reader',
    'p, reader, logs.test, /*, GET, allow',
  );

  it('a role gets its parents’ rules, transitively', () => {
    expect(verdict(p, 'responder', 'GET', 'http://forum.test:3000/posts')).toBe('allow');
    expect(verdict(p, 'admin', 'GET', 'http://forum.test:3000/posts')).toBe('allow');
    expect(verdict(p, 'admin', 'POST', 'http://forum.test:3000/comments')).toBe('allow');
  });

  it('a parent does not get its children’s rules', () => {
    expect(verdict(p, 'analyst', 'POST', 'http://forum.test:3000/comments')).toBe('deny');
    expect(verdict(p, 'base', 'GET', 'http://forum.test:3000/posts')).toBe('deny');
  });

  it('an inherited deny overrides the role’s own allow', () => {
    expect(verdict(p, 'admin', 'POST', 'http://cfg.test:2379/v3/kv/put')).toBe('allow');
    expect(decision(p, 'admin', 'POST', 'http://cfg.test:2379/v3/auth/enable')).toEqual({
      allowed: false,
      reason: 'rule_deny',
      rule: 'policy.csv:1: p, base, cfg.test:2379, /v3/auth/*, *, deny',
    });
  });

  it('a role may have several parents', () => {
    expect(verdict(p, 'auditor', 'GET', 'https://logs.test/x')).toBe('allow');
    expect(p.inheritedRoles('auditor')).toEqual(['base', 'reader']);
    expect(p.inheritedRoles('admin')).toEqual(['responder', 'analyst', 'base']);
  });

  it('exposes roles and rule counts', () => {
    expect([...p.roles].sort()).toEqual(['admin', 'analyst', 'auditor', 'base', 'reader', 'responder']);
    expect(p.rules).toBe(10);
  });

  it('explain lists every matching rule and the roles consulted', () => {
    const e = p.explain({ role: 'admin', host: 'cfg.test:2379', path: '/v3/auth/enable', method: 'POST' });
    expect(e.decision.reason).toBe('rule_deny');
    expect(e.roles).toEqual(['admin', 'responder', 'analyst', 'base']);
    expect(e.matched.map((r) => r.line)).toEqual([1, 6]);
  });
});

describe('performance', () => {
  it('decides in well under a millisecond at a few hundred rules', () => {
    const lines: string[] = [];
    for (let i = 0; i < 300; i++) {
      lines.push(
        `p, role${i % 10}, host${i % 30}.example.com, /api/v${i % 3}/items${i}/:id/*, ${i % 2 ? 'GET' : '*'}, ${i % 7 ? 'allow' : 'deny'}`,
      );
    }
    for (let i = 1; i < 10; i++) lines.push(`g, role${i}, role${i - 1}`);
    const p = policy(...lines);
    const reqs = Array.from({ length: 64 }, (_, i) => ({
      role: `role${i % 10}`,
      host: `host${i % 30}.example.com`,
      path: `/api/v${i % 3}/items${(i * 7) % 300}/${i}/x/y`,
      method: i % 3 ? 'GET' : 'POST',
    }));
    const n = 100_000;
    const t0 = performance.now();
    let allowed = 0;
    for (let i = 0; i < n; i++) if (p.decide(reqs[i & 63] as (typeof reqs)[number]).allowed) allowed++;
    const perDecisionUs = ((performance.now() - t0) * 1000) / n;
    expect(allowed).toBeGreaterThan(0);
    expect(perDecisionUs).toBeLessThan(50); // typically < 1 µs; generous for slow CI machines
  });
});
