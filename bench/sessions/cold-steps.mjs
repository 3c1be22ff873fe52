#!/usr/bin/env node
/**
 * Where a cold Docker session create spends its time (issue 12 item 3, not a test): N sandboxes
 * one after another through the real DockerRuntime of dist/, each step timed on its own:
 *   prepare    subnet allocation + network create (under the runtime's lock), then the gateway's
 *              join of the network in parallel with container create + trust bundle upload
 *   start      container start
 *   selftest   the isolation self-test (one exec of the bash probe, src/sessions/self-test.ts)
 *   remove     container and network removal (not part of create)
 * and, in the same rounds, the pre-change cold path done with the same Docker calls: prepare in
 * the old order (`sequentialPrepare`: join, then create, then trust bundle, one after another), a
 * start that keeps Docker's default route, and the self-test on that sandbox — so each gain is a
 * ratio within one run (`total` against `preChangeTotal`, register and API excluded). p50/p99 per step as JSON on stdout and in
 * bench/results/cold-steps-<time>.json.
 *
 *   npm run build && node bench/sessions/cold-steps.mjs
 *
 * Environment: BENCH_SESSIONS (20). Removes every io.airlock.managed container and network at its
 * end: never run it while an e2e run uses the engine (take /tmp/airlock-e2e.lock).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const N = Number(process.env.BENCH_SESSIONS ?? 20);
const IMAGE = 'airlock-sandbox:dev';

const { DockerRuntime } = await import(path.join(ROOT, 'dist/runtime/docker/runtime.js'));
const { parseConfig } = await import(path.join(ROOT, 'dist/config/load.js'));
const { runIsolationSelfTest } = await import(path.join(ROOT, 'dist/sessions/self-test.js'));
const { waitForGateway } = await import(path.join(ROOT, 'dist/gateway-wire/control.js'));
const { allocateSubnet } = await import(path.join(ROOT, 'dist/runtime/docker/subnets.js'));
const { LABEL, GATEWAY_CONTAINER, sessionNetworkName, sandboxContainerName } = await import(
  path.join(ROOT, 'dist/runtime/docker/labels.js')
);

function percentile(values, p) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}
const stats = (a) => ({
  p50: Math.round(percentile(a, 50) * 10) / 10,
  p99: Math.round(percentile(a, 99) * 10) / 10,
});

const stateDir = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-cold-'));
const cfg = parseConfig(
  {
    api: { listen: '127.0.0.1:0', tokens: [{ name: 'bench', token: 'bench-token-0123456789abcdef' }] },
    policy: { dir: path.join(ROOT, 'policies') },
    runtime: {
      docker: { egressSubnet: '10.217.0.0/24' },
      resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
    },
    stateDir,
  },
  ROOT,
);
const runtime = new DockerRuntime(cfg, () => undefined);
const docker = runtime.docker;
const times = {
  prepare: [],
  start: [],
  selftest: [],
  total: [],
  remove: [],
  sequentialPrepare: [],
  startKeepingRoute: [],
  selftestWithRoute: [],
  preChangeTotal: [],
};

async function selfTest(id) {
  const report = await runIsolationSelfTest({
    exec: (command, timeoutMs) => runtime.exec(id, command, timeoutMs),
    targets: () => runtime.isolationTargets(id),
  });
  if (report.result !== 'pass') throw new Error(`self-test ${report.result}: ${report.findings}`);
}

/** The pre-change prepare: every Docker call one after another (same calls, same options). */
async function sequentialPrepare(id) {
  const nets = await docker.listNetworks({
    filters: { label: [`${LABEL.managed}=true`, `${LABEL.kind}=session`] },
  });
  const used = new Set(nets.map((n) => n.IPAM?.Config?.[0]?.Subnet).filter(Boolean));
  const sub = allocateSubnet(cfg.runtime.docker.subnetPool, used);
  const netName = sessionNetworkName(id);
  await docker.createNetwork({
    Name: netName,
    Driver: 'bridge',
    Internal: true,
    CheckDuplicate: true,
    IPAM: { Driver: 'default', Config: [{ Subnet: sub.subnet, Gateway: sub.bridge }] },
    Options: {
      'com.docker.network.bridge.inhibit_ipv4': 'true',
      'com.docker.network.bridge.enable_ip_masquerade': 'false',
      'com.docker.network.bridge.name': 'alkb' + id.slice(-11),
    },
    Labels: { [LABEL.managed]: 'true', [LABEL.kind]: 'session', [LABEL.session]: id },
  });
  await docker.getNetwork(netName).connect({
    Container: GATEWAY_CONTAINER,
    EndpointConfig: { IPAMConfig: { IPv4Address: sub.gateway } },
  });
  const c = await docker.createContainer({
    name: sandboxContainerName(id),
    Image: IMAGE,
    Env: [`AIRLOCK_SESSION_ID=${id}`],
    Labels: { [LABEL.managed]: 'true', [LABEL.kind]: 'bench', [LABEL.session]: id },
    HostConfig: {
      NetworkMode: netName,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      NanoCpus: 0.5e9,
      Memory: 256 * 1024 * 1024,
      PidsLimit: 128,
      Init: true,
      IpcMode: 'private',
    },
    NetworkingConfig: { EndpointsConfig: { [netName]: { IPAMConfig: { IPv4Address: sub.sandbox } } } },
  });
  // The trust bundle upload of the pre-change code: one small archive, after the create.
  const { default: tar } = await import('tar-stream');
  const pack = tar.pack();
  const upload = c.putArchive(pack, { path: '/' });
  pack.entry({ name: 'etc/airlock/ca-bundle.pem', mode: 0o444 }, 'x'.repeat(200_000));
  pack.finalize();
  await upload;
}

async function removeRaw(id) {
  await docker
    .getContainer(sandboxContainerName(id))
    .remove({ force: true })
    .catch(() => undefined);
  const net = docker.getNetwork(sessionNetworkName(id));
  await net.disconnect({ Container: GATEWAY_CONTAINER, Force: true }).catch(() => undefined);
  await net.remove().catch(() => undefined);
}

try {
  await waitForGateway(await runtime.ensureGateway());
  for (let i = 0; i < N; i++) {
    // Rotating order: the new and the pre-change prepare take turns going first.
    const order = i % 2 === 0 ? ['new', 'old'] : ['old', 'new'];
    for (const which of order) {
      const id = `s-bench${String(i).padStart(3, '0')}${which}${Math.random().toString(16).slice(2, 6)}`;
      if (which === 'old') {
        const t0 = performance.now();
        await sequentialPrepare(id);
        const t1 = performance.now();
        // Started as before: the sandbox keeps Docker's default route.
        await docker.getContainer(sandboxContainerName(id)).start();
        const t2 = performance.now();
        await selfTest(id);
        const t3 = performance.now();
        times.sequentialPrepare.push(t1 - t0);
        times.startKeepingRoute.push(t2 - t1);
        times.selftestWithRoute.push(t3 - t2);
        times.preChangeTotal.push(t3 - t0);
        await removeRaw(id);
        continue;
      }
      const now = new Date();
      const t0 = performance.now();
      let t = t0;
      await runtime.prepare({
        sessionId: id,
        role: 'analyst',
        image: IMAGE,
        env: {},
        credential: 'c'.repeat(43),
        credentialSha256: '0'.repeat(64),
        createdAt: now,
        expiresAt: new Date(now.getTime() + 600_000),
        createdBy: 'bench',
        labels: {},
      });
      times.prepare.push(performance.now() - t);
      t = performance.now();
      await runtime.start(id);
      times.start.push(performance.now() - t);
      t = performance.now();
      await selfTest(id);
      times.selftest.push(performance.now() - t);
      times.total.push(performance.now() - t0);
      t = performance.now();
      await runtime.remove(id);
      times.remove.push(performance.now() - t);
    }
  }
  const steps = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, stats(v)]));
  const report = {
    time: new Date().toISOString(),
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    sessions: N,
    stepsMs: steps,
    prepareOverSequentialP50: Math.round((steps.prepare.p50 / steps.sequentialPrepare.p50) * 1000) / 1000,
    totalOverPreChangeP50: Math.round((steps.total.p50 / steps.preChangeTotal.p50) * 1000) / 1000,
  };
  console.log(JSON.stringify(report, null, 2));
  const out = path.join(ROOT, 'bench/results', `cold-steps-${report.time.replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
} finally {
  const ids = (await run('docker', ['ps', '-aq', '--filter', 'label=io.airlock.managed=true'])).stdout
    .split(/\s+/)
    .filter(Boolean);
  if (ids.length) await run('docker', ['rm', '-f', ...ids]);
  const nets = (
    await run('docker', ['network', 'ls', '-q', '--filter', 'label=io.airlock.managed=true'])
  ).stdout
    .split(/\s+/)
    .filter(Boolean);
  for (const n of nets) await run('docker', ['network', 'rm', n]).catch(() => undefined);
  rmSync(stateDir, { recursive: true, force: true });
}
