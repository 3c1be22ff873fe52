/**
 * `tools/list` answers filtered (issue 10; docs/mcp.md "Tool lists"): when a body the gateway
 * forwarded to an MCP endpoint carried `tools/list` requests, the server's answer — one JSON
 * document or an SSE stream of JSON-RPC messages (Streamable HTTP) — is rewritten on its way back so
 * that each listed tool the session may not call (method MCP on `ENDPOINT/tools/call/NAME`, role and
 * creator) is removed: the agent does not plan with tools it cannot use. Everything else passes as
 * it came.
 *
 * This is a convenience, not the boundary: every call is decided anyway (mcp.ts). So an answer the
 * gateway cannot read (compressed, not JSON, larger than {@link MAX_JSON_BYTES}) is relayed
 * unchanged, not refused.
 */
import type { IncomingHttpHeaders } from 'node:http';

/** Largest JSON answer buffered for filtering; a larger one is relayed unchanged. */
export const MAX_JSON_BYTES = 8 * 1024 * 1024;

/** Rewrites a response body on its way to the sandbox (forward.ts). */
export interface ResponseRewriter {
  /**
   * The response head arrived: whether to rewrite this body. When true, the caller drops
   * `content-length` (the length changes) before writing the head.
   */
  start(status: number, headers: IncomingHttpHeaders): boolean;
  /** A chunk of the upstream body: the bytes to send the sandbox now (possibly none). */
  chunk(data: Buffer): Buffer;
  /** The upstream body ended: the bytes still to send. */
  end(): Buffer;
}

/**
 * Whether a listed tool reaches the agent: the session may call it (and, with pinning, it is
 * unchanged since first seen in the session; mcp-pins.ts).
 */
export type ToolPredicate = (name: string, tool: Record<string, unknown>) => boolean;

/** The tool names removed from the answers, in order (the audit's `mcp.hiddenTools`). */
export type HiddenTools = string[];

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Filters the `result.tools` of the responses whose id is one of `ids`.
 * @returns whether anything was removed.
 */
function filterMessage(
  msg: unknown,
  ids: ReadonlySet<string | number>,
  mayCall: ToolPredicate,
  hidden: HiddenTools,
): boolean {
  if (!isObject(msg) || !isObject(msg.result)) return false;
  if (ids !== ANY_ID && !ids.has(msg.id as string | number)) return false;
  const tools = msg.result.tools;
  if (!Array.isArray(tools)) return false;
  const kept = tools.filter((t: unknown) => {
    const name = isObject(t) && typeof t.name === 'string' ? t.name : null;
    if (name !== null && mayCall(name, t as Json)) return true;
    hidden.push(name ?? '(unnamed)');
    return false;
  });
  if (kept.length === tools.length) return false;
  msg.result.tools = kept;
  return true;
}

/** Filters one JSON document (a response or a batch of them); null when nothing changed or unreadable. */
function filterDocument(
  text: string,
  ids: ReadonlySet<string | number>,
  mayCall: ToolPredicate,
  hidden: HiddenTools,
): string | null {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return null;
  }
  let changed = false;
  for (const m of Array.isArray(doc) ? doc : [doc])
    changed = filterMessage(m, ids, mayCall, hidden) || changed;
  return changed ? JSON.stringify(doc) : null;
}

/** Rewrites one SSE event (its text without the blank line that ends it). */
function filterEvent(
  event: string,
  ids: ReadonlySet<string | number>,
  mayCall: ToolPredicate,
  hidden: HiddenTools,
): string {
  const lines = event.split(/\r?\n/);
  const data: string[] = [];
  const other: string[] = [];
  for (const l of lines) {
    if (l.startsWith('data:')) data.push(l.slice(l.startsWith('data: ') ? 6 : 5));
    else other.push(l);
  }
  if (data.length === 0) return event;
  const rewritten = filterDocument(data.join('\n'), ids, mayCall, hidden);
  if (rewritten === null) return event;
  return [...other, `data: ${rewritten}`].join('\n');
}

/**
 * A rewriter for the answer to a body that carried the `tools/list` requests `ids`.
 * @param mayCall whether a listed tool reaches the agent (decided as mcp.ts decides a `tools/call`,
 *   and unchanged since its pin).
 * @param hidden filled with the names of the tools removed.
 */
/**
 * `ids` of {@link toolsListFilter} for the older HTTP+SSE transport's stream, where answers are not
 * in the response of the POST that asked: every response whose `result.tools` is an array is a
 * `tools/list` answer (no other MCP method answers with `tools`).
 */
export const ANY_ID: ReadonlySet<string | number> = new Set();

export function toolsListFilter(
  ids: ReadonlySet<string | number>,
  mayCall: ToolPredicate,
  hidden: HiddenTools,
): ResponseRewriter {
  let mode: 'json' | 'sse' | 'pass' = 'pass';
  let chunks: Buffer[] = [];
  let size = 0;
  let pending = '';
  const decoder = new TextDecoder('utf-8');
  return {
    start(status, headers) {
      const encoding = headers['content-encoding'];
      if (status !== 200 || (encoding !== undefined && encoding !== 'identity')) return false;
      const type = String(headers['content-type'] ?? '')
        .split(';')[0]!
        .trim()
        .toLowerCase();
      if (type === 'application/json') mode = 'json';
      else if (type === 'text/event-stream') mode = 'sse';
      return mode !== 'pass';
    },
    chunk(data) {
      if (mode === 'json') {
        size += data.length;
        if (size > MAX_JSON_BYTES) {
          // Too large to hold: relay what was held and the rest unchanged.
          mode = 'pass';
          const out = Buffer.concat([...chunks, data]);
          chunks = [];
          return out;
        }
        chunks.push(data);
        return Buffer.alloc(0);
      }
      if (mode === 'sse') {
        pending += decoder.decode(data, { stream: true });
        let out = '';
        for (;;) {
          const m = /\r?\n\r?\n/.exec(pending);
          if (!m) break;
          out += filterEvent(pending.slice(0, m.index), ids, mayCall, hidden) + m[0];
          pending = pending.slice(m.index + m[0].length);
        }
        return Buffer.from(out);
      }
      return data;
    },
    end() {
      if (mode === 'json') {
        const body = Buffer.concat(chunks);
        chunks = [];
        const rewritten = filterDocument(body.toString('utf8'), ids, mayCall, hidden);
        return rewritten === null ? body : Buffer.from(rewritten);
      }
      if (mode === 'sse') {
        const rest = pending + decoder.decode();
        pending = '';
        return Buffer.from(rest);
      }
      return Buffer.alloc(0);
    },
  };
}
