import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/event.js';
import { FileAuditSink } from '../../../src/audit/file-sink.js';
import { AuditRing } from '../../../src/audit/ring-sink.js';
import { createAdminServer, listen } from '../../../src/gateway/admin.js';
import { SessionTable } from '../../../src/gateway/sessions.js';
import type { PolicySource } from '../../../src/policy/types.js';

const ev = (i: number): AuditEvent =>
  ({ time: new Date(1_700_000_000_000 + i).toISOString(), sessionId: 's1', path: `/${i}` }) as AuditEvent;

describe('AuditRing', () => {
  const emit = (ring: AuditRing, e: AuditEvent): void => ring.push(JSON.stringify(e));
  it('numbers lines from 1 and pages after a sequence number', () => {
    const ring = new AuditRing(10);
    expect(ring.page(0, 10)).toEqual({ events: [], last: 0, missed: 0 });
    for (let i = 1; i <= 5; i++) emit(ring, ev(i));
    const p = ring.page(2, 2);
    expect(p.events.map((e) => [e.seq, (JSON.parse(e.line) as AuditEvent).path])).toEqual([
      [3, '/3'],
      [4, '/4'],
    ]);
    expect(p.last).toBe(5);
    expect(ring.acknowledged()).toBe(2);
    expect(ring.page(5, 10).events).toEqual([]);
  });

  it('keeps only the most recent events and reports what a reader missed', () => {
    const ring = new AuditRing(3);
    for (let i = 1; i <= 8; i++) emit(ring, ev(i));
    const p = ring.page(2, 100);
    expect(p.events.map((e) => e.seq)).toEqual([6, 7, 8]);
    expect(p.missed).toBe(3); // 3, 4, 5 were overwritten
    expect(ring.page(6, 100)).toMatchObject({ missed: 0, last: 8 });
  });

  it('is fed every line the file sink queues, and an event dropped from the file without its chain link', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-ring-'));
    try {
      const ring = new AuditRing(10);
      const sink = new FileAuditSink(path.join(dir, 'audit.jsonl'), false, {
        onLine: ring.push,
        maxBufferedBytes: 150, // the second event does not fit while the first is still queued
      });
      sink.emit(ev(1));
      sink.emit(ev(2));
      await sink.close();
      const lines = ring.page(0, 10).events.map((e) => JSON.parse(e.line) as AuditEvent);
      expect(lines.map((e) => e.path)).toEqual(['/1', '/2']);
      expect(lines[0]!.chain).toMatchObject({ seq: 1, prev: null });
      expect(lines[1]!.chain).toBeUndefined();
      expect(readFileSync(path.join(dir, 'audit.jsonl'), 'utf8').trim()).toBe(
        ring.page(0, 1).events[0]!.line,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('holds a contiguous, intact run of the newest lines within its byte bound (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.string({ unit: 'binary', minLength: 1, maxLength: 900 }), {
          minLength: 1,
          maxLength: 200,
        }),
        (capacity, texts) => {
          const ring = new AuditRing(capacity, 4096);
          const lines = texts.map((t, i) => JSON.stringify({ i, t }));
          for (const l of lines) ring.push(l);
          const p = ring.page(0, 1_000);
          expect(p.last).toBe(lines.length);
          const first = p.events[0]?.seq ?? lines.length + 1;
          expect(p.missed).toBe(first - 1);
          expect(p.events.map((e) => e.seq)).toEqual(p.events.map((_, k) => first + k));
          expect(p.events.length).toBeLessThanOrEqual(capacity);
          for (const e of p.events) {
            const want = lines[e.seq - 1]!;
            // A line over a quarter of the ring is kept as a stub naming its size.
            if (Buffer.byteLength(want) > 1024)
              expect(JSON.parse(e.line)).toEqual({ ringOmitted: true, bytes: Buffer.byteLength(want) });
            else expect(e.line).toBe(want);
          }
          expect(p.events.reduce((n, e) => n + Buffer.byteLength(e.line), 0)).toBeLessThanOrEqual(4096);
          // The newest line is always there.
          expect(p.events.at(-1)?.seq).toBe(lines.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('fills its bytes before dropping lines', () => {
    const ring = new AuditRing(50_000, 4096);
    const line = (i: number): string => JSON.stringify({ i, pad: 'x'.repeat(40) }); // 52-56 bytes
    for (let i = 0; i < 1000; i++) ring.push(line(i));
    const p = ring.page(0, 1_000);
    const bytes = p.events.reduce((n, e) => n + Buffer.byteLength(e.line), 0);
    expect(bytes).toBeLessThanOrEqual(4096);
    expect(bytes).toBeGreaterThan(4096 - 3 * 56 - 56); // at most one wrap's slack and one line lost
    expect(p.events.at(-1)!.line).toBe(line(999));
  });

  it('waitAcknowledged resolves when a read acknowledges the last event, or false after the timeout', async () => {
    const ring = new AuditRing(10);
    await expect(ring.waitAcknowledged(1)).resolves.toBe(true); // nothing to wait for
    emit(ring, ev(1));
    emit(ring, ev(2));
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
  const ring = new AuditRing(100);
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
    for (let i = 1; i <= 3; i++) ring.push(JSON.stringify(ev(i)));
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
