/**
 * Budget counters shared by the workers of a multi-worker gateway (src/gateway/budgets.ts
 * `SharedBudgets` / `answerBudgetQuery`) and the bytes meter of long-lived channels (`exhausted`).
 * The primary's side is the real `BudgetCounters`; the IPC channel is replaced by an asynchronous
 * in-process hand-off (a message per event-loop turn, as process.send delivers).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  answerBudgetQuery,
  BudgetCounters,
  SharedBudgets,
  type BudgetQuery,
} from '../../../src/gateway/budgets.js';
import { parseBudgets } from '../../../src/policy/budgets.js';

const set = parseBudgets(
  [
    'version: 1',
    'budgets:',
    '  - name: role-calls',
    '    role: agent',
    '    host: api.test',
    '    methods: [GET]',
    '    per: role',
    '    requestsPerMinute: 3',
    '  - name: session-bytes',
    '    role: agent',
    '    host: api.test',
    '    methods: [POST, CONNECT]',
    '    bytesOutPerHour: 100',
    '',
  ].join('\n'),
);
const a = { id: 's-a', role: 'agent' };
const b = { id: 's-b', role: 'agent' };

/** Two workers' SharedBudgets talking to one primary's counters; counts the queries sent. */
function cluster(): { primary: BudgetCounters; workers: SharedBudgets[]; queries: BudgetQuery[] } {
  const primary = new BudgetCounters();
  const queries: BudgetQuery[] = [];
  const workers: SharedBudgets[] = [];
  for (let i = 0; i < 2; i++) {
    const w: SharedBudgets = new SharedBudgets((q) => {
      queries.push(q);
      setImmediate(() => w.receive(answerBudgetQuery(primary, q)));
    });
    workers.push(w);
  }
  return { primary, workers, queries };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('SharedBudgets (multi-worker: counted in the primary)', () => {
  it('a per-role request budget holds across workers', async () => {
    const { workers } = cluster();
    const results = [];
    for (let i = 0; i < 5; i++)
      results.push(await workers[i % 2]!.admit(set, i % 2 ? b : a, 'api.test', 'GET', null));
    expect(results.map((r) => r.ok)).toEqual([true, true, true, false, false]);
    expect(results[3]).toMatchObject({ ok: false, what: 'requestsPerMinute' });
    expect((results[3] as { budget: { name: string } }).budget.name).toBe('role-calls');
  });

  it('a call no budget applies to sends nothing to the primary', async () => {
    const { workers, queries } = cluster();
    expect(await workers[0]!.admit(set, a, 'other.test', 'GET', null)).toEqual({ ok: true, meter: null });
    expect(queries).toHaveLength(0);
  });

  it("bytes counted on one worker are seen by the next call on the other (the session's budget)", async () => {
    const { workers } = cluster();
    const first = await workers[0]!.admit(set, a, 'api.test', 'POST', null);
    expect(first.ok).toBe(true);
    if (!first.ok) return;
    first.meter!.addBytesOut(40);
    first.meter!.addBytesOut(40); // same turn: one message
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    // 80 of 100 used: a declared 30 would cross it, a declared 20 would not.
    expect((await workers[1]!.admit(set, a, 'api.test', 'POST', 30)).ok).toBe(false);
    expect((await workers[1]!.admit(set, a, 'api.test', 'POST', 20)).ok).toBe(true);
    // Another session has its own bytes counter (per: session).
    expect((await workers[1]!.admit(set, b, 'api.test', 'POST', 90)).ok).toBe(true);
  });

  it('a meter turns exhausted once the primary counted bytes past the budget', async () => {
    const { workers } = cluster();
    const r = await workers[0]!.admit(set, a, 'api.test', 'CONNECT', null);
    if (!r.ok) throw new Error('refused');
    r.meter!.addBytesOut(100);
    for (let i = 0; i < 4; i++) await new Promise((res) => setImmediate(res));
    expect(r.meter!.exhausted).toBe(false); // exactly at the budget: nothing went past it
    r.meter!.addBytesOut(1);
    for (let i = 0; i < 4; i++) await new Promise((res) => setImmediate(res));
    expect(r.meter!.exhausted).toBe(true);
  });

  it('no answer from the primary within 5 s: the call is refused (fail closed)', async () => {
    vi.useFakeTimers();
    const silent = new SharedBudgets(() => undefined);
    const pending = silent.admit(set, a, 'api.test', 'GET', null);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(await pending).toMatchObject({ ok: false, what: 'requestsPerMinute', retryAfterSeconds: 1 });
    // A bytes budget is named as such (the 429 body quotes the figure that applies).
    const bytes = silent.admit(set, a, 'api.test', 'POST', null);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(await bytes).toMatchObject({ ok: false, what: 'bytesOutPerHour' });
  });
});

describe('BudgetCounters meters (one process)', () => {
  it('exhausted: only once the counted bytes are past bytesOutPerHour', () => {
    let now = 1_000_000;
    const c = new BudgetCounters(() => now);
    const r = c.admit(set, a, 'api.test', 'CONNECT', null);
    if (!r.ok) throw new Error('refused');
    r.meter!.addBytesOut(100);
    expect(r.meter!.exhausted).toBe(false);
    r.meter!.addBytesOut(1);
    expect(r.meter!.exhausted).toBe(true);
    // The window renews after an hour.
    now += 3_600_000;
    expect(r.meter!.exhausted).toBe(false);
  });
});
