import net from 'node:net';
import tls from 'node:tls';
import { Agent, Pool, type Dispatcher } from 'undici';

/** Upstream timeouts and pool sizes. Durations in ms. */
export interface UpstreamOptions {
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** Extra CA certificates (PEM) trusted for upstream TLS besides the system roots. */
  extraCaPem?: string;
  /** Connections per upstream origin. @default 128 */
  connectionsPerOrigin?: number;
  /** HTTPS pools kept (one per address+port+server name); least recently used are closed. @default 256 */
  maxTlsPools?: number;
}

/** TLS verification failures (OpenSSL / Node codes) that mean "the upstream certificate is not acceptable". */
const TLS_ERROR_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'EPROTO',
]);

/** Whether an upstream error is a TLS verification/handshake failure, by its `code`. */
export function isTlsError(err: unknown): boolean {
  let e = err as { code?: string; cause?: unknown } | undefined;
  for (let i = 0; e && i < 4; i++, e = e.cause as typeof e) {
    if (e.code && TLS_ERROR_CODES.has(e.code)) return true;
  }
  return false;
}

/** The most specific error code in an error's cause chain. */
export function errorCode(err: unknown): string {
  let e = err as { code?: string; cause?: unknown } | undefined;
  let code = 'UPSTREAM_ERROR';
  for (let i = 0; e && i < 4; i++, e = e.cause as typeof e) if (e.code) code = e.code;
  return code;
}

/**
 * Dispatchers for upstream calls, always to an already-checked IP address (DESIGN.md property 6):
 * plain HTTP through one keep-alive Agent keyed by `http://ip:port`; HTTPS through one Pool per
 * (address, port, server name), verifying the certificate against the system roots plus the
 * configured extra CAs for the *name* (SNI and hostname check), while dialling the address.
 */
export class UpstreamDispatchers {
  private readonly http: Agent;
  private readonly tlsPools = new Map<string, Pool>();
  private readonly ca: string[];
  private readonly secureContext: tls.SecureContext;

  constructor(private readonly opts: UpstreamOptions) {
    this.http = new Agent({
      connectTimeout: opts.connectTimeoutMs,
      headersTimeout: opts.headersTimeoutMs,
      bodyTimeout: opts.bodyTimeoutMs,
      keepAliveTimeout: 4_000,
      connections: opts.connectionsPerOrigin ?? 128,
    });
    this.ca = [...tls.getCACertificates('default'), ...(opts.extraCaPem ? [opts.extraCaPem] : [])];
    // One trust store for every upstream connection: passing `ca` per connection makes Node rebuild
    // the store (265 roots) each time, 16-27 ms of CPU on the only thread (bench/README.md).
    this.secureContext = tls.createSecureContext({ ca: this.ca });
  }

  /** The dispatcher and origin for a call to `address:port` (IPv6 unbracketed). */
  forTarget(
    scheme: 'http' | 'https',
    address: string,
    port: number,
    servername: string,
  ): { dispatcher: Dispatcher; origin: string } {
    const host = address.includes(':') ? `[${address}]` : address;
    if (scheme === 'http') return { dispatcher: this.http, origin: `http://${host}:${port}` };
    const key = `${address}|${port}|${servername}`;
    let pool = this.tlsPools.get(key);
    if (pool) {
      this.tlsPools.delete(key);
      this.tlsPools.set(key, pool);
    } else {
      pool = new Pool(`https://${host}:${port}`, {
        connect: {
          servername,
          secureContext: this.secureContext,
          rejectUnauthorized: true,
          timeout: this.opts.connectTimeoutMs,
          ALPNProtocols: ['http/1.1'],
        },
        headersTimeout: this.opts.headersTimeoutMs,
        bodyTimeout: this.opts.bodyTimeoutMs,
        keepAliveTimeout: 4_000,
        connections: this.opts.connectionsPerOrigin ?? 128,
      });
      this.tlsPools.set(key, pool);
      const max = this.opts.maxTlsPools ?? 256;
      while (this.tlsPools.size > max) {
        const [oldKey, oldPool] = this.tlsPools.entries().next().value as [string, Pool];
        this.tlsPools.delete(oldKey);
        void oldPool.close();
      }
    }
    return { dispatcher: pool, origin: `https://${host}:${port}` };
  }

  /**
   * TLS options for a connection the gateway dials itself (a WebSocket to a `wss` upstream,
   * websocket.ts): the same trust store and checks as the HTTPS pools — certificate verified for
   * `servername` against the system roots plus the configured extra CAs, HTTP/1.1 only.
   */
  tlsOptions(servername: string): tls.ConnectionOptions {
    return {
      ...(net.isIP(servername) === 0 ? { servername } : {}),
      secureContext: this.secureContext,
      rejectUnauthorized: true,
      ALPNProtocols: ['http/1.1'],
    };
  }

  async close(): Promise<void> {
    await Promise.all([this.http.close(), ...[...this.tlsPools.values()].map((p) => p.close())]);
    this.tlsPools.clear();
  }
}
