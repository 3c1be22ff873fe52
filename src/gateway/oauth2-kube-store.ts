/**
 * OAuth2 refresh-token credentials across the replicas of a gateway Deployment (Kubernetes,
 * `replicas` > 1; docs/credentials.md "Several replicas"): the state of each refresh-token credential
 * — the current refresh token, the access token and its expiry, who is refreshing — lives in one
 * Secret of the gateway namespace (`oauth2RefreshState`, the chart's `<gateway>-oauth2-state`), one
 * data key per credential, updated with optimistic concurrency (a replace carrying the
 * `resourceVersion` read: the API server refuses it 409 when another replica wrote in between).
 * So an authorization server that rotates refresh tokens and revokes a used one (RFC 9700 4.14.2)
 * sees each refresh token presented once by all replicas together.
 *
 * A replica needing a token ({@link KubeRefreshState.token}, plugged into OAuth2Tokens' `remote`):
 * 1. reads the Secret; a stored access token valid beyond the refresh skew is used as it is;
 * 2. otherwise it takes the credential's **refresh lease** (holder, random id, expiry: a compare-and-
 *    swap write); a replica that loses the race re-reads; while another replica holds an unexpired
 *    lease it polls until the new token is there (or the lease expires: it takes it over);
 * 3. the lease holder presents the stored refresh token at the token endpoint and writes the rotated
 *    refresh token, the access token and its expiry back, clearing the lease (retrying the write
 *    on conflicts while the lease is still its own).
 *
 * Faults (each ends in the gateway's 503 `credential_unavailable` with the reason, nothing sent):
 * - **The token endpoint refuses the refresh token** (`invalid_grant`): the chain is **lost** — stored
 *   with the reason, every replica answers it without asking the endpoint again until the credential
 *   is re-seeded (a new refresh token in its source; a new client secret alone keeps the chain). When a lease holder's lease
 *   had expired without a write-back (it crashed or stalled after the endpoint may have rotated the
 *   token), the reason says so.
 * - **The lease holder fails otherwise** (endpoint unreachable, 5xx): the failure is stored for
 *   {@link FAILURE_HOLD_MS} and answered to every replica meanwhile; the next ask retries.
 * - **The API server unreachable / refusing**: the asking replica's call fails with that reason;
 *   OAuth2Tokens keeps using a held access token until it expires (then 503).
 * - **The write-back fails** after the endpoint answered (API server gone for longer than the
 *   retries, the lease taken over): the rotated refresh token is lost; this call still gets its access
 *   token, the error is logged, and the next refresh (by the taker of the expired lease) is refused:
 *   lost, as above.
 *
 * Replicas compare lease and token expiries with their own wall clocks: they must agree within a few
 * seconds (NTP), far below the lease ({@link DEFAULT_LEASE_MS}).
 *
 * The refresh token and access tokens are written only to this Secret (never logged); the gateway's
 * ServiceAccount may get and update only it (the chart's Role names it).
 */
import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import type { GatewayServiceSettings } from '../gateway-wire/config.js';
import { kubeFailure, loadKubeConfig } from '../kube/client.js';
import {
  FAILURE_HOLD_MS,
  RemoteTokenError,
  type OAuth2Input,
  type RefreshGrant,
  type RemoteToken,
} from './oauth2.js';

/** How long a replica may hold a credential's refresh lease, ms (covers a token request's 10 s timeout). */
export const DEFAULT_LEASE_MS = 15_000;
/** How often a replica waiting for another's refresh re-reads the state, ms. */
export const DEFAULT_POLL_MS = 200;
/** How long one ask may take in all (reads, waits, a takeover and its refresh), ms. */
export const DEFAULT_ASK_TIMEOUT_MS = 25_000;
/** Earlier seeds remembered per credential (a replica whose source still holds one uses the chain). */
const RETIRED_KEPT = 16;

/** One credential's shared state: the JSON in the Secret's data key named after the credential. */
export interface StoredRefreshState {
  /**
   * Which source value the chain started from: the first 16 hex digits of the SHA-256 of the source's
   * refresh token ({@link seedOf}); a client secret rotated alone keeps the chain.
   */
  seed: string;
  /** Earlier seeds, newest first: a replica whose source still holds one uses this chain. */
  retired: string[];
  /** The refresh token to present next. */
  refreshToken: string;
  /** The current access token, or null. */
  accessToken: string | null;
  /** Its expiry, ms since the epoch (0 without a token). */
  expiresAtMs: number;
  /** The replica refreshing now, until `untilMs` (ms since the epoch); null when nobody is. */
  lease: { holder: string; id: string; untilMs: number } | null;
  /** Why the chain cannot be used any more (needs re-seeding), or null. */
  lost: string | null;
  /** The last refresh's failure, answered to every replica until `untilMs`. */
  failure: { reason: string; untilMs: number } | null;
}

/** The subset of a pino logger used here. */
interface StoreLogger {
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Options of {@link KubeRefreshState}. */
export interface KubeRefreshStateOptions {
  kc: KubeConfig;
  /** Namespace of the state Secret (the gateway's own). */
  namespace: string;
  /** The state Secret's name (it must exist: the chart creates it empty). */
  secretName: string;
  /** Refresh this long before a stored token's expiry, ms (the gateway's `oauth2RefreshSkewMs`). */
  refreshSkewMs: number;
  /** Lease length, ms. @default DEFAULT_LEASE_MS */
  leaseMs?: number;
  /** Re-read period while another replica refreshes, ms. @default DEFAULT_POLL_MS */
  pollMs?: number;
  /** Longest time one ask takes before failing, ms. @default DEFAULT_ASK_TIMEOUT_MS */
  askTimeoutMs?: number;
  /** This replica's name in leases. @default `<hostname>/<pid>` (the Pod name in a Pod) */
  holder?: string;
  /** Clock, ms since the epoch. @default Date.now */
  now?: () => number;
  logger?: StoreLogger;
}

/** The refresh-token chains of this gateway's credentials, shared by its replicas through one Secret. */
export class KubeRefreshState {
  readonly #core: CoreV1Api;
  readonly #opts: KubeRefreshStateOptions;
  readonly #leaseMs: number;
  readonly #pollMs: number;
  readonly #askMs: number;
  readonly #holder: string;
  readonly #now: () => number;

  /** @throws RangeError on a bad name or duration. */
  constructor(opts: KubeRefreshStateOptions) {
    if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(opts.secretName))
      throw new RangeError(`oauth2RefreshState.secretName: "${opts.secretName}" is not a Secret name`);
    this.#opts = opts;
    this.#core = opts.kc.makeApiClient(CoreV1Api);
    this.#leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    this.#pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
    this.#askMs = opts.askTimeoutMs ?? DEFAULT_ASK_TIMEOUT_MS;
    this.#holder = opts.holder ?? `${os.hostname()}/${process.pid}`;
    this.#now = opts.now ?? Date.now;
    for (const [k, v] of [
      ['leaseMs', this.#leaseMs],
      ['pollMs', this.#pollMs],
      ['askTimeoutMs', this.#askMs],
    ] as const)
      if (!(Number.isInteger(v) && v > 0))
        throw new RangeError(`oauth2RefreshState.${k} must be a positive integer`);
  }

  /** `namespace/name` of the state Secret (messages). */
  get where(): string {
    return `${this.#opts.namespace}/${this.#opts.secretName}`;
  }

  /**
   * A token for a refresh-token credential valid beyond the refresh skew: the stored one, or one
   * refreshed by this replica (holding the lease) or by another (waited for). Plug into OAuth2Tokens'
   * `remote` option.
   * @throws RemoteTokenError with the reason (the endpoint's, the API server's, a lost chain's).
   */
  readonly token = async (input: OAuth2Input, grant: RefreshGrant): Promise<RemoteToken> => {
    const deadline = this.#now() + this.#askMs;
    for (;;) {
      const now = this.#now();
      if (now > deadline)
        throw new RemoteTokenError(
          `no OAuth2 token from the replicas' shared state within ${this.#askMs} ms (Secret ${this.where})`,
        );
      const { secret, states } = await this.#read();
      const s = states.get(input.name);
      const seedId = seedOf(input.secret);
      if (!s || (s.seed !== seedId && !s.retired.includes(seedId))) {
        // First use, or the source holds a new refresh token (re-seeded): start a new chain from it.
        const retired = s ? [s.seed, ...s.retired].slice(0, RETIRED_KEPT) : [];
        await this.#tryWrite(secret, input.name, seed(input, retired));
        continue; // re-read: this seed or a concurrent one is stored
      }
      if (s.lost !== null) throw new RemoteTokenError(s.lost);
      if (s.accessToken !== null && now < s.expiresAtMs - this.#opts.refreshSkewMs)
        return { accessToken: s.accessToken, ttlMs: s.expiresAtMs - now };
      if (s.lease !== null && now < s.lease.untilMs) {
        await sleep(Math.min(this.#pollMs, Math.max(1, deadline - now))); // another replica refreshes
        continue;
      }
      if (s.failure !== null && now < s.failure.untilMs) {
        // the last refresh failed just now: answered (a still valid token keeps serving in OAuth2Tokens)
        throw new RemoteTokenError(s.failure.reason);
      }
      // Take the lease (an expired one too: its holder crashed or stalled before writing back).
      const abandoned = s.lease;
      const lease = {
        holder: this.#holder,
        id: randomBytes(9).toString('base64url'),
        untilMs: now + this.#leaseMs,
      };
      if (!(await this.#tryWrite(secret, input.name, { ...s, lease }))) continue;
      if (abandoned !== null)
        this.#opts.logger?.warn(
          { credential: input.name, holder: abandoned.holder, secret: this.where },
          'OAuth2 refresh lease expired without a write-back; taking it over',
        );
      return this.#refresh(input, grant, s, lease, abandoned);
    }
  };

  /** Refreshes with the stored refresh token while holding `lease`, and writes the outcome back. */
  async #refresh(
    input: OAuth2Input,
    grant: RefreshGrant,
    s: StoredRefreshState,
    lease: NonNullable<StoredRefreshState['lease']>,
    abandoned: StoredRefreshState['lease'],
  ): Promise<RemoteToken> {
    const endpoint = `token endpoint ${input.apply.tokenUrl}`;
    let answer;
    try {
      answer = await grant(s.refreshToken);
    } catch (err) {
      const reason = `${endpoint}: ${(err as Error).message}`;
      const lost = /\(invalid_grant\)/.test(reason)
        ? `${reason}: the stored refresh token of credential "${input.name}" is refused` +
          (abandoned !== null
            ? ` (replica ${abandoned.holder} held the refresh lease until ${new Date(abandoned.untilMs).toISOString()} and wrote nothing back: it crashed or stalled after the endpoint may have rotated the token)`
            : '') +
          "; put a new refresh token in the credential's source to re-seed it"
        : null;
      await this.#writeBack(input.name, lease, (cur) => ({
        ...cur,
        lease: null,
        lost,
        failure: lost === null ? { reason, untilMs: this.#now() + FAILURE_HOLD_MS } : null,
      })).catch((werr: unknown) =>
        this.#opts.logger?.warn(
          { credential: input.name, secret: this.where, error: (werr as Error).message },
          'cannot record the OAuth2 refresh failure in the shared state (the lease will expire)',
        ),
      );
      throw new RemoteTokenError(lost ?? reason);
    }
    const expiresAtMs = this.#now() + answer.ttlMs;
    try {
      await this.#writeBack(input.name, lease, (cur) => ({
        ...cur,
        refreshToken: answer.refreshToken ?? cur.refreshToken,
        accessToken: answer.accessToken,
        expiresAtMs,
        lease: null,
        lost: null,
        failure: null,
      }));
    } catch (err) {
      // The rotated refresh token could not be stored: the chain breaks at the next refresh.
      this.#opts.logger?.error(
        { credential: input.name, secret: this.where, error: (err as Error).message },
        'cannot write the rotated OAuth2 refresh token to the shared state: the next refresh will be refused; re-seed the credential',
      );
    }
    return { accessToken: answer.accessToken, ttlMs: Math.max(0, expiresAtMs - this.#now()) };
  }

  /**
   * Applies `change` to the credential's stored state while `lease` is still the stored one,
   * retrying on conflicts (another credential's write, a reader's seed) until the lease would expire.
   * @throws Error when the lease was taken over, or the API server kept failing.
   */
  async #writeBack(
    name: string,
    lease: NonNullable<StoredRefreshState['lease']>,
    change: (cur: StoredRefreshState) => StoredRefreshState,
  ): Promise<void> {
    let wait = 100;
    let last: unknown = null;
    // Past the lease too while nobody took it over (a slow token endpoint): the lease id decides.
    const until = Math.max(lease.untilMs, this.#now() + 2_000);
    while (this.#now() < until) {
      try {
        const { secret, states } = await this.#read();
        const cur = states.get(name);
        if (!cur || cur.lease?.id !== lease.id)
          throw new Error(
            `the refresh lease was taken over by ${cur?.lease?.holder ?? 'nobody (state reset)'}`,
          );
        if (await this.#tryWrite(secret, name, change(cur))) return;
        continue; // conflict: re-read at once
      } catch (err) {
        if (err instanceof RemoteTokenError) last = err;
        else throw err;
      }
      await sleep(wait);
      wait = Math.min(wait * 2, 2_000);
    }
    throw new Error(
      `the state could not be written within the lease${last ? `: ${(last as Error).message}` : ''}`,
    );
  }

  /** The Secret and every credential's state in it. @throws RemoteTokenError naming the API failure. */
  async #read(): Promise<{ secret: V1Secret; states: Map<string, StoredRefreshState> }> {
    let secret: V1Secret;
    try {
      secret = await this.#core.readNamespacedSecret({
        name: this.#opts.secretName,
        namespace: this.#opts.namespace,
      });
    } catch (err) {
      throw new RemoteTokenError(this.#apiReason('read', err));
    }
    const states = new Map<string, StoredRefreshState>();
    for (const [k, v] of Object.entries(secret.data ?? {})) {
      const st = parseState(Buffer.from(v, 'base64').toString('utf8'));
      if (st) states.set(k, st);
    }
    return { secret, states };
  }

  /**
   * Replaces the Secret with `name`'s state set to `state`, preconditioned on the version read.
   * @returns false when another writer came first (409).
   * @throws RemoteTokenError for any other failure.
   */
  async #tryWrite(secret: V1Secret, name: string, state: StoredRefreshState): Promise<boolean> {
    const body: V1Secret = {
      ...secret,
      data: { ...secret.data, [name]: Buffer.from(JSON.stringify(state)).toString('base64') },
    };
    try {
      await this.#core.replaceNamespacedSecret({
        name: this.#opts.secretName,
        namespace: this.#opts.namespace,
        body,
      });
      return true;
    } catch (err) {
      if (kubeFailure(err).status === 409) return false;
      throw new RemoteTokenError(this.#apiReason('update', err));
    }
  }

  #apiReason(verb: string, err: unknown): string {
    const f = kubeFailure(err);
    const status = f.status ? ` (HTTP ${f.status}${f.reason ? ` ${f.reason}` : ''})` : '';
    const hint =
      f.status === 404
        ? ': the chart creates it (gateway.oauth2RefreshState); without the chart create it empty'
        : f.status === 403
          ? ": the gateway ServiceAccount needs get and update on it (the chart's Role)"
          : '';
    return `cannot ${verb} the OAuth2 refresh state Secret ${this.where}: ${f.message}${status}${hint}`;
  }
}

/**
 * The shared store the settings name (`oauth2RefreshState`), or null when refresh-token state stays in
 * this gateway (one replica).
 * @throws RuntimeError when the kubeconfig cannot be loaded; RangeError on a bad name or duration.
 */
export function kubeRefreshStateFrom(
  cfg: GatewayServiceSettings,
  logger?: StoreLogger,
): KubeRefreshState | null {
  const rs = cfg.oauth2RefreshState;
  if (!rs) return null;
  return new KubeRefreshState({
    kc: loadKubeConfig({ kubeconfig: rs.kubeconfig, context: rs.context }),
    namespace: rs.namespace,
    secretName: rs.secretName,
    refreshSkewMs: cfg.oauth2RefreshSkewMs,
    leaseMs: rs.leaseMs,
    ...(logger ? { logger } : {}),
  });
}

/** Names a source refresh token in the state without holding it: 16 hex digits of its SHA-256. */
export function seedOf(refreshToken: string): string {
  return createHash('sha256').update(refreshToken).digest('hex').slice(0, 16);
}

function seed(input: OAuth2Input, retired: string[]): StoredRefreshState {
  return {
    seed: seedOf(input.secret),
    retired,
    refreshToken: input.secret,
    accessToken: null,
    expiresAtMs: 0,
    lease: null,
    lost: null,
    failure: null,
  };
}

/** A stored state, or null when the value is not one (then the next writer re-seeds it). */
export function parseState(text: string): StoredRefreshState | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object') return null;
  const o = v as Partial<StoredRefreshState>;
  if (typeof o.seed !== 'string' || typeof o.refreshToken !== 'string' || !Array.isArray(o.retired))
    return null;
  return {
    seed: o.seed,
    retired: o.retired.filter((x): x is string => typeof x === 'string'),
    refreshToken: o.refreshToken,
    accessToken: typeof o.accessToken === 'string' ? o.accessToken : null,
    expiresAtMs: typeof o.expiresAtMs === 'number' ? o.expiresAtMs : 0,
    lease:
      o.lease &&
      typeof o.lease.holder === 'string' &&
      typeof o.lease.id === 'string' &&
      typeof o.lease.untilMs === 'number'
        ? { holder: o.lease.holder, id: o.lease.id, untilMs: o.lease.untilMs }
        : null,
    lost: typeof o.lost === 'string' ? o.lost : null,
    failure:
      o.failure && typeof o.failure.reason === 'string' && typeof o.failure.untilMs === 'number'
        ? { reason: o.failure.reason, untilMs: o.failure.untilMs }
        : null,
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
