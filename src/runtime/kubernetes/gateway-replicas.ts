import { createHash } from 'node:crypto';
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import { GatewayUnavailableError } from '../../errors.js';
import { GatewayAdminClient } from '../../gateway-wire/admin-client.js';
import type { GatewayStatus } from '../../gateway-wire/control.js';
import type { GatewaySession } from '../../gateway-wire/session.js';

/** How the control plane finds every gateway replica's admin API. */
export interface ReplicaDiscovery {
  /** Headless Service name resolving to one A/AAAA record per gateway Pod. */
  service?: string | undefined;
  /** Fixed admin base URLs (instead of `service`). */
  urls?: string[] | undefined;
  /** Admin port on each Pod found through `service`. */
  port: number;
  /** Admin bearer token, shared by every replica. */
  token: string;
  /** Per-call deadline, ms. @default 5000 */
  timeoutMs?: number;
}

/**
 * Every gateway replica's admin API at once. On Kubernetes the gateways learn sessions from their Pod
 * watch (src/gateway/session-sources/kubernetes-pods.ts); the control plane still calls each replica
 * directly where it needs an answer from all of them: the kill switch (every replica has closed the
 * session's sockets) and pushing a session's Pod IP as soon as `start()` sees it (so the first call
 * from a new sandbox is recognised even if a replica's watch lags). Replicas are re-discovered on
 * every call (DNS of the headless Service), so rolling updates and scaling need nothing special.
 */
export class GatewayReplicas {
  constructor(private readonly d: ReplicaDiscovery) {
    if (!d.service && !d.urls?.length)
      throw new GatewayUnavailableError('gatewayAdmin: set service or urls to reach the gateway replicas');
  }

  /** Admin base URLs of the replicas right now. @throws GatewayUnavailableError when none is found. */
  async endpoints(): Promise<string[]> {
    if (this.d.urls?.length) return this.d.urls.map((u) => u.replace(/\/+$/, ''));
    const name = this.d.service ?? '';
    const found: string[] = [];
    if (isIP(name)) found.push(name);
    else {
      // lookup (getaddrinfo), not resolve4/resolve6: only lookup honours resolv.conf's search list
      // and ndots, so a short or namespace-qualified Service name (`x.ns.svc`) resolves inside a Pod
      // as it does for every other client there (issue 16: resolve4 answered ESERVFAIL).
      try {
        found.push(...new Set((await dns.lookup(name, { all: true })).map((a) => a.address)));
      } catch {
        // none found: reported below
      }
    }
    if (found.length === 0)
      throw new GatewayUnavailableError(`no gateway replica found: ${name} resolves to no address`);
    return found.sort().map((ip) => `http://${ip.includes(':') ? `[${ip}]` : ip}:${this.d.port}`);
  }

  private async each<T>(
    fn: (c: GatewayAdminClient, url: string) => Promise<T>,
    skipUnconnectable = false,
  ): Promise<T[]> {
    const urls = await this.endpoints();
    const results = await Promise.allSettled(
      urls.map((url) =>
        fn(new GatewayAdminClient({ adminUrl: url, adminToken: this.d.token }, this.d.timeoutMs), url),
      ),
    );
    const failures = results
      .map((r, i) => (r.status === 'rejected' ? { url: urls[i]!, err: r.reason as Error } : null))
      .filter((f): f is { url: string; err: Error } => f !== null);
    const ok = results.length - failures.length;
    // A replica that cannot even be connected to (a terminating Pod the headless Service still
    // lists, a Pod being replaced) may be skipped where allowed, if another one answered.
    const failed = failures
      .filter((f) => !(skipUnconnectable && ok > 0 && isConnectFailure(f.err)))
      .map((f) => `${f.url}: ${f.err.message}`);
    if (failed.length > 0)
      throw new GatewayUnavailableError(
        `${failed.length} of ${urls.length} gateway replicas failed: ${failed.join('; ')}`,
      );
    return results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  }

  /**
   * One status for all replicas: `instanceId` is a digest of every replica's id (it changes when any
   * replica restarts or the set changes), `sessions` the largest table.
   * @throws GatewayUnavailableError when a replica does not answer.
   */
  async status(): Promise<GatewayStatus> {
    const all = await this.each((c) => c.status());
    const ids = all.map((s) => s.instanceId).sort();
    const versions = [...new Set(all.map((s) => s.policyVersion ?? 'none'))];
    return {
      instanceId: createHash('sha256').update(ids.join(',')).digest('hex').slice(0, 32),
      startedAt: all.map((s) => s.startedAt).sort()[0] ?? new Date(0).toISOString(),
      policyVersion: versions.length === 1 ? (all[0]?.policyVersion ?? null) : versions.join(','),
      policyError: all.find((s) => s.policyError)?.policyError ?? null,
      sessions: Math.max(0, ...all.map((s) => s.sessions)),
    };
  }

  /**
   * Registers (or updates) a session on every replica. With `skipUnconnectable` (a new session's
   * first push), a replica that refuses or times out the *connection* is skipped as long as another
   * one took the session: it learns the session from its Pod watch like every replica does
   * (src/gateway/session-sources/kubernetes-pods.ts), and until then refuses its calls (fail
   * closed). Without it (grants, resyncs) every replica must answer. @throws GatewayUnavailableError
   */
  async register(session: GatewaySession, skipUnconnectable = false): Promise<void> {
    await this.each((c) => c.register(session), skipUnconnectable);
  }

  /**
   * Kill switch on every replica: resolves when each one has forgotten the session and closed its
   * sockets; returns the number of sockets closed in all. @throws GatewayUnavailableError
   */
  async revoke(id: string): Promise<number> {
    const n = await this.each((c) => c.revoke(id));
    return n.reduce((a, b) => a + b, 0);
  }
}

/** Error codes of a connection that could not be made (undici or the socket). */
const CONNECT_FAILURES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Whether an admin call failed before a connection existed (nothing reached that replica). */
export function isConnectFailure(err: Error): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECT_FAILURES.has(code)) return true;
  }
  return false;
}
