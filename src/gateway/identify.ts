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

/** Identity plus whether Proxy-Authorization carried credentials at all (407 vs 403 wording). */
export type CallerIdentity = Identity & { credentials: boolean };

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

  constructor(private readonly sessions: SessionTable) {}

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
    const id = this.sessions.identify(address, creds?.user ?? null, creds?.password ?? null, socket);
    if (id.ok && authHeader !== undefined)
      this.verified.set(socket, { header: authHeader, session: id.session });
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
