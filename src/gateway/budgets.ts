/**
 * The gateway's counters for the policy's budgets (budgets.yaml, src/policy/budgets.ts; docs/policy.md
 * "Budgets"): requests per minute and request-body bytes per hour, per session or per role, per host.
 * A call over a budget is refused with 429 `budget_exceeded`, `Retry-After` and the budget's name,
 * and audited with reason `budget_exceeded` (decide.ts step 5).
 *
 * Windows are fixed: a minute (requests) or an hour (bytes) starting with the first call counted.
 * Counters are gateway-local: with several gateway replicas each replica counts its own traffic, so
 * a role's budget holds per replica (a session's calls all go to one replica on Docker; on Kubernetes
 * the Service may spread them).
 */
import type { GatewaySession } from '../gateway-wire/session.js';
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

/** Counts request-body bytes of an admitted call against its budgets as they flow. */
export interface BudgetMeter {
  addBytesOut(n: number): void;
}

/** Why a call is over a budget. */
export interface BudgetExceeded {
  budget: Budget;
  /** Seconds until the window renews (at least 1). */
  retryAfterSeconds: number;
  /** Which of the budget's figures is used up. */
  what: 'requestsPerMinute' | 'bytesOutPerHour';
}

class Meter implements BudgetMeter {
  constructor(
    private readonly counters: readonly Counter[],
    private readonly now: () => number,
  ) {}
  addBytesOut(n: number): void {
    for (const c of this.counters) {
      if (c.bytesStart === 0 || this.now() - c.bytesStart >= HOUR_MS) {
        c.bytesStart = this.now();
        c.bytes = 0;
      }
      c.bytes += n;
    }
  }
}

/** The budget counters of one gateway process. */
export class BudgetCounters {
  readonly #counters = new Map<string, Counter>();
  #lastSweep: number;

  constructor(private readonly now: () => number = Date.now) {
    this.#lastSweep = now();
  }

  #key(b: Budget, session: GatewaySession, host: string): string {
    const who = b.per === 'role' ? `r:${session.role}` : `s:${session.id}`;
    return `${b.name}\u0000${who}\u0000${b.host === '*' ? '*' : host}`;
  }

  /**
   * Checks the call against every budget it falls under and, when none is used up, counts it.
   * @param contentLength the declared body size, or null (chunked or none): a declared body that would
   *   cross a bytes budget is refused up front.
   * @returns `{ok: true, meter}` (meter null when no bytes budget applies), or the first budget used up.
   */
  admit(
    budgets: BudgetSet,
    session: GatewaySession,
    host: string,
    method: string,
    contentLength: number | null,
  ): { ok: true; meter: BudgetMeter | null } | ({ ok: false } & BudgetExceeded) {
    const now = this.now();
    if (now - this.#lastSweep >= SWEEP_EVERY_MS) this.sweep(now);
    const matching = budgets.matching(session.role, host, method);
    if (matching.length === 0) return { ok: true, meter: null };
    const counters: Counter[] = [];
    for (const b of matching) {
      const key = this.#key(b, session, host);
      let c = this.#counters.get(key);
      if (c === undefined)
        this.#counters.set(key, (c = { reqStart: 0, requests: 0, bytesStart: 0, bytes: 0 }));
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
    let bytesCounters: Counter[] | null = null;
    counters.forEach((c, i) => {
      const b = matching[i]!;
      if (b.requestsPerMinute !== undefined) {
        if (c.reqStart === 0) {
          c.reqStart = now;
          c.requests = 0;
        }
        c.requests++;
      }
      if (b.bytesOutPerHour !== undefined) (bytesCounters ??= []).push(c);
    });
    return { ok: true, meter: bytesCounters ? new Meter(bytesCounters, this.now) : null };
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
