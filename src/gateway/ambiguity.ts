/**
 * Step 1b of the gateway's request path: what the upstream will execute, beyond the request line.
 * Frameworks act on more than method and path, so the decision must too (docs/security.md "Bypass
 * classes"):
 * - method-override headers (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`) and
 *   the `_method` query parameter (Rails, Laravel, Express's method-override, json-server) turn a
 *   POST into a DELETE upstream: the overriding method is decided as well as the wire method;
 *   overrides that disagree with each other are refused;
 * - URL-rewrite headers (`X-Original-URL`, `X-Rewrite-URL`: IIS, Symfony, some proxies) make the
 *   upstream route another path than the request line's: refused;
 * - a GET or HEAD with a body, which some servers read as a request of its own: refused.
 * Path constructs upstreams read differently (`;`, double encoding, trailing dots) are refused by
 * the request model (src/request/normalize.ts `checkUnambiguousPath`).
 */
import type { IncomingMessage } from 'node:http';
import { AmbiguousRequestError } from '../errors.js';

const OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override'] as const;
const REWRITE_HEADERS = ['x-original-url', 'x-rewrite-url'] as const;
const METHOD_TOKEN = /^[A-Za-z][A-Za-z0-9_-]{0,31}$/;

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/** Values of the `_method` parameter in a raw query (`?a=1&_method=DELETE`), any spelling of the name. */
function queryOverrides(query: string): string[] {
  if (!query.toLowerCase().includes('method')) return [];
  const out: string[] = [];
  for (const pair of query.slice(1).split('&')) {
    const eq = pair.indexOf('=');
    const name = decode(eq < 0 ? pair : pair.slice(0, eq)).toLowerCase();
    if (name === '_method') out.push(decode(eq < 0 ? '' : pair.slice(eq + 1)));
  }
  return out;
}

/**
 * Checks a parsed request for what upstreams read beyond its method and path.
 * @param query the raw query with its `?` (or `''`).
 * @returns the overriding method (uppercase) when the request carries one that differs from its
 *   wire method, else null.
 * @throws AmbiguousRequestError naming the header, parameter or body that makes the request ambiguous.
 */
export function methodOverrideOf(req: IncomingMessage, query: string): string | null {
  const h = req.headers;
  for (const name of REWRITE_HEADERS) {
    if (h[name] !== undefined) {
      throw new AmbiguousRequestError(
        `${name} makes some upstreams route another path than the request line's; send the path in the request line`,
        name,
      );
    }
  }
  const method = (req.method ?? '').toUpperCase();
  if ((method === 'GET' || method === 'HEAD') && hasBody(req)) {
    throw new AmbiguousRequestError(
      `a ${method} request with a body is read differently by different servers; send the body with POST`,
      'body',
    );
  }
  const values: string[] = [];
  for (const name of OVERRIDE_HEADERS) {
    const v = h[name];
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) values.push(one.trim());
  }
  values.push(...queryOverrides(query));
  if (values.length === 0) return null;
  const methods = new Set<string>();
  for (const v of values) {
    if (!METHOD_TOKEN.test(v)) {
      throw new AmbiguousRequestError(`method override "${v}" is not a method name`, 'method-override');
    }
    methods.add(v.toUpperCase());
  }
  if (methods.size > 1) {
    throw new AmbiguousRequestError(
      `method overrides disagree (${[...methods].join(', ')}); send one method`,
      'method-override',
    );
  }
  const override = [...methods][0]!;
  return override === method ? null : override;
}

function hasBody(req: IncomingMessage): boolean {
  const cl = req.headers['content-length'];
  if (cl !== undefined) return cl.trim() !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}
