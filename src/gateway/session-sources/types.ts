import type { SessionTable } from '../sessions.js';

/**
 * Where a gateway learns its sessions. Every source hands the gateway one SessionTable, which the
 * proxy identifies requests with and the admin API (src/gateway/admin.ts) writes to; a source may
 * also keep the table current on its own:
 *
 * - `admin` (./admin.ts, Docker): nothing beyond the admin API; the control plane pushes every
 *   session and revocation.
 * - `kubernetes` (./kubernetes-pods.ts): a list+watch of the sandbox Pods feeds the table, so every
 *   replica serves every session and a restarted replica rebuilds its table from the API server.
 */
export interface SessionSource {
  /** The table this source feeds (the same object for the source's whole life). */
  readonly table: SessionTable;
  /**
   * Fills the table and starts keeping it current; the gateway opens its proxy port only after this
   * resolves. @throws Error when the source cannot be read at all (e.g. the Pod list fails).
   */
  start(): Promise<void>;
  /** Stops feeding the table (the table keeps its last contents). */
  stop(): Promise<void>;
}
