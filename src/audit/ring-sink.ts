import type { AuditEvent } from './event.js';

/** One line of an {@link AuditRing} with its sequence number. */
export interface SequencedLine {
  seq: number;
  /** The event's JSON text as the audit file sink wrote it (no newline). */
  line: string;
}

/** What `GET /admin/audit` answers (src/gateway/admin.ts); `events[].event` is the parsed line. */
export interface AuditPage {
  /** The gateway process; a new id means a new process whose numbering starts again at 1. */
  instanceId: string;
  /** Events with `seq > after`, oldest first, at most `limit`. */
  events: { seq: number; event: AuditEvent }[];
  /** The highest sequence number given so far (0 before the first event). */
  last: number;
  /**
   * Events after `after` no longer in the ring (overwritten before they were read): lost to the
   * collector (they are still in the gateway's own audit file and stdout).
   */
  missed: number;
}

/** The ring's default size: events kept for the collector. */
export const AUDIT_RING_SIZE = 50_000;

/** The ring's default bytes: 32 MiB, about 50,000 lines of a plain call's ~600 bytes. */
export const AUDIT_RING_BYTES = 32 * 1024 * 1024;

/**
 * Keeps the most recent audit events in a bounded ring, each numbered with a per-process
 * monotonically increasing sequence number (1, 2, …). The control plane's collector reads it through
 * `GET /admin/audit?after=SEQ` (src/gateway/admin.ts); the `after` of a read acknowledges every event
 * up to it, so a gateway shutting down can wait until everything it decided has been collected
 * ({@link waitAcknowledged}).
 *
 * It is fed the lines the audit file sink writes ({@link push}, FileAuditSinkOptions.onLine) and
 * keeps their bytes in one buffer allocated up front, not the event objects: a ring of 50,000 object
 * graphs (or even 50,000 strings) kept alive for seconds each is promoted to the old generation and
 * collected by major GCs — about 1.4 µs (objects) and 1 µs (strings) of CPU per event at
 * saturation, measured in-process (bench/README.md "Closing the gap") — where bytes in a Buffer cost the
 * garbage collector nothing. The admin API splices the lines into its answer without serialising
 * events again.
 */
export class AuditRing {
  /** The lines' UTF-8 bytes, written round the buffer (a line never wraps: it starts again at 0). */
  private readonly buf: Buffer;
  /** Byte offset and length of the line of seq `s`, at index `s % capacity`. */
  private readonly starts: Float64Array;
  private readonly lengths: Float64Array;
  /** Where the next line goes. */
  private pos = 0;
  private seq = 0;
  /** The oldest seq still held (`seq + 1` when empty). */
  private oldest = 1;
  private acked = 0;
  private read = false;
  private waiters: (() => void)[] = [];

  /**
   * @param capacity events kept at most (the oldest is dropped first).
   * @param bytes bytes of lines kept at most (UTF-8); a line longer than a quarter of it is kept as
   *   its JSON without `mcp` details (see {@link push}).
   * @throws RangeError when capacity < 1 or bytes < 4096.
   */
  constructor(
    private readonly capacity = AUDIT_RING_SIZE,
    bytes = AUDIT_RING_BYTES,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be >= 1');
    if (!Number.isInteger(bytes) || bytes < 4096) throw new RangeError('bytes must be >= 4096');
    this.buf = Buffer.allocUnsafe(bytes);
    this.starts = new Float64Array(capacity);
    this.lengths = new Float64Array(capacity);
  }

  /**
   * Records the next event's line (its JSON text, no newline); bound, so usable as a callback. The
   * oldest lines make room (counted as missed by a reader that had not read them). A line longer
   * than a quarter of the ring is kept as a short JSON stub naming its size, so one huge event cannot
   * flush the ring.
   */
  readonly push = (line: string): void => {
    const size = this.buf.length;
    // UTF-8 takes at most 3 bytes per UTF-16 unit: checking that bound avoids a byteLength pass.
    if (line.length * 3 > size - this.pos) {
      if (line.length * 3 > size / 4) {
        const n = Buffer.byteLength(line);
        if (n > size / 4) line = JSON.stringify({ ringOmitted: true, bytes: n });
      }
      if (line.length * 3 > size - this.pos) {
        // Start again at 0: what is left of the previous lap after the wrap point goes first.
        while (this.oldest <= this.seq && this.starts[this.oldest % this.capacity]! >= this.pos)
          this.oldest++;
        this.pos = 0;
      }
    }
    const at = this.pos;
    const n = this.buf.write(line, at, 'utf8');
    const end = at + n;
    // Drop the oldest lines the new one overwrote, and the one whose slot it takes.
    const seq = ++this.seq;
    while (this.oldest < seq) {
      const i = this.oldest % this.capacity;
      const s = this.starts[i]!;
      if (seq - this.oldest < this.capacity && (s >= end || s + this.lengths[i]! <= at)) break;
      this.oldest++;
    }
    const slot = seq % this.capacity;
    this.starts[slot] = at;
    this.lengths[slot] = n;
    this.pos = end;
  };

  private lineAt(seq: number): string {
    const i = seq % this.capacity;
    const s = this.starts[i]!;
    return this.buf.toString('utf8', s, s + this.lengths[i]!);
  }

  /** The highest sequence number given so far. */
  last(): number {
    return this.seq;
  }

  /** The highest sequence number acknowledged by a reader. */
  acknowledged(): number {
    return this.acked;
  }

  /** true once a collector has read the ring (someone will acknowledge). */
  collected(): boolean {
    return this.read;
  }

  /**
   * Events with `seq > after`, oldest first, at most `limit`; records `after` as acknowledged (a
   * reader only asks after SEQ once it has stored everything up to SEQ).
   */
  page(after: number, limit: number): { events: SequencedLine[]; last: number; missed: number } {
    this.read = true;
    if (after > this.acked) {
      this.acked = Math.min(after, this.seq);
      if (this.acked >= this.seq) this.wake();
    }
    const oldest = this.oldest;
    const from = Math.max(after + 1, oldest);
    const missed = this.seq === 0 ? 0 : Math.max(0, oldest - (after + 1));
    const events: SequencedLine[] = [];
    for (let s = from; s <= this.seq && events.length < limit; s++)
      events.push({ seq: s, line: this.lineAt(s) });
    return { events, last: this.seq, missed };
  }

  /**
   * Resolves true once every event so far has been acknowledged, or false after `timeoutMs`; true at
   * once when there is nothing to wait for.
   */
  waitAcknowledged(timeoutMs: number): Promise<boolean> {
    if (this.acked >= this.seq) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(done);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }
}

/**
 * The JSON text of an {@link AuditPage} for a page of the ring: each line is spliced in as it is
 * (lines are whole JSON objects), so answering a collector does not parse or serialise events again.
 */
export function auditPageJson(instanceId: string, page: ReturnType<AuditRing['page']>): string {
  let events = '';
  for (const e of page.events) events += `${events ? ',' : ''}{"seq":${e.seq},"event":${e.line}}`;
  return `{"instanceId":${JSON.stringify(instanceId)},"events":[${events}],"last":${page.last},"missed":${page.missed}}`;
}
