/**
 * decide(): the one decision pipeline of the plain, intercepted and CONNECT paths (src/gateway/
 * decide.ts), on a real compiled policy and the real resolver (host aliases only: nothing is looked
 * up). Pins the order of steps the module comment documents.
 */
import { describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../../src/audit/file-sink.js';
import { DestinationPolicy } from '../../../src/gateway/address.js';
import { decide, type Outcome } from '../../../src/gateway/decide.js';
import { Exchange } from '../../../src/gateway/exchange.js';
import { UpstreamResolver } from '../../../src/gateway/resolve.js';
import type { PolicySnapshot } from '../../../src/policy/types.js';
import type { GatewaySession } from '../../../src/sessions/types.js';
import { policy } from '../policy/helpers.js';

const compiled = policy(
  'p, analyst, forum.test, /posts/*, GET, allow',
  'p, analyst, forum.test, /posts/secret, GET, deny',
  'p, analyst, meta.test, /*, GET, allow',
  'p, analyst, pass.test, /, CONNECT, allow',
  'p, analyst, airlock.api, /sessions/analyst, CREATE, allow',
  'p, boss, forum.test, /posts/1, GET, allow',
);
const resolver = new UpstreamResolver(
  new DestinationPolicy(['192.0.2.0/24']),
  new Map([
    ['forum.test', '192.0.2.10'],
    ['pass.test', '192.0.2.11'],
    ['meta.test', '169.254.169.254'],
  ]),
);
const session: GatewaySession = {
  id: 's-1',
  role: 'analyst',
  address: '10.0.0.3',
  credentialSha256: '00',
  expiresAtMs: Date.now() + 60_000,
};

function exchange(method: string, url: string): Exchange {
  const u = /^(https?):\/\/([^/:]+)(?::(\d+))?(\/.*)?$/.exec(url)!;
  const scheme = u[1] as 'http' | 'https';
  const x = new Exchange(new MemoryAuditSink(), method, scheme, session, null);
  const port = u[3] ? Number(u[3]) : scheme === 'http' ? 80 : 443;
  x.setTarget({ host: u[2]!, port, path: u[4] ?? '', policyHost: u[2]!, url });
  return x;
}

async function run(
  method: string,
  url: string,
  opts: { mode?: 'forward' | 'intercept'; snapshot?: PolicySnapshot | null; creator?: string } = {},
): Promise<Outcome> {
  const snapshot = opts.snapshot === undefined ? compiled : opts.snapshot;
  const s = opts.creator ? { ...session, creator: opts.creator } : session;
  return decide(exchange(method, url), s, opts.mode ?? 'forward', {
    policy: { current: () => snapshot, lastError: () => null },
    resolver,
  });
}

function refusal(o: Outcome): { error: string; reason: string } {
  if (o.kind !== 'refuse') throw new Error(`expected a refusal, got ${o.kind}`);
  return { error: o.body.error, reason: o.reason };
}

describe('decide', () => {
  it('allows with the resolved, checked address to dial and the deciding rule', async () => {
    const o = await run('GET', 'http://forum.test/posts/1');
    expect(o).toMatchObject({ kind: 'allow', address: '192.0.2.10', policyVersion: compiled.version });
    expect(o.kind === 'allow' && o.rule).toContain('/posts/*');
  });

  it('refuses a deny rule with the contract body (deny overrides allow)', async () => {
    const o = await run('GET', 'http://forum.test/posts/secret');
    expect(refusal(o)).toEqual({ error: 'egress_denied', reason: 'rule_deny' });
    expect(o.kind === 'refuse' && o.body).toMatchObject({
      sessionId: 's-1',
      role: 'analyst',
      method: 'GET',
      url: 'http://forum.test/posts/secret',
      policyVersion: compiled.version,
    });
  });

  it('refuses airlock.api before anything else, even with no policy loaded', async () => {
    expect(refusal(await run('CREATE', 'http://airlock.api/sessions/analyst'))).toEqual({
      error: 'destination_refused',
      reason: 'destination_refused',
    });
    expect(refusal(await run('GET', 'http://airlock.api/', { snapshot: null }))).toEqual({
      error: 'destination_refused',
      reason: 'destination_refused',
    });
    expect(refusal(await run('CONNECT', 'https://airlock.api:443', { mode: 'intercept' })).error).toBe(
      'destination_refused',
    );
  });

  it('fails closed without a policy, in every mode', async () => {
    for (const [method, url, mode] of [
      ['GET', 'http://forum.test/posts/1', 'forward'],
      ['CONNECT', 'https://forum.test:443', 'intercept'],
      ['CONNECT', 'https://pass.test:443', 'forward'],
    ] as const) {
      const o = await run(method, url, { mode, snapshot: null });
      expect(refusal(o)).toEqual({ error: 'egress_denied', reason: 'no_policy' });
      expect(o.kind === 'refuse' && o.policyVersion).toBeNull();
    }
  });

  it('refuses a destination that resolves to a refused address class, naming the allow rule', async () => {
    const o = await run('GET', 'http://meta.test/latest/meta-data');
    expect(refusal(o)).toEqual({ error: 'destination_refused', reason: 'destination_refused' });
    expect(o.kind === 'refuse' && o.rule).toContain('meta.test');
  });

  it('intercept mode checks only that some allow rule names the host', async () => {
    expect((await run('CONNECT', 'https://forum.test:443', { mode: 'intercept' })).kind).toBe('intercept');
    expect(refusal(await run('CONNECT', 'https://other.test:443', { mode: 'intercept' }))).toEqual({
      error: 'egress_denied',
      reason: 'no_match',
    });
  });

  it('decides a passthrough CONNECT with path / and method CONNECT', async () => {
    expect(await run('CONNECT', 'https://pass.test:443')).toMatchObject({
      kind: 'allow',
      address: '192.0.2.11',
    });
    expect(refusal(await run('CONNECT', 'https://forum.test:443'))).toEqual({
      error: 'egress_denied',
      reason: 'no_match',
    });
  });

  it("a session never exceeds its creator: the creator's deny gets the creator's hint", async () => {
    const o = await run('GET', 'http://forum.test/posts/2', { creator: 'boss' });
    expect(refusal(o)).toEqual({ error: 'egress_denied', reason: 'no_match' });
    expect(o.kind === 'refuse' && o.body.error === 'egress_denied' && o.body.hint).toContain('"boss"');
    expect((await run('GET', 'http://forum.test/posts/1', { creator: 'boss' })).kind).toBe('allow');
    const tunnel = await run('CONNECT', 'https://meta.test:443', { mode: 'intercept', creator: 'boss' });
    expect(refusal(tunnel).reason).toBe('no_match');
  });
});

describe('Exchange', () => {
  it('writes exactly one audit event, whatever calls finish()', () => {
    const sink = new MemoryAuditSink();
    const x = new Exchange(sink, 'GET', 'http', session, 'v1');
    x.setTarget({ host: 'forum.test', port: 80, path: '/posts/1', policyHost: 'forum.test', url: '' });
    x.allow('policy.csv:1', 'v1');
    x.finish();
    x.finish();
    expect(sink.events).toHaveLength(1);
    expect(sink.events[0]).toMatchObject({
      decision: 'allow',
      reason: 'rule_allow',
      path: '/posts/1',
      policyVersion: 'v1',
    });
  });

  it('records a query as its length and digest; the text only with audit.query: full', () => {
    const sink = new MemoryAuditSink();
    for (const full of [false, true]) {
      const x = new Exchange(sink, 'GET', 'http', session, 'v1');
      x.recordQuery = full;
      x.setTarget({
        host: 'a.test',
        port: 80,
        path: '/s',
        policyHost: 'a.test',
        url: '',
        query: '?q=secret',
      });
      x.finish();
    }
    expect(sink.events[0]).toMatchObject({
      queryBytes: 8,
      querySha256: expect.stringMatching(/^[0-9a-f]{16}$/),
    });
    expect(sink.events[0]!.query).toBeUndefined();
    expect(sink.events[1]).toMatchObject({ queryBytes: 8, query: 'q=secret' });
  });

  it('audits an upstream failure of an allowed call as allow, a refusal as deny', () => {
    const sink = new MemoryAuditSink();
    const failed = new Exchange(sink, 'GET', 'http', session, 'v1');
    failed.refuse({
      kind: 'refuse',
      reason: 'upstream_error',
      rule: 'r',
      policyVersion: 'v1',
      body: { error: 'upstream_unreachable', detail: 'x' },
    });
    const denied = new Exchange(sink, 'GET', 'http', session, 'v1');
    denied.refuse({
      kind: 'refuse',
      reason: 'destination_refused',
      rule: null,
      policyVersion: 'v1',
      body: { error: 'destination_refused', detail: 'x' },
    });
    failed.finish();
    denied.finish();
    expect(sink.events.map((e) => [e.decision, e.status])).toEqual([
      ['allow', 502],
      ['deny', 403],
    ]);
  });
});
