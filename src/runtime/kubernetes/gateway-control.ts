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
  /**
   * The Pod IPs of the given sessions' running sandbox Pods, by session id (sessions whose Pod has no
   * IP, or is gated, ending or revoked, are absent). The SessionManager knows a session by the
   * address it had when prepared (`pod:<name>`), so a later register (a grant) or a resync needs it.
   * @throws RuntimeError when the Pods cannot be read.
   */
  podAddresses?(sessionIds: readonly string[]): Promise<Map<string, string>>;
}

/**
 * GatewayControl on Kubernetes: the SessionManager's calls, translated for a set of gateway replicas
 * that learn sessions from the Kubernetes API (their Pod watch) and are reached through GatewayReplicas:
 *
 * - `status`: every replica's status folded into one (GatewayReplicas.status);
 * - `register`: sent to every replica when the session has a Pod IP — its own, or else its running
 *   Pod's (`podAddresses`: a grant registered after the Pod started); before that (a prepared Pod
 *   has none) there is nothing to bind, and the replicas' watch will see the IP;
 * - `sync` (after a gateway restart): each session with a Pod IP (found the same way) is registered
 *   on every replica, grants included;
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

  register(session: GatewaySession, opts: { newSession?: boolean } = {}): Promise<void> {
    return unavailable(async () => {
      for (const s of await this.withPodIp([session]))
        await this.replicas.register(s, opts.newSession === true);
    });
  }

  sync(sessions: GatewaySession[]): Promise<void> {
    return unavailable(async () => {
      for (const s of await this.withPodIp(sessions)) await this.replicas.register(s);
    });
  }

  /** The sessions that have a Pod IP: their own, or their running Pod's; the others are left out. */
  private async withPodIp(sessions: readonly GatewaySession[]): Promise<GatewaySession[]> {
    const missing = sessions.filter((s) => !hasPodIp(s)).map((s) => s.id);
    const ips =
      missing.length > 0 && this.hooks.podAddresses
        ? await this.hooks.podAddresses(missing)
        : new Map<string, string>();
    return sessions.flatMap((s) => {
      if (hasPodIp(s)) return [s];
      const ip = ips.get(s.id);
      return ip !== undefined && isIP(ip) !== 0 ? [{ ...s, address: ip }] : [];
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
