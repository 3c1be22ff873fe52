/**
 * Step 2 of the gateway's request path: who is calling (DESIGN.md property 2). A plain request or a
 * CONNECT is identified by its source address together with the session credential in
 * Proxy-Authorization; a request inside an intercepted tunnel by the tunnel's session, which must
 * still be live. A caller that is not identified gets a {@link Refusal}.
 */
import type { Socket } from 'node:net';
import type { GatewaySession } from '../gateway-wire/session.js';
import type { Refusal } from './exchange.js';
import type { Identity, SessionTable } from './sessions.js';

/**
 * Identity plus whether Proxy-Authorization carried credentials at all (407 vs 403 wording).
 * `auth_backoff`: the source address failed authentication too often and is refused for a while
 * without its credential being checked ({@link AuthBackoff}).
 */
export type CallerIdentity = (
  | Identity
  | {
      ok: false;
      reason: 'auth_backoff';
      session: GatewaySession | null;
      /** Whether this refusal starts the backoff (audited by itself) or falls inside it (summarised). */
      first: boolean;
    }
) & { credentials: boolean };

/** Failed identifications per source address that start a backoff, within {@link AUTH_WINDOW_MS}. */
export const AUTH_FAILURES_ALLOWED = 20;
/** Window in which failures are counted, ms. */
export const AUTH_WINDOW_MS = 10_000;
/** How long a source address is refused once it exceeded the failures allowed, ms. */
export const AUTH_BACKOFF_MS = 10_000;

interface FailureWindow {
  startMs: number;
  failures: number;
  /** While backing off: until when, and how many refusals were not audited one by one. */
  blockedUntilMs: number;
  suppressed: number;
  session: GatewaySession | null;
  /** Whether any failure came from an address with a registered session (a credential guessed). */
  withSession: boolean;
}

/**
 * Rate-limits failed authentication per source address (a sandbox guessing credentials, or a
 * process that is not a session): after {@link AUTH_FAILURES_ALLOWED} failures in
 * {@link AUTH_WINDOW_MS}, the address is answered 429 `too_many_auth_failures` for
 * {@link AUTH_BACKOFF_MS} without its credential being checked. The first refusal of a burst is
 * audited; the rest are counted and audited as one summarising event (`suppressed: N`) when the
 * backoff ends, so a burst of 300 attempts is 2 events, not 300. Bounded: at most 10,000 addresses
 * are tracked (the oldest windows are dropped first).
 */
export class AuthBackoff {
  private readonly windows = new Map<string, FailureWindow>();

  constructor(
    private readonly summarize: (address: string, session: GatewaySession | null, suppressed: number) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Whether `address` is backing off now; counts the refusal as suppressed when it is.
   * @param registered whether a session is registered at `address` now: a window made only of
   *   failures from when none was (a sandbox calling a restarted gateway before the control plane
   *   resynced it, issue 15) ends at once — the registration is the control plane's word for it.
   */
  blocked(address: string, registered = false): boolean {
    const w = this.windows.get(address);
    if (w === undefined) return false;
    if (registered && !w.withSession) {
      this.end(address, w);
      return false;
    }
    if (this.now() >= w.blockedUntilMs) return false;
    w.suppressed++;
    return true;
  }

  /** Records a failed identification. @returns true when this failure starts a backoff. */
  failed(address: string, session: GatewaySession | null): boolean {
    const now = this.now();
    let w = this.windows.get(address);
    if (w === undefined || now - w.startMs >= AUTH_WINDOW_MS) {
      if (w === undefined && this.windows.size >= 10_000) {
        const oldest = this.windows.keys().next().value;
        if (oldest !== undefined) this.windows.delete(oldest);
      }
      w = { startMs: now, failures: 0, blockedUntilMs: 0, suppressed: 0, session, withSession: false };
      this.windows.delete(address);
      this.windows.set(address, w);
    }
    w.failures++;
    w.session = session ?? w.session;
    if (session !== null) w.withSession = true;
    if (w.failures <= AUTH_FAILURES_ALLOWED) return false;
    w.blockedUntilMs = now + AUTH_BACKOFF_MS;
    const timer = setTimeout(() => this.end(address, w), AUTH_BACKOFF_MS);
    timer.unref();
    return true;
  }

  private end(address: string, w: FailureWindow): void {
    if (this.windows.get(address) === w) this.windows.delete(address);
    if (w.suppressed > 0) this.summarize(address, w.session, w.suppressed);
    w.suppressed = 0; // summarised once (the backoff's timer may end it again)
  }
}

const PROXY_AUTHENTICATE = { 'proxy-authenticate': 'Basic realm="airlock"' };

function decodeURIComponentSafe(s: string): string {
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** `Basic base64(user:password)` → its parts (percent-decoded, as proxy URLs carry them); else null. */
export function parseProxyAuthorization(
  header: string | undefined,
): { user: string; password: string } | null {
  if (!header) return null;
  const space = header.indexOf(' ');
  if (space < 0 || header.slice(0, space).toLowerCase() !== 'basic') return null;
  const decoded = Buffer.from(header.slice(space + 1).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return {
    user: decodeURIComponentSafe(decoded.slice(0, colon)),
    password: decodeURIComponentSafe(decoded.slice(colon + 1)),
  };
}

/** Identifies callers against the session table, remembering verified credentials per connection. */
export class Identifier {
  /** Proxy-Authorization header verified on a client connection, and for which registration. */
  private readonly verified = new WeakMap<Socket, { header: string; session: GatewaySession }>();

  private readonly backoff: AuthBackoff;

  /**
   * @param summarize called when a backoff ends with the refusals that were not audited one by one
   *   (see {@link AuthBackoff}); the gateway audits them as one event.
   */
  constructor(
    private readonly sessions: SessionTable,
    summarize: (address: string, session: GatewaySession | null, suppressed: number) => void = () => {},
  ) {
    this.backoff = new AuthBackoff(summarize);
  }

  /**
   * Identifies the caller of a request on `socket` from `address` (already normalised). A keep-alive
   * connection that presents the exact Proxy-Authorization header already verified on it, for a
   * registration that is still the one at this address and not expired, skips the SHA-256 (the
   * header string is compared, not the secret; a different header is verified in full).
   */
  identify(address: string, authHeader: string | undefined, socket: Socket): CallerIdentity {
    const memo = this.verified.get(socket);
    if (memo && authHeader === memo.header && this.sessions.stillValid(address, memo.session)) {
      return { ok: true, session: memo.session, credentials: true };
    }
    const creds = parseProxyAuthorization(authHeader);
    if (this.backoff.blocked(address, this.sessions.atAddress(address) !== null)) {
      const session = this.sessions.atAddress(address);
      return { ok: false, reason: 'auth_backoff', session, first: false, credentials: creds !== null };
    }
    const id = this.sessions.identify(address, creds?.user ?? null, creds?.password ?? null, socket);
    if (id.ok) {
      if (authHeader !== undefined) this.verified.set(socket, { header: authHeader, session: id.session });
      return { ...id, credentials: true };
    }
    // A request without credentials is the normal first step of many clients (407, then retry with
    // them); an ended session is told so. Wrong or foreign credentials and unknown addresses count.
    if ((creds !== null || id.reason === 'unknown_session') && id.reason !== 'session_expired') {
      if (this.backoff.failed(address, id.session)) {
        return {
          ok: false,
          reason: 'auth_backoff',
          session: id.session,
          first: true,
          credentials: creds !== null,
        };
      }
    }
    return { ...id, credentials: creds !== null };
  }

  /** Inside a tunnel: the tunnel's session, refused once it has ended (a request racing the kill switch). */
  stillLive(session: GatewaySession, policyVersion: string | null): Refusal | null {
    if (this.sessions.isLive(session.id)) return null;
    return sessionExpired(session.id, policyVersion);
  }
}

function sessionExpired(sessionId: string | null, policyVersion: string | null): Refusal {
  return {
    kind: 'refuse',
    reason: 'session_expired',
    rule: null,
    policyVersion,
    body: { error: 'session_expired', detail: 'the session has ended (TTL or kill switch)', sessionId },
  };
}

/** The answer to a caller that could not be identified: 407 asking for credentials, or 403 expired. */
export function identityRefusal(
  id: Exclude<CallerIdentity, { ok: true }>,
  policyVersion: string | null,
): Refusal {
  const sessionId = id.session?.id ?? null;
  if (id.reason === 'session_expired') return sessionExpired(sessionId, policyVersion);
  if (id.reason === 'auth_backoff') {
    return {
      kind: 'refuse',
      reason: 'auth_backoff',
      rule: null,
      policyVersion,
      body: {
        error: 'too_many_auth_failures',
        detail: `too many failed authentications from this address; retry in ${AUTH_BACKOFF_MS / 1000} s`,
        sessionId,
      },
      headers: { 'retry-after': String(AUTH_BACKOFF_MS / 1000) },
      // Only the refusal that starts a burst is audited by itself; the rest as one summary.
      audit: id.first,
    };
  }
  if (!id.credentials) {
    return {
      kind: 'refuse',
      reason: id.reason,
      rule: null,
      policyVersion,
      body: {
        error: 'proxy_auth_required',
        detail: 'send the session credential in Proxy-Authorization',
        sessionId,
      },
      headers: PROXY_AUTHENTICATE,
    };
  }
  const detail =
    id.reason === 'unknown_session'
      ? 'no session is registered at this address'
      : id.reason === 'address_mismatch'
        ? 'the credential belongs to another session than the one at this address'
        : 'invalid session credential';
  return {
    kind: 'refuse',
    reason: id.reason,
    rule: null,
    policyVersion,
    body: { error: 'identity_refused', detail, sessionId },
    headers: PROXY_AUTHENTICATE,
  };
}
