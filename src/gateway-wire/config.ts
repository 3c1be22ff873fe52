/**
 * The gateway process's configuration as it travels from the control plane to the gateway: JSON in
 * `AIRLOCK_GATEWAY_CONFIG` (Docker: the gateway container's environment; Kubernetes: the chart's
 * gateway Deployment). Written by src/runtime/docker, read by src/gateway/service.ts.
 */
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { dottedPath, firstIssue } from '../validation.js';
import {
  GATEWAY_ADMIN_PORT,
  GATEWAY_MAX_WORKERS,
  GATEWAY_PORT,
  gatewayLimitsSchema,
  LEAF_CACHE_SIZE,
  upstreamTimeoutsSchema,
  upstreamsSchema,
  auditQuerySchema,
  auditOnFailureSchema,
  cidr,
} from '../config/schema.js';

/**
 * Settings of a gateway process (the `airlock gateway` command inside the gateway container). The
 * control plane derives them from the user's config and passes them as JSON in
 * `AIRLOCK_GATEWAY_CONFIG`; the admin token comes in `AIRLOCK_ADMIN_TOKEN`.
 */
export const gatewayServiceSchema = z.strictObject({
  port: z.number().int().min(0).max(65535).default(GATEWAY_PORT),
  adminPort: z.number().int().min(0).max(65535).default(GATEWAY_ADMIN_PORT),
  listenHost: z.string().default('0.0.0.0'),
  policyDir: z.string().min(1),
  auditFile: z.string().min(1),
  auditStdout: z.boolean().default(true),
  /** How the query string is recorded (`audit.query`): digest (default) or full. */
  auditQuery: auditQuerySchema,
  /** While the audit file cannot be written (`audit.onFailure`): deny (default) or allow calls. */
  auditOnFailure: auditOnFailureSchema,
  /** name -> IP, already resolved (no "host-gateway" here). */
  hostAliases: z.record(z.string(), z.string()).default({}),
  allowPrivateCidrs: z.array(z.string()).default([]),
  /**
   * Source ranges (CIDR) the admin API refuses whoever asks (the Docker runtime: the sandboxes'
   * `runtime.docker.subnetPool`), besides every address the session table knows.
   */
  adminRefuseSources: z.array(cidr).default([]),
  /** Upstream timeouts in ms, defined with their defaults once in the config schema. */
  ...upstreamTimeoutsSchema.shape,
  /** Per-session limits (`gateway.limits.*`), defined with their defaults once in the config schema. */
  limits: gatewayLimitsSchema.prefault({}),
  /** HTTPS interception: the installation CA's directory (read-only; see src/pki/ca.ts). Unset: no interception. */
  caDir: z.string().min(1).optional(),
  /**
   * How long to wait at start for the CA files to appear in `caDir`, in seconds (Kubernetes: the
   * controller fills the CA Secret on its first start, the kubelet then updates the projected volume).
   * 0: fail at once when they are missing.
   */
  caWaitSeconds: z.number().int().min(0).max(3_600).default(0),
  /**
   * Re-read `caDir` this often, in seconds, and switch to a rotated CA without a restart (Kubernetes:
   * the kubelet swaps the projected Secret's files). 0: never.
   */
  caReloadSeconds: z.number().int().min(0).max(86_400).default(0),
  /** Extra CAs (PEM text) trusted for upstream certificates. */
  upstreamCaPem: z.string().optional(),
  /** Extra CAs (a PEM file, e.g. a mounted Secret), added to `upstreamCaPem`. */
  upstreamCaFile: z.string().min(1).optional(),
  /** How upstreams read paths, by policy host (`gateway.upstreams`). */
  upstreams: upstreamsSchema,
  /** Hosts tunnelled unopened where a rule grants CONNECT (policy host form). */
  passthrough: z.array(z.string()).default([]),
  leafCacheSize: z.number().int().positive().default(LEAF_CACHE_SIZE),
  /**
   * Only files under this directory are read for credentials.yaml `file` sources (the Docker runtime:
   * the mounted `gateway.credentialsDir`). Unset: any file the process can read.
   */
  credentialFilesDir: z.string().min(1).optional(),
  /**
   * Only these variables are read for credentials.yaml `env` sources (the Docker runtime:
   * `gateway.credentialEnv`). Unset: any variable of the process.
   */
  credentialEnv: z.array(z.string().min(1)).optional(),
  /**
   * Kubernetes Secrets of the gateway's namespace that credentials.yaml `secretRef` sources may name
   * (the chart's `gateway.credentialSecrets`; src/gateway/credential-sources/kubernetes-secrets.ts):
   * each is listed and watched by name; no other Secret is read. Unset: `secretRef` sources are
   * unavailable.
   */
  credentialSecrets: z
    .strictObject({
      namespace: z.string().min(1),
      names: z.array(z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a Secret name')),
      /** kubeconfig file; unset: the in-cluster ServiceAccount. */
      kubeconfig: z.string().min(1).optional(),
      context: z.string().min(1).optional(),
    })
    .optional(),
  /**
   * OAuth2 credentials: refresh an access token this long before it expires, ms (src/gateway/oauth2.ts).
   * @default 30000
   */
  oauth2RefreshSkewMs: z.number().int().min(0).max(3_600_000).default(30_000),
  /**
   * How long the gateway reuses a name's DNS answer, ms; 0: every call looks the name up
   * (src/gateway/resolve.ts). @default 5000
   */
  dnsCacheMs: z.number().int().min(0).max(300_000).default(5_000),
  /**
   * Where OAuth2 refresh-token credentials' state (rotated refresh token, access token, refresh lease)
   * is shared by the gateway's replicas (the chart's `gateway.oauth2RefreshState`;
   * src/gateway/oauth2-kube-store.ts): one Secret of the gateway namespace, updated with
   * resourceVersion preconditions. Unset: each gateway keeps its own (one replica).
   */
  oauth2RefreshState: z
    .strictObject({
      kind: z.literal('kubernetes'),
      namespace: z.string().min(1),
      secretName: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a Secret name'),
      /** kubeconfig file; unset: the in-cluster ServiceAccount. */
      kubeconfig: z.string().min(1).optional(),
      context: z.string().min(1).optional(),
      /** How long a replica may hold a credential's refresh lease, ms. @default 15000 */
      leaseMs: z.number().int().min(1_000).max(600_000).default(15_000),
    })
    .optional(),
  /**
   * Gateway worker processes sharing the proxy port (`gateway.workers`; src/gateway/cluster.ts).
   * 1: one process, as `startGatewayService` runs it. Unset: the cores this process may use
   * (`os.availableParallelism()`), decided by `airlock gateway`.
   */
  workers: z.number().int().min(1).max(GATEWAY_MAX_WORKERS).optional(),
  /**
   * Approvals (docs/approvals.md): where the control plane's claim endpoint is, and how long calls
   * an `ask` rule matches are held for a decision. Without `url`, such calls are refused 503
   * `approval_unavailable` (fail closed).
   */
  approvals: z
    .strictObject({
      /** Base URL of the control plane's internal API (`http://localhost` with `socketPath`). */
      url: z.url().optional(),
      /** Unix socket to reach `url` through (Docker: mounted into the gateway container only). */
      socketPath: z.string().min(1).optional(),
      /** Default hold time, seconds (`approvals.holdSeconds`); 0: answer `approval_required` at once. */
      holdSeconds: z.number().int().min(0).max(600).default(0),
      /** Hold time per ask rule, by its text (`p, analyst, forum.test, /comments, POST, ask`). */
      holdRules: z.record(z.string(), z.number().int().min(0).max(600)).default({}),
    })
    .prefault({}),
  /**
   * Where the session table comes from: `admin` (the control plane pushes sessions; Docker), or
   * `kubernetes` (a watch on the sandbox Pods by label: src/gateway/session-sources/kubernetes-pods.ts).
   */
  sessionSource: z
    .discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('admin') }),
      z.strictObject({
        kind: z.literal('kubernetes'),
        /** Namespace of the sandbox Pods. */
        namespace: z.string().min(1),
        /** `airlock.io/instance` label value of the installation. */
        instance: z.string().min(1).default('airlock'),
        /** kubeconfig file; unset: the in-cluster ServiceAccount. */
        kubeconfig: z.string().min(1).optional(),
        context: z.string().min(1).optional(),
      }),
    ])
    .default({ kind: 'admin' }),
});
/** The gateway config as the control plane writes it (keys with defaults may be left out). */
export type GatewayServiceConfig = z.input<typeof gatewayServiceSchema>;
/** The gateway config after validation, defaults applied. */
export type GatewayServiceSettings = z.output<typeof gatewayServiceSchema>;
/** Where a gateway's session table comes from (`sessionSource`, defaults applied). */
export type SessionSourceConfig = GatewayServiceSettings['sessionSource'];

/**
 * Validates the gateway process's settings and admin token (one place for the single process,
 * `startGatewayService`, and the multi-worker primary, `startGatewayCluster`).
 * @returns the settings with defaults applied.
 * @throws ConfigError naming the key path (`gateway config limits.connections: ...`) or
 *   `AIRLOCK_ADMIN_TOKEN` when the token is shorter than 16 characters.
 */
export function parseGatewayServiceConfig(input: unknown, adminToken: string): GatewayServiceSettings {
  const parsed = gatewayServiceSchema.safeParse(input);
  if (!parsed.success) {
    const f = firstIssue(parsed.error);
    const at = f ? dottedPath(f.issue.path) : '(root)';
    throw new ConfigError(`gateway config ${at}: ${f?.message ?? 'invalid'}`, at);
  }
  if (adminToken.length < 16)
    throw new ConfigError('AIRLOCK_ADMIN_TOKEN must have >= 16 characters', 'AIRLOCK_ADMIN_TOKEN');
  return parsed.data;
}
