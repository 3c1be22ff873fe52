/**
 * The gateway's counters for the policy's budgets (budgets.yaml, src/policy/budgets.ts; docs/policy.md
 * "Budgets"): requests per minute and request-body bytes per hour, per session or per role, per host.
 * A call over a budget is refused with 429 `budget_exceeded`, `Retry-After` and the budget's name,
 * and audited with reason `budget_exceeded` (decide.ts step 5).
 *
 * Windows are fixed: a minute (requests) or an hour (bytes) starting with the first call counted.
 * One gateway process counts in {@link BudgetCounters}. A multi-worker gateway (`gateway.workers` > 1)
 * counts in its primary: each worker's {@link SharedBudgets} asks the primary for every call a budget
 * applies to (one IPC round trip, only for such calls) and sends the bytes as they flow, so a role's
 * or session's budget holds across workers (docs/security.md "Fairness and limits"). Separate gateway
 * replicas (Kubernetes) still count alone: a role's budget holds per replica there.
 */
import type { Budget, BudgetSet } from '../policy/budgets.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
/** Counters are swept for ended windows at most this often (memory follows activity). */
const SWEEP_EVERY_MS = 60_000;

interface Counter {
  /** Start of the requests window (epoch ms); 0: none open. */
  reqStart: number;
  requests: number;
  /** Start of the bytes window (epoch ms); 0: none open. */
  bytesStart: number;
  bytes: number;
}

/**
 * Counts the bytes a call sends upstream (request body; a passthrough tunnel's or WebSocket channel's
 * bytes towards the upstream) against its budgets as they flow.
 */
export interface BudgetMeter {
  addBytesOut(n: number): void;
  /**
   * Whether the bytes counted so far went past a bytes budget of this call (more than
   * `bytesOutPerHour` in the window). A long-lived channel (passthrough tunnel, WebSocket) is closed
   * once this is true, before the chunk that crossed is relayed. With shared counters (multi-worker)
   * it turns true when the primary's answer arrives (an IPC round trip, a chunk or two later).
   */
  readonly exhausted: boolean;
}

/** Who a budget counter belongs to: the session and its role. */
export interface BudgetSubject {
  id: string;
  role: string;
}

/** The answer of {@link BudgetAuthority.admit}. */
export type BudgetAdmission = { ok: true; meter: BudgetMeter | null } | ({ ok: false } & BudgetExceeded);

/**
 * Where the budget counters live: {@link BudgetCounters} in this process, or {@link SharedBudgets}
 * in the primary of a multi-worker gateway.
 */
export interface BudgetAuthority {
  /**
   * Checks a call against every budget of `budgets` it falls under and, when none is used up,
   * counts it.
   * @param host the call's policy host; `method` its method as decided (an override included).
   * @param contentLength the declared body size, or null (chunked or none): a declared body that
   *   would cross a bytes budget is refused up front.
   */
  admit(
    budgets: BudgetSet,
    session: BudgetSubject,
    host: string,
    method: string,
    contentLength: number | null,
  ): BudgetAdmission | Promise<BudgetAdmission>;
}

/** Why a call is over a budget. */
export interface BudgetExceeded {
  budget: Budget;
  /** Seconds until the window renews (at least 1). */
  retryAfterSeconds: number;
  /** Which of the budget's figures is used up. */
  what: 'requestsPerMinute' | 'bytesOutPerHour';
}

function addBytes(counters: readonly Counter[], n: number, now: number): void {
  for (const c of counters) {
    if (c.bytesStart === 0 || now - c.bytesStart >= HOUR_MS) {
      c.bytesStart = now;
      c.bytes = 0;
    }
    c.bytes += n;
  }
}

function bytesExhausted(counters: readonly Counter[], limits: readonly number[], now: number): boolean {
  return counters.some((c, i) => c.bytesStart !== 0 && now - c.bytesStart < HOUR_MS && c.bytes > limits[i]!);
}

class Meter implements BudgetMeter {
  constructor(
    private readonly counters: readonly Counter[],
    private readonly limits: readonly number[],
    private readonly now: () => number,
  ) {}
  addBytesOut(n: number): void {
    addBytes(this.counters, n, this.now());
  }
  get exhausted(): boolean {
    return bytesExhausted(this.counters, this.limits, this.now());
  }
}

/** The budget counters of one gateway process (or of a multi-worker gateway's primary). */
export class BudgetCounters implements BudgetAuthority {
  readonly #counters = new Map<string, Counter>();
  #lastSweep: number;

  constructor(private readonly now: () => number = Date.now) {
    this.#lastSweep = now();
  }

  #key(b: Budget, session: BudgetSubject, host: string): string {
    const who = b.per === 'role' ? `r:${session.role}` : `s:${session.id}`;
    return `${b.name}\u0000${who}\u0000${b.host === '*' ? '*' : host}`;
  }

  admit(
    budgets: BudgetSet,
    session: BudgetSubject,
    host: string,
    method: string,
    contentLength: number | null,
  ): BudgetAdmission {
    const matching = budgets.matching(session.role, host, method);
    if (matching.length === 0) return { ok: true, meter: null };
    return this.admitMatching(matching, session, host, contentLength);
  }

  /**
   * {@link admit} for budgets already matched (`BudgetSet.matching`): what the primary of a
   * multi-worker gateway runs for its workers.
   */
  admitMatching(
    matching: readonly Budget[],
    session: BudgetSubject,
    host: string,
    contentLength: number | null,
  ): BudgetAdmission {
    const now = this.now();
    if (now - this.#lastSweep >= SWEEP_EVERY_MS) this.sweep(now);
    const counters: Counter[] = [];
    for (const b of matching) {
      const c = this.#counter(b, session, host);
      if (c.reqStart !== 0 && now - c.reqStart >= MINUTE_MS) c.reqStart = 0;
      if (c.bytesStart !== 0 && now - c.bytesStart >= HOUR_MS) c.bytesStart = 0;
      if (b.requestsPerMinute !== undefined && c.reqStart !== 0 && c.requests >= b.requestsPerMinute) {
        return {
          ok: false,
          budget: b,
          what: 'requestsPerMinute',
          retryAfterSeconds: secondsLeft(c.reqStart + MINUTE_MS, now),
        };
      }
      if (b.bytesOutPerHour !== undefined) {
        const used = c.bytesStart === 0 ? 0 : c.bytes;
        if (
          used >= b.bytesOutPerHour ||
          (contentLength !== null && used + contentLength > b.bytesOutPerHour)
        ) {
          const ends = c.bytesStart === 0 ? now + HOUR_MS : c.bytesStart + HOUR_MS;
          return { ok: false, budget: b, what: 'bytesOutPerHour', retryAfterSeconds: secondsLeft(ends, now) };
        }
      }
      counters.push(c);
    }
    const bytesCounters: Counter[] = [];
    const bytesLimits: number[] = [];
    counters.forEach((c, i) => {
      const b = matching[i]!;
      if (b.requestsPerMinute !== undefined) {
        if (c.reqStart === 0) {
          c.reqStart = now;
          c.requests = 0;
        }
        c.requests++;
      }
      if (b.bytesOutPerHour !== undefined) {
        bytesCounters.push(c);
        bytesLimits.push(b.bytesOutPerHour);
      }
    });
    return {
      ok: true,
      meter: bytesCounters.length > 0 ? new Meter(bytesCounters, bytesLimits, this.now) : null,
    };
  }

  /**
   * Counts `n` bytes sent upstream against the bytes budgets of `matching` (a worker's meter, sent to
   * the primary). @returns whether one of them is now past its figure ({@link BudgetMeter.exhausted}).
   */
  addBytesOut(matching: readonly Budget[], session: BudgetSubject, host: string, n: number): boolean {
    const now = this.now();
    const counters: Counter[] = [];
    const limits: number[] = [];
    for (const b of matching) {
      if (b.bytesOutPerHour === undefined) continue;
      counters.push(this.#counter(b, session, host));
      limits.push(b.bytesOutPerHour);
    }
    addBytes(counters, n, now);
    return bytesExhausted(counters, limits, now);
  }

  #counter(b: Budget, session: BudgetSubject, host: string): Counter {
    const key = this.#key(b, session, host);
    let c = this.#counters.get(key);
    if (c === undefined) this.#counters.set(key, (c = { reqStart: 0, requests: 0, bytesStart: 0, bytes: 0 }));
    return c;
  }

  /** Forgets counters whose windows have all ended. @returns counters removed. */
  sweep(now = this.now()): number {
    this.#lastSweep = now;
    let n = 0;
    for (const [k, c] of this.#counters) {
      const reqOpen = c.reqStart !== 0 && now - c.reqStart < MINUTE_MS;
      const bytesOpen = c.bytesStart !== 0 && now - c.bytesStart < HOUR_MS;
      if (!reqOpen && !bytesOpen) {
        this.#counters.delete(k);
        n++;
      }
    }
    return n;
  }

  /** Counters held (tests, metrics). */
  get size(): number {
    return this.#counters.size;
  }
}

function secondsLeft(endsAt: number, now: number): number {
  return Math.max(1, Math.ceil((endsAt - now) / 1000));
}

/** How long a worker waits for the primary's answer before refusing the call (fail closed), ms. */
const SHARED_ANSWER_TIMEOUT_MS = 5_000;

/** Worker → primary: check and count a call (`admit`), or count bytes (`bytes`). */
export type BudgetQuery =
  | {
      t: 'airlock:budget';
      id: number;
      budgets: Budget[];
      session: BudgetSubject;
      host: string;
      contentLength: number | null;
    }
  | {
      t: 'airlock:budget-bytes';
      id: number;
      budgets: Budget[];
      session: BudgetSubject;
      host: string;
      n: number;
    };

/** Primary → worker: the answer to a {@link BudgetQuery} with the same `id`. */
export type BudgetReply =
  | { t: 'airlock:budget-answer'; id: number; ok: true; bytes: boolean }
  | ({ t: 'airlock:budget-answer'; id: number; ok: false } & BudgetExceeded)
  | { t: 'airlock:budget-bytes-answer'; id: number; exhausted: boolean };

/** The primary's side: answers a worker's query from the one set of counters. */
export function answerBudgetQuery(counters: BudgetCounters, q: BudgetQuery): BudgetReply {
  if (q.t === 'airlock:budget-bytes') {
    return {
      t: 'airlock:budget-bytes-answer',
      id: q.id,
      exhausted: counters.addBytesOut(q.budgets, q.session, q.host, q.n),
    };
  }
  const r = counters.admitMatching(q.budgets, q.session, q.host, q.contentLength);
  if (r.ok) return { t: 'airlock:budget-answer', id: q.id, ok: true, bytes: r.meter !== null };
  return {
    t: 'airlock:budget-answer',
    id: q.id,
    ok: false,
    budget: r.budget,
    what: r.what,
    retryAfterSeconds: r.retryAfterSeconds,
  };
}

class SharedMeter implements BudgetMeter {
  #pending = 0;
  #flushing: NodeJS.Immediate | null = null;
  exhausted = false;

  constructor(
    private readonly owner: SharedBudgets,
    private readonly budgets: Budget[],
    private readonly session: BudgetSubject,
    private readonly host: string,
  ) {}

  addBytesOut(n: number): void {
    this.#pending += n;
    // Sent once per event-loop turn: the chunks of one turn in one message, before the upstream can
    // have answered them (so a later call, on any worker, is checked against these bytes).
    if (this.#flushing === null) this.#flushing = setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#flushing = null;
    const n = this.#pending;
    this.#pending = 0;
    if (n === 0) return;
    void this.owner
      .ask({
        t: 'airlock:budget-bytes',
        id: 0,
        budgets: this.budgets,
        session: this.session,
        host: this.host,
        n,
      })
      .then((r) => {
        if (r.t === 'airlock:budget-bytes-answer' && r.exhausted) this.exhausted = true;
      });
  }
}

/**
 * Budgets of a worker of a multi-worker gateway: matched here (the worker's policy snapshot), counted
 * in the primary ({@link answerBudgetQuery}) so that every worker sees the same counters. A call no
 * budget applies to costs nothing more; one that a budget applies to waits for one IPC round trip.
 * Bytes are sent once per event-loop turn (that turn's chunks in one message). No answer within 5 s
 * (a stuck primary): the call is refused as over its first budget (fail closed), `Retry-After: 1`.
 */
export class SharedBudgets implements BudgetAuthority {
  #next = 1;
  readonly #waiting = new Map<number, (r: BudgetReply) => void>();

  /** @param send delivers a query to the primary (process.send in a worker). */
  constructor(private readonly send: (q: BudgetQuery) => void) {}

  /** Hands an answer from the primary to the call waiting for it. */
  receive(r: BudgetReply): void {
    const done = this.#waiting.get(r.id);
    this.#waiting.delete(r.id);
    done?.(r);
  }

  /** Sends `q` (its id replaced) and resolves with the answer, or null after the timeout. */
  ask(q: BudgetQuery): Promise<BudgetReply | { t: 'timeout' }> {
    const id = this.#next++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        resolve({ t: 'timeout' });
      }, SHARED_ANSWER_TIMEOUT_MS);
      timer.unref();
      this.#waiting.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.send({ ...q, id });
    });
  }

  async admit(
    budgets: BudgetSet,
    session: BudgetSubject,
    host: string,
    method: string,
    contentLength: number | null,
  ): Promise<BudgetAdmission> {
    const matching = budgets.matching(session.role, host, method);
    if (matching.length === 0) return { ok: true, meter: null };
    const subject = { id: session.id, role: session.role };
    const r = await this.ask({
      t: 'airlock:budget',
      id: 0,
      budgets: matching,
      session: subject,
      host,
      contentLength,
    });
    if (r.t === 'timeout') {
      const first = matching[0]!;
      const what = first.requestsPerMinute !== undefined ? 'requestsPerMinute' : 'bytesOutPerHour';
      return { ok: false, budget: first, what, retryAfterSeconds: 1 };
    }
    if (r.t !== 'airlock:budget-answer') throw new Error('unexpected budget answer'); // unreachable
    if (!r.ok) return { ok: false, budget: r.budget, what: r.what, retryAfterSeconds: r.retryAfterSeconds };
    return { ok: true, meter: r.bytes ? new SharedMeter(this, matching, subject, host) : null };
  }
}
