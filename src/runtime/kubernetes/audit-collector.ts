import { appendFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { request } from 'undici';
import type { AuditPage } from '../../audit/ring-sink.js';
import type { Logger } from '../../log.js';

/** Cursors kept for gateway processes (a few restarts' worth beyond the live replicas). */
const MAX_CURSORS = 1_000;

/** Options of {@link AuditCollector}. */
export interface AuditCollectorOptions {
  /** The replicas' admin base URLs right now (GatewayReplicas.endpoints). */
  endpoints: () => Promise<string[]>;
  /** Admin bearer token. */
  token: string;
  /** The control plane's audit file (`audit.file`, what the AuditIndex follows): events are appended. */
  file: string;
  /** Poll period, ms. @default 1000 */
  intervalMs?: number;
  /** Replicas polled at once. @default 16 */
  concurrency?: number;
  /** Events asked per call. @default 5000 */
  pageSize?: number;
  /** Per-call deadline, ms. @default 5000 */
  timeoutMs?: number;
  logger?: Logger;
}

/**
 * Collects the audit events of every gateway replica into the control plane's audit file (Kubernetes,
 * issue 16; docs/kubernetes.md "Audit"): every `intervalMs` each replica's `GET /admin/audit?after=SEQ`
 * is read, in parallel with bounded concurrency, and its new events are appended as JSON lines, so
 * the AuditIndex (and `GET /v1/sessions/{id}/audit`, `airlock audit --follow`) sees them as if one
 * gateway had written them. One cursor per gateway process (`instanceId`, whose numbering starts at
 * 1): the next read's `after` acknowledges what was written, which lets a stopping gateway wait for
 * collection. Cursors are kept in `<file>.cursors.json`, so a restarted control plane neither loses
 * nor repeats events. A replica that disappears from discovery (a Pod being deleted) is still read
 * until it stops answering, so the events of its last moments are collected.
 */
export class AuditCollector {
  private readonly cursors = new Map<string, number>();
  /** url → instanceId last seen there. */
  private readonly instances = new Map<string, string>();
  /** URLs read before and no longer discovered: read until they fail. */
  private readonly departed = new Set<string>();
  private known = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly cursorFile: string;

  constructor(private readonly o: AuditCollectorOptions) {
    this.cursorFile = `${o.file}.cursors.json`;
  }

  /** Loads the cursors and starts polling. */
  async start(): Promise<void> {
    try {
      const saved = JSON.parse(await readFile(this.cursorFile, 'utf8')) as Record<string, unknown>;
      for (const [id, seq] of Object.entries(saved)) if (typeof seq === 'number') this.cursors.set(id, seq);
    } catch {
      // none yet
    }
    const tick = (): void => {
      if (this.stopped) return;
      this.timer = setTimeout(() => void this.poll().finally(tick), this.o.intervalMs ?? 1000);
      this.timer.unref();
    };
    tick();
  }

  /** Stops polling (after the poll under way). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** One round over every replica; resolves when its events are in the file. */
  poll(): Promise<void> {
    this.running ??= this.round().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async round(): Promise<void> {
    let found: string[] = [];
    try {
      found = await this.o.endpoints();
    } catch (err) {
      this.o.logger?.warn({ error: (err as Error).message }, 'audit collection: no gateway replica found');
    }
    const now = new Set(found);
    for (const u of this.known) if (!now.has(u)) this.departed.add(u);
    for (const u of now) this.departed.delete(u);
    this.known = now;
    const urls = [...now, ...this.departed];
    const queue = [...urls];
    const workers = Array.from({ length: Math.min(this.o.concurrency ?? 16, queue.length) }, async () => {
      for (let url = queue.shift(); url !== undefined; url = queue.shift())
        await this.collect(url).catch((err: unknown) =>
          this.o.logger?.error(
            { url, error: (err as Error).message },
            'audit collection: cannot store events',
          ),
        );
    });
    await Promise.all(workers);
  }

  /** Reads one replica until it has nothing more (bounded by a few pages per round). */
  private async collect(url: string): Promise<void> {
    for (let pages = 0; pages < 4; pages++) {
      const id = this.instances.get(url);
      const after = id === undefined ? 0 : (this.cursors.get(id) ?? 0);
      let page: AuditPage;
      try {
        page = await this.read(url, after);
      } catch (err) {
        if (this.departed.delete(url)) this.instances.delete(url);
        else this.o.logger?.warn({ url, error: (err as Error).message }, 'audit collection: replica failed');
        return;
      }
      if (page.instanceId !== id) {
        this.instances.set(url, page.instanceId);
        // Another process at this address: read it from its own cursor (0 for a new one).
        if ((this.cursors.get(page.instanceId) ?? 0) !== after) continue;
      }
      if (page.missed > 0)
        this.o.logger?.error(
          { url, instanceId: page.instanceId, missed: page.missed },
          'audit collection: events left the gateway ring before they were read (still in its audit file)',
        );
      const fresh = page.events.filter((e) => e.seq > after);
      if (fresh.length === 0) return;
      await this.append(fresh.map((e) => JSON.stringify(e.event) + '\n').join(''));
      this.cursors.set(page.instanceId, fresh[fresh.length - 1]!.seq);
      await this.saveCursors();
      if (fresh[fresh.length - 1]!.seq >= page.last) {
        // Acknowledge at once (a stopping gateway waits for it) rather than at the next round.
        await this.read(url, page.last).catch(() => undefined);
        return;
      }
    }
  }

  private async read(url: string, after: number): Promise<AuditPage> {
    const res = await request(`${url}/admin/audit?after=${after}&limit=${this.o.pageSize ?? 5000}`, {
      headers: { authorization: `Bearer ${this.o.token}` },
      signal: AbortSignal.timeout(this.o.timeoutMs ?? 5000),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`GET /admin/audit answered ${res.statusCode}: ${text}`);
    return JSON.parse(text) as AuditPage;
  }

  private async append(lines: string): Promise<void> {
    await mkdir(dirname(this.o.file), { recursive: true });
    await appendFile(this.o.file, lines, { mode: 0o640 });
  }

  private async saveCursors(): Promise<void> {
    // Bounded: the cursors of processes no longer seen go first (oldest first).
    const live = new Set(this.instances.values());
    for (const id of this.cursors.keys()) {
      if (this.cursors.size <= MAX_CURSORS) break;
      if (!live.has(id)) this.cursors.delete(id);
    }
    const tmp = `${this.cursorFile}.tmp`;
    await writeFile(tmp, JSON.stringify(Object.fromEntries(this.cursors)));
    await rename(tmp, this.cursorFile);
  }
}
