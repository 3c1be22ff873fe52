/**
 * A gateway step for decisions that need the request body (today: MCP calls, src/gateway/mcp.ts;
 * later approvals bound to a payload, secret scanning of bodies): {@link readBody} reads the body of
 * an identified, allowed request whole, up to a bound, before anything is forwarded. The caller then
 * decides on the bytes and hands the same Buffer to forward() (its `buffered` argument), so what was
 * decided on is exactly what the upstream receives; `req` is never read twice.
 *
 * Bounded in size and time:
 * - a declared `Content-Length` above the bound is refused before a byte is read, and a chunked body
 *   as soon as it passes the bound → 413 `body_too_large` (reason `body_too_large`); nothing is
 *   forwarded, and the connection closes after the answer (the rest of the body is not read);
 * - the body is watched like a streamed one (forward.ts BodyWatch: `gateway.limits.bodyMaxMs`,
 *   `bodyMinBytesPerSecond` over `bodyRateWindowMs`; all of the reading time is the client's) →
 *   408 `request_timeout` (reason `client_timeout`);
 * - a client that goes away while sending → `closed` (nothing to answer).
 *
 * The bound is `gateway.limits.bufferedBodyBytes` (default 1 MiB): the memory the gateway may hold for
 * one request of a session; `gateway.limits.concurrentRequests` bounds how many at once.
 */
import type { IncomingMessage } from 'node:http';
import type { GatewayLimits } from '../config/schema.js';
import { BodyWatch } from './forward.js';

/** What {@link readBody} needs: the bound and the body watch's limits. */
export type BodyLimits = Pick<
  GatewayLimits,
  'bufferedBodyBytes' | 'bodyMinBytesPerSecond' | 'bodyRateWindowMs' | 'bodyMaxMs'
>;

/** The outcome of reading a body whole. */
export type BodyRead =
  | { ok: true; body: Buffer }
  /** Over the bound (`detail` names it and the config key). */
  | { ok: false; why: 'too_large'; detail: string }
  /** Too slow or too long in all (BodyWatch). */
  | { ok: false; why: 'timeout'; detail: string }
  /** The client closed or reset the connection before the body ended. */
  | { ok: false; why: 'closed'; detail: string };

function tooLarge(max: number, what: string): BodyRead {
  return {
    ok: false,
    why: 'too_large',
    detail:
      `the request body ${what} the ${max} bytes the gateway reads to decide this call ` +
      '(gateway.limits.bufferedBodyBytes); nothing was sent',
  };
}

/**
 * Reads `req`'s body whole, up to `limits.bufferedBodyBytes` bytes.
 * @returns the body (an empty Buffer for a request without one), or why not; never throws.
 */
export function readBody(req: IncomingMessage, limits: BodyLimits): Promise<BodyRead> {
  const max = limits.bufferedBodyBytes;
  const cl = req.headers['content-length'];
  if (cl !== undefined) {
    const n = Number(cl);
    if (n > max) return Promise.resolve(tooLarge(max, `declares ${n} bytes, more than`));
    if (n === 0) return Promise.resolve({ ok: true, body: Buffer.alloc(0) });
  } else if (req.headers['transfer-encoding'] === undefined) {
    return Promise.resolve({ ok: true, body: Buffer.alloc(0) });
  }
  return new Promise<BodyRead>((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (r: BodyRead): void => {
      if (settled) return;
      settled = true;
      watch.stop();
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onClose);
      req.off('close', onClose);
      if (!r.ok) req.pause(); // the rest is not read: the caller answers and closes the connection
      resolve(r);
    };
    const watch = new BodyWatch(limits, (detail) => finish({ ok: false, why: 'timeout', detail }));
    const onData = (chunk: Buffer): void => {
      watch.received(chunk.length);
      size += chunk.length;
      if (size > max) return finish(tooLarge(max, 'is larger than'));
      chunks.push(chunk);
      watch.waiting();
    };
    const onEnd = (): void => finish({ ok: true, body: Buffer.concat(chunks, size) });
    const onClose = (): void =>
      finish({ ok: false, why: 'closed', detail: 'the client closed the connection while sending the body' });
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onClose);
    req.on('close', onClose);
    watch.waiting();
  });
}
