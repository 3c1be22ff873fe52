/**
 * OAuth2 access tokens for credentials of `apply: { type: oauth2-client-credentials }` and
 * `oauth2-refresh-token` (docs/credentials.md "OAuth2"): the gateway itself asks the token endpoint
 * for an access token (RFC 6749 4.4 client credentials, 6 refresh token), keeps it until shortly
 * before it expires, and sets `Authorization: Bearer <access token>` on the allowed calls its
 * bindings name.
 *
 * - **Who calls the token endpoint.** The gateway, on its own account: the call is not a session's,
 *   so no session rule decides it and it is not audited as a call (the calls that use the token
 *   are). It still takes the gateway's destination checks (resolve once, refuse loopback, private,
 *   link-local … unless `gateway.allowPrivateCidrs` covers the address; dial the checked address;
 *   TLS verified against the system roots plus `gateway.tls.upstreamCaFile`). No redirects.
 * - **Cache.** One token per credential and value version (a rotated secret or refresh token starts
 *   afresh). Used while `now < expiry - refreshSkewMs`; within the skew, the next call starts one
 *   refresh and still uses the current token; once expired, calls wait for the refresh. Without
 *   `expires_in` a token is kept {@link DEFAULT_TTL_MS}.
 * - **Single flight.** At most one token request per credential at a time; concurrent calls share
 *   its answer.
 * - **Failures.** A failed token request (unreachable, refused destination, non-2xx, no
 *   `access_token`, not `token_type` Bearer) makes the calls waiting for it fail with the reason (the
 *   gateway answers 503 `credential_unavailable`, nothing is sent upstream); the failure is kept
 *   {@link FAILURE_HOLD_MS} so a failing endpoint is asked at most about once a second.
 * - **Refresh-token rotation.** When the answer carries a new `refresh_token`, it replaces the held
 *   one in memory (the source still holds the original: after a gateway restart the original is used
 *   again, which an authorization server that revokes rotated tokens refuses — turn rotation off
 *   for this client, or update the source).
 * - **Several workers** (`gateway.workers` > 1, cluster.ts): a refresh-token credential's state (the
 *   rotated refresh token, the access token, the single flight) lives in the primary only; each
 *   worker's cache asks it (option `remote`, oauth2-shared.ts) instead of the token endpoint, so one
 *   refresh token is used once by the whole gateway. Client-credentials tokens are fetched by each
 *   worker (nothing rotates).
 * - **Several replicas** (Kubernetes, `oauth2RefreshState`): `remote` is the replicas' shared state
 *   in a Secret (oauth2-kube-store.ts), which refreshes through the {@link RefreshGrant} it is handed.
 */
import { isIP } from 'node:net';
import tls from 'node:tls';
import { Client } from 'undici';
import type { OAuth2Apply } from '../policy/credential-kinds.js';
import type { UpstreamResolver } from './resolve.js';

/** Lifetime assumed for a token answer without `expires_in`, ms. */
export const DEFAULT_TTL_MS = 60_000;
/** How long a failed token request is remembered (calls fail at once meanwhile), ms. */
export const FAILURE_HOLD_MS = 1_000;
/** Largest token endpoint answer read, bytes. */
const MAX_ANSWER_BYTES = 64 * 1024;

/** Options of {@link OAuth2Tokens}. */
export interface OAuth2TokensOptions {
  /** The gateway's destination checks (the same resolver as for forwarded calls). */
  resolver: UpstreamResolver;
  /** Extra CAs trusted for https token endpoints (PEM, `gateway.tls.upstreamCaFile`). */
  extraCaPem?: string;
  /** Refresh this long before a token's expiry, ms. @default 30000 */
  refreshSkewMs?: number;
  /** Connect + answer timeout of a token request, ms. @default 10000 */
  timeoutMs?: number;
  /** Called after each token request (observability; tests). */
  onTokenRequest?: (e: { credential: string; grant: string; ok: boolean; detail: string | null }) => void;
  /** Clock, ms. @default Date.now */
  now?: () => number;
  /**
   * Where a worker gets the tokens of `oauth2-refresh-token` credentials: the primary's cache
   * (oauth2-shared.ts), instead of the token endpoint. Unset: this process asks the endpoint.
   */
  remote?: (input: OAuth2Input, grant: RefreshGrant) => Promise<RemoteToken>;
}

/** The token endpoint's answer to one refresh-token grant: ttlMs in ms, refreshToken null when not rotated. */
export interface GrantAnswer {
  readonly accessToken: string;
  readonly ttlMs: number;
  readonly refreshToken: string | null;
}

/**
 * One refresh-token grant at the credential's token endpoint with `refreshToken`, through this
 * cache's destination checks, handed to `remote` (the replicas' shared store, oauth2-kube-store.ts,
 * refreshes with it). @throws Error with the endpoint's reason (not prefixed with the URL).
 */
export type RefreshGrant = (refreshToken: string) => Promise<GrantAnswer>;

/** A token from the primary's cache: the access token and how long it stays valid, ms. */
export interface RemoteToken {
  readonly accessToken: string;
  readonly ttlMs: number;
}

/** The primary could not get a token (its reason, already naming the endpoint). */
export class RemoteTokenError extends Error {
  override readonly name = 'RemoteTokenError';
}

/** What a credential needs to ask for a token. */
export interface OAuth2Input {
  /** Credential name (cache key, logs). */
  readonly name: string;
  readonly apply: OAuth2Apply;
  /** The value of `source`: the client secret (client credentials) or the refresh token. */
  readonly secret: string;
  /** The refresh-token grant's client secret (`clientSecret`), or null. */
  readonly clientSecret: string | null;
  /** The value versions, so a rotated source starts a new cache entry. */
  readonly version: string;
}

/** A token for a call, or why there is none. */
export type TokenResult = { ok: true; accessToken: string } | { ok: false; reason: string };

interface Entry {
  version: string;
  accessToken: string | null;
  expiresAtMs: number;
  /** The token a refresh replaced, still valid at the server until it expires (the leak stop keeps it). */
  previous: { token: string; expiresAtMs: number } | null;
  /** The refresh token to use next (rotated answers replace it). */
  refreshToken: string | null;
  inflight: Promise<TokenResult> | null;
  failure: { reason: string; untilMs: number } | null;
}

/** Access tokens of the OAuth2 credentials, fetched, cached and refreshed by the gateway. */
export class OAuth2Tokens {
  readonly #opts: OAuth2TokensOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #skew: number;
  readonly #timeout: number;
  readonly #now: () => number;
  readonly #ca: string[];
  readonly #listeners = new Set<() => void>();

  constructor(opts: OAuth2TokensOptions) {
    this.#opts = opts;
    this.#skew = opts.refreshSkewMs ?? 30_000;
    this.#timeout = opts.timeoutMs ?? 10_000;
    this.#now = opts.now ?? Date.now;
    if (!(this.#skew >= 0)) throw new RangeError('refreshSkewMs must be >= 0');
    this.#ca = [...tls.getCACertificates('default'), ...(opts.extraCaPem ? [opts.extraCaPem] : [])];
  }

  /** The access token for `input`'s credential (see the module comment for caching and failures). */
  async token(input: OAuth2Input): Promise<TokenResult> {
    const e = this.#entry(input);
    const now = this.#now();
    if (e.accessToken !== null && now < e.expiresAtMs) {
      if (now >= e.expiresAtMs - this.#skew && e.inflight === null) void this.#fetch(e, input);
      return { ok: true, accessToken: e.accessToken };
    }
    if (e.failure && now < e.failure.untilMs) return { ok: false, reason: e.failure.reason };
    return e.inflight ?? this.#fetch(e, input);
  }

  /**
   * The primary's answer to a worker (oauth2-shared.ts): a token valid beyond the refresh skew, waiting
   * for a refresh (shared with every other asker: single flight) when the held one is within it.
   * @returns the result and, when ok, how long the token stays valid, ms.
   */
  async fresh(input: OAuth2Input): Promise<{ result: TokenResult; ttlMs: number }> {
    const e = this.#entry(input);
    const now = this.#now();
    if (e.accessToken !== null && now < e.expiresAtMs - this.#skew)
      return { result: { ok: true, accessToken: e.accessToken }, ttlMs: e.expiresAtMs - now };
    if (e.failure && now < e.failure.untilMs && !(e.accessToken !== null && now < e.expiresAtMs))
      return { result: { ok: false, reason: e.failure.reason }, ttlMs: 0 };
    const result = await (e.inflight ?? this.#fetch(e, input));
    return { result, ttlMs: result.ok ? Math.max(0, e.expiresAtMs - this.#now()) : 0 };
  }

  #entry(input: OAuth2Input): Entry {
    let e = this.#entries.get(input.name);
    if (!e || e.version !== input.version) {
      e = {
        version: input.version,
        accessToken: null,
        expiresAtMs: 0,
        previous: null,
        refreshToken: input.apply.type === 'oauth2-refresh-token' ? input.secret : null,
        inflight: null,
        failure: null,
      };
      this.#entries.set(input.name, e);
    }
    return e;
  }

  /** Forgets the tokens of credentials not named (a policy without them). */
  retain(names: ReadonlySet<string>): void {
    let changed = false;
    for (const n of this.#entries.keys()) {
      if (!names.has(n)) {
        this.#entries.delete(n);
        changed = true;
      }
    }
    if (changed) this.#notify();
  }

  /**
   * The access tokens held now, as `[credential name, token]`: the current one and the one it replaced
   * while that is still unexpired (the leak stop searches for them: a token an upstream echoed to the
   * agent is refused anywhere but where the gateway sets it).
   */
  tokens(): [string, string][] {
    const out: [string, string][] = [];
    const now = this.#now();
    for (const [name, e] of this.#entries) {
      if (e.accessToken !== null) out.push([name, e.accessToken]);
      if (e.previous !== null && now < e.previous.expiresAtMs) out.push([name, e.previous.token]);
    }
    return out;
  }

  /** Calls `fn` after the held tokens changed. @returns a function that unsubscribes. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #notify(): void {
    for (const fn of this.#listeners) {
      try {
        fn();
      } catch {
        // a listener's failure is not the cache's
      }
    }
  }

  #fetch(e: Entry, input: OAuth2Input): Promise<TokenResult> {
    const run = this.#request(e, input)
      .then(
        (answer): TokenResult => {
          const changed = e.accessToken !== answer.accessToken;
          if (changed && e.accessToken !== null)
            e.previous = { token: e.accessToken, expiresAtMs: e.expiresAtMs };
          e.accessToken = answer.accessToken;
          e.expiresAtMs = this.#now() + answer.ttlMs;
          if (changed) this.#notify();
          if (answer.refreshToken !== null) e.refreshToken = answer.refreshToken;
          e.failure = null;
          this.#opts.onTokenRequest?.({
            credential: input.name,
            grant: grantOf(input),
            ok: true,
            detail: null,
          });
          return { ok: true, accessToken: answer.accessToken };
        },
        (err: unknown): TokenResult => {
          const reason =
            err instanceof RemoteTokenError
              ? err.message
              : `token endpoint ${input.apply.tokenUrl}: ${(err as Error).message}`;
          e.failure = { reason, untilMs: this.#now() + FAILURE_HOLD_MS };
          this.#opts.onTokenRequest?.({
            credential: input.name,
            grant: grantOf(input),
            ok: false,
            detail: reason,
          });
          // A token still valid (a refresh ahead of expiry failed) keeps serving until it expires.
          if (e.accessToken !== null && this.#now() < e.expiresAtMs)
            return { ok: true, accessToken: e.accessToken };
          return { ok: false, reason };
        },
      )
      .finally(() => {
        if (e.inflight === run) e.inflight = null;
      });
    e.inflight = run;
    return run;
  }

  async #request(e: Entry, input: OAuth2Input): Promise<GrantAnswer> {
    if (this.#opts.remote && input.apply.type === 'oauth2-refresh-token') {
      // the primary, or the replicas' shared store, holds the refresh token
      const t = await this.#opts.remote(input, (rt) => this.#post(input, rt));
      return { accessToken: t.accessToken, ttlMs: t.ttlMs, refreshToken: null };
    }
    return this.#post(input, e.refreshToken ?? input.secret);
  }

  async #post(input: OAuth2Input, refreshToken: string): Promise<GrantAnswer> {
    const a = input.apply;
    const form = new URLSearchParams();
    let clientSecret: string | null;
    if (a.type === 'oauth2-client-credentials') {
      form.set('grant_type', 'client_credentials');
      clientSecret = input.secret;
    } else {
      form.set('grant_type', 'refresh_token');
      form.set('refresh_token', refreshToken);
      clientSecret = input.clientSecret;
    }
    if (a.scope !== undefined) form.set('scope', a.scope);
    if (a.resource !== undefined) form.set('resource', a.resource);
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    if (clientSecret !== null && a.clientAuth === 'basic') {
      // RFC 6749 2.3.1: each part form-urlencoded before Basic.
      const enc = (s: string): string => encodeURIComponent(s).replace(/%20/g, '+');
      headers['authorization'] =
        `Basic ${Buffer.from(`${enc(a.clientId)}:${enc(clientSecret)}`).toString('base64')}`;
    } else {
      form.set('client_id', a.clientId);
      if (clientSecret !== null) form.set('client_secret', clientSecret);
    }

    const url = new URL(a.tokenUrl);
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname.toLowerCase();
    const resolution = await this.#opts.resolver.resolve(host);
    if (!resolution.ok) {
      throw new Error(
        resolution.reason === 'refused'
          ? `${host} resolves to a ${resolution.addressClass} address, which the gateway does not dial (gateway.allowPrivateCidrs)`
          : `cannot resolve ${host} (${resolution.detail})`,
      );
    }
    const https = url.protocol === 'https:';
    const port = url.port !== '' ? Number(url.port) : https ? 443 : 80;
    const addr = isIP(resolution.address) === 6 ? `[${resolution.address}]` : resolution.address;
    const client = new Client(`${url.protocol}//${addr}:${port}`, {
      connectTimeout: this.#timeout,
      headersTimeout: this.#timeout,
      bodyTimeout: this.#timeout,
      connect: https
        ? { servername: isIP(host) === 0 ? host : undefined, ca: this.#ca, rejectUnauthorized: true }
        : {},
    });
    try {
      const res = await client.request({
        method: 'POST',
        path: url.pathname + url.search,
        headers: { ...headers, host: url.host },
        body: form.toString(),
      });
      let size = 0;
      const chunks: Buffer[] = [];
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_ANSWER_BYTES) throw new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`);
        chunks.push(chunk as Buffer);
      }
      const text = Buffer.concat(chunks).toString('utf8');
      let body: Record<string, unknown> = {};
      try {
        const parsed: unknown = JSON.parse(text);
        if (parsed !== null && typeof parsed === 'object') body = parsed as Record<string, unknown>;
      } catch {
        // not JSON: reported below by status or missing fields
      }
      if (res.statusCode < 200 || res.statusCode > 299) {
        const code = typeof body['error'] === 'string' ? ` (${body['error']})` : '';
        throw new Error(`answered ${res.statusCode}${code}`);
      }
      const token = body['access_token'];
      if (typeof token !== 'string' || token === '') throw new Error('answer has no access_token');
      const type = body['token_type'];
      if (typeof type !== 'string' || type.toLowerCase() !== 'bearer')
        throw new Error(`token_type ${JSON.stringify(type)} is not Bearer`);
      const expiresIn = body['expires_in'];
      const ttlMs =
        typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0
          ? expiresIn * 1000
          : DEFAULT_TTL_MS;
      const rt = body['refresh_token'];
      return { accessToken: token, ttlMs, refreshToken: typeof rt === 'string' && rt !== '' ? rt : null };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw code && !(err as Error).message.includes(code)
        ? new Error(`${(err as Error).message} (${code})`)
        : err;
    } finally {
      void client.close().catch(() => undefined);
    }
  }
}

function grantOf(i: OAuth2Input): string {
  return i.apply.type === 'oauth2-client-credentials' ? 'client_credentials' : 'refresh_token';
}
