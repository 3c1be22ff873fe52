import { describe, expect, it } from 'vitest';
import { allocateSubnet, subnetAddresses } from '../../../src/runtime/docker/subnets.js';

describe('session subnets', () => {
  it('carves /29s in order and skips used ones', () => {
    expect(allocateSubnet('10.213.0.0/16', new Set())).toEqual({
      subnet: '10.213.0.0/29',
      bridge: '10.213.0.1',
      gateway: '10.213.0.2',
      sandbox: '10.213.0.3',
    });
    expect(allocateSubnet('10.213.0.0/16', new Set(['10.213.0.0/29', '10.213.0.8/29']))?.subnet).toBe(
      '10.213.0.16/29',
    );
  });
  it('reports exhaustion', () => {
    expect(allocateSubnet('10.0.0.0/28', new Set(['10.0.0.0/29', '10.0.0.8/29']))).toBeNull();
    expect(allocateSubnet('10.0.0.0/30', new Set())).toBeNull();
  });
  it('holds 8,192 sessions in the default /16 (docs/config.md runtime.docker.subnetPool)', () => {
    const used = new Set<string>();
    for (let i = 0; i < 8_191; i++) used.add(`10.213.${i >> 5}.${(i & 31) * 8}/29`);
    const last = allocateSubnet('10.213.0.0/16', used);
    expect(last).toEqual({
      subnet: '10.213.255.248/29',
      bridge: '10.213.255.249',
      gateway: '10.213.255.250',
      sandbox: '10.213.255.251',
    });
    used.add(last!.subnet);
    expect(allocateSubnet('10.213.0.0/16', used)).toBeNull();
  });
  it('recovers addresses from a subnet', () => {
    expect(subnetAddresses('10.213.1.248/29').sandbox).toBe('10.213.1.251');
  });
});
