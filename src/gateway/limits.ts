/**
 * Per-session limits of the gateway (`gateway.limits.*`, docs/security.md "Fairness and limits"):
 * how many HTTP requests one session has in flight, how many client connections and CONNECT tunnels
 * it holds open. A session at a limit gets 429 `limit_exceeded` with `Retry-After`, audited with
 * reason `limit_exceeded`; other sessions are not affected. Counts are per gateway process (replica).
 *
 * Connections are counted from the moment they are accepted, attributed to the session registered at
 * the source address (a sandbox's address is its network identity); one over the limit is marked and
 * its first request is refused, then the connection is closed. Requests are counted from admission
 * (after identification) until their response closes; tunnels until their socket closes.
 */
import type { Socket } from 'node:net';
import type { GatewayLimits } from '../config/schema.js';
import type { GatewaySession } from '../gateway-wire/session.js';
import type { Refusal } from './exchange.js';

/** Seconds a client is told to wait after a per-session limit (`Retry-After`). */
export const LIMIT_RETRY_AFTER_SECONDS = 1;

interface Usage {
  requests: number;
  connections: number;
  tunnels: number;
}

/** Which limit a refusal names (the `limit` field of the body; docs/config.md keys). */
export type LimitName = 'concurrentRequests' | 'connections' | 'tunnels';

const LIMIT_TEXT: Record<LimitName, string> = {
  concurrentRequests: 'requests in flight',
  connections: 'open connections',
  tunnels: 'open tunnels',
};

/** A 429 `limit_exceeded` refusal naming the limit. */
export function limitRefusal(
  session: GatewaySession,
  limit: LimitName,
  max: number,
  policyVersion: string | null,
): Refusal {
  return {
    kind: 'refuse',
    reason: 'limit_exceeded',
    rule: null,
    policyVersion,
    body: {
      error: 'limit_exceeded',
      detail:
        `session ${session.id} has reached the gateway's limit of ${max} ${LIMIT_TEXT[limit]} ` +
        `(gateway.limits.${limit}); retry when one has finished`,
      sessionId: session.id,
      limit,
    },
    headers: { 'retry-after': String(LIMIT_RETRY_AFTER_SECONDS) },
  };
}

/**
 * The per-session counters. An entry exists only while a session has something open, so memory
 * follows activity, not the number of sessions ever seen.
 */
export class SessionLimits {
  readonly #usage = new Map<string, Usage>();
  /** Sockets accepted while their session was at its connection limit: refused at first use. */
  readonly #overLimit = new WeakSet<Socket>();

  constructor(private readonly limits: GatewayLimits) {}

  #get(id: string): Usage {
    let u = this.#usage.get(id);
    if (u === undefined) this.#usage.set(id, (u = { requests: 0, connections: 0, tunnels: 0 }));
    return u;
  }

  #drop(id: string, u: Usage): void {
    if (u.requests === 0 && u.connections === 0 && u.tunnels === 0) this.#usage.delete(id);
  }

  /**
   * A client connection was accepted from the address of `session` (null: no session there; not
   * counted, and refused at identification anyway). Counted until it closes, or marked over the limit.
   */
  connectionOpened(socket: Socket, session: GatewaySession | null): void {
    if (session === null) return;
    const id = session.id;
    const u = this.#get(id);
    if (u.connections >= this.limits.connections) {
      this.#overLimit.add(socket);
      this.#drop(id, u);
      return;
    }
    u.connections++;
    socket.once('close', () => {
      u.connections--;
      if (this.#usage.get(id) === u) this.#drop(id, u);
    });
  }

  /** Whether `socket` was accepted over its session's connection limit (its requests are refused). */
  isOverConnectionLimit(socket: Socket): boolean {
    return this.#overLimit.has(socket);
  }

  /**
   * Admits one HTTP request of `session` arriving on `socket`: the connection must be within the
   * limit and the session below `concurrentRequests`. On admission the request is counted; call
   * {@link releaseRequest} once when its response closes.
   * @returns null when admitted, else the 429 refusal.
   */
  admitRequest(session: GatewaySession, socket: Socket, policyVersion: string | null): Refusal | null {
    if (this.#overLimit.has(socket))
      return limitRefusal(session, 'connections', this.limits.connections, policyVersion);
    const u = this.#get(session.id);
    if (u.requests >= this.limits.concurrentRequests) {
      this.#drop(session.id, u);
      return limitRefusal(session, 'concurrentRequests', this.limits.concurrentRequests, policyVersion);
    }
    u.requests++;
    return null;
  }

  /** Ends a request counted by {@link admitRequest}. */
  releaseRequest(sessionId: string): void {
    const u = this.#usage.get(sessionId);
    if (u === undefined) return;
    if (u.requests > 0) u.requests--;
    this.#drop(sessionId, u);
  }

  /**
   * Admits a CONNECT of `session` on `socket`; the tunnel counts until the socket closes.
   * @returns null when admitted, else the 429 refusal.
   */
  admitTunnel(session: GatewaySession, socket: Socket, policyVersion: string | null): Refusal | null {
    if (this.#overLimit.has(socket))
      return limitRefusal(session, 'connections', this.limits.connections, policyVersion);
    const id = session.id;
    const u = this.#get(id);
    if (u.tunnels >= this.limits.tunnels) {
      this.#drop(id, u);
      return limitRefusal(session, 'tunnels', this.limits.tunnels, policyVersion);
    }
    u.tunnels++;
    socket.once('close', () => {
      u.tunnels--;
      if (this.#usage.get(id) === u) this.#drop(id, u);
    });
    return null;
  }

  /** What a session has open now (tests, metrics). */
  usage(sessionId: string): Readonly<Usage> {
    return this.#usage.get(sessionId) ?? { requests: 0, connections: 0, tunnels: 0 };
  }

  /** Sessions with something open (the map's size: memory follows activity). */
  get activeSessions(): number {
    return this.#usage.size;
  }
}
