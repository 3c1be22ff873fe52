import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import tls from 'node:tls';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { loadOrCreateCa } from '../../pki/ca.js';
import { GATEWAY_ADMIN_PORT, type Config } from '../../config/schema.js';
import { ExecTimeoutError, RuntimeError, RuntimeUnavailableError } from '../../errors.js';
import { DockerGatewayControl } from './gateway-control.js';
import type { GatewayServiceConfig } from '../../gateway-wire/config.js';
import type { GatewayControl } from '../../gateway-wire/control.js';
import type {
  ExecResult,
  IsolationTargets,
  PooledSandboxSpec,
  SandboxInfo,
  SandboxRuntime,
  SandboxSpec,
} from '../types.js';
import {
  EGRESS_NETWORK,
  GATEWAY_CONTAINER,
  LABEL,
  netnsHolderName,
  sandboxContainerName,
  sessionNetworkName,
} from './labels.js';
import {
  credentialsDirWarnings,
  gatewayCredentialMounts,
  type GatewayCredentialMounts,
} from './credentials.js';
import { allocateSubnet, firstHost, subnetAddresses, type SessionSubnet } from './subnets.js';
import { parsePlaceholders } from '../placeholders.js';

/** Bytes of stdout/stderr kept per exec call; more is cut with a marker. */
const EXEC_OUTPUT_CAP = 1024 * 1024;
/** uid the gateway runs as when the control plane runs as root. */
const GATEWAY_UID = 10002;
/** System trust store on Debian-like hosts. */
const SYSTEM_ROOTS = '/etc/ssl/certs/ca-certificates.crt';
/** Where sandboxes find the trust bundle (named by SSL_CERT_FILE and friends). */
const SANDBOX_BUNDLE = '/etc/airlock/ca-bundle.pem';
/** Repository of the sandbox images with the trust bundle baked in ({@link DockerRuntime.sandboxImage}). */
export const TRUST_IMAGE_REPO = 'airlock-trust';

/**
 * Per-session bridges are named `alk<12 hex>` (Linux allows 15 characters), so one host firewall
 * rule pair (`INPUT -i alk+ -j DROP`, IPv4 and IPv6) covers all of them.
 */

/** Where the control plane's socket directory is mounted in the gateway container. */
export const GATEWAY_CONTROL_MOUNT = '/var/run/airlock-control';
/** The control plane's socket for the gateway's approval claims, in {@link controlSocketDir}. */
export const CONTROL_SOCKET_NAME = 'control.sock';
/** `<stateDir>/control`: holds the control plane's socket, mounted into the gateway container only. */
export function controlSocketDir(stateDir: string): string {
  return path.join(stateDir, 'control');
}

export const BRIDGE_PREFIX = 'alk';
const bridgeName = (sessionId: string): string =>
  BRIDGE_PREFIX + createHash('sha256').update(sessionId).digest('hex').slice(0, 12);

/**
 * Options of a per-session network (DESIGN.md property 1; measured in
 * scripts/experiments/internal-network-escape.sh, docs/images.md). `Internal` keeps Docker from
 * adding a route out. With `inhibit_ipv4` the bridge has no IPv4 address, so host services are not
 * reachable through it over TCP. That alone still lets a container able to forge neighbour entries
 * (NET_RAW/NET_ADMIN) send UDP to host addresses, or reach the bridge's IPv6 link-local address:
 * sandboxes hold no capabilities, and the host INPUT rule (`ensureHostFirewall`) closes both paths
 * for everything. The only peer a sandbox can reach is the gateway container at .2.
 */
const sessionNetworkOptions = (sessionId: string): Record<string, string> => ({
  'com.docker.network.bridge.inhibit_ipv4': 'true',
  'com.docker.network.bridge.enable_ip_masquerade': 'false',
  'com.docker.network.bridge.name': bridgeName(sessionId),
});

/**
 * Drops every packet from a session bridge to the host itself (`INPUT`, IPv4 and IPv6). Traffic
 * between the sandbox and the gateway container is bridged and never crosses INPUT. Idempotent.
 * @returns null when installed, else why not (not root, no iptables): the caller warns.
 */
export async function ensureHostFirewall(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'not running as root';
  const run = promisify(execFile);
  for (const tool of ['iptables', 'ip6tables']) {
    const rule = [
      'INPUT',
      '-i',
      `${BRIDGE_PREFIX}+`,
      '-j',
      'DROP',
      '-m',
      'comment',
      '--comment',
      'airlock: sandboxes never reach the host',
    ];
    try {
      await run(tool, ['-w', '5', '-C', ...rule]);
    } catch {
      try {
        await run(tool, ['-w', '5', '-I', ...rule]);
      } catch (err) {
        return `${tool}: ${(err as Error).message}`;
      }
    }
  }
  return null;
}

function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404;
}

/** Socket errors that mean the engine itself is not there (stopped, restarting), not a failed call. */
const ENGINE_DOWN: ReadonlySet<string> = new Set(['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE']);

function wrap(what: string, err: unknown): RuntimeError {
  const msg = (err as { json?: { message?: string } }).json?.message ?? (err as Error).message;
  const code = (err as NodeJS.ErrnoException).code;
  // dockerode reports a missing or refusing engine socket as the connect error itself.
  if (code !== undefined && ENGINE_DOWN.has(code) && (err as { json?: unknown }).json === undefined)
    return new RuntimeUnavailableError(
      `${what}: the container engine cannot be reached (${msg}); retry later`,
      {
        cause: err,
      },
    );
  return new RuntimeError(`${what}: ${msg}`, { cause: err });
}

/** `<stateDir>/claims`: one claim record per claimed warm-pool sandbox ({@link DockerRuntime.claim}). */
export function claimsDir(stateDir: string): string {
  return path.join(stateDir, 'claims');
}

/** A claimed warm-pool sandbox's session, as `<stateDir>/claims/<sessionId>.json` holds it. */
export interface ClaimRecord {
  sessionId: string;
  role: string;
  image: string;
  address: string;
  credentialSha256: string;
  placeholders: Record<string, string>;
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601. */
  expiresAt: string;
  createdBy: string;
  labels: Record<string, string>;
  /** The session's environment, given to every exec (holds the credential: the file is 0600). */
  env: Record<string, string>;
}

const toEnvList = (env: Record<string, string>): string[] => Object.entries(env).map(([k, v]) => `${k}=${v}`);

/** A tiny promise mutex: subnet allocation and gateway setup must not interleave. */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/**
 * The Docker runtime (dockerode). Layout on the engine:
 * - network `airlock-egress` (plain bridge): the gateway container's way out;
 * - container `airlock-gateway`: the egress gateway, admin port published on 127.0.0.1 only;
 * - per session: internal network `airlock-net-<id>` (/29 from the pool, no host address) joined by
 *   the gateway (.2) and the sandbox container `airlock-<id>` (.3).
 * Everything carries `io.airlock.*` labels, from which `list()` recovers sessions after a restart.
 */
export class DockerRuntime implements SandboxRuntime {
  readonly docker: Docker;
  private readonly lock = new Mutex();
  /** PEM bundle written into each sandbox when interception is on (set by ensureGateway). */
  private trustBundle: string | null = null;
  /** Sandbox images with the trust bundle baked in ({@link sandboxImage}), by key: their image id. */
  private readonly trustImages = new Map<string, Promise<string>>();
  /** Unclaimed warm-pool members this object prepared, by session id: their /29. */
  private readonly poolAddresses = new Map<string, SessionSubnet>();
  /** Set once dropping sandboxes' default route is found impossible here ({@link dropDefaultRoute}). */
  private routeDropOff = false;
  /** Claimed warm-pool sandboxes' exec environment (`KEY=value`), by session id; see {@link claim}. */
  private readonly claimEnv = new Map<string, string[]>();
  /**
   * Spare session networks (`runtime.docker.spareNetworks`), made ahead with the gateway joined, by
   * the session id they are named for: `ready` until {@link reserveSessionId} hands the id out, then
   * `reserved` until {@link prepare} binds it (and, once the sandbox started, a refill follows).
   */
  private readonly spare = {
    ready: new Map<string, SessionSubnet>(),
    reserved: new Map<string, SessionSubnet>(),
    /** Sandboxes created in a spare's holder namespace, not yet started. */
    bound: new Set<string>(),
    /** The fill in flight, if any (awaited by {@link close}). */
    filling: null as Promise<void> | null,
    stopped: false,
    swept: false,
    /** Delay before the next fill after a failure (ms): 1 s doubling to 30 s, reset by a success. */
    backoffMs: 0,
    timer: null as NodeJS.Timeout | null,
  };
  /** Docker: a sandbox running before its registration is refused by the gateway (unknown address). */
  readonly registerWhileStarting = true;

  constructor(
    private readonly cfg: Config,
    private readonly warn: (message: string) => void = (m) => process.emitWarning(m),
  ) {
    this.docker = new Docker({ socketPath: cfg.runtime.docker.socketPath });
  }

  /** Fails with a clear message when the engine is not reachable. */
  async ping(): Promise<void> {
    try {
      await this.docker.ping();
    } catch (err) {
      throw new RuntimeError(
        `cannot reach the Docker engine at ${this.cfg.runtime.docker.socketPath} (is dockerd running?)`,
        { cause: err },
      );
    }
  }

  private adminToken(): string {
    const file = path.join(this.cfg.stateDir, 'gateway-admin-token');
    if (existsSync(file)) return readFileSync(file, 'utf8').trim();
    mkdirSync(this.cfg.stateDir, { recursive: true, mode: 0o700 });
    const token = randomBytes(32).toString('base64url');
    writeFileSync(file, token + '\n', { mode: 0o600 });
    return token;
  }

  /**
   * The egress network `airlock-egress`: created when missing, adopted when it matches the config,
   * re-created when it differs and only Airlock's gateway is attached to it (the gateway is then
   * re-created too), refused otherwise — never silently reused (issue 11).
   * @returns the network's gateway address (what `host-gateway` aliases resolve to).
   * @throws RuntimeError naming every difference when the network differs and cannot be re-created
   *   (not made by Airlock, or other containers attached), or when Docker fails.
   */
  private async ensureEgressNetwork(): Promise<string> {
    let info: Docker.NetworkInspectInfo | null = null;
    try {
      info = await this.docker.getNetwork(EGRESS_NETWORK).inspect();
    } catch (err) {
      if (!isNotFound(err)) throw wrap('inspect egress network', err);
    }
    if (info) {
      const differences = egressNetworkDifferences(info, this.cfg.runtime.docker.egressSubnet);
      if (differences.length > 0) {
        const others = Object.values(info.Containers ?? {})
          .map((c) => c.Name)
          .filter((n) => n !== GATEWAY_CONTAINER);
        const what = `network ${EGRESS_NETWORK} differs from the config: ${differences.join('; ')}`;
        if (info.Labels?.[LABEL.managed] !== 'true') {
          throw new RuntimeError(
            `${what}; it was not created by Airlock (label ${LABEL.managed} missing), so it is left alone: ` +
              `remove it (docker network rm ${EGRESS_NETWORK}) or change the config`,
          );
        }
        if (others.length > 0) {
          throw new RuntimeError(
            `${what}; not re-created because containers other than ${GATEWAY_CONTAINER} are attached ` +
              `(${others.join(', ')}): stop them or change the config`,
          );
        }
        this.warn(`${what}: re-creating it (and the gateway container)`);
        try {
          await this.docker.getContainer(GATEWAY_CONTAINER).remove({ force: true });
        } catch (err) {
          if (!isNotFound(err)) throw wrap('remove gateway container', err);
        }
        try {
          await this.docker.getNetwork(EGRESS_NETWORK).remove();
        } catch (err) {
          if (!isNotFound(err)) throw wrap('remove egress network', err);
        }
        info = null;
      }
    }
    if (!info) {
      try {
        await this.docker.createNetwork({
          Name: EGRESS_NETWORK,
          Driver: 'bridge',
          CheckDuplicate: true,
          Labels: { [LABEL.managed]: 'true', [LABEL.kind]: 'egress' },
          ...(this.cfg.runtime.docker.egressSubnet
            ? {
                IPAM: {
                  Driver: 'default',
                  Config: [
                    {
                      Subnet: this.cfg.runtime.docker.egressSubnet,
                      Gateway: firstHost(this.cfg.runtime.docker.egressSubnet),
                    },
                  ],
                },
              }
            : {}),
        });
      } catch (e) {
        throw wrap('create egress network', e);
      }
      info = await this.docker.getNetwork(EGRESS_NETWORK).inspect();
    }
    const gw = info.IPAM?.Config?.[0]?.Gateway;
    if (!gw) throw new RuntimeError(`network ${EGRESS_NETWORK} has no gateway address`);
    return gw;
  }

  /** The gateway process settings for the current config (`host-gateway` resolved). */
  private gatewayServiceConfig(hostGatewayIp: string): GatewayServiceConfig {
    const g = this.cfg.gateway;
    return {
      port: g.port,
      adminPort: GATEWAY_ADMIN_PORT,
      policyDir: '/etc/airlock/policies',
      auditFile: '/var/lib/airlock/audit/audit.jsonl',
      auditStdout: true,
      auditQuery: this.cfg.audit.query,
      auditOnFailure: this.cfg.audit.onFailure,
      hostAliases: Object.fromEntries(
        Object.entries(g.hostAliases).map(([k, v]) => [
          k.toLowerCase(),
          v === 'host-gateway' ? hostGatewayIp : v,
        ]),
      ),
      allowPrivateCidrs: g.allowPrivateCidrs,
      // Sandboxes live on /29s of this pool: none may drive the admin API, even before the
      // control plane has told a restarted gateway which addresses are sessions.
      adminRefuseSources: [this.cfg.runtime.docker.subnetPool],
      connectTimeoutMs: g.connectTimeoutMs,
      headersTimeoutMs: g.headersTimeoutMs,
      bodyTimeoutMs: g.bodyTimeoutMs,
      limits: g.limits,
      ...(g.tls.intercept ? { caDir: '/var/lib/airlock/ca' } : {}),
      ...(g.tls.upstreamCaFile ? { upstreamCaPem: readFileSync(g.tls.upstreamCaFile, 'utf8') } : {}),
      passthrough: g.tls.passthrough,
      upstreams: g.upstreams,
      oauth2RefreshSkewMs: g.oauth2RefreshSkewSeconds * 1000,
      dnsCacheMs: g.dnsCacheSeconds * 1000,
      leafCacheSize: g.tls.leafCacheSize,
      // One process unless configured: more workers only where the config says so (docs/config.md).
      workers: g.workers ?? 1,
      // Approvals (docs/approvals.md): claims go to the control plane over a unix socket mounted
      // into this container only (src/sessions/approvals-server.ts listens on it).
      approvals: {
        url: 'http://airlock-control',
        socketPath: `${GATEWAY_CONTROL_MOUNT}/${CONTROL_SOCKET_NAME}`,
        holdSeconds: this.cfg.approvals.holdSeconds,
        holdRules: this.cfg.approvals.holdRules,
      },
    };
  }

  /**
   * The installation CA (created on first use in `<stateDir>/ca`), readable by the gateway's uid and
   * nobody else; and the trust bundle sandboxes get (system roots + the CA, plus the previous CA
   * during a rotation overlap).
   */
  private async prepareCa(uid: number): Promise<string> {
    const dir = path.join(this.cfg.stateDir, 'ca');
    const ca = await loadOrCreateCa(dir);
    if (uid === 0) {
      chownSync(dir, GATEWAY_UID, GATEWAY_UID);
      for (const f of readdirSync(dir)) chownSync(path.join(dir, f), GATEWAY_UID, GATEWAY_UID);
    }
    const roots = existsSync(SYSTEM_ROOTS)
      ? readFileSync(SYSTEM_ROOTS, 'utf8')
      : tls.rootCertificates.join('\n');
    this.trustBundle = `${roots.trimEnd()}\n${ca.trustPem}`;
    return ca.certPem;
  }

  /** The gateway container (created, re-created or adopted) and the admin API client to drive it. */
  ensureGateway(): Promise<GatewayControl> {
    return this.lock.run(() => this.ensureGatewayLocked());
  }

  private async ensureGatewayLocked(): Promise<GatewayControl> {
    const firewall = await ensureHostFirewall();
    if (firewall) {
      this.warn(
        `host firewall rule for session bridges not installed (${firewall}): isolation relies on ` +
          'inhibit_ipv4 and dropped capabilities only (docs/security.md)',
      );
    }
    const hostGatewayIp = await this.ensureEgressNetwork();
    const token = this.adminToken();
    const creds = gatewayCredentialMounts(this.cfg);
    const serviceConfig = { ...this.gatewayServiceConfig(hostGatewayIp), ...creds.service };
    const auditDir = path.dirname(this.cfg.audit.file);
    mkdirSync(auditDir, { recursive: true });
    const uid = process.getuid?.() ?? GATEWAY_UID;
    const user = uid === 0 ? `${GATEWAY_UID}:${GATEWAY_UID}` : `${uid}:${process.getgid?.() ?? uid}`;
    if (uid === 0) chownSync(auditDir, GATEWAY_UID, GATEWAY_UID);
    const caCert = this.cfg.gateway.tls.intercept ? await this.prepareCa(uid) : null;
    if (this.cfg.gateway.credentialsDir) {
      let problems: string[];
      try {
        problems = credentialsDirWarnings(this.cfg.gateway.credentialsDir, uid === 0 ? GATEWAY_UID : uid);
      } catch (err) {
        throw new RuntimeError(`gateway.credentialsDir: ${(err as Error).message}`, { cause: err });
      }
      for (const p of problems) this.warn(`gateway.credentialsDir: ${p}`);
    }
    for (const name of creds.missing)
      this.warn(`gateway.credentialEnv: ${name} is not set: credentials reading it are unavailable (503)`);
    let imageId: string;
    try {
      imageId = (await this.docker.getImage(this.cfg.gateway.image).inspect()).Id;
    } catch (err) {
      throw new RuntimeError(
        `gateway image ${this.cfg.gateway.image} not found: build it with "airlock images build --offline"`,
        { cause: err },
      );
    }
    const { hash, options } = gatewayContainerSpec({
      cfg: this.cfg,
      imageId,
      serviceConfig,
      token,
      user,
      auditDir,
      caCert,
      credentials: creds,
    });

    const existing = this.docker.getContainer(GATEWAY_CONTAINER);
    let adopt = false;
    try {
      const info = await existing.inspect();
      adopt = info.State.Running && info.Config.Labels?.[LABEL.configHash] === hash;
      if (!adopt) await existing.remove({ force: true });
    } catch (err) {
      if (!isNotFound(err)) throw wrap('inspect gateway container', err);
    }
    if (!adopt) {
      try {
        const c = await this.docker.createContainer(options);
        await c.start();
      } catch (err) {
        throw wrap('start gateway container', err);
      }
    }
    const info = await existing.inspect();
    const port = info.NetworkSettings.Ports[`${GATEWAY_ADMIN_PORT}/tcp`]?.[0]?.HostPort;
    if (!port) throw new RuntimeError('gateway admin port is not published');
    // Rejoin every session network (after a re-creation the gateway is on none of them).
    const joined = new Set(Object.keys(info.NetworkSettings.Networks));
    let nets = await this.docker.listNetworks({
      filters: { label: [`${LABEL.managed}=true`, `${LABEL.kind}=session`] },
    });
    if (!this.spare.swept) {
      nets = await this.sweepSpareNetworks(nets);
      this.spare.swept = true;
    }
    for (const n of nets) {
      if (joined.has(n.Name)) continue;
      const subnet = n.IPAM?.Config?.[0]?.Subnet;
      if (!subnet) continue;
      await this.docker
        .getNetwork(n.Id)
        .connect({
          Container: GATEWAY_CONTAINER,
          EndpointConfig: { IPAMConfig: { IPv4Address: subnetAddresses(subnet).gateway } },
        })
        .catch((err: unknown) => {
          throw wrap(`connect gateway to ${n.Name}`, err);
        });
    }
    await this.sweepClaims();
    this.fillSpareNetworks();
    // The default sandbox image with the trust bundle, built ahead of the first create (background;
    // a failure is the first create's to report).
    void this.sandboxImage(this.cfg.runtime.sandboxImage).catch(() => undefined);
    // Follows the port: Docker publishes a new one when the restart policy restarts the container.
    return new DockerGatewayControl(this.docker, token, `http://127.0.0.1:${port}`);
  }

  /**
   * Removes spare session networks a previous control plane left (label `io.airlock.spare`, no
   * sandbox container on them): their ids were never handed to a session. Runs once, at the first
   * gateway set-up, before any create. @returns the session networks that are left.
   */
  private async sweepSpareNetworks(nets: Docker.NetworkInspectInfo[]): Promise<Docker.NetworkInspectInfo[]> {
    const spares = nets.filter((n) => n.Labels?.[LABEL.spare] === 'true');
    if (spares.length === 0) return nets;
    let containers: Docker.ContainerInfo[];
    try {
      containers = await this.docker.listContainers({
        all: true,
        filters: { label: [`${LABEL.managed}=true`] },
      });
    } catch (err) {
      throw wrap('list sandboxes', err);
    }
    const used = new Set(
      containers.filter((c) => c.Labels[LABEL.kind] === 'sandbox').map((c) => c.Labels[LABEL.session]),
    );
    const gone = new Set<string>();
    for (const n of spares) {
      const id = n.Labels?.[LABEL.session];
      if (!id || used.has(id)) continue;
      await this.removeNetwork(id).catch((err: unknown) =>
        this.warn(`cannot remove the spare network of ${id}: ${(err as Error).message}`),
      );
      gone.add(n.Name);
    }
    return nets.filter((n) => !gone.has(n.Name));
  }

  /**
   * The id of a ready spare session network (`runtime.docker.spareNetworks`) for the next cold
   * session, or null when none is ready. Handed out once: the network is bound by {@link prepare}
   * with that id, removed with the session, never reused.
   */
  reserveSessionId(): string | null {
    const next = this.spare.ready.entries().next();
    if (next.done) return null;
    const [id, sub] = next.value;
    this.spare.ready.delete(id);
    this.spare.reserved.set(id, sub);
    return id;
  }

  /** Spare session networks ready to be reserved now (`runtime.docker.spareNetworks` at most). */
  spareNetworksReady(): number {
    return this.spare.ready.size;
  }

  /**
   * Makes spare session networks, one at a time, until `runtime.docker.spareNetworks` are ready or
   * handed out and not yet started. Background work: a failure removes what it made, warns, and
   * retries after 1 s (doubling to 30 s). Never throws.
   */
  private fillSpareNetworks(): void {
    const want = this.cfg.runtime.docker.spareNetworks;
    const sp = this.spare;
    if (want === 0 || sp.filling || sp.stopped || sp.timer || sp.ready.size >= want) return;
    const id = 's-' + randomBytes(8).toString('hex');
    sp.filling = this.createSessionNetwork(id, true)
      .then(async (sub) => {
        try {
          await this.joinGateway(id, sub);
          await this.startNetnsHolder(id, sub);
        } catch (err) {
          await this.lock.run(() => this.removeNetwork(id)).catch(() => undefined);
          throw err;
        }
        if (sp.stopped) {
          await this.lock.run(() => this.removeNetwork(id)).catch(() => undefined);
          return;
        }
        sp.ready.set(id, sub);
        sp.backoffMs = 0;
      })
      .catch((err: unknown) => {
        sp.backoffMs = Math.min(30_000, Math.max(1_000, sp.backoffMs * 2));
        this.warn(
          `spare session network not made (${(err as Error).message}); cold creates make their own, ` +
            `next try in ${sp.backoffMs / 1000} s`,
        );
        sp.timer = setTimeout(() => {
          sp.timer = null;
          this.fillSpareNetworks();
        }, sp.backoffMs);
        sp.timer.unref();
      })
      .finally(() => {
        sp.filling = null;
        this.fillSpareNetworks();
      });
  }

  /**
   * Starts the network holder of a spare network: a container of the gateway image on the /29 at
   * .3 that only sleeps (no capability, no privilege escalation, read-only root, nobody, 16 MiB, 8
   * processes, no environment, no credential), whose default route is then dropped. The session's
   * sandbox joins its network namespace (`NetworkMode: container:`), which Docker starts in about
   * a third of the time of a sandbox with a network of its own (no namespace, veth or DNS resolver
   * to set up: bench/README.md). @throws the engine's error (the caller removes the network)
   */
  private async startNetnsHolder(sessionId: string, sub: SessionSubnet): Promise<void> {
    const netName = sessionNetworkName(sessionId);
    const holder = await this.docker.createContainer({
      name: netnsHolderName(sessionId),
      Image: this.cfg.gateway.image,
      Entrypoint: ['sleep'],
      Cmd: ['infinity'],
      User: '65534:65534',
      Labels: {
        [LABEL.managed]: 'true',
        [LABEL.kind]: 'netns',
        [LABEL.session]: sessionId,
        [LABEL.spare]: 'true',
      },
      HostConfig: {
        NetworkMode: netName,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        ReadonlyRootfs: true,
        NanoCpus: 0.05e9,
        Memory: 16 * 1024 * 1024,
        MemorySwap: 16 * 1024 * 1024,
        PidsLimit: 8,
        Init: true,
        IpcMode: 'private',
      },
      NetworkingConfig: { EndpointsConfig: { [netName]: { IPAMConfig: { IPv4Address: sub.sandbox } } } },
    });
    await holder.start();
    await this.dropDefaultRoute(holder);
  }

  /** Whether a spare's network holder runs (false when it is stopped, gone, or the engine fails). */
  private async holderRunning(sessionId: string): Promise<boolean> {
    try {
      return (await this.docker.getContainer(netnsHolderName(sessionId)).inspect()).State.Running;
    } catch {
      return false;
    }
  }

  /**
   * Deletes claim records whose sandbox is gone (removed behind Airlock's back, or while the control
   * plane was down): their credentials open nothing, but are not kept. Runs with the gateway set-up,
   * before any claim of this process.
   */
  private async sweepClaims(): Promise<void> {
    const dir = claimsDir(this.cfg.stateDir);
    if (!existsSync(dir)) return;
    let containers: Docker.ContainerInfo[];
    try {
      containers = await this.docker.listContainers({
        all: true,
        filters: { label: [`${LABEL.managed}=true`, `${LABEL.pooled}=true`] },
      });
    } catch (err) {
      throw wrap('list warm-pool sandboxes', err);
    }
    const live = new Set(containers.map((c) => c.Labels[LABEL.session]));
    for (const f of readdirSync(dir)) {
      const id = f.replace(/\.json$/, '');
      if (f.endsWith('.tmp') || !live.has(id)) rmSync(path.join(dir, f), { force: true });
    }
  }

  prepare(spec: SandboxSpec): Promise<SandboxInfo> {
    const labels: Record<string, string> = {
      [LABEL.managed]: 'true',
      [LABEL.session]: spec.sessionId,
      [LABEL.role]: spec.role,
      [LABEL.credentialSha256]: spec.credentialSha256,
      [LABEL.createdAt]: spec.createdAt.toISOString(),
      [LABEL.expiresAt]: spec.expiresAt.toISOString(),
      [LABEL.createdBy]: spec.createdBy,
    };
    if (spec.placeholders && Object.keys(spec.placeholders).length > 0)
      labels[LABEL.placeholders] = JSON.stringify(spec.placeholders);
    for (const [k, v] of Object.entries(spec.labels)) labels[LABEL.userPrefix + k] = v;
    return this.createSandbox(spec.sessionId, spec.image, labels, (gateway) =>
      this.sessionEnv(spec, gateway),
    ).then((sub) => ({
      sessionId: spec.sessionId,
      role: spec.role,
      image: spec.image,
      address: sub.sandbox,
      credentialSha256: spec.credentialSha256,
      ...(spec.placeholders ? { placeholders: spec.placeholders } : {}),
      createdAt: spec.createdAt,
      expiresAt: spec.expiresAt,
      createdBy: spec.createdBy,
      labels: spec.labels,
      running: false,
    }));
  }

  /**
   * A warm-pool sandbox: network and container as for a session, labelled `io.airlock.pooled`, with
   * no role, credential, expiry or proxy settings (its container environment holds only the trust
   * bundle's variables and `AIRLOCK_SESSION_ID`); see {@link claim}. Not started.
   * @throws RuntimeError (nothing is left behind)
   */
  async preparePooled(spec: PooledSandboxSpec): Promise<SandboxInfo> {
    const labels = {
      [LABEL.managed]: 'true',
      [LABEL.session]: spec.sessionId,
      [LABEL.pooled]: 'true',
    };
    const sub = await this.createSandbox(spec.sessionId, spec.image, labels, () =>
      this.baseEnv(spec.sessionId),
    );
    this.poolAddresses.set(spec.sessionId, sub);
    const address = sub.sandbox;
    const epoch = new Date(0);
    return {
      sessionId: spec.sessionId,
      role: '',
      image: spec.image,
      address,
      credentialSha256: '',
      createdAt: epoch,
      expiresAt: epoch,
      createdBy: '',
      labels: {},
      running: false,
      pooled: true,
    };
  }

  /**
   * Claims a started warm-pool sandbox for its session. Docker cannot relabel a container and the
   * container's environment is fixed at creation, so the session lives in a claim record,
   * `<stateDir>/claims/<sessionId>.json` (mode 0600, written to a temporary file and renamed, so a
   * crash leaves the old state or the new one), which `list()` reads back after a restart, and its
   * environment (the proxy URL with the credential, `spec.env`) is given to every `exec` (Docker's
   * per-exec `Env`). Until this returns the sandbox has no credential. Only members prepared by this
   * runtime object can be claimed (a restarted control plane removes unclaimed members).
   * @throws RuntimeError when the sandbox is not an unclaimed pool member, or the record cannot be
   *   written
   */
  async claim(spec: SandboxSpec): Promise<SandboxInfo> {
    const sub = this.poolAddresses.get(spec.sessionId);
    if (sub === undefined)
      throw new RuntimeError(`sandbox ${spec.sessionId} is not an unclaimed warm-pool member`);
    this.poolAddresses.delete(spec.sessionId);
    const address = sub.sandbox;
    const env = this.sessionEnv(spec, sub.gateway);
    const record: ClaimRecord = {
      sessionId: spec.sessionId,
      role: spec.role,
      image: spec.image,
      address,
      credentialSha256: spec.credentialSha256,
      placeholders: spec.placeholders ?? {},
      createdAt: spec.createdAt.toISOString(),
      expiresAt: spec.expiresAt.toISOString(),
      createdBy: spec.createdBy,
      labels: spec.labels,
      env,
    };
    const dir = claimsDir(this.cfg.stateDir);
    const file = path.join(dir, `${spec.sessionId}.json`);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
      await writeFile(tmp, JSON.stringify(record), { mode: 0o600 });
      await rename(tmp, file);
    } catch (err) {
      throw new RuntimeError(
        `claim of sandbox ${spec.sessionId}: cannot write ${file}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    this.claimEnv.set(spec.sessionId, toEnvList(env));
    return {
      sessionId: spec.sessionId,
      role: spec.role,
      image: spec.image,
      address,
      credentialSha256: spec.credentialSha256,
      ...(spec.placeholders ? { placeholders: spec.placeholders } : {}),
      createdAt: spec.createdAt,
      expiresAt: spec.expiresAt,
      createdBy: spec.createdBy,
      labels: spec.labels,
      running: true,
      pooled: true,
    };
  }

  /** Variables every sandbox gets whatever its session: the trust bundle's, and its session id. */
  private baseEnv(sessionId: string): Record<string, string> {
    return {
      ...(this.cfg.gateway.tls.intercept
        ? {
            SSL_CERT_FILE: SANDBOX_BUNDLE,
            NODE_EXTRA_CA_CERTS: SANDBOX_BUNDLE,
            REQUESTS_CA_BUNDLE: SANDBOX_BUNDLE,
            CURL_CA_BUNDLE: SANDBOX_BUNDLE,
            GIT_SSL_CAINFO: SANDBOX_BUNDLE,
            // Node's fetch and http honour HTTP(S)_PROXY only when asked (Node >= 24.5).
            NODE_USE_ENV_PROXY: '1',
          }
        : {}),
      AIRLOCK_SESSION_ID: sessionId,
    };
  }

  /** A session's sandbox environment: `spec.env`, then the proxy URL with its credential, then {@link baseEnv}. */
  private sessionEnv(spec: SandboxSpec, gatewayAddress: string): Record<string, string> {
    const proxyUrl = `http://${encodeURIComponent(spec.sessionId)}:${encodeURIComponent(spec.credential)}@${gatewayAddress}:${this.cfg.gateway.port}`;
    return {
      ...spec.env,
      HTTP_PROXY: proxyUrl,
      HTTPS_PROXY: proxyUrl,
      http_proxy: proxyUrl,
      https_proxy: proxyUrl,
      NO_PROXY: '',
      no_proxy: '',
      ...this.baseEnv(spec.sessionId),
    };
  }

  /**
   * Network (a /29 from the pool, allocated under the lock) and container of one sandbox, not
   * started: the gateway joins the network while the container is created (both only need the
   * network). @returns the sandbox's /29. @throws RuntimeError (nothing is left behind)
   */
  private async createSandbox(
    sessionId: string,
    image: string,
    labels: Record<string, string>,
    env: (gatewayAddress: string) => Record<string, string>,
  ): Promise<SessionSubnet> {
    const netName = sessionNetworkName(sessionId);
    // A spare network reserved for this id is ready (gateway joined); else one is made now.
    let spare = this.spare.reserved.get(sessionId);
    this.spare.reserved.delete(sessionId);
    if (spare && !(await this.holderRunning(sessionId))) {
      // Its holder was stopped behind Airlock's back (engine restart, docker stop): not used.
      this.warn(`spare network of ${sessionId} has no running holder: made anew for this session`);
      await this.lock.run(() => this.removeNetwork(sessionId)).catch(() => undefined);
      spare = undefined;
    }
    const sub = spare ?? (await this.createSessionNetwork(sessionId, false));
    const r = this.cfg.runtime.resources;
    try {
      const joined = spare ? Promise.resolve() : this.joinGateway(sessionId, sub);
      // With interception, the image with the trust bundle baked in (built once per image and bundle).
      const create = (imageId: string): Promise<Docker.Container> =>
        this.docker.createContainer({
          name: sandboxContainerName(sessionId),
          Image: imageId,
          Env: toEnvList(env(sub.gateway)),
          Labels: { ...labels, [LABEL.kind]: 'sandbox', [LABEL.image]: image, [LABEL.address]: sub.sandbox },
          HostConfig: {
            // On a spare: its holder's network namespace (on the /29 at .3, default route dropped).
            NetworkMode: spare ? `container:${netnsHolderName(sessionId)}` : netName,
            CapDrop: ['ALL'],
            SecurityOpt: ['no-new-privileges'],
            Privileged: false,
            NanoCpus: Math.round(r.cpus * 1e9),
            Memory: r.memoryMiB * 1024 * 1024,
            MemorySwap: r.memoryMiB * 1024 * 1024,
            PidsLimit: r.pids,
            Init: true,
            Binds: [],
            IpcMode: 'private',
          },
          ...(spare
            ? {}
            : {
                NetworkingConfig: {
                  EndpointsConfig: { [netName]: { IPAMConfig: { IPv4Address: sub.sandbox } } },
                },
              }),
        });
      const created = this.sandboxImage(image).then((imageId) =>
        create(imageId).catch(async (err: unknown) => {
          // A trust image removed behind Airlock's back (docker rmi, prune): built again, once.
          if (!isNotFound(err) || imageId === image) throw err;
          this.trustImages.clear();
          return create(await this.sandboxImage(image));
        }),
      );
      if (spare) this.spare.bound.add(sessionId);
      // Both settle before anything is undone (a half-done twin would outlive the cleanup).
      const [j, c] = await Promise.allSettled([joined, created]);
      if (j.status === 'rejected') throw j.reason;
      if (c.status === 'rejected') throw c.reason;
    } catch (err) {
      await this.lock.run(() => this.removeLocked(sessionId, true)).catch(() => undefined);
      if (spare) this.fillSpareNetworks();
      if (isNotFound(err) && (err as Error).message.includes('image')) {
        throw new RuntimeError(`sandbox image ${image} not found`, { cause: err });
      }
      throw wrap(`create sandbox for session ${sessionId}`, err);
    }
    return sub;
  }

  /**
   * A session network (a /29 from the pool, allocated and created under the lock), the gateway not
   * yet joined. `spare`: made ahead of its session (label `io.airlock.spare`).
   * @throws RuntimeError (pool exhausted, engine failure; nothing is left behind)
   */
  private createSessionNetwork(sessionId: string, spare: boolean): Promise<SessionSubnet> {
    return this.lock.run(async () => {
      const nets = await this.docker
        .listNetworks({ filters: { label: [`${LABEL.managed}=true`, `${LABEL.kind}=session`] } })
        .catch((err: unknown) => {
          throw wrap('list networks', err);
        });
      const used = new Set(nets.map((n) => n.IPAM?.Config?.[0]?.Subnet).filter((s): s is string => !!s));
      const sub = allocateSubnet(this.cfg.runtime.docker.subnetPool, used);
      if (!sub) throw new RuntimeError(`subnet pool ${this.cfg.runtime.docker.subnetPool} is exhausted`);
      try {
        await this.docker.createNetwork({
          Name: sessionNetworkName(sessionId),
          Driver: 'bridge',
          Internal: true,
          CheckDuplicate: true,
          IPAM: { Driver: 'default', Config: [{ Subnet: sub.subnet, Gateway: sub.bridge }] },
          Options: sessionNetworkOptions(sessionId),
          Labels: {
            [LABEL.managed]: 'true',
            [LABEL.kind]: 'session',
            [LABEL.session]: sessionId,
            ...(spare ? { [LABEL.spare]: 'true' } : {}),
          },
        });
      } catch (err) {
        throw wrap(`create network for session ${sessionId}`, err);
      }
      return sub;
    });
  }

  /** Joins the gateway to a session's network at the /29's .2. @throws the engine's error */
  private async joinGateway(sessionId: string, sub: SessionSubnet): Promise<void> {
    await this.docker.getNetwork(sessionNetworkName(sessionId)).connect({
      Container: GATEWAY_CONTAINER,
      EndpointConfig: { IPAMConfig: { IPv4Address: sub.gateway } },
    });
  }

  /**
   * The image a sandbox of `image` is created from (an image id): without interception `image`
   * itself; with it, `image` plus one layer holding the trust bundle ({@link installTrust}), tagged
   * `airlock-trust:<24 hex of sha256(image id, bundle)>` — built once per image build and bundle
   * (one container create, one archive upload, one commit: ~0.3 s) and reused by every later
   * sandbox of that image, so no create pays the archive upload (~80 ms here) and no sandbox gets a
   * host mount. A rebuilt image or a new bundle (CA rotation) gives a new key, so a new image.
   * @throws the engine's error (404 when `image` does not exist)
   */
  private async sandboxImage(image: string): Promise<string> {
    const bundle = this.trustBundle;
    if (!bundle) return image;
    const baseId = (await this.docker.getImage(image).inspect()).Id;
    const key = createHash('sha256').update(baseId).update('\0').update(bundle).digest('hex').slice(0, 24);
    let built = this.trustImages.get(key);
    if (!built) {
      built = this.buildTrustImage(baseId, key, bundle);
      this.trustImages.set(key, built);
      // A failed build is tried again by the next create.
      built.catch(() => this.trustImages.delete(key));
    }
    return built;
  }

  /** `airlock-trust:<key>` (found, or built from `baseId`): its image id. @throws the engine's error */
  private async buildTrustImage(baseId: string, key: string, bundle: string): Promise<string> {
    try {
      return (await this.docker.getImage(`${TRUST_IMAGE_REPO}:${key}`).inspect()).Id;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const c = await this.docker.createContainer({
      name: `airlock-trust-build-${key}-${randomBytes(3).toString('hex')}`,
      Image: baseId,
      Labels: { [LABEL.managed]: 'true', [LABEL.kind]: 'trust-build' },
      HostConfig: { NetworkMode: 'none' },
    });
    try {
      await this.installTrust(c, bundle);
      const res = (await c.commit({
        repo: TRUST_IMAGE_REPO,
        tag: key,
        comment: 'Airlock sandbox trust bundle',
      })) as { Id: string };
      return res.Id;
    } finally {
      await c.remove({ force: true }).catch(() => undefined);
    }
  }

  /**
   * Writes the trust bundle into a created (never started) container, without a mount: as
   * `/etc/airlock/ca-bundle.pem` and over the system store `/etc/ssl/certs/ca-certificates.crt`,
   * root-owned, mode 0444 (the sandbox user, without capabilities, cannot change them).
   */
  private async installTrust(container: Docker.Container, bundle: string): Promise<void> {
    const pack = tar.pack();
    // The engine consumes the archive while it is written (entries wait for room in the stream).
    const upload = container.putArchive(pack as unknown as NodeJS.ReadableStream, { path: '/' });
    const dirEntry = { type: 'directory', mode: 0o755, uid: 0, gid: 0 } as const;
    const fileEntry = { type: 'file', mode: 0o444, uid: 0, gid: 0 } as const;
    pack.entry({ ...dirEntry, name: 'etc/airlock' });
    pack.entry({ ...fileEntry, name: 'etc/airlock/ca-bundle.pem' }, bundle);
    pack.entry({ ...dirEntry, name: 'etc/ssl/certs' });
    pack.entry({ ...fileEntry, name: 'etc/ssl/certs/ca-certificates.crt' }, bundle);
    pack.finalize();
    await upload;
  }

  async start(sessionId: string): Promise<void> {
    const container = this.docker.getContainer(sandboxContainerName(sessionId));
    try {
      await container.start();
    } catch (err) {
      throw wrap(`start sandbox ${sessionId}`, err);
    } finally {
      // A spare network was taken: made again now, so the fill does not slow this start.
      this.fillSpareNetworks();
    }
    // In a spare's holder namespace the route was dropped when the spare was made.
    if (this.spare.bound.delete(sessionId)) return;
    await this.dropDefaultRoute(container);
  }

  /**
   * Deletes the IPv4 default route Docker gives a sandbox on its internal network (via the /29's .1,
   * an address nobody holds: `inhibit_ipv4`), from the host (`nsenter -n ip route del default`; the
   * sandbox holds no capability to do it, or to put it back). The sandbox then reaches only its
   * /29 — the gateway at .2 — and a connect anywhere else fails at once (network unreachable)
   * instead of after ~3 s of unanswered ARP: isolation is unchanged (the host firewall rule and
   * `inhibit_ipv4` still hold), and the isolation self-test's probes to this machine's addresses
   * end at once instead of at their 500 ms deadline. Needs root, `nsenter` (util-linux) and `ip`
   * (iproute2); without them a warning is given once and sandboxes keep the route.
   */
  private async dropDefaultRoute(container: Docker.Container): Promise<void> {
    if (this.routeDropOff) return;
    if (process.getuid?.() !== 0) {
      this.routeDropOff = true;
      this.warn(
        'cannot drop the default route of sandboxes (not running as root): isolation is unchanged, ' +
          'the isolation self-test takes ~0.5 s longer',
      );
      return;
    }
    let pid: number;
    try {
      pid = (await container.inspect()).State.Pid;
    } catch (err) {
      throw wrap(`inspect sandbox ${container.id}`, err);
    }
    try {
      await promisify(execFile)('nsenter', ['-t', String(pid), '-n', 'ip', '-4', 'route', 'del', 'default']);
    } catch (err) {
      const stderr = String((err as { stderr?: string }).stderr ?? '');
      if (/No such process/.test(stderr)) return; // no default route: nothing to drop
      this.routeDropOff = true;
      this.warn(
        `cannot drop the default route of sandboxes (${stderr.trim() || (err as Error).message}): ` +
          'isolation is unchanged, the isolation self-test takes ~0.5 s longer (install util-linux and iproute2)',
      );
    }
  }

  /**
   * The isolation self-test's targets, from one inspect of the gateway container: its address on the
   * session's network (proxy must connect; admin API must refuse the sandbox), its address on
   * `airlock-egress`, and on one other session network if there is one (must not connect).
   * @throws RuntimeError when the gateway is not on the session's network
   */
  async isolationTargets(sessionId: string): Promise<IsolationTargets> {
    let nets: Record<string, { IPAddress?: string }>;
    try {
      nets = (await this.docker.getContainer(GATEWAY_CONTAINER).inspect()).NetworkSettings.Networks;
    } catch (err) {
      throw wrap('inspect gateway container', err);
    }
    const own = nets[sessionNetworkName(sessionId)]?.IPAddress;
    if (!own) throw new RuntimeError(`the gateway is not on the network of session ${sessionId}`);
    const port = this.cfg.gateway.port;
    const otherNetworks: IsolationTargets['otherNetworks'] = [];
    const egress = nets[EGRESS_NETWORK]?.IPAddress;
    if (egress) otherNetworks.push({ name: `gateway on ${EGRESS_NETWORK}`, host: egress, port });
    const other = Object.entries(nets).find(
      ([name, n]) => name !== EGRESS_NETWORK && name !== sessionNetworkName(sessionId) && n.IPAddress,
    );
    if (other) otherNetworks.push({ name: `gateway on ${other[0]}`, host: other[1].IPAddress!, port });
    return {
      gateway: { host: own, port },
      admin: [{ host: own, port: GATEWAY_ADMIN_PORT }],
      otherNetworks,
    };
  }

  async exec(
    sessionId: string,
    command: string[],
    timeoutMs: number,
    onOutput?: (stream: 'stdout' | 'stderr', data: string) => void,
  ): Promise<ExecResult> {
    const container = this.docker.getContainer(sandboxContainerName(sessionId));
    const env = this.claimEnv.get(sessionId);
    let exec: Docker.Exec;
    let stream: NodeJS.ReadWriteStream;
    try {
      exec = await container.exec({
        Cmd: command,
        ...(env ? { Env: env } : {}),
        AttachStdout: true,
        AttachStderr: true,
        AttachStdin: false,
      });
      stream = await exec.start({ hijack: true, stdin: false });
    } catch (err) {
      throw wrap(`exec in ${sessionId}`, err);
    }
    const out = new Collector(onOutput && ((s) => onOutput('stdout', s)));
    const errOut = new Collector(onOutput && ((s) => onOutput('stderr', s)));
    this.docker.modem.demuxStream(stream, out.stream, errOut.stream);
    const finished = new Promise<void>((resolve, reject) => {
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', reject);
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ExecTimeoutError(timeoutMs)), timeoutMs);
    });
    try {
      await Promise.race([finished, timeout]);
    } catch (err) {
      (stream as unknown as { destroy(): void }).destroy();
      if (err instanceof ExecTimeoutError) throw err;
      throw wrap(`exec in ${sessionId}`, err);
    } finally {
      clearTimeout(timer);
    }
    const info = await exec.inspect();
    return { exitCode: info.ExitCode ?? -1, stdout: out.text(), stderr: errOut.text() };
  }

  remove(sessionId: string): Promise<void> {
    return this.lock.run(() => this.removeLocked(sessionId, true));
  }

  private async removeLocked(sessionId: string, withNetwork: boolean): Promise<void> {
    try {
      await this.docker.getContainer(sandboxContainerName(sessionId)).remove({ force: true, v: true });
    } catch (err) {
      if (!isNotFound(err)) throw wrap(`remove sandbox ${sessionId}`, err);
    }
    // A removed sandbox is never claimed again, nor its session recovered.
    this.poolAddresses.delete(sessionId);
    this.claimEnv.delete(sessionId);
    rmSync(path.join(claimsDir(this.cfg.stateDir), `${sessionId}.json`), { force: true });
    this.spare.reserved.delete(sessionId);
    if (!withNetwork) return;
    await this.removeNetwork(sessionId);
  }

  /** Disconnects the gateway from a session's network and removes it (gone already: nothing). */
  private async removeNetwork(sessionId: string): Promise<void> {
    this.spare.bound.delete(sessionId);
    try {
      await this.docker.getContainer(netnsHolderName(sessionId)).remove({ force: true });
    } catch (err) {
      if (!isNotFound(err)) throw wrap(`remove network holder of ${sessionId}`, err);
    }
    const net = this.docker.getNetwork(sessionNetworkName(sessionId));
    try {
      await net.disconnect({ Container: GATEWAY_CONTAINER, Force: true });
    } catch (err) {
      // not connected / gateway gone: nothing to undo
      void err;
    }
    try {
      await net.remove();
    } catch (err) {
      if (!isNotFound(err)) throw wrap(`remove network of ${sessionId}`, err);
    }
  }

  async list(): Promise<SandboxInfo[]> {
    let containers: Docker.ContainerInfo[];
    try {
      containers = await this.docker.listContainers({
        all: true,
        filters: { label: [`${LABEL.managed}=true`, `${LABEL.kind}=sandbox`] },
      });
    } catch (err) {
      throw wrap('list sandboxes', err);
    }
    const out: SandboxInfo[] = [];
    for (const c of containers) {
      const l = c.Labels;
      const id = l[LABEL.session];
      if (!id) continue;
      if (l[LABEL.pooled] === 'true') {
        out.push(this.pooledInfo(id, c));
        continue;
      }
      const net = c.NetworkSettings?.Networks?.[sessionNetworkName(id)];
      const userLabels: Record<string, string> = {};
      for (const [k, v] of Object.entries(l))
        if (k.startsWith(LABEL.userPrefix)) userLabels[k.slice(LABEL.userPrefix.length)] = v;
      out.push({
        sessionId: id,
        role: l[LABEL.role] ?? '',
        image: l[LABEL.image] ?? c.Image,
        address: net?.IPAddress || net?.IPAMConfig?.IPv4Address || l[LABEL.address] || '',
        credentialSha256: l[LABEL.credentialSha256] ?? '',
        placeholders: parsePlaceholders(l[LABEL.placeholders]),
        createdAt: new Date(l[LABEL.createdAt] ?? 0),
        expiresAt: new Date(l[LABEL.expiresAt] ?? 0),
        createdBy: l[LABEL.createdBy] ?? '',
        labels: userLabels,
        running: c.State === 'running',
      });
    }
    return out;
  }

  /**
   * A warm-pool sandbox as `list()` reports it: its claim record's session when it has one (the
   * exec environment is taken back too), else an unclaimed member (no role, no credential digest,
   * expired), which a starting control plane removes.
   */
  private pooledInfo(id: string, c: Docker.ContainerInfo): SandboxInfo {
    const running = c.State === 'running';
    let rec: ClaimRecord | null;
    try {
      rec = JSON.parse(
        readFileSync(path.join(claimsDir(this.cfg.stateDir), `${id}.json`), 'utf8'),
      ) as ClaimRecord;
    } catch {
      rec = null; // no record (unclaimed) or unreadable: not a session
    }
    if (!rec || rec.sessionId !== id) {
      const epoch = new Date(0);
      return {
        sessionId: id,
        role: '',
        image: c.Labels[LABEL.image] ?? c.Image,
        address: '',
        credentialSha256: '',
        createdAt: epoch,
        expiresAt: epoch,
        createdBy: '',
        labels: {},
        running,
        pooled: true,
      };
    }
    if (!this.claimEnv.has(id)) this.claimEnv.set(id, toEnvList(rec.env));
    return {
      sessionId: id,
      role: rec.role,
      image: rec.image,
      address: rec.address,
      credentialSha256: rec.credentialSha256,
      ...(Object.keys(rec.placeholders).length > 0 ? { placeholders: rec.placeholders } : {}),
      createdAt: new Date(rec.createdAt),
      expiresAt: new Date(rec.expiresAt),
      createdBy: rec.createdBy,
      labels: rec.labels,
      running,
      pooled: true,
    };
  }

  /**
   * Stops making spare networks and removes the ready ones (a next control plane would sweep them
   * anyway). dockerode keeps no pooled connections that need closing.
   */
  async close(): Promise<void> {
    const sp = this.spare;
    sp.stopped = true;
    if (sp.timer) clearTimeout(sp.timer);
    sp.timer = null;
    // A fill in flight sees `stopped` and removes its network.
    await sp.filling;
    const ids = [...sp.ready.keys()];
    sp.ready.clear();
    for (const id of ids) await this.lock.run(() => this.removeNetwork(id)).catch(() => undefined);
  }
}

/** What {@link gatewayContainerSpec} builds the gateway container from. */
export interface GatewayContainerInput {
  cfg: Config;
  /** The gateway image's id (a rebuilt image re-creates the container). */
  imageId: string;
  serviceConfig: GatewayServiceConfig;
  token: string;
  /** `uid:gid` the gateway runs as. */
  user: string;
  auditDir: string;
  /** The CA certificate when interception is on (the CA directory is mounted), else null. */
  caCert: string | null;
  credentials: GatewayCredentialMounts;
}

/**
 * How an existing egress network differs from what the config asks for: labels (made by Airlock, kind
 * egress), driver `bridge`, not internal, and the subnet `runtime.docker.egressSubnet` (when set).
 * @returns one sentence per difference (`subnet 172.18.0.0/16, config runtime.docker.egressSubnet
 *   10.214.0.0/24`); empty when the network can be adopted.
 */
export function egressNetworkDifferences(
  info: Pick<Docker.NetworkInspectInfo, 'Driver' | 'Internal' | 'IPAM' | 'Labels'>,
  egressSubnet: string | undefined,
): string[] {
  const out: string[] = [];
  const labels = info.Labels ?? {};
  if (labels[LABEL.managed] !== 'true')
    out.push(`label ${LABEL.managed} is ${labels[LABEL.managed] ?? 'missing'}, expected true`);
  if (labels[LABEL.kind] !== 'egress')
    out.push(`label ${LABEL.kind} is ${labels[LABEL.kind] ?? 'missing'}, expected egress`);
  if (info.Driver !== 'bridge') out.push(`driver ${info.Driver}, expected bridge`);
  if (info.Internal) out.push('internal (no way out), expected a routed bridge');
  const subnets = (info.IPAM?.Config ?? []).map((c) => c.Subnet).filter((s): s is string => !!s);
  if (egressSubnet && !(subnets.length === 1 && subnets[0] === egressSubnet)) {
    out.push(`subnet ${subnets.join(', ') || 'none'}, config runtime.docker.egressSubnet ${egressSubnet}`);
  }
  return out;
}

/**
 * The gateway container's create options and its config hash (label `io.airlock.config-hash`): a
 * running gateway whose label equals the hash is adopted, any other is re-created. The hash covers
 * the image, the process settings, binds (the credentials directory included), user, admin token, CA
 * and the passed credential variables by their value versions — never a value in clear.
 */
export function gatewayContainerSpec(input: GatewayContainerInput): {
  hash: string;
  options: Docker.ContainerCreateOptions;
} {
  const { cfg, imageId, serviceConfig, token, user, auditDir, caCert, credentials } = input;
  const binds = [
    `${cfg.policy.dir}:/etc/airlock/policies:ro`,
    `${auditDir}:/var/lib/airlock/audit`,
    `${controlSocketDir(cfg.stateDir)}:${GATEWAY_CONTROL_MOUNT}`,
  ];
  if (caCert) binds.push(`${path.join(cfg.stateDir, 'ca')}:/var/lib/airlock/ca:ro`);
  binds.push(...credentials.binds);
  const hash = createHash('sha256')
    .update(
      JSON.stringify({
        imageId,
        serviceConfig,
        binds,
        user,
        token,
        caCert,
        ...(credentials.binds.length > 0 || credentials.fingerprint.env.length > 0
          ? { credentials: credentials.fingerprint }
          : {}),
      }),
    )
    .digest('hex')
    .slice(0, 16);
  return {
    hash,
    options: {
      name: GATEWAY_CONTAINER,
      Image: cfg.gateway.image,
      User: user,
      Env: [
        `AIRLOCK_GATEWAY_CONFIG=${JSON.stringify(serviceConfig)}`,
        `AIRLOCK_ADMIN_TOKEN=${token}`,
        ...credentials.env,
      ],
      Labels: { [LABEL.managed]: 'true', [LABEL.kind]: 'gateway', [LABEL.configHash]: hash },
      ExposedPorts: { [`${GATEWAY_ADMIN_PORT}/tcp`]: {} },
      HostConfig: {
        NetworkMode: EGRESS_NETWORK,
        PortBindings: { [`${GATEWAY_ADMIN_PORT}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '' }] },
        Binds: binds,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        ReadonlyRootfs: true,
        Tmpfs: { '/tmp': 'rw,noexec,nosuid,size=16m' },
        RestartPolicy: { Name: 'unless-stopped' },
        Init: true,
      },
    },
  };
}

/** Collects a stream up to EXEC_OUTPUT_CAP bytes. */
class Collector {
  readonly stream = new PassThrough();
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private cut = false;
  /** @param onText receives every chunk as UTF-8 text (split code points are held back), uncapped. */
  constructor(onText?: (text: string) => void) {
    const decoder = onText ? new StringDecoder('utf8') : null;
    this.stream.on('data', (c: Buffer) => {
      if (decoder && onText) {
        const t = decoder.write(c);
        if (t) onText(t);
      }
      if (this.size >= EXEC_OUTPUT_CAP) {
        this.cut = true;
        return;
      }
      const take = c.subarray(0, EXEC_OUTPUT_CAP - this.size);
      this.chunks.push(take);
      this.size += take.length;
      if (take.length < c.length) this.cut = true;
    });
  }
  text(): string {
    return (
      Buffer.concat(this.chunks).toString('utf8') + (this.cut ? '\n[airlock: output truncated at 1 MiB]' : '')
    );
  }
}
