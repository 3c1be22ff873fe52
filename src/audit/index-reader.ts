import { watch, type FSWatcher } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import type { AuditEvent } from './event.js';

/** Events kept per session in memory; older ones stay in the file. */
const MAX_PER_SESSION = 10_000;

/**
 * The control plane's view of the audit trail: follows the JSON-lines audit file the gateway writes
 * (from its start, so a restarted control plane recovers every session's history), indexes events by
 * session, and notifies subscribers (`airlock audit --follow`). Follows with fs.watch plus a poll
 * every `pollMs` (watch events on bind mounts can be missed).
 */
export class AuditIndex {
  private offset = 0;
  private partial = '';
  private readonly bySession = new Map<string, AuditEvent[]>();
  private readonly listeners = new Set<(e: AuditEvent) => void>();
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private reading: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly file: string,
    private readonly pollMs = 250,
  ) {}

  /** Reads what is there and starts following. */
  async start(): Promise<void> {
    await this.catchUp();
    try {
      this.watcher = watch(this.file, () => void this.catchUp());
    } catch {
      // the file may not exist yet; polling picks it up
    }
    this.timer = setInterval(() => void this.catchUp(), this.pollMs);
    this.timer.unref();
  }

  close(): void {
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
  }

  /** Events of one session, oldest first by `time` (a copy). */
  events(sessionId: string): AuditEvent[] {
    return [...(this.bySession.get(sessionId) ?? [])];
  }

  /** Calls `fn` for each new event; returns the unsubscribe function. */
  subscribe(fn: (e: AuditEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Reads up to the current end of file; resolves once everything written so far is indexed. */
  catchUp(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return this.reading;
    }
    this.reading = (async () => {
      do {
        this.again = false;
        await this.readNew();
      } while (this.again);
    })().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  private async readNew(): Promise<void> {
    let size: number;
    try {
      size = (await stat(this.file)).size;
    } catch {
      return;
    }
    if (size < this.offset) {
      // truncated or replaced: start over
      this.offset = 0;
      this.partial = '';
    }
    if (size === this.offset) return;
    const fh = await open(this.file, 'r');
    try {
      const buf = Buffer.alloc(size - this.offset);
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
      this.offset += bytesRead;
      const text = this.partial + buf.subarray(0, bytesRead).toString('utf8');
      const lines = text.split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line) continue;
        let event: AuditEvent;
        try {
          event = JSON.parse(line) as AuditEvent;
        } catch {
          continue;
        }
        if (event.sessionId) {
          let list = this.bySession.get(event.sessionId);
          if (!list) this.bySession.set(event.sessionId, (list = []));
          // Time order per session: events collected from several gateways (Kubernetes) arrive
          // interleaved by replica; each is inserted after the last one not later than it.
          let at = list.length;
          while (at > 0 && list[at - 1]!.time > event.time) at--;
          list.splice(at, 0, event);
          if (list.length > MAX_PER_SESSION) list.splice(0, list.length - MAX_PER_SESSION);
        }
        for (const fn of this.listeners) fn(event);
      }
    } finally {
      await fh.close();
    }
  }
}
