/**
 * explainRequest (`airlock policy explain`) and replayCalls/parseAuditLines (`airlock policy diff`).
 */
import { describe, expect, it } from 'vitest';
import { explainRequest } from '../../../src/policy/explain.js';
import { AuditLineError, parseAuditLines, replayCalls, requestOfCall } from '../../../src/policy/replay.js';
import { policy, req } from './helpers.js';

const P = policy(
  'p, base, c.test:2379, /v3/auth/*, *, deny',
  'g, analyst, base',
  'p, analyst, c.test:2379, /v3/*, POST, allow',
  'g, responder, analyst',
  'p, responder, f.test, /comments, POST, allow',
  'p, responder, c.test:2379, /v3/auth/status, POST, allow',
);

describe('explainRequest', () => {
  it('deny overrides allow: names the deny, the overridden allows and the role chain with g lines', () => {
    const r = explainRequest(P, req('responder', 'POST', 'http://c.test:2379/v3/auth/status'));
    expect(r.decision).toMatchObject({ allowed: false, reason: 'rule_deny' });
    expect(r.chain).toEqual([
      { role: 'responder', via: null, line: null, path: ['responder'] },
      { role: 'analyst', via: 'responder', line: 4, path: ['responder', 'analyst'] },
      { role: 'base', via: 'analyst', line: 2, path: ['responder', 'analyst', 'base'] },
    ]);
    expect(r.matched.map((m) => [m.rule.line, m.decides])).toEqual([
      [1, true],
      [3, false],
      [6, false],
    ]);
    expect(r.why).toMatch(
      /^deny overrides allow: policy\.csv:1 \(role base\).*2 matching allow rules are overridden \(lines 3, 6\)/,
    );
  });

  it('allow: names the last matching allow', () => {
    const r = explainRequest(P, req('responder', 'POST', 'http://c.test:2379/v3/kv/range'));
    expect(r.decision.allowed).toBe(true);
    expect(r.why).toBe('allowed by policy.csv:3 (role analyst) and no deny rule matches');
  });

  it('no match: lists the rules for the host that differ, and says why for unknown roles and odd paths', () => {
    const r = explainRequest(P, req('responder', 'GET', 'https://f.test/comments'));
    expect(r.decision.reason).toBe('no_match');
    expect(r.nearMisses.map((x) => x.line)).toEqual([5]);
    expect(r.why).toMatch(/no rule of roles responder, analyst, base matches GET f\.test\/comments/);
    expect(explainRequest(P, req('ghost', 'GET', 'https://f.test/x')).why).toMatch(
      /role "ghost" is not named/,
    );
    expect(
      explainRequest(P, { role: 'responder', host: 'f.test', path: '/a/../comments', method: 'POST' }).why,
    ).toMatch(/not in normal form/);
  });
});

describe('replay', () => {
  const NEW = policy(
    'p, base, c.test:2379, /v3/auth/*, *, deny',
    'p, base, c.test:2379, /v3/kv/put, *, deny',
    'g, analyst, base',
    'p, analyst, c.test:2379, /v3/*, POST, allow',
    'g, responder, analyst',
    'p, responder, f.test, /comments, *, allow',
  );
  const ev = (
    role: string | null,
    method: string,
    host: string,
    port: number,
    path: string,
    scheme = 'http',
  ) =>
    JSON.stringify({ time: 't', sessionId: 's', role, method, scheme, host, port, path, decision: 'allow' });

  it('parses JSON lines, keeping role-less events as null, and names bad lines', () => {
    const calls = parseAuditLines(`${ev('a', 'GET', 'f.test', 80, '/x')}\n\n${ev(null, 'GET', '', 0, '')}\n`);
    expect(calls).toEqual([
      { role: 'a', method: 'GET', scheme: 'http', host: 'f.test', port: 80, path: '/x' },
      null,
    ]);
    expect(() => parseAuditLines(`${ev('a', 'GET', 'f.test', 80, '/x')}\n{oops`)).toThrow(AuditLineError);
    expect(() => parseAuditLines('{oops')).toThrow(/^line 1: not JSON/);
    expect(() =>
      parseAuditLines('{"role":"a","method":"GET","scheme":"ftp","host":"h","port":1,"path":"/"}'),
    ).toThrow(/line 1: field "scheme"/);
    expect(() => parseAuditLines('[1]')).toThrow(/not a JSON object/);
  });

  it('builds policy requests like the gateway: default ports dropped, CONNECT decided on "/"', () => {
    const base = { role: 'r', scheme: 'https' as const, path: '/x' };
    expect(requestOfCall({ ...base, method: 'get', host: 'A.test', port: 443 })).toEqual({
      role: 'r',
      host: 'a.test',
      path: '/x',
      method: 'GET',
    });
    expect(requestOfCall({ ...base, method: 'GET', host: 'a.test', port: 8443 })?.host).toBe('a.test:8443');
    expect(requestOfCall({ ...base, method: 'CONNECT', host: 'a.test', port: 443, path: '' })?.path).toBe(
      '/',
    );
    expect(requestOfCall({ ...base, method: 'CONNECT', host: '', port: 0, path: '' })).toBeNull();
  });

  it('lists changed calls deduplicated with counts, most frequent first (ties by role, host, path)', () => {
    const lines = [
      ev('analyst', 'POST', 'c.test', 2379, '/v3/kv/put'),
      ev('analyst', 'POST', 'c.test', 2379, '/v3/kv/put'),
      ev('responder', 'POST', 'c.test', 2379, '/v3/kv/put'),
      ev('analyst', 'POST', 'c.test', 2379, '/v3/kv/range'),
      ev('responder', 'DELETE', 'f.test', 80, '/comments'),
      ev('responder', 'POST', 'f.test', 80, '/comments'),
      ev(null, 'GET', 'f.test', 80, '/'),
      ev('responder', 'CONNECT', '', 0, ''),
    ];
    const r = replayCalls(P, NEW, parseAuditLines(lines.join('\n')));
    expect(r).toMatchObject({
      events: 8,
      replayed: 6,
      distinct: 5,
      skipped: { noRole: 1, badTarget: 1 },
      changedEvents: 4,
    });
    expect(
      r.changes.map((c) => [c.role, c.method, c.host, c.path, c.count, c.old.allowed, c.new.allowed]),
    ).toEqual([
      ['analyst', 'POST', 'c.test:2379', '/v3/kv/put', 2, true, false],
      ['responder', 'POST', 'c.test:2379', '/v3/kv/put', 1, true, false],
      ['responder', 'DELETE', 'f.test', '/comments', 1, false, true],
    ]);
    expect(r.changes[0]?.new.rule).toBe('policy.csv:2: p, base, c.test:2379, /v3/kv/put, *, deny');
  });

  it('the same policy changes nothing', () => {
    const r = replayCalls(P, P, parseAuditLines(ev('analyst', 'POST', 'c.test', 2379, '/v3/kv/put')));
    expect(r.changes).toEqual([]);
  });
});
