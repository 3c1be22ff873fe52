/**
 * The HTTP client under {@link Sandbox}: bearer token, JSON bodies, problem+json errors as typed
 * classes (./errors.ts), retries with bounded backoff for idempotent calls only (GET, DELETE).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { AirlockConnectionError, AirlockSdkError, errorFromProblem, type ApiProblem } from './errors.js';

/** Options of {@link AirlockClient}, also accepted by `Sandbox.create` / `Sandbox.connect`. */
export interface AirlockClientOptions {
  /**
   * Base URL of the Airlock API.
   * @default process.env.AIRLOCK_API_URL ?? 'http://127.0.0.1:8080'
   */
  apiUrl?: string;
  /**
   * Bearer token.
   * @default process.env.AIRLOCK_API_TOKEN, else the file `.airlock/api-token` that `airlock serve`
   * writes in its working directory
   */
  token?: string;
  /**
   * Retries of an idempotent call (GET, DELETE) after a connection failure or a 502/503/504 answer;
   * POST calls (create, exec) are never retried.
   * @default 3
   */
  retries?: number;
  /**
   * First backoff delay in ms; doubled on each retry, capped by `retryMaxDelayMs`, with full jitter.
   * @default 200
   */
  retryBaseDelayMs?: number;
  /** @default 2000 */
  retryMaxDelayMs?: number;
}

/** {@link AirlockClientOptions} with every default applied. */
export interface AirlockClientOptionsWithDefaults {
  apiUrl: string;
  token: string;
  retries: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
}

/**
 * Applies the defaults and checks the options.
 * @throws AirlockSdkError naming the option when one is invalid or no token can be found.
 */
export function clientDefaults(opts: AirlockClientOptions = {}): AirlockClientOptionsWithDefaults {
  const apiUrl = (opts.apiUrl ?? process.env.AIRLOCK_API_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/.test(apiUrl))
    throw new AirlockSdkError(`apiUrl must be an http(s) URL such as http://127.0.0.1:8080, got "${apiUrl}"`);
  let token = opts.token ?? process.env.AIRLOCK_API_TOKEN;
  if (!token) {
    const file = path.resolve('.airlock', 'api-token');
    if (existsSync(file)) token = readFileSync(file, 'utf8').trim();
  }
  if (!token)
    throw new AirlockSdkError(
      'no API token: pass token, set AIRLOCK_API_TOKEN, or run where `airlock serve` keeps .airlock/api-token',
    );
  const out = {
    apiUrl,
    token,
    retries: opts.retries ?? 3,
    retryBaseDelayMs: opts.retryBaseDelayMs ?? 200,
    retryMaxDelayMs: opts.retryMaxDelayMs ?? 2000,
  };
  for (const k of ['retries', 'retryBaseDelayMs', 'retryMaxDelayMs'] as const) {
    if (!Number.isInteger(out[k]) || out[k] < 0)
      throw new AirlockSdkError(`${k} must be a non-negative integer, got ${String(out[k])}`);
  }
  if (out.retryMaxDelayMs < out.retryBaseDelayMs)
    throw new AirlockSdkError('retryMaxDelayMs cannot be less than retryBaseDelayMs');
  return out;
}

type Method = 'GET' | 'POST' | 'DELETE';
const RETRIABLE_STATUS = new Set([502, 503, 504]);

/** Low-level client of the Airlock API; most users want {@link Sandbox}. */
export class AirlockClient {
  readonly options: AirlockClientOptionsWithDefaults;

  constructor(opts: AirlockClientOptions = {}) {
    this.options = clientDefaults(opts);
  }

  /**
   * Calls the API and returns the parsed JSON answer (undefined for 204).
   * @throws AirlockApiError (a subclass per code) for an error answer; AirlockConnectionError when the
   * API cannot be reached (GET and DELETE after `retries` retries).
   */
  async json<T>(method: Method, p: string, body?: unknown): Promise<T> {
    const res = await this.send(method, p, body);
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * Calls the API and returns the successful `Response` unread (streams). Error answers are thrown
   * as {@link json} does.
   */
  async send(method: Method, p: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    const call = `${method} ${p}`;
    const idempotent = method !== 'POST';
    const { retries, retryBaseDelayMs, retryMaxDelayMs } = this.options;
    for (let attempt = 0; ; attempt++) {
      const last = !idempotent || attempt >= retries;
      let res: Response;
      try {
        res = await fetch(this.options.apiUrl + p, {
          method,
          headers: {
            authorization: `Bearer ${this.options.token}`,
            accept: 'application/json, application/problem+json, application/x-ndjson',
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          ...(signal ? { signal } : {}),
        });
      } catch (err) {
        if (signal?.aborted) throw err;
        if (last)
          throw new AirlockConnectionError(
            `${call}: cannot reach the Airlock API at ${this.options.apiUrl}: ${(err as Error).message}`,
            call,
            { cause: err },
          );
        await backoff(attempt, retryBaseDelayMs, retryMaxDelayMs);
        continue;
      }
      if (res.ok) return res;
      if (!last && RETRIABLE_STATUS.has(res.status)) {
        await res.body?.cancel();
        await backoff(attempt, retryBaseDelayMs, retryMaxDelayMs);
        continue;
      }
      throw await problemError(res, call);
    }
  }
}

/** Full-jitter exponential backoff: a random delay in [0, min(max, base·2^attempt)] ms. */
function backoff(attempt: number, baseMs: number, maxMs: number): Promise<void> {
  const cap = Math.min(maxMs, baseMs * 2 ** attempt);
  return new Promise((r) => setTimeout(r, Math.random() * cap));
}

async function problemError(res: Response, call: string): Promise<Error> {
  const text = await res.text();
  let problem: ApiProblem;
  try {
    const parsed = JSON.parse(text) as Partial<ApiProblem>;
    if (typeof parsed.code !== 'string') throw new Error('no code');
    problem = {
      type: parsed.type ?? `urn:airlock:error:${parsed.code}`,
      title: parsed.title ?? '',
      status: parsed.status ?? res.status,
      detail: parsed.detail ?? '',
      code: parsed.code,
      ...(parsed.field !== undefined ? { field: parsed.field } : {}),
    };
  } catch {
    problem = {
      type: 'about:blank',
      title: res.statusText,
      status: res.status,
      detail: text.slice(0, 500),
      code: `HTTP_${res.status}`,
    };
  }
  return errorFromProblem(problem, call, res.headers.get('x-request-id') ?? undefined);
}
