import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { GatewaySession } from '../gateway-wire/session.js';

/** Outcome of identifying the caller of one proxy request (DESIGN.md property 2). */
export type Identity =
  | { ok: true; session: GatewaySession }
  | {
      ok: false;
      reason: 'unknown_session' | 'bad_credential' | 'address_mismatch' | 'session_expired';
      /** The session registered at the caller's address, if any (for the audit trail). */
      session: GatewaySession | null;
    };

interface Entry {
  session: GatewaySession;
  digest: Buffer;
  sockets: Set<Socket>;
  /**
   * When the session expires on the monotonic clock, ms: `expiresAtMs` (wall time, from the control
   * plane) converted once, when the session is learnt, so a wall-clock jump later neither extends
   * nor shortens its TTL (issue 15 "clock jumps").
   */
  deadline: number;
}

/** Strips the IPv4-mapped prefix node reports on dual-stack sockets (`::ffff:10.0.0.3`). */
export function normalizeRemoteAddress(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * The gateway's view of live sessions, keyed by sandbox address. A session is known here only while
 * the control plane says so and its TTL has not run out; `revoke` also destroys every client socket
 * the session has open, so a keep-alive connection cannot carry one more request.
 */
/** Ended sessions remembered per address, so a late call is told `session_expired` (bounded). */
const ENDED_LIMIT = 4_096;
/** How long an ended session is remembered, ms. */
const ENDED_TTL_MS = 10 * 60_000;

export class SessionTable {
  private readonly byAddress = new Map<string, Entry>();
  private readonly byId = new Map<string, Entry>();
  /** Sessions that ended (TTL, kill switch), by address, with the time they ended (insertion order). */
  private readonly ended = new Map<string, { session: GatewaySession; atMs: number }>();

  /**
   * @param wall wall clock, epoch ms: converts a session's `expiresAtMs` once, when it is learnt.
   * @param monotonic clock every TTL check uses, ms (performance.now; `now` itself when a test gives
   *   only `now`, so one fake clock drives both).
   */
  constructor(
    private readonly wall: () => number = Date.now,
    private readonly now: () => number = wall === Date.now ? () => performance.now() : wall,
  ) {}

  /** Adds or replaces a session. A different session already at the same address is revoked first. */
  upsert(session: GatewaySession): void {
    const old = this.byId.get(session.id);
    if (old && old.session.address !== session.address) this.revoke(session.id);
    const other = this.byAddress.get(session.address);
    if (other && other.session.id !== session.id) this.revoke(other.session.id);
    this.ended.delete(session.address);
    const prior = this.byId.get(session.id);
    const entry: Entry = {
      session,
      digest: Buffer.from(session.credentialSha256, 'hex'),
      sockets: prior?.sockets ?? new Set(),
      // The same expiry learnt again (a resync) keeps its deadline: a wall clock set back since
      // cannot stretch it; a new expiresAtMs (the control plane changed it) is converted anew.
      deadline:
        prior && prior.session.expiresAtMs === session.expiresAtMs
          ? prior.deadline
          : this.now() + (session.expiresAtMs - this.wall()),
    };
    this.byAddress.set(session.address, entry);
    this.byId.set(session.id, entry);
  }

  /** Replaces the whole table (control-plane resync); sessions not in `sessions` are revoked. */
  replaceAll(sessions: readonly GatewaySession[]): void {
    const keep = new Set(sessions.map((s) => s.id));
    for (const id of [...this.byId.keys()]) if (!keep.has(id)) this.revoke(id);
    for (const s of sessions) this.upsert(s);
  }

  /**
   * Kill switch: forget the session and destroy its open sockets (all but `spare`: the socket of a
   * request being answered `session_expired`, which closes after that answer). The session is
   * remembered by address for 10 minutes so later calls from there are told `session_expired`.
   * Returns the number of sockets closed; revoking an unknown id is a no-op.
   */
  revoke(id: string, spare?: Socket): number {
    const entry = this.byId.get(id);
    if (!entry) return 0;
    this.byId.delete(id);
    if (this.byAddress.get(entry.session.address) === entry) {
      this.byAddress.delete(entry.session.address);
      this.remember(entry.session);
    }
    let n = 0;
    for (const socket of entry.sockets) {
      if (socket === spare) continue;
      socket.destroy();
      n++;
    }
    entry.sockets.clear();
    return n;
  }

  private remember(session: GatewaySession): void {
    const now = this.now();
    this.ended.delete(session.address);
    this.ended.set(session.address, { session, atMs: now });
    for (const [address, e] of this.ended) {
      if (this.ended.size <= ENDED_LIMIT && now - e.atMs < ENDED_TTL_MS) break;
      this.ended.delete(address);
    }
  }

  get size(): number {
    return this.byId.size;
  }

  list(): GatewaySession[] {
    return [...this.byId.values()].map((e) => e.session);
  }

  /** The session registered at `address`, whatever the credential. */
  atAddress(address: string): GatewaySession | null {
    return this.byAddress.get(address)?.session ?? null;
  }

  /**
   * The session registered at `address` if it is exactly `session` (same registration, not replaced
   * or revoked since) and not expired; used to skip re-hashing a credential already verified on the
   * same keep-alive connection.
   */
  stillValid(address: string, session: GatewaySession): boolean {
    const entry = this.byAddress.get(address);
    return entry?.session === session && this.now() < entry.deadline;
  }

  /**
   * Identifies a request: the credential (`user` = session id, `password` = secret) must belong to
   * the session registered at the request's source address, and the session must not be expired.
   * A call from the address of a session that ended (TTL, kill switch) in the last 10 minutes is
   * `session_expired`. @param socket the request's socket, kept open for the answer on expiry.
   */
  identify(address: string, user: string | null, password: string | null, socket?: Socket): Identity {
    const entry = this.byAddress.get(address);
    if (!entry) {
      const ended = this.ended.get(address);
      if (ended && this.now() - ended.atMs < ENDED_TTL_MS)
        return { ok: false, reason: 'session_expired', session: ended.session };
      return { ok: false, reason: 'unknown_session', session: null };
    }
    const session = entry.session;
    if (user === null || password === null) return { ok: false, reason: 'bad_credential', session };
    if (user !== session.id) return { ok: false, reason: 'address_mismatch', session };
    const digest = createHash('sha256').update(password).digest();
    if (digest.length !== entry.digest.length || !timingSafeEqual(digest, entry.digest)) {
      return { ok: false, reason: 'bad_credential', session };
    }
    if (this.now() >= entry.deadline) {
      // The socket of this very request stays open long enough to carry the 403 `session_expired`.
      this.revoke(session.id, socket);
      return { ok: false, reason: 'session_expired', session };
    }
    return { ok: true, session };
  }

  /**
   * Revokes every session whose TTL has run out (closing its sockets, tunnels included), so expiry
   * holds even while the control plane is unreachable. @returns the number of sessions revoked.
   */
  sweepExpired(): number {
    const now = this.now();
    let n = 0;
    for (const [id, e] of this.byId) {
      if (now >= e.deadline) {
        this.revoke(id);
        n++;
      }
    }
    return n;
  }

  /** Whether the session is registered and not expired (checked per request inside tunnels). */
  isLive(id: string): boolean {
    const entry = this.byId.get(id);
    return entry !== undefined && this.now() < entry.deadline;
  }

  /** Tracks a client socket of a session so `revoke` can close it. */
  attachSocket(sessionId: string, socket: Socket): void {
    const entry = this.byId.get(sessionId);
    if (!entry || entry.sockets.has(socket)) return;
    entry.sockets.add(socket);
    socket.once('close', () => entry.sockets.delete(socket));
  }
}
