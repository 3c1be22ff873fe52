/**
 * A gateway on several cores (`gateway.workers` > 1): a primary process and N workers forked with
 * `node:cluster` (see docs/architecture.md "Gateway workers" for why cluster and not `reusePort`).
 *
 * - The primary owns the proxy port: it accepts each client connection (paused, nothing read) and
 *   hands the socket to a worker over IPC, as cluster's round-robin does, but chosen by the source
 *   address (rendezvous hashing over the ready workers, {@link pickWorker}): every connection of one
 *   sandbox (one session: its address is its network identity) goes to the same worker, so the
 *   per-session limits (limits.ts: connections, tunnels, requests in flight) hold for the whole
 *   gateway, and one session's load stays on one core. While a session's worker restarts, its new
 *   connections go to the next worker in its order (its old sockets died with the worker).
 * - Budgets (budgets.yaml) are counted here for every worker (budgets.ts `answerBudgetQuery`), and
 *   OAuth2 refresh-token credentials' tokens are fetched and held here (oauth2-shared.ts).
 * - The primary serves the admin API (one endpoint) and holds the authoritative session table. Every
 *   register, resync and revocation is applied there first, then sent to every worker over IPC; the
 *   admin call answers after every worker acknowledged it. A revocation is acknowledged by a worker
 *   after it destroyed the session's sockets, so the kill switch holds across workers: no allowed call
 *   after `DELETE` returns.
 * - Each worker runs `startGatewayService` without an admin API: its own PolicyStore on the same
 *   directory (reload atomic per worker; each audit event names its `policyVersion` and `worker`), its
 *   own TTL sweep, its own audit appender on the same file (O_APPEND, one write per batch of whole lines).
 * - Kubernetes: every worker runs its own Pod watch (as a replica does); the primary runs one too, for
 *   the admin API's address check and status.
 * - A worker that dies is forked again (backoff 100 ms doubling to 10 s while it keeps dying within
 *   10 s of starting); before its proxy port opens it learns the primary's whole table. A worker that
 *   does not acknowledge a change within `ackTimeoutMs` is killed (its sockets die with it) and
 *   restarted; the change counts as applied once it has exited.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import client from 'prom-client';
import { type GatewayServiceConfig, parseGatewayServiceConfig } from '../gateway-wire/config.js';
import type { GatewaySession } from '../gateway-wire/session.js';
import { createLogger, type Logger } from '../log.js';
import { PolicyStore } from '../policy/store.js';
import { type AdminSessions, createAdminServer, listen } from './admin.js';
import { answerBudgetQuery, BudgetCounters } from './budgets.js';
import { answerOAuth2Query, primaryOAuth2Tokens } from './oauth2-shared.js';
import {
  isAirlockMessage,
  type PrimaryMessage,
  WORKER_ENV,
  CONTROL_TOKEN_ENV,
  type WorkerMessage,
  type WorkerSpec,
} from './cluster-messages.js';
import { createSessionSource, type SessionSource } from './session-sources/index.js';
import { normalizeRemoteAddress } from './sessions.js';

/** FNV-1a, 32 bits: a cheap, well-spread hash for {@link pickWorker}. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // A final avalanche (murmur3's fmix32): addresses differ only in their last characters.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The worker that serves connections from `address`: of the workers `ids` that can take them, the one
 * with the highest hash of (address, id) — rendezvous hashing, so a worker's absence moves only its
 * own addresses, and they come back to it when it does. @returns undefined when `ids` is empty.
 */
export function pickWorker(address: string, ids: readonly number[]): number | undefined {
  let best: number | undefined;
  let bestHash = -1;
  for (const id of ids) {
    const h = fnv1a(`${address}|${id}`);
    if (h > bestHash) {
      bestHash = h;
      best = id;
    }
  }
  return best;
}

/** A running multi-worker gateway (the primary's side). */
export interface RunningGatewayCluster {
  proxyPort: number;
  adminPort: number;
  /** Worker number → current process id (changes when a worker is restarted). */
  workerPids(): Map<number, number>;
  /** Stops the admin API and every worker (each flushes its audit file). */
  close(): Promise<void>;
}

export interface GatewayClusterOptions {
  /** Worker processes. */
  workers: number;
  logger?: Logger;
  /** A worker that has not acknowledged a change after this long is killed, ms. @default 5000 */
  ackTimeoutMs?: number;
  /** How long to wait for the workers to start, ms. @default 60000 (the CA wait may add to it) */
  startTimeoutMs?: number;
}

interface Slot {
  id: number;
  worker: Worker;
  /** Said hello and was sent the table: receives every change from then on. */
  synced: boolean;
  ready: boolean;
  startedAt: number;
  restarts: number;
  pending: Map<number, (closedSockets: number) => void>;
  /** Why this worker refuses calls (its audit file cannot be written), or null. */
  auditFailure: string | null;
}

const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 10_000;
/** A worker that lived this long before dying is restarted without backoff. */
const HEALTHY_AFTER_MS = 10_000;

/** The compiled worker entry point next to this file (dist/gateway/cluster-worker.js). */
function workerEntry(): string {
  return path.join(path.dirname(fileURLToPath(import.meta.url)), 'cluster-worker.js');
}

/**
 * Starts the primary of a multi-worker gateway and its `opts.workers` workers; resolves when every
 * worker listens on the proxy port and the admin API is up. Must run in a cluster primary (the
 * `airlock gateway` process). `input`: the JSON of `AIRLOCK_GATEWAY_CONFIG`.
 * @throws ConfigError for invalid settings; Error with the first worker's message when a worker
 * cannot start (the others are stopped).
 */
export async function startGatewayCluster(
  input: GatewayServiceConfig,
  adminToken: string,
  opts: GatewayClusterOptions,
): Promise<RunningGatewayCluster> {
  const cfg = parseGatewayServiceConfig(input, adminToken);
  if (!cluster.isPrimary) throw new Error('startGatewayCluster must run in the cluster primary');
  const logger = opts.logger ?? createLogger({ component: 'gateway' });
  const ackTimeoutMs = opts.ackTimeoutMs ?? 5_000;
  const ownTable = cfg.sessionSource.kind === 'admin';

  const policy = await PolicyStore.open(cfg.policyDir);
  let source: SessionSource;
  try {
    source = await createSessionSource(cfg.sessionSource);
    await source.start();
  } catch (err) {
    policy.close();
    throw err;
  }
  const table = source.table;
  const sweep = setInterval(() => table.sweepExpired(), 500);
  sweep.unref();

  const slots = new Map<number, Slot>();
  /** budgets.yaml's counters for every worker. */
  const budgets = new BudgetCounters();
  /** Refresh-token credentials' tokens for every worker (oauth2-shared.ts). */
  const oauth2 = primaryOAuth2Tokens(cfg, logger);
  let seq = 0;
  let closing = false;
  let proxyPort: number;
  const backoff = new Map<number, number>();

  const sendTo = (slot: Slot, m: PrimaryMessage): boolean => {
    if (!slot.worker.isConnected()) return false;
    try {
      slot.worker.send(m);
      return true;
    } catch {
      return false;
    }
  };

  /** Sends a change to every synced worker; resolves with the sockets they closed once all applied it. */
  const fanOut = (make: (seq: number) => PrimaryMessage): Promise<number> => {
    const waits: Promise<number>[] = [];
    for (const slot of slots.values()) {
      if (!slot.synced) continue; // it learns the table (already changed) when it says hello
      const n = ++seq;
      waits.push(
        new Promise<number>((resolve) => {
          const timer = setTimeout(() => {
            logger.error(
              { worker: slot.id, pid: slot.worker.process.pid },
              'worker did not acknowledge; killing it',
            );
            slot.worker.process.kill('SIGKILL'); // its sockets die with it; `exit` resolves this wait
          }, ackTimeoutMs);
          slot.pending.set(n, (closed) => {
            clearTimeout(timer);
            resolve(closed);
          });
          if (!sendTo(slot, make(n))) {
            slot.pending.delete(n);
            clearTimeout(timer);
            resolve(0); // gone already: no sockets left, and a new worker starts from the table
          }
        }),
      );
    }
    return Promise.all(waits).then((a) => a.reduce((x, y) => x + y, 0));
  };

  const sessions: AdminSessions = {
    get size() {
      return table.size;
    },
    atAddress: (address) => table.atAddress(address),
    async upsert(session: GatewaySession) {
      table.upsert(session);
      await fanOut((s) => ({ t: 'airlock:upsert', seq: s, session }));
    },
    async replaceAll(list: readonly GatewaySession[]) {
      table.replaceAll(list);
      await fanOut((s) => ({ t: 'airlock:sync', seq: s, sessions: [...list] }));
    },
    async revoke(id: string) {
      table.revoke(id);
      return fanOut((s) => ({ t: 'airlock:revoke', seq: s, id }));
    },
  };

  let startupFailure: ((err: Error) => void) | null = null;
  let allReady: (() => void) | null = null;

  const fork = (id: number, restarts: number): void => {
    const spec: WorkerSpec = { id, config: input };
    // Workers serve no admin API (no admin token); they claim approvals from the control plane with
    // the same shared secret (docs/approvals.md), passed under its own name.
    const worker = cluster.fork({
      [WORKER_ENV]: JSON.stringify(spec),
      AIRLOCK_ADMIN_TOKEN: '',
      [CONTROL_TOKEN_ENV]: adminToken,
    });
    const slot: Slot = {
      id,
      worker,
      synced: false,
      ready: false,
      startedAt: Date.now(),
      restarts,
      pending: new Map(),
      auditFailure: null,
    };
    slots.set(id, slot);
    worker.on('message', (raw: unknown) => {
      if (!isAirlockMessage(raw)) return;
      const m = raw as WorkerMessage;
      if (m.t === 'airlock:hello') {
        // Marked synced in the same turn as the table is sent: every later change reaches it after.
        slot.synced = true;
        sendTo(slot, { t: 'airlock:sync', seq: ++seq, sessions: ownTable ? table.list() : null });
      } else if (m.t === 'airlock:ack') {
        const done = slot.pending.get(m.seq);
        slot.pending.delete(m.seq);
        done?.(m.closedSockets);
      } else if (m.t === 'airlock:ready') {
        slot.ready = true;
        if (restarts > 0) logger.info({ worker: id, pid: m.pid }, 'gateway worker restarted');
        if ([...slots.values()].every((s) => s.ready)) allReady?.();
      } else if (m.t === 'airlock:audit') {
        slot.auditFailure = m.failure;
      } else if (m.t === 'airlock:budget' || m.t === 'airlock:budget-bytes') {
        sendTo(slot, answerBudgetQuery(budgets, m));
      } else if (m.t === 'airlock:oauth2-token') {
        void answerOAuth2Query(oauth2, m).then((reply) => sendTo(slot, reply));
      } else if (m.t === 'airlock:failed') {
        startupFailure?.(new Error(`gateway worker ${id}: ${m.message}`));
        logger.error({ worker: id, error: m.message }, 'gateway worker failed to start');
      }
    });
    worker.on('exit', (code, signal) => {
      for (const done of slot.pending.values()) done(0);
      slot.pending.clear();
      slot.synced = false;
      slot.ready = false;
      if (slots.get(id) !== slot) return;
      if (closing) return void slots.delete(id);
      if (startupFailure) {
        startupFailure(new Error(`gateway worker ${id} exited (${signal ?? code}) while starting`));
        return;
      }
      const lived = Date.now() - slot.startedAt;
      const delay =
        lived >= HEALTHY_AFTER_MS
          ? 0
          : Math.min(Math.max((backoff.get(id) ?? 0) * 2, RESTART_MIN_MS), RESTART_MAX_MS);
      backoff.set(id, delay);
      logger.warn(
        { worker: id, pid: worker.process.pid, code, signal, restartInMs: delay },
        'gateway worker exited; restarting',
      );
      setTimeout(() => {
        if (!closing) fork(id, restarts + 1);
      }, delay).unref();
    });
  };

  const stopWorkers = async (): Promise<void> => {
    closing = true;
    await Promise.all(
      [...slots.values()].map(
        (slot) =>
          new Promise<void>((resolve) => {
            if (slot.worker.isDead()) return resolve();
            const kill = setTimeout(() => slot.worker.process.kill('SIGKILL'), 10_000);
            slot.worker.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            if (!sendTo(slot, { t: 'airlock:stop' })) slot.worker.process.kill('SIGTERM');
          }),
      ),
    );
    slots.clear();
  };

  cluster.setupPrimary({ exec: workerEntry(), args: [] });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`gateway workers not ready after ${opts.startTimeoutMs ?? 60_000} ms`)),
        (opts.startTimeoutMs ?? 60_000) + cfg.caWaitSeconds * 1000,
      );
      allReady = () => {
        clearTimeout(timer);
        resolve();
      };
      startupFailure = (err) => {
        clearTimeout(timer);
        reject(err);
      };
      for (let id = 1; id <= opts.workers; id++) fork(id, 0);
    });
  } catch (err) {
    clearInterval(sweep);
    await stopWorkers();
    await source.stop();
    policy.close();
    throw err;
  } finally {
    startupFailure = null;
    allReady = null;
  }

  // The proxy port: each connection handed to the worker of its source address (see the top).
  const proxy = net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    const ready: number[] = [];
    for (const s of slots.values()) if (s.ready) ready.push(s.id);
    const id = pickWorker(normalizeRemoteAddress(socket.remoteAddress), ready);
    const slot = id === undefined ? undefined : slots.get(id);
    if (!slot?.worker.isConnected()) return void socket.destroy();
    try {
      slot.worker.send({ t: 'airlock:conn' } satisfies PrimaryMessage, socket, { keepOpen: false }, (err) => {
        if (err) socket.destroy();
      });
    } catch {
      socket.destroy();
    }
  });
  try {
    proxyPort = await new Promise<number>((resolve, reject) => {
      proxy.once('error', reject);
      proxy.listen(cfg.port, cfg.listenHost, () => {
        proxy.off('error', reject);
        resolve((proxy.address() as net.AddressInfo).port);
      });
    });
  } catch (err) {
    clearInterval(sweep);
    await stopWorkers();
    await source.stop();
    policy.close();
    throw err;
  }
  const closeProxy = (): Promise<void> => new Promise<void>((r) => proxy.close(() => r()));

  const metrics = new client.AggregatorRegistry();
  const admin: http.Server = createAdminServer({
    sessions,
    policy,
    token: adminToken,
    instanceId: randomUUID(),
    refuseSources: cfg.adminRefuseSources,
    metrics: async () => ({ contentType: metrics.contentType, body: await metrics.clusterMetrics() }),
    notReady: () => {
      const s = [...slots.values()].find((w) => w.auditFailure);
      return s ? `worker ${s.id}: ${s.auditFailure}` : null;
    },
    status: () => ({
      workers: [...slots.values()].map((s) => ({
        id: s.id,
        pid: s.worker.process.pid ?? null,
        ready: s.ready,
        restarts: s.restarts,
      })),
    }),
  });
  let adminPort: number;
  try {
    adminPort = (await listen(admin, cfg.adminPort, cfg.listenHost)).port;
  } catch (err) {
    clearInterval(sweep);
    await closeProxy();
    await stopWorkers();
    await source.stop();
    policy.close();
    throw err;
  }
  logger.info({ workers: opts.workers, proxyPort, adminPort }, 'gateway workers ready');

  return {
    proxyPort,
    adminPort,
    workerPids: () =>
      new Map(
        [...slots.values()].filter((s) => s.worker.process.pid).map((s) => [s.id, s.worker.process.pid!]),
      ),
    async close() {
      clearInterval(sweep);
      await closeProxy();
      await new Promise<void>((r) => {
        admin.close(() => r());
        admin.closeAllConnections();
      });
      await stopWorkers();
      await source.stop();
      policy.close();
    },
  };
}
