/**
 * Approvals (docs/approvals.md): the control plane's record of every call an `ask` rule matched, and
 * of what people decided about each. One instance per control plane holds all of them; gateways ask
 * it through the claim endpoint (src/gateway-wire/approvals.ts), so a decision reaches every gateway
 * replica with its next claim and a single-use approval is spent exactly once.
 *
 * An approval is bound to exactly one request: session, method (the one the upstream executes),
 * canonical URL and the SHA-256 of the body. Lifecycle: `pending` → `approved` (→ `used` when its
 * uses are spent, or `expired` when its time is up) | `denied` | `expired` (nobody decided within
 * `approvals.pendingSeconds`) | `cancelled` (the session ended: DELETE, kill switch, TTL). Every step
 * is written as an audit event (reason `approval_requested`, `approval_approved`, …) by the control
 * plane's own audit writer; the gateway's events say `approved` when a use was spent.
 *
 * State lives in memory and in `<stateDir>/approvals.json` (rewritten atomically on each change), so
 * a restarted control plane keeps pending and approved approvals.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { AuditEvent, AuditSink } from '../audit/event.js';
import { ApprovalConflictError, ApprovalNotFoundError } from '../errors.js';
import type { ClaimAnswer, ClaimRequest } from '../gateway-wire/approvals.js';

/** Where an approval is in its life. */
export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'used';

/** One approval as the API shows it (`GET /v1/approvals/{id}`). */
export interface Approval {
  id: string;
  status: ApprovalStatus;
  sessionId: string;
  role: string;
  /** The API caller that created the session ('' when not recorded). */
  sessionCreator: string;
  method: string;
  url: string;
  /** Lowercase hex SHA-256 of the body the approval is bound to. */
  bodySha256: string;
  bodyBytes: number;
  contentType: string;
  /** The body's first bytes (at most 4 KiB), base64. */
  bodyPreview: string;
  /** The preview as text when it is valid UTF-8 without control characters (other than tab/newline), else null. */
  bodyText: string | null;
  /** The `ask` rule that matched. */
  rule: string;
  policyVersion: string;
  /** ISO-8601. */
  requestedAt: string;
  /** Until when a pending approval waits for a decision (ISO-8601). */
  pendingUntil: string;
  decidedBy: string | null;
  decidedAt: string | null;
  reason: string | null;
  /** Uses granted by the approver (approved ones). */
  uses: number;
  /** Uses spent so far. */
  used: number;
  /** Until when an approved approval may be used (ISO-8601), else null. */
  usableUntil: string | null;
}

/** Settings (`approvals.*` in the config, docs/config.md). */
export interface ApprovalSettings {
  /** How long a pending approval waits for a decision before it expires, seconds. */
  pendingSeconds: number;
  /** Uses of an approval when the approver names none. */
  defaultUses: number;
  /** How long an approval may be used when the approver names no `ttlSeconds`, seconds. */
  defaultTtlSeconds: number;
  /** A webhook told of each new approval (HMAC-SHA256 signed), or null. */
  webhook: { url: string; secret: string } | null;
}

/** What the service needs of the sessions it guards. */
export interface ApprovalSessions {
  /** The live session's role and creator, or null when it is unknown or ended. */
  lookup(id: string): { role: string; creator: string } | null;
}

/** A change others may follow (`GET /v1/approvals/stream`, the console). */
export interface ApprovalChange {
  type: 'requested' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'used';
  approval: Approval;
}

const STATE_FILE = 'approvals.json';
/** Decided approvals kept for `GET /v1/approvals` after they ended, ms. */
const KEEP_ENDED_MS = 24 * 3600 * 1000;

function bindingKey(r: { sessionId: string; method: string; url: string; bodySha256: string }): string {
  return createHash('sha256').update(`${r.sessionId}\n${r.method}\n${r.url}\n${r.bodySha256}`).digest('hex');
}

/** The preview as text, when it reads as text. */
function previewText(base64: string): string | null {
  const bytes = Buffer.from(base64, 'base64');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
  // eslint-disable-next-line no-control-regex
  return /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text) ? null : text;
}

/** The metrics of approvals (`/metrics` of the control plane). */
class ApprovalMetrics {
  readonly pending: Gauge;
  readonly decisions: Counter<'outcome'>;
  readonly timeToDecision: Histogram;
  constructor(registry?: Registry) {
    const registers = registry ? [registry] : [];
    this.pending = new Gauge({
      name: 'airlock_approvals_pending',
      help: 'Approvals waiting for a person',
      registers,
    });
    this.decisions = new Counter({
      name: 'airlock_approvals_total',
      help: 'Approvals by how they ended: approved, denied, expired, cancelled, used',
      labelNames: ['outcome'] as const,
      registers,
    });
    this.timeToDecision = new Histogram({
      name: 'airlock_approval_decision_seconds',
      help: 'Time from request to a person approving or denying, seconds',
      buckets: [1, 5, 15, 30, 60, 120, 300, 900, 3600],
      registers,
    });
  }
}

/** Holds approvals and answers claims; see the module comment. */
export class ApprovalService {
  readonly #byId = new Map<string, Approval>();
  /** Binding key → ids, newest last. */
  readonly #byKey = new Map<string, string[]>();
  readonly #listeners = new Set<(c: ApprovalChange) => void>();
  /** Claims waiting in hold mode, by binding key. */
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #metrics: ApprovalMetrics;
  readonly #timer: NodeJS.Timeout;
  readonly #stateFile: string | null;

  constructor(
    private readonly settings: ApprovalSettings,
    private readonly sessions: ApprovalSessions,
    private readonly audit: AuditSink,
    private readonly opts: {
      stateDir?: string;
      logger?: Logger;
      registry?: Registry;
      now?: () => number;
    } = {},
  ) {
    this.#metrics = new ApprovalMetrics(opts.registry);
    this.#stateFile = opts.stateDir ? path.join(opts.stateDir, STATE_FILE) : null;
    this.#load();
    this.#timer = setInterval(() => this.sweep(), 1000);
    this.#timer.unref();
  }

  #now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /**
   * A gateway's claim for a call an `ask` rule matched (see ClaimAnswer for the statuses). Spends one
   * use of an approved approval bound to exactly this request; otherwise opens (or finds) the pending
   * one and, with `waitMs`, waits for a decision.
   */
  async claim(req: ClaimRequest): Promise<ClaimAnswer> {
    this.sweep();
    const session = this.sessions.lookup(req.sessionId);
    if (session === null) {
      return { status: 'refused', approvalId: '', detail: `session ${req.sessionId} is not running` };
    }
    const key = bindingKey(req);
    const now = this.#now();
    const spent = this.#spend(key);
    if (spent) return spent;
    let open = this.#latest(key, ['pending', 'denied']);
    if (open?.status === 'denied') {
      return {
        status: 'denied',
        approvalId: open.id,
        detail: `by ${open.decidedBy ?? '?'}: ${open.reason ?? ''}`,
      };
    }
    if (!open) {
      open = {
        id: 'ap-' + randomBytes(8).toString('hex'),
        status: 'pending',
        sessionId: req.sessionId,
        role: req.role,
        sessionCreator: session.creator || req.creator,
        method: req.method,
        url: req.url,
        bodySha256: req.bodySha256,
        bodyBytes: req.bodyBytes,
        contentType: req.contentType,
        bodyPreview: req.preview,
        bodyText: previewText(req.preview),
        rule: req.rule,
        policyVersion: req.policyVersion,
        requestedAt: new Date(now).toISOString(),
        pendingUntil: new Date(now + this.settings.pendingSeconds * 1000).toISOString(),
        decidedBy: null,
        decidedAt: null,
        reason: null,
        uses: 0,
        used: 0,
        usableUntil: null,
      };
      this.#byId.set(open.id, open);
      const ids = this.#byKey.get(key);
      if (ids) ids.push(open.id);
      else this.#byKey.set(key, [open.id]);
      this.#changed('requested', open);
      this.#notifyWebhook(open);
    }
    if (req.waitMs > 0) {
      const id = open.id;
      await this.#waitForChange(key, req.waitMs);
      const after = this.#spend(key);
      if (after) return after;
      const a = this.#byId.get(id);
      if (a?.status === 'denied')
        return { status: 'denied', approvalId: id, detail: `by ${a.decidedBy ?? '?'}: ${a.reason ?? ''}` };
      if (a?.status === 'pending') return { status: 'timeout', approvalId: id, detail: '' };
      return { status: 'refused', approvalId: id, detail: `approval ${id} is ${a?.status ?? 'gone'}` };
    }
    return { status: 'pending', approvalId: open.id, detail: '' };
  }

  /** Spends one use of the approved approval bound to `key`, if there is one. */
  #spend(key: string): ClaimAnswer | null {
    const a = this.#latest(key, ['approved']);
    if (!a) return null;
    a.used += 1;
    if (a.used >= a.uses) a.status = 'used';
    this.#changed('used', a);
    return { status: 'approved', approvalId: a.id, detail: `approved by ${a.decidedBy ?? '?'}` };
  }

  /** The newest approval bound to `key` in one of `statuses`. */
  #latest(key: string, statuses: readonly ApprovalStatus[]): Approval | undefined {
    const ids = this.#byKey.get(key) ?? [];
    for (let i = ids.length - 1; i >= 0; i--) {
      const a = this.#byId.get(ids[i] as string);
      if (a && statuses.includes(a.status)) return a;
    }
    return undefined;
  }

  #waitForChange(key: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.#waiters.get(key);
      if (!set) this.#waiters.set(key, (set = new Set()));
      const done = (): void => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0) this.#waiters.delete(key);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
    });
  }

  /** All approvals (newest first), optionally of one status or session. */
  list(filter: { status?: ApprovalStatus; sessionId?: string } = {}): Approval[] {
    this.sweep();
    return [...this.#byId.values()]
      .filter(
        (a) =>
          (!filter.status || a.status === filter.status) &&
          (!filter.sessionId || a.sessionId === filter.sessionId),
      )
      .sort((a, b) => (a.requestedAt < b.requestedAt ? 1 : a.requestedAt > b.requestedAt ? -1 : 0));
  }

  /** @throws ApprovalNotFoundError */
  get(id: string): Approval {
    this.sweep();
    const a = this.#byId.get(id);
    if (!a) throw new ApprovalNotFoundError(id);
    return a;
  }

  /**
   * A person approves. @param uses how many times the exact request may be forwarded (≥ 1).
   * @param ttlSeconds for how long it may be used.
   * @throws ApprovalNotFoundError; ApprovalConflictError (409) when it is no longer pending.
   */
  approve(id: string, by: string, o: { reason: string; uses?: number; ttlSeconds?: number }): Approval {
    const a = this.#pending(id);
    const now = this.#now();
    a.status = 'approved';
    a.decidedBy = by;
    a.decidedAt = new Date(now).toISOString();
    a.reason = o.reason;
    a.uses = o.uses ?? this.settings.defaultUses;
    a.usableUntil = new Date(now + (o.ttlSeconds ?? this.settings.defaultTtlSeconds) * 1000).toISOString();
    this.#metrics.timeToDecision.observe((now - Date.parse(a.requestedAt)) / 1000);
    this.#changed('approved', a);
    return a;
  }

  /** A person denies. @throws ApprovalNotFoundError; ApprovalConflictError (409) when no longer pending. */
  deny(id: string, by: string, reason: string): Approval {
    const a = this.#pending(id);
    const now = this.#now();
    a.status = 'denied';
    a.decidedBy = by;
    a.decidedAt = new Date(now).toISOString();
    a.reason = reason;
    this.#metrics.timeToDecision.observe((now - Date.parse(a.requestedAt)) / 1000);
    this.#changed('denied', a);
    return a;
  }

  #pending(id: string): Approval {
    const a = this.get(id);
    if (a.status !== 'pending')
      throw new ApprovalConflictError(id, `approval ${id} is ${a.status}, not pending`);
    return a;
  }

  /** The session ended (DELETE, kill switch, TTL): its pending and approved approvals are cancelled. */
  cancelSession(sessionId: string): number {
    let n = 0;
    for (const a of this.#byId.values()) {
      if (a.sessionId !== sessionId || (a.status !== 'pending' && a.status !== 'approved')) continue;
      a.status = 'cancelled';
      a.reason = 'the session ended';
      a.decidedAt = new Date(this.#now()).toISOString();
      this.#changed('cancelled', a);
      n++;
    }
    return n;
  }

  /** Expires pending approvals past `pendingUntil` and approved ones past `usableUntil`; forgets old ones. */
  sweep(): void {
    const now = this.#now();
    for (const [id, a] of this.#byId) {
      if (a.status === 'pending' && Date.parse(a.pendingUntil) <= now) {
        a.status = 'expired';
        a.reason = 'nobody decided in time';
        this.#changed('expired', a);
      } else if (a.status === 'approved' && a.usableUntil && Date.parse(a.usableUntil) <= now) {
        a.status = 'expired';
        a.reason = `${a.used} of ${a.uses} uses spent before it expired`;
        this.#changed('expired', a);
      } else if (
        a.status !== 'pending' &&
        a.status !== 'approved' &&
        now - Date.parse(a.decidedAt ?? a.requestedAt) > KEEP_ENDED_MS
      ) {
        this.#byId.delete(id);
        const key = bindingKey(a);
        const ids = this.#byKey.get(key)?.filter((x) => x !== id) ?? [];
        if (ids.length === 0) this.#byKey.delete(key);
        else this.#byKey.set(key, ids);
      }
    }
  }

  /** Follows changes; returns the unsubscribe function. */
  subscribe(listener: (c: ApprovalChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    clearInterval(this.#timer);
    for (const set of this.#waiters.values()) for (const w of [...set]) w();
  }

  #changed(type: ApprovalChange['type'], a: Approval): void {
    this.#metrics.pending.set([...this.#byId.values()].filter((x) => x.status === 'pending').length);
    if (type !== 'requested') this.#metrics.decisions.inc({ outcome: type });
    this.audit.emit(this.#auditEvent(type, a));
    this.#save();
    const waiters = this.#waiters.get(bindingKey(a));
    if (waiters) for (const w of [...waiters]) w();
    for (const l of this.#listeners) {
      try {
        l({ type, approval: { ...a } });
      } catch (err) {
        this.opts.logger?.warn({ err }, 'approval listener failed');
      }
    }
  }

  #auditEvent(type: ApprovalChange['type'], a: Approval): AuditEvent {
    const u = new URL(a.url);
    const scheme = u.protocol === 'https:' ? 'https' : 'http';
    return {
      time: new Date(this.#now()).toISOString(),
      sessionId: a.sessionId,
      role: a.role,
      method: a.method,
      scheme,
      host: u.hostname,
      port: u.port ? Number(u.port) : scheme === 'https' ? 443 : 80,
      path: u.pathname,
      decision: type === 'approved' || type === 'used' ? 'allow' : 'deny',
      rule: a.rule || null,
      reason: `approval_${type}`,
      status: 0,
      durationMs: 0,
      bytesOut: a.bodyBytes,
      bytesIn: 0,
      policyVersion: a.policyVersion || null,
      approvalId: a.id,
      approval: {
        event: type,
        by: type === 'approved' || type === 'denied' ? a.decidedBy : null,
        reason: a.reason,
        uses: a.uses,
        used: a.used,
        bodySha256: a.bodySha256,
      },
    };
  }

  /** POSTs the new approval to the webhook, signed; failures are logged, never block the claim. */
  #notifyWebhook(a: Approval): void {
    const hook = this.settings.webhook;
    if (!hook) return;
    const body = JSON.stringify({ type: 'approval.requested', approval: a });
    const timestamp = Math.floor(this.#now() / 1000).toString();
    const signature = createHmac('sha256', hook.secret).update(`${timestamp}.${body}`).digest('hex');
    fetch(hook.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-airlock-timestamp': timestamp,
        'x-airlock-signature': `sha256=${signature}`,
      },
      body,
      signal: AbortSignal.timeout(5000),
    })
      .then((res) => {
        if (!res.ok)
          this.opts.logger?.warn(
            { status: res.status, approvalId: a.id },
            'approval webhook answered an error',
          );
      })
      .catch((err: unknown) => this.opts.logger?.warn({ err, approvalId: a.id }, 'approval webhook failed'));
  }

  #save(): void {
    if (!this.#stateFile) return;
    try {
      mkdirSync(path.dirname(this.#stateFile), { recursive: true });
      const tmp = `${this.#stateFile}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      writeFileSync(tmp, JSON.stringify({ version: 1, approvals: [...this.#byId.values()] }), {
        mode: 0o600,
      });
      renameSync(tmp, this.#stateFile);
    } catch (err) {
      this.opts.logger?.error({ err, file: this.#stateFile }, 'cannot save approvals');
    }
  }

  #load(): void {
    if (!this.#stateFile) return;
    let text: string;
    try {
      text = readFileSync(this.#stateFile, 'utf8');
    } catch {
      return; // none yet
    }
    try {
      const data = JSON.parse(text) as { approvals?: Approval[] };
      for (const a of data.approvals ?? []) {
        this.#byId.set(a.id, a);
        const key = bindingKey(a);
        const ids = this.#byKey.get(key);
        if (ids) ids.push(a.id);
        else this.#byKey.set(key, [a.id]);
      }
    } catch (err) {
      this.opts.logger?.error(
        { err, file: this.#stateFile },
        'cannot read saved approvals; starting without them',
      );
    }
  }
}
