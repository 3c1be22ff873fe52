/**
 * Clock jumps (issue 15 section 1): the gateway enforces a session's TTL on a monotonic clock. The
 * control plane sends `expiresAtMs` (wall time); the SessionTable converts it once, when it learns
 * the session, so setting the wall clock back does not extend a session and setting it forward does
 * not end one early. Two fake clocks: `wall` (Date.now) and `mono` (performance.now).
 */
import { describe, expect, it } from 'vitest';
import { SessionTable } from '../../../src/gateway/sessions.js';

const DIGEST = 'a'.repeat(64);
const PASSWORD_FOR_NOTHING = 'x';

function clocks() {
  const c = { wall: 1_700_000_000_000, mono: 5_000 };
  const table = new SessionTable(
    () => c.wall,
    () => c.mono,
  );
  const advance = (ms: number): void => {
    c.wall += ms;
    c.mono += ms;
  };
  return { c, table, advance };
}

const session = (expiresAtMs: number) => ({
  id: 's1',
  role: 'r',
  address: '10.0.0.2',
  credentialSha256: DIGEST,
  expiresAtMs,
});

describe('SessionTable TTL on a monotonic clock', () => {
  it('the wall clock set back an hour does not extend a session', () => {
    const { c, table, advance } = clocks();
    table.upsert(session(c.wall + 10_000));
    advance(5_000);
    c.wall -= 3_600_000; // NTP step or an operator: wall time jumps back
    expect(table.isLive('s1')).toBe(true);
    advance(4_999);
    expect(table.isLive('s1')).toBe(true);
    advance(1);
    expect(table.isLive('s1')).toBe(false);
    expect(table.sweepExpired()).toBe(1);
    expect(table.identify('10.0.0.2', 's1', PASSWORD_FOR_NOTHING).ok).toBe(false);
  });

  it('the wall clock set forward an hour does not end a session early', () => {
    const { c, table, advance } = clocks();
    table.upsert(session(c.wall + 10_000));
    c.wall += 3_600_000;
    expect(table.sweepExpired()).toBe(0);
    expect(table.isLive('s1')).toBe(true);
    advance(10_000);
    expect(table.sweepExpired()).toBe(1);
  });

  it('a resync after the wall clock went back keeps the deadline learnt first', () => {
    const { c, table, advance } = clocks();
    const s = session(c.wall + 10_000);
    table.upsert(s);
    c.wall -= 3_600_000;
    table.replaceAll([{ ...s }]); // the control plane sends the same session again
    advance(10_000);
    expect(table.isLive('s1')).toBe(false);
  });

  it('a changed expiresAtMs (the control plane moved it) is converted anew', () => {
    const { c, table, advance } = clocks();
    const s = session(c.wall + 10_000);
    table.upsert(s);
    table.upsert({ ...s, expiresAtMs: c.wall + 2_000 });
    advance(2_000);
    expect(table.isLive('s1')).toBe(false);
  });

  it('one fake clock given alone drives both (older tests keep their meaning)', () => {
    let now = 1_000;
    const t = new SessionTable(() => now);
    t.upsert(session(2_000));
    expect(t.isLive('s1')).toBe(true);
    now = 2_000;
    expect(t.isLive('s1')).toBe(false);
  });
});
