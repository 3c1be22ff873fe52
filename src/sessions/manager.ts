import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { AuditEvent } from '../audit/event.js';
import type { AuditIndex } from '../audit/index-reader.js';
import type { Config } from '../config/schema.js';
import {
  GatewayUnavailableError,
  IsolationFailedError,
  RequestValidationError,
  SessionConflictError,
  SessionNotFoundError,
  UnknownRoleError,
} from '../errors.js';
import { type GatewayControl, waitForGateway } from '../gateway-wire/control.js';
import { newPlaceholder } from '../policy/credentials.js';
import { PatternError } from '../policy/matchers.js';
import { validateGrantRule } from '../policy/grants.js';
import type { PolicySnapshot, PolicySource } from '../policy/types.js';
import type { SandboxInfo, SandboxRuntime } from '../runtime/types.js';
import { runIsolationSelfTest, SelfTestMetrics } from './self-test.js';
import { WarmPool } from './warm-pool.js';
import type {
  CreateSessionRequest,
  ExecOutput,
  GatewaySession,
  SessionGrantView,
  SessionService,
  SessionView,
} from './types.js';

interface Record_ {
  info: SandboxInfo;
  status: SessionView['status'];
  timer: NodeJS.Timeout | null;
  /** Time-boxed grants a person gave the session (docs/approvals.md "Grants"), expired ones dropped. */
  grants: SessionGrantView[];
}

/** Options of {@link SessionManager} beyond its collaborators. */
export interface SessionManagerOptions {
  /**
   * Registry for the isolation self-test's metrics; pass the API's (`ApiMetrics.registry`) so
   * `/metrics` serves them. @default a private Registry
   */
  registry?: Registry;
}

/** Largest delay setTimeout accepts (~24.8 days); longer TTLs re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The watchdog ticks every 2 s; sessions are reconciled with the runtime every 5th tick (10 s). */
const RECONCILE_EVERY = 5;

/** Session ids: `s-` + 16 lowercase hex (64 random bits). */
function newSessionId(): string {
  return 's-' + randomBytes(8).toString('hex');
}

function toGatewaySession(info: SandboxInfo, grants: readonly SessionGrantView[] = []): GatewaySession {
  const s: GatewaySession = {
    id: info.sessionId,
    role: info.role,
    address: info.address,
    credentialSha256: info.credentialSha256,
    expiresAtMs: info.expiresAt.getTime(),
  };
  // The creator limits the session's egress at the gateway (delegation); '' is "not recorded".
  if (info.createdBy) s.creator = info.createdBy;
  if (info.placeholders && Object.keys(info.placeholders).length > 0) s.placeholders = info.placeholders;
  const now = Date.now();
  const live = grants.filter((g) => Date.parse(g.expiresAt) > now);
  if (live.length > 0) {
    s.grants = live.map((g) => ({
      id: g.id,
      host: g.host,
      path: g.path,
      method: g.method,
      expiresAt: Date.parse(g.expiresAt),
    }));
  }
  return s;
}

/**
 * The sandbox environment of a new session of `role`: `env` plus, for each credential of the policy
 * listing the role with a `placeholder`, its variable set to a new per-session placeholder
 * (docs/credentials.md "Placeholders"). Only the session's own role counts, as for injection; the
 * creator's rules still decide every call (a placeholder grants nothing by itself).
 * @throws RequestValidationError when `env` sets a placeholder's variable itself.
 */
function withPlaceholders(
  env: Record<string, string>,
  policy: PolicySnapshot,
  role: string,
): { env: Record<string, string>; placeholders: Record<string, string> } {
  const placeholders: Record<string, string> = {};
  const out = { ...env };
  for (const def of policy.credentials?.definitions ?? []) {
    if (!def.placeholder || !def.roles.includes(role)) continue;
    const name = def.placeholder.env;
    if (Object.hasOwn(env, name)) {
      throw new RequestValidationError(
        `env.${name} is the placeholder variable of credential "${def.name}" (credentials.yaml); the runtime sets it`,
        `env.${name}`,
      );
    }
    const value = newPlaceholder(def.name);
    placeholders[def.name] = value;
    out[name] = value;
  }
  return { env: out, placeholders };
}

/**
 * Sessions: create / list / get / exec / audit / delete (kill switch) / TTL expiry, on any
 * SandboxRuntime. Order of operations is what makes the guarantees:
 * - create: sandbox prepared (not started) -> gateway registration -> start (on Docker the two run
 *   at once: `registerWhileStarting`) -> isolation self-test (`runtime.selfTest`,
 *   src/sessions/self-test.ts); any failure undoes all; from a warm pool
 *   (src/sessions/warm-pool.ts): claim -> gateway registration, the sandbox having been started and
 *   self-tested when the pool filled it;
 * - delete and expiry: gateway revocation (answers after the session's sockets are closed) -> sandbox
 *   removal, so no call of the session is allowed once `remove` resolves;
 * - restart: sessions are rebuilt from the runtime's labels and re-registered with the gateway.
 * A watchdog resyncs the gateway when it restarts (its instance id changes).
 */
export class SessionManager implements SessionService {
  private readonly sessions = new Map<string, Record_>();
  private readonly endedListeners: ((id: string) => void)[] = [];
  /** Monotonic expiry deadlines (`performance.now()` ms) by session id; see {@link arm}. */
  private readonly deadlines = new Map<string, number>();
  private gateway: GatewayControl | null = null;
  private gatewayInstance: string | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  /**
   * Sessions being created (registered with the gateway, not yet in `sessions`): a resync in that
   * window must keep them, or the gateway would forget a session its create is about to return.
   */
  private readonly starting = new Map<string, SandboxInfo>();
  /** Watchdog ticks since the last reconcile (every {@link RECONCILE_EVERY} ticks). */
  private ticks = 0;
  private reconciling: Promise<void> | null = null;
  private gatewayError: string | null = 'gateway not started';
  private readonly selfTestMetrics: SelfTestMetrics;
  private selfTestUnsupportedLogged = false;
  /** Warm pools (`sessions.warmPool`), null when off or the runtime has none. */
  readonly pool: WarmPool | null = null;

  constructor(
    private readonly cfg: Config,
    private readonly runtime: SandboxRuntime,
    private readonly policy: PolicySource,
    private readonly auditIndex: AuditIndex,
    private readonly logger?: Logger,
    opts: SessionManagerOptions = {},
  ) {
    const registry = opts.registry ?? new Registry();
    this.selfTestMetrics = new SelfTestMetrics(registry);
    const wp = cfg.sessions.warmPool;
    if (wp.size > 0 && !(runtime.preparePooled && runtime.claim)) {
      logger?.warn('sessions.warmPool is set but this runtime has no warm pools; sessions start cold');
    } else if (wp.size > 0) {
      const images = wp.images.length > 0 ? wp.images : [cfg.runtime.sandboxImage];
      this.pool = new WarmPool(
        { size: wp.size, images, concurrency: wp.concurrency },
        runtime,
        (id, image) => this.fillPooled(id, image),
        registry,
        logger,
      );
    }
  }

  /**
   * Makes one warm-pool sandbox ready: created, started and (with `runtime.selfTest`) self-tested
   * before it can be claimed — its network binding is fixed from here on (docs/architecture.md
   * "Warm pools"). Removes it and throws on any failure.
   */
  private async fillPooled(id: string, image: string): Promise<void> {
    try {
      await this.runtime.preparePooled!({ sessionId: id, image });
      await this.runtime.start(id);
      if (this.cfg.runtime.selfTest) await this.selfTest(id, '(warm pool)', 'warm-pool');
    } catch (err) {
      await this.runtime.remove(id).catch(() => undefined);
      throw err;
    }
  }

  /**
   * Starts the gateway, recovers sessions from the runtime, removes expired ones.
   * @throws RuntimeError, GatewayUnavailableError
   */
  async start(): Promise<void> {
    this.gateway = await this.runtime.ensureGateway();
    const status = await waitForGateway(this.gateway);
    this.gatewayInstance = status.instanceId;
    this.gatewayError = null;
    const now = Date.now();
    for (const info of await this.runtime.list()) {
      if (info.expiresAt.getTime() <= now || !info.running || !info.address || !info.credentialSha256) {
        this.logger?.info({ sessionId: info.sessionId }, 'removing expired or broken session found at start');
        await this.runtime.remove(info.sessionId).catch((err: unknown) => {
          this.logger?.warn({ err, sessionId: info.sessionId }, 'could not remove stale sandbox');
        });
        continue;
      }
      this.sessions.set(info.sessionId, { info, status: 'running', timer: null, grants: [] });
      this.arm(info.sessionId);
    }
    await this.gateway.sync(this.liveGatewaySessions());
    this.logger?.info({ recovered: this.sessions.size }, 'sessions recovered');
    this.pool?.start();
    this.watchdog = setInterval(() => void this.checkGateway(), 2_000);
    this.watchdog.unref();
  }

  /** Stops timers; sandboxes keep running and are recovered by the next start. */
  stop(): void {
    this.pool?.stop();
    if (this.watchdog) clearInterval(this.watchdog);
    for (const r of this.sessions.values()) if (r.timer) clearTimeout(r.timer);
  }

  private liveGatewaySessions(): GatewaySession[] {
    return [
      ...[...this.sessions.values()]
        .filter((r) => r.status === 'running')
        .map((r) => toGatewaySession(r.info, r.grants)),
      ...[...this.starting.values()].map((info) => toGatewaySession(info)),
    ];
  }

  /**
   * Sessions whose sandbox stopped or vanished behind the control plane's back (the engine restarted
   * without live-restore, the container was stopped or removed by hand, the Pod was evicted) become
   * `stopped`: revoked at the gateway and kept in the list, so the user sees what happened; DELETE
   * or the TTL removes them. Runs every {@link RECONCILE_EVERY} watchdog ticks and before a resync;
   * does nothing while the runtime cannot list (the engine is down). Concurrent calls share one run.
   */
  reconcile(): Promise<void> {
    this.reconciling ??= this.reconcileOnce().finally(() => (this.reconciling = null));
    return this.reconciling;
  }

  private async reconcileOnce(): Promise<void> {
    // Only sessions already running before the listing: one whose create finishes meanwhile was
    // listed while still prepared (not started) and must not be taken for stopped.
    const before = new Set([...this.sessions].filter(([, r]) => r.status === 'running').map(([id]) => id));
    const poolBefore = this.pool?.readyIds() ?? new Set<string>();
    let listed: SandboxInfo[];
    try {
      listed = await this.runtime.list();
    } catch {
      return; // the runtime is away: nothing is known, nothing changes
    }
    const running = new Set(listed.filter((i) => i.running).map((i) => i.sessionId));
    await this.pool?.prune(poolBefore, running);
    for (const [id, r] of this.sessions) {
      if (!before.has(id) || r.status !== 'running' || running.has(id)) continue;
      r.status = 'stopped';
      r.info = { ...r.info, running: false };
      this.logger?.warn({ sessionId: id }, 'sandbox is no longer running: session stopped');
      await this.gateway?.revoke(id).catch((err: unknown) => {
        this.logger?.warn({ err, sessionId: id }, 'could not revoke a stopped session at the gateway');
      });
    }
  }

  private async checkGateway(): Promise<void> {
    if (!this.gateway) return;
    if (++this.ticks >= RECONCILE_EVERY) {
      this.ticks = 0;
      await this.reconcile();
    }
    try {
      const status = await this.gateway.status();
      if (status.instanceId !== this.gatewayInstance) {
        this.logger?.warn('gateway restarted: resyncing sessions');
        await this.reconcile();
        await this.gateway.sync(this.liveGatewaySessions());
        this.gatewayInstance = status.instanceId;
      }
      this.gatewayError = null;
    } catch (err) {
      this.gatewayError = (err as Error).message;
    }
  }

  /**
   * Removes the session at its expiry. The wall-clock expiry is turned into a monotonic deadline once
   * (when the session is first armed), so setting the clock back does not keep a sandbox past its TTL
   * and setting it forward does not end it early (the gateway enforces the TTL the same way).
   */
  private arm(id: string): void {
    const r = this.sessions.get(id);
    if (!r) return;
    if (r.timer) clearTimeout(r.timer);
    let deadline = this.deadlines.get(id);
    if (deadline === undefined) {
      deadline = performance.now() + (r.info.expiresAt.getTime() - Date.now());
      this.deadlines.set(id, deadline);
    }
    const due = deadline;
    const delay = due - performance.now();
    r.timer = setTimeout(
      () => {
        if (performance.now() < due) return this.arm(id);
        this.deadlines.delete(id);
        this.logger?.info({ sessionId: id }, 'session TTL expired');
        this.remove(id).catch((err: unknown) => this.logger?.error({ err, sessionId: id }, 'expiry failed'));
      },
      Math.max(0, Math.min(delay, MAX_TIMER_MS)),
    );
    r.timer.unref();
  }

  private view(r: Record_): SessionView {
    return {
      id: r.info.sessionId,
      role: r.info.role,
      status: r.status,
      image: r.info.image,
      createdAt: r.info.createdAt.toISOString(),
      expiresAt: r.info.expiresAt.toISOString(),
      createdBy: r.info.createdBy,
      labels: r.info.labels,
      grants: r.grants.filter((g) => Date.parse(g.expiresAt) > Date.now()),
    };
  }

  /**
   * The live session's role and creator (approvals, src/sessions/approvals.ts), or null when it is
   * unknown, stopping or ended.
   */
  lookup(id: string): { role: string; creator: string } | null {
    const r = this.sessions.get(id);
    if (!r || r.status !== 'running') return null;
    return { role: r.info.role, creator: r.info.createdBy };
  }

  /** Called with the id of every session that ends (DELETE, kill switch, TTL): approvals are cancelled. */
  onSessionEnded(listener: (id: string) => void): void {
    this.endedListeners.push(listener);
  }

  /**
   * Grants the session an allow rule until `ttlSeconds` from now (docs/approvals.md "Grants"): live on
   * every gateway replica when this resolves, gone at expiry; deny and ask rules still win.
   * @throws SessionNotFoundError; SessionConflictError when the session is not running;
   *   RequestValidationError naming the rule field that is not a valid pattern;
   *   GatewayUnavailableError when the gateway does not take it (the grant is then not recorded).
   */
  async grant(
    id: string,
    caller: string,
    g: { host: string; path: string; method: string; ttlSeconds: number; reason: string },
  ): Promise<SessionGrantView> {
    const r = this.record(id);
    if (r.status !== 'running') throw new SessionConflictError(id, `session ${id} is ${r.status}`);
    for (const field of ['host', 'path', 'method'] as const) {
      try {
        validateGrantRule({ host: 'x.test', path: '/', method: 'GET', [field]: g[field] });
      } catch (err) {
        if (err instanceof PatternError)
          throw new RequestValidationError(`rule.${field}: ${err.message}`, `rule.${field}`);
        throw err;
      }
    }
    const now = Date.now();
    const view: SessionGrantView = {
      id: 'gr-' + randomBytes(6).toString('hex'),
      host: g.host,
      path: g.path,
      method: g.method,
      reason: g.reason,
      grantedBy: caller,
      grantedAt: new Date(now).toISOString(),
      expiresAt: new Date(now + g.ttlSeconds * 1000).toISOString(),
    };
    const next = [...r.grants.filter((x) => Date.parse(x.expiresAt) > now), view];
    const gateway = this.gateway;
    if (!gateway) throw new GatewayUnavailableError('the gateway is not running');
    await gateway.register(toGatewaySession(r.info, next));
    r.grants = next;
    this.logger?.info(
      {
        sessionId: id,
        grant: view.id,
        rule: `${g.host}, ${g.path}, ${g.method}`,
        ttlSeconds: g.ttlSeconds,
        by: caller,
        reason: g.reason,
      },
      'session granted a rule',
    );
    // At expiry the gateway stops honouring it on its own; the table is tidied then too.
    const t = setTimeout(
      () => {
        const cur = this.sessions.get(id);
        if (!cur || cur.status !== 'running') return;
        cur.grants = cur.grants.filter((x) => Date.parse(x.expiresAt) > Date.now());
        this.gateway?.register(toGatewaySession(cur.info, cur.grants)).catch(() => undefined);
      },
      g.ttlSeconds * 1000 + 50,
    );
    t.unref();
    return view;
  }

  async create(req: CreateSessionRequest, caller: string): Promise<SessionView> {
    const gateway = this.gateway;
    if (!gateway) throw new GatewayUnavailableError('the gateway is not running');
    const policy = this.policy.current();
    if (!policy) throw new GatewayUnavailableError('no valid policy is loaded; sessions cannot be created');
    if (!policy.roles.has(req.role)) throw new UnknownRoleError(req.role);
    const ttl = req.ttlSeconds ?? this.cfg.sessions.defaultTtlSeconds;
    if (ttl > this.cfg.sessions.maxTtlSeconds) {
      throw new RequestValidationError(
        `ttlSeconds must be <= ${this.cfg.sessions.maxTtlSeconds} (sessions.maxTtlSeconds)`,
        'ttlSeconds',
      );
    }
    const { env, placeholders } = withPlaceholders(req.env ?? {}, policy, req.role);
    const image = req.image ?? this.cfg.runtime.sandboxImage;
    // A warm-pool sandbox (started and self-tested already) when one is ready: docs/architecture.md.
    const pooled = this.pool?.take(image) ?? null;
    // Else a spare network made ahead (runtime.docker.spareNetworks) names the session, when one is ready.
    const id = pooled ?? this.runtime.reserveSessionId?.() ?? newSessionId();
    const credential = randomBytes(32).toString('base64url');
    const credentialSha256 = createHash('sha256').update(credential).digest('hex');
    const createdAt = new Date();
    const expiresAt = new Date(createdAt.getTime() + ttl * 1000);
    const spec = {
      sessionId: id,
      role: req.role,
      image,
      env,
      credential,
      credentialSha256,
      placeholders,
      createdAt,
      expiresAt,
      createdBy: caller,
      labels: req.labels ?? {},
    };
    let info: SandboxInfo;
    try {
      info = pooled ? await this.runtime.claim!(spec) : await this.runtime.prepare(spec);
    } catch (err) {
      // A pooled sandbox whose claim failed is never offered again.
      if (pooled) await this.runtime.remove(id).catch(() => undefined);
      throw err;
    }
    this.starting.set(id, info);
    try {
      const registered = gateway.register(toGatewaySession(info), { newSession: true });
      if (pooled) {
        await registered;
      } else if (this.runtime.registerWhileStarting) {
        // Both settle before anything is undone; the sandbox's calls are refused until registered.
        const [r, s] = await Promise.allSettled([registered, this.runtime.start(id)]);
        if (r.status === 'rejected') throw r.reason;
        if (s.status === 'rejected') throw s.reason;
      } else {
        await registered;
        await this.runtime.start(id);
      }
      if (!pooled && this.cfg.runtime.selfTest) await this.selfTest(id, req.role, caller);
    } catch (err) {
      this.starting.delete(id);
      await gateway.revoke(id).catch(() => undefined);
      await this.runtime.remove(id).catch(() => undefined);
      throw err;
    }
    const record: Record_ = { info: { ...info, running: true }, status: 'running', timer: null, grants: [] };
    this.sessions.set(id, record);
    this.starting.delete(id);
    this.arm(id);
    this.logger?.info({ sessionId: id, role: req.role, caller, pooled: pooled !== null }, 'session created');
    return this.view(record);
  }

  /**
   * Runs the isolation self-test on a started sandbox; logs one `isolation self-test` line (error
   * level unless it passed) and records the metrics. @throws IsolationFailedError unless it passed
   */
  private async selfTest(id: string, role: string, caller: string): Promise<void> {
    const runtime = this.runtime;
    if (!runtime.isolationTargets) {
      if (!this.selfTestUnsupportedLogged)
        this.logger?.warn(
          'runtime.selfTest is on but this runtime cannot self-test; sessions start untested',
        );
      this.selfTestUnsupportedLogged = true;
      return;
    }
    const report = await runIsolationSelfTest({
      exec: (command, timeoutMs) => runtime.exec(id, command, timeoutMs),
      targets: () => runtime.isolationTargets!(id),
    });
    this.selfTestMetrics.observe(report);
    const line = {
      event: 'isolation_selftest',
      sessionId: id,
      role,
      caller,
      result: report.result,
      durationMs: report.durationMs,
      probes: report.probes,
      findings: report.findings,
    };
    if (report.result === 'pass') {
      this.logger?.info(line, 'isolation self-test passed');
      return;
    }
    this.logger?.error(line, 'isolation self-test failed: session refused');
    throw new IsolationFailedError(id, report.findings);
  }

  list(): SessionView[] {
    return [...this.sessions.values()].map((r) => this.view(r));
  }

  private record(id: string): Record_ {
    const r = this.sessions.get(id);
    if (!r) throw new SessionNotFoundError(id);
    return r;
  }

  get(id: string): SessionView {
    return this.view(this.record(id));
  }

  async exec(
    id: string,
    command: string[],
    timeoutMs: number,
    onOutput?: (stream: 'stdout' | 'stderr', data: string) => void,
  ): Promise<ExecOutput> {
    const r = this.record(id);
    if (r.status !== 'running') throw new SessionConflictError(id, `session ${id} is ${r.status}`);
    return this.runtime.exec(id, command, timeoutMs, onOutput);
  }

  async audit(id: string): Promise<AuditEvent[]> {
    await this.auditIndex.catchUp();
    const events = this.auditIndex.events(id);
    // Ended sessions keep their audit trail; an id never seen at all is a 404.
    if (events.length === 0 && !this.sessions.has(id)) throw new SessionNotFoundError(id);
    return events;
  }

  async remove(id: string): Promise<void> {
    const r = this.record(id);
    if (r.status === 'stopping') throw new SessionConflictError(id, `session ${id} is already stopping`);
    r.status = 'stopping';
    if (r.timer) clearTimeout(r.timer);
    try {
      // The kill switch proper: from here on the gateway refuses the session.
      await this.gateway?.revoke(id);
    } catch (err) {
      // Gateway unreachable: removing the sandbox (below) still cuts it off; say so loudly.
      this.logger?.error({ err, sessionId: id }, 'gateway revocation failed; removing sandbox anyway');
    }
    try {
      await this.runtime.remove(id);
    } catch (err) {
      r.status = 'running';
      throw err;
    }
    this.sessions.delete(id);
    this.deadlines.delete(id);
    this.logger?.info({ sessionId: id }, 'session removed');
    for (const l of this.endedListeners) {
      try {
        l(id);
      } catch (err) {
        this.logger?.error({ err, sessionId: id }, 'session-ended listener failed');
      }
    }
  }

  readiness(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (this.gatewayError) reasons.push(`gateway: ${this.gatewayError}`);
    return { ready: reasons.length === 0, reasons };
  }
}
