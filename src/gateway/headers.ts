import type http from 'node:http';
import type { IncomingMessage } from 'node:http';
import { HOP_BY_HOP_HEADERS } from '../request/headers.js';

/**
 * Rejects ambiguous message framing (DESIGN.md property 7): both Content-Length and
 * Transfer-Encoding, more than one Content-Length, or any Transfer-Encoding other than `chunked`.
 * Node's parser refuses most of these already; this keeps the rule explicit and tested.
 * @returns a sentence naming the problem, or null when the framing is unambiguous.
 */
export function framingProblem(rawHeaders: readonly string[]): string | null {
  let cl = 0;
  let te: string | null = null;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name === 'content-length') cl++;
    else if (name === 'transfer-encoding') {
      if (te !== null) return 'more than one Transfer-Encoding header';
      te = rawHeaders[i + 1]!.trim().toLowerCase();
    }
  }
  if (cl > 1) return 'more than one Content-Length header';
  if (te !== null && cl > 0) return 'both Content-Length and Transfer-Encoding';
  if (te !== null && te !== 'chunked') return `unsupported Transfer-Encoding "${te}"`;
  return null;
}

/**
 * Headers sent upstream, as a flat `[name, value, …]` list in the sandbox's order: `host` first
 * (the normalised authority the policy decided on), then every header of `req` except hop-by-hop
 * ones and those the `Connection` header names. With `credential` (a header the gateway injects,
 * credentials.ts), every header of that name the sandbox sent is dropped and the gateway's appended.
 */
export function upstreamHeaders(
  req: IncomingMessage,
  authority: string,
  credential?: {
    readonly header: string | null;
    readonly value: string;
    readonly headers?: readonly string[];
    readonly dropHeaders?: ReadonlySet<string>;
  } | null,
): string[] {
  const raw = req.rawHeaders;
  let connectionTokens: Set<string> | null = null;
  const conn = req.headers.connection;
  if (conn) connectionTokens = new Set(conn.split(',').map((t) => t.trim().toLowerCase()));
  const out: string[] = ['host', authority];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP_HEADERS.has(lower) || connectionTokens?.has(lower)) continue;
    if (credential?.header === lower || credential?.dropHeaders?.has(lower)) continue;
    out.push(name, raw[i + 1]!);
  }
  if (credential?.header) out.push(credential.header, credential.value);
  if (credential?.headers) out.push(...credential.headers);
  return out;
}

/**
 * Response headers relayed to the sandbox: the upstream's, minus hop-by-hop ones and minus every
 * `x-airlock-*` header — only the gateway says what it decided (an upstream could otherwise send
 * `x-airlock-decision: deny` to make an agent believe a call it made was refused).
 */
export function downstreamHeaders(
  headers: Record<string, string | string[] | undefined>,
): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  const conn = headers.connection;
  const tokens = conn
    ? new Set(
        (Array.isArray(conn) ? conn.join(',') : conn).split(',').map((t: string) => t.trim().toLowerCase()),
      )
    : null;
  for (const name in headers) {
    if (HOP_BY_HOP_HEADERS.has(name) || tokens?.has(name) || name.startsWith('x-airlock-')) continue;
    const v = headers[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/**
 * Bytes of a request's head as received: request line and header block, CRLFs included (the
 * request line is rebuilt from method, target and `HTTP/x.y`; header names and values are counted
 * as sent, one byte per character as Node's parser reads them). The audit's `headerBytes`: data can
 * leave in headers as well as in a body.
 */
export function requestHeaderBytes(req: IncomingMessage): number {
  const raw = req.rawHeaders;
  let n = (req.method?.length ?? 0) + 1 + (req.url?.length ?? 0) + 1 + 8 + 2 + 2;
  for (let i = 0; i < raw.length; i += 2) n += raw[i]!.length + 2 + raw[i + 1]!.length + 2;
  return n;
}
