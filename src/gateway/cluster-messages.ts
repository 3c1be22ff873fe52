/**
 * The IPC messages between the primary of a multi-worker gateway (./cluster.ts) and its workers
 * (./cluster-worker.ts). Every message carries `t` with the `airlock:` prefix, so other users of the
 * channel (prom-client's metrics aggregation) are told apart.
 */
import type { GatewayServiceConfig } from '../gateway-wire/config.js';
import type { GatewaySession } from '../gateway-wire/session.js';
import type { BudgetQuery, BudgetReply } from './budgets.js';
import type { OAuth2Query, OAuth2Reply } from './oauth2-shared.js';

/** Primary → worker. Each change carries `seq`; the worker answers `airlock:ack` with it once applied. */
export type PrimaryMessage =
  /** The whole table (`null`: keep what the worker's own session source holds, i.e. Kubernetes). */
  | { t: 'airlock:sync'; seq: number; sessions: GatewaySession[] | null }
  | { t: 'airlock:upsert'; seq: number; session: GatewaySession }
  /** Kill switch: acknowledged after the session's sockets in this worker are destroyed. */
  | { t: 'airlock:revoke'; seq: number; id: string }
  /** Close the proxy (flushing the audit file) and exit. */
  | { t: 'airlock:stop' }
  /**
   * A client connection accepted by the primary on the proxy port, sent with the message as its
   * handle: every connection from one source address goes to the same worker (cluster.ts).
   */
  | { t: 'airlock:conn' }
  /** The answer to a worker's budget query (budgets.ts). */
  | BudgetReply
  /** The answer to a worker's OAuth2 token query (oauth2-shared.ts). */
  | OAuth2Reply;

/** Worker → primary. */
export type WorkerMessage =
  /** The worker's session source runs; it waits for `airlock:sync` before opening the proxy port. */
  | { t: 'airlock:hello' }
  | { t: 'airlock:ack'; seq: number; closedSockets: number }
  | { t: 'airlock:ready'; proxyPort: number; pid: number }
  /** The worker's audit file cannot be written (`audit.onFailure: deny`: it refuses calls), or can again (null). */
  | { t: 'airlock:audit'; failure: string | null }
  /** Startup failed (the worker exits next). */
  | { t: 'airlock:failed'; message: string }
  /** A budget check or bytes count, answered from the primary's counters (budgets.ts). */
  | BudgetQuery
  /** A refresh-token credential's access token, from the primary's cache (oauth2-shared.ts). */
  | OAuth2Query;

/** Environment variable carrying a worker's settings (JSON of {@link WorkerSpec}). */
export const WORKER_ENV = 'AIRLOCK_GATEWAY_WORKER';

/** What the primary hands a worker when it forks it. */
/**
 * Environment variable carrying the token a worker presents to the control plane's approvals
 * endpoint (the gateway admin token, which the primary does not give workers as their admin token).
 */
export const CONTROL_TOKEN_ENV = 'AIRLOCK_CONTROL_TOKEN';

export interface WorkerSpec {
  /** 1..N; a restarted worker keeps its number. */
  id: number;
  config: GatewayServiceConfig;
}

/** Whether `m` is one of the messages above (and not another user's). */
export function isAirlockMessage(m: unknown): m is { t: string } {
  return (
    typeof m === 'object' &&
    m !== null &&
    typeof (m as { t?: unknown }).t === 'string' &&
    (m as { t: string }).t.startsWith('airlock:')
  );
}
