import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { AddressClass, DestinationPolicy } from './address.js';

/** Result of resolving and checking an upstream host: the one address that will be dialled. */
export type Resolution =
  | { ok: true; address: string; family: 4 | 6 }
  | { ok: false; reason: 'refused'; address: string; addressClass: AddressClass }
  | { ok: false; reason: 'unresolvable'; detail: string };

export type LookupFn = (host: string) => Promise<Array<{ address: string; family: number }>>;

const systemLookup: LookupFn = (host) => lookup(host, { all: true, verbatim: true });

/**
 * Resolves once, checks, and names the address to dial (DESIGN.md property 6). Every address the
 * name resolves to must pass: a name that resolves to one public and one private address is refused,
 * so a rebinding answer cannot slip a private address in.
 */
export class UpstreamResolver {
  constructor(
    private readonly destinations: DestinationPolicy,
    /** Names resolved by the gateway itself (`gateway.hostAliases`, already mapped to IPs). */
    private readonly aliases: ReadonlyMap<string, string>,
    private readonly lookupFn: LookupFn = systemLookup,
  ) {}

  /** @param host normalised host name or IP literal (IPv6 without brackets). */
  async resolve(host: string): Promise<Resolution> {
    const alias = this.aliases.get(host);
    let candidates: Array<{ address: string; family: number }>;
    if (alias !== undefined) candidates = [{ address: alias, family: isIP(alias) }];
    else if (isIP(host) !== 0) candidates = [{ address: host, family: isIP(host) }];
    else {
      try {
        candidates = await this.lookupFn(host);
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
