/**
 * OAuth2 refresh-token credentials across the workers of a multi-worker gateway (`gateway.workers` >
 * 1, cluster.ts): the primary holds their state (the rotated refresh token, the access token, the
 * single flight: one {@link OAuth2Tokens} in the primary), and each worker's {@link OAuth2Tokens}
 * asks it over IPC ({@link SharedOAuth2}) instead of the token endpoint. So an authorization server
 * that rotates refresh tokens and revokes a used one (RFC 9700 4.14.2) sees each refresh token used
 * once by the whole gateway, whatever the worker that needed a token.
 *
 * With `oauth2RefreshState` (several Kubernetes replicas) the primary's cache in turn asks the
 * replicas' shared state (oauth2-kube-store.ts) instead of the token endpoint.
 *
 * What crosses IPC: the credential's name, `apply` and its values (the refresh token and client
 * secret as the worker's vault read them: both processes are the same gateway, the values never
 * leave it) one way; the access token and its remaining lifetime the other.
 */
import { readFileSync } from 'node:fs';
import type { GatewayServiceSettings } from '../gateway-wire/config.js';
import type { Logger } from '../log.js';
import { DestinationPolicy } from './address.js';
import {
  OAuth2Tokens,
  RemoteTokenError,
  type OAuth2Input,
  type RemoteToken,
  type TokenResult,
} from './oauth2.js';
import { kubeRefreshStateFrom } from './oauth2-kube-store.js';
import { UpstreamResolver } from './resolve.js';

/** Worker → primary: a token for this credential, valid beyond the refresh skew. */
export interface OAuth2Query {
  t: 'airlock:oauth2-token';
  id: number;
  input: OAuth2Input;
}

/** Primary → worker: the answer to the {@link OAuth2Query} with the same `id`. */
export interface OAuth2Reply {
  t: 'airlock:oauth2-token-answer';
  id: number;
  result: TokenResult;
  /** How long the token stays valid, ms (0 when `result` is not ok). */
  ttlMs: number;
}

/** How long a worker waits for the primary's answer before the call fails (503), ms. */
export const SHARED_TOKEN_TIMEOUT_MS = 30_000;

/**
 * The primary's token cache, with the same destination checks, upstream CAs and refresh skew as the
 * workers' (service.ts). A CA file that cannot be read is logged and left out (a worker refuses to
 * start on it anyway).
 */
export function primaryOAuth2Tokens(cfg: GatewayServiceSettings, logger: Logger): OAuth2Tokens {
  let ca = cfg.upstreamCaPem ?? '';
  try {
    if (cfg.upstreamCaFile) ca += readFileSync(cfg.upstreamCaFile, 'utf8');
  } catch (err) {
    logger.warn({ file: cfg.upstreamCaFile, error: (err as Error).message }, 'cannot read upstreamCaFile');
  }
  const state = kubeRefreshStateFrom(cfg, logger); // several replicas: their shared state, else this primary's
  return new OAuth2Tokens({
    resolver: new UpstreamResolver(
      new DestinationPolicy(cfg.allowPrivateCidrs),
      new Map(Object.entries(cfg.hostAliases).map(([k, v]) => [k.toLowerCase(), v])),
    ),
    refreshSkewMs: cfg.oauth2RefreshSkewMs,
    ...(ca ? { extraCaPem: ca } : {}),
    ...(state ? { remote: state.token } : {}),
    onTokenRequest: (e) => {
      if (!e.ok)
        logger.warn(
          { credential: e.credential, grant: e.grant, detail: e.detail },
          'OAuth2 token request failed',
        );
    },
  });
}

/** The primary's answer to a worker's query, from its own cache ({@link OAuth2Tokens.fresh}). */
export async function answerOAuth2Query(tokens: OAuth2Tokens, q: OAuth2Query): Promise<OAuth2Reply> {
  try {
    const { result, ttlMs } = await tokens.fresh(q.input);
    return { t: 'airlock:oauth2-token-answer', id: q.id, result, ttlMs };
  } catch (err) {
    const reason = `the gateway primary could not get a token: ${(err as Error).message}`;
    return { t: 'airlock:oauth2-token-answer', id: q.id, result: { ok: false, reason }, ttlMs: 0 };
  }
}

/** A worker's side: asks the primary; plug {@link request} into OAuth2Tokens' `remote` option. */
export class SharedOAuth2 {
  readonly #send: (q: OAuth2Query) => void;
  readonly #timeoutMs: number;
  readonly #pending = new Map<
    number,
    { resolve: (t: RemoteToken) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();
  #next = 0;

  /**
   * @param send sends a query to the primary (`process.send`).
   * @param timeoutMs how long to wait for an answer, ms. @default SHARED_TOKEN_TIMEOUT_MS
   */
  constructor(send: (q: OAuth2Query) => void, timeoutMs: number = SHARED_TOKEN_TIMEOUT_MS) {
    this.#send = send;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * A token from the primary.
   * @throws RemoteTokenError with the primary's reason, or when it did not answer in time.
   */
  readonly request = (input: OAuth2Input): Promise<RemoteToken> =>
    new Promise<RemoteToken>((resolve, reject) => {
      const id = ++this.#next;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new RemoteTokenError(`the gateway primary did not answer within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
      timer.unref();
      this.#pending.set(id, { resolve, reject, timer });
      try {
        this.#send({ t: 'airlock:oauth2-token', id, input });
      } catch (err) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(new RemoteTokenError(`cannot ask the gateway primary: ${(err as Error).message}`));
      }
    });

  /** Hands an answer from the primary to the call waiting for it. */
  receive(reply: OAuth2Reply): void {
    const p = this.#pending.get(reply.id);
    if (!p) return;
    this.#pending.delete(reply.id);
    clearTimeout(p.timer);
    if (reply.result.ok) p.resolve({ accessToken: reply.result.accessToken, ttlMs: reply.ttlMs });
    else p.reject(new RemoteTokenError(reply.result.reason));
  }
}
