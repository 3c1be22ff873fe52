/**
 * Header names of the request model shared by the gateway (what it never forwards) and the policy
 * (what a credential may not be applied as).
 */

/** Hop-by-hop headers (RFC 9110 7.6.1) plus proxy credentials and `host`: never forwarded either way. */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'expect',
  'http2-settings',
]);
