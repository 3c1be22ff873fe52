import { close, fstat, mkdir, mkdirSync, open, openSync, stat, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import { AuditChain } from './chain.js';
import type { AuditEvent, AuditSink } from './event.js';

/** The file operations of {@link FileAuditSink} (node:fs by default; a fake in unit tests). */
export interface AuditFileOps {
  /** Opens `path` for appending (parent directories created); @returns the descriptor. */
  open(path: string): Promise<number>;
  /** Writes `buf` at the end; @returns the bytes written (a short write is not an error). */
  write(fd: number, buf: Buffer): Promise<number>;
  close(fd: number): Promise<void>;
  /** `dev:ino` of the file at `path`, or null when there is none (removed, renamed away). */
  identity(path: string): Promise<string | null>;
  /** `dev:ino` of the open file. */
  fdIdentity(fd: number): Promise<string>;
}

const cb =
  <T>(resolve: (v: T) => void, reject: (e: Error) => void) =>
  (err: Error | null, v: T): void =>
    err ? reject(err) : resolve(v);

/** {@link AuditFileOps} on node:fs. */
export const nodeAuditFileOps: AuditFileOps = {
  open: (path) =>
    new Promise((resolve, reject) =>
      mkdir(dirname(path), { recursive: true }, (err) =>
        err ? reject(err) : open(path, 'a', 0o640, cb(resolve, reject)),
      ),
    ),
  // Synchronous, like pino's file destinations by default: an append of a few KB to the page cache
  // costs ~3 µs of CPU, where the asynchronous fs.write's hand-off to libuv's threadpool costs ~22 µs
  // (measured on this project's machine, Node 24) — once per event-loop turn, i.e. once per call at
  // moderate rates. The price: a disk that hangs (not one that fails: ENOSPC/EIO throw at once)
  // stalls the gateway's event loop, so calls wait rather than go unaudited (docs/reliability.md).
  write: (fd, buf) => {
    try {
      return Promise.resolve(writeSync(fd, buf, 0, buf.length, null));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  },
  close: (fd) => new Promise((resolve) => close(fd, () => resolve())),
  identity: (path) =>
    new Promise((resolve, reject) =>
      stat(path, (err, st) =>
        err
          ? (err as NodeJS.ErrnoException).code === 'ENOENT'
            ? resolve(null)
            : reject(err)
          : resolve(`${st.dev}:${st.ino}`),
      ),
    ),
  fdIdentity: (fd) =>
    new Promise((resolve, reject) =>
      fstat(fd, (err, st) => (err ? reject(err) : resolve(`${st.dev}:${st.ino}`))),
    ),
};

/** How {@link FileAuditSink} behaves and reports when the file cannot be written. */
export interface FileAuditSinkOptions {
  /** Also write every line to fd 1. @default false */
  toStdout?: boolean;
  /**
   * Bytes of events kept in memory while they cannot be written (disk full, file unwritable); an
   * event that would pass the bound is dropped and counted ({@link FileAuditSinkOptions.onDrop}).
   * @default 8 MiB
   */
  maxBufferedBytes?: number;
  /**
   * While unhealthy: retry the write this often, ms. While healthy: check this often that the path
   * still names the open file (removed, renamed or replaced: reopen it). @default 1000
   */
  retryMs?: number;
  /**
   * Called on each transition: healthy false with the error (`code`: ENOSPC, EACCES, …) and the
   * events buffered, or true with the events that were waiting (now written, at least those of then).
   */
  onHealthChange?: (healthy: boolean, error: NodeJS.ErrnoException | null, bufferedEvents: number) => void;
  /** Called on every failed open or write, with the error's code (a metric). */
  onWriteError?: (code: string) => void;
  /** Called for every event dropped because the buffer was full (never silently: a metric and a log). */
  onDrop?: (event: AuditEvent) => void;
  ops?: AuditFileOps;
  /** The hash chain's stream id (src/audit/chain.ts). @default a random UUID */
  stream?: string;
  /**
   * Told every event's JSON text (no newline) as it is queued for the file, in order — the gateway's
   * ring for the collector (src/audit/ring-sink.ts). An event dropped from the file (buffer full) is
   * told too, without its chain link.
   */
  onLine?: (line: string) => void;
}

export const AUDIT_MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

/**
 * Appends audit events as JSON lines to a file (and optionally stdout): asynchronous writes off the
 * request path, flushed on `close()`. The lines of one event-loop turn are joined into one write
 * (one `fs.write` per turn instead of one per request; measured in bench/README.md).
 *
 * Every event gets its link in this sink's hash chain (`chain`, src/audit/chain.ts) as it is
 * serialised; the control plane signs the chain's head (AuditSigner) and `airlock audit verify`
 * checks both.
 *
 * Write failures (ENOSPC on a full disk, EACCES/EROFS/EIO, …) never lose an event silently: the
 * bytes not written stay in a bounded buffer, in order, {@link healthy} turns false (the gateway
 * then refuses new calls with `audit.onFailure: deny`, docs/security.md), and the write is retried
 * every `retryMs`; once it succeeds the buffer is written in order and the sink is healthy again. An
 * event that does not fit the buffer is dropped and reported through `onDrop`. While healthy, the
 * path is checked every `retryMs` and reopened when the file was removed or replaced (log rotation,
 * a directory swapped for a read-only mount), so writes never go on into a file nobody sees.
 */
export class FileAuditSink implements AuditSink {
  private readonly stdout: ReturnType<typeof pino.destination> | null;
  private readonly ops: AuditFileOps;
  private readonly maxBytes: number;
  private readonly opts: FileAuditSinkOptions;
  /** Lines (and a first partly written chunk) not yet written, in order. */
  private chunks: Buffer[] = [];
  /**
   * Lines emitted since the last drain, as text (one Buffer per batch instead of one per line);
   * they follow `chunks`.
   */
  private pendingText = '';
  private bufferedBytes = 0;
  private stdoutPending = '';
  private scheduled = false;
  private writing: Promise<void> | null = null;
  private fd: number | null = null;
  private ok = true;
  private lastError: NodeJS.ErrnoException | null = null;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  /** This writer's hash chain (src/audit/chain.ts): every line carries its link. */
  private readonly chain: AuditChain;

  /** @param path file to append to (parent directories are created). @param toStdout also write to fd 1. */
  constructor(
    private readonly path: string,
    toStdout = false,
    opts: FileAuditSinkOptions = {},
  ) {
    this.opts = opts;
    this.ops = opts.ops ?? nodeAuditFileOps;
    this.maxBytes = opts.maxBufferedBytes ?? AUDIT_MAX_BUFFERED_BYTES;
    this.chain = new AuditChain(opts.stream);
    this.stdout = toStdout || opts.toStdout ? pino.destination({ dest: 1, sync: false }) : null;
    if (this.ops === nodeAuditFileOps) {
      // The file exists once the sink does (as readers of it expect); a failure is reported by the
      // first drain, which retries the open.
      try {
        mkdirSync(dirname(path), { recursive: true });
        this.fd = openSync(path, 'a', 0o640);
      } catch {
        this.fd = null;
      }
    }
    this.timer = setInterval(this.tick, opts.retryMs ?? 1000);
    this.timer.unref();
    this.schedule();
  }

  /** false while the file cannot be written (events are buffered, see the class comment). */
  healthy(): boolean {
    return this.ok;
  }

  /** Why the sink is unhealthy (the last error's code and message), or null. */
  failure(): string | null {
    return this.ok || !this.lastError ? null : `${this.lastError.code ?? 'error'}: ${this.lastError.message}`;
  }

  /** Bytes of events waiting to be written. */
  buffered(): number {
    return this.bufferedBytes;
  }

  emit(event: AuditEvent): void {
    const json = this.chain.serialise(event);
    const bytes = Buffer.byteLength(json) + 1;
    if (this.bufferedBytes + bytes > this.maxBytes) {
      delete event.chain; // not written: the next event takes its place in the chain
      this.opts.onLine?.(JSON.stringify(event));
      this.opts.onDrop?.(event);
      return;
    }
    this.opts.onLine?.(json);
    this.chain.commit(json); // hashed as UTF-8: the bytes as written, without the newline
    this.pendingText += json + '\n';
    this.bufferedBytes += bytes;
    if (this.stdout) this.stdoutPending += json + '\n';
    this.schedule();
  }

  /** Moves the lines emitted since the last drain into `chunks`, as one Buffer. */
  private takePending(): void {
    if (this.pendingText === '') return;
    this.chunks.push(Buffer.from(this.pendingText));
    this.pendingText = '';
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flushPending);
  }

  private readonly flushPending = (): void => {
    this.scheduled = false;
    if (this.stdoutPending) {
      this.stdout?.write(this.stdoutPending);
      this.stdoutPending = '';
    }
    // While unhealthy only the timer retries (no write attempt per request on a full disk).
    if (this.ok) void this.drain();
  };

  /** Writes the buffer, in order, until it is empty or a write fails; one drain at a time. */
  private drain(): Promise<void> {
    this.writing ??= this.drainOnce().finally(() => {
      this.writing = null;
      if (this.ok && (this.chunks.length > 0 || this.pendingText !== '')) this.schedule();
    });
    return this.writing;
  }

  private async drainOnce(): Promise<void> {
    const waiting = this.ok ? 0 : this.countBuffered(); // written on recovery
    try {
      if (this.fd === null) this.fd = await this.ops.open(this.path);
      this.takePending();
      while (this.chunks.length > 0) {
        const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
        this.chunks = [buf]; // lines emitted during the write are pushed after it
        const n = await this.ops.write(this.fd, buf);
        if (n <= 0) throw Object.assign(new Error('write wrote nothing'), { code: 'EIO' });
        this.bufferedBytes -= n;
        if (n < buf.length) this.chunks[0] = buf.subarray(n);
        else this.chunks.shift();
        this.takePending(); // lines emitted while an (asynchronous) write was under way
      }
      this.setHealthy(null, waiting);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      this.opts.onWriteError?.(e.code ?? 'error');
      if (this.fd !== null) {
        // Reopen on the retry: the path may name another file by then (a directory remounted).
        const fd = this.fd;
        this.fd = null;
        await this.ops.close(fd);
      }
      this.setHealthy(e, this.countBuffered());
    }
  }

  private setHealthy(error: NodeJS.ErrnoException | null, events: number): void {
    this.lastError = error;
    const ok = error === null;
    if (ok === this.ok) return;
    this.ok = ok;
    this.opts.onHealthChange?.(ok, error, events);
  }

  /** Lines in the buffer (a partly written first chunk counts as one). */
  private countBuffered(): number {
    this.takePending();
    let n = 0;
    for (const c of this.chunks) for (let i = c.indexOf(10); i !== -1; i = c.indexOf(10, i + 1)) n++;
    return n;
  }

  private readonly tick = (): void => {
    if (this.writing || this.closed) return;
    if (!this.ok || this.chunks.length > 0 || this.pendingText !== '') {
      void this.drain();
      return;
    }
    const fd = this.fd;
    if (fd === null) return;
    void (async () => {
      try {
        const [atPath, open] = await Promise.all([this.ops.identity(this.path), this.ops.fdIdentity(fd)]);
        if (atPath === open || this.fd !== fd || this.writing) return;
        this.fd = null;
        await this.ops.close(fd);
        await this.drain(); // reopens the path: a failure makes the sink unhealthy at once
      } catch {
        // stat failed (EACCES on the directory…): the next write tells
      }
    })();
  };

  /**
   * Writes what is buffered (one attempt) and closes. @returns the number of events that could not
   * be written (still unhealthy); they are lost with the process.
   */
  async close(): Promise<number> {
    this.closed = true;
    clearInterval(this.timer);
    this.flushPending();
    await this.writing;
    if (this.chunks.length > 0 || this.pendingText !== '') await this.drain();
    const lost = this.countBuffered();
    if (this.fd !== null) {
      const fd = this.fd;
      this.fd = null;
      await this.ops.close(fd);
    }
    const out = this.stdout;
    if (out)
      await new Promise<void>((resolve) => {
        out.once('close', () => resolve());
        out.once('error', () => resolve());
        out.end();
      });
    return lost;
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
