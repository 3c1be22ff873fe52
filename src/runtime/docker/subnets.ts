/**
 * Carves per-session /29 networks out of a pool (`runtime.docker.subnetPool`). In each /29:
 * .0 network, .1 bridge gateway (reserved by Docker's IPAM; the bridge gets no address, see
 * ./networks.ts), .2 the egress gateway container, .3 the sandbox.
 */
export interface SessionSubnet {
  subnet: string;
  bridge: string;
  gateway: string;
  sandbox: string;
}

function toInt(ip: string): number {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

function toIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** The addresses of the /29 starting at `base` (an integer). */
function block(base: number): SessionSubnet {
  return {
    subnet: `${toIp(base)}/29`,
    bridge: toIp(base + 1),
    gateway: toIp(base + 2),
    sandbox: toIp(base + 3),
  };
}

/**
 * First free /29 of `pool` (IPv4 CIDR, prefix <= 29) not in `used` (subnets as `a.b.c.d/29`).
 * @returns null when the pool is exhausted.
 */
export function allocateSubnet(pool: string, used: ReadonlySet<string>): SessionSubnet | null {
  const [net = '', bits = '32'] = pool.split('/');
  const prefix = Number(bits);
  if (prefix > 29) return null;
  const start = toInt(net) & (prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0);
  const count = 2 ** (29 - prefix);
  for (let i = 0; i < count; i++) {
    const b = block((start >>> 0) + i * 8);
    if (!used.has(b.subnet)) return b;
  }
  return null;
}

/** The first host address of an IPv4 CIDR (`10.214.0.0/24` -> `10.214.0.1`). */
export function firstHost(cidr: string): string {
  const [net = '0.0.0.0', bits = '32'] = cidr.split('/');
  const prefix = Number(bits);
  const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
  return toIp(((toInt(net) & mask) >>> 0) + 1);
}

/** The addresses of an existing session subnet (`a.b.c.d/29`). */
export function subnetAddresses(subnet: string): SessionSubnet {
  return block(toInt(subnet.split('/')[0] ?? '0.0.0.0'));
}
