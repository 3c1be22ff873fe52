/**
 * How the primary of a multi-worker gateway picks the worker for a connection (src/gateway/cluster.ts
 * `pickWorker`): by source address, stable, spread over the workers, and when a worker is away only
 * its own addresses move.
 */
import { describe, expect, it } from 'vitest';
import { pickWorker } from '../../../src/gateway/cluster.js';

const addresses = Array.from({ length: 1_000 }, (_, i) => `172.${16 + (i >> 8)}.${i & 255}.2`);

describe('pickWorker', () => {
  it('always picks the same worker for one address', () => {
    for (const a of addresses.slice(0, 50)) {
      const w = pickWorker(a, [1, 2, 3, 4]);
      for (let i = 0; i < 5; i++) expect(pickWorker(a, [1, 2, 3, 4])).toBe(w);
    }
  });

  it('spreads addresses over every worker (within 25 % of an even share)', () => {
    for (const n of [2, 4, 8]) {
      const ids = Array.from({ length: n }, (_, i) => i + 1);
      const counts = new Map<number, number>();
      for (const a of addresses) {
        const w = pickWorker(a, ids)!;
        counts.set(w, (counts.get(w) ?? 0) + 1);
      }
      expect([...counts.keys()].sort((x, y) => x - y)).toEqual(ids);
      for (const c of counts.values()) {
        expect(c).toBeGreaterThan((addresses.length / n) * 0.75);
        expect(c).toBeLessThan((addresses.length / n) * 1.25);
      }
    }
  });

  it('a worker that is away moves only its own addresses, and they come back to it', () => {
    for (const a of addresses) {
      const all = pickWorker(a, [1, 2, 3])!;
      const without2 = pickWorker(a, [1, 3])!;
      if (all !== 2) expect(without2).toBe(all);
      else expect([1, 3]).toContain(without2);
    }
  });

  it('no worker ready: undefined', () => {
    expect(pickWorker('10.0.0.1', [])).toBeUndefined();
  });
});
