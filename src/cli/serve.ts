import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { Registry } from 'prom-client';
import { ApiMetrics, createApiApp } from '../api/index.js';
import { AuditSigner } from '../audit/chain.js';
import { AuditIndex } from '../audit/index-reader.js';
import { CredentialLastUse } from '../audit/credential-use.js';
import type { Config } from '../config/schema.js';
import { createLogger, type Logger } from '../log.js';
import type { CompiledPolicy } from '../policy/compile.js';
import { materializePolicy } from '../policy/live-dir.js';
import { openPolicySource, type ReloadablePolicySource } from '../policy/source.js';
import { dockerCredentialVersions } from '../runtime/docker/credentials.js';
import { DockerRuntime } from '../runtime/docker/runtime.js';
import type { SandboxRuntime } from '../runtime/types.js';
import { SessionManager } from '../sessions/manager.js';
import { registerPolicyReloadMetrics } from '../telemetry/gateway-metrics.js';
import { OtlpAuditExporter } from '../telemetry/otlp.js';
import { airlockVersion } from '../telemetry/version.js';
import { auditKeysDir } from './audit-verify.js';
import { FileAuditSink } from '../audit/file-sink.js';
import { ApprovalService } from '../sessions/approvals.js';
import { startApprovalsServer, type ApprovalsListen } from '../sessions/approvals-server.js';
import { CONTROL_SOCKET_NAME, controlSocketDir } from '../runtime/docker/runtime.js';
import { ConfigError } from '../errors.js';

export interface RunningServer {
  url: string;
  server: http.Server;
  manager: SessionManager;
  policy: ReloadablePolicySource;
  /** Stops serving; sandboxes keep running and are recovered by the next start. */
  close(): Promise<void>;
}

/**
 * API tokens: `api.tokens` from config plus `AIRLOCK_API_TOKEN` (caller name "env"). With none, a
 * random token is created once in `<stateDir>/api-token` (0600), where the CLI finds it.
 */
function resolveTokens(cfg: Config, logger: Logger): Array<{ name: string; token: string }> {
  const tokens = [...cfg.api.tokens];
  const env = process.env.AIRLOCK_API_TOKEN;
  if (env) tokens.push({ name: 'env', token: env });
  if (tokens.length > 0) return tokens;
  const file = path.join(cfg.stateDir, 'api-token');
  let token: string;
  if (existsSync(file)) token = readFileSync(file, 'utf8').trim();
  else {
    token = randomBytes(32).toString('base64url');
    writeFileSync(file, token + '\n', { mode: 0o600 });
    logger.info({ file }, 'created an API token');
  }
  return [{ name: 'local', token }];
}

/**
 * The runtime `runtime.kind` names, checked for reachability. On Kubernetes, also warns when the
 * cluster cannot be seen to enforce NetworkPolicy (docs/kubernetes.md): without enforcement a sandbox
 * Pod's network is not confined to the gateway.
 * @throws RuntimeError when the Docker engine or the Kubernetes API server cannot be used.
 */
async function createRuntime(cfg: Config, logger: Logger): Promise<SandboxRuntime> {
  if (cfg.runtime.kind === 'kubernetes') {
    const { KubernetesRuntime } = await import('../runtime/kubernetes/runtime.js');
    const runtime = new KubernetesRuntime(cfg, { logger });
    await runtime.ping();
    const np = await runtime.networkPolicyEnforcement();
    if (np.enforced) logger.info({ detail: np.detail }, 'NetworkPolicy enforcement');
    else
      logger.warn(
        { detail: np.detail },
        'cannot tell that this cluster enforces NetworkPolicy: sandbox Pods are confined to the gateway only ' +
          'if the network plugin enforces it (set runtime.kubernetes.networkPolicyEnforced: true once checked)',
      );
    return runtime;
  }
  const runtime = new DockerRuntime(cfg, (m) => logger.warn(m));
  await runtime.ping();
  return runtime;
}

/**
 * `airlock serve`: policy store, audit index, runtime (Docker or Kubernetes) + gateway, session recovery, API.
 * @throws RuntimeError / GatewayUnavailableError when Docker or the gateway cannot be started.
 */
export async function startServer(cfg: Config, logger: Logger = createLogger()): Promise<RunningServer> {
  mkdirSync(cfg.stateDir, { recursive: true, mode: 0o700 });
  const tokens = resolveTokens(cfg, logger);
  // With policy.git the control plane follows the repository and writes each enforced commit into
  // <stateDir>/policy-live (ConfigMap-style symlink swap); that directory is what the gateway
  // mounts and watches, and it carries the commit SHA as the version (src/policy/live-dir.ts).
  const liveDir = path.join(cfg.stateDir, 'policy-live');
  const materialize = (snapshot: CompiledPolicy | null): void => {
    if (!cfg.policy.git || !snapshot) return;
    try {
      materializePolicy(liveDir, snapshot);
    } catch (err) {
      logger.error({ err, dir: liveDir }, 'cannot write the policy for the gateway');
    }
  };
  // The registry /metrics serves; policy reloads are counted from the first load on.
  const registry = new Registry();
  const reloads = registerPolicyReloadMetrics(registry);
  const policy = await openPolicySource(cfg.policy, cfg.stateDir, {
    logger,
    onChange: (next) => materialize(next as CompiledPolicy),
    onReload: reloads.onReload,
  });
  materialize(policy.current());
  if (cfg.policy.git) cfg = { ...cfg, policy: { ...cfg.policy, dir: liveDir } };
  if (!policy.current()) {
    logger.error({ dir: cfg.policy.dir, error: policy.lastError() }, 'no valid policy: every call is denied');
  }
  const auditIndex = new AuditIndex(cfg.audit.file);
  // Last use of each credential, from the audit events that name it (GET /v1/credentials).
  const credentialUse = new CredentialLastUse();
  auditIndex.subscribe((e) => credentialUse.observe(e));
  await auditIndex.start();
  // The control plane signs the gateways' audit hash chains with its own key (src/audit/chain.ts).
  const auditSigner = new AuditSigner({
    file: cfg.audit.file,
    keysDir: auditKeysDir(cfg.stateDir),
    onError: (err) => logger.warn({ error: err.message }, 'audit signing round failed (retried)'),
  });
  await auditSigner.start();
  const runtime = await createRuntime(cfg, logger);
  // One registry for /metrics: the API's own metrics and the sessions' isolation self-test metrics.
  const metrics = new ApiMetrics({ registry });
  // Audit export over OTLP (docs/telemetry.md): the events the index reads from now on.
  const otlpCfg = cfg.telemetry.otlp;
  const otlp = otlpCfg.endpoint
    ? new OtlpAuditExporter({
        endpoint: otlpCfg.endpoint,
        headers: otlpCfg.headers,
        serviceName: otlpCfg.serviceName,
        version: airlockVersion(),
        timeoutMs: otlpCfg.timeoutMs,
        exportIntervalMs: otlpCfg.exportIntervalMs,
        maxQueueSize: otlpCfg.maxQueueSize,
        traces: otlpCfg.traces,
        registry: metrics.registry,
      })
    : null;
  const stopExport = otlp ? auditIndex.subscribe((e) => otlp.emit(e)) : null;
  if (otlp) logger.info({ endpoint: otlpCfg.endpoint }, 'exporting audit events over OTLP');
  const manager = new SessionManager(cfg, runtime, policy, auditIndex, logger, {
    registry: metrics.registry,
  });
  // The gateway container mounts this directory (the approvals socket) from its creation on.
  if (cfg.runtime.kind === 'docker')
    mkdirSync(controlSocketDir(cfg.stateDir), { recursive: true, mode: 0o755 });
  await manager.start();
  // Approvals (docs/approvals.md): held here; gateways claim them over the internal endpoint.
  const approvals = await startApprovals(cfg, manager, metrics, logger);
  const app = createApiApp({
    approvals: approvals.service,
    grants: manager,
    sessions: manager,
    policy,
    tokens,
    logger,
    metrics,
    auditFeed: auditIndex,
    // Docker: versions read through the mapping the gateway container sees (docs/credentials.md).
    ...(cfg.runtime.kind === 'docker' ? { credentialVersions: dockerCredentialVersions(cfg) } : {}),
    credentialUse,
  });
  const [host = '127.0.0.1', port = '8080'] = cfg.api.listen.split(/:(?=\d+$)/);
  const server = await new Promise<http.Server>((resolve, reject) => {
    const s = app.listen(Number(port), host.replace(/^\[|\]$/g, ''), (err?: Error) =>
      err ? reject(err) : resolve(s),
    );
    s.once('error', reject);
  });
  server.requestTimeout = 0; // exec calls may take up to an hour
  const addr = server.address() as { port: number };
  const url = `http://${host}:${addr.port}`;
  return {
    url,
    server,
    manager,
    policy,
    async close() {
      await approvals.close();
      manager.stop();
      auditIndex.close();
      stopExport?.();
      await otlp?.shutdown();
      await auditSigner.close();
      await policy.close();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      await runtime.close();
    },
  };
}

/**
 * The approval service (src/sessions/approvals.ts), its audit writer (the audit file, a stream of its
 * own), and the internal claim endpoint for the gateways: Docker a unix socket in
 * `<stateDir>/control` (mounted into the gateway container), Kubernetes `approvals.internalListen`.
 * Sessions that end cancel their approvals.
 * @throws ConfigError when the webhook's secret variable is unset; Error when it cannot listen.
 */
async function startApprovals(
  cfg: Config,
  manager: SessionManager,
  metrics: ApiMetrics,
  logger: Logger,
): Promise<{ service: ApprovalService; close(): Promise<void> }> {
  const a = cfg.approvals;
  let webhook: { url: string; secret: string } | null = null;
  if (a.webhook) {
    const secret = process.env[a.webhook.secretEnv];
    if (!secret)
      throw new ConfigError(
        `approvals.webhook.secretEnv: environment variable ${a.webhook.secretEnv} is not set`,
        'approvals.webhook.secretEnv',
      );
    webhook = { url: a.webhook.url, secret };
  }
  const sink = new FileAuditSink(cfg.audit.file, false);
  const service = new ApprovalService(
    {
      pendingSeconds: a.pendingSeconds,
      defaultUses: a.defaultUses,
      defaultTtlSeconds: a.defaultTtlSeconds,
      webhook,
    },
    manager,
    sink,
    { stateDir: cfg.stateDir, logger, registry: metrics.registry },
  );
  manager.onSessionEnded((id) => service.cancelSession(id));
  let token: string;
  let listen: ApprovalsListen;
  if (cfg.runtime.kind === 'docker') {
    token = readFileSync(path.join(cfg.stateDir, 'gateway-admin-token'), 'utf8').trim();
    listen = { socketPath: path.join(controlSocketDir(cfg.stateDir), CONTROL_SOCKET_NAME) };
  } else {
    token =
      process.env.AIRLOCK_ADMIN_TOKEN ??
      readFileSync(cfg.runtime.kubernetes.gatewayAdmin.tokenFile, 'utf8').trim();
    const [host = '0.0.0.0', port = '8081'] = a.internalListen.split(/:(?=\d+$)/);
    listen = { host: host.replace(/^\[|\]$/g, ''), port: Number(port) };
  }
  const server = await startApprovalsServer(service, token, listen, logger);
  return {
    service,
    async close() {
      service.close();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      await sink.close();
    },
  };
}
