import { SessionTable } from '../sessions.js';
import type { SessionSource } from './types.js';

/**
 * The session source of a gateway whose control plane pushes sessions (Docker): a plain SessionTable,
 * filled and emptied only through the admin API (`PUT`/`DELETE /admin/sessions…`, src/gateway/admin.ts).
 */
export class AdminSessionSource implements SessionSource {
  readonly table: SessionTable;

  /** @param now clock for TTL checks, epoch ms. */
  constructor(now: () => number = Date.now) {
    this.table = new SessionTable(now);
  }

  async start(): Promise<void> {
    // Nothing to read: the control plane registers sessions once it sees the admin API up.
  }

  async stop(): Promise<void> {}
}
