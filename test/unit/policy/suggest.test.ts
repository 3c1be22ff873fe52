/**
 * `airlock policy suggest` (src/policy/suggest.ts): generalisation rules, mutation methods kept
 * exact, deny rules respected, and the tests and diff it produces.
 */
import { describe, expect, it } from 'vitest';
import { runPolicyTestFiles } from '../../../src/policy/policy-tests.js';
import {
  generalisePaths,
  isIdSegment,
  parseObservedLines,
  suggestPolicy,
  type ObservedCall,
} from '../../../src/policy/suggest.js';
import { policy, verdict } from './helpers.js';

function call(
  role: string | null,
  method: string,
  url: string,
  extra: Partial<Pick<ObservedCall, 'sessionId' | 'time' | 'reason'>> = {},
): ObservedCall | null {
  if (role === null) return null;
  const u = new URL(url);
  const scheme = u.protocol === 'https:' ? 'https' : 'http';
  const port = u.port === '' ? (scheme === 'https' ? 443 : 80) : Number(u.port);
  return {
    role,
    method,
    scheme,
    host: u.hostname,
    port,
    path: method === 'CONNECT' ? '' : u.pathname,
    sessionId: 's1',
    time: '2026-11-23T10:00:00.000Z',
    reason: 'no_match',
    ...extra,
  };
}

const BASE = policy(
  'p, base, c.test:2379, /v3/auth/*, *, deny',
  'p, base, c.test:2379, /v3/kv/put, *, deny',
  'g, agent, base',
  'p, agent, f.test, /health, GET, allow',
);

describe('isIdSegment', () => {
  it('numbers, UUIDs and hex strings of 16+ digits are ids; words and short hex are not', () => {
    for (const s of [
      '1',
      '42',
      '0007',
      '123e4567-e89b-12d3-a456-426614174000',
      'deadbeefdeadbeef',
      '4b825dc642cb6eb9a060e54bf8d69288fbee4904',
    ]) {
      expect(isIdSegment(s)).toBe(true);
    }
    for (const s of ['posts', 'v3', 'abc123', 'cafe', 'deadbeef', '123e4567-e89b-12d3-a456', 'user-1', '']) {
      expect(isIdSegment(s)).toBe(false);
    }
  });
});

describe('generalisePaths', () => {
  it('an id position becomes :id only when at least two different ids were observed there', () => {
    expect(generalisePaths(['/posts/1'])).toEqual(['/posts/1']);
    expect(generalisePaths(['/posts/1', '/posts/1'])).toEqual(['/posts/1']);
    expect(generalisePaths(['/posts/1', '/posts/2'])).toEqual(['/posts/:id']);
    expect(generalisePaths(['/posts/1/comments', '/posts/2/comments'])).toEqual(['/posts/:id/comments']);
    // The id that never varied stays literal.
    expect(generalisePaths(['/a/7/b/1', '/a/7/b/2'])).toEqual(['/a/7/b/:id']);
    // Different shapes are generalised separately.
    expect(generalisePaths(['/posts/1', '/posts/2/comments'])).toEqual(['/posts/1', '/posts/2/comments']);
  });

  it('UUIDs and long hex hashes are ids; a non-id sibling stays exact', () => {
    expect(
      generalisePaths([
        '/items/0f8c2a9e-5b1d-4c3e-9a7f-1e2d3c4b5a69',
        '/items/7d3e1f20-8a4b-4c5d-b6e7-f8091a2b3c4d',
        '/items/new',
      ]),
    ).toEqual(['/items/:id', '/items/new']);
    expect(
      generalisePaths([
        '/blobs/4b825dc642cb6eb9a060e54bf8d69288fbee4904',
        '/blobs/e69de29bb2d1d6434b8b29ae775ad8c2e48c5391',
      ]),
    ).toEqual(['/blobs/:id']);
    // Short hex is a name, not an id.
    expect(generalisePaths(['/x/cafe', '/x/beef'])).toEqual(['/x/beef', '/x/cafe']);
  });

  it('a tail /* needs 3 distinct next segments under a prefix of at least one segment', () => {
    expect(generalisePaths(['/docs/a', '/docs/b'])).toEqual(['/docs/a', '/docs/b']);
    expect(generalisePaths(['/docs/a', '/docs/b', '/docs/c/d', '/docs'])).toEqual(['/docs/*']);
    // An :id counts once among the siblings.
    expect(generalisePaths(['/docs/1', '/docs/2', '/docs/a'])).toEqual(['/docs/:id', '/docs/a']);
    // The root is never generalised.
    expect(generalisePaths(['/a', '/b', '/c', '/d'])).toEqual(['/a', '/b', '/c', '/d']);
    // The shallowest justified prefix wins; others stay as they are.
    expect(generalisePaths(['/r/x/1', '/r/y', '/r/z', '/s/1'])).toEqual(['/r/*', '/s/1']);
  });

  it('a trailing slash is not significant', () => {
    expect(generalisePaths(['/posts/', '/'])).toEqual(['/', '/posts']);
  });
});

describe('suggestPolicy', () => {
  it('generalises safe methods, keeps mutations exact, and the proposal allows every denied call', () => {
    const calls = [
      call('agent', 'GET', 'http://f.test/posts/1'),
      call('agent', 'GET', 'http://f.test/posts/2'),
      call('agent', 'HEAD', 'http://f.test/posts/3'),
      call('agent', 'DELETE', 'http://f.test/posts/1'),
      call('agent', 'DELETE', 'http://f.test/posts/2'),
      call('agent', 'PUT', 'http://f.test/posts/1'),
      call('agent', 'POST', 'http://c.test:2379/v3/kv/range'),
      call('agent', 'CONNECT', 'https://t.test/'),
      call('agent', 'GET', 'http://f.test/health', { reason: 'rule_allow' }),
    ];
    const r = suggestPolicy(BASE, calls);
    expect(r.lines.map((l) => l.text)).toEqual([
      'p, agent, c.test:2379, /v3/kv/range, POST, allow',
      'p, agent, f.test, /posts/1, DELETE, allow',
      'p, agent, f.test, /posts/2, DELETE, allow',
      'p, agent, f.test, /posts/:id, GET, allow',
      'p, agent, f.test, /posts/3, HEAD, allow',
      'p, agent, f.test, /posts/1, PUT, allow',
      'p, agent, t.test, /, CONNECT, allow',
    ]);
    expect(r.allowed.map((o) => o.request.path)).toEqual(['/health']);
    expect(r.blocked).toEqual([]);
    // A DELETE never observed stays denied.
    expect(verdict(r.proposed, 'agent', 'DELETE', 'http://f.test/posts/3')).toBe('deny');
    expect(verdict(r.proposed, 'agent', 'GET', 'http://f.test/posts/99')).toBe('allow');
    // Each line is preceded by a comment naming what it covers.
    expect(r.addition).toContain(
      '# suggested from 2 denied calls: GET f.test /posts/1, /posts/2\np, agent, f.test, /posts/:id, GET, allow\n',
    );
    expect(r.proposedPolicyText.startsWith(BASE.source.policyText)).toBe(true);
    for (const l of r.lines) expect(r.proposedPolicyText.split('\n')[l.line - 1]).toBe(l.text);
    // The diff: every denied call becomes allowed; the allowed one is unchanged.
    expect(r.diff.changes.every((c) => !c.old.allowed && c.new.allowed)).toBe(true);
    expect(r.diff.changes).toHaveLength(8);
    // The generated tests pass against the proposal and fail against the current policy.
    expect(r.testFailures).toBe(0);
    const file = { file: 'tests/suggested.yaml', text: r.tests };
    expect(runPolicyTestFiles(r.proposed, [file]).failures).toEqual([]);
    expect(runPolicyTestFiles(BASE, [file]).failures.length).toBe(8);
    expect(r.lint).toEqual([]);
  });

  it('respects deny rules: a call a deny blocks gets no line; its rule is named', () => {
    const r = suggestPolicy(BASE, [
      call('agent', 'POST', 'http://c.test:2379/v3/kv/put'),
      call('agent', 'GET', 'http://c.test:2379/v3/auth/a'),
      call('agent', 'GET', 'http://c.test:2379/v3/auth/b'),
      call('agent', 'GET', 'http://c.test:2379/v3/auth/c'),
    ]);
    expect(r.lines).toEqual([]);
    expect(r.addition).toBe('');
    expect(r.blocked.map((o) => [o.request.method, o.request.path, o.decision.rule])).toEqual([
      ['GET', '/v3/auth/a', 'policy.csv:1: p, base, c.test:2379, /v3/auth/*, *, deny'],
      ['GET', '/v3/auth/b', 'policy.csv:1: p, base, c.test:2379, /v3/auth/*, *, deny'],
      ['GET', '/v3/auth/c', 'policy.csv:1: p, base, c.test:2379, /v3/auth/*, *, deny'],
      ['POST', '/v3/kv/put', 'policy.csv:2: p, base, c.test:2379, /v3/kv/put, *, deny'],
    ]);
    expect(r.tests).toContain('expect: deny');
    expect(r.testFailures).toBe(0);
    expect(r.diff.changes).toEqual([]);
  });

  it('a generalised line never lifts a deny it overlaps', () => {
    const r = suggestPolicy(BASE, [
      call('agent', 'GET', 'http://c.test:2379/v3/x/a'),
      call('agent', 'GET', 'http://c.test:2379/v3/y'),
      call('agent', 'GET', 'http://c.test:2379/v3/z'),
    ]);
    expect(r.lines.map((l) => l.text)).toEqual(['p, agent, c.test:2379, /v3/*, GET, allow']);
    expect(verdict(r.proposed, 'agent', 'GET', 'http://c.test:2379/v3/auth/users')).toBe('deny');
    expect(r.lint.map((f) => f.id)).toEqual([]);
  });

  it('filters by role, session and time; skips unidentified callers and non-policy refusals', () => {
    const calls = [
      call('agent', 'GET', 'http://f.test/a', { sessionId: 's1', time: '2026-11-23T10:00:00Z' }),
      call('agent', 'GET', 'http://f.test/b', { sessionId: 's2', time: '2026-11-23T11:00:00Z' }),
      call('other', 'GET', 'http://f.test/c', { time: '2026-11-23T12:00:00Z' }),
      call('agent', 'GET', 'http://f.test/d', { reason: 'bad_credential' }),
      call(null, 'GET', 'http://f.test/e'),
    ];
    const paths = (f: Parameters<typeof suggestPolicy>[2]): string[] =>
      suggestPolicy(BASE, calls, f).lines.map((l) => `${l.role} ${l.path}`);
    expect(paths({})).toEqual(['agent /a', 'agent /b', 'other /c']);
    expect(paths({ role: 'agent' })).toEqual(['agent /a', 'agent /b']);
    expect(paths({ session: 's2' })).toEqual(['agent /b']);
    expect(paths({ since: new Date('2026-11-23T10:30:00Z') })).toEqual(['agent /b', 'other /c']);
    const r = suggestPolicy(BASE, calls, { role: 'agent' });
    expect(r.skipped).toEqual({ noRole: 1, badTarget: 0, notPolicy: 1, filtered: 1, unrepresentable: 0 });
  });

  it('never writes a path policy.csv would misread', () => {
    const r = suggestPolicy(BASE, [
      call('agent', 'GET', 'http://f.test/a/:b'),
      call('agent', 'GET', 'http://f.test/a*'),
    ]);
    expect(r.lines).toEqual([]);
    expect(r.skipped.unrepresentable).toBe(2);
  });
});

describe('parseObservedLines', () => {
  it('keeps session, time and reason; MCP messages become calls; errors name the line', () => {
    const ev = {
      time: '2026-11-23T10:00:00.000Z',
      sessionId: 's9',
      role: 'agent',
      method: 'POST',
      scheme: 'http',
      host: 'm.test',
      port: 80,
      path: '/mcp',
      reason: 'rule_allow',
      mcp: { endpoint: 'm', batch: false, messages: [{ method: 'tools/call', path: '/mcp/tools/search' }] },
    };
    const out = parseObservedLines(`\n${JSON.stringify(ev)}\n`);
    expect(out.map((c) => [c?.method, c?.path, c?.sessionId, c?.reason])).toEqual([
      ['POST', '/mcp', 's9', 'rule_allow'],
      ['MCP', '/mcp/tools/search', 's9', 'rule_allow'],
    ]);
    expect(() => parseObservedLines(`${JSON.stringify(ev)}\n{"role": 1}\n`)).toThrow(/^line 2: field "role"/);
  });

  it('learns from would_deny events (complain mode) like denials; an intercepted CONNECT is not learned', () => {
    const base = { time: '2026-11-23T10:00:00.000Z', sessionId: 's1', role: 'agent', reason: 'no_match' };
    const text = [
      // the tunnel the gateway opened in complain mode, and a GET inside it
      {
        ...base,
        method: 'CONNECT',
        scheme: 'https',
        host: 'g.test',
        port: 443,
        path: '',
        decision: 'would_deny',
        requests: 1,
      },
      {
        ...base,
        method: 'GET',
        scheme: 'https',
        host: 'g.test',
        port: 443,
        path: '/repo/info/refs',
        decision: 'would_deny',
      },
      // a refused CONNECT (no tunnel opened) is a denial to learn from
      { ...base, method: 'CONNECT', scheme: 'https', host: 'h.test', port: 443, path: '', decision: 'deny' },
    ]
      .map((e) => JSON.stringify(e))
      .join('\n');
    const r = suggestPolicy(BASE, parseObservedLines(text));
    expect(r.lines.map((l) => l.text)).toEqual([
      'p, agent, g.test, /repo/info/refs, GET, allow',
      'p, agent, h.test, /, CONNECT, allow',
    ]);
    expect(r.skipped.notPolicy).toBe(1);
  });
});
