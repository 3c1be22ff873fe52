/**
 * Warm pools (issue 12 item 3; docs/architecture.md "Warm pools"): per image, up to
 * `sessions.warmPool.size` sandboxes created, started and isolation-self-tested before any session
 * asks for one, so a create only has to claim one (record its session, register it at the gateway).
 * A pool member is role-independent: it has no role, no credential, no expiry and is not registered
 * at the gateway until it is claimed (so it cannot make any allowed call), and it is removed when its
 * session ends, never returned to the pool. Refills run in the background, at most
 * `sessions.warmPool.concurrency` at a time, with a growing pause after a failed fill.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { SandboxRuntime } from '../runtime/types.js';

/** Pause after the first failed fill of an image, ms; doubles per further failure. */
const RETRY_BASE_MS = 1_000;
/** Longest pause between failed fills of an image, ms. */
const RETRY_MAX_MS = 30_000;

/** Settings of a {@link WarmPool} (from `sessions.warmPool`, images resolved). */
export interface WarmPoolOptions {
  /** Ready sandboxes kept per image. */
  size: number;
  /** Images pooled (exact references as create requests name them). */
  images: string[];
  /** Fills in flight at most, over all images. */
  concurrency: number;
}

/** A pooled sandbox's id: the id its session will have (`s-` + 16 hex, 64 random bits). */
function newPooledId(): string {
  return 's-' + randomBytes(8).toString('hex');
}

/** The pool's Prometheus metrics. */
class WarmPoolMetrics {
  readonly ready: Gauge<'image'>;
  readonly claims: Counter<'image'>;
  readonly misses: Counter<'image'>;
  readonly fills: Counter<'image' | 'result'>;

  constructor(registry: Registry) {
    this.ready = new Gauge({
      name: 'airlock_warm_pool_ready',
      help: 'Warm-pool sandboxes started, self-tested and not yet claimed, per image',
      labelNames: ['image'],
      registers: [registry],
    });
    this.claims = new Counter({
      name: 'airlock_warm_pool_claims_total',
      help: 'Sessions created by claiming a warm-pool sandbox, per image',
      labelNames: ['image'],
      registers: [registry],
    });
    this.misses = new Counter({
      name: 'airlock_warm_pool_misses_total',
      help: 'Creates of a pooled image that found its pool empty and took the cold path',
      labelNames: ['image'],
      registers: [registry],
    });
    this.fills = new Counter({
      name: 'airlock_warm_pool_fills_total',
      help: 'Warm-pool fills by result (ok, failed: creation, start or self-test failed)',
      labelNames: ['image', 'result'],
      registers: [registry],
    });
  }
}

/**
 * The warm pools of one control plane. `fill` makes one sandbox ready (prepare, start, self-test;
 * it throws and cleans up on failure); the pool decides when.
 */
export class WarmPool {
  private readonly ready = new Map<string, string[]>();
  private readonly filling = new Map<string, number>();
  private readonly failures = new Map<string, number>();
  private readonly retryAt = new Map<string, number>();
  private inFlight = 0;
  private running = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly metrics: WarmPoolMetrics;

  /**
   * @param fill makes one pooled sandbox with the given id ready: created with
   *   `runtime.preparePooled`, started, self-tested; removes what it made and throws on failure.
   */
  constructor(
    private readonly opts: WarmPoolOptions,
    private readonly runtime: SandboxRuntime,
    private readonly fill: (id: string, image: string) => Promise<void>,
    registry: Registry,
    private readonly logger?: Logger,
  ) {
    this.metrics = new WarmPoolMetrics(registry);
    for (const image of opts.images) {
      this.ready.set(image, []);
      this.filling.set(image, 0);
      this.metrics.ready.set({ image }, 0);
    }
  }

  /** Whether `image` is pooled. */
  has(image: string): boolean {
    return this.ready.has(image);
  }

  /** Starts filling every pool up to its size, in the background. */
  start(): void {
    this.running = true;
    this.refill();
  }

  /**
   * Stops refilling. Ready members stay as they are (a restarted control plane removes unclaimed
   * members it finds); a fill in flight removes its sandbox when it ends.
   */
  stop(): void {
    this.running = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /** Ready members per image (ids, oldest first): for tests and diagnostics. */
  members(): Record<string, string[]> {
    return Object.fromEntries([...this.ready].map(([image, ids]) => [image, [...ids]]));
  }

  /**
   * Takes a ready sandbox of `image` out of the pool (it is never handed out twice) and starts a
   * refill. @returns its id, or null when the image is not pooled or its pool is empty (the caller
   * takes the cold path; counted as a miss for a pooled image).
   */
  take(image: string): string | null {
    const ids = this.ready.get(image);
    if (!ids) return null;
    const id = ids.shift() ?? null;
    this.metrics.ready.set({ image }, ids.length);
    if (id) this.metrics.claims.inc({ image });
    else this.metrics.misses.inc({ image });
    this.refill();
    return id;
  }

  /** Ids of the ready members, all images. */
  readyIds(): Set<string> {
    return new Set([...this.ready.values()].flat());
  }

  /**
   * Drops members that were ready before a listing (`before`, from {@link readyIds}) and whose
   * sandbox the listing does not show running (`running`), and removes them; the pool refills.
   * Called by the session reconciler.
   */
  async prune(before: ReadonlySet<string>, running: ReadonlySet<string>): Promise<void> {
    for (const [image, ids] of this.ready) {
      const gone = ids.filter((id) => before.has(id) && !running.has(id));
      if (gone.length === 0) continue;
      this.ready.set(
        image,
        ids.filter((id) => !gone.includes(id)),
      );
      this.metrics.ready.set({ image }, this.ready.get(image)!.length);
      for (const id of gone) {
        this.logger?.warn({ sandbox: id, image }, 'warm-pool sandbox no longer running: removed');
        await this.runtime.remove(id).catch(() => undefined);
      }
    }
    this.refill();
  }

  /** Starts fills while an image is short of its size and the concurrency allows. */
  private refill(): void {
    if (!this.running) return;
    const now = Date.now();
    let nextRetry = Infinity;
    for (const image of this.ready.keys()) {
      const due = this.retryAt.get(image) ?? 0;
      if (due > now) {
        nextRetry = Math.min(nextRetry, due);
        continue;
      }
      while (
        this.inFlight < this.opts.concurrency &&
        this.ready.get(image)!.length + this.filling.get(image)! < this.opts.size
      ) {
        void this.fillOne(image);
      }
    }
    if (nextRetry !== Infinity && !this.retryTimer) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.refill();
      }, nextRetry - now);
      this.retryTimer.unref();
    }
  }

  private async fillOne(image: string): Promise<void> {
    this.inFlight++;
    this.filling.set(image, this.filling.get(image)! + 1);
    const id = newPooledId();
    try {
      await this.fill(id, image);
      this.failures.delete(image);
      this.retryAt.delete(image);
      this.metrics.fills.inc({ image, result: 'ok' });
      if (this.running) {
        this.ready.get(image)!.push(id);
        this.metrics.ready.set({ image }, this.ready.get(image)!.length);
        this.logger?.debug({ sandbox: id, image }, 'warm-pool sandbox ready');
      } else {
        await this.runtime.remove(id).catch(() => undefined);
      }
    } catch (err) {
      const n = (this.failures.get(image) ?? 0) + 1;
      this.failures.set(image, n);
      const pause = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (n - 1));
      this.retryAt.set(image, Date.now() + pause);
      this.metrics.fills.inc({ image, result: 'failed' });
      this.logger?.error({ err, image, failures: n, retryInMs: pause }, 'warm-pool fill failed');
    } finally {
      this.inFlight--;
      this.filling.set(image, this.filling.get(image)! - 1);
    }
    this.refill();
  }
}
