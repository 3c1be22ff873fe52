import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { ApiMetrics, createApiApp } from '../api/index.js';
import { AuditSigner } from '../audit/chain.js';
import { AuditIndex } from '../audit/index-reader.js';
import type { Config } from '../config/schema.js';
import { createLogger, type Logger } from '../log.js';
import type { CompiledPolicy } from '../policy/compile.js';
import { materializePolicy } from '../policy/live-dir.js';
import { openPolicySource, type ReloadablePolicySource } from '../policy/source.js';
import { dockerCredentialVersions } from '../runtime/docker/credentials.js';
import { DockerRuntime } from '../runtime/docker/runtime.js';
import type { SandboxRuntime } from '../runtime/types.js';
import { SessionManager } from '../sessions/manager.js';
import { auditKeysDir } from './audit-verify.js';

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
  const policy = await openPolicySource(cfg.policy, cfg.stateDir, {
    logger,
    onChange: (next) => materialize(next as CompiledPolicy),
  });
  materialize(policy.current());
  if (cfg.policy.git) cfg = { ...cfg, policy: { ...cfg.policy, dir: liveDir } };
  if (!policy.current()) {
    logger.error({ dir: cfg.policy.dir, error: policy.lastError() }, 'no valid policy: every call is denied');
  }
  const auditIndex = new AuditIndex(cfg.audit.file);
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
  const metrics = new ApiMetrics();
  const manager = new SessionManager(cfg, runtime, policy, auditIndex, logger, {
    registry: metrics.registry,
  });
  await manager.start();
  const app = createApiApp({
    sessions: manager,
    policy,
    tokens,
    logger,
    metrics,
    auditFeed: auditIndex,
    // Docker: versions read through the mapping the gateway container sees (docs/credentials.md).
    ...(cfg.runtime.kind === 'docker' ? { credentialVersions: dockerCredentialVersions(cfg) } : {}),
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
      manager.stop();
      auditIndex.close();
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
