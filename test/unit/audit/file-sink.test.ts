/** FileAuditSink on a fake filesystem: short writes, failures, the bounded buffer, recovery in order. */
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/event.js';
import { type AuditFileOps, FileAuditSink } from '../../../src/audit/file-sink.js';

/** A file that accepts `room` more bytes (Infinity: unbounded); writes past it fail with `code`. */
class FakeFile implements AuditFileOps {
  data = '';
  room = Infinity;
  code = 'ENOSPC';
  failOpen = false;
  async open(): Promise<number> {
    if (this.failOpen) throw Object.assign(new Error('cannot open'), { code: 'EACCES' });
    return 3;
  }
  async write(_fd: number, buf: Buffer): Promise<number> {
    await Promise.resolve();
    if (this.room <= 0) throw Object.assign(new Error('no space left on device'), { code: this.code });
    const n = Math.min(buf.length, this.room);
    this.data += buf.subarray(0, n).toString();
    this.room -= n;
    return n;
  }
  async close(): Promise<void> {}
  async identity(): Promise<string> {
    return 'x';
  }
  async fdIdentity(): Promise<string> {
    return 'x';
  }
}

const ev = (n: number): AuditEvent => ({ path: `/r/${n}`, decision: 'allow' }) as unknown as AuditEvent;
const paths = (f: FakeFile): string[] =>
  f.data
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { path: string }).path);
const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await tick(5);
  expect(check()).toBe(true);
}

describe('FileAuditSink faults', () => {
  it('a short write then ENOSPC: unhealthy, reported once; recovery writes the rest in order', async () => {
    const f = new FakeFile();
    const changes: Array<[boolean, string | undefined, number]> = [];
    const errors: string[] = [];
    const sink = new FileAuditSink('/audit.jsonl', false, {
      ops: f,
      retryMs: 10,
      onHealthChange: (h, e, n) => changes.push([h, e?.code, n]),
      onWriteError: (c) => errors.push(c),
    });
    sink.emit(ev(0));
    await until(() => f.data.length > 0);
    f.room = 10; // part of the next line fits
    sink.emit(ev(1));
    sink.emit(ev(2));
    await until(() => !sink.healthy());
    expect(sink.failure()).toContain('ENOSPC');
    expect(changes).toEqual([[false, 'ENOSPC', 2]]);
    sink.emit(ev(3));
    await tick(40); // retries fail
    expect(sink.healthy()).toBe(false);
    expect(errors.length).toBeGreaterThan(1);
    f.room = Infinity;
    await until(() => sink.healthy());
    expect(changes[1]).toEqual([true, undefined, 3]);
    await until(() => paths(f).length === 4);
    expect(paths(f)).toEqual(['/r/0', '/r/1', '/r/2', '/r/3']);
    expect(sink.buffered()).toBe(0);
    expect(await sink.close()).toBe(0);
  });

  it('the buffer is bounded: events past it are dropped and reported, the rest kept', async () => {
    const f = new FakeFile();
    f.room = 0;
    const dropped: AuditEvent[] = [];
    // Each line carries its chain link (src/audit/chain.ts): the longest one, with a previous hash.
    const link = { stream: 'test-stream', seq: 9, prev: 'f'.repeat(64) };
    const line = JSON.stringify({ ...ev(0), chain: link }).length + 1;
    const sink = new FileAuditSink('/audit.jsonl', false, {
      stream: 'test-stream',
      ops: f,
      retryMs: 10,
      maxBufferedBytes: line * 3,
      onDrop: (e) => dropped.push(e),
    });
    for (let i = 0; i < 5; i++) sink.emit(ev(i));
    await until(() => !sink.healthy());
    expect(dropped.map((e) => e.path)).toEqual(['/r/3', '/r/4']);
    f.room = Infinity;
    await until(() => sink.healthy() && paths(f).length === 3);
    expect(paths(f)).toEqual(['/r/0', '/r/1', '/r/2']);
    await sink.close();
  });

  it('an open that fails (EACCES) makes the sink unhealthy until it succeeds; close reports what is lost', async () => {
    const f = new FakeFile();
    f.failOpen = true;
    const sink = new FileAuditSink('/audit.jsonl', false, { ops: f, retryMs: 10 });
    sink.emit(ev(0));
    await until(() => !sink.healthy());
    expect(sink.failure()).toContain('EACCES');
    f.failOpen = false;
    await until(() => sink.healthy());
    await until(() => paths(f).length === 1);
    f.room = 0;
    sink.emit(ev(1));
    await until(() => !sink.healthy());
    expect(await sink.close()).toBe(1);
  });
});
