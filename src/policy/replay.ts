/**
 * `airlock policy diff`: replays recorded calls (audit events, src/audit/event.ts) through two
 * policies and lists the calls whose decision would change — a policy PR's effect on real traffic.
 */
import { verdictOf } from './policy-tests.js';
import { policyHost } from '../request/normalize.js';
import type { PolicyDecision, PolicyRequest, PolicySnapshot } from './types.js';

/** The fields of an audit event a replay needs (a subset of `AuditEvent`). */
export interface RecordedCall {
  readonly role: string;
  readonly method: string;
  readonly scheme: 'http' | 'https';
  /** Normalised host name without port. */
  readonly host: string;
  readonly port: number;
  /** Normalised path without query (`''` for CONNECT events, replayed as `/` like the gateway decides them). */
  readonly path: string;
  /** How many recorded events this one stands for (a caller that grouped identical calls); absent: 1. */
  readonly count?: number;
}

/** A distinct call (role, method, policy host, path) whose allow/deny differs between the policies. */
export interface DecisionChange {
  readonly role: string;
  readonly method: string;
  /** Policy host: `name` or `name:port` (non-default ports only). */
  readonly host: string;
  readonly path: string;
  /** How many recorded events were this call. */
  readonly count: number;
  readonly old: PolicyDecision;
  readonly new: PolicyDecision;
}

/** Why events were not replayed, with counts. */
export interface SkippedEvents {
  /** `role` is null: the caller was never identified (no policy decision was made). */
  readonly noRole: number;
  /** Target unusable for a decision (e.g. a malformed CONNECT recorded with host "" and port 0). */
  readonly badTarget: number;
}

export interface ReplayReport {
  /** Events read. */
  readonly events: number;
  /** Events decided by both policies. */
  readonly replayed: number;
  /** Distinct calls replayed. */
  readonly distinct: number;
  readonly skipped: SkippedEvents;
  /** Changed calls, most frequent first (ties: role, host, path, method). */
  readonly changes: readonly DecisionChange[];
  /** Sum of `count` over `changes`: recorded events whose decision would change. */
  readonly changedEvents: number;
}

/** An audit line that is not a usable JSON object. */
export class AuditLineError extends Error {
  override name = 'AuditLineError';
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${message}`);
  }
}

/**
 * Parses JSON-lines audit text into recorded calls. Blank lines are ignored. Events whose `role` is
 * null (unidentified callers) come back as `null` entries so the caller can count them. An event of
 * an MCP endpoint (`mcp.messages`) gives its HTTP call and then one call per decided message (method
 * `MCP` on the message's virtual `path`).
 * @throws AuditLineError (1-based `line`) for a line that is not JSON, not an object, or lacks
 *   `method` (string), `scheme` (`http`|`https`), `host` (string), `port` (integer), `path` (string)
 *   or `role` (string or null).
 */
export function parseAuditLines(text: string): (RecordedCall | null)[] {
  const out: (RecordedCall | null)[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = (lines[i] as string).trim();
    if (raw === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (err) {
      throw new AuditLineError(`not JSON (${(err as Error).message})`, i + 1);
    }
    for (const c of callsOfAuditEvent(v, i + 1)) out.push(c);
  }
  return out;
}

/**
 * The recorded calls of one parsed audit line (see {@link parseAuditLines}): `null` for an event
 * without a role, else its call, then one per decided MCP message.
 * @param line the 1-based line number errors name.
 * @param extra fields copied into each call (a caller keeping more of the event: one object per call).
 * @throws AuditLineError as {@link parseAuditLines}.
 */
export function callsOfAuditEvent<X extends object = object>(
  v: unknown,
  line: number,
  extra?: X,
): ((RecordedCall & X) | null)[] {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new AuditLineError('not a JSON object', line);
  }
  const e = v as Record<string, unknown>;
  const bad = (field: string, want: string): AuditLineError =>
    new AuditLineError(`field "${field}" must be ${want}`, line);
  if (e.role !== null && typeof e.role !== 'string') throw bad('role', 'a string or null');
  if (typeof e.method !== 'string') throw bad('method', 'a string');
  if (e.scheme !== 'http' && e.scheme !== 'https') throw bad('scheme', '"http" or "https"');
  if (typeof e.host !== 'string') throw bad('host', 'a string');
  if (typeof e.port !== 'number' || !Number.isInteger(e.port)) throw bad('port', 'an integer');
  if (typeof e.path !== 'string') throw bad('path', 'a string');
  if (e.role === null) return [null];
  const x = (extra ?? {}) as X;
  const out: (RecordedCall & X)[] = [
    { role: e.role, method: e.method, scheme: e.scheme, host: e.host, port: e.port, path: e.path, ...x },
  ];
  // An exchange with an MCP endpoint (docs/mcp.md): each decided message is a call of its own,
  // method MCP on its virtual path.
  const mcp = e.mcp as { messages?: unknown } | undefined;
  if (Array.isArray(mcp?.messages)) {
    for (const m of mcp.messages as { path?: unknown }[]) {
      if (typeof m?.path !== 'string') continue;
      out.push({
        role: e.role,
        method: 'MCP',
        scheme: e.scheme,
        host: e.host,
        port: e.port,
        path: m.path,
        ...x,
      });
    }
  }
  return out;
}

/**
 * The policy request a recorded call was decided on, or null when the target is unusable.
 * CONNECT events are recorded with path `''` and decided with path `/` (as the gateway does).
 */
export function requestOfCall(c: RecordedCall): PolicyRequest | null {
  if (c.host === '' || c.port < 1 || c.port > 65535) return null;
  const method = c.method.toUpperCase();
  const path = method === 'CONNECT' ? '/' : c.path;
  return { role: c.role, host: policyHost(c.host.toLowerCase(), c.port, c.scheme), path, method };
}

/**
 * Decides every recorded call with both policies and collects those whose allow/deny differs,
 * deduplicated by (role, method, policy host, path) with counts. Calls whose verdict is the same but
 * whose deciding rule differs are not changes.
 */
export function replayCalls(
  oldPolicy: PolicySnapshot,
  newPolicy: PolicySnapshot,
  calls: Iterable<RecordedCall | null>,
): ReplayReport {
  let events = 0;
  let replayed = 0;
  let noRole = 0;
  let badTarget = 0;
  const seen = new Map<
    string,
    { req: PolicyRequest; count: number; old: PolicyDecision; new: PolicyDecision }
  >();
  for (const c of calls) {
    const n = c?.count ?? 1;
    events += n;
    if (c === null) {
      noRole++;
      continue;
    }
    const req = requestOfCall(c);
    if (req === null) {
      badTarget += n;
      continue;
    }
    replayed += n;
    const key = `${req.role}\0${req.method}\0${req.host}\0${req.path}`;
    const hit = seen.get(key);
    if (hit) {
      hit.count += n;
      continue;
    }
    seen.set(key, { req, count: n, old: oldPolicy.decide(req), new: newPolicy.decide(req) });
  }
  const changes: DecisionChange[] = [];
  for (const s of seen.values()) {
    // allow, ask (needs approval) and deny are three outcomes: a change between any two is listed.
    if (verdictOf(s.old) === verdictOf(s.new)) continue;
    changes.push({ ...s.req, count: s.count, old: s.old, new: s.new });
  }
  changes.sort(
    (a, b) =>
      b.count - a.count ||
      a.role.localeCompare(b.role) ||
      a.host.localeCompare(b.host) ||
      a.path.localeCompare(b.path) ||
      a.method.localeCompare(b.method),
  );
  return {
    events,
    replayed,
    distinct: seen.size,
    skipped: { noRole, badTarget },
    changes,
    changedEvents: changes.reduce((n, c) => n + c.count, 0),
  };
}
