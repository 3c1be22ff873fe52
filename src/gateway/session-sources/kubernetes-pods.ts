import { CoreV1Api, type Informer, type KubeConfig, makeInformer, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { GatewaySession } from '../../gateway-wire/session.js';
import { kubeFailure } from '../../kube/client.js';
import { K8S_ANNOTATION, K8S_LABEL, sandboxSelector } from '../../kube/labels.js';
import { SessionTable } from '../sessions.js';
import type { SessionSource } from './types.js';

/**
 * The session table of a gateway on Kubernetes: a SessionTable that remembers what was revoked. Once a
 * session is revoked (admin kill switch, TTL) an update for it is ignored, so an event still queued in
 * this replica's watch from before the revocation cannot bring the session back. Tombstones are dropped
 * when the Pod's deletion is seen, or after `tombstoneMs`.
 */
export class WatchedSessionTable extends SessionTable {
  private readonly tombstones = new Map<string, number>();

  constructor(
    private readonly clock: () => number = Date.now,
    private readonly tombstoneMs = 24 * 3600_000,
  ) {
    super(clock);
  }

  override revoke(id: string): number {
    this.tombstones.set(id, this.clock());
    return super.revoke(id);
  }

  override upsert(session: GatewaySession): void {
    const t = this.tombstones.get(session.id);
    if (t !== undefined) {
      if (this.clock() - t < this.tombstoneMs) return;
      this.tombstones.delete(session.id);
    }
    super.upsert(session);
    // An address change inside upsert revokes the old binding, not the session itself.
    this.tombstones.delete(session.id);
  }

  /** The Pod is gone for good: forget it and its tombstone. */
  forget(id: string): void {
    super.revoke(id);
    this.tombstones.delete(id);
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
 * `creator`). Refused for good: revoked (`airlock.io/revoked`), deleting
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
  return { kind: 'serve', session };
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
    if (v.kind === 'serve') this.table.upsert(v.session);
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
