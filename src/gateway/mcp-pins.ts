/**
 * Tool pinning against rug-pulls (issue 10; docs/mcp.md "Tool pinning"): the first time a session
 * sees a tool of an MCP endpoint in a `tools/list` answer, the gateway records a hash of what the
 * agent's model reads about it — title, description, input and output schemas, annotations — and
 * every later answer of the same session is compared with it. A tool whose description or schema
 * changed mid-session (agent-egress-bench's "rug-pull" and "tool poisoning" classes: a server that
 * looked harmless when the session started and then asks the model for secrets) is removed from the
 * answer, and every later call of it in that session is refused (mcp.ts).
 *
 * Pins live in the gateway's memory, per session and endpoint, and are dropped with the session
 * (a sweep of sessions no longer live when the table grows). A restarted gateway pins again at the
 * next list it sees.
 */
import { createHash } from 'node:crypto';

/** Most tools pinned per session and endpoint; later new tools are not pinned (and not refused). */
export const MAX_PINNED_TOOLS = 4_096;
/** Sessions kept before the sessions no longer live are swept. */
const SWEEP_AT = 1_024;

/** The JSON text of `v` with object keys sorted at every level (a hash that ignores key order). */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** SHA-256 (first 16 hex digits) of what a model reads about a tool. */
export function toolDigest(tool: Record<string, unknown>): string {
  const read = {
    title: tool.title,
    description: tool.description,
    inputSchema: tool.inputSchema,
    outputSchema: tool.outputSchema,
    annotations: tool.annotations,
  };
  return createHash('sha256').update(canonical(read)).digest('hex').slice(0, 16);
}

interface EndpointPins {
  digests: Map<string, string>;
  /** Tools seen changed in this session: refused from then on. */
  changed: Set<string>;
}

/** The pins of every session, per endpoint. */
export class ToolPins {
  readonly #sessions = new Map<string, Map<string, EndpointPins>>();

  /** @param isLive whether a session is still registered (pins of others are swept). */
  constructor(private readonly isLive: (sessionId: string) => boolean) {}

  #pins(sessionId: string, endpoint: string): EndpointPins {
    let s = this.#sessions.get(sessionId);
    if (!s) {
      if (this.#sessions.size >= SWEEP_AT)
        for (const id of [...this.#sessions.keys()]) if (!this.isLive(id)) this.#sessions.delete(id);
      s = new Map();
      this.#sessions.set(sessionId, s);
    }
    let e = s.get(endpoint);
    if (!e) {
      e = { digests: new Map(), changed: new Set() };
      s.set(endpoint, e);
    }
    return e;
  }

  /**
   * A tool as listed now: pinned at first sight.
   * @returns false when it differs from its pin (or changed before): the caller removes it.
   */
  check(sessionId: string, endpoint: string, name: string, tool: Record<string, unknown>): boolean {
    const e = this.#pins(sessionId, endpoint);
    if (e.changed.has(name)) return false;
    const digest = toolDigest(tool);
    const pinned = e.digests.get(name);
    if (pinned === undefined) {
      if (e.digests.size < MAX_PINNED_TOOLS) e.digests.set(name, digest);
      return true;
    }
    if (pinned === digest) return true;
    e.changed.add(name);
    return false;
  }

  /** Whether the tool changed earlier in this session (its calls are refused). */
  changed(sessionId: string, endpoint: string, name: string): boolean {
    return this.#sessions.get(sessionId)?.get(endpoint)?.changed.has(name) ?? false;
  }

  /** Forgets a session's pins (revoked or expired). */
  forget(sessionId: string): void {
    this.#sessions.delete(sessionId);
  }
}
