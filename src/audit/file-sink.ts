import pino from 'pino';
import type { AuditEvent, AuditSink } from './event.js';

/**
 * Appends audit events as JSON lines to a file (and optionally stdout) through pino's SonicBoom
 * destination: asynchronous writes off the request path, flushed on `close()`. The lines of one
 * event-loop turn are joined into one write (one `fs.write` per turn instead of one per request;
 * measured in bench/README.md), and reach the file within that turn's I/O phase.
 */
export class FileAuditSink implements AuditSink {
  private readonly file: ReturnType<typeof pino.destination>;
  private readonly stdout: ReturnType<typeof pino.destination> | null;
  private pending = '';
  private scheduled = false;

  /** @param path file to append to (parent directories are created). @param toStdout also write to fd 1. */
  constructor(path: string, toStdout = false) {
    this.file = pino.destination({ dest: path, mkdir: true, sync: false, minLength: 0 });
    this.stdout = toStdout ? pino.destination({ dest: 1, sync: false }) : null;
  }

  emit(event: AuditEvent): void {
    this.pending += JSON.stringify(event) + '\n';
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushPending);
    }
  }

  private readonly flushPending = (): void => {
    this.scheduled = false;
    const text = this.pending;
    if (!text) return;
    this.pending = '';
    this.file.write(text);
    this.stdout?.write(text);
  };

  /** Flushes and closes. */
  async close(): Promise<void> {
    this.flushPending();
    await Promise.all(
      [this.file, this.stdout].map(
        (d) =>
          new Promise<void>((resolve) => {
            if (!d) return resolve();
            d.once('close', () => resolve());
            d.once('error', () => resolve());
            d.end();
          }),
      ),
    );
  }
}

/** Sends each event to every sink. */
export class FanoutSink implements AuditSink {
  constructor(private readonly sinks: AuditSink[]) {}
  emit(event: AuditEvent): void {
    for (const s of this.sinks) s.emit(event);
  }
}

/** Marks each event with the gateway worker that decided it (`worker`), then passes it on. */
export class WorkerTagSink implements AuditSink {
  constructor(
    private readonly inner: AuditSink,
    private readonly worker: number,
  ) {}
  emit(event: AuditEvent): void {
    event.worker = this.worker;
    this.inner.emit(event);
  }
}

/** Keeps events in memory (tests, and the in-process gateway). */
export class MemoryAuditSink implements AuditSink {
  readonly events: AuditEvent[] = [];
  emit(event: AuditEvent): void {
    this.events.push(event);
  }
}
