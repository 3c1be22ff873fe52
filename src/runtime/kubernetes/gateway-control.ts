import { isIP } from 'node:net';
import { GatewayUnavailableError } from '../../errors.js';
import type { GatewayControl, GatewayStatus } from '../../gateway-wire/control.js';
import type { GatewaySession } from '../../gateway-wire/session.js';
import type { GatewayReplicas } from './gateway-replicas.js';

/** What the Kubernetes runtime does around the replica calls. */
export interface KubernetesControlHooks {
  /**
   * Called first on a kill switch: records the revocation on the platform (the Pod's `airlock.io/revoked`
   * label), so every replica's watch refuses the session, including replicas the fan-out cannot reach.
   * @throws RuntimeError when the Pod cannot be labelled.
   */
  beforeRevoke(sessionId: string): Promise<void>;
}

/**
 * GatewayControl on Kubernetes: the SessionManager's calls, translated for a set of gateway replicas
 * that learn sessions from the Kubernetes API (their Pod watch) and are reached through GatewayReplicas:
 *
 * - `status`: every replica's status folded into one (GatewayReplicas.status);
 * - `register`: sent to every replica when the session has a Pod IP; before that (a prepared Pod has
 *   none) there is nothing to bind, and the replicas' watch will see the IP;
 * - `sync` (after a gateway restart): each session with a Pod IP is registered on every replica;
 *   nothing is revoked by a resync here, since revocations travel through the Pod label and `revoke`;
 * - `revoke`: the Pod is labelled revoked, then every replica revokes the session and answers after
 *   closing its sockets: the kill switch resolves only when all replicas refuse.
 *
 * Every failure is a GatewayUnavailableError (a failed Pod label included, with the RuntimeError as
 * its cause).
 */
export class KubernetesGatewayControl implements GatewayControl {
  constructor(
    private readonly replicas: GatewayReplicas,
    private readonly hooks: KubernetesControlHooks,
  ) {}

  status(): Promise<GatewayStatus> {
    return unavailable(() => this.replicas.status());
  }

  register(session: GatewaySession): Promise<void> {
    return unavailable(async () => {
      if (hasPodIp(session)) await this.replicas.register(session);
    });
  }

  sync(sessions: GatewaySession[]): Promise<void> {
    return unavailable(async () => {
      for (const s of sessions.filter(hasPodIp)) await this.replicas.register(s);
    });
  }

  revoke(id: string): Promise<number> {
    return unavailable(async () => {
      await this.hooks.beforeRevoke(id);
      return this.replicas.revoke(id);
    });
  }
}

/** A prepared Pod's address is `pod:<name>` until it has an IP. */
const hasPodIp = (s: GatewaySession): boolean => isIP(s.address) !== 0;

/** Runs `fn`, turning any failure that is not already one into GatewayUnavailableError. */
async function unavailable<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof GatewayUnavailableError) throw err;
    throw new GatewayUnavailableError((err as Error).message, { cause: err });
  }
}
