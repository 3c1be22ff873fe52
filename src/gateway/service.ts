import { ApprovalClient, ApprovalGate } from './approvals.js';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import client from 'prom-client';
import { FanoutSink, FileAuditSink, WorkerTagSink } from '../audit/file-sink.js';
import { AuditRing } from '../audit/ring-sink.js';
import { ConfigError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { type GatewayServiceConfig, parseGatewayServiceConfig } from '../gateway-wire/config.js';
import { PolicyStore } from '../policy/store.js';
import { DestinationPolicy } from './address.js';
import { createAdminServer, listen } from './admin.js';
import type { BudgetAuthority } from './budgets.js';
import { hostMatch } from '../policy/matchers.js';
import { CredentialVault } from './credentials.js';
import { KubernetesSecretValues } from './credential-sources/kubernetes-secrets.js';
import { OAuth2Tokens, type OAuth2Input, type RemoteToken } from './oauth2.js';
import { kubeRefreshStateFrom } from './oauth2-kube-store.js';
import { loadKubeConfig } from '../kube/client.js';
import { EgressGateway, withGatewayDefaults } from './proxy.js';
import { UpstreamResolver } from './resolve.js';
import { createSessionSource, type SessionSource } from './session-sources/index.js';
import type { SessionTable } from './sessions.js';
import { checkCaFiles, loadCa, type CaMaterial } from '../pki/ca.js';
import { LeafCache } from './tls/leaf-cache.js';
import {
  DecisionMetricsSink,
  registerGatewaySessionsMetric,
  registerPolicyReloadMetrics,
} from '../telemetry/gateway-metrics.js';

export interface RunningGateway {
  gateway: EgressGateway;
  /** The admin API; null in a worker of a multi-worker gateway (the primary serves it). */
  admin: http.Server | null;
  sessions: SessionTable;
  policy: PolicyStore;
  proxyPort: number;
  /** 0 when this process serves no admin API. */
  adminPort: number;
  /** This process's metrics (a multi-worker gateway's primary aggregates its workers'). */
  registry: client.Registry;
  /** The recent audit events the admin API serves to the collector; null in a worker. */
  auditRing: AuditRing | null;
  /**
   * Stops the gateway. When a collector has read the audit ring, the admin API stays up after the
   * proxy closed until every event is acknowledged or `auditDrainMs` (default 10 s) passed.
   */
  close(opts?: { auditDrainMs?: number }): Promise<void>;
}

/** How src/gateway/cluster.ts runs the service in one worker of a multi-worker gateway. */
export interface GatewayWorkerOptions {
  /** Worker number 1..N, written into each audit event (`worker`). */
  id: number;
  /** Runs after the session source started and before the proxy port opens (learn the primary's table). */
  beforeListen(sessions: SessionTable): Promise<void>;
  /** Told on each audit sink transition: why calls are refused (`audit.onFailure: deny`), or null. */
  onAuditFailure?(reason: string | null): void;
  /** The budget counters shared through the primary (budgets.ts `SharedBudgets`). */
  budgets?: BudgetAuthority;
  /** Where refresh-token credentials' tokens come from: the primary (oauth2-shared.ts `SharedOAuth2`). */
  oauth2Remote?: (input: OAuth2Input) => Promise<RemoteToken>;
  /**
   * The token for the control plane's approvals endpoint (the gateway admin token): a worker has no
   * admin token of its own. @default the admin token
   */
  controlToken?: string;
}

/**
 * The CA in `dir`, waiting up to `waitMs` for its files to appear.
 * @throws Error naming the missing file once the wait is over.
 */
async function waitForCa(dir: string, waitMs: number, logger: Logger): Promise<CaMaterial> {
  const deadline = Date.now() + waitMs;
  let told = false;
  for (;;) {
    try {
      return loadCa(dir);
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      if (!told) logger.info({ caDir: dir }, 'waiting for the installation CA');
      told = true;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/**
 * Starts a complete gateway: policy store (watching `policyDir`), session source and its table
 * (./session-sources), audit file, forward proxy and admin API. `input` is the JSON of
 * `AIRLOCK_GATEWAY_CONFIG` (schema: src/gateway-wire/config.ts).
 * @param logger where the gateway's own lines go (JSON on stderr by default, src/log.ts).
 * @param worker set only in a worker of a multi-worker gateway (src/gateway/cluster-worker.ts): no
 * admin API (the primary serves it), audit events carry `worker`, the table is learnt before listening.
 * @throws ConfigError for invalid settings; the session source's error when it cannot start (e.g. the
 * Pod list fails).
 */
export async function startGatewayService(
  input: GatewayServiceConfig,
  adminToken: string,
  logger: Logger = createLogger({ component: 'gateway' }),
  worker?: GatewayWorkerOptions,
): Promise<RunningGateway> {
  const cfg = parseGatewayServiceConfig(input, adminToken);

  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  // Decisions by role/decision/reason, latency, sessions, reloads (src/telemetry, docs/telemetry.md).
  const decisionMetrics = new DecisionMetricsSink(registry);
  const policy = await PolicyStore.open(cfg.policyDir, registerPolicyReloadMetrics(registry));
  new client.Gauge({
    name: 'airlock_policy_loaded',
    help: '1 when a valid policy is loaded, else 0',
    registers: [registry],
    collect() {
      this.set(policy.current() ? 1 : 0);
    },
  });
  // --- session source (Kubernetes: a Pod watch; the proxy opens only after the initial list) ---
  let source: SessionSource;
  try {
    source = await createSessionSource(cfg.sessionSource);
    await source.start();
  } catch (err) {
    policy.close();
    throw err;
  }
  const sessions = source.table;
  registerGatewaySessionsMetric(registry, () => sessions.size);
  let leaves: LeafCache | null = null;
  let caReload: NodeJS.Timeout | null = null;
  let upstreamCaPem = cfg.upstreamCaPem ?? '';
  try {
    if (cfg.upstreamCaFile) upstreamCaPem += readFileSync(cfg.upstreamCaFile, 'utf8');
    if (cfg.caDir) {
      const caDir = cfg.caDir;
      let ca = await waitForCa(caDir, cfg.caWaitSeconds * 1000, logger);
      leaves = new LeafCache(ca, cfg.leafCacheSize);
      if (cfg.caReloadSeconds > 0) {
        const cache = leaves;
        caReload = setInterval(() => {
          let next: CaMaterial;
          try {
            next = loadCa(caDir);
            checkCaFiles({ 'ca.crt': next.certPem, 'ca.key': next.keyPem });
          } catch {
            return; // missing, mid-swap (key and certificate of different CAs) or invalid: keep the CA in use
          }
          if (next.certPem === ca.certPem && next.keyPem === ca.keyPem) return;
          cache.useCa(next).then(
            () => {
              ca = next;
              logger.info({ caDir }, 'switched to the rotated CA');
            },
            (err: unknown) => logger.error({ caDir, error: (err as Error).message }, 'cannot use the CA'),
          );
        }, cfg.caReloadSeconds * 1000);
        caReload.unref();
      }
    }
  } catch (err) {
    await source.stop();
    policy.close();
    throw err instanceof ConfigError ? err : new ConfigError((err as Error).message, 'caDir');
  }
  const auditNotReady = (): string | null =>
    cfg.auditOnFailure === 'deny' && !fileSink.healthy()
      ? `audit file ${cfg.auditFile} cannot be written (${fileSink.failure() ?? 'error'}); calls are refused (audit.onFailure: deny)`
      : null;
  // The admin API serves the recent events to the control plane's collector (Kubernetes, issue 16):
  // the lines the file sink writes, kept in a ring (a worker keeps none: its primary serves no audit).
  const auditRing = worker ? null : new AuditRing();
  const fileSink = auditFileSink(
    cfg.auditFile,
    cfg.auditStdout,
    cfg.auditOnFailure,
    registry,
    logger,
    () => worker?.onAuditFailure?.(auditNotReady()),
    auditRing?.push,
  );
  const resolver = new UpstreamResolver(
    new DestinationPolicy(cfg.allowPrivateCidrs),
    new Map(Object.entries(cfg.hostAliases).map(([k, v]) => [k.toLowerCase(), v])),
    undefined,
    { ttlMs: cfg.dnsCacheMs },
  );
  // credentials.yaml (docs/credentials.md): values from files (watched), this process's environment,
  // or (Kubernetes) the Secrets listed in credentialSecrets (watched); OAuth2 tokens fetched through
  // the same destination checks as forwarded calls.
  const tokenRequests = new client.Counter({
    name: 'airlock_gateway_oauth2_token_requests_total',
    help: 'Token endpoint requests the gateway made for OAuth2 credentials, by credential and result',
    labelNames: ['credential', 'result'] as const,
    registers: [registry],
  });
  let vault: CredentialVault | null = null;
  let secretValues: KubernetesSecretValues | null = null;
  if (cfg.credentialSecrets && cfg.credentialSecrets.names.length > 0) {
    const cs = cfg.credentialSecrets;
    secretValues = new KubernetesSecretValues({
      kc: loadKubeConfig({ kubeconfig: cs.kubeconfig, context: cs.context }),
      namespace: cs.namespace,
      names: cs.names,
      logger,
      onChange: () => void vault?.refresh(),
    });
    await secretValues.start();
  }
  const oauth2State = worker?.oauth2Remote ? null : kubeRefreshStateFrom(cfg, logger);
  const credentials = (vault = new CredentialVault({
    logger,
    ...(cfg.credentialFilesDir !== undefined ? { fileRoot: cfg.credentialFilesDir } : {}),
    ...(cfg.credentialEnv !== undefined ? { envNames: cfg.credentialEnv } : {}),
    ...(secretValues ? { secrets: secretValues } : {}),
    oauth2: new OAuth2Tokens({
      resolver,
      refreshSkewMs: cfg.oauth2RefreshSkewMs,
      ...(worker?.oauth2Remote
        ? { remote: worker.oauth2Remote }
        : oauth2State
          ? { remote: oauth2State.token } // refresh-token state shared by the replicas (oauth2-kube-store.ts)
          : {}),
      ...(upstreamCaPem ? { extraCaPem: upstreamCaPem } : {}),
      onTokenRequest: (e) => {
        tokenRequests.inc({ credential: e.credential, result: e.ok ? 'ok' : 'error' });
        if (!e.ok)
          logger.warn(
            { credential: e.credential, grant: e.grant, detail: e.detail },
            'OAuth2 token request failed',
          );
      },
    }),
  }));
  const exfiltration = new client.Counter({
    name: 'airlock_gateway_exfiltration_attempts_total',
    help: 'Requests refused because they carried a known credential value where no binding puts it',
    labelNames: ['credential'] as const,
    registers: [registry],
  });
  warnPassthroughBindings(policy, cfg.passthrough, logger);
  // Approvals (docs/approvals.md): the control plane holds them; this gateway asks it per call.
  const ap = cfg.approvals;
  const approvals = new ApprovalGate(
    ap.url !== undefined
      ? new ApprovalClient({
          url: ap.url,
          token: worker?.controlToken ?? adminToken,
          ...(ap.socketPath !== undefined ? { socketPath: ap.socketPath } : {}),
        })
      : null,
    { holdSeconds: ap.holdSeconds, holdRules: ap.holdRules },
  );
  const auditSinks = new FanoutSink([fileSink, decisionMetrics]);
  const gateway = new EgressGateway(
    withGatewayDefaults({
      policy,
      sessions,
      audit: worker ? new WorkerTagSink(auditSinks, worker.id) : auditSinks,
      resolver,
      connectTimeoutMs: cfg.connectTimeoutMs,
      headersTimeoutMs: cfg.headersTimeoutMs,
      bodyTimeoutMs: cfg.bodyTimeoutMs,
      limits: cfg.limits,
      upstreams: cfg.upstreams,
      auditQuery: cfg.auditQuery,
      credentials,
      onExfiltration: (name) => exfiltration.inc({ credential: name }),
      ...(cfg.auditOnFailure === 'deny' ? { auditAvailable: () => fileSink.healthy() } : {}),
      ...(upstreamCaPem ? { upstreamCaPem } : {}),
      ...(leaves ? { intercept: { leaves, passthrough: cfg.passthrough } } : {}),
      ...(worker?.budgets ? { budgets: worker.budgets } : {}),
      approvals,
    }),
  );
  const admin = worker
    ? null
    : createAdminServer({
        sessions,
        policy,
        token: adminToken,
        instanceId: randomUUID(),
        refuseSources: cfg.adminRefuseSources,
        metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
        notReady: auditNotReady,
        ...(auditRing ? { audit: auditRing } : {}),
      });
  if (worker) await worker.beforeListen(sessions);
  const proxyAddr = await gateway.listen(cfg.port, cfg.listenHost);
  const adminAddr = admin ? await listen(admin, cfg.adminPort, cfg.listenHost) : null;
  // TTL holds on the gateway's own clock, tunnels included, even without the control plane.
  const sweep = setInterval(() => sessions.sweepExpired(), 500);
  sweep.unref();
  return {
    gateway,
    admin,
    sessions,
    policy,
    proxyPort: proxyAddr.port,
    adminPort: adminAddr?.port ?? 0,
    registry,
    auditRing,
    async close(opts) {
      clearInterval(sweep);
      if (caReload) clearInterval(caReload);
      await gateway.close();
      // A collector reads this gateway's events: keep the admin API up until it has all of them.
      if (admin && auditRing?.collected() && auditRing.acknowledged() < auditRing.last()) {
        const drainMs = opts?.auditDrainMs ?? 10_000;
        if (!(await auditRing.waitAcknowledged(drainMs)))
          logger.error(
            { last: auditRing.last(), acknowledged: auditRing.acknowledged(), waitedMs: drainMs },
            'audit events not collected before exit (still in the audit file)',
          );
      }
      if (admin)
        await new Promise<void>((r) => {
          admin.close(() => r());
          admin.closeAllConnections();
        });
      credentials.close();
      await secretValues?.stop();
      await approvals.close();
      await source.stop();
      policy.close();
      const lost = await fileSink.close();
      if (lost > 0)
        logger.error(
          { auditFile: cfg.auditFile, events: lost },
          'audit events could not be written before exit',
        );
    },
  };
}

/**
 * The audit file sink with its fault reporting (docs/security.md "Audit sink failure"): the metrics
 * `airlock_gateway_audit_healthy`, `…_audit_write_errors_total{code}`, `…_audit_dropped_events_total`
 * and `…_audit_buffered_bytes`, and one log line on each transition (error when it fails, info when it
 * recovers) and on the first event dropped while unhealthy.
 */
function auditFileSink(
  file: string,
  toStdout: boolean,
  onFailure: 'deny' | 'allow',
  registry: client.Registry,
  logger: Logger,
  onTransition: () => void,
  onLine?: (line: string) => void,
): FileAuditSink {
  const writeErrors = new client.Counter({
    name: 'airlock_gateway_audit_write_errors_total',
    help: 'Failed opens and writes of the audit file, by error code (ENOSPC, EACCES, ...)',
    labelNames: ['code'] as const,
    registers: [registry],
  });
  const dropped = new client.Counter({
    name: 'airlock_gateway_audit_dropped_events_total',
    help: 'Audit events dropped because the audit file could not be written and the buffer was full',
    registers: [registry],
  });
  let droppedSinceFailure = 0;
  const sink: FileAuditSink = new FileAuditSink(file, toStdout, {
    ...(onLine ? { onLine } : {}),
    onWriteError: (code) => writeErrors.inc({ code }),
    onDrop: (event) => {
      dropped.inc();
      if (droppedSinceFailure++ === 0)
        logger.error(
          { auditFile: file, bufferedBytes: sink.buffered(), decision: event.decision, reason: event.reason },
          'audit buffer full: audit events are dropped (counted in airlock_gateway_audit_dropped_events_total)',
        );
    },
    onHealthChange: (healthy, error, bufferedEvents) => {
      onTransition();
      if (healthy) {
        logger.info(
          { auditFile: file, writtenEvents: bufferedEvents, droppedEvents: droppedSinceFailure },
          'audit file writable again: buffered events written',
        );
        droppedSinceFailure = 0;
      } else
        logger.error(
          { auditFile: file, code: error?.code, error: error?.message, onFailure, bufferedEvents },
          onFailure === 'deny'
            ? 'audit file cannot be written: refusing every call until it can (audit.onFailure: deny)'
            : 'audit file cannot be written: calls still allowed, events buffered (audit.onFailure: allow)',
        );
    },
  });
  new client.Gauge({
    name: 'airlock_gateway_audit_healthy',
    help: '1 while the audit file can be written, else 0 (calls are refused with audit.onFailure: deny)',
    registers: [registry],
    aggregator: 'min',
    collect() {
      this.set(sink.healthy() ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'airlock_gateway_audit_buffered_bytes',
    help: 'Bytes of audit events waiting to be written',
    registers: [registry],
    collect() {
      this.set(sink.buffered());
    },
  });
  return sink;
}

/**
 * Logs a warning for each credential binding naming a `gateway.tls.passthrough` host: the gateway does
 * not open those tunnels, so it can neither inject there nor see a leak (`airlock policy check DIR
 * --config FILE` reports the same as an error before a policy ships).
 */
function warnPassthroughBindings(
  policy: PolicyStore,
  passthrough: readonly string[] | undefined,
  logger: Logger,
): void {
  const hosts = new Set(passthrough ?? []);
  if (hosts.size === 0) return;
  for (const c of policy.current()?.credentials?.definitions ?? []) {
    for (const b of c.bindings) {
      for (const h of hosts) {
        if (hostMatch(h, b.host))
          logger.warn(
            { credential: c.name, host: h },
            'credential binding names a passthrough host: the gateway cannot inject it there',
          );
      }
    }
  }
}
