/**
 * Step 5 of the gateway's request path for HTTP (plain and inside intercepted tunnels): the allowed
 * request streams to the checked upstream address through a keep-alive pool (TLS verified for
 * HTTPS) and the response streams back. Step 6: the exchange is finished (audited) when the
 * sandbox's response closes, with the bytes that flowed each way.
 *
 * The request body is watched (`gateway.limits.bodyMinBytesPerSecond`, `bodyMaxMs`): a body that
 * trickles in, or takes too long in all, is cut off — the upstream call is aborted, the sandbox gets
 * 408 `request_timeout` (when no response has started) and the connection is closed; audited with
 * reason `client_timeout`. Each session dials through its own pool (upstream.ts).
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { errors as undiciErrors, type Dispatcher } from 'undici';
import type { GatewayLimits } from '../config/schema.js';
import type { BudgetMeter } from './budgets.js';
import { queryWithCredential, type InjectedCredential } from './credentials.js';
import type { Exchange } from './exchange.js';
import { SigV4RequestError } from './sigv4.js';
import type { ResponseRewriter } from './mcp-response.js';
import { downstreamHeaders, upstreamHeaders } from './headers.js';
import { sendJson, statusOf, type GatewayErrorBody } from './responses.js';
import type { Target } from './target.js';
import { errorCode, isTlsError, type UpstreamDispatchers } from './upstream.js';

/** What {@link forward} needs besides the request: the pools and the body limits. */
export interface ForwardContext {
  upstream: UpstreamDispatchers;
  limits: Pick<GatewayLimits, 'bodyMinBytesPerSecond' | 'bodyRateWindowMs' | 'bodyMaxMs'>;
  /** Called once with the session's id when the call's response has closed (limits.ts release). */
  done?: (sessionId: string) => void;
}

/**
 * Watches one request body: total time (`bodyMaxMs`) and the rate over each window
 * (`bodyMinBytesPerSecond` over `bodyRateWindowMs`), counting only the time the gateway was waiting
 * for the client (while the upstream is not reading, the client is not to blame). Used while a body
 * streams upstream (here) and while one is read whole before a decision (body.ts).
 */
export class BodyWatch {
  /** The gateway is waiting for the client's next chunk (from the first pull of the upstream call). */
  private pulling = false;
  private pullSince = 0;
  private pullMs = 0;
  private windowBytes = 0;
  private readonly rateTimer: NodeJS.Timeout | null;
  private readonly maxTimer: NodeJS.Timeout | null;

  constructor(
    private readonly limits: ForwardContext['limits'],
    private readonly cut: (detail: string) => void,
  ) {
    const { bodyMinBytesPerSecond: min, bodyRateWindowMs: windowMs, bodyMaxMs: maxMs } = limits;
    this.rateTimer = min > 0 ? setInterval(() => this.check(), windowMs) : null;
    this.maxTimer =
      maxMs > 0
        ? setTimeout(() => this.cut(`the request body did not arrive within ${maxMs} ms`), maxMs)
        : null;
    this.rateTimer?.unref();
    this.maxTimer?.unref();
  }

  /** A chunk arrived; the gateway hands it on (and waits for the upstream to take it). */
  received(bytes: number): void {
    this.windowBytes += bytes;
    const now = performance.now();
    this.pullMs += now - this.pullSince;
    this.pulling = false;
  }

  /** The upstream took the chunk: the gateway waits for the client again. */
  waiting(): void {
    this.pulling = true;
    this.pullSince = performance.now();
  }

  private check(): void {
    const now = performance.now();
    const pulled = this.pullMs + (this.pulling ? now - this.pullSince : 0);
    const bytes = this.windowBytes;
    this.pullMs = 0;
    this.windowBytes = 0;
    if (this.pulling) this.pullSince = now;
    // Judge only a window spent mostly waiting for the client.
    if (pulled < this.limits.bodyRateWindowMs / 2) return;
    const min = this.limits.bodyMinBytesPerSecond;
    if (bytes < (min * pulled) / 1000) {
      this.cut(
        `the request body arrived at ${Math.round((bytes * 1000) / pulled)} bytes/s, below the ` +
          `gateway's minimum of ${min} bytes/s (gateway.limits.bodyMinBytesPerSecond)`,
      );
    }
  }

  stop(): void {
    if (this.rateTimer) clearInterval(this.rateTimer);
    if (this.maxTimer) clearTimeout(this.maxTimer);
  }
}

/**
 * A refusal decided while forwarding (the body was cut off, or the credential cannot rewrite it):
 * recorded on `x` for the audit event, answered with `body` while the response head is not sent yet
 * (then the connection closes: the rest of the request body is not read), else the response is
 * destroyed.
 */
function refuseWhileForwarding(
  res: ServerResponse,
  x: Exchange,
  reason: 'client_timeout' | 'bad_request',
  body: GatewayErrorBody,
): void {
  x.refuse({ kind: 'refuse', reason, rule: x.rule, policyVersion: x.policyVersion, body });
  if (res.headersSent) return void res.destroy();
  res.shouldKeepAlive = false;
  sendJson(res, body);
}

/** 400 `bad_request` for a body the credential cannot rewrite (sigv4.ts ChunkResigner). */
function refuseBody(res: ServerResponse, x: Exchange, detail: string): void {
  refuseWhileForwarding(res, x, 'bad_request', {
    error: 'bad_request',
    detail,
    sessionId: x.session?.id ?? null,
  });
}

/**
 * Streams the call upstream with undici's dispatch() handler API: response head and chunks go
 * straight into `res` (no intermediate Readable, promise or AbortController per request; measured
 * in bench/README.md). Failures before the response starts are answered with the catalogue's
 * `upstream_*` bodies (502/504, `x-airlock-decision: upstream-error`); after it started, the
 * response is destroyed. `x` must already record the allow (Exchange.allow) and its session.
 * @param address the resolved and checked upstream address (decide.ts); the name is not resolved again.
 * @param meter the budgets the call counts against (bytes out), or null.
 * @param credential the credential the gateway sets (a header, or a query parameter), replacing
 *   whatever the sandbox sent under that name; recorded on the exchange by name and version only.
 * @param buffered the request body already read whole (body.ts, e.g. an MCP call decided on its
 *   content): exactly these bytes are sent upstream and `req` is not read again; null: `req` streams.
 * @param rewrite rewrites the response body on its way back (mcp-response.ts: `tools/list` filtered);
 *   when it takes the response, `content-length` is dropped and `bytesIn` counts what the sandbox got.
 */
export function forward(
  req: IncomingMessage,
  res: ServerResponse,
  target: Target,
  address: string,
  x: Exchange,
  ctx: ForwardContext,
  meter: BudgetMeter | null = null,
  credential: InjectedCredential | null = null,
  buffered: Buffer | null = null,
  rewrite: ResponseRewriter | null = null,
): void {
  if (credential) x.credential = { name: credential.name, version: credential.version };
  let controller: Dispatcher.DispatchController | null = null;
  let gone = false;
  /** The body was cut off (too slow or too long): the answer is the gateway's 408. */
  let cutOff = false;
  let watch: BodyWatch | null = null;
  /** The response body goes through `rewrite`. */
  let rewriting = false;
  const sessionId = x.session?.id ?? '';
  res.once('close', () => {
    watch?.stop();
    if (!res.writableFinished) {
      gone = true; // the sandbox went away (or was killed)
      controller?.abort(new Error('client closed'));
    }
    ctx.done?.(sessionId);
    x.finish();
  });

  const cl = req.headers['content-length'];
  const hasBody = cl !== undefined ? cl !== '0' : req.headers['transfer-encoding'] !== undefined;
  let body: AsyncGenerator<Buffer> | Buffer | null = null;
  if (buffered !== null) {
    // Read whole and watched already (body.ts); what was decided on is what is sent.
    body = buffered;
    x.bytesOut += buffered.length;
    meter?.addBytesOut(buffered.length);
  } else if (hasBody) {
    // Allocated only for calls with a body (most calls have none: the hot path stays lean).
    const cut = (detail: string): void => {
      if (cutOff || gone || res.writableFinished) return;
      cutOff = true;
      watch?.stop();
      controller?.abort(new Error('request body cut off'));
      refuseWhileForwarding(res, x, 'client_timeout', {
        error: 'request_timeout',
        detail,
        sessionId: x.session?.id ?? null,
      });
    };
    const w = (watch = new BodyWatch(ctx.limits, cut));
    body = (async function* () {
      w.waiting();
      try {
        for await (const chunk of req) {
          const n = (chunk as Buffer).length;
          w.received(n);
          x.bytesOut += n;
          meter?.addBytesOut(n);
          yield chunk as Buffer;
          w.waiting();
        }
      } finally {
        w.stop();
      }
    })();
  } else req.resume();

  const { dispatcher, origin } = ctx.upstream.forTarget(
    target.scheme,
    address,
    target.port,
    target.host,
    sessionId,
  );
  const fail = (err: Error): void => {
    if (cutOff) return;
    if (err instanceof SigV4RequestError) {
      // aws-chunked framing the credential cannot re-sign (sigv4.ts ChunkResigner); undici aborted
      if (!gone && !res.writableFinished) refuseBody(res, x, err.message);
      return;
    }
    const tlsFailure = isTlsError(err);
    x.reason = tlsFailure ? 'upstream_tls_error' : 'upstream_error';
    if (gone) return;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const code = errorCode(err);
    const timeout =
      err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.ConnectTimeoutError;
    const answer: GatewayErrorBody = tlsFailure
      ? {
          error: 'upstream_tls_error',
          detail: `${target.authority}: the upstream certificate was not accepted (${code})`,
          sessionId: x.session?.id ?? null,
        }
      : {
          error: timeout ? 'upstream_timeout' : 'upstream_unreachable',
          detail: `${target.authority}: ${code}`,
          sessionId: x.session?.id ?? null,
        };
    x.status = statusOf(answer);
    sendJson(res, answer);
  };
  if (credential?.body && body !== null) {
    try {
      body = Buffer.isBuffer(body) ? credential.body.whole(body) : credential.body.stream(body);
    } catch (err) {
      if (err instanceof SigV4RequestError) return refuseBody(res, x, err.message); // nothing was sent
      throw err;
    }
  }
  try {
    dispatcher.dispatch(
      {
        origin,
        path:
          target.path +
          (credential?.query
            ? queryWithCredential(target.query, credential.query, credential.value)
            : (credential?.replaceQuery ?? target.query)),
        method: req.method as Dispatcher.HttpMethod,
        headers: upstreamHeaders(req, target.authority, credential),
        // undici accepts any AsyncIterable body at runtime (docs/api/Dispatcher.md); its types lag.
        body: body as unknown as Readable | null,
      },
      {
        onRequestStart(c) {
          controller = c;
          if (gone || cutOff) c.abort(new Error('client closed'));
        },
        onResponseStart(_c, statusCode, headers) {
          if (statusCode < 200 || cutOff) return; // 1xx: not relayed
          x.status = statusCode;
          const out = downstreamHeaders(headers as Record<string, string | string[] | undefined>);
          if (rewrite?.start(statusCode, headers as IncomingHttpHeaders)) {
            rewriting = true;
            delete out['content-length'];
          }
          res.writeHead(statusCode, out);
        },
        onResponseData(c, data) {
          const chunk = rewriting ? rewrite!.chunk(data) : data;
          if (chunk.length === 0) return;
          x.bytesIn += chunk.length;
          if (!res.write(chunk)) {
            c.pause();
            res.once('drain', () => c.resume());
          }
        },
        onResponseEnd() {
          if (rewriting) {
            const rest = rewrite!.end();
            x.bytesIn += rest.length;
            res.end(rest);
            return;
          }
          res.end();
        },
        onResponseError(_c, err) {
          fail(err);
        },
      },
    );
  } catch (err) {
    fail(err as Error); // invalid request options (e.g. a header undici refuses)
  }
}
