import { describe, expect, it } from 'vitest';
import { egressNetworkDifferences } from '../../../src/runtime/docker/runtime.js';

const ours = {
  Driver: 'bridge',
  Internal: false,
  IPAM: { Driver: 'default', Config: [{ Subnet: '10.214.0.0/24', Gateway: '10.214.0.1' }] },
  Labels: { 'io.airlock.managed': 'true', 'io.airlock.kind': 'egress' },
};

describe('egressNetworkDifferences (an existing airlock-egress is never reused silently)', () => {
  it('adopts a network that matches the config', () => {
    expect(egressNetworkDifferences(ours, '10.214.0.0/24')).toEqual([]);
    expect(egressNetworkDifferences(ours, undefined)).toEqual([]);
  });

  it('names a different subnet (the network an earlier run left with another config)', () => {
    const old = { ...ours, IPAM: { Driver: 'default', Config: [{ Subnet: '172.18.0.0/16' }] } };
    expect(egressNetworkDifferences(old, '10.214.0.0/24')).toEqual([
      'subnet 172.18.0.0/16, config runtime.docker.egressSubnet 10.214.0.0/24',
    ]);
    // Without a configured subnet any subnet Docker picked is fine.
    expect(egressNetworkDifferences(old, undefined)).toEqual([]);
  });

  it('names missing labels, another driver and an internal network', () => {
    const foreign = {
      Driver: 'macvlan',
      Internal: true,
      IPAM: { Driver: 'default', Config: [] },
      Labels: {},
    };
    expect(egressNetworkDifferences(foreign, '10.214.0.0/24')).toEqual([
      'label io.airlock.managed is missing, expected true',
      'label io.airlock.kind is missing, expected egress',
      'driver macvlan, expected bridge',
      'internal (no way out), expected a routed bridge',
      'subnet none, config runtime.docker.egressSubnet 10.214.0.0/24',
    ]);
  });
});
