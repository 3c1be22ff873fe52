#!/usr/bin/env node
/**
 * Where a cold Docker session create spends its time (issue 12 item 3, not a test), and the create
 * sequence before and after the spare networks and the registration during start, in the same
 * rotating rounds through the real DockerRuntime of dist/ and the real gateway's admin API:
 *   before   the sequence of commit b4b43df: prepare (subnet + network create, then the gateway's
 *            join ‖ container create + trust bundle upload; the same Docker calls made here) ->
 *            register at the gateway -> start (+ default route dropped) -> isolation self-test
 *   after    the sequence now, with `runtime.docker.spareNetworks: 1`: prepare on a spare network
 *            (reserveSessionId: network made and joined ahead) and from the sandbox image with the
 *            trust bundle baked in (no upload) -> register ‖ start -> self-test
 * Steps timed on their own: prepare, register, start, selftest; `create` is the whole sequence
 * (what POST /v1/sessions waits for, less HTTP and bookkeeping), `createNoSelfTest` the same up
 * to started and registered (`runtime.selfTest: false`). Every create (either path) waits until the spare
 * network is made again, so no refill competes with a measured create (a burst of creates beyond
 * `spareNetworks` takes the `before` path). Then `primitives`: the Docker calls on their own
 * (network create, gateway join, container create, the trust bundle upload, start on the /29, with
 * no network and in the network namespace of a running container (`joinNetns`), inspect, the nsenter
 * route drop, an exec of `true`) to show what is left.
 * p50/p99 as JSON on stdout and in bench/results/cold-steps-<time>.json.
 *
 *   npm run build && flock /tmp/airlock-e2e.lock node bench/sessions/cold-steps.mjs
 *
 * Environment: BENCH_SESSIONS (20 rounds), BENCH_PRIMITIVES (10). Removes every io.airlock.managed
 * container and network at its end: never run it while an e2e run uses the engine (take the lock).
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
const NP = Number(process.env.BENCH_PRIMITIVES ?? 10);
const IMAGE = 'airlock-sandbox:dev';

const { DockerRuntime } = await import(path.join(ROOT, 'dist/runtime/docker/runtime.js'));
const { parseConfig } = await import(path.join(ROOT, 'dist/config/load.js'));
const { runIsolationSelfTest } = await import(path.join(ROOT, 'dist/sessions/self-test.js'));
const { waitForGateway } = await import(path.join(ROOT, 'dist/gateway-wire/control.js'));
const { LABEL, GATEWAY_CONTAINER, sessionNetworkName, sandboxContainerName } = await import(
  path.join(ROOT, 'dist/runtime/docker/labels.js')
);
const { allocateSubnet } = await import(path.join(ROOT, 'dist/runtime/docker/subnets.js'));
const { default: tar } = await import('tar-stream');

function percentile(values, p) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}
const stats = (a) => ({
  n: a.length,
  p50: Math.round(percentile(a, 50) * 10) / 10,
  p99: Math.round(percentile(a, 99) * 10) / 10,
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const stateDir = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-cold-'));
const cfg = parseConfig(
  {
    api: { listen: '127.0.0.1:0', tokens: [{ name: 'bench', token: 'bench-token-0123456789abcdef' }] },
    policy: { dir: path.join(ROOT, 'policies') },
    runtime: {
      docker: { egressSubnet: '10.217.0.0/24', spareNetworks: 1 },
      resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
    },
    stateDir,
  },
  ROOT,
);
const runtime = new DockerRuntime(cfg, (m) => console.error(`warning: ${m}`));
const docker = runtime.docker;
const times = { before: {}, after: {}, primitives: {} };
const rec = (path_, step, ms) => (times[path_][step] ??= []).push(ms);

async function selfTest(id) {
  const report = await runIsolationSelfTest({
    exec: (command, timeoutMs) => runtime.exec(id, command, timeoutMs),
    targets: () => runtime.isolationTargets(id),
  });
  if (report.result !== 'pass') throw new Error(`self-test ${report.result}: ${report.findings}`);
}

function spec(id) {
  const now = new Date();
  return {
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
  };
}
const gatewaySession = (info) => ({
  id: info.sessionId,
  role: info.role,
  address: info.address,
  credentialSha256: info.credentialSha256,
  expiresAtMs: info.expiresAt.getTime(),
  creator: info.createdBy,
});

async function spareReady() {
  for (let i = 0; i < 200 && runtime.spareNetworksReady() < 1; i++) await sleep(25);
  if (runtime.spareNetworksReady() < 1) throw new Error('the spare network was not made again within 5 s');
}

/** The trust bundle upload of commit b4b43df: one archive into a created container. */
async function uploadTrust(container) {
  const bundle = runtime.trustBundle;
  const pack = tar.pack();
  const upload = container.putArchive(pack, { path: '/' });
  const dir = { type: 'directory', mode: 0o755, uid: 0, gid: 0 };
  const file = { type: 'file', mode: 0o444, uid: 0, gid: 0 };
  pack.entry({ ...dir, name: 'etc/airlock' });
  pack.entry({ ...file, name: 'etc/airlock/ca-bundle.pem' }, bundle);
  pack.entry({ ...dir, name: 'etc/ssl/certs' });
  pack.entry({ ...file, name: 'etc/ssl/certs/ca-certificates.crt' }, bundle);
  pack.finalize();
  await upload;
}

/**
 * The prepare of commit b4b43df, same Docker calls and options: subnet + network create, then the
 * gateway's join ‖ container create (the image as named) + trust bundle upload.
 */
async function oldPrepare(s) {
  const id = s.sessionId;
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
  const joined = docker.getNetwork(netName).connect({
    Container: GATEWAY_CONTAINER,
    EndpointConfig: { IPAMConfig: { IPv4Address: sub.gateway } },
  });
  const proxy = `http://${id}:${s.credential}@${sub.gateway}:${cfg.gateway.port}`;
  const created = docker
    .createContainer({
      name: sandboxContainerName(id),
      Image: IMAGE,
      Env: [`HTTP_PROXY=${proxy}`, `HTTPS_PROXY=${proxy}`, `AIRLOCK_SESSION_ID=${id}`],
      Labels: { [LABEL.managed]: 'true', [LABEL.kind]: 'bench', [LABEL.session]: id },
      HostConfig: {
        NetworkMode: netName,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        NanoCpus: 0.5e9,
        Memory: 256 * 1024 * 1024,
        MemorySwap: 256 * 1024 * 1024,
        PidsLimit: 128,
        Init: true,
        IpcMode: 'private',
      },
      NetworkingConfig: { EndpointsConfig: { [netName]: { IPAMConfig: { IPv4Address: sub.sandbox } } } },
    })
    .then(uploadTrust);
  await Promise.all([joined, created]);
  return { ...s, address: sub.sandbox };
}

/** One cold create along `which` path, each step timed; the session is removed (untimed) after. */
async function create(gateway, which) {
  // Before either path: no refill competes with a measured create (nor holds the runtime's lock).
  await spareReady();
  const t0 = performance.now();
  let id;
  if (which === 'after') {
    id = runtime.reserveSessionId();
    if (!id) throw new Error('no spare network reserved');
  } else id = `s-${Math.random().toString(16).slice(2, 10)}${Math.random().toString(16).slice(2, 10)}`;
  const info = which === 'before' ? await oldPrepare(spec(id)) : await runtime.prepare(spec(id));
  const t1 = performance.now();
  rec(which, 'prepare', t1 - t0);
  if (which === 'before') {
    await gateway.register(gatewaySession(info), { newSession: true });
    const t2 = performance.now();
    await runtime.start(id);
    rec(which, 'register', t2 - t1);
    rec(which, 'start', performance.now() - t2);
  } else {
    const timed = (p, step) => p.then(() => rec(which, step, performance.now() - t1));
    await Promise.all([
      timed(gateway.register(gatewaySession(info), { newSession: true }), 'register'),
      timed(runtime.start(id), 'start'),
    ]);
  }
  const t3 = performance.now();
  rec(which, 'createNoSelfTest', t3 - t0);
  await selfTest(id);
  const t4 = performance.now();
  rec(which, 'selftest', t4 - t3);
  rec(which, 'create', t4 - t0);
  await gateway.revoke(id);
  await runtime.remove(id);
}

/** The Docker calls alone, on a /29 of their own (10.218.x.0/29) with the same options. */
async function primitives(i) {
  const timed = async (step, fn) => {
    const t = performance.now();
    const r = await fn();
    rec('primitives', step, performance.now() - t);
    return r;
  };
  const name = `airlock-net-bench-p${i}`;
  const labels = { [LABEL.managed]: 'true', [LABEL.kind]: 'bench' };
  const net = await timed('networkCreate', () =>
    docker.createNetwork({
      Name: name,
      Driver: 'bridge',
      Internal: true,
      IPAM: { Driver: 'default', Config: [{ Subnet: `10.218.${i}.0/29`, Gateway: `10.218.${i}.1` }] },
      Options: {
        'com.docker.network.bridge.inhibit_ipv4': 'true',
        'com.docker.network.bridge.enable_ip_masquerade': 'false',
        'com.docker.network.bridge.name': `alkbenchp${i}`,
      },
      Labels: labels,
    }),
  );
  await timed('gatewayJoin', () =>
    net.connect({
      Container: GATEWAY_CONTAINER,
      EndpointConfig: { IPAMConfig: { IPv4Address: `10.218.${i}.2` } },
    }),
  );
  const made = [];
  // joinNetns: a container sharing the running /29 container's network namespace (what a pre-made
  // network namespace holder would give a sandbox: no veth, no DNS resolver set-up at start).
  for (const mode of ['bridge', 'none', 'joinNetns']) {
    const c = await timed(`containerCreate_${mode}`, () =>
      docker.createContainer({
        name: `airlock-bench-p${i}-${mode}`,
        Image: IMAGE,
        Labels: labels,
        HostConfig: {
          NetworkMode:
            mode === 'bridge' ? name : mode === 'none' ? 'none' : `container:airlock-bench-p${i}-bridge`,
          CapDrop: ['ALL'],
          SecurityOpt: ['no-new-privileges'],
          NanoCpus: 0.5e9,
          Memory: 256 * 1024 * 1024,
          PidsLimit: 128,
          Init: true,
          IpcMode: 'private',
        },
      }),
    );
    if (mode === 'none') await timed('trustUpload', () => uploadTrust(c));
    await timed(`start_${mode}`, () => c.start());
    if (mode === 'bridge') {
      const pid = await timed('inspect', async () => (await c.inspect()).State.Pid);
      await timed('nsenterRouteDel', () =>
        run('nsenter', ['-t', String(pid), '-n', 'ip', '-4', 'route', 'del', 'default']),
      );
      await timed('execTrue', async () => {
        const e = await c.exec({ Cmd: ['true'], AttachStdout: true, AttachStderr: true });
        const s = await e.start({ hijack: true, stdin: false });
        await new Promise((resolve) => {
          s.once('end', resolve);
          s.once('close', resolve);
          s.resume();
        });
      });
    }
    made.push(c);
  }
  for (const c of made.reverse()) await c.remove({ force: true });
  await net.disconnect({ Container: GATEWAY_CONTAINER, Force: true }).catch(() => undefined);
  await net.remove();
}

const load0 = os.loadavg();
try {
  const gateway = await runtime.ensureGateway();
  await waitForGateway(gateway);
  // One untimed create of each kind first (image and engine caches).
  await create(gateway, 'before');
  await create(gateway, 'after');
  times.before = {};
  times.after = {};
  for (let i = 0; i < N; i++) {
    // Rotating order: before and after take turns going first.
    for (const which of i % 2 === 0 ? ['before', 'after'] : ['after', 'before']) await create(gateway, which);
  }
  for (let i = 0; i < NP; i++) await primitives(i);
  const summary = Object.fromEntries(
    Object.entries(times).map(([p, steps]) => [
      p,
      Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, stats(v)])),
    ]),
  );
  const ratio = (k, q) => Math.round((summary.after[k][q] / summary.before[k][q]) * 1000) / 1000;
  const report = {
    time: new Date().toISOString(),
    loadavg: {
      start: load0.map((x) => Math.round(x * 100) / 100),
      end: os.loadavg().map((x) => Math.round(x * 100) / 100),
    },
    rounds: N,
    stepsMs: summary,
    afterOverBefore: {
      createP50: ratio('create', 'p50'),
      createP99: ratio('create', 'p99'),
      createNoSelfTestP50: ratio('createNoSelfTest', 'p50'),
      createNoSelfTestP99: ratio('createNoSelfTest', 'p99'),
    },
  };
  console.log(JSON.stringify(report, null, 2));
  const out = path.join(ROOT, 'bench/results', `cold-steps-${report.time.replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
} finally {
  await runtime.close().catch(() => undefined);
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
