/**
 * Step 5 of the gateway's request path for HTTP (plain and inside intercepted tunnels): the allowed
 * request streams to the checked upstream address through a keep-alive pool (TLS verified for
 * HTTPS) and the response streams back. Step 6: the exchange is finished (audited) when the
 * sandbox's response closes, with the bytes that flowed each way.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { errors as undiciErrors, type Dispatcher } from 'undici';
import type { Exchange } from './exchange.js';
import { downstreamHeaders, upstreamHeaders } from './headers.js';
import { sendJson, statusOf, type GatewayErrorBody } from './responses.js';
import type { Target } from './target.js';
import { errorCode, isTlsError, type UpstreamDispatchers } from './upstream.js';

/**
 * Streams the call upstream with undici's dispatch() handler API: response head and chunks go
 * straight into `res` (no intermediate Readable, promise or AbortController per request; measured
 * in bench/README.md). Failures before the response starts are answered with the catalogue's
 * `upstream_*` bodies (502/504, `x-airlock-decision: upstream-error`); after it started, the
 * response is destroyed. `x` must already record the allow (Exchange.allow).
 * @param address the resolved and checked upstream address (decide.ts); the name is not resolved again.
 */
export function forward(
  req: IncomingMessage,
  res: ServerResponse,
  target: Target,
  address: string,
  x: Exchange,
  upstream: UpstreamDispatchers,
): void {
  let controller: Dispatcher.DispatchController | null = null;
  let gone = false;
  res.once('close', () => {
    if (!res.writableFinished) {
      gone = true; // the sandbox went away (or was killed)
      controller?.abort(new Error('client closed'));
    }
    x.finish();
  });

  const cl = req.headers['content-length'];
  const hasBody = cl !== undefined ? cl !== '0' : req.headers['transfer-encoding'] !== undefined;
  const body = hasBody
    ? (async function* () {
        for await (const chunk of req) {
          x.bytesOut += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
      })()
    : null;
  if (!hasBody) req.resume();

  const { dispatcher, origin } = upstream.forTarget(target.scheme, address, target.port, target.host);
  const fail = (err: Error): void => {
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
  try {
    dispatcher.dispatch(
      {
        origin,
        path: target.path + target.query,
        method: req.method as Dispatcher.HttpMethod,
        headers: upstreamHeaders(req, target.authority),
        // undici accepts any AsyncIterable body at runtime (docs/api/Dispatcher.md); its types lag.
        body: body as unknown as Readable | null,
      },
      {
        onRequestStart(c) {
          controller = c;
          if (gone) c.abort(new Error('client closed'));
        },
        onResponseStart(_c, statusCode, headers) {
          if (statusCode < 200) return; // 1xx: not relayed
          x.status = statusCode;
          res.writeHead(
            statusCode,
            downstreamHeaders(headers as Record<string, string | string[] | undefined>),
          );
        },
        onResponseData(c, chunk) {
          x.bytesIn += chunk.length;
          if (!res.write(chunk)) {
            c.pause();
            res.once('drain', () => c.resume());
          }
        },
        onResponseEnd() {
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
