/**
 * `Sandbox`: one Airlock session as an object — create it, run commands in it, follow its gateway
 * decisions live, kill it. Disposable with `await using` (the session is killed when the scope ends).
 *
 * @example
 * ```ts
 * import { Sandbox } from 'airlock';
 * await using sandbox = await Sandbox.create({ role: 'analyst', ttlSeconds: 600 });
 * const out = await sandbox.exec(['curl', '-s', 'http://forum.test:3000/posts/1']);
 * console.log(out.exitCode, out.stdout);
 * ```
 */
import { AirlockClient, type AirlockClientOptions } from './client.js';
import { AirlockApiError, AirlockSdkError, SessionNotFoundError, errorFromProblem } from './errors.js';
import type { components } from './openapi.gen.js';

/** A session as the API describes it (generated from the OpenAPI document). */
export type SessionInfo = components['schemas']['Session'];
/** The body of `POST /v1/sessions`. */
export type CreateSessionInput = components['schemas']['CreateSessionRequest'];
/** The answer of a (non-streamed) exec: exit code and the whole output. */
export type ExecResult = components['schemas']['ExecResult'];
/** One gateway decision of the session (audit event, docs/api.md). */
export type DecisionEvent = components['schemas']['AuditEvent'];

/** Options of {@link Sandbox.create}: the session to create and how to reach the API. */
export type SandboxCreateOptions = CreateSessionInput & AirlockClientOptions;

/** Options of {@link Sandbox.exec} and {@link Sandbox.execStream}. */
export interface ExecOptions {
  /**
   * Time limit in seconds; past it the API answers 504 and {@link ExecTimeoutError} is thrown.
   * @default 60 (the API's default)
   */
  timeoutSeconds?: number;
  /** Aborts the call (the command keeps running in the sandbox until its time limit). */
  signal?: AbortSignal;
}

/** One item of {@link Sandbox.execStream}: output as it arrives, then the exit code. */
export type ExecChunk = { stream: 'stdout' | 'stderr'; data: string } | { exitCode: number };

/** Options of {@link Sandbox.decisions}. */
export interface DecisionsOptions {
  /**
   * How often the session's audit trail is read, in ms, against an API without `GET /v1/events`.
   * @default 500
   */
  pollMs?: number;
  /** Ends the iteration. */
  signal?: AbortSignal;
  /**
   * Also yield the events recorded before the call.
   * @default true
   */
  fromStart?: boolean;
}

/** One Airlock session. Get one with {@link Sandbox.create} or {@link Sandbox.connect}. */
export class Sandbox implements AsyncDisposable {
  #info: SessionInfo;
  #killed = false;

  private constructor(
    /** The client the sandbox calls the API with. */
    readonly client: AirlockClient,
    info: SessionInfo,
  ) {
    this.#info = info;
  }

  /**
   * Creates a session (`POST /v1/sessions`) and waits until its sandbox runs.
   * @throws UnknownRoleError (422) for a role the policy does not know; ForbiddenError (403) when the
   * token may not create sessions of this role; InvalidRequestError (400, `field` names the option);
   * IsolationFailedError / GatewayUnavailableError (503); AirlockConnectionError. Never retried.
   */
  static async create(opts: SandboxCreateOptions): Promise<Sandbox> {
    const { apiUrl, token, retries, retryBaseDelayMs, retryMaxDelayMs, ...session } = opts;
    const client = new AirlockClient({ apiUrl, token, retries, retryBaseDelayMs, retryMaxDelayMs });
    const info = await client.json<SessionInfo>('POST', '/v1/sessions', session);
    return new Sandbox(client, info);
  }

  /**
   * An existing session by id (`GET /v1/sessions/{id}`).
   * @throws SessionNotFoundError (404), ForbiddenError (403), AirlockConnectionError.
   */
  static async connect(id: string, opts: AirlockClientOptions = {}): Promise<Sandbox> {
    const client = new AirlockClient(opts);
    return new Sandbox(client, await client.json<SessionInfo>('GET', sessionPath(id)));
  }

  /** Session id (`s-…`). */
  get id(): string {
    return this.#info.id;
  }
  /** The role whose rules decide every outbound call of the sandbox. */
  get role(): string {
    return this.#info.role;
  }
  /** The session as last read from the API (create, connect or {@link refresh}). */
  get info(): SessionInfo {
    return this.#info;
  }

  /** Reads the session again (`GET`, retried). @throws SessionNotFoundError once it is gone. */
  async refresh(): Promise<SessionInfo> {
    this.#info = await this.client.json<SessionInfo>('GET', sessionPath(this.id));
    return this.#info;
  }

  /**
   * Runs `command` (argv, no shell) in the sandbox and waits for it.
   * @returns exit code, stdout and stderr (UTF-8 text).
   * @throws ExecTimeoutError (504) past `timeoutSeconds`; SessionNotFoundError; SessionConflictError
   * (409, session stopping); InvalidRequestError. Never retried (a command is not idempotent).
   */
  async exec(command: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const res = await this.client.send(
      'POST',
      `${sessionPath(this.id)}/exec`,
      execBody(command, opts, false),
      opts.signal,
    );
    return (await res.json()) as ExecResult;
  }

  /**
   * Runs `command` with live output: yields `{stream, data}` chunks as the sandbox writes them and
   * ends with `{exitCode}`.
   * @throws as {@link exec}; a failure after the output started (e.g. the time limit) is thrown from
   * the iteration as the matching error class.
   */
  async *execStream(command: string[], opts: ExecOptions = {}): AsyncGenerator<ExecChunk, void, undefined> {
    const call = `POST ${sessionPath(this.id)}/exec`;
    const res = await this.client.send(
      'POST',
      `${sessionPath(this.id)}/exec`,
      execBody(command, opts, true),
      opts.signal,
    );
    if (!res.body) throw new AirlockSdkError(`${call}: the answer has no body`);
    let ended = false;
    for await (const line of ndjsonLines(res.body)) {
      const item = JSON.parse(line) as
        | { stream: 'stdout' | 'stderr'; data: string }
        | { exitCode: number }
        | { error: string; detail: string };
      if ('error' in item) {
        throw errorFromProblem(
          {
            type: `urn:airlock:error:${item.error}`,
            title: '',
            status: 0,
            detail: item.detail,
            code: item.error,
          },
          call,
        );
      }
      if ('exitCode' in item) ended = true;
      yield item;
    }
    if (!ended) throw new AirlockSdkError(`${call}: the output stream ended without an exit code`);
  }

  /**
   * The session's gateway decisions (audit events) as they happen: first those already recorded
   * (unless `fromStart: false`), then each new one. Follows the API's server-sent events
   * (`GET /v1/events?sessionId=…`, live); against an API without that route, reads
   * `GET /v1/sessions/{id}/audit` every `pollMs`. Ends when the session is gone (killed or expired:
   * its trail is read once more so no last event is lost), or on `signal`.
   * @throws ForbiddenError when the token may not read the session; AirlockConnectionError.
   */
  async *decisions(opts: DecisionsOptions = {}): AsyncGenerator<DecisionEvent, void, undefined> {
    const pollMs = opts.pollMs ?? 500;
    if (!Number.isInteger(pollMs) || pollMs < 10)
      throw new AirlockSdkError(`pollMs must be an integer of at least 10 ms, got ${String(pollMs)}`);
    const since = opts.fromStart === false ? Date.now() : -Infinity;
    const seen = new Set<string>();
    const fresh = (e: DecisionEvent): boolean => {
      const key = JSON.stringify(e);
      if (seen.has(key) || Date.parse(e.time) < since) return false;
      seen.add(key);
      return true;
    };
    const audit = `${sessionPath(this.id)}/audit`;
    const trail = async (): Promise<DecisionEvent[]> =>
      (await this.client.json<{ events: DecisionEvent[] }>('GET', audit)).events;

    let stream: Response | null = null;
    try {
      stream = await this.client.send(
        'GET',
        `/v1/events?sessionId=${encodeURIComponent(this.id)}`,
        undefined,
        opts.signal,
      );
    } catch (err) {
      if (opts.signal?.aborted) return;
      // Already gone (404): its trail below. No events route (an older API): poll.
      const gone = err instanceof SessionNotFoundError;
      if (!gone && !(err instanceof AirlockApiError && err.code === 'AIRLOCK_ROUTE_NOT_FOUND')) throw err;
      if (!gone) {
        yield* this.#pollDecisions(pollMs, fresh, trail, opts.signal);
        return;
      }
    }
    if (stream?.body) {
      try {
        for await (const frame of sseFrames(stream.body)) {
          if (frame.event === 'decision') {
            const e = JSON.parse(frame.data) as DecisionEvent;
            if (fresh(e)) yield e;
          } else if (frame.event === 'end') break;
        }
      } catch (err) {
        if (opts.signal?.aborted) return;
        throw err;
      }
    }
    if (opts.signal?.aborted) return;
    // The session ended: one last read, since the gateway writes an event as its exchange ends.
    for (const e of await trail()) if (fresh(e)) yield e;
  }

  async *#pollDecisions(
    pollMs: number,
    fresh: (e: DecisionEvent) => boolean,
    trail: () => Promise<DecisionEvent[]>,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<DecisionEvent, void, undefined> {
    for (;;) {
      if (signal?.aborted) return;
      for (const e of await trail()) if (fresh(e)) yield e;
      let alive: boolean;
      try {
        alive = (await this.refresh()).status === 'running';
      } catch (err) {
        if (!(err instanceof SessionNotFoundError)) throw err;
        alive = false;
      }
      if (!alive) {
        for (const e of await trail()) if (fresh(e)) yield e;
        return;
      }
      await sleep(pollMs, signal);
    }
  }

  /**
   * The kill switch (`DELETE /v1/sessions/{id}`): the gateway refuses the session's traffic before
   * the sandbox is removed. Resolves once the API answered; a session already gone counts as killed.
   * Retried on connection failures and 502/503/504 (DELETE is idempotent).
   * @throws ForbiddenError, AirlockConnectionError.
   */
  async kill(): Promise<void> {
    try {
      await this.client.json<void>('DELETE', sessionPath(this.id));
    } catch (err) {
      if (!(err instanceof SessionNotFoundError)) throw err;
    }
    this.#killed = true;
  }

  /** `await using`: kills the session when the scope ends (once). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#killed) await this.kill();
  }
}

function sessionPath(id: string): string {
  return `/v1/sessions/${encodeURIComponent(id)}`;
}

function execBody(
  command: string[],
  opts: ExecOptions,
  stream: boolean,
): components['schemas']['ExecRequest'] {
  return {
    command,
    ...(opts.timeoutSeconds !== undefined ? { timeoutSeconds: opts.timeoutSeconds } : {}),
    ...(stream ? { stream: true } : {}),
  };
}

/**
 * The frames of a server-sent event stream (text/event-stream, WHATWG HTML "Server-sent events"):
 * `event:` and `data:` fields up to a blank line; comments (`:`) skipped.
 */
async function* sseFrames(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string; data: string }> {
  let event = 'message';
  let data: string[] = [];
  for await (const raw of ndjsonLines(body, true)) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') {
      if (data.length > 0) yield { event, data: data.join('\n') };
      event = 'message';
      data = [];
    } else if (line.startsWith(':')) continue;
    else {
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (name === 'event') event = value;
      else if (name === 'data') data.push(value);
    }
  }
}

/** The lines of a body (`keepEmpty`: blank lines too, for server-sent events). */
async function* ndjsonLines(body: ReadableStream<Uint8Array>, keepEmpty = false): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (keepEmpty || line.trim()) yield line;
    }
  }
  buf += decoder.decode();
  if (buf.trim()) yield buf;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
