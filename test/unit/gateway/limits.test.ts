/**
 * Per-session limits (issue 13 section 2): config keys and defaults, the gateway's counters, and one
 * upstream pool per session and origin.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import type { ConfigError } from '../../../src/errors.js';
import { gatewayServiceSchema } from '../../../src/gateway-wire/config.js';
import type { GatewaySession } from '../../../src/gateway-wire/session.js';
import { SessionLimits } from '../../../src/gateway/limits.js';
import { withGatewayDefaults } from '../../../src/gateway/options.js';
import { UpstreamDispatchers } from '../../../src/gateway/upstream.js';
import { gatewayLimitsSchema } from '../../../src/config/schema.js';

const DEFAULTS = {
  concurrentRequests: 64,
  connections: 128,
  tunnels: 64,
  upstreamConnectionsPerOrigin: 32,
  bodyMinBytesPerSecond: 1024,
  bodyRateWindowMs: 10_000,
  bodyMaxMs: 600_000,
  bufferedBodyBytes: 1_048_576,
  clientHeadersTimeoutMs: 30_000,
  clientRequestTimeoutMs: 660_000,
};

describe('gateway.limits config', () => {
  it('has safe defaults, the same in the config file, the gateway process and the options', () => {
    expect(parseConfig({}, '/base').gateway.limits).toEqual(DEFAULTS);
    expect(gatewayServiceSchema.parse({ policyDir: '/p', auditFile: '/a' }).limits).toEqual(DEFAULTS);
    const opts = withGatewayDefaults({} as Parameters<typeof withGatewayDefaults>[0]);
    expect(opts.limits).toEqual(DEFAULTS);
    expect(parseConfig({ gateway: { limits: { tunnels: 3 } } }, '/base').gateway.limits.tunnels).toBe(3);
  });

  it('names the key of a wrong or unknown value', () => {
    const err = (raw: unknown): ConfigError => {
      try {
        parseConfig(raw, '/base');
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('expected a ConfigError');
    };
    expect(err({ gateway: { limits: { concurrentRequests: 0 } } }).path).toBe(
      'gateway.limits.concurrentRequests',
    );
    expect(err({ gateway: { limits: { tunnel: 1 } } }).path).toBe('gateway.limits.tunnel');
    expect(
      err({ gateway: { limits: { clientHeadersTimeoutMs: 5_000, clientRequestTimeoutMs: 1_000 } } }).message,
    ).toMatch(/clientRequestTimeoutMs must not be below clientHeadersTimeoutMs/);
    expect(gatewayLimitsSchema.safeParse({ bodyMinBytesPerSecond: -1 }).success).toBe(false);
  });
});

/** A stand-in socket: only `close` matters to the counters. */
const fakeSocket = (): Socket => new EventEmitter() as unknown as Socket;
const session = (id: string): GatewaySession => ({
  id,
  role: 'r',
  address: `10.0.0.${id.length}`,
  credentialSha256: '00',
  expiresAtMs: Number.MAX_SAFE_INTEGER,
});

describe('SessionLimits', () => {
  const limits = { ...DEFAULTS, concurrentRequests: 2, connections: 2, tunnels: 1 };

  it('counts requests per session and releases them', () => {
    const l = new SessionLimits(limits);
    const a = session('a');
    const s = fakeSocket();
    expect(l.admitRequest(a, s, 'v1')).toBeNull();
    expect(l.admitRequest(a, s, 'v1')).toBeNull();
    const over = l.admitRequest(a, s, 'v1');
    expect(over).toMatchObject({
      reason: 'limit_exceeded',
      body: { error: 'limit_exceeded', limit: 'concurrentRequests', sessionId: 'a' },
      headers: { 'retry-after': '1' },
    });
    expect(l.admitRequest(session('bb'), s, 'v1')).toBeNull(); // another session is not affected
    l.releaseRequest('a');
    expect(l.admitRequest(a, s, 'v1')).toBeNull();
    l.releaseRequest('a');
    l.releaseRequest('a');
    l.releaseRequest('bb');
    expect(l.activeSessions).toBe(0); // memory follows activity
  });

  it('marks connections over the limit and refuses their requests and tunnels', () => {
    const l = new SessionLimits(limits);
    const a = session('a');
    const [c1, c2, c3] = [fakeSocket(), fakeSocket(), fakeSocket()];
    l.connectionOpened(c1, a);
    l.connectionOpened(c2, a);
    l.connectionOpened(c3, a);
    expect(l.isOverConnectionLimit(c3)).toBe(true);
    expect(l.admitRequest(a, c3, null)?.body).toMatchObject({ limit: 'connections' });
    expect(l.admitTunnel(a, c3, null)?.body).toMatchObject({ limit: 'connections' });
    (c1 as unknown as EventEmitter).emit('close');
    const c4 = fakeSocket();
    l.connectionOpened(c4, a);
    expect(l.isOverConnectionLimit(c4)).toBe(false);
    l.connectionOpened(fakeSocket(), null); // no session at the address: not counted
    expect(l.usage('a').connections).toBe(2);
  });

  it('counts tunnels until their socket closes', () => {
    const l = new SessionLimits(limits);
    const a = session('a');
    const t1 = fakeSocket();
    expect(l.admitTunnel(a, t1, null)).toBeNull();
    expect(l.admitTunnel(a, fakeSocket(), null)?.body).toMatchObject({ limit: 'tunnels' });
    (t1 as unknown as EventEmitter).emit('close');
    expect(l.admitTunnel(a, fakeSocket(), null)).toBeNull();
  });
});

describe('UpstreamDispatchers: one pool per session and origin', () => {
  const opts = { connectTimeoutMs: 1_000, headersTimeoutMs: 1_000, bodyTimeoutMs: 1_000 };

  it('gives each session its own pool for the same origin, and reuses it', async () => {
    const u = new UpstreamDispatchers(opts);
    const a1 = u.forTarget('http', '127.0.0.1', 80, 'x.test', 'a');
    const a2 = u.forTarget('http', '127.0.0.1', 80, 'x.test', 'a');
    const b = u.forTarget('http', '127.0.0.1', 80, 'x.test', 'b');
    expect(a1.dispatcher).toBe(a2.dispatcher);
    expect(b.dispatcher).not.toBe(a1.dispatcher);
    expect(a1.origin).toBe('http://127.0.0.1:80');
    const tlsA = u.forTarget('https', '::1', 443, 'x.test', 'a');
    expect(tlsA.origin).toBe('https://[::1]:443');
    expect(u.forTarget('https', '::1', 443, 'y.test', 'a').dispatcher).not.toBe(tlsA.dispatcher);
    expect(u.size).toBe(4);
    await u.close();
  });

  it('never hands a repeated call a pool that was closed (kill switch, sweep, eviction)', async () => {
    const live = new Set(['a']);
    const u = new UpstreamDispatchers({ ...opts, poolIdleMs: 0, maxPools: 1, isLive: (id) => live.has(id) });
    const call = () => u.forTarget('http', '127.0.0.1', 80, 'x.test', 'a').dispatcher;
    const first = call();
    expect(call()).toBe(first); // the same session and upstream again: the same pool
    u.closeSession('a'); // kill switch
    const second = call();
    expect(second).not.toBe(first);
    u.sweep(Date.now() + 1); // idle
    const third = call();
    expect(third).not.toBe(second);
    u.forTarget('http', '127.0.0.2', 80, 'x.test', 'a'); // evicts the least recently used (maxPools 1)
    expect(call()).not.toBe(third);
    live.delete('a');
    const before = call();
    u.sweep(); // the session ended
    expect(call()).not.toBe(before);
    await u.close();
  });

  it('closes idle pools and those of ended sessions; keeps at most maxPools', async () => {
    const live = new Set(['a', 'b']);
    const u = new UpstreamDispatchers({
      ...opts,
      poolIdleMs: 60_000,
      maxPools: 3,
      isLive: (id) => live.has(id),
    });
    u.forTarget('http', '127.0.0.1', 80, 'x', 'a');
    u.forTarget('http', '127.0.0.1', 80, 'x', 'b');
    live.delete('b');
    expect(u.sweep()).toBe(1);
    expect(u.size).toBe(1);
    expect(u.sweep(Date.now() + 61_000)).toBe(1); // idle
    expect(u.size).toBe(0);
    for (const id of ['a', 'c', 'd', 'e']) {
      live.add(id);
      u.forTarget('http', '127.0.0.1', 80, 'x', id);
    }
    expect(u.size).toBe(3);
    u.closeSession('e');
    expect(u.size).toBe(2);
    await u.close();
  });
});
