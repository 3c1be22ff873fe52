import { describe, expect, it } from 'vitest';
import { DestinationPolicy } from '../../../src/gateway/address.js';
import { UpstreamResolver, type LookupFn } from '../../../src/gateway/resolve.js';

/** A lookup that answers from a table the test changes, counting the lookups per name. */
function table(): { lookup: LookupFn; answers: Map<string, string[] | Error>; calls: Map<string, number> } {
  const answers = new Map<string, string[] | Error>();
  const calls = new Map<string, number>();
  const lookup: LookupFn = async (host) => {
    calls.set(host, (calls.get(host) ?? 0) + 1);
    await new Promise((r) => setImmediate(r)); // answers arrive later, as from a resolver
    const a = answers.get(host);
    if (a === undefined) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    if (a instanceof Error) throw a;
    return a.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return { lookup, answers, calls };
}

describe('UpstreamResolver: DNS answers reused for ttlMs', () => {
  it('reuses an answer until it is ttlMs old, then looks the name up again', async () => {
    const t = table();
    let now = 0;
    const r = new UpstreamResolver(new DestinationPolicy([]), new Map(), t.lookup, {
      ttlMs: 5_000,
      now: () => now,
    });
    t.answers.set('api.example', ['93.184.216.34']);
    expect(await r.resolve('api.example')).toMatchObject({ ok: true, address: '93.184.216.34' });
    now = 4_999;
    t.answers.set('api.example', ['93.184.216.35']);
    expect(await r.resolve('api.example')).toMatchObject({ ok: true, address: '93.184.216.34' });
    expect(t.calls.get('api.example')).toBe(1);
    now = 5_000;
    expect(await r.resolve('api.example')).toMatchObject({ ok: true, address: '93.184.216.35' });
    expect(t.calls.get('api.example')).toBe(2);
  });

  it('checks every address on every call: a cached answer is refused as soon as the policy would refuse it', async () => {
    const t = table();
    const r = new UpstreamResolver(new DestinationPolicy([]), new Map(), t.lookup, { ttlMs: 60_000 });
    // A rebinding answer mixing a public and a private address is refused, cached or not.
    t.answers.set('rebind.example', ['93.184.216.34', '169.254.169.254']);
    for (let i = 0; i < 3; i++)
      expect(await r.resolve('rebind.example')).toMatchObject({
        ok: false,
        reason: 'refused',
        addressClass: 'link-local',
      });
    expect(t.calls.get('rebind.example')).toBe(1);
  });

  it('shares one lookup between concurrent calls, and never keeps a failure', async () => {
    const t = table();
    const r = new UpstreamResolver(new DestinationPolicy([]), new Map(), t.lookup, { ttlMs: 60_000 });
    t.answers.set('busy.example', ['93.184.216.34']);
    const all = await Promise.all(Array.from({ length: 20 }, () => r.resolve('busy.example')));
    expect(all.every((a) => a.ok)).toBe(true);
    expect(t.calls.get('busy.example')).toBe(1);
    // A failure is answered, then asked again on the next call.
    expect(await r.resolve('gone.example')).toMatchObject({
      ok: false,
      reason: 'unresolvable',
      detail: 'ENOTFOUND',
    });
    t.answers.set('gone.example', ['93.184.216.36']);
    expect(await r.resolve('gone.example')).toMatchObject({ ok: true, address: '93.184.216.36' });
    expect(t.calls.get('gone.example')).toBe(2);
  });

  it('ttlMs 0 looks every call up; the cache is bounded by maxEntries', async () => {
    const t = table();
    const r0 = new UpstreamResolver(new DestinationPolicy([]), new Map(), t.lookup, { ttlMs: 0 });
    t.answers.set('a.example', ['93.184.216.34']);
    await r0.resolve('a.example');
    await r0.resolve('a.example');
    expect(t.calls.get('a.example')).toBe(2);
    const r = new UpstreamResolver(new DestinationPolicy([]), new Map(), t.lookup, {
      ttlMs: 60_000,
      maxEntries: 2,
    });
    for (const h of ['b.example', 'c.example', 'd.example']) t.answers.set(h, ['93.184.216.34']);
    await r.resolve('b.example');
    await r.resolve('c.example');
    await r.resolve('d.example'); // full: the cache starts again, holding d only
    await r.resolve('b.example');
    expect(t.calls.get('b.example')).toBe(2);
    await r.resolve('d.example');
    expect(t.calls.get('d.example')).toBe(1);
  });
});
