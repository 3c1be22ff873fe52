import type { AuditEvent, AuditSink } from './event.js';

/** One event of an {@link AuditRingSink} with its sequence number. */
export interface SequencedEvent {
  seq: number;
  event: AuditEvent;
}

/** What `GET /admin/audit` answers (src/gateway/admin.ts). */
export interface AuditPage {
  /** The gateway process; a new id means a new process whose numbering starts again at 1. */
  instanceId: string;
  /** Events with `seq > after`, oldest first, at most `limit`. */
  events: SequencedEvent[];
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

/**
 * Keeps the most recent audit events in a bounded ring, each numbered with a per-process
 * monotonically increasing sequence number (1, 2, …), and passes every event on to `inner`. The
 * control plane's collector reads it through `GET /admin/audit?after=SEQ` (src/gateway/admin.ts); the
 * `after` of a read acknowledges every event up to it, so a gateway shutting down can wait until
 * everything it decided has been collected ({@link waitAcknowledged}).
 */
export class AuditRingSink implements AuditSink {
  private readonly ring: (SequencedEvent | undefined)[];
  private seq = 0;
  private acked = 0;
  private read = false;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly inner: AuditSink,
    private readonly capacity = AUDIT_RING_SIZE,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be >= 1');
    this.ring = new Array<SequencedEvent | undefined>(capacity);
  }

  emit(event: AuditEvent): void {
    this.inner.emit(event);
    const seq = ++this.seq;
    this.ring[seq % this.capacity] = { seq, event };
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
  page(after: number, limit: number): Omit<AuditPage, 'instanceId'> {
    this.read = true;
    if (after > this.acked) {
      this.acked = Math.min(after, this.seq);
      if (this.acked >= this.seq) this.wake();
    }
    const oldest = Math.max(1, this.seq - this.capacity + 1);
    const from = Math.max(after + 1, oldest);
    const missed = this.seq === 0 ? 0 : Math.max(0, oldest - (after + 1));
    const events: SequencedEvent[] = [];
    for (let s = from; s <= this.seq && events.length < limit; s++)
      events.push(this.ring[s % this.capacity]!);
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
