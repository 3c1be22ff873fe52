import { BlockList, isIP } from 'node:net';

/**
 * Destination address classes the gateway refuses unless `gateway.allowPrivateCidrs` covers the
 * address (DESIGN.md property 6). Ranges from the IANA special-purpose registries (RFC 6890 and its
 * updates), the way Smokescreen classifies resolved addresses before dialling them.
 */
export type AddressClass =
  | 'public'
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'cgnat'
  | 'unspecified'
  | 'multicast'
  | 'reserved'
  | 'ipv4-embedded';

const RANGES: ReadonlyArray<[AddressClass, string, number, 'ipv4' | 'ipv6']> = [
  ['unspecified', '0.0.0.0', 8, 'ipv4'],
  ['private', '10.0.0.0', 8, 'ipv4'], // RFC 1918
  ['cgnat', '100.64.0.0', 10, 'ipv4'], // RFC 6598
  ['loopback', '127.0.0.0', 8, 'ipv4'],
  ['link-local', '169.254.0.0', 16, 'ipv4'], // cloud metadata lives here
  ['private', '172.16.0.0', 12, 'ipv4'],
  ['reserved', '192.0.0.0', 24, 'ipv4'], // IETF protocol assignments
  ['reserved', '192.0.2.0', 24, 'ipv4'], // TEST-NET-1
  ['private', '192.168.0.0', 16, 'ipv4'],
  ['reserved', '198.18.0.0', 15, 'ipv4'], // benchmarking
  ['reserved', '198.51.100.0', 24, 'ipv4'], // TEST-NET-2
  ['reserved', '203.0.113.0', 24, 'ipv4'], // TEST-NET-3
  ['multicast', '224.0.0.0', 4, 'ipv4'],
  ['reserved', '240.0.0.0', 4, 'ipv4'], // includes 255.255.255.255
  ['unspecified', '::', 128, 'ipv6'],
  ['loopback', '::1', 128, 'ipv6'],
  ['ipv4-embedded', '::', 96, 'ipv6'], // IPv4-compatible (deprecated)
  ['ipv4-embedded', '64:ff9b::', 96, 'ipv6'], // NAT64
  ['ipv4-embedded', '64:ff9b:1::', 48, 'ipv6'], // local-use NAT64
  ['ipv4-embedded', '2002::', 16, 'ipv6'], // 6to4
  ['ipv4-embedded', '2001::', 32, 'ipv6'], // Teredo
  // IPv4-mapped (::ffff:a.b.c.d) and IPv4-translated (RFC 2765): a mapped private/loopback address is
  // classified by its IPv4 range first (ORDER), everything else mapped is refused as embedded.
  ['ipv4-embedded', '::ffff:0:0', 96, 'ipv6'],
  ['ipv4-embedded', '::ffff:0:0:0', 96, 'ipv6'],
  ['reserved', '2001:2::', 48, 'ipv6'], // benchmarking (RFC 5180)
  ['reserved', '2001:10::', 28, 'ipv6'], // ORCHID (RFC 4843)
  ['reserved', '2001:20::', 28, 'ipv6'], // ORCHIDv2 (RFC 7343)
  ['reserved', '5f00::', 16, 'ipv6'], // SRv6 SIDs (RFC 9602)
  ['reserved', '100::', 64, 'ipv6'], // discard-only
  ['reserved', '2001:db8::', 32, 'ipv6'], // documentation
  ['private', 'fc00::', 7, 'ipv6'], // unique local
  ['link-local', 'fe80::', 10, 'ipv6'],
  ['private', 'fec0::', 10, 'ipv6'], // site-local (deprecated by RFC 3879, still routed inside some sites)
  ['multicast', 'ff00::', 8, 'ipv6'],
];

/** One BlockList per class and family: an IPv4 address is never checked against IPv6 ranges. */
const lists = { ipv4: new Map<AddressClass, BlockList>(), ipv6: new Map<AddressClass, BlockList>() };
for (const [cls, net, prefix, family] of RANGES) {
  let list = lists[family].get(cls);
  if (!list) lists[family].set(cls, (list = new BlockList()));
  list.addSubnet(net, prefix, family);
}
// IPv4-mapped IPv6 (::ffff:a.b.c.d) is also checked by BlockList against the IPv4 ranges, so
// `::ffff:127.0.0.1` classifies as loopback; classification order puts specific classes first.
const ORDER: AddressClass[] = [
  'loopback',
  'unspecified',
  'link-local',
  'private',
  'cgnat',
  'multicast',
  'reserved',
  'ipv4-embedded',
];

/** Classifies a literal IP address. @throws TypeError when `address` is not an IP literal. */
export function classifyAddress(address: string): AddressClass {
  const family = isIP(address);
  if (family === 0) throw new TypeError(`not an IP address: ${address}`);
  const type = family === 4 ? 'ipv4' : 'ipv6';
  for (const cls of ORDER) {
    if (lists.ipv4.get(cls)?.check(address, type)) return cls;
    if (type === 'ipv6' && lists.ipv6.get(cls)?.check(address, type)) return cls;
  }
  return 'public';
}

/**
 * Decides whether the gateway may dial `address`: public addresses always, any other class only
 * when one of `allowCidrs` covers it.
 */
export class DestinationPolicy {
  private readonly allow = new BlockList();
  private readonly hasAllow: boolean;
  /**
   * Answers by address: classifying takes up to 16 BlockList checks (each builds a SocketAddress),
   * and a gateway dials the same few addresses again and again. Pure (ranges and allow list are
   * fixed), so never stale; cleared when it reaches {@link DestinationPolicy.MEMO_MAX} entries.
   */
  private readonly memo = new Map<string, AddressClass | null>();
  static readonly MEMO_MAX = 4096;

  /** @param allowCidrs CIDRs such as `172.18.0.0/16`, already validated by the config schema. */
  constructor(allowCidrs: readonly string[]) {
    for (const cidr of allowCidrs) {
      const [net = '', bits = ''] = cidr.split('/');
      this.allow.addSubnet(net, Number(bits), isIP(net) === 4 ? 'ipv4' : 'ipv6');
    }
    this.hasAllow = allowCidrs.length > 0;
  }

  /**
   * Returns null when the address may be dialled, else the refused class.
   * @throws TypeError when `address` is not an IP literal.
   */
  check(address: string): AddressClass | null {
    const known = this.memo.get(address);
    if (known !== undefined) return known;
    const verdict = this.decide(address);
    if (this.memo.size >= DestinationPolicy.MEMO_MAX) this.memo.clear();
    this.memo.set(address, verdict);
    return verdict;
  }

  private decide(address: string): AddressClass | null {
    const cls = classifyAddress(address);
    if (cls === 'public') return null;
    if (this.hasAllow && this.allow.check(address, isIP(address) === 4 ? 'ipv4' : 'ipv6')) return null;
    return cls;
  }
}
