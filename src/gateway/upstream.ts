import net from 'node:net';
import tls from 'node:tls';
import { Pool, type Dispatcher } from 'undici';

/** Upstream timeouts and pool sizes. Durations in ms. */
export interface UpstreamOptions {
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** Extra CA certificates (PEM) trusted for upstream TLS besides the system roots. */
  extraCaPem?: string;
  /**
   * Connections one session may hold to one upstream origin (`gateway.limits.upstreamConnectionsPerOrigin`):
   * the size of each session's own pool. @default 32
   */
  connectionsPerSessionOrigin?: number;
  /** Pools kept at most (one per session and origin); the least recently used idle ones are closed. @default 4096 */
  maxPools?: number;
  /** A pool unused this long (and with nothing in flight) is closed, ms. @default 30000 */
  poolIdleMs?: number;
  /** Whether a session is still live; pools of ended sessions are destroyed by the sweep. */
  isLive?: (sessionId: string) => boolean;
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

interface PoolEntry {
  pool: Pool;
  sessionId: string;
  /** Date.now() of the last call handed to the pool. */
  lastUsed: number;
}

/**
 * Dispatchers for upstream calls, always to an already-checked IP address (DESIGN.md property 6):
 * one keep-alive undici `Pool` per (session, scheme, address, port, server name), with at most
 * `connectionsPerSessionOrigin` connections. A session's requests queue only behind its own: one
 * session holding every connection of its pool (slow uploads, slow responses) cannot delay another
 * session's calls to the same upstream (issue 13, "One session can starve every other session").
 * HTTPS pools verify the certificate against the system roots plus the configured extra CAs for the
 * *name* (SNI and hostname check), while dialling the address.
 *
 * Memory follows activity: a sweep closes pools idle for `poolIdleMs` and destroys those of ended
 * sessions; beyond `maxPools` the least recently used pool is closed (gracefully: its calls in
 * flight finish).
 */
export class UpstreamDispatchers {
  private readonly pools = new Map<string, PoolEntry>();
  private readonly ca: string[];
  private readonly secureContext: tls.SecureContext;
  private readonly perSession: number;
  private readonly maxPools: number;
  private readonly idleMs: number;
  private readonly sweeper: NodeJS.Timeout;
  /** Bumped whenever a pool leaves {@link pools}: invalidates {@link last}. */
  private generation = 0;
  /**
   * The previous call's arguments and answer: consecutive calls of one session to one upstream (the
   * common case under load) skip building the origin and key strings and the map lookup.
   */
  private last: {
    scheme: string;
    address: string;
    port: number;
    servername: string;
    sessionId: string;
    generation: number;
    entry: PoolEntry;
    origin: string;
  } | null = null;

  constructor(private readonly opts: UpstreamOptions) {
    this.perSession = opts.connectionsPerSessionOrigin ?? 32;
    this.maxPools = opts.maxPools ?? 4_096;
    this.idleMs = opts.poolIdleMs ?? 30_000;
    this.ca = [...tls.getCACertificates('default'), ...(opts.extraCaPem ? [opts.extraCaPem] : [])];
    // One trust store for every upstream connection: passing `ca` per connection makes Node rebuild
    // the store (265 roots) each time, 16-27 ms of CPU on the only thread (bench/README.md).
    this.secureContext = tls.createSecureContext({ ca: this.ca });
    this.sweeper = setInterval(() => this.sweep(), Math.max(1_000, Math.min(this.idleMs, 10_000)));
    this.sweeper.unref();
  }

  /**
   * The dispatcher and origin for a call of `sessionId` to `address:port` (IPv6 unbracketed).
   * @param servername the upstream's name: SNI and certificate check for HTTPS.
   */
  forTarget(
    scheme: 'http' | 'https',
    address: string,
    port: number,
    servername: string,
    sessionId: string,
  ): { dispatcher: Dispatcher; origin: string } {
    const l = this.last;
    if (
      l !== null &&
      l.generation === this.generation &&
      l.sessionId === sessionId &&
      l.address === address &&
      l.port === port &&
      l.scheme === scheme &&
      l.servername === servername
    ) {
      l.entry.lastUsed = Date.now();
      return { dispatcher: l.entry.pool, origin: l.origin };
    }
    const host = address.includes(':') ? `[${address}]` : address;
    const origin = `${scheme}://${host}:${port}`;
    const key = scheme === 'http' ? `${sessionId}|${origin}` : `${sessionId}|${origin}|${servername}`;
    const now = Date.now();
    let entry = this.pools.get(key);
    if (entry === undefined) {
      entry = { pool: this.newPool(scheme, origin, servername), sessionId, lastUsed: now };
      this.pools.set(key, entry);
      if (this.pools.size > this.maxPools) this.evictLeastRecentlyUsed();
    } else entry.lastUsed = now;
    this.last = { scheme, address, port, servername, sessionId, generation: this.generation, entry, origin };
    return { dispatcher: entry.pool, origin };
  }

  private newPool(scheme: 'http' | 'https', origin: string, servername: string): Pool {
    return new Pool(origin, {
      connect:
        scheme === 'https'
          ? {
              servername,
              secureContext: this.secureContext,
              rejectUnauthorized: true,
              timeout: this.opts.connectTimeoutMs,
              ALPNProtocols: ['http/1.1'],
            }
          : { timeout: this.opts.connectTimeoutMs },
      headersTimeout: this.opts.headersTimeoutMs,
      bodyTimeout: this.opts.bodyTimeoutMs,
      keepAliveTimeout: 4_000,
      connections: this.perSession,
    });
  }

  private evictLeastRecentlyUsed(): void {
    let oldestKey: string | null = null;
    let oldest = Infinity;
    for (const [k, e] of this.pools) {
      if (e.lastUsed < oldest) {
        oldest = e.lastUsed;
        oldestKey = k;
      }
    }
    if (oldestKey === null) return;
    const e = this.pools.get(oldestKey)!;
    this.pools.delete(oldestKey);
    this.generation++;
    void e.pool.close(); // calls in flight finish; new ones get a new pool
  }

  /** Closes idle pools and destroys the pools of sessions that ended. @returns pools removed. */
  sweep(now = Date.now()): number {
    let n = 0;
    for (const [k, e] of this.pools) {
      if (this.opts.isLive && !this.opts.isLive(e.sessionId)) {
        this.pools.delete(k);
        this.generation++;
        void e.pool.destroy().catch(() => undefined);
        n++;
      } else if (now - e.lastUsed >= this.idleMs) {
        const { running, pending } = e.pool.stats;
        if (running === 0 && pending === 0) {
          this.pools.delete(k);
          this.generation++;
          void e.pool.close().catch(() => undefined);
          n++;
        }
      }
    }
    return n;
  }

  /** Destroys every pool of `sessionId` (kill switch): its upstream calls in flight are aborted. */
  closeSession(sessionId: string): void {
    for (const [k, e] of this.pools) {
      if (e.sessionId !== sessionId) continue;
      this.pools.delete(k);
      this.generation++;
      void e.pool.destroy().catch(() => undefined);
    }
  }

  /** Pools open now (tests, metrics). */
  get size(): number {
    return this.pools.size;
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
    clearInterval(this.sweeper);
    const pools = [...this.pools.values()].map((e) => e.pool.close());
    this.pools.clear();
    this.generation++;
    await Promise.all(pools);
  }
}
