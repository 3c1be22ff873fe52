import { describe, expect, it } from 'vitest';
import { classifyAddress, DestinationPolicy } from '../../../src/gateway/address.js';

describe('classifyAddress (property 6)', () => {
  const table: Array<[string, string]> = [
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['0.0.0.0', 'unspecified'],
    ['::', 'unspecified'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['::ffff:10.0.0.1', 'private'],
    ['fd00::1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['fe80::1', 'link-local'],
    ['100.64.0.1', 'cgnat'],
    ['100.127.255.255', 'cgnat'],
    ['224.0.0.1', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['64:ff9b::7f00:1', 'ipv4-embedded'],
    ['2002:7f00:1::', 'ipv4-embedded'],
    ['::7f00:1', 'ipv4-embedded'],
    // issue 13: IPv4-mapped / -translated addresses of any IPv4 range, site-local, newer reserved blocks
    ['::ffff:8.8.8.8', 'ipv4-embedded'],
    ['::ffff:0:8.8.8.8', 'ipv4-embedded'],
    ['::ffff:169.254.169.254', 'link-local'],
    ['fec0::1', 'private'],
    ['2001:2::1', 'reserved'],
    ['5f00::1', 'reserved'],
    ['8.8.8.8', 'public'],
    ['172.32.0.1', 'public'],
    ['100.128.0.1', 'public'],
    ['2606:4700::1111', 'public'],
  ];
  for (const [addr, cls] of table) {
    it(`${addr} is ${cls}`, () => expect(classifyAddress(addr)).toBe(cls));
  }
  it('throws on a non-IP', () => expect(() => classifyAddress('example.com')).toThrow(TypeError));
});

describe('DestinationPolicy', () => {
  it('refuses every non-public class by default', () => {
    const p = new DestinationPolicy([]);
    expect(p.check('127.0.0.1')).toBe('loopback');
    expect(p.check('169.254.169.254')).toBe('link-local');
    expect(p.check('93.184.216.34')).toBeNull();
  });
  it('allows exactly the configured CIDRs', () => {
    const p = new DestinationPolicy(['10.214.0.0/24']);
    expect(p.check('10.214.0.1')).toBeNull();
    expect(p.check('::ffff:10.214.0.1')).toBeNull();
    expect(p.check('10.214.1.1')).toBe('private');
    expect(p.check('127.0.0.1')).toBe('loopback');
  });
});

describe('DestinationPolicy answers by address (memo)', () => {
  it('gives the same verdict as a fresh policy, for every address, asked repeatedly past the memo bound', () => {
    const p = new DestinationPolicy(['10.214.0.0/24']);
    const addresses = ['127.0.0.1', '10.214.0.9', '10.214.1.1', '::ffff:10.214.0.1', 'fe80::1', '8.8.4.4'];
    for (let round = 0; round < 3; round++)
      for (const a of addresses) expect(p.check(a)).toBe(new DestinationPolicy(['10.214.0.0/24']).check(a));
    // Past the bound the memo starts again; answers stay the same.
    for (let i = 0; i < DestinationPolicy.MEMO_MAX + 10; i++)
      p.check(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    expect(p.check('10.214.0.9')).toBeNull();
    expect(p.check('10.214.1.1')).toBe('private');
    expect(() => p.check('example.com')).toThrow(TypeError); // not cached as a verdict
  });
});
