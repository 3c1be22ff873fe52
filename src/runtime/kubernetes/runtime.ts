import { promises as dns } from 'node:dns';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import {
  AppsV1Api,
  CoreV1Api,
  type KubeConfig,
  NetworkingV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Config } from '../../config/schema.js';
import { RuntimeError, SessionConflictError } from '../../errors.js';
import type { GatewayControl } from '../../gateway-wire/control.js';
import type { ExecResult, IsolationTargets, SandboxInfo, SandboxRuntime, SandboxSpec } from '../types.js';
import { type CaMaterial, sandboxTrustBundle } from '../../pki/ca.js';
import { caSha256, KubernetesCaStore, syncTrustBundle } from './ca-store.js';
import { isNotFound, kubeFailure, loadKubeConfig, wrapKube } from '../../kube/client.js';
import { execInPod } from './exec.js';
import { KubernetesGatewayControl } from './gateway-control.js';
import { GatewayReplicas } from './gateway-replicas.js';
import { parsePlaceholders } from '../placeholders.js';
import { AuditCollector } from './audit-collector.js';
import {
  K8S_ANNOTATION,
  K8S_LABEL,
  SANDBOX_CONTAINER,
  START_GATE,
  sandboxObjectName,
  sandboxSelector,
} from '../../kube/labels.js';
import {
  type ManifestSettings,
  podOwner,
  sandboxNetworkPolicy,
  sandboxPod,
  sandboxSecret,
  trustBundleConfigMap,
} from './manifests.js';

/** Options beyond the config (tests, embedding). */
export interface KubernetesRuntimeOptions {
  /** A ready kubeconfig instead of `runtime.kubernetes.kubeconfig` / in-cluster. */
  kubeConfig?: KubeConfig;
  /** The gateway admin token instead of reading `gatewayAdmin.tokenFile`. */
  adminToken?: string;
  logger?: Logger;
  /** How often the audit collector reads every replica, ms. @default 1000 */
  auditIntervalMs?: number;
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
/** Poll interval while waiting for a started Pod to run, ms. */
const START_POLL_MS = 250;

/** Network plugins known to enforce NetworkPolicy, by the DaemonSet name they install in kube-system. */
const ENFORCING_CNI_DAEMONSETS = [
  'calico-node',
  'cilium',
  'antrea-agent',
  'kube-router',
  'weave-net',
  'canal',
];

/**
 * The Kubernetes runtime (@kubernetes/client-node). Per session, in `runtime.kubernetes.sandboxNamespace`:
 * a Pod `airlock-<id>` (gated until `start`), a Secret with the proxy URL and credential, and a
 * NetworkPolicy allowing egress only to the gateway Pods' proxy port; the Secret and NetworkPolicy are
 * owned by the Pod. Labels and annotations hold every fact about a session (recovery by label, and the
 * gateways' Pod watch); nothing lives only in memory. With HTTPS interception, the installation CA
 * lives in a Secret of the gateway namespace (ca-store.ts; the gateways mount it) and the sandbox
 * namespace gets only a trust bundle ConfigMap, which every sandbox Pod mounts at /etc/airlock. See
 * docs/kubernetes.md.
 *
 * The gateways run as their own Deployment (the chart's) and learn sessions from the API server; the
 * control plane reaches their admin APIs through GatewayReplicas, which `ensureGateway()` hands to the
 * SessionManager as a GatewayControl (gateway-control.ts).
 */
export class KubernetesRuntime implements SandboxRuntime {
  readonly kc: KubeConfig;
  readonly core: CoreV1Api;
  readonly net: NetworkingV1Api;
  private readonly k: Config['runtime']['kubernetes'];
  private readonly settings: ManifestSettings;
  private control: KubernetesGatewayControl | null = null;
  private replicas: GatewayReplicas | null = null;
  /** Pulls every replica's audit events into `audit.file` (started with the gateway control). */
  private collector: AuditCollector | null = null;
  private readonly logger: Logger | undefined;
  /** The CA Secret (release namespace), when `gateway.tls.intercept`. */
  readonly caStore: KubernetesCaStore | null;
  private trustReady = false;
  private trustTimer: NodeJS.Timeout | null = null;

  /** @throws RuntimeError when the kubeconfig cannot be loaded. */
  constructor(
    private readonly cfg: Config,
    private readonly opts: KubernetesRuntimeOptions = {},
  ) {
    this.k = cfg.runtime.kubernetes;
    this.kc = opts.kubeConfig ?? loadKubeConfig(this.k);
    this.core = this.kc.makeApiClient(CoreV1Api);
    this.net = this.kc.makeApiClient(NetworkingV1Api);
    this.logger = opts.logger;
    const intercept = cfg.gateway.tls.intercept;
    this.settings = {
      kubernetes: this.k,
      resources: cfg.runtime.resources,
      gatewayPort: cfg.gateway.port,
      trustBundleConfigMap: intercept ? this.k.ca.bundleConfigMap : null,
    };
    this.caStore = intercept
      ? new KubernetesCaStore(this.core, this.k.gatewayNamespace, this.k.ca.secretName)
      : null;
  }

  /**
   * HTTPS interception (docs/kubernetes.md): makes sure the CA Secret holds a usable CA (generated on the
   * first start, rotated when less than a day is left) and that the sandbox namespace's trust bundle
   * ConfigMap carries the system roots plus the current CA (and the previous one during an overlap).
   * Idempotent; called at start and every `ca.resyncSeconds`.
   * @returns the CA material, or null when interception is off.
   * @throws RuntimeError when the Secret or the ConfigMap cannot be read or written.
   */
  async ensureTrust(now = Date.now()): Promise<CaMaterial | null> {
    if (!this.caStore) return null;
    const { material, changed } = await this.caStore.ensure(now);
    if (changed)
      this.logger?.info(
        {
          secret: `${this.caStore.namespace}/${this.caStore.secretName}`,
          sha256: caSha256(material.certPem),
        },
        'installation CA stored (new or rotated)',
      );
    await this.syncBundle(material);
    return material;
  }

  /**
   * Rotates the CA now (`airlock ca rotate` on Kubernetes); the old certificate stays trusted for
   * `overlapMs`. The gateways switch when the kubelet updates their mounted Secret.
   * @throws RuntimeError, including when interception is off.
   */
  async rotateCa(overlapMs: number, now = Date.now()): Promise<CaMaterial> {
    if (!this.caStore) throw new RuntimeError('HTTPS interception is off (gateway.tls.intercept: false)');
    const material = await this.caStore.rotate(overlapMs, now);
    await this.syncBundle(material);
    return material;
  }

  private async syncBundle(material: CaMaterial): Promise<void> {
    const name = this.settings.trustBundleConfigMap;
    if (!name) return;
    const done = await syncTrustBundle(
      this.core,
      trustBundleConfigMap(
        name,
        this.settings,
        sandboxTrustBundle(material.trustPem),
        caSha256(material.certPem),
      ),
    );
    if (done !== 'unchanged')
      this.logger?.info({ configMap: `${this.ns}/${name}`, done }, 'sandbox trust bundle written');
  }

  private get ns(): string {
    return this.k.sandboxNamespace;
  }

  /**
   * Fails with a clear message when the API server or the sandbox namespace cannot be reached with this
   * identity (lists Pods there, the least the runtime needs). @throws RuntimeError
   */
  async ping(): Promise<void> {
    try {
      await this.core.listNamespacedPod({ namespace: this.ns, limit: 1 });
    } catch (err) {
      const f = kubeFailure(err);
      throw new RuntimeError(
        `cannot list Pods in namespace ${this.ns} on ${this.kc.getCurrentCluster()?.server ?? '?'}: ${f.message}`,
        { cause: err },
      );
    }
  }

  /**
   * Whether the cluster is known to enforce NetworkPolicy: true when `networkPolicyEnforced` is set, or a
   * known enforcing network plugin's DaemonSet is visible in kube-system. `detail` says why (or why it
   * cannot tell, e.g. no permission to look, which is the chart's least-privilege default).
   */
  async networkPolicyEnforcement(): Promise<{ enforced: boolean; detail: string }> {
    if (this.k.networkPolicyEnforced)
      return {
        enforced: true,
        detail: 'runtime.kubernetes.networkPolicyEnforced is true (asserted by the operator)',
      };
    try {
      const list = await this.kc
        .makeApiClient(AppsV1Api)
        .listNamespacedDaemonSet({ namespace: 'kube-system' });
      const names = list.items.map((d) => d.metadata?.name ?? '');
      const hit = names.find((n) => ENFORCING_CNI_DAEMONSETS.some((c) => n === c || n.startsWith(`${c}-`)));
      return hit
        ? { enforced: true, detail: `network plugin DaemonSet kube-system/${hit} enforces NetworkPolicy` }
        : { enforced: false, detail: 'no known NetworkPolicy-enforcing network plugin found in kube-system' };
    } catch (err) {
      return { enforced: false, detail: `cannot inspect kube-system: ${kubeFailure(err).message}` };
    }
  }

  /**
   * Makes sure the CA and trust bundle are in place (interception) and returns the fan-out to every
   * gateway replica. The gateways themselves are the chart's Deployment: nothing is started here.
   * @throws RuntimeError (CA, admin token file), GatewayUnavailableError (no `gatewayAdmin.service`/`urls`)
   */
  async ensureGateway(): Promise<GatewayControl> {
    if (this.caStore && !this.trustReady) {
      await this.ensureTrust();
      this.trustReady = true;
      this.trustTimer = setInterval(() => {
        this.ensureTrust().catch((err: unknown) =>
          this.logger?.error({ err }, 'CA / trust bundle check failed (retried at the next interval)'),
        );
      }, this.k.ca.resyncSeconds * 1000);
      this.trustTimer.unref();
    }
    if (!this.control) {
      const a = this.k.gatewayAdmin;
      let token = this.opts.adminToken;
      if (!token) {
        try {
          token = readFileSync(a.tokenFile, 'utf8').trim();
        } catch (err) {
          throw new RuntimeError(
            `cannot read the gateway admin token ${a.tokenFile}: ${(err as Error).message}`,
            {
              cause: err,
            },
          );
        }
      }
      this.replicas = new GatewayReplicas({ service: a.service, urls: a.urls, port: a.port, token });
      this.control = new KubernetesGatewayControl(this.replicas, {
        beforeRevoke: (id) => this.markRevoked(id),
        podAddresses: (ids) => this.runningPodIps(ids),
      });
      const replicas = this.replicas;
      this.collector = new AuditCollector({
        endpoints: () => replicas.endpoints(),
        token,
        file: this.cfg.audit.file,
        ...(this.opts.auditIntervalMs !== undefined ? { intervalMs: this.opts.auditIntervalMs } : {}),
        ...(this.logger ? { logger: this.logger } : {}),
      });
      await this.collector.start();
    }
    return this.control;
  }

  /** The gateway address that goes into proxy URLs: `gatewayService` itself when an IP, else resolved. */
  private async gatewayHost(): Promise<string> {
    const host = this.k.gatewayService;
    if (isIP(host)) return host;
    try {
      return (await dns.lookup(host)).address;
    } catch (err) {
      throw new RuntimeError(`cannot resolve the gateway Service ${host}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  async prepare(spec: SandboxSpec): Promise<SandboxInfo> {
    const gatewayHost = await this.gatewayHost();
    const podSpec = sandboxPod(spec, this.settings);
    let pod: V1Pod;
    try {
      pod = await this.core.createNamespacedPod({
        namespace: this.ns,
        body: podSpec,
        fieldValidation: 'Strict',
      });
    } catch (err) {
      throw wrapKube(`create Pod for session ${spec.sessionId}`, err);
    }
    const owner = podOwner(pod);
    try {
      await this.core.createNamespacedSecret({
        namespace: this.ns,
        body: sandboxSecret(spec, this.settings, gatewayHost, owner),
        fieldValidation: 'Strict',
      });
      await this.net.createNamespacedNetworkPolicy({
        namespace: this.ns,
        body: sandboxNetworkPolicy(spec, this.settings, owner),
        fieldValidation: 'Strict',
      });
    } catch (err) {
      await this.removeObjects(spec.sessionId).catch((e: unknown) =>
        this.logger?.error({ err: e, sessionId: spec.sessionId }, 'cleanup after a failed prepare failed'),
      );
      throw wrapKube(`create Secret/NetworkPolicy for session ${spec.sessionId}`, err);
    }
    return this.infoOf(pod);
  }

  /**
   * Removes the start gate, waits (up to `startTimeoutSeconds`) until the Pod runs with an IP, then pushes
   * the session with that IP to every gateway replica, so its first call is recognised at once.
   * @throws RuntimeError on timeout, or when the Pod fails or is deleted meanwhile.
   */
  async start(sessionId: string): Promise<void> {
    const name = sandboxObjectName(sessionId);
    try {
      await this.core.patchNamespacedPod(
        { name, namespace: this.ns, body: { spec: { schedulingGates: null } } },
        mergePatch,
      );
    } catch (err) {
      throw wrapKube(`start sandbox ${sessionId}`, err);
    }
    const deadline = Date.now() + this.k.startTimeoutSeconds * 1000;
    let pod: V1Pod;
    for (;;) {
      try {
        pod = await this.core.readNamespacedPod({ name, namespace: this.ns });
      } catch (err) {
        throw wrapKube(`start sandbox ${sessionId}`, err);
      }
      const phase = pod.status?.phase;
      if (phase === 'Failed' || phase === 'Succeeded' || pod.metadata?.deletionTimestamp)
        throw new RuntimeError(`sandbox ${sessionId} ended before it ran (phase ${phase ?? 'unknown'})`);
      if (phase === 'Running' && pod.status?.podIP) break;
      if (Date.now() >= deadline) {
        const why = pod.status?.conditions?.find((c) => c.status === 'False')?.message ?? phase ?? 'unknown';
        throw new RuntimeError(
          `sandbox ${sessionId} did not run within ${this.k.startTimeoutSeconds} s: ${why}`,
        );
      }
      await new Promise((r) => setTimeout(r, START_POLL_MS));
    }
    const info = this.infoOf(pod);
    // Skips a replica it cannot connect to (a terminating Pod during a rollout): it learns the
    // session from its Pod watch.
    await this.replicas?.register(
      {
        id: info.sessionId,
        role: info.role,
        address: info.address,
        credentialSha256: info.credentialSha256,
        expiresAtMs: info.expiresAt.getTime(),
        // Re-registered at start: the same record the manager registered (delegation, placeholders).
        ...(info.createdBy ? { creator: info.createdBy } : {}),
        ...(info.placeholders && Object.keys(info.placeholders).length > 0
          ? { placeholders: info.placeholders }
          : {}),
      },
      true,
    );
  }

  async exec(
    sessionId: string,
    command: string[],
    timeoutMs: number,
    onOutput?: (stream: 'stdout' | 'stderr', data: string) => void,
  ): Promise<ExecResult> {
    const name = sandboxObjectName(sessionId);
    let pod: V1Pod;
    try {
      pod = await this.core.readNamespacedPod({ name, namespace: this.ns });
    } catch (err) {
      throw wrapKube(`exec in ${sessionId}`, err);
    }
    if (pod.status?.phase !== 'Running')
      throw new SessionConflictError(
        sessionId,
        `sandbox Pod ${name} is ${pod.status?.phase ?? 'unknown'}, not Running`,
      );
    return execInPod(
      this.kc,
      { namespace: this.ns, pod: name, container: SANDBOX_CONTAINER },
      command,
      timeoutMs,
      onOutput,
    );
  }

  /**
   * The isolation self-test's targets: the gateway Service address sandboxes use (proxy port must
   * connect) and every gateway replica's admin API (must not connect: the sandbox NetworkPolicy
   * allows only the proxy port). No other network of the project is known here; the control plane's
   * own addresses are probed by the self-test itself. @throws RuntimeError, GatewayUnavailableError
   */
  async isolationTargets(_sessionId: string): Promise<IsolationTargets> {
    const admin: IsolationTargets['admin'] = [];
    for (const url of (await this.replicas?.endpoints()) ?? []) {
      const u = new URL(url);
      const host = u.hostname.replace(/^\[|\]$/g, '');
      if (isIP(host)) admin.push({ host, port: Number(u.port || 80) });
    }
    return {
      gateway: { host: await this.gatewayHost(), port: this.cfg.gateway.port },
      admin,
      otherNetworks: [],
    };
  }

  /** Labels the Pod revoked: every gateway replica's watch refuses the session from then on. */
  async markRevoked(sessionId: string): Promise<void> {
    try {
      await this.core.patchNamespacedPod(
        {
          name: sandboxObjectName(sessionId),
          namespace: this.ns,
          body: { metadata: { labels: { [K8S_LABEL.revoked]: 'true' } } },
        },
        mergePatch,
      );
    } catch (err) {
      if (!isNotFound(err)) throw wrapKube(`revoke session ${sessionId}`, err);
    }
  }

  /**
   * Kill switch, platform side: the Pod is labelled revoked (gateways refuse), then the NetworkPolicy goes
   * (with the namespace's default-deny, the Pod has no way out at all), then the Pod (no grace period)
   * and the Secret. What is already gone is skipped.
   */
  async remove(sessionId: string): Promise<void> {
    await this.markRevoked(sessionId);
    await this.removeObjects(sessionId);
  }

  /** Deletes NetworkPolicy, Pod and Secret; tries all three, then throws the first failure (404s are fine). */
  private async removeObjects(sessionId: string): Promise<void> {
    const name = sandboxObjectName(sessionId);
    const steps: Array<[string, () => Promise<unknown>]> = [
      ['NetworkPolicy', () => this.net.deleteNamespacedNetworkPolicy({ name, namespace: this.ns })],
      ['Pod', () => this.core.deleteNamespacedPod({ name, namespace: this.ns, gracePeriodSeconds: 0 })],
      ['Secret', () => this.core.deleteNamespacedSecret({ name, namespace: this.ns })],
    ];
    let first: Error | null = null;
    for (const [kind, del] of steps) {
      try {
        await del();
      } catch (err) {
        if (!isNotFound(err)) first ??= wrapKube(`delete ${kind} ${this.ns}/${name}`, err);
      }
    }
    if (first) throw first;
  }

  async list(): Promise<SandboxInfo[]> {
    try {
      const pods = await this.core.listNamespacedPod({
        namespace: this.ns,
        labelSelector: sandboxSelector(this.k.instance),
      });
      return pods.items.filter((p) => p.metadata?.labels?.[K8S_LABEL.session]).map((p) => this.infoOf(p));
    } catch (err) {
      throw wrapKube('list sandboxes', err);
    }
  }

  /**
   * The Pod IPs of the sessions' running Pods (started, not ending, not revoked), by session id: one
   * read for one session, one list for more. @throws RuntimeError when the API server refuses.
   */
  private async runningPodIps(ids: readonly string[]): Promise<Map<string, string>> {
    let pods: V1Pod[];
    try {
      if (ids.length === 1) {
        try {
          pods = [
            await this.core.readNamespacedPod({ name: sandboxObjectName(ids[0]!), namespace: this.ns }),
          ];
        } catch (err) {
          if (isNotFound(err)) return new Map();
          throw err;
        }
      } else {
        pods = (
          await this.core.listNamespacedPod({
            namespace: this.ns,
            labelSelector: sandboxSelector(this.k.instance),
          })
        ).items;
      }
    } catch (err) {
      throw wrapKube('read sandbox Pod addresses', err);
    }
    const want = new Set(ids);
    const out = new Map<string, string>();
    for (const pod of pods) {
      const info = this.infoOf(pod);
      if (want.has(info.sessionId) && info.running && isIP(info.address) !== 0)
        out.set(info.sessionId, info.address);
    }
    return out;
  }

  /**
   * A Pod as SandboxInfo. `address` is the Pod IP, or `pod:<name>` while it has none (a prepared or
   * unscheduled Pod: the gateways bind the session when their watch sees the IP). `running` is false for
   * Pods still gated (prepared, never started), ended, deleting or revoked.
   */
  private infoOf(pod: V1Pod): SandboxInfo {
    const md = pod.metadata ?? {};
    const labels = md.labels ?? {};
    const ann = md.annotations ?? {};
    const userLabels: Record<string, string> = {};
    for (const [key, v] of Object.entries(labels))
      if (key.startsWith(K8S_LABEL.userPrefix)) userLabels[key.slice(K8S_LABEL.userPrefix.length)] = v;
    const phase = pod.status?.phase ?? 'Pending';
    const gated = (pod.spec?.schedulingGates ?? []).some((g) => g.name === START_GATE);
    return {
      sessionId: labels[K8S_LABEL.session] ?? '',
      role: ann[K8S_ANNOTATION.role] ?? '',
      image: pod.spec?.containers[0]?.image ?? '',
      address: pod.status?.podIP || `pod:${md.name ?? ''}`,
      credentialSha256: ann[K8S_ANNOTATION.credentialSha256] ?? '',
      placeholders: parsePlaceholders(ann[K8S_ANNOTATION.placeholders]),
      createdAt: new Date(ann[K8S_ANNOTATION.createdAt] ?? 0),
      expiresAt: new Date(ann[K8S_ANNOTATION.expiresAt] ?? 0),
      createdBy: ann[K8S_ANNOTATION.createdBy] ?? '',
      labels: userLabels,
      running:
        !gated &&
        (phase === 'Pending' || phase === 'Running') &&
        !md.deletionTimestamp &&
        labels[K8S_LABEL.revoked] === undefined,
    };
  }

  async close(): Promise<void> {
    await this.collector?.stop();
    this.collector = null;
    if (this.trustTimer) clearInterval(this.trustTimer);
    this.trustTimer = null;
    this.trustReady = false;
  }
}
