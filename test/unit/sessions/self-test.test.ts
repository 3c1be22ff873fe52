import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { networkInterfaces } from 'node:os';
import type { IsolationTargets } from '../../../src/runtime/types.js';
import {
  buildProbePlan,
  hostAddresses,
  judge,
  parseProbeOutput,
  probeScript,
  runIsolationSelfTest,
  SelfTestMetrics,
  type ProbeOutcome,
} from '../../../src/sessions/self-test.js';

type Ifaces = ReturnType<typeof networkInterfaces>;
const addr = (address: string, family: 'IPv4' | 'IPv6', internal = false) =>
  ({ address, family, internal, netmask: '', mac: '', cidr: null }) as unknown as NonNullable<
    Ifaces[string]
  >[number];

const IFACES: Ifaces = {
  lo: [addr('127.0.0.1', 'IPv4', true), addr('::1', 'IPv6', true)],
  eth0: [addr('192.0.2.2', 'IPv4'), addr('fd00::2', 'IPv6'), addr('fe80::fc:ff:fe00:1', 'IPv6')],
  docker0: [addr('172.17.0.1', 'IPv4')],
  'br-egress': [addr('10.214.0.1', 'IPv4')],
  metadata0: [addr('169.254.169.254', 'IPv4')],
  dup: [addr('172.17.0.1', 'IPv4')],
};

const TARGETS: IsolationTargets = {
  gateway: { host: '10.213.0.2', port: 3128 },
  admin: [{ host: '10.213.0.2', port: 9090 }],
  otherNetworks: [{ name: 'gateway on airlock-egress', host: '10.214.0.2', port: 3128 }],
};

describe('hostAddresses', () => {
  it('keeps every interface address (bridges, IPv4 link-local, global IPv6) but loopback and IPv6 link-local, once', () => {
    expect(hostAddresses(new Set(), IFACES)).toEqual([
      { iface: 'eth0', address: '192.0.2.2' },
      { iface: 'eth0', address: 'fd00::2' },
      { iface: 'docker0', address: '172.17.0.1' },
      { iface: 'br-egress', address: '10.214.0.1' },
      { iface: 'metadata0', address: '169.254.169.254' },
    ]);
  });

  it('skips the excluded addresses (the gateway, when it sits on the host)', () => {
    expect(hostAddresses(new Set(['172.17.0.1', '192.0.2.2']), IFACES).map((h) => h.address)).toEqual([
      'fd00::2',
      '10.214.0.1',
      '169.254.169.254',
    ]);
  });
});

describe('buildProbePlan', () => {
  const hosts = hostAddresses(new Set(), IFACES);

  it('probes the gateway proxy, the admin API, other networks, and every host address at the listener port', () => {
    const plan = buildProbePlan(TARGETS, hosts, 40123);
    expect(plan.map((t) => [t.id, t.kind, t.host, t.port, t.http])).toEqual([
      ['p0', 'gateway-proxy', '10.213.0.2', 3128, false],
      ['p1', 'gateway-admin', '10.213.0.2', 9090, true],
      ['p2', 'other-network', '10.214.0.2', 3128, false],
      ['p3', 'host-address', '192.0.2.2', 40123, false],
      ['p4', 'host-address', 'fd00::2', 40123, false],
      ['p5', 'host-address', '172.17.0.1', 40123, false],
      ['p6', 'host-address', '10.214.0.1', 40123, false],
      ['p7', 'host-address', '169.254.169.254', 40123, false],
    ]);
    expect(plan[3]!.label).toBe('this machine (eth0)');
  });

  it('never puts anything but IP literals and valid ports into the plan', () => {
    const plan = buildProbePlan(
      {
        gateway: { host: '10.0.0.2', port: 3128 },
        admin: [{ host: 'gw.example; rm -rf /', port: 9090 }],
        otherNetworks: [
          { name: 'x', host: '10.0.0.9', port: 0 },
          { name: 'y', host: '$(id)', port: 80 },
        ],
      },
      [{ iface: 'eth0', address: '10.0.0.2' }],
      5000,
    );
    // The admin entry and both others are dropped; the host address equal to the gateway is skipped.
    expect(plan.map((t) => t.host)).toEqual(['10.0.0.2']);
    expect(plan[0]!.kind).toBe('gateway-proxy');
  });
});

describe('probeScript', () => {
  it('runs every probe in the background under one watchdog and ends with "done"', () => {
    const plan = buildProbePlan(TARGETS, [{ iface: 'eth0', address: 'fd00::2' }], 40123);
    const script = probeScript(plan, 500, 1000);
    expect(script).toContain('probe p0 10.213.0.2 3128 "" 2>/dev/null & pids="$pids $!"');
    expect(script).toContain('probe p1 10.213.0.2 9090 http 2>/dev/null & pids="$pids $!"');
    expect(script).toContain('probe p3 fd00::2 40123 "" 2>/dev/null');
    expect(script).toContain('(sleep 0.500; kill $pids)');
    expect(script).toContain('read -r -t 1.000 line');
    expect(script.trimEnd().endsWith('echo done')).toBe(true);
  });
});

describe('parseProbeOutput', () => {
  const plan = buildProbePlan(TARGETS, [], 40123);

  it('reads open, closed and answers; a target without a line timed out', () => {
    const out = parseProbeOutput(
      plan,
      'p2 closed\np0 open\np1 open\np1 answer HTTP/1.1 403 Forbidden\ndone\n',
    );
    expect(Object.fromEntries(out!)).toEqual({
      p0: { state: 'open' },
      p1: { state: 'open', answer: 'HTTP/1.1 403 Forbidden' },
      p2: { state: 'closed' },
    });
    const partial = parseProbeOutput(plan, 'p0 open\ndone\n');
    expect(partial!.get('p2')).toEqual({ state: 'timeout' });
  });

  it('is null when the script did not run through (no "done")', () => {
    expect(parseProbeOutput(plan, '')).toBeNull();
    expect(parseProbeOutput(plan, 'p0 open\n')).toBeNull();
  });

  it('never lets a "closed" line hide an "open" one, and ignores unknown ids and junk', () => {
    const out = parseProbeOutput(plan, 'p2 open\np2 closed\np9 open\nhello\ndone\n');
    expect(out!.get('p2')).toEqual({ state: 'open' });
    expect(out!.has('p9')).toBe(false);
  });
});

describe('judge', () => {
  const plan = buildProbePlan(TARGETS, [{ iface: 'docker0', address: '172.17.0.1' }], 40123);
  const outcomes = (o: Record<string, ProbeOutcome>): Map<string, ProbeOutcome> =>
    new Map(Object.entries({ p0: { state: 'open' }, ...o }));

  it('passes when only the gateway proxy connects and the admin API refuses with 403', () => {
    expect(judge(plan, outcomes({}), [])).toEqual({ result: 'pass', findings: [] });
    expect(
      judge(
        plan,
        outcomes({ p1: { state: 'open', answer: 'HTTP/1.1 403 Forbidden' }, p2: { state: 'closed' } }),
        [],
      ).result,
    ).toBe('pass');
  });

  it('fails when a host address or another network connects', () => {
    const host = judge(plan, outcomes({ p3: { state: 'open' } }), []);
    expect(host.result).toBe('fail');
    expect(host.findings).toEqual(['this machine (docker0) 172.17.0.1:40123 reachable from the sandbox']);
    const other = judge(plan, outcomes({ p2: { state: 'open' } }), []);
    expect(other.findings).toEqual(['gateway on airlock-egress 10.214.0.2:3128 reachable from the sandbox']);
  });

  it('fails when the admin API answers anything but 403, or connects without an answer', () => {
    const ok = judge(plan, outcomes({ p1: { state: 'open', answer: 'HTTP/1.1 200 OK' } }), []);
    expect(ok.result).toBe('fail');
    expect(ok.findings[0]).toMatch(
      /gateway admin API 10\.213\.0\.2:9090 answered the sandbox \("HTTP\/1\.1 200 OK"\)/,
    );
    expect(judge(plan, outcomes({ p1: { state: 'open' } }), []).result).toBe('fail');
  });

  it("fails on any connection the control plane's listener accepted, whatever the sandbox printed", () => {
    const r = judge(plan, outcomes({}), ['::ffff:10.218.0.2:51234']);
    expect(r.result).toBe('fail');
    expect(r.findings[0]).toMatch(/accepted a connection from ::ffff:10\.218\.0\.2/);
  });

  it('is an error when the gateway proxy is not reachable (the probe cannot have worked)', () => {
    const r = judge(plan, new Map([['p0', { state: 'timeout' }]]), []);
    expect(r).toEqual({
      result: 'error',
      findings: ['gateway proxy 10.213.0.2:3128 not reachable from the sandbox (timeout)'],
    });
  });
});

describe('runIsolationSelfTest', () => {
  const hosts = (): Array<{ iface: string; address: string }> => [
    { iface: 'docker0', address: '172.17.0.1' },
  ];

  it('passes when the sandbox reaches only the gateway', async () => {
    let command: string[] = [];
    const r = await runIsolationSelfTest({
      targets: async () => TARGETS,
      hosts,
      exec: async (cmd) => {
        command = cmd;
        return {
          exitCode: 0,
          stdout: 'p0 open\np1 open\np1 answer HTTP/1.1 403 Forbidden\np3 closed\ndone\n',
          stderr: '',
        };
      },
    });
    expect(command.slice(0, 2)).toEqual(['bash', '-c']);
    expect(command[2]).toMatch(/probe p3 172\.17\.0\.1 \d+ ""/);
    expect(r).toMatchObject({ result: 'pass', findings: [], probes: 4 });
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('fails naming what connected', async () => {
    const r = await runIsolationSelfTest({
      targets: async () => TARGETS,
      hosts,
      exec: async () => ({ exitCode: 0, stdout: 'p0 open\np3 open\ndone\n', stderr: '' }),
    });
    expect(r.result).toBe('fail');
    expect(r.findings).toEqual([
      expect.stringMatching(/^this machine \(docker0\) 172\.17\.0\.1:\d+ reachable/),
    ]);
  });

  it('is an error when the probe cannot run (no bash in the image) or the runtime fails', async () => {
    const noBash = await runIsolationSelfTest({
      targets: async () => TARGETS,
      hosts,
      exec: async () => ({
        exitCode: 127,
        stdout: '',
        stderr: 'exec: "bash": executable file not found in $PATH',
      }),
    });
    expect(noBash.result).toBe('error');
    expect(noBash.findings).toEqual([
      'the probe did not run through (exit code 127: exec: "bash": executable file not found in $PATH); the sandbox image needs bash',
    ]);
    const broken = await runIsolationSelfTest({
      targets: async () => {
        throw new Error('the gateway is not on the network of session s-1');
      },
      hosts,
      exec: async () => ({ exitCode: 0, stdout: 'done\n', stderr: '' }),
    });
    expect(broken).toMatchObject({
      result: 'error',
      findings: ['the probe could not run: the gateway is not on the network of session s-1'],
    });
  });
});

describe('SelfTestMetrics', () => {
  it('counts results (all three present from the start) and observes durations in seconds', async () => {
    const registry = new Registry();
    const m = new SelfTestMetrics(registry);
    m.observe({ result: 'pass', findings: [], durationMs: 120, probes: 5 });
    m.observe({ result: 'fail', findings: ['x'], durationMs: 80, probes: 5 });
    const text = await registry.metrics();
    expect(text).toContain('airlock_isolation_selftest_total{result="pass"} 1');
    expect(text).toContain('airlock_isolation_selftest_total{result="fail"} 1');
    expect(text).toContain('airlock_isolation_selftest_total{result="error"} 0');
    expect(text).toContain('airlock_isolation_selftest_duration_seconds_sum{result="pass"} 0.12');
    expect(text).toContain('airlock_isolation_selftest_duration_seconds_count{result="fail"} 1');
  });
});
