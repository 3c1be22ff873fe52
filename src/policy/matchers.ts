/**
 * Airlock's safe matchers (docs/policy.md "Matching"). No regular expression is ever built from
 * policy text: patterns are parsed once into plain data and compared with string operations, so a
 * dot is always a literal dot, every match is anchored at both ends, and hosts compare
 * case-insensitively.
 *
 * The same functions back both the compiled index ({@link ./compile.ts}) and the Casbin enforcer
 * used to cross-check it ({@link ./casbin.ts}), which registers {@link hostMatch},
 * {@link pathMatch} and {@link methodMatch} under those names.
 */
import { isNormalizedPath, normalizeHost, normalizePath } from '../request/normalize.js';

// ---------------------------------------------------------------------------------------------------------
// Hosts

/**
 * A parsed host pattern.
 * - `exact`: `name` or `name:port`; `key` is the policy host it equals.
 * - `wildcard`: `*.suffix` or `*.suffix:port`; matches exactly ONE extra leftmost label; `key` is
 *   `suffix` or `suffix:port` (what remains of a matching policy host after its first label).
 */
export interface HostPattern {
  readonly kind: 'exact' | 'wildcard';
  readonly key: string;
}

/** Thrown by the pattern parsers; the loader wraps it in a PolicyError with `policy.csv:LINE`. */
export class PatternError extends Error {
  override name = 'PatternError';
}

/** True for a label that is entirely numeric or `0x` hex: WHATWG would read the name as IPv4. */
function isNumericLabel(label: string): boolean {
  return /^(?:[0-9]+|0x[0-9a-f]*)$/.test(label);
}

/**
 * Parses a host pattern from policy.csv.
 *
 * Grammar: `NAME[:PORT]` or `*.NAME[:PORT]` where NAME is already canonical (what
 * {@link normalizeHost} returns: lowercase, punycode, no trailing dot; an IPv4 literal or a bracketed
 * IPv6 literal is allowed for exact patterns) and PORT is 1–65535 except 80 and 443 (the defaults are
 * implied by a bare name). A wildcard suffix needs at least two labels and cannot be an IP address.
 * @throws PatternError with a message naming the problem and, where obvious, the fix.
 */
export function parseHostPattern(text: string): HostPattern {
  if (text === '') throw new PatternError('host pattern is empty');
  if (text === '*') throw new PatternError('host "*" is not allowed: name the host (or "*.suffix")');
  let name: string;
  let port: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    name = close === -1 ? text : text.slice(0, close + 1);
    const rest = close === -1 ? '' : text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw new PatternError(`host "${text}": junk after "]"`);
      port = rest.slice(1);
    }
  } else {
    const colon = text.indexOf(':');
    name = colon === -1 ? text : text.slice(0, colon);
    port = colon === -1 ? undefined : text.slice(colon + 1);
  }
  if (port !== undefined) {
    if (!/^[1-9][0-9]{0,4}$/.test(port) || Number(port) > 65535) {
      throw new PatternError(`host "${text}": port "${port}" is not a number in 1-65535`);
    }
    if (port === '80' || port === '443') {
      throw new PatternError(
        `host "${text}": port ${port} is a scheme default; write the bare host "${name}" (it matches ` +
          'http on 80 and https on 443 only)',
      );
    }
  }
  const suffixPort = port === undefined ? '' : `:${port}`;
  if (name.startsWith('*.')) {
    const suffix = name.slice(2);
    if (suffix.includes('*')) {
      throw new PatternError(
        `host "${text}": "*" is only allowed as the whole first label ("*.example.com")`,
      );
    }
    const labels = suffix.split('.');
    if (suffix.startsWith('[') || isNumericLabel(labels[labels.length - 1] as string)) {
      throw new PatternError(`host "${text}": a wildcard cannot cover IP addresses`);
    }
    canonical(suffix, text);
    if (labels.length < 2) {
      throw new PatternError(
        `host "${text}": a wildcard needs a suffix of at least two labels ("*.example.com")`,
      );
    }
    return { kind: 'wildcard', key: suffix + suffixPort };
  }
  if (name.includes('*')) {
    throw new PatternError(`host "${text}": "*" is only allowed as the whole first label ("*.example.com")`);
  }
  canonical(name, text);
  return { kind: 'exact', key: name + suffixPort };
}

function canonical(name: string, text: string): void {
  let norm: string;
  try {
    norm = normalizeHost(name);
  } catch (err) {
    throw new PatternError(`host "${text}": ${(err as Error).message}`);
  }
  if (norm !== name) throw new PatternError(`host "${text}" is not in canonical form; write "${norm}"`);
}

/**
 * The wildcard key of a policy host: everything after its first label, when that first label is a
 * plain DNS label (`a.example.com:3000` → `example.com:3000`); undefined otherwise (IPv6 literals,
 * single-label names). Allocates one string.
 */
export function wildcardKeyOf(host: string): string | undefined {
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if (c === 0x2e) return i === 0 ? undefined : host.slice(i + 1);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x2d;
    if (!ok) return undefined;
  }
  return undefined;
}

/** Matches a (lowercased) policy host against a parsed pattern. */
export function matchHostPattern(p: HostPattern, host: string): boolean {
  return p.kind === 'exact' ? host === p.key : wildcardKeyOf(host) === p.key;
}

// ---------------------------------------------------------------------------------------------------------
// Paths

/**
 * A parsed path pattern: literal segments (strings), `:param` segments (null), and whether it ends
 * with the `*` tail.
 */
export interface PathPattern {
  readonly segments: readonly (string | null)[];
  readonly tail: boolean;
}

const PARAM = /^:[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses a path pattern from policy.csv.
 *
 * Grammar: starts with `/`; segments separated by single slashes; each segment is a literal (already
 * normalised: see {@link normalizePath}), a parameter `:name` (matches one non-empty segment), or — as
 * the whole last segment only — `*` (matches the prefix itself and everything below it: `/a/*`
 * matches `/a`, `/a/` and `/a/b/c`, not `/ab`). `/*` matches every path. No trailing slash (a
 * request's trailing slash is ignored when matching), no `.`/`..`, no query.
 * @throws PatternError
 */
export function parsePathPattern(text: string): PathPattern {
  if (!text.startsWith('/')) throw new PatternError(`path "${text}" must start with "/"`);
  let base = text;
  let tail = false;
  if (text === '/*') {
    base = '/';
    tail = true;
  } else if (text.endsWith('/*')) {
    base = text.slice(0, -2);
    tail = true;
  }
  if (base !== '/' && base.endsWith('/')) {
    throw new PatternError(`path "${text}": remove the trailing slash (a trailing slash is not significant)`);
  }
  let norm: string;
  try {
    norm = normalizePath(base);
  } catch (err) {
    throw new PatternError(`path "${text}": ${(err as Error).message}`);
  }
  if (norm !== base)
    throw new PatternError(`path "${text}" is not in normal form; write "${norm}${tail ? '/*' : ''}"`);
  const segments: (string | null)[] = [];
  if (base !== '/') {
    for (const seg of base.slice(1).split('/')) {
      if (seg.includes('*')) {
        throw new PatternError(`path "${text}": "*" is only allowed as the whole last segment ("/a/*")`);
      }
      if (seg.startsWith(':')) {
        if (!PARAM.test(seg)) throw new PatternError(`path "${text}": bad parameter "${seg}" (use ":name")`);
        segments.push(null);
      } else {
        segments.push(seg);
      }
    }
  }
  return { segments, tail };
}

/**
 * Matches a normalised request path against a parsed pattern without allocating. A path that is not
 * normalised never matches (callers check {@link isNormalizedPath} once per request).
 */
export function matchPathPattern(p: PathPattern, path: string): boolean {
  const n = path.length;
  let pos = 0;
  const segs = p.segments;
  for (let k = 0; k < segs.length; k++) {
    if (pos >= n || path.charCodeAt(pos) !== 0x2f) return false;
    const start = pos + 1;
    let end = path.indexOf('/', start);
    if (end === -1) end = n;
    const seg = segs[k];
    if (seg === null || seg === undefined) {
      if (end === start) return false;
    } else if (end - start !== seg.length || !path.startsWith(seg, start)) {
      return false;
    }
    pos = end;
  }
  // What is left is '' or starts with '/'.
  return p.tail || pos === n || pos === n - 1;
}

// ---------------------------------------------------------------------------------------------------------
// Methods

/**
 * Parses a method pattern: `*` or an uppercase token (`GET`, `POST`, `PROPFIND`, `M-SEARCH`).
 * @throws PatternError, e.g. for lowercase methods.
 */
export function parseMethodPattern(text: string): string {
  if (text === '*') return text;
  if (/^[A-Z][A-Z0-9_-]{0,31}$/.test(text)) return text;
  if (/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(text)) {
    throw new PatternError(`method "${text}" must be uppercase: "${text.toUpperCase()}"`);
  }
  throw new PatternError(`method "${text}" is not a method name or "*"`);
}

/**
 * Methods that `*` never matches, in allow and deny rules alike: each opens a channel whose traffic
 * the path rules cannot see, so only a rule naming it grants (or denies) it — `CONNECT` (a tunnel)
 * and `WEBSOCKET` (a WebSocket handshake, decided as this method by the gateway; docs/policy.md) —
 * or whose grant must be deliberate: `MCP` (one tool call, resource read or prompt of an MCP endpoint
 * declared in mcp.yaml, decided on its virtual path; docs/mcp.md).
 */
export const NAMED_ONLY_METHODS: ReadonlySet<string> = new Set(['CONNECT', 'WEBSOCKET', 'MCP']);

/**
 * `*` matches every method except the {@link NAMED_ONLY_METHODS} (`CONNECT`, `WEBSOCKET`: a channel
 * bypasses path rules, so it must be granted by name); otherwise methods compare exactly. `method`
 * is the request's uppercased method.
 */
export function matchMethodPattern(pattern: string, method: string): boolean {
  return pattern === '*' ? !NAMED_ONLY_METHODS.has(method) : pattern === method;
}

// ---------------------------------------------------------------------------------------------------------
// Casbin-facing functions: (request value, pattern text) → boolean. Invalid patterns never match.

const hostCache = new Map<string, HostPattern | null>();
const pathCache = new Map<string, PathPattern | null>();
const CACHE_LIMIT = 10_000;

function cached<T>(cache: Map<string, T | null>, key: string, parse: (t: string) => T): T | null {
  let v = cache.get(key);
  if (v === undefined) {
    try {
      v = parse(key);
    } catch {
      v = null;
    }
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(key, v);
  }
  return v;
}

/**
 * `hostMatch(requestHost, pattern)`: the request host (a policy host, `name` or `name:port`) compared
 * case-insensitively against a host pattern ({@link parseHostPattern}).
 */
export function hostMatch(host: string, pattern: string): boolean {
  const p = cached(hostCache, pattern, parseHostPattern);
  return p !== null && matchHostPattern(p, String(host).toLowerCase());
}

/** `pathMatch(requestPath, pattern)`: see {@link parsePathPattern}. Non-normalised paths never match. */
export function pathMatch(path: string, pattern: string): boolean {
  const p = cached(pathCache, pattern, parsePathPattern);
  return p !== null && isNormalizedPath(path) && matchPathPattern(p, path);
}

/** `methodMatch(requestMethod, pattern)`: see {@link matchMethodPattern}; the request is uppercased. */
export function methodMatch(method: string, pattern: string): boolean {
  return matchMethodPattern(pattern, String(method).toUpperCase());
}
