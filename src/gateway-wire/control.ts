/**
 * GatewayControl: how the control plane (SessionManager) drives the gateway, whatever carries the
 * calls. A runtime returns one from `ensureGateway()`: Docker the HTTP admin client of its one gateway
 * container (./admin-client.ts), Kubernetes the fan-out to every gateway replica
 * (src/runtime/kubernetes/gateway-control.ts).
 */
import { GatewayUnavailableError } from '../errors.js';
import type { GatewaySession } from './session.js';

/** `GET /admin/status` of a gateway (or the fold of every replica's). */
export interface GatewayStatus {
  /** Identifies the gateway process(es); changes when a gateway restarts, which asks for a resync. */
  instanceId: string;
  /** ISO-8601 start time. */
  startedAt: string;
  /** Version of the enforced policy; null without a valid policy. */
  policyVersion: string | null;
  /** Why the last policy load failed, if it did. */
  policyError: string | null;
  /** Number of sessions in the gateway's table. */
  sessions: number;
}

/**
 * The gateway as the control plane sees it. Every call throws GatewayUnavailableError when the
 * gateway (or, with replicas, any one of them) does not answer or refuses.
 */
export interface GatewayControl {
  /** The gateway's status. @throws GatewayUnavailableError */
  status(): Promise<GatewayStatus>;
  /**
   * Registers (or updates) a session; the gateway serves it from when this resolves.
   * `newSession`: the first push of a session being created — a runtime with replicas that learn
   * sessions on their own (Kubernetes' Pod watch) may skip a replica it cannot connect to.
   * @throws GatewayUnavailableError
   */
  register(session: GatewaySession, opts?: { newSession?: boolean }): Promise<void>;
  /**
   * Kill switch: resolves only once the session is refused (every replica has forgotten it and
   * closed its sockets). @returns the number of client sockets closed. @throws GatewayUnavailableError
   */
  revoke(id: string): Promise<number>;
  /** Brings the gateway's table in line with `sessions` after a gateway restart. @throws GatewayUnavailableError */
  sync(sessions: GatewaySession[]): Promise<void>;
}

/**
 * Polls `control.status()` (every 200 ms) until it answers or `timeoutMs` passes.
 * @throws GatewayUnavailableError naming the last failure when the deadline passes.
 */
export async function waitForGateway(control: GatewayControl, timeoutMs = 30_000): Promise<GatewayStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await control.status();
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new GatewayUnavailableError(`gateway did not come up within ${timeoutMs} ms: ${String(last)}`);
}
