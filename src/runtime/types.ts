/**
 * The runtime interface: one implementation per platform (`docker` for one machine, `kubernetes` for clusters).
 * A runtime creates and removes sandboxes and the gateway they exit through; it keeps no state that
 * cannot be recovered from the platform itself (labels).
 */

import type { GatewayControl } from '../gateway-wire/control.js';

/** What a new sandbox needs. */
export interface SandboxSpec {
  sessionId: string;
  role: string;
  image: string;
  /** Extra environment for the sandbox (proxy variables are added by the runtime). */
  env: Record<string, string>;
  /** The session credential, placed in the proxy URLs inside the sandbox. */
  credential: string;
  credentialSha256: string;
  /**
   * Credential placeholders (credential name → value, docs/credentials.md): already in `env`; kept
   * with the sandbox (label/annotation) so a restarted control plane registers them again.
   */
  placeholders?: Record<string, string>;
  createdAt: Date;
  expiresAt: Date;
  createdBy: string;
  labels: Record<string, string>;
}

/** A sandbox as recovered from the platform. */
export interface SandboxInfo {
  sessionId: string;
  role: string;
  image: string;
  /** IP the sandbox's traffic comes from, as the gateway sees it. */
  address: string;
  credentialSha256: string;
  /** Credential placeholders of the session (credential name → value); absent or empty: none. */
  placeholders?: Record<string, string>;
  createdAt: Date;
  expiresAt: Date;
  createdBy: string;
  labels: Record<string, string>;
  running: boolean;
  /**
   * A warm-pool sandbox (created before its session; docs/architecture.md "Warm pools"). Unclaimed
   * members have an empty `role` and `credentialSha256`.
   */
  pooled?: boolean;
}

/** What a warm-pool sandbox is made from: the id its session will have and the image. */
export interface PooledSandboxSpec {
  sessionId: string;
  image: string;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Where the isolation self-test (src/sessions/self-test.ts) probes from inside one sandbox. */
export interface IsolationTargets {
  /** The gateway's proxy as the sandbox reaches it (the proxy URL's IP and port): must connect. */
  gateway: { host: string; port: number };
  /** The gateway's admin API wherever a sandbox could try it: must not connect, or answer 403. */
  admin: Array<{ host: string; port: number }>;
  /**
   * A listening address on each other of the project's own networks (e.g. the gateway's address on
   * the egress network): must not connect. `name` says which network, for the report.
   */
  otherNetworks: Array<{ name: string; host: string; port: number }>;
}

export interface SandboxRuntime {
  /**
   * Starts (or adopts) the gateway and returns how to drive it: Docker the HTTP client of its gateway
   * container's admin API, Kubernetes the fan-out to every gateway replica. Idempotent.
   * @throws RuntimeError, GatewayUnavailableError
   */
  ensureGateway(): Promise<GatewayControl>;
  /**
   * Creates the sandbox's isolation (network) and container, without starting it, and returns the
   * address it will have. Nothing is left behind when this throws. @throws RuntimeError
   */
  prepare(spec: SandboxSpec): Promise<SandboxInfo>;
  /**
   * Optional (Docker with `runtime.docker.spareNetworks`): the id for the next cold session whose
   * isolation (its network, the gateway joined) was made ahead, or null when none is ready. The id
   * is handed out once; `prepare` with it binds that network, and `remove` deletes it.
   */
  reserveSessionId?(): string | null;
  /**
   * True when `start` does not depend on the session being registered at the gateway, and a
   * sandbox running before it is registered gets only refusals (its address is unknown to the
   * gateway): the caller may then register while the sandbox starts (Docker).
   */
  readonly registerWhileStarting?: boolean;
  /**
   * Warm pools (optional; the Docker runtime has them): creates a sandbox for a session that does
   * not exist yet — its isolation and container, not started — with no role, credential, expiry or
   * proxy settings, and returns the address it will have. Nothing is left behind when this throws.
   * @throws RuntimeError
   */
  preparePooled?(spec: PooledSandboxSpec): Promise<SandboxInfo>;
  /**
   * Hands a started warm-pool sandbox to its session (`spec.sessionId` is the pooled sandbox's id):
   * records the session (role, credential digest, expiry, creator, labels) durably so `list()`
   * recovers it after a restart, and makes every later `exec` run with the session's environment
   * (`spec.env` and the proxy URL with `spec.credential`). Registration at the gateway is the
   * caller's. @throws RuntimeError when the sandbox is not an unclaimed pool member of this runtime
   */
  claim?(spec: SandboxSpec): Promise<SandboxInfo>;
  /** Starts a prepared sandbox. @throws RuntimeError */
  start(sessionId: string): Promise<void>;
  /**
   * Runs a command to completion. Output is capped (bytes) per stream.
   * @throws ExecTimeoutError when `timeoutMs` elapses; RuntimeError otherwise.
   */
  exec(
    sessionId: string,
    command: string[],
    timeoutMs: number,
    onOutput?: (stream: 'stdout' | 'stderr', data: string) => void,
  ): Promise<ExecResult>;
  /**
   * What the isolation self-test probes for a started sandbox (all IP literals). Optional: a runtime
   * without it cannot be self-tested (the SessionManager logs that and skips the test).
   * @throws RuntimeError
   */
  isolationTargets?(sessionId: string): Promise<IsolationTargets>;
  /** Removes the sandbox and its isolation; removing what is already gone is not an error. */
  remove(sessionId: string): Promise<void>;
  /** Every sandbox this installation owns, from platform labels (recovery after restart). */
  list(): Promise<SandboxInfo[]>;
  /** Releases client resources (not the sandboxes). */
  close(): Promise<void>;
}
