/**
 * Request normalisation for the gateway's hot path (docs/policy.md "Normalisation").
 *
 * Every function here is pure and synchronous. They either return the one canonical form the policy
 * matches on (and the gateway forwards upstream) or throw {@link RequestValidationError}: a request
 * that cannot be normalised unambiguously is refused, never guessed at.
 */
import { isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';
import { AmbiguousRequestError, RequestValidationError } from '../errors.js';

/** Longest host name accepted (RFC 1035 253 characters in text form, without the trailing dot). */
const MAX_HOST_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;
/** Longest path accepted; longer targets are refused rather than scanned. */
const MAX_PATH_LENGTH = 8192;

// ---------------------------------------------------------------------------------------------------------
// Hosts

function hostError(message: string): RequestValidationError {
  return new RequestValidationError(message, 'host');
}

/** `a-z 0-9 _`, and `-` inside a label. Applied to the ASCII (punycode) form. */
function isLabelChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x2d;
}

/** Checks the dot-separated labels of an ASCII, lowercase host name. */
function checkLabels(host: string, raw: string): void {
  if (host.length > MAX_HOST_LENGTH)
    throw hostError(`host "${raw}" is longer than ${MAX_HOST_LENGTH} characters`);
  let start = 0;
  for (let i = 0; i <= host.length; i++) {
    const c = i === host.length ? 0x2e : host.charCodeAt(i);
    if (c === 0x2e) {
      const len = i - start;
      if (len === 0) throw hostError(`host "${raw}" has an empty label`);
      if (len > MAX_LABEL_LENGTH)
        throw hostError(`host "${raw}" has a label longer than ${MAX_LABEL_LENGTH}`);
      if (host.charCodeAt(start) === 0x2d || host.charCodeAt(i - 1) === 0x2d) {
        throw hostError(`host "${raw}" has a label that starts or ends with "-"`);
      }
      start = i + 1;
    } else if (!isLabelChar(c)) {
      throw hostError(`host "${raw}" contains the character "${host[i]}"`);
    }
  }
}

/**
 * Fast path: true when `name` is already what domainToASCII would return, so it can be returned
 * as is — lowercase `a-z 0-9 _ -` labels of valid length without leading/trailing `-`, no `xn--`
 * label (those need IDNA validation), and a last label that is not numeric (WHATWG would parse the
 * name as IPv4). test/unit/request/normalize.test.ts checks it against domainToASCII.
 */
function isPlainAsciiName(name: string): boolean {
  const n = name.length;
  if (n > MAX_HOST_LENGTH) return false;
  let start = 0;
  let numeric = true; // the current label is all digits (or 0x + hex, checked at its end)
  for (let i = 0; i <= n; i++) {
    const c = i === n ? 0x2e : name.charCodeAt(i);
    if (c === 0x2e) {
      const len = i - start;
      if (len === 0 || len > MAX_LABEL_LENGTH) return false;
      if (name.charCodeAt(start) === 0x2d || name.charCodeAt(i - 1) === 0x2d) return false;
      if (len >= 4 && name.startsWith('xn--', start)) return false;
      if (i === n) {
        if (numeric) return false;
        if (len >= 2 && name.charCodeAt(start) === 0x30 && name.charCodeAt(start + 1) === 0x78) {
          let hex = true;
          for (let k = start + 2; k < i; k++) {
            const h = name.charCodeAt(k);
            if (!((h >= 0x30 && h <= 0x39) || (h >= 0x61 && h <= 0x66))) hex = false;
          }
          if (hex) return false;
        }
      }
      start = i + 1;
      numeric = true;
    } else if (c >= 0x30 && c <= 0x39) {
      // digit: keeps `numeric`
    } else if ((c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x2d) {
      numeric = false;
    } else {
      return false;
    }
  }
  return true;
}

/**
 * Returns the canonical form of a request host, as the policy matches it.
 *
 * - DNS names: lowercased, one trailing dot removed, internationalised names converted to punycode
 *   (`Bücher.DE.` → `xn--bcher-kva.de`); IPv4 literals in any WHATWG form become dotted decimal
 *   (`0x7f.1` → `127.0.0.1`). Labels must be 1–63 characters of `a-z 0-9 _ -` (no leading/trailing
 *   `-`), the whole name at most 253 characters.
 * - IPv6 literals stay in brackets, in their canonical compressed lowercase form (`[0:0::1]` → `[::1]`).
 *
 * The input carries no port (see {@link policyHost}).
 * @throws RequestValidationError (field `host`) for an empty host, a port, a zone id, percent-escapes,
 *   `*`, empty or over-long labels, characters outside the allowed set, or invalid IDN.
 */
export function normalizeHost(raw: string): string {
  if (typeof raw !== 'string' || raw.length === 0) throw hostError('host is empty');
  if (raw.length > MAX_HOST_LENGTH + 1 && raw.charCodeAt(0) !== 0x5b) {
    throw hostError(`host is longer than ${MAX_HOST_LENGTH} characters`);
  }
  if (raw.charCodeAt(0) === 0x5b /* [ */) {
    if (raw.charCodeAt(raw.length - 1) !== 0x5d /* ] */) throw hostError(`host "${raw}" has an unclosed "["`);
    const inner = raw.slice(1, -1);
    if (inner.includes('%')) throw hostError(`host "${raw}": IPv6 zone identifiers are not accepted`);
    if (!isIPv6(inner)) throw hostError(`host "${raw}" is not a valid IPv6 literal`);
    return new URL(`http://[${inner}]/`).hostname;
  }
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c < 0x80 && !isLabelChar(c) && c !== 0x2e && !(c >= 0x41 && c <= 0x5a)) {
      if (c === 0x3a) throw hostError(`host "${raw}" contains ":"; a port is not part of the host`);
      throw hostError(`host "${raw}" contains the character ${JSON.stringify(raw[i])}`);
    }
    // C1 controls and other invisible code points are rejected by domainToASCII below.
  }
  const name = raw.charCodeAt(raw.length - 1) === 0x2e ? raw.slice(0, -1) : raw;
  if (name.length === 0) throw hostError('host is empty');
  // One trailing dot only: `127.1..` is an empty label (the IPv4 parser below would accept it).
  if (name.charCodeAt(name.length - 1) === 0x2e) throw hostError(`host "${raw}" has an empty label`);
  if (isPlainAsciiName(name)) return name;
  const ascii = domainToASCII(name);
  if (ascii === '') throw hostError(`host "${raw}" is not a valid domain name or IP address`);
  checkLabels(ascii, raw);
  return ascii;
}

/**
 * The host as the policy sees it: `host` when `port` is the scheme's default (80 for http, 443 for
 * https), otherwise `host:port`. `host` must already be normalised ({@link normalizeHost}).
 * @example policyHost('forum.test', 3000, 'http') === 'forum.test:3000'
 * @throws RequestValidationError (field `port`) when `port` is not an integer in 1–65535.
 */
export function policyHost(host: string, port: number, scheme: 'http' | 'https'): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RequestValidationError(`port ${String(port)} is not in 1-65535`, 'port');
  }
  if ((scheme === 'https' && port === 443) || (scheme === 'http' && port === 80)) return host;
  return `${host}:${port}`;
}

// ---------------------------------------------------------------------------------------------------------
// Paths

function pathError(message: string): RequestValidationError {
  return new RequestValidationError(message, 'path');
}

/** Character classes for the path scanner (ASCII only; everything >= 0x80 is refused). */
const C_REFUSE = 0; // control characters, `\`, `?`, `#`
const C_KEEP = 1; // unreserved, sub-delims, `:`, `@`
const C_ENCODE = 2; // printable ASCII that RFC 3986 does not allow raw in a path: percent-encoded
const C_PERCENT = 3;
const C_SLASH = 4;
const C_DOT = 5;

const CLASS = new Uint8Array(128);
{
  const keep = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~!$&'()*+,;=:@";
  for (const ch of keep) CLASS[ch.charCodeAt(0)] = C_KEEP;
  for (const ch of ' "<>[]^`{|}') CLASS[ch.charCodeAt(0)] = C_ENCODE;
  CLASS[0x25] = C_PERCENT;
  CLASS[0x2f] = C_SLASH;
  CLASS[0x2e] = C_DOT;
}

/** True for the unreserved characters `ALPHA DIGIT - . _ ~` (by byte value). */
function isUnreserved(c: number): boolean {
  return (
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2d ||
    c === 0x2e ||
    c === 0x5f ||
    c === 0x7e
  );
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

function isUpperHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46);
}

function describeRefused(c: number): string {
  if (c === 0x5c) return 'a backslash';
  if (c === 0x3f) return '"?" (the query must be split off first)';
  if (c === 0x23) return '"#"';
  if (c < 0x20 || c === 0x7f) return `the control character 0x${c.toString(16).padStart(2, '0')}`;
  return `the character ${JSON.stringify(String.fromCharCode(c))}`;
}

/**
 * True when `path` is already in the form {@link normalizePath} returns: starts with `/`, only
 * allowed characters, percent-escapes uppercase and never of unreserved characters, `%2F`, `%5C` or
 * `%00`, no empty segment except a final one (a trailing slash), no `.` or `..` segment.
 * Allocation-free; the policy uses it to refuse non-normalised paths (they match no rule).
 */
export function isNormalizedPath(path: string): boolean {
  const n = path.length;
  if (n === 0 || n > MAX_PATH_LENGTH || path.charCodeAt(0) !== 0x2f) return false;
  let segStart = 1;
  let dots = 0; // number of leading dots in the current segment while it consists only of dots
  for (let i = 1; i < n; i++) {
    const c = path.charCodeAt(i);
    if (c >= 0x80) return false;
    switch (CLASS[c]) {
      case C_SLASH: {
        const len = i - segStart;
        if (len === 0) return false; // `//`
        if (dots === len && len <= 2) return false; // `.` or `..`
        segStart = i + 1;
        dots = 0;
        break;
      }
      case C_DOT:
        if (dots === i - segStart) dots++;
        break;
      case C_KEEP:
        break;
      case C_PERCENT: {
        if (i + 2 >= n) return false;
        const h = path.charCodeAt(i + 1);
        const l = path.charCodeAt(i + 2);
        if (!isUpperHex(h) || !isUpperHex(l)) return false;
        const v = hexValue(h) * 16 + hexValue(l);
        if (isUnreserved(v) || v === 0x2f || v === 0x5c || v === 0) return false;
        i += 2;
        break;
      }
      default:
        return false;
    }
  }
  const last = n - segStart;
  if (last > 0 && dots === last && last <= 2) return false;
  return true;
}

/**
 * Normalises the path part of a request target (no query, no fragment) to the single form the
 * policy matches and the gateway sends upstream.
 *
 * In order: percent-escapes of unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded, all other
 * escapes get uppercase hex (`%3a` → `%3A`); printable ASCII that may not appear raw in a path
 * (space `" < > [ ] ^ \` { | }`) is percent-encoded; repeated slashes are merged; dot segments are
 * resolved as in RFC 3986 §5.2.4 (including ones spelled `%2e`), never above the root; the result
 * always starts with `/`. A trailing slash is kept. The function is idempotent.
 *
 * @example normalizePath('/a//b/%2e%2E/c%7e%3a') === '/a/c~%3A'
 * @throws RequestValidationError (field `path`) for an encoded slash (`%2F`), backslash (`%5C`) or NUL
 *   (`%00`), a literal backslash, `?`, `#`, control characters, non-ASCII characters, malformed
 *   percent-escapes, or a path longer than 8192 characters.
 */
export function normalizePath(raw: string): string {
  if (typeof raw !== 'string') throw pathError('path is not a string');
  if (raw.length > MAX_PATH_LENGTH) throw pathError(`path is longer than ${MAX_PATH_LENGTH} characters`);
  if (isNormalizedPath(raw)) return raw;
  if (raw.length === 0) return '/';

  // Pass 1: validate and re-encode into `s`.
  let s = raw.charCodeAt(0) === 0x2f ? '' : '/';
  let runStart = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c >= 0x80) throw pathError('path contains a non-ASCII character; percent-encode it as UTF-8');
    const cls = CLASS[c];
    if (cls === C_KEEP || cls === C_SLASH || cls === C_DOT) continue;
    if (cls === C_REFUSE) throw pathError(`path contains ${describeRefused(c)}`);
    s += raw.slice(runStart, i);
    if (cls === C_ENCODE) {
      s += `%${c.toString(16).toUpperCase().padStart(2, '0')}`;
      runStart = i + 1;
      continue;
    }
    // C_PERCENT
    const h = i + 1 < raw.length ? hexValue(raw.charCodeAt(i + 1)) : -1;
    const l = i + 2 < raw.length ? hexValue(raw.charCodeAt(i + 2)) : -1;
    if (h < 0 || l < 0) throw pathError(`path has an invalid percent-escape at offset ${i}`);
    const v = h * 16 + l;
    if (v === 0x2f) throw pathError('path contains an encoded slash (%2F)');
    if (v === 0x5c) throw pathError('path contains an encoded backslash (%5C)');
    if (v === 0) throw pathError('path contains an encoded NUL (%00)');
    s += isUnreserved(v) ? String.fromCharCode(v) : `%${raw.slice(i + 1, i + 3).toUpperCase()}`;
    i += 2;
    runStart = i + 1;
  }
  s += raw.slice(runStart);

  // Pass 2: merge slashes and remove dot segments.
  const segs = s.split('/');
  const out: string[] = [];
  let trailing = false;
  for (let i = 1; i < segs.length; i++) {
    const seg = segs[i] as string;
    const last = i === segs.length - 1;
    if (seg === '' || seg === '.') {
      if (last) trailing = true;
    } else if (seg === '..') {
      out.pop();
      if (last) trailing = true;
    } else {
      out.push(seg);
    }
  }
  const joined = `/${out.join('/')}`;
  return trailing && out.length > 0 ? `${joined}/` : joined;
}

/**
 * Refuses a normalised path that common upstreams read differently from the gateway, so a deny rule
 * could be walked around (docs/security.md "Bypass classes"):
 * - a `;` (path parameters: Tomcat, Jetty and Spring cut `;…` off a segment, so `/a/..;/b` reaches
 *   `/b` there while the policy sees a segment `..;`);
 * - `%25` followed by two hex digits (an upstream that decodes twice turns `%252e%252e` into `..`);
 * - a segment ending in `.` or in a space `%20` (IIS and Windows file APIs drop them: `/admin.` is
 *   `/admin` there).
 * @throws AmbiguousRequestError (field `path`) naming the construct.
 */
export function checkUnambiguousPath(path: string): void {
  if (path.includes(';')) {
    throw new AmbiguousRequestError(
      'path contains ";" (path parameters), which some upstreams strip before routing; encode it as %3B if it is data',
      'path',
    );
  }
  for (let i = path.indexOf('%25'); i !== -1; i = path.indexOf('%25', i + 3)) {
    if (hexValue(path.charCodeAt(i + 3)) >= 0 && hexValue(path.charCodeAt(i + 4)) >= 0) {
      throw new AmbiguousRequestError(
        `path contains a double percent-encoding ("${path.slice(i, i + 5)}"), which an upstream that decodes twice reads as another path`,
        'path',
      );
    }
  }
  let start = 1;
  for (let i = 1; i <= path.length; i++) {
    if (i < path.length && path.charCodeAt(i) !== 0x2f) continue;
    const seg = path.slice(start, i);
    if (seg.length > 0 && (seg.endsWith('.') || seg.endsWith('%20'))) {
      throw new AmbiguousRequestError(
        `path segment "${seg}" ends in a dot or a space, which some upstreams drop (/admin. is /admin there)`,
        'path',
      );
    }
    start = i + 1;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Absolute URLs

/** A request decomposed and normalised. `policyHost` is what the policy's host patterns match. */
export interface NormalizedRequest {
  scheme: 'http' | 'https';
  /** Normalised host ({@link normalizeHost}), without port. */
  host: string;
  /** Explicit port or the scheme's default. */
  port: number;
  /** Normalised path ({@link normalizePath}). */
  path: string;
  /** Raw query without `?`; `''` for a bare `?`, null when absent. Never used by the policy. */
  query: string | null;
  /** {@link policyHost}: `host` or `host:port`. */
  policyHost: string;
  /** The method, uppercased (`GET`). */
  method: string;
}

const METHOD_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$/;

/**
 * Validates an HTTP method (an RFC 9110 token of at most 32 characters) and uppercases it.
 * @throws RequestValidationError (field `method`).
 */
export function normalizeMethod(method: string): string {
  if (typeof method !== 'string' || !METHOD_TOKEN.test(method)) {
    throw new RequestValidationError(`method ${JSON.stringify(method)} is not an HTTP token`, 'method');
  }
  return method.toUpperCase();
}

/**
 * Splits and normalises an absolute `http:`/`https:` URL (absolute-form request target, or a URL in a
 * policy test). The authority must not carry userinfo; the fragment is ignored; the query is returned
 * raw (it is not part of the policy decision, and is checked only for control characters, spaces and
 * non-ASCII). Backslashes are refused, not read as `/` as browsers do.
 *
 * @example requestFromUrl('http://Forum.Test:3000/posts/./1?x=1', 'get')
 *   // → { scheme: 'http', host: 'forum.test', port: 3000, path: '/posts/1', query: 'x=1',
 *   //     policyHost: 'forum.test:3000', method: 'GET' }
 * @throws RequestValidationError with field `url` (not absolute http/https, userinfo, bad port,
 *   characters refused anywhere in the URL), `host`, `path`, `port` or `method`.
 */
export function requestFromUrl(url: string, method: string): NormalizedRequest {
  const m = normalizeMethod(method);
  if (typeof url !== 'string') throw new RequestValidationError('url is not a string', 'url');
  for (let i = 0; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) {
      throw new RequestValidationError('url contains a space or control character', 'url');
    }
  }
  const schemeMatch = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
  const scheme = schemeMatch?.[1]?.toLowerCase();
  if (!schemeMatch || (scheme !== 'http' && scheme !== 'https')) {
    throw new RequestValidationError(`url must be an absolute http:// or https:// URL, got "${url}"`, 'url');
  }
  const hashAt = url.indexOf('#');
  const rest = url.slice(schemeMatch[0].length, hashAt === -1 ? undefined : hashAt);
  let authEnd = rest.length;
  for (let i = 0; i < rest.length; i++) {
    const c = rest.charCodeAt(i);
    if (c === 0x2f || c === 0x3f) {
      authEnd = i;
      break;
    }
    if (c === 0x5c) throw new RequestValidationError('url contains a backslash', 'url');
  }
  const authority = rest.slice(0, authEnd);
  if (authority.includes('@')) {
    throw new RequestValidationError('url must not contain userinfo (user:password@)', 'url');
  }
  let hostRaw: string;
  let portRaw: string | undefined;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) throw new RequestValidationError(`url has an unclosed IPv6 literal`, 'url');
    hostRaw = authority.slice(0, close + 1);
    const after = authority.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw new RequestValidationError(`url has junk after "]"`, 'url');
      portRaw = after.slice(1);
    }
  } else {
    const colon = authority.indexOf(':');
    hostRaw = colon === -1 ? authority : authority.slice(0, colon);
    portRaw = colon === -1 ? undefined : authority.slice(colon + 1);
  }
  let port = scheme === 'https' ? 443 : 80;
  if (portRaw !== undefined) {
    if (!/^[0-9]{1,5}$/.test(portRaw) || Number(portRaw) < 1 || Number(portRaw) > 65535) {
      throw new RequestValidationError(`url has an invalid port "${portRaw}"`, 'port');
    }
    port = Number(portRaw);
  }
  const host = normalizeHost(hostRaw);
  const afterAuth = rest.slice(authEnd);
  const q = afterAuth.indexOf('?');
  const pathRaw = q === -1 ? afterAuth : afterAuth.slice(0, q);
  const query = q === -1 ? null : afterAuth.slice(q + 1);
  if (query !== null && /[^\x21-\x7e]/.test(query)) {
    throw new RequestValidationError('query contains a non-ASCII character; percent-encode it', 'url');
  }
  const path = normalizePath(pathRaw === '' ? '/' : pathRaw);
  checkUnambiguousPath(path);
  return { scheme, host, port, path, query, policyHost: policyHost(host, port, scheme), method: m };
}

// ---------------------------------------------------------------------------------------------------------
// Case folding (deny carve-outs that hold on case-insensitive upstreams; docs/policy.md "Path case")

/**
 * Whether a normalised path has an ASCII uppercase letter outside its percent-escapes (whose hex
 * digits are uppercase by normalisation and are not letters of the path).
 */
export function hasUpperCase(path: string): boolean {
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25 /* % */) i += 2;
    else if (c >= 0x41 && c <= 0x5a) return true;
  }
  return false;
}

/**
 * Lowercases the ASCII letters of a normalised path or path-pattern segment, leaving percent-escapes
 * as they are (`/Admin/%3A` → `/admin/%3A`), so the result is still in normal form. Non-ASCII never
 * occurs in a normalised path.
 */
export function foldPathCase(path: string): string {
  if (!hasUpperCase(path)) return path;
  let out = '';
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25) {
      out += path.slice(i, i + 3);
      i += 2;
    } else out += c >= 0x41 && c <= 0x5a ? String.fromCharCode(c + 0x20) : path[i];
  }
  return out;
}
