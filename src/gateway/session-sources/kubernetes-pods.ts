import { CoreV1Api, type Informer, type KubeConfig, makeInformer, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { gatewaySessionSchema, type GatewaySession } from '../../gateway-wire/session.js';
import { kubeFailure } from '../../kube/client.js';
import { K8S_ANNOTATION, K8S_LABEL, sandboxSelector } from '../../kube/labels.js';
import { SessionTable } from '../sessions.js';
import type { SessionSource } from './types.js';

/**
 * The session table of a gateway on Kubernetes: a SessionTable that remembers what was revoked. Once a
 * session is revoked (admin kill switch, TTL) an update for it is ignored, so an event still queued in
 * this replica's watch from before the revocation cannot bring the session back. Tombstones are dropped
 * when the Pod's deletion is seen, or after `tombstoneMs`.
 *
 * Two writers feed it: the control plane through the admin API (`upsert`: its word, time-boxed grants
 * included) and this replica's Pod watch (`upsertFromPod`). A Pod carries no grants (they change
 * while the Pod does not), so a Pod event keeps the grants the control plane last pushed for the
 * session instead of dropping them; a replica that restarts learns them again from the control
 * plane's resync (`sync` registers every session on every replica).
 */
export class WatchedSessionTable extends SessionTable {
  private readonly tombstones = new Map<string, number>();
  /** Grants the control plane last pushed per session id (absent: none pushed, or none left). */
  private readonly pushedGrants = new Map<string, NonNullable<GatewaySession['grants']>>();

  constructor(
    private readonly clock: () => number = Date.now,
    private readonly tombstoneMs = 24 * 3600_000,
  ) {
    super(clock);
  }

  override revoke(id: string): number {
    this.tombstones.set(id, this.clock());
    this.pushedGrants.delete(id);
    return super.revoke(id);
  }

  /**
   * Adds or replaces a session as the control plane registers it (admin API): its `grants` (or their
   * absence: none left) become the session's grants until the control plane pushes it again. Ignored
   * while the session is revoked (tombstone).
   */
  override upsert(session: GatewaySession): void {
    if (!this.place(session)) return;
    if (session.grants && session.grants.length > 0) this.pushedGrants.set(session.id, session.grants);
    else this.pushedGrants.delete(session.id);
  }

  /**
   * Adds or replaces a session as its Pod shows it (the Pod watch): identity, role, expiry, creator
   * and placeholders from the Pod; the grants the control plane last pushed for it are kept.
   */
  upsertFromPod(session: GatewaySession): void {
    const { grants: _fromPod, ...rest } = session;
    const grants = this.pushedGrants.get(session.id);
    this.place(grants ? { ...rest, grants } : rest);
  }

  /** Puts `session` in the table unless it is revoked; whether it did. */
  private place(session: GatewaySession): boolean {
    const t = this.tombstones.get(session.id);
    if (t !== undefined) {
      if (this.clock() - t < this.tombstoneMs) return false;
      this.tombstones.delete(session.id);
    }
    const grants = this.pushedGrants.get(session.id);
    super.upsert(session);
    // An address change inside upsert revokes the old binding, not the session itself.
    this.tombstones.delete(session.id);
    if (grants) this.pushedGrants.set(session.id, grants);
    return true;
  }

  /** The Pod is gone for good: forget it, its tombstone and its grants. */
  forget(id: string): void {
    super.revoke(id);
    this.tombstones.delete(id);
    this.pushedGrants.delete(id);
  }

  isRevoked(id: string): boolean {
    return this.tombstones.has(id);
  }
}

/** What a gateway does with a Pod it sees: serve the session, refuse it for good, or wait for more. */
export type PodVerdict =
  | { kind: 'serve'; session: GatewaySession }
  | { kind: 'revoke'; id: string; why: string }
  | { kind: 'wait'; id: string | null };

/**
 * Maps a Pod to a verdict. Served: it has the session label, role and credential annotations, a Pod IP,
 * no start gate, a future expiry (the `created-by` annotation, when present, becomes the session's
 * `creator`; the `placeholders` annotation its credential placeholders — one that is not a valid
 * name → placeholder object waits). Refused for good: revoked (`airlock.io/revoked`), deleting
 * (`deletionTimestamp`), ended (Succeeded/Failed) or expired. Anything else (no IP yet, still gated,
 * annotations missing) waits: a later event may complete it, and nothing is revoked on its account.
 */
export function podVerdict(pod: V1Pod, nowMs = Date.now()): PodVerdict {
  const md = pod.metadata;
  const id = md?.labels?.[K8S_LABEL.session] ?? null;
  if (!md || !id) return { kind: 'wait', id };
  if (md.labels?.[K8S_LABEL.revoked] !== undefined) return { kind: 'revoke', id, why: 'revoked' };
  if (md.deletionTimestamp) return { kind: 'revoke', id, why: 'deleting' };
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return { kind: 'revoke', id, why: `phase ${phase}` };
  const expiresAtMs = Date.parse(md.annotations?.[K8S_ANNOTATION.expiresAt] ?? '');
  if (Number.isFinite(expiresAtMs) && expiresAtMs <= nowMs) return { kind: 'revoke', id, why: 'expired' };
  const role = md.annotations?.[K8S_ANNOTATION.role];
  const digest = md.annotations?.[K8S_ANNOTATION.credentialSha256];
  const address = pod.status?.podIP;
  if (!role || !digest || !/^[0-9a-f]{64}$/.test(digest) || !Number.isFinite(expiresAtMs) || !address)
    return { kind: 'wait', id };
  if ((pod.spec?.schedulingGates ?? []).length > 0) return { kind: 'wait', id };
  const session: GatewaySession = { id, role, address, credentialSha256: digest, expiresAtMs };
  // The creating API caller limits the session's egress when the policy gives it egress rules.
  const creator = md.annotations?.[K8S_ANNOTATION.createdBy];
  if (creator) session.creator = creator;
  // Credential placeholders (docs/credentials.md "Placeholders"), as the control plane wrote them.
  const placeholders = md.annotations?.[K8S_ANNOTATION.placeholders];
  if (placeholders) {
    const parsed = placeholdersOf(placeholders);
    if (parsed === null) return { kind: 'wait', id };
    if (Object.keys(parsed).length > 0) session.placeholders = parsed;
  }
  return { kind: 'serve', session };
}

/** The placeholders annotation's JSON object, or null when it is not one the session schema accepts. */
function placeholdersOf(text: string): Record<string, string> | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const r = gatewaySessionSchema.shape.placeholders.safeParse(value);
  return r.success ? (r.data ?? {}) : null;
}

export interface PodSessionSourceOptions {
  kubeConfig: KubeConfig;
  /** Namespace of the sandbox Pods. */
  namespace: string;
  /** `airlock.io/instance` label value of this installation. */
  instance: string;
  logger?: Logger | undefined;
  /** First delay before re-watching after an error, ms (doubles up to 30 s). @default 1000 */
  retryMs?: number;
}

/**
 * Feeds a gateway's session table from the API server: a list+watch of the sandbox Pods (by label).
 * Each add/update maps the Pod through `podVerdict` (serve it at its Pod IP, revoke it, or wait); a delete
 * revokes. Every gateway replica runs one, so all replicas agree, and a restarted replica rebuilds its
 * table from the API server: no session state lives only in memory.
 *
 * While the API server is unreachable the last known table stays in force (sessions still expire on
 * their own); the watch is retried with backoff and relists when it comes back (deleted Pods are
 * reported then).
 */
export class PodSessionSource implements SessionSource {
  private informer: Informer<V1Pod> | null = null;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryMs: number;
  private synced = false;

  constructor(
    readonly table: WatchedSessionTable,
    private readonly o: PodSessionSourceOptions,
  ) {
    this.retryMs = o.retryMs ?? 1000;
  }

  /** Whether the initial list has been applied. */
  get ready(): boolean {
    return this.synced;
  }

  /** Lists the Pods, applies them, and keeps watching. Resolves after the initial list. @throws on failure to list */
  async start(): Promise<void> {
    const core = this.o.kubeConfig.makeApiClient(CoreV1Api);
    const selector = sandboxSelector(this.o.instance);
    const informer = makeInformer<V1Pod>(
      this.o.kubeConfig,
      `/api/v1/namespaces/${this.o.namespace}/pods`,
      () => core.listNamespacedPod({ namespace: this.o.namespace, labelSelector: selector }),
      selector,
    );
    informer.on('add', (p) => this.apply(p));
    informer.on('update', (p) => this.apply(p));
    informer.on('delete', (p) => {
      const id = p.metadata?.labels?.[K8S_LABEL.session];
      if (id) this.table.forget(id);
    });
    informer.on('connect', () => {
      this.retryMs = this.o.retryMs ?? 1000;
    });
    this.informer = informer;
    // The informer reports a failed initial list through its error callback, not by rejecting.
    let startError: unknown = null;
    const onStartError = (err: unknown): void => {
      startError ??= err ?? new Error('watch failed');
    };
    informer.on('error', onStartError);
    try {
      await informer.start();
    } catch (err) {
      startError ??= err;
    }
    informer.off('error', onStartError);
    if (startError) {
      await informer.stop();
      throw new Error(`cannot watch Pods in ${this.o.namespace}: ${kubeFailure(startError).message}`, {
        cause: startError,
      });
    }
    informer.on('error', (err: unknown) => this.onError(err));
    this.synced = true;
  }

  /** Applies one Pod (exported for tests of the mapping through a real table). */
  apply(pod: V1Pod): void {
    const v = podVerdict(pod);
    if (v.kind === 'serve') this.table.upsertFromPod(v.session);
    else if (v.kind === 'revoke') this.table.revoke(v.id);
  }

  private onError(err: unknown): void {
    if (this.stopped) return;
    this.o.logger?.warn(
      { err: kubeFailure(err).message, retryMs: this.retryMs },
      'Pod watch failed; keeping the last known sessions and retrying',
    );
    this.retryTimer = setTimeout(() => {
      if (this.stopped || !this.informer) return;
      this.informer.start().catch((e: unknown) => this.onError(e));
    }, this.retryMs);
    this.retryTimer.unref();
    this.retryMs = Math.min(this.retryMs * 2, 30_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.informer?.stop();
  }
}
