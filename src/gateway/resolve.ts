import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { AddressClass, DestinationPolicy } from './address.js';

/** Result of resolving and checking an upstream host: the one address that will be dialled. */
export type Resolution =
  | { ok: true; address: string; family: 4 | 6 }
  | { ok: false; reason: 'refused'; address: string; addressClass: AddressClass }
  | { ok: false; reason: 'unresolvable'; detail: string };

export type LookupFn = (host: string) => Promise<Array<{ address: string; family: number }>>;

const systemLookup: LookupFn = (host) => lookup(host, { all: true, verbatim: true });

/** How {@link UpstreamResolver} reuses the answers of its lookups (names only: aliases and IP literals need none). */
export interface ResolverCacheOptions {
  /**
   * How long a successful lookup's addresses are reused, ms; 0: every call looks the name up.
   * `getaddrinfo` gives no TTL, so this is a fixed bound on how stale an answer can be.
   * @default 5000
   */
  ttlMs?: number;
  /** Names kept at most; the cache starts again when full. @default 10000 */
  maxEntries?: number;
  /** Monotonic clock, ms. @default performance.now */
  now?: () => number;
}

type Candidates = Array<{ address: string; family: number }>;

/**
 * Resolves once, checks, and names the address to dial (DESIGN.md property 6). Every address the
 * name resolves to must pass: a name that resolves to one public and one private address is refused,
 * so a rebinding answer cannot slip a private address in. A name's answer is reused for up to
 * `ttlMs` (5 s by default; concurrent calls share one lookup) and every address is checked on every
 * call, so a cached answer is never more permissive than a fresh one under the same policy.
 */
export class UpstreamResolver {
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** Successful answers by name, until `expires` (ms of {@link now}). */
  private readonly answers = new Map<string, { candidates: Candidates; expires: number }>();
  /** Lookups under way by name: concurrent calls for one name share one lookup. */
  private readonly pending = new Map<string, Promise<Candidates>>();

  constructor(
    private readonly destinations: DestinationPolicy,
    /** Names resolved by the gateway itself (`gateway.hostAliases`, already mapped to IPs). */
    private readonly aliases: ReadonlyMap<string, string>,
    private readonly lookupFn: LookupFn = systemLookup,
    cache: ResolverCacheOptions = {},
  ) {
    this.ttlMs = cache.ttlMs ?? 5_000;
    this.maxEntries = cache.maxEntries ?? 10_000;
    this.now = cache.now ?? (() => performance.now());
  }

  /**
   * The addresses of `host`: a reused answer younger than `ttlMs`, the lookup already under way for
   * it, or a new lookup. Failures are never reused (the next call asks again).
   */
  private lookupCached(host: string): Promise<Candidates> {
    const known = this.answers.get(host);
    if (known !== undefined) {
      if (known.expires > this.now()) return Promise.resolve(known.candidates);
      this.answers.delete(host);
    }
    const under = this.pending.get(host);
    if (under !== undefined) return under;
    const p = this.lookupFn(host).then(
      (candidates) => {
        this.pending.delete(host);
        if (this.ttlMs > 0 && candidates.length > 0) {
          if (this.answers.size >= this.maxEntries) this.answers.clear();
          this.answers.set(host, { candidates, expires: this.now() + this.ttlMs });
        }
        return candidates;
      },
      (err: unknown) => {
        this.pending.delete(host);
        throw err;
      },
    );
    this.pending.set(host, p);
    return p;
  }

  /** @param host normalised host name or IP literal (IPv6 without brackets). */
  async resolve(host: string): Promise<Resolution> {
    const alias = this.aliases.get(host);
    let candidates: Array<{ address: string; family: number }>;
    if (alias !== undefined) candidates = [{ address: alias, family: isIP(alias) }];
    else if (isIP(host) !== 0) candidates = [{ address: host, family: isIP(host) }];
    else {
      try {
        candidates = await this.lookupCached(host);
      } catch (err) {
        return {
          ok: false,
          reason: 'unresolvable',
          detail: (err as NodeJS.ErrnoException).code ?? 'ENOTFOUND',
        };
      }
      if (candidates.length === 0) return { ok: false, reason: 'unresolvable', detail: 'ENODATA' };
    }
    for (const c of candidates) {
      const refused = this.destinations.check(c.address);
      if (refused) return { ok: false, reason: 'refused', address: c.address, addressClass: refused };
    }
    const first = candidates[0]!;
    return { ok: true, address: first.address, family: first.family === 6 ? 6 : 4 };
  }
}
