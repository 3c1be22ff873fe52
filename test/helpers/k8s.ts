/**
 * An envtest-style Kubernetes for tests: a real etcd and a real kube-apiserver (built from source by
 * scripts/k8s-tools.sh) on loopback, with generated certificates and keys, RBAC on, and no nodes (Pods
 * stay Pending unless a test plays the kubelet by patching their status as the admin). The API server
 * may listen on another local address (e.g. the Docker egress bridge, so a gateway container can
 * reach it) with extra names in its serving certificate.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { startGatewayService, type RunningGateway } from '../../src/gateway/service.js';

const run = promisify(execFile);
export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** Paths and versions of the built tools (from `scripts/k8s-tools.sh --paths`). */
export interface K8sTools {
  kubeApiserver: string;
  etcd: string;
  helm: string;
  /** kubectl, when built (`scripts/k8s-tools.sh --with-kubectl`); '' otherwise (see requireKubectl). */
  kubectl: string;
  versions: { kubernetes: string; etcd: string; helm: string };
}

/**
 * Finds the tools built by scripts/k8s-tools.sh. Never builds and never skips.
 * @throws Error naming the command to run when a tool is missing.
 */
export function k8sTools(): K8sTools {
  let out: string;
  try {
    out = execFileSync('bash', [path.join(repoRoot, 'scripts/k8s-tools.sh'), '--paths'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(
      `Kubernetes test tools are missing: ${stderr || (err as Error).message}\n` +
        `Build them once (about 10-20 minutes cold, cached outside the repo) with: bash scripts/k8s-tools.sh`,
      { cause: err },
    );
  }
  const kv = Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  return {
    kubeApiserver: kv.KUBE_APISERVER ?? '',
    etcd: kv.ETCD ?? '',
    helm: kv.HELM ?? '',
    kubectl: kv.KUBECTL ?? '',
    versions: {
      kubernetes: kv.KUBERNETES_VERSION ?? '',
      etcd: kv.ETCD_VERSION ?? '',
      helm: kv.HELM_VERSION ?? '',
    },
  };
}

/**
 * The kubectl built by scripts/k8s-tools.sh. Never builds and never skips.
 * @throws Error naming the command to run when it was not built.
 */
export function requireKubectl(tools: K8sTools = k8sTools()): string {
  if (tools.kubectl) return tools.kubectl;
  throw new Error(
    'kubectl is missing (the kubectl e2e test runs it inside a sandbox). Build it once (about 1.5 minutes ' +
      'after the other tools, cached outside the repo) with: bash scripts/k8s-tools.sh --with-kubectl',
  );
}

/** A free TCP port on a local address (released before return; the usual small race is accepted). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(
  what: string,
  ms: number,
  probe: () => Promise<boolean>,
  proc?: ChildProcess,
): Promise<void> {
  const deadline = Date.now() + ms;
  let last = '';
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null) throw new Error(`${what} exited with code ${proc.exitCode}`);
    try {
      if (await probe()) return;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} not ready within ${ms} ms ${last}`);
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Where the test cluster's API server listens and what its serving certificate names. */
export interface TestClusterOptions {
  /** Local IPv4 address the API server binds and advertises (default 127.0.0.1; etcd stays on loopback). */
  bindAddress?: string;
  /** Extra DNS names or IP addresses in the serving certificate (e.g. `kube.test`). */
  extraSans?: string[];
}

/** A running test cluster (API server + etcd). */
export interface TestCluster {
  /** `https://<bindAddress>:<port>` */
  server: string;
  /** The API server's port. */
  port: number;
  /** PEM of the CA that signed the API server's certificate. */
  caPem: string;
  /** Static token of `admin` (group system:masters). */
  adminToken: string;
  /** kubeconfig file for the admin. */
  adminKubeconfig: string;
  dir: string;
  tools: K8sTools;
  /** A fresh admin KubeConfig. */
  admin(): KubeConfig;
  /** KubeConfig (and file) for a bearer token, e.g. a ServiceAccount's from TokenRequest. */
  kubeConfigForToken(token: string, name: string): { kc: KubeConfig; file: string };
  /** A ServiceAccount token from the TokenRequest API (1 h), as the kubelet would mount it. */
  serviceAccountToken(namespace: string, serviceAccount: string): Promise<string>;
  /** Runs helm against this cluster; resolves with stdout, rejects with stderr in the message. */
  helm(args: string[]): Promise<string>;
  stop(): Promise<void>;
}

function kubeconfigYaml(server: string, caPem: string, user: string, token: string): string {
  const ca = Buffer.from(caPem).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: test`,
    `  cluster: {server: "${server}", certificate-authority-data: "${ca}"}`,
    'users:',
    `- name: ${user}`,
    `  user: {token: "${token}"}`,
    'contexts:',
    `- name: test`,
    `  context: {cluster: test, user: ${user}}`,
    'current-context: test',
    '',
  ].join('\n');
}

/**
 * Starts etcd and kube-apiserver (about 5-15 s), on loopback unless `opts.bindAddress` names another
 * local address for the API server. Logs go to `<dir>/etcd.log` and `<dir>/kube-apiserver.log`; the
 * directory is removed by `stop()`.
 * @throws Error when a tool is missing (see k8sTools) or a process does not become ready.
 */
export async function startTestCluster(opts: TestClusterOptions = {}): Promise<TestCluster> {
  const bindAddress = opts.bindAddress ?? '127.0.0.1';
  if (!net.isIPv4(bindAddress)) throw new Error(`bindAddress must be an IPv4 address: ${bindAddress}`);
  const sans = ['IP:127.0.0.1', 'DNS:localhost', 'DNS:kubernetes.default.svc'];
  for (const name of [bindAddress, ...(opts.extraSans ?? [])]) {
    const san = `${net.isIP(name) ? 'IP' : 'DNS'}:${name}`;
    if (!sans.includes(san)) sans.push(san);
  }
  const tools = k8sTools();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-k8s-'));
  const pki = path.join(dir, 'pki');
  mkdirSync(pki);
  // CA + serving certificate for 127.0.0.1/localhost.
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      '/CN=airlock-test-ca',
    ],
    pki,
  );
  openssl(
    [
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'apiserver.key',
      '-out',
      'apiserver.csr',
      '-subj',
      '/CN=kube-apiserver',
    ],
    pki,
  );
  writeFileSync(path.join(pki, 'san.ext'), `subjectAltName=${sans.join(',')}\n`);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'apiserver.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'apiserver.crt',
      '-days',
      '2',
      '-extfile',
      'san.ext',
    ],
    pki,
  );
  // ServiceAccount token signing key pair.
  const sa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(path.join(pki, 'sa.key'), sa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(path.join(pki, 'sa.pub'), sa.publicKey.export({ type: 'spki', format: 'pem' }));
  const adminToken = `admin-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
  writeFileSync(path.join(pki, 'tokens.csv'), `${adminToken},admin,admin-uid,"system:masters"\n`);
  const caPem = readFileSync(path.join(pki, 'ca.crt'), 'utf8');

  const procs: ChildProcess[] = [];
  const startProc = (bin: string, args: string[], log: string): ChildProcess => {
    const out = createWriteStream(path.join(dir, log));
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout?.pipe(out);
    p.stderr?.pipe(out);
    procs.push(p);
    return p;
  };
  const stop = async (): Promise<void> => {
    for (const p of procs.reverse()) {
      if (p.exitCode !== null) continue;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (p.exitCode === null) p.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort(bindAddress)];
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const etcd = startProc(
      tools.etcd,
      [
        '--name=test',
        `--data-dir=${path.join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=test=http://127.0.0.1:${peerPort}`,
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
      'etcd.log',
    );
    await waitFor('etcd', 30_000, async () => (await fetch(`${etcdUrl}/health`)).ok, etcd);

    const api = startProc(
      tools.kubeApiserver,
      [
        `--etcd-servers=${etcdUrl}`,
        `--bind-address=${bindAddress}`,
        `--advertise-address=${bindAddress}`,
        `--secure-port=${apiPort}`,
        `--cert-dir=${path.join(dir, 'certs')}`,
        `--tls-cert-file=${path.join(pki, 'apiserver.crt')}`,
        `--tls-private-key-file=${path.join(pki, 'apiserver.key')}`,
        `--token-auth-file=${path.join(pki, 'tokens.csv')}`,
        '--authorization-mode=RBAC',
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${path.join(pki, 'sa.pub')}`,
        `--service-account-signing-key-file=${path.join(pki, 'sa.key')}`,
        '--api-audiences=https://kubernetes.default.svc.cluster.local',
        '--service-cluster-ip-range=10.96.0.0/16',
        '--allow-privileged=false',
        '--enable-priority-and-fairness=false',
        '--profiling=false',
        '--endpoint-reconciler-type=none',
        '--v=1',
      ],
      'kube-apiserver.log',
    );
    const server = `https://${bindAddress}:${apiPort}`;
    const adminKubeconfig = path.join(dir, 'admin.kubeconfig');
    writeFileSync(adminKubeconfig, kubeconfigYaml(server, caPem, 'admin', adminToken), { mode: 0o600 });
    const admin = (): KubeConfig => {
      const kc = new KubeConfig();
      kc.loadFromFile(adminKubeconfig);
      return kc;
    };
    await waitFor(
      'kube-apiserver',
      90_000,
      async () => {
        const res = await run('curl', [
          '-sS',
          '--cacert',
          path.join(pki, 'ca.crt'),
          '-H',
          `Authorization: Bearer ${adminToken}`,
          `${server}/readyz`,
        ]);
        return res.stdout.trim() === 'ok';
      },
      api,
    );
    // The default namespace exists once the bootstrap controllers ran; ServiceAccounts need it for nothing.
    return {
      server,
      port: apiPort,
      caPem,
      adminToken,
      adminKubeconfig,
      dir,
      tools,
      admin,
      kubeConfigForToken(token, name) {
        const file = path.join(dir, `${name}.kubeconfig`);
        writeFileSync(file, kubeconfigYaml(server, caPem, name, token), { mode: 0o600 });
        const kc = new KubeConfig();
        kc.loadFromFile(file);
        return { kc, file };
      },
      async serviceAccountToken(namespace, serviceAccount) {
        const core = admin().makeApiClient(CoreV1Api);
        const tr = await core.createNamespacedServiceAccountToken({
          name: serviceAccount,
          namespace,
          body: {
            spec: { audiences: ['https://kubernetes.default.svc.cluster.local'], expirationSeconds: 3600 },
          },
        });
        const token = tr.status?.token;
        if (!token) throw new Error(`TokenRequest for ${namespace}/${serviceAccount} returned no token`);
        return token;
      },
      async helm(args) {
        try {
          const r = await run(tools.helm, [...args, '--kubeconfig', adminKubeconfig], {
            cwd: repoRoot,
            maxBuffer: 64 * 1024 * 1024,
            env: {
              ...process.env,
              HELM_CACHE_HOME: path.join(dir, 'helm-cache'),
              HELM_CONFIG_HOME: path.join(dir, 'helm-config'),
              HELM_DATA_HOME: path.join(dir, 'helm-data'),
            },
          });
          return r.stdout;
        } catch (err) {
          throw new Error(
            `helm ${args.join(' ')} failed: ${String((err as { stderr?: unknown }).stderr ?? err)}`,
            { cause: err },
          );
        }
      },
      stop,
    };
  } catch (err) {
    const logs = ['etcd.log', 'kube-apiserver.log']
      .map((f) => {
        try {
          return `--- ${f}\n${readFileSync(path.join(dir, f), 'utf8').slice(-3000)}`;
        } catch {
          return '';
        }
      })
      .join('\n');
    await stop();
    throw new Error(`${(err as Error).message}\n${logs}`, { cause: err });
  }
}

/** Runs helm without a cluster (lint, template): resolves with stdout, rejects with stderr in the message. */
export async function helm(tools: K8sTools, args: string[]): Promise<string> {
  try {
    const r = await run(tools.helm, args, { cwd: repoRoot, maxBuffer: 64 * 1024 * 1024 });
    return r.stdout;
  } catch (err) {
    throw new Error(`helm ${args.join(' ')} failed: ${String((err as { stderr?: unknown }).stderr ?? err)}`, {
      cause: err,
    });
  }
}

/** Runs the host's kubectl with a kubeconfig; never throws for a non-zero exit (the caller asserts). */
export async function kubectl(
  bin: string,
  kubeconfig: string,
  args: string[],
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  try {
    const r = await run(bin, ['--kubeconfig', kubeconfig, '--request-timeout=20s', ...args], {
      maxBuffer: 16 * 1024 * 1024,
    });
    return { exitCode: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: unknown; stderr?: unknown };
    if (typeof e.code !== 'number') throw err; // not started at all (ENOENT, ...)
    return { exitCode: e.code, stdout: String(e.stdout ?? ''), stderr: String(e.stderr ?? '') };
  }
}

// --- Airlock's chart on the test cluster (shared by k8s-cluster.test.ts and k8s-tls.test.ts) ---

/** Helm release name and release namespace the chart is installed as. */
export const RELEASE = 'airlock';
export const RELEASE_NS = 'airlock';
/** Namespace the chart creates for sandbox Pods. */
export const SANDBOX_NS = 'airlock-sandboxes';
/** The chart's ServiceAccounts (in {@link RELEASE_NS}). */
export const CONTROLLER_SA = 'airlock-controller';
export const GATEWAY_SA = 'airlock-gateway';
/** The gateway admin token the tests' control planes and gateways share (>= 16 characters). */
export const GATEWAY_ADMIN_TOKEN = 'gateway-admin-token-0123456789';
/** Labels of the chart's gateway Pods (`runtime.kubernetes.gatewayPodLabels`). */
export const GATEWAY_POD_LABELS = {
  'app.kubernetes.io/name': 'airlock',
  'app.kubernetes.io/instance': RELEASE,
  'app.kubernetes.io/component': 'gateway',
};
/** Request option for JSON merge patches (`patchNamespacedPodStatus(..., mergePatch)`). */
export const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** The chart's identities as the kubelet would mount them: TokenRequest tokens in kubeconfigs. */
export interface ChartIdentities {
  /** The controller ServiceAccount's client. */
  controllerKc: KubeConfig;
  /** A kubeconfig file for the controller ServiceAccount. */
  controllerKubeconfigFile: string;
  /** A kubeconfig file for the gateway ServiceAccount. */
  gatewayKubeconfigFile: string;
}

/**
 * `helm install` of charts/airlock as {@link RELEASE} in {@link RELEASE_NS} with
 * `ci/local-images-values.yaml`, then kubeconfigs for the controller and gateway ServiceAccounts.
 * @throws Error from helm or the API server.
 */
export async function installAirlockChart(cluster: TestCluster): Promise<ChartIdentities> {
  await cluster.helm([
    'install',
    RELEASE,
    path.join(repoRoot, 'charts/airlock'),
    '--namespace',
    RELEASE_NS,
    '--create-namespace',
    '-f',
    path.join(repoRoot, 'charts/airlock/ci/local-images-values.yaml'),
  ]);
  const ctl = cluster.kubeConfigForToken(
    await cluster.serviceAccountToken(RELEASE_NS, CONTROLLER_SA),
    'controller',
  );
  const gatewayKubeconfigFile = cluster.kubeConfigForToken(
    await cluster.serviceAccountToken(RELEASE_NS, GATEWAY_SA),
    'gateway',
  ).file;
  return { controllerKc: ctl.kc, controllerKubeconfigFile: ctl.file, gatewayKubeconfigFile };
}

/**
 * Plays the kubelet for a sandbox Pod: phase Running, `podIP` `ip` (and, with `ready`, the Ready
 * condition), through the status subresource.
 */
export function runningStatus(
  core: CoreV1Api,
  name: string,
  ip: string,
  opts: { namespace?: string; ready?: boolean } = {},
): Promise<V1Pod> {
  const status = {
    phase: 'Running',
    podIP: ip,
    podIPs: [{ ip }],
    ...(opts.ready
      ? { conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: new Date() }] }
      : {}),
  };
  return core.patchNamespacedPodStatus(
    { name, namespace: opts.namespace ?? SANDBOX_NS, body: { status } },
    mergePatch,
  );
}

/**
 * Plays the kubelet (the test cluster has no nodes): every 100 ms, every ungated, not-deleting Pod of
 * the namespace without an IP gets {@link runningStatus} with the next `127.0.0.<firstHost + n>`.
 */
export class FakeKubelet {
  private timer: NodeJS.Timeout | null = null;
  private next: number;
  /** Pod name → the loopback address it was given. */
  readonly assigned = new Map<string, string>();

  /**
   * @param opts.firstHost last octet of the first address given. @default 10
   * @param opts.ready also set the Ready condition. @default false
   * @param opts.namespace @default SANDBOX_NS
   */
  constructor(
    private readonly core: CoreV1Api,
    private readonly opts: { firstHost?: number; ready?: boolean; namespace?: string } = {},
  ) {
    this.next = opts.firstHost ?? 10;
  }

  start(): void {
    const namespace = this.opts.namespace ?? SANDBOX_NS;
    const tick = async (): Promise<void> => {
      const pods = await this.core.listNamespacedPod({ namespace }).catch(() => null);
      for (const p of pods?.items ?? []) {
        const name = p.metadata?.name ?? '';
        if ((p.spec?.schedulingGates ?? []).length > 0 || p.status?.podIP || p.metadata?.deletionTimestamp)
          continue;
        const ip = this.assigned.get(name) ?? `127.0.0.${this.next++}`;
        this.assigned.set(name, ip);
        await runningStatus(this.core, name, ip, {
          namespace,
          ...(this.opts.ready ? { ready: true } : {}),
        }).catch(() => undefined);
      }
      this.timer = setTimeout(() => void tick(), 100);
    };
    void tick();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}

/**
 * Polls `fn` every `intervalMs` until it returns true.
 * @throws Error `timed out after MS ms waiting for WHAT`.
 */
export async function waitUntil(
  what: string,
  ms: number,
  fn: () => boolean | Promise<boolean>,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** Options of {@link kubernetesControlPlaneConfig}. */
export interface ControlPlaneConfigOptions {
  /** Base directory: config paths resolve against it; state in `<work>/state`, admin token file `<work>/admin-token`. */
  work: string;
  /** `policy.dir`. */
  policyDir: string;
  /** The control plane's kubeconfig (usually the controller ServiceAccount's). */
  kubeconfig: string;
  /** The `gateway` config section (`{port}`, `tls`). */
  gateway: Record<string, unknown>;
  /** `runtime.kubernetes.gatewayAdmin.urls`. */
  adminUrls: string[];
  /** Further `runtime.kubernetes` keys (`ca`, `runtimeClassName`, ...), applied last. */
  kubernetes?: Record<string, unknown>;
}

/**
 * An `airlock serve` config for the Kubernetes runtime against the chart installed by
 * {@link installAirlockChart}: sandboxes in {@link SANDBOX_NS} as `airlock-sandbox`, gateways found
 * by {@link GATEWAY_POD_LABELS} and reached on 127.0.0.1, 20 s start timeout, isolation self-test off.
 * @throws ConfigError when the options make an invalid config.
 */
export function kubernetesControlPlaneConfig(o: ControlPlaneConfigOptions): Config {
  return parseConfig(
    {
      gateway: o.gateway,
      policy: { dir: o.policyDir },
      stateDir: path.join(o.work, 'state'),
      runtime: {
        kind: 'kubernetes',
        sandboxImage: 'airlock-sandbox:dev',
        resources: { cpus: 0.5, memoryMiB: 256 },
        // No kubelet runs containers here (FakeKubelet only patches Pod status), so nothing can be
        // exec'd into a sandbox: the isolation self-test is for real nodes (k8s-node tier).
        selfTest: false,
        kubernetes: {
          kubeconfig: o.kubeconfig,
          sandboxNamespace: SANDBOX_NS,
          gatewayNamespace: RELEASE_NS,
          instance: RELEASE,
          gatewayPodLabels: GATEWAY_POD_LABELS,
          gatewayService: '127.0.0.1',
          gatewayAdmin: { urls: o.adminUrls, tokenFile: path.join(o.work, 'admin-token') },
          serviceAccountName: 'airlock-sandbox',
          startTimeoutSeconds: 20,
          ...o.kubernetes,
        },
      },
    },
    o.work,
  );
}

/** The gateway service's settings (what `startGatewayService` takes). */
type GatewaySettings = Parameters<typeof startGatewayService>[0];

/**
 * Starts a gateway on 127.0.0.1 (proxy and admin on port 0, audit to a file only) that learns
 * sessions from the Pod watch of {@link SANDBOX_NS} under `kubeconfig`, with
 * {@link GATEWAY_ADMIN_TOKEN}.
 * @param extra further settings (`hostAliases`, `caDir`, ...), applied last.
 */
export function startPodWatchGateway(
  o: { policyDir: string; auditFile: string; kubeconfig: string },
  extra: Partial<GatewaySettings> = {},
): Promise<RunningGateway> {
  return startGatewayService(
    {
      port: 0,
      adminPort: 0,
      listenHost: '127.0.0.1',
      policyDir: o.policyDir,
      auditFile: o.auditFile,
      auditStdout: false,
      ...extra,
      sessionSource: {
        kind: 'kubernetes',
        namespace: SANDBOX_NS,
        instance: RELEASE,
        kubeconfig: o.kubeconfig,
      },
    },
    GATEWAY_ADMIN_TOKEN,
  );
}
