import type http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/event.js';
import { MemoryAuditSink } from '../../../src/audit/file-sink.js';
import { AuditRingSink } from '../../../src/audit/ring-sink.js';
import { createAdminServer, listen } from '../../../src/gateway/admin.js';
import { SessionTable } from '../../../src/gateway/sessions.js';
import type { PolicySource } from '../../../src/policy/types.js';

const ev = (i: number): AuditEvent =>
  ({ time: new Date(1_700_000_000_000 + i).toISOString(), sessionId: 's1', path: `/${i}` }) as AuditEvent;

describe('AuditRingSink', () => {
  it('numbers events from 1, passes them on and pages after a sequence number', () => {
    const inner = new MemoryAuditSink();
    const ring = new AuditRingSink(inner, 10);
    expect(ring.page(0, 10)).toEqual({ events: [], last: 0, missed: 0 });
    for (let i = 1; i <= 5; i++) ring.emit(ev(i));
    expect(inner.events).toHaveLength(5);
    const p = ring.page(2, 2);
    expect(p.events.map((e) => [e.seq, e.event.path])).toEqual([
      [3, '/3'],
      [4, '/4'],
    ]);
    expect(p.last).toBe(5);
    expect(ring.acknowledged()).toBe(2);
    expect(ring.page(5, 10).events).toEqual([]);
  });

  it('keeps only the most recent events and reports what a reader missed', () => {
    const ring = new AuditRingSink(new MemoryAuditSink(), 3);
    for (let i = 1; i <= 8; i++) ring.emit(ev(i));
    const p = ring.page(2, 100);
    expect(p.events.map((e) => e.seq)).toEqual([6, 7, 8]);
    expect(p.missed).toBe(3); // 3, 4, 5 were overwritten
    expect(ring.page(6, 100)).toMatchObject({ missed: 0, last: 8 });
  });

  it('waitAcknowledged resolves when a read acknowledges the last event, or false after the timeout', async () => {
    const ring = new AuditRingSink(new MemoryAuditSink(), 10);
    await expect(ring.waitAcknowledged(1)).resolves.toBe(true); // nothing to wait for
    ring.emit(ev(1));
    ring.emit(ev(2));
    await expect(ring.waitAcknowledged(5)).resolves.toBe(false);
    const waiting = ring.waitAcknowledged(10_000);
    ring.page(1, 10);
    ring.page(2, 10); // acknowledges 2
    await expect(waiting).resolves.toBe(true);
  });
});

describe('GET /admin/audit', () => {
  const token = 'admin-token-0123456789';
  let server: http.Server;
  let base: string;
  const ring = new AuditRingSink(new MemoryAuditSink(), 100);
  beforeAll(async () => {
    const policy = { current: () => null, lastError: () => null } as unknown as PolicySource;
    server = createAdminServer({
      sessions: new SessionTable(),
      policy,
      token,
      instanceId: 'gw-1',
      audit: ring,
    });
    base = `http://127.0.0.1:${(await listen(server, 0, '127.0.0.1')).port}`;
    for (let i = 1; i <= 3; i++) ring.emit(ev(i));
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const get = (path: string, auth = token): Promise<Response> =>
    fetch(base + path, { headers: { authorization: `Bearer ${auth}` } });

  it('answers the events after `after` with the instance id and acknowledges `after`', async () => {
    const res = await get('/admin/audit?after=1&limit=1');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      instanceId: 'gw-1',
      events: [{ seq: 2, event: ev(2) }],
      last: 3,
      missed: 0,
    });
    expect(ring.acknowledged()).toBe(1);
    const all = (await (await get('/admin/audit')).json()) as { events: unknown[] };
    expect(all.events).toHaveLength(3);
  });

  it('needs the token and valid numbers', async () => {
    expect((await get('/admin/audit?after=0', 'wrong-token-0123456789')).status).toBe(401);
    expect((await get('/admin/audit?after=-1')).status).toBe(400);
    expect((await get('/admin/audit?after=x')).status).toBe(400);
    expect((await get('/admin/audit?limit=0')).status).toBe(400);
  });
});
