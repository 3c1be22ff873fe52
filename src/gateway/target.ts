import { isIP } from 'node:net';
import { RequestValidationError } from '../errors.js';
import { checkUnambiguousPath, normalizeHost, normalizePath, policyHost } from '../request/normalize.js';
import { framingProblem } from './headers.js';

/** A proxy request target after normalisation: what the policy sees and what goes upstream. */
export interface Target {
  scheme: 'http' | 'https';
  /** Normalised host: lowercase, no trailing dot, punycode; IPv6 without brackets. */
  host: string;
  port: number;
  /** Normalised path, no query. */
  path: string;
  /** `?query` as received (possibly empty); forwarded upstream, never logged. */
  query: string;
  /** The host as the policy sees it: `host` or `host:port` (see normalize.policyHost). */
  policyHost: string;
  /** The Host header value sent upstream (`host` or `host:port`, IPv6 bracketed). */
  authority: string;
}

const DEFAULT_PORT = { http: 80, https: 443 } as const;

/** An IPv6 literal (only a name with a colon can be one: isIP's IPv6 pattern is not run on names). */
function isV6(host: string): boolean {
  return host.includes(':') && isIP(host) === 6;
}

/**
 * Splits `host[:port]` / `[v6]:port`. The host is normalised; the port defaults to the scheme's.
 * @throws RequestValidationError naming `field` when the authority is malformed.
 */
export function parseAuthority(
  raw: string,
  scheme: 'http' | 'https',
  field: string,
): { host: string; port: number } {
  if (raw.length === 0) throw new RequestValidationError(`${field}: empty host`, field);
  if (raw.includes('@')) throw new RequestValidationError(`${field}: userinfo is not allowed`, field);
  let hostPart: string;
  let portPart: string | undefined;
  if (raw.startsWith('[')) {
    const end = raw.indexOf(']');
    if (end < 0) throw new RequestValidationError(`${field}: unterminated IPv6 literal`, field);
    hostPart = raw.slice(1, end);
    const after = raw.slice(end + 1);
    if (after !== '' && !after.startsWith(':'))
      throw new RequestValidationError(`${field}: malformed`, field);
    portPart = after === '' ? undefined : after.slice(1);
    if (isIP(hostPart) !== 6) throw new RequestValidationError(`${field}: invalid IPv6 literal`, field);
  } else {
    const colon = raw.lastIndexOf(':');
    hostPart = colon < 0 ? raw : raw.slice(0, colon);
    portPart = colon < 0 ? undefined : raw.slice(colon + 1);
  }
  let port: number = DEFAULT_PORT[scheme];
  if (portPart !== undefined) {
    if (!/^\d{1,5}$/.test(portPart) || Number(portPart) < 1 || Number(portPart) > 65535) {
      throw new RequestValidationError(`${field}: invalid port "${portPart}"`, field);
    }
    port = Number(portPart);
  }
  // IPv6 literals are canonicalised (`[0::1]` -> `::1`) so they compare equal to policy patterns.
  const host = isV6(hostPart) ? normalizeHost(`[${hostPart}]`).slice(1, -1) : normalizeHost(hostPart);
  return { host, port };
}

function authorityOf(host: string, port: number, scheme: 'http' | 'https'): string {
  const h = isV6(host) ? `[${host}]` : host;
  return port === DEFAULT_PORT[scheme] ? h : `${h}:${port}`;
}

/** Splits `path?query`, normalising the path. */
function splitPathQuery(pathAndQuery: string): { path: string; query: string } {
  if (pathAndQuery.includes('#'))
    throw new RequestValidationError('fragments are not allowed', 'request-target');
  const q = pathAndQuery.indexOf('?');
  const rawPath = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  const path = normalizePath(rawPath === '' ? '/' : rawPath);
  checkUnambiguousPath(path);
  return { path, query: q < 0 ? '' : pathAndQuery.slice(q) };
}

/**
 * Parses a request inside an intercepted CONNECT tunnel: origin-form (`/path?query`, RFC 9112
 * 3.2.1) for the tunnel's host, or absolute-form naming that same host. The Host header must name
 * the tunnel's host and port too (DESIGN.md property 7: CONNECT authority, SNI and Host agree).
 * @throws RequestValidationError naming what disagrees.
 */
export function parseTunnelTarget(
  url: string,
  hostHeader: string | undefined,
  host: string,
  port: number,
  scheme: 'http' | 'https' = 'https',
): Target {
  let pathAndQuery = url;
  if (!url.startsWith('/')) {
    const prefix = `${scheme}://`;
    if (!url.toLowerCase().startsWith(prefix)) {
      throw new RequestValidationError('expected an origin-form target inside the tunnel', 'request-target');
    }
    const rest = url.slice(prefix.length);
    const slash = rest.search(/[/?]/);
    const a = parseAuthority(slash < 0 ? rest : rest.slice(0, slash), scheme, 'request-target');
    if (a.host !== host || a.port !== port) {
      throw new RequestValidationError(
        'request target names another host than the CONNECT',
        'request-target',
      );
    }
    pathAndQuery = slash < 0 ? '/' : rest.slice(slash);
  }
  if (hostHeader === undefined) throw new RequestValidationError('missing Host header', 'host');
  const h = parseAuthority(hostHeader, scheme, 'host');
  if (h.host !== host || h.port !== port) {
    throw new RequestValidationError('Host header names another host than the CONNECT', 'host');
  }
  const { path, query } = splitPathQuery(pathAndQuery);
  return {
    scheme,
    host,
    port,
    path,
    query,
    policyHost: policyHost(isV6(host) ? `[${host}]` : host, port, scheme),
    authority: authorityOf(host, port, scheme),
  };
}

/**
 * Parses an absolute-form request target (`http://host[:port]/path?query`, RFC 9112 3.2.2) without
 * the WHATWG URL parser, which would silently rewrite backslashes and dot segments before the policy
 * could see them. Fragments are refused; `https://` targets must use CONNECT.
 * @throws RequestValidationError with a message that names what is wrong.
 */
export function parseAbsoluteTarget(url: string): Target {
  const lower = url.slice(0, 8).toLowerCase();
  if (!lower.startsWith('http://')) {
    if (lower.startsWith('https://')) {
      throw new RequestValidationError('https:// targets must be tunnelled with CONNECT', 'request-target');
    }
    throw new RequestValidationError(
      'a forward proxy needs an absolute-form target (http://host/path)',
      'request-target',
    );
  }
  const rest = url.slice(7);
  if (rest.includes('#')) throw new RequestValidationError('fragments are not allowed', 'request-target');
  let end = rest.length;
  for (let i = 0; i < rest.length; i++) {
    const c = rest.charCodeAt(i);
    if (c === 0x2f /* / */ || c === 0x3f /* ? */) {
      end = i;
      break;
    }
    if (c === 0x5c /* \ */) throw new RequestValidationError('backslash in authority', 'request-target');
  }
  const { host, port } = parseAuthority(rest.slice(0, end), 'http', 'request-target');
  const { path, query } = splitPathQuery(rest.slice(end));
  return {
    scheme: 'http',
    host,
    port,
    path,
    query,
    policyHost: policyHost(isV6(host) ? `[${host}]` : host, port, 'http'),
    authority: authorityOf(host, port, 'http'),
  };
}

/** Parses a CONNECT authority (`host:port`, port required, RFC 9110 9.3.6). */
export function parseConnectTarget(authority: string): { host: string; port: number; policyHost: string } {
  if (!/:\d+$/.test(authority)) {
    throw new RequestValidationError('CONNECT needs host:port', 'request-target');
  }
  const { host, port } = parseAuthority(authority, 'https', 'request-target');
  return { host, port, policyHost: policyHost(isV6(host) ? `[${host}]` : host, port, 'https') };
}

/**
 * Step 1 for plain HTTP: unambiguous framing, an absolute-form target, and a Host header (when
 * present) naming the same host and port (DESIGN.md property 7).
 * @throws RequestValidationError naming what is wrong.
 */
export function parsePlainRequest(
  url: string,
  hostHeader: string | undefined,
  rawHeaders: readonly string[],
): Target {
  const framing = framingProblem(rawHeaders);
  if (framing) throw new RequestValidationError(framing, 'headers');
  const target = parseAbsoluteTarget(url);
  if (hostHeader !== undefined && hostHeader.toLowerCase() !== target.authority) {
    // Compare normalised forms: the Host header may carry the default port or a trailing dot.
    const h = parseAuthority(hostHeader, 'http', 'host');
    if (h.host !== target.host || h.port !== target.port) {
      throw new RequestValidationError('Host header and request target name different hosts', 'host');
    }
  }
  return target;
}

/**
 * Step 1 inside an intercepted tunnel: unambiguous framing and a target for the tunnel's host
 * ({@link parseTunnelTarget}). @throws RequestValidationError naming what is wrong.
 */
export function parseTunnelledRequest(
  url: string,
  hostHeader: string | undefined,
  rawHeaders: readonly string[],
  host: string,
  port: number,
  scheme: 'http' | 'https' = 'https',
): Target {
  const framing = framingProblem(rawHeaders);
  if (framing) throw new RequestValidationError(framing, 'headers');
  return parseTunnelTarget(url, hostHeader, host, port, scheme);
}

/** `scheme://authority/path` without the query: the `url` of deny bodies. */
export function targetUrl(t: Target): string {
  return `${t.scheme}://${t.authority}${t.path}`;
}

/** `https://host:port` of a CONNECT (IPv6 bracketed): the `url` of its deny body. */
export function connectUrl(host: string, port: number): string {
  return `https://${isV6(host) ? `[${host}]` : host}:${port}`;
}
