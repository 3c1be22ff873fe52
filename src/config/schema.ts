import { isIP } from 'node:net';
import { z } from 'zod';
import { policyConfigSchema } from '../policy/config.js';

/**
 * The one config schema (YAML on disk, see docs/config.md). Every object is strict: an unknown key
 * is an error naming its path. Defaults live here and only here.
 */

/**
 * How an upstream reads paths (`gateway.upstreams.<host>`, docs/policy.md "Path case"). `pathCase`:
 * `exact` (default) compares paths as sent (deny rules still match every case variant);
 * `insensitive` declares that the upstream routes paths case-insensitively: the gateway lowercases
 * the path (outside percent-escapes) before the decision and forwards that form, so allow and deny
 * rules both match every case variant and what is forwarded is what was decided.
 */
export const upstreamSemanticsSchema = z
  .object({
    /** @default "exact" */
    pathCase: z.enum(['exact', 'insensitive']).default('exact'),
  })
  .strict();
/** Upstream semantics by policy host (`name` or `name:port`). */
export const upstreamsSchema = z
  .record(
    z.string().regex(/^[a-z0-9.-]+(:\d{1,5})?$/, 'expected a lowercase policy host: name or name:port'),
    upstreamSemanticsSchema,
  )
  .default({});
export type UpstreamSemantics = z.output<typeof upstreamSemanticsSchema>;

/** How audit events record a request's query string (`audit.query`). */
export const auditQuerySchema = z.enum(['digest', 'full']).default('digest');
export type AuditQueryMode = z.output<typeof auditQuerySchema>;

/**
 * What the gateway does while its audit file cannot be written (`audit.onFailure`): `deny` every new
 * call (fail closed, /readyz not ready) or `allow` them (events buffered, the overflow dropped and
 * counted). Like auditd's `disk_full_action`.
 */
export const auditOnFailureSchema = z.enum(['deny', 'allow']).default('deny');
export type AuditOnFailure = z.output<typeof auditOnFailureSchema>;

/** The gateway's forward-proxy port. */
export const GATEWAY_PORT = 3128;
/** Most gateway worker processes one gateway may run (`gateway.workers`). */
export const GATEWAY_MAX_WORKERS = 256;
/** The gateway's admin API port (control plane → gateway). */
export const GATEWAY_ADMIN_PORT = 9090;
/** Leaf certificates a gateway keeps (LRU) for HTTPS interception. */
export const LEAF_CACHE_SIZE = 1_000;

/**
 * The gateway's upstream timeouts, in ms: one definition shared by the config file
 * (`gateway.*TimeoutMs`), the gateway process's settings (src/gateway-wire/config.ts) and
 * `EgressGateway`'s options (src/gateway/options.ts).
 */
export const upstreamTimeoutsSchema = z.object({
  /** Upstream connect timeout in ms. @default 5000 */
  connectTimeoutMs: z.number().int().positive().default(5_000),
  /** Time to receive upstream response headers, in ms. @default 30000 */
  headersTimeoutMs: z.number().int().positive().default(30_000),
  /** Idle time allowed between body chunks, in ms. @default 300000 */
  bodyTimeoutMs: z.number().int().positive().default(300_000),
});
/** Upstream timeouts with defaults applied. */
export type UpstreamTimeouts = z.output<typeof upstreamTimeoutsSchema>;

/**
 * Per-session limits of the gateway (`gateway.limits.*`; docs/security.md "Fairness and limits"):
 * one definition with its defaults, shared by the config file, the gateway process's settings
 * (src/gateway-wire/config.ts) and `EgressGateway`'s options (src/gateway/options.ts). Counts are
 * per session and per gateway replica; durations in ms; 0 turns a body check off.
 */
export const gatewayLimitsSchema = z
  .object({
    /** HTTP requests of one session being handled at once (plain and inside tunnels). @default 64 */
    concurrentRequests: z.number().int().min(1).max(100_000).default(64),
    /** Client connections one session may hold open to the gateway (tunnels included). @default 128 */
    connections: z.number().int().min(1).max(100_000).default(128),
    /** CONNECT tunnels one session may hold open (intercepted and passthrough). @default 64 */
    tunnels: z.number().int().min(1).max(100_000).default(64),
    /**
     * Upstream connections one session may hold per upstream origin: each session has its own
     * keep-alive pool per origin, so one session's slow requests never queue another's. @default 32
     */
    upstreamConnectionsPerOrigin: z.number().int().min(1).max(10_000).default(32),
    /**
     * Slowest request body the gateway waits for, in bytes/s averaged over `bodyRateWindowMs`
     * (slow-upload / slowloris defence; time the upstream is not reading does not count). 0: off.
     * @default 1024
     */
    bodyMinBytesPerSecond: z.number().int().min(0).default(1_024),
    /** Window over which `bodyMinBytesPerSecond` is measured, in ms. @default 10000 */
    bodyRateWindowMs: z.number().int().min(100).default(10_000),
    /** Longest time a request body may take to arrive, in ms. 0: off. @default 600000 */
    bodyMaxMs: z.number().int().min(0).default(600_000),
    /**
     * Largest request body the gateway reads whole before it decides, in bytes (src/gateway/body.ts):
     * today the body of a POST to an MCP endpoint of mcp.yaml, whose JSON-RPC messages are decided one
     * by one. A larger body is refused 413 `body_too_large` and nothing is forwarded. Bodies the
     * gateway does not need to read stream through unbounded. @default 1048576
     */
    bufferedBodyBytes: z
      .number()
      .int()
      .min(1_024)
      .max(64 * 1024 * 1024)
      .default(1_048_576),
    /** Time a client has to send a request's headers, in ms. @default 30000 */
    clientHeadersTimeoutMs: z.number().int().min(100).default(30_000),
    /**
     * Time a client has to send a whole request (headers and body), in ms: Node's `requestTimeout`,
     * a backstop behind `bodyMaxMs`. Must not be below `clientHeadersTimeoutMs`. @default 660000
     */
    clientRequestTimeoutMs: z.number().int().min(100).default(660_000),
  })
  .strict()
  .refine((l) => l.clientRequestTimeoutMs >= l.clientHeadersTimeoutMs, {
    message: 'clientRequestTimeoutMs must not be below clientHeadersTimeoutMs',
    path: ['clientRequestTimeoutMs'],
  });
/** Per-session limits with defaults applied. */
export type GatewayLimits = z.output<typeof gatewayLimitsSchema>;
/** Per-session limits as written (every key optional). */
export type GatewayLimitsInput = z.input<typeof gatewayLimitsSchema>;

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected HOST:PORT, e.g. 127.0.0.1:8080');

export const cidr = z.string().refine((v) => {
  const [addr, bits, extra] = v.split('/');
  if (extra !== undefined || addr === undefined || bits === undefined || !/^\d{1,3}$/.test(bits))
    return false;
  const family = isIP(addr);
  return family !== 0 && Number(bits) <= (family === 4 ? 32 : 128);
}, 'expected a CIDR such as 10.0.0.0/8 or fd00::/8');

const hostName = z
  .string()
  .min(1)
  .regex(/^[A-Za-z0-9.-]+$/, 'expected a DNS name (letters, digits, dots, hyphens)');

const aliasTarget = z.union([
  z.literal('host-gateway'),
  z.string().refine((v) => isIP(v) !== 0, 'expected an IP address or "host-gateway"'),
]);

// --- runtime.kubernetes (docs/kubernetes.md) ------------------------------------------------------
/** A Kubernetes object name (RFC 1123 label: what namespaces and Services need). */
const k8sName = z
  .string()
  .max(63)
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'expected a Kubernetes name (lowercase letters, digits, "-")');
/** A label key (optional DNS-subdomain prefix + "/" + name) and value, as Kubernetes accepts them. */
const k8sLabelKey = z
  .string()
  .max(317)
  .regex(
    /^([a-z0-9]([a-z0-9.-]*[a-z0-9])?\/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/,
    'expected a Kubernetes label key such as app.kubernetes.io/name',
  );
const k8sLabelValue = z
  .string()
  .regex(/^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/, 'expected a Kubernetes label value');
const k8sLabels = z.record(k8sLabelKey, k8sLabelValue);

const kubernetesRuntimeSchema = z
  .object({
    /** kubeconfig file. Unset: in-cluster ServiceAccount when running in a Pod, else $KUBECONFIG / ~/.kube/config. */
    kubeconfig: z.string().min(1).optional(),
    /** kubeconfig context. Unset: the file's current context. */
    context: z.string().min(1).optional(),
    /** Namespace sandboxes (Pods, Secrets, NetworkPolicies) are created in. @default "airlock-sandboxes" */
    sandboxNamespace: k8sName.default('airlock-sandboxes'),
    /** Namespace the gateway Pods run in (the NetworkPolicy's only allowed peer). @default "airlock" */
    gatewayNamespace: k8sName.default('airlock'),
    /**
     * Value of the `airlock.io/instance` label on everything this installation creates; recovery and the
     * gateways' watch select on it, so installations sharing a sandbox namespace stay apart. @default "airlock"
     */
    instance: k8sLabelValue.min(1).default('airlock'),
    /** Labels selecting the gateway Pods (the chart's gateway selector labels). */
    gatewayPodLabels: k8sLabels
      .refine((o) => Object.keys(o).length > 0, 'at least one label is needed to select the gateway Pods')
      .default({ 'app.kubernetes.io/name': 'airlock', 'app.kubernetes.io/component': 'gateway' }),
    /**
     * Host sandboxes send proxy traffic to: the gateway Service's DNS name or ClusterIP. A name is resolved
     * by the control plane when a session is created and the address goes into the sandbox's proxy URLs,
     * so sandboxes need no DNS. @default "airlock-gateway.airlock.svc.cluster.local"
     */
    gatewayService: z.string().min(1).default('airlock-gateway.airlock.svc.cluster.local'),
    /** Where the control plane reaches every gateway replica's admin API (kill switch confirmation). */
    gatewayAdmin: z
      .object({
        /** A headless Service name resolving to every gateway Pod (the chart's `<fullname>-gateway-admin`). */
        service: z.string().min(1).optional(),
        /** Fixed admin base URLs instead of `service` (e.g. gateways outside the cluster, tests). */
        urls: z.array(z.url({ protocol: /^https?$/ })).optional(),
        /** Admin port on each gateway Pod. @default 9090 */
        port: z.number().int().min(1).max(65535).default(GATEWAY_ADMIN_PORT),
        /** File holding the admin token shared with the gateways (a mounted Secret). */
        tokenFile: z.string().min(1).default('/var/run/airlock/admin-token'),
      })
      .strict()
      .prefault({}),
    /** ServiceAccount sandbox Pods run as (its token is never mounted). @default "airlock-sandbox" */
    serviceAccountName: k8sName.default('airlock-sandbox'),
    /** RuntimeClass for sandbox Pods, e.g. "gvisor" or "kata". Unset: the cluster default. */
    runtimeClassName: k8sName.optional(),
    /** uid/gid sandbox containers run as (the sandbox image's user). @default 10001 */
    runAsUser: z.number().int().min(1).default(10_001),
    runAsGroup: z.number().int().min(1).default(10_001),
    /** Working directory (a writable emptyDir; the root filesystem is read-only). @default "/home/agent" */
    workdir: z
      .string()
      .regex(/^\/[^\0]*$/, 'expected an absolute path')
      .default('/home/agent'),
    /** Size limit of each emptyDir (/tmp and the workdir), in MiB. @default 1024 */
    scratchMiB: z.number().int().min(1).default(1024),
    /** Allow DNS to the cluster resolver (off by default: DNS is a way out). */
    dns: z
      .object({
        enabled: z.boolean().default(false),
        namespace: k8sName.default('kube-system'),
        podLabels: k8sLabels.default({ 'k8s-app': 'kube-dns' }),
      })
      .strict()
      .prefault({}),
    /**
     * Set to true once you have checked that the cluster's network plugin enforces NetworkPolicy; `airlock
     * serve` warns at start when it is false and it cannot tell on its own. @default false
     */
    networkPolicyEnforced: z.boolean().default(false),
    /** How long `start` waits for a sandbox Pod to run, in seconds. @default 120 */
    startTimeoutSeconds: z.number().int().positive().default(120),
    /**
     * HTTPS interception on Kubernetes (`gateway.tls.intercept`; docs/kubernetes.md): where the
     * installation CA and the sandboxes' trust bundle live.
     */
    ca: z
      .object({
        /**
         * Secret in `gatewayNamespace` holding the CA (keys ca.crt, ca.key, previous.crt,
         * previous.expires), filled by the control plane on first start; the gateway Pods mount it.
         * The chart creates it empty. @default "airlock-ca"
         */
        secretName: k8sName.default('airlock-ca'),
        /**
         * ConfigMap in `sandboxNamespace` with the trust bundle (key ca-bundle.pem: system roots + the
         * CA, plus the previous CA during an overlap), kept current by the control plane and mounted
         * read-only at /etc/airlock in every sandbox Pod. @default "airlock-ca-bundle"
         */
        bundleConfigMap: k8sName.default('airlock-ca-bundle'),
        /** How often the control plane re-checks the CA (rotation near expiry) and the bundle, in seconds. @default 300 */
        resyncSeconds: z.number().int().min(10).max(86_400).default(300),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .refine((k) => !(k.gatewayAdmin.service && k.gatewayAdmin.urls), {
    message: 'set gatewayAdmin.service or gatewayAdmin.urls, not both',
    path: ['gatewayAdmin'],
  });

/** Where the Docker runtime mounts `gateway.credentialsDir` in the gateway container (read-only). */
export const GATEWAY_CREDENTIALS_DIR = '/run/airlock/credentials';

/**
 * A variable `gateway.credentialEnv` may pass into the gateway container: not one the container's
 * own process needs or that changes how it runs (the gateway's settings and admin token, PATH and
 * the like, `NODE_*`, `LD_*`).
 */
const credentialEnvName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'expected an environment variable name')
  .refine(
    (n) =>
      ![
        'AIRLOCK_GATEWAY_CONFIG',
        'AIRLOCK_ADMIN_TOKEN',
        'PATH',
        'HOME',
        'HOSTNAME',
        'USER',
        'SHELL',
        'TZ',
      ].includes(n) && !/^(NODE_|LD_|UV_)/.test(n),
    "this variable is the gateway process's own; name another one",
  );

export const configSchema = z
  .object({
    api: z
      .object({
        /** Where the sandbox API listens. @default "127.0.0.1:8080" */
        listen: hostPort.default('127.0.0.1:8080'),
        /** Bearer tokens accepted by the API, each with a caller name used in audit and logs. */
        tokens: z
          .array(
            z.strictObject({ name: hostName, token: z.string().min(16, 'tokens need >= 16 characters') }),
          )
          .default([]),
      })
      .strict()
      .prefault({}),
    gateway: z
      .object({
        /** Forward-proxy port inside the gateway. @default 3128 */
        port: z.number().int().min(1).max(65535).default(GATEWAY_PORT),
        /** Upstream names resolved by the gateway itself: name -> IP, or "host-gateway" (the Docker host). */
        hostAliases: z.record(hostName, aliasTarget).default({}),
        /** Private/loopback ranges the gateway may dial anyway (refused by default). */
        allowPrivateCidrs: z.array(cidr).default([]),
        /** Upstream connect, response-headers and body-idle timeouts in ms (defaults above). */
        ...upstreamTimeoutsSchema.shape,
        /** Per-session limits: concurrency, connections, tunnels, request bodies, client timeouts. */
        limits: gatewayLimitsSchema.prefault({}),
        /**
         * Gateway worker processes sharing the proxy port, each on its own core (docs/config.md).
         * Unset: 1 on the Docker runtime (one gateway container); Kubernetes scales with
         * `gateway.replicas` and the chart's `gateway.workers`. @default 1 (Docker runtime)
         */
        workers: z.number().int().min(1).max(GATEWAY_MAX_WORKERS).optional(),
        /**
         * How upstreams read paths, by policy host (`name` or `name:port`):
         * `{ "json.test": { pathCase: insensitive } }`. Unlisted hosts: `exact`.
         */
        upstreams: upstreamsSchema,
        /**
         * Docker runtime: a host directory holding credential values (docs/credentials.md "On
         * Docker"), bind-mounted read-only into the gateway container at
         * {@link GATEWAY_CREDENTIALS_DIR}; credentials.yaml `file:` sources name files under that
         * path. Relative paths are relative to the config file. Unset: no file source is readable.
         */
        credentialsDir: z
          .string()
          .min(1)
          .refine((d) => !/[:,]/.test(d), 'a bind-mounted directory cannot contain ":" or ","')
          .optional(),
        /**
         * Docker runtime: environment variables of `airlock serve` passed into the gateway container
         * by name, for credentials.yaml `env:` sources; the gateway reads no other variable.
         */
        credentialEnv: z
          .array(credentialEnvName)
          .default([])
          .refine((names) => new Set(names).size === names.length, 'a variable is listed twice'),
        /**
         * OAuth2 credentials (credentials.yaml `oauth2-*`): the gateway refreshes an access token
         * this many seconds before it expires (docs/credentials.md "OAuth2"). @default 30
         */
        oauth2RefreshSkewSeconds: z.number().int().min(0).max(3600).default(30),
        /**
         * How long the gateway reuses a name's DNS answer, seconds (0: every call looks it up;
         * docs/security.md "Destinations"). @default 5
         */
        dnsCacheSeconds: z.number().int().min(0).max(300).default(5),
        /** Gateway container image (Docker runtime). @default "airlock-gateway:dev" */
        image: z.string().min(1).default('airlock-gateway:dev'),
        /** HTTPS under policy (docs/tls.md). */
        tls: z
          .object({
            /**
             * Terminate CONNECT tunnels with a leaf of the installation CA so method and path rules
             * apply to HTTPS. Off: CONNECT is only ever a passthrough granted by a rule. @default true
             */
            intercept: z.boolean().default(true),
            /** Extra CAs (PEM file) trusted for upstream certificates besides the system roots. */
            upstreamCaFile: z.string().min(1).optional(),
            /**
             * Hosts tunnelled unopened (certificate pinning, client certificates), as policy hosts
             * (`name` or `name:port`); still only where a rule grants method CONNECT.
             */
            passthrough: z
              .array(z.string().regex(/^[a-z0-9.-]+(:\d{1,5})?$/, 'expected a lowercase host or host:port'))
              .default([]),
            /** Leaf certificates cached by the gateway (LRU). @default 1000 */
            leafCacheSize: z.number().int().min(1).max(100_000).default(LEAF_CACHE_SIZE),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /** Where the policy comes from: `dir` (default "policies") or `git`, not both (src/policy/config.ts). */
    policy: policyConfigSchema,
    runtime: z
      .object({
        /** Which runtime creates sandboxes. @default "docker" */
        kind: z.enum(['docker', 'kubernetes']).default('docker'),
        /** Image each session's sandbox runs. @default "airlock-sandbox:dev" */
        sandboxImage: z.string().min(1).default('airlock-sandbox:dev'),
        /**
         * Isolation self-test before a session is reported running: a probe from inside the sandbox
         * must reach only the gateway (docs/security.md). A failure refuses the session (503
         * AIRLOCK_ISOLATION_FAILED). @default true
         */
        selfTest: z.boolean().default(true),
        resources: z
          .object({
            /** CPU limit per sandbox, in cores. @default 1 */
            cpus: z.number().positive().max(64).default(1),
            /** Memory limit per sandbox, in MiB. @default 512 */
            memoryMiB: z.number().int().min(16).default(512),
            /** Process limit per sandbox. @default 256 */
            pids: z.number().int().min(8).default(256),
          })
          .strict()
          .prefault({}),
        docker: z
          .object({
            /** Docker engine socket. @default "/var/run/docker.sock" */
            socketPath: z.string().min(1).default('/var/run/docker.sock'),
            /** Pool that per-session internal networks (/29 each) are carved from. @default "10.213.0.0/16" */
            subnetPool: cidr.default('10.213.0.0/16'),
            /**
             * Subnet of the gateway's egress network `airlock-egress`; its first address is what
             * `host-gateway` aliases resolve to. Unset: Docker picks one when creating the network.
             */
            egressSubnet: cidr.optional(),
            /**
             * Spare per-session networks kept ready (docs/architecture.md "Session create"): empty
             * internal /29s with the gateway joined, each bound to the next cold create and never
             * reused; refilled in the background. 0 turns it off. @default 0
             */
            spareNetworks: z.number().int().min(0).max(64).default(0),
          })
          .strict()
          .prefault({}),
        /** Kubernetes runtime settings (used when `kind` is "kubernetes"); see docs/kubernetes.md. */
        kubernetes: kubernetesRuntimeSchema.prefault({}),
      })
      .strict()
      .prefault({}),
    sessions: z
      .object({
        /** TTL when a create request names none, in seconds. @default 3600 */
        defaultTtlSeconds: z.number().int().positive().default(3_600),
        /** Largest TTL a create request may ask for, in seconds. @default 86400 */
        maxTtlSeconds: z.number().int().positive().default(86_400),
        /**
         * Warm pools (Docker; docs/architecture.md "Warm pools"): sandboxes created, started and
         * self-tested ahead of their sessions, claimed by a create of the same image.
         */
        warmPool: z
          .object({
            /** Ready sandboxes kept per pooled image; 0 turns pools off. @default 0 */
            size: z.number().int().min(0).max(256).default(0),
            /** Images pooled, exactly as create requests name them. @default [runtime.sandboxImage] */
            images: z.array(z.string().min(1)).default([]),
            /** Pool fills (create, start, self-test) in flight at most, all images together. @default 1 */
            concurrency: z.number().int().min(1).max(16).default(1),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    audit: z
      .object({
        /** JSON-lines audit file. Relative paths are relative to stateDir. @default "audit.jsonl" */
        file: z.string().min(1).default('audit.jsonl'),
        /**
         * How a request's query string is recorded: `digest` (its length and a SHA-256 prefix:
         * `queryBytes`, `querySha256`) or `full` (also the text itself, `query` — it may carry data
         * the agent sends out, and secrets). @default "digest"
         */
        query: auditQuerySchema,
        /**
         * While the audit file cannot be written (disk full, unwritable): `deny` refuses every new
         * call with 503 `audit_unavailable` and /readyz is not ready (fail closed); `allow` lets calls
         * through, buffering their events (docs/security.md "Audit sink failure"). @default "deny"
         */
        onFailure: auditOnFailureSchema,
      })
      .strict()
      .prefault({}),
    /** Approvals of calls that `ask` rules match (docs/approvals.md). */
    approvals: z
      .object({
        /**
         * How long the gateway holds a call for a person's decision, seconds, before answering 403
         * `approval_timeout`; 0 answers `approval_required` at once. @default 0
         */
        holdSeconds: z.number().int().min(0).max(600).default(0),
        /**
         * Hold time per ask rule, by the rule's text as in policy.csv
         * (`"p, analyst, forum.test, /comments, POST, ask": 60`). @default {}
         */
        holdRules: z.record(z.string().min(1), z.number().int().min(0).max(600)).default({}),
        /** How long a pending approval waits for a decision before it expires, seconds. @default 3600 */
        pendingSeconds: z
          .number()
          .int()
          .min(10)
          .max(7 * 86_400)
          .default(3600),
        /** Uses of an approval when the approver names none. @default 1 */
        defaultUses: z.number().int().min(1).max(1000).default(1),
        /** How long an approval may be used when the approver names no ttlSeconds, seconds. @default 600 */
        defaultTtlSeconds: z
          .number()
          .int()
          .min(1)
          .max(7 * 86_400)
          .default(600),
        /**
         * Told of each new approval: `POST url` with the approval as JSON, signed
         * `x-airlock-signature: sha256=HMAC-SHA256(secret, "<x-airlock-timestamp>.<body>")`.
         * The secret comes from the environment variable `secretEnv`. Unset: no webhook.
         */
        webhook: z.strictObject({ url: z.url(), secretEnv: z.string().min(1) }).optional(),
        /**
         * Kubernetes: where the controller listens for the gateways' approval claims (bearer = the
         * gateway admin token). Docker uses a unix socket in stateDir instead. @default "0.0.0.0:8081"
         */
        internalListen: hostPort.default('0.0.0.0:8081'),
      })
      .strict()
      .prefault({}),
    /** Telemetry export beyond `/metrics` (docs/telemetry.md). */
    telemetry: z
      .object({
        /**
         * The audit trail as OpenTelemetry logs over OTLP/HTTP (JSON), one record per decision, its
         * body an OCSF HTTP Activity (class 4002) event. Sent by the control plane (`airlock serve`)
         * from the audit file it follows; the file stays the record (an export failure loses nothing
         * from it).
         */
        otlp: z
          .object({
            /**
             * The collector's OTLP/HTTP base URL (`http://otel-collector:4318`); records go to
             * `<endpoint>/v1/logs`. Unset: no export.
             */
            endpoint: z
              .url({ protocol: /^https?$/, error: 'expected an http(s) URL such as http://127.0.0.1:4318' })
              .optional(),
            /** Extra HTTP headers on each export (e.g. an API key of the receiving service). @default {} */
            headers: z
              .record(
                z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'expected an HTTP header name'),
                z.string(),
              )
              .default({}),
            /** `service.name` of the records' resource. @default "airlock" */
            serviceName: z.string().min(1).max(256).default('airlock'),
            /** Time limit of one export request, ms. @default 10000 */
            timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
            /** Longest wait before a batch of records is sent, ms. @default 1000 */
            exportIntervalMs: z.number().int().min(10).max(60_000).default(1_000),
            /** Records waiting to be sent, at most; beyond, new records are dropped (and counted). @default 10000 */
            maxQueueSize: z.number().int().min(1).max(1_000_000).default(10_000),
            /**
             * Also one span per decision to `<endpoint>/v1/traces` (the decision's start and duration,
             * status error for a denial). @default false
             */
            traces: z.boolean().default(false),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /** Where Airlock keeps its state (API token, audit file). @default ".airlock" */
    stateDir: z.string().min(1).default('.airlock'),
  })
  .strict();

/** The config file as written (every key optional). */
export type ConfigInput = z.input<typeof configSchema>;
/** The config with every default applied and paths resolved. */
export type Config = z.output<typeof configSchema>;
