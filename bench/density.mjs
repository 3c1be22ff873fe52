#!/usr/bin/env node
/**
 * Density benchmark (issue 12 item 4; not a test): how many idle sessions one machine holds, and
 * what each costs. Starts `airlock serve` (dist/, its own process) on the Docker engine, creates
 * sessions in bounded parallel batches up to 50, then up to DENSITY_SESSIONS (200), and at 0, 50 and
 * 200 sessions measures:
 *   - the gateway's memory: VmRSS of the gateway container's node process(es), read from
 *     /proc/<host pid>/status (the processes below the container's init, State.Pid) — resident memory
 *     of the process, not the cgroup's usage (which also counts page cache) — plus V8's used heap
 *     from the gateway's /metrics; the per-session delta in KB against the level before;
 *   - the control plane's memory: VmRSS of the `airlock serve` process;
 *   - GET /v1/sessions and GET /v1/sessions/{id} latency, p50/p99 over DENSITY_CALLS (200) calls
 *     each, one after another on one keep-alive connection, with the CPU other processes used meanwhile;
 *   - how the per-session networks scale: Docker networks, Linux bridges, veth interfaces, the
 *     gateway container's networks, `iptables-save` / `ip6tables-save` lines;
 *   - create time per batch (p50/p99), so a create that slows with the count shows;
 * then checks that a sample of sessions spread over the range (the first, the last, evenly between)
 * is still decided: in the sandbox `curl http://forum.test:3000/posts/1` answers 200 (json-server on
 * the egress network's host address, as in the e2e tests) and a POST answers 403 from the gateway,
 * another session's gateway address and sandbox are unreachable, and the session's audit holds both
 * decisions. Finally it deletes every session (bounded parallel) and checks nothing is left: no
 * sandbox container, no session network, no `alk*` bridge, the gateway on its egress network only,
 * and the iptables line counts back where they started.
 *
 *   npm run build && flock /tmp/airlock-e2e.lock node bench/density.mjs
 *
 * Bounded: DENSITY_SESSIONS (200, at most 1,000: past ~500 sessions talking at once the host's
 * neighbour table, gc_thresh3 = 1,024 by default, is the first limit — docs/architecture.md
 * "Density"; the sample check has only a few talk at a time), DENSITY_CONCURRENCY creates/deletes at a time (4),
 * DENSITY_CREATE_SECONDS for all creates (1200); a create that fails stops the climb, and the
 * count reached and the error are reported. Results: bench/results/density-<timestamp>.json and a
 * table on stdout. It refuses to start while io.airlock.managed sandboxes exist (someone else's run).
 * Traffic stays on this machine: loopback, the project's containers and the egress bridge.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { Agent, fetch } from 'undici';
import {
  BENCH_DIR,
  ROOT,
  env,
  freePort,
  log,
  machineBusySeconds,
  sleep,
  startChild,
  stopChild,
  treeCpuSeconds,
} from './lib.mjs';

const run = promisify(execFile);
const MAX_SESSIONS = 1000;
const TARGET = Math.min(env('DENSITY_SESSIONS', 200), MAX_SESSIONS);
const CONCURRENCY = Math.max(1, env('DENSITY_CONCURRENCY', 4));
const CREATE_SECONDS = env('DENSITY_CREATE_SECONDS', 1200);
const CALLS = env('DENSITY_CALLS', 200);
const SAMPLE = env('DENSITY_SAMPLE', 10);
const WARMUP = env('DENSITY_WARMUP', 3);
const RESTART = env('DENSITY_RESTART', 0) === 1;
const LEVELS = [...new Set([0, Math.min(50, TARGET), Math.min(200, TARGET), TARGET])];
const TOKEN = 'density-bench-token-0123456789abcdef';
const EGRESS_SUBNET = '10.217.0.0/24';
const EGRESS_HOST = '10.217.0.1';
const GATEWAY_CONTAINER = 'airlock-gateway';
const GATEWAY_PORT = 3128;
/** Sandbox resources: the config's smallest memory that still runs bash + curl comfortably. */
const RESOURCES = { cpus: 0.1, memoryMiB: 32, pids: 64 };

const agent = new Agent({ connections: 8, keepAliveTimeout: 30_000 });
const r1 = (x) => Math.round(x * 10) / 10;
const r3 = (x) => Math.round(x * 1000) / 1000;

function pct(values, p) {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const stats = (a) => ({
  count: a.length,
  p50: a.length ? r3(pct(a, 50)) : null,
  p99: a.length ? r3(pct(a, 99)) : null,
  max: a.length ? r3(Math.max(...a)) : null,
});
const median = (a) => pct(a, 50);

async function sh(cmd, args) {
  return (await run(cmd, args, { maxBuffer: 64 << 20 })).stdout;
}
const lines = (text) => text.split('\n').filter((l) => l.trim() !== '');

// ------------------------------------------------------------------------------------------------
// Control plane

function api(base) {
  return async (method, p, body, okStatuses = [200, 201, 204]) => {
    const res = await fetch(base + p, {
      method,
      dispatcher: agent,
      headers: {
        authorization: `Bearer ${TOKEN}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!okStatuses.includes(res.status))
      throw new Error(`${method} ${p}: ${res.status} ${text.slice(0, 500)}`);
    return text ? JSON.parse(text) : undefined;
  };
}

async function startServe(dir, gatewayExtra = {}) {
  const port = await freePort();
  const cfgFile = path.join(dir, 'airlock.yaml');
  // JSON is YAML: no yaml dependency needed here.
  writeFileSync(
    cfgFile,
    JSON.stringify({
      api: { listen: `127.0.0.1:${port}`, tokens: [{ name: 'density', token: TOKEN }] },
      gateway: {
        hostAliases: { 'forum.test': 'host-gateway' },
        allowPrivateCidrs: [EGRESS_SUBNET],
        ...gatewayExtra,
      },
      policy: { dir: path.join(ROOT, 'policies') },
      runtime: { docker: { egressSubnet: EGRESS_SUBNET }, resources: RESOURCES },
      sessions: { defaultTtlSeconds: 7200 },
      stateDir: path.join(dir, 'state'),
    }),
  );
  const child = startChild(
    'airlock serve',
    process.execPath,
    [path.join(ROOT, 'dist/cli/main.js'), 'serve', '-c', cfgFile],
    { env: { ...process.env, AIRLOCK_LOG_LEVEL: 'warn' } },
  );
  child.stdout.on('data', () => undefined);
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 600_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`airlock serve exited ${child.exitCode}: ${child.stderrText}`);
    const ok = await fetch(`${base}/readyz`, { dispatcher: agent })
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`airlock serve not ready within 600 s: ${child.stderrText}`);
    await sleep(500);
  }
  return { child, base, call: api(base) };
}

async function startJsonServer(dir) {
  const db = path.join(dir, 'forum.json');
  writeFileSync(db, JSON.stringify({ posts: [{ id: 1, title: 'hello' }], comments: [] }));
  const require = createRequire(import.meta.url);
  const bin = path.join(path.dirname(require.resolve('json-server/package.json')), 'lib/cli/bin.js');
  const child = startChild('json-server', process.execPath, [
    bin,
    '--host',
    EGRESS_HOST,
    '--port',
    '3000',
    '--quiet',
    db,
  ]);
  const deadline = Date.now() + 20_000;
  while (
    !(await fetch(`http://${EGRESS_HOST}:3000/posts/1`).then(
      (r) => r.ok,
      () => false,
    ))
  ) {
    if (Date.now() > deadline) throw new Error(`json-server did not start: ${child.stderrText}`);
    await sleep(200);
  }
  return child;
}

// ------------------------------------------------------------------------------------------------
// Measurements

function procStatus(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  };
  return { name: /^Name:\s+(\S+)/m.exec(text)?.[1] ?? '?', rssKB: field('VmRSS') };
}

function descendants(pid) {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const tid of readdirSync(`/proc/${out[i]}/task`)) {
        const kids = readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').trim();
        if (kids) out.push(...kids.split(/\s+/).map(Number));
      }
    } catch {
      // gone
    }
  }
  return out;
}

/** VmRSS (KB) of the gateway container's node processes. */
async function gatewayRssKB() {
  const pid = Number((await sh('docker', ['inspect', '-f', '{{.State.Pid}}', GATEWAY_CONTAINER])).trim());
  let kb = 0;
  const procs = [];
  for (const p of descendants(pid)) {
    try {
      const s = procStatus(p);
      procs.push({ pid: p, ...s });
      // Everything below the container's init (docker-init): the node process(es) of the gateway.
      if (p !== pid) kb += s.rssKB;
    } catch {
      // gone
    }
  }
  return { kb, procs };
}

async function gatewayMetrics() {
  const info = JSON.parse(await sh('docker', ['inspect', GATEWAY_CONTAINER]))[0];
  const port = info.NetworkSettings.Ports['9090/tcp']?.[0]?.HostPort;
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { dispatcher: agent })).text();
  const metric = (name) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  // ARP entries in the gateway's network namespace (the kernel's neighbour table limits, docs/architecture.md).
  const neigh = lines(
    await sh('nsenter', ['-t', String(info.State.Pid), '-n', 'ip', '-4', 'neigh', 'show']).catch(() => ''),
  ).length;
  return {
    gatewayNeighbours: neigh,
    heapUsedBytes: metric('nodejs_heap_size_used_bytes'),
    residentBytes: metric('process_resident_memory_bytes'),
    sessions: metric('airlock_gateway_sessions'),
    networks: Object.keys(info.NetworkSettings.Networks).length,
  };
}

/** Median of 5 readings 1 s apart (RSS moves with V8's GC). */
async function memory(serve) {
  const gw = [];
  const heap = [];
  const cp = [];
  let last = null;
  let m = null;
  for (let i = 0; i < 5; i++) {
    last = await gatewayRssKB();
    m = await gatewayMetrics();
    gw.push(last.kb);
    heap.push(m.heapUsedBytes / 1024);
    cp.push(procStatus(serve.child.pid).rssKB);
    await sleep(1000);
  }
  return {
    gatewayRssKB: median(gw),
    gatewayRssKBReadings: gw,
    gatewayHeapUsedKB: Math.round(median(heap)),
    gatewayProcesses: last.procs.map((p) => `${p.name}:${p.pid}`),
    gatewaySessionsGauge: m.sessions,
    gatewayNetworks: m.networks,
    gatewayNeighbours: m.gatewayNeighbours,
    hostNeighbours: lines(await sh('ip', ['-4', 'neigh', 'show'])).length,
    controlPlaneRssKB: median(cp),
  };
}

/** Host memory: MemAvailable, and the RSS of the engine's processes (dockerd, containerd, shims). */
function hostMemory() {
  const avail = Number(/^MemAvailable:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
  const rss = { dockerd: 0, containerd: 0, shims: 0, shimCount: 0 };
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = procStatus(Number(d));
      if (s.name === 'dockerd') rss.dockerd += s.rssKB;
      else if (s.name === 'containerd') rss.containerd += s.rssKB;
      else if (s.name.startsWith('containerd-shim')) {
        rss.shims += s.rssKB;
        rss.shimCount++;
      }
    } catch {
      // gone
    }
  }
  return {
    memAvailableMB: Math.round(avail / 1024),
    dockerdRssMB: r1(rss.dockerd / 1024),
    containerdRssMB: r1(rss.containerd / 1024),
    shimsRssMB: r1(rss.shims / 1024),
    shims: rss.shimCount,
  };
}

async function netCounts() {
  const count = async (cmd, args) => lines(await sh(cmd, args).catch(() => '')).length;
  const bridges = lines(await sh('ip', ['-o', 'link', 'show', 'type', 'bridge']));
  return {
    dockerNetworks: await count('docker', ['network', 'ls', '-q']),
    sessionNetworks: await count('docker', [
      'network',
      'ls',
      '-q',
      '--filter',
      'label=io.airlock.kind=session',
    ]),
    bridges: bridges.length,
    alkBridges: bridges.filter((l) => /^\d+: alk/.test(l)).length,
    veth: await count('ip', ['-o', 'link', 'show', 'type', 'veth']),
    iptablesLines: await count('iptables-save', []),
    ip6tablesLines: await count('ip6tables-save', []),
    sandboxContainers: await count('docker', ['ps', '-aq', '--filter', 'label=io.airlock.kind=sandbox']),
  };
}

/** Sequential calls; latency in ms and the CPU other processes used meanwhile (cores). */
async function latency(serve, ids) {
  const list = [];
  const get = [];
  const busy0 = machineBusySeconds();
  const ours0 = treeCpuSeconds(process.pid, true);
  const t0 = performance.now();
  for (let i = 0; i < CALLS; i++) {
    const a = performance.now();
    const body = await serve.call('GET', '/v1/sessions');
    list.push(performance.now() - a);
    if (body.sessions.length !== ids.length)
      throw new Error(`GET /v1/sessions listed ${body.sessions.length}, expected ${ids.length}`);
  }
  for (let i = 0; i < CALLS && ids.length > 0; i++) {
    const id = ids[(i * 7919) % ids.length];
    const a = performance.now();
    const s = await serve.call('GET', `/v1/sessions/${id}`);
    get.push(performance.now() - a);
    if (s.id !== id || s.status !== 'running') throw new Error(`GET ${id}: ${JSON.stringify(s)}`);
  }
  const wall = (performance.now() - t0) / 1000;
  const foreign = machineBusySeconds() - busy0 - (treeCpuSeconds(process.pid, true) - ours0);
  return {
    listMs: stats(list),
    getMs: stats(get),
    backgroundCores: Math.max(0, r3(foreign / wall)),
  };
}

// ------------------------------------------------------------------------------------------------
// Sessions

/** Runs `fn` over `items` with at most CONCURRENCY at a time; stops starting new ones after a failure. */
async function bounded(items, fn) {
  let next = 0;
  let failure = null;
  const worker = async () => {
    while (failure === null && next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return failure;
}

async function exec(serve, id, command) {
  return serve.call('POST', `/v1/sessions/${id}/exec`, { command, timeoutSeconds: 30 });
}

/** The decided check on one session (see the header); returns what differed, empty when all held. */
async function decided(serve, id, other) {
  const wrong = [];
  const code = (args) =>
    exec(serve, id, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', ...args]);
  const get = await code(['http://forum.test:3000/posts/1']);
  if (get.stdout !== '200') wrong.push(`GET allowed answered ${get.stdout} ${get.stderr}`);
  const post = await code([
    '-X',
    'POST',
    '-H',
    'content-type: application/json',
    '-d',
    '{"title":"x"}',
    'http://forum.test:3000/posts',
  ]);
  if (post.stdout !== '403') wrong.push(`POST denied answered ${post.stdout} ${post.stderr}`);
  // Another session's gateway address and sandbox, directly (no proxy): must not connect.
  for (const host of [other.gateway, other.sandbox]) {
    const r = await exec(serve, id, [
      'curl',
      '-s',
      '--noproxy',
      '*',
      '--connect-timeout',
      '2',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `http://${host}:${GATEWAY_PORT}/`,
    ]);
    if (r.exitCode !== 7 && r.exitCode !== 28)
      wrong.push(`${host} of another session: curl exit ${r.exitCode}`);
  }
  const audit = await serve.call('GET', `/v1/sessions/${id}/audit`);
  const decisions = new Set(audit.events.map((e) => `${e.method} ${e.decision}`));
  if (!decisions.has('GET allow') || !decisions.has('POST deny'))
    wrong.push(`audit holds ${[...decisions].join(', ') || 'nothing'}`);
  return wrong;
}

async function sessionAddresses(id) {
  const info = JSON.parse(await sh('docker', ['network', 'inspect', `airlock-net-${id}`]))[0];
  const subnet = info.IPAM.Config[0].Subnet.split('/')[0].split('.').map(Number);
  const at = (k) => [...subnet.slice(0, 3), subnet[3] + k].join('.');
  return { gateway: at(2), sandbox: at(3) };
}

// ------------------------------------------------------------------------------------------------

async function main() {
  const leftovers = lines(await sh('docker', ['ps', '-aq', '--filter', 'label=io.airlock.kind=sandbox']));
  if (leftovers.length > 0)
    throw new Error(
      `${leftovers.length} io.airlock sandboxes exist (another run's?): run under flock /tmp/airlock-e2e.lock, remove them first`,
    );
  const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-density-'));
  const report = {
    bench: 'density',
    time: new Date().toISOString(),
    commit: (await sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']).catch(() => '')).trim(),
    machine: {
      cpus: os.cpus().length,
      memoryGiB: r1(os.totalmem() / 2 ** 30),
      kernel: os.release(),
      docker: (await sh('docker', ['version', '-f', '{{.Server.Version}}'])).trim(),
      node: process.version,
    },
    config: {
      target: TARGET,
      concurrency: CONCURRENCY,
      calls: CALLS,
      warmup: WARMUP,
      restart: RESTART,
      resources: RESOURCES,
    },
    baseline: null,
    levels: [],
    reached: 0,
    createFailure: null,
    decided: null,
    removal: null,
    after: null,
    leftovers: null,
  };
  const ids = [];
  const deleted = new Set();
  const createdAt = [];
  let serve;
  const forumChild = { child: null };
  try {
    report.baseline = await netCounts();
    log(`starting airlock serve (dist/) on the Docker engine`);
    serve = await startServe(dir);
    forumChild.child = await startJsonServer(dir);
    // Warm-up: the gateway's code paths (registration, self-test probes, a decided call, revocation)
    // run once before the 0 level, so the levels compare sessions, not a cold process.
    log(`warm-up: ${WARMUP} sessions created, one call each, deleted`);
    for (let i = 0; i < WARMUP; i++) {
      const s = await serve.call('POST', '/v1/sessions', { role: 'analyst' });
      await exec(serve, s.id, ['curl', '-s', '-o', '/dev/null', 'http://forum.test:3000/posts/1']);
      await serve.call('DELETE', `/v1/sessions/${s.id}`);
    }
    const started = performance.now();
    for (const level of LEVELS) {
      const fromCount = ids.length;
      const times = [];
      let w0 = performance.now();
      if (level > ids.length && report.createFailure === null) {
        log(`creating sessions ${ids.length + 1}..${level} (${CONCURRENCY} at a time)`);
        w0 = performance.now();
        const todo = Array.from({ length: level - ids.length }, (_, i) => fromCount + i);
        const failure = await bounded(todo, async () => {
          if ((performance.now() - started) / 1000 > CREATE_SECONDS)
            throw new Error(`DENSITY_CREATE_SECONDS (${CREATE_SECONDS}) passed`);
          const a = performance.now();
          const s = await serve.call('POST', '/v1/sessions', { role: 'analyst' });
          times.push(performance.now() - a);
          ids.push(s.id);
          createdAt.push(ids.length);
        });
        if (failure) {
          report.createFailure = { atCount: ids.length, error: String(failure.message ?? failure) };
          log(`create failed at ${ids.length} sessions: ${report.createFailure.error}`);
        }
      }
      const wall = performance.now() - w0;
      const count = ids.length;
      if (report.levels.some((l) => l.sessions === count)) continue;
      log(`measuring at ${count} sessions`);
      await sleep(3000);
      const mem = await memory(serve);
      const prev = report.levels.at(-1);
      const zeroLevel = report.levels.find((l) => l.sessions === 0);
      const hostNow = hostMemory();
      const lat = await latency(serve, ids);
      report.levels.push({
        sessions: count,
        createMs: stats(times),
        ...mem,
        perSessionKB:
          prev && count > prev.sessions
            ? {
                gatewayRss: r1((mem.gatewayRssKB - prev.gatewayRssKB) / (count - prev.sessions)),
                gatewayHeapUsed: r1(
                  (mem.gatewayHeapUsedKB - prev.gatewayHeapUsedKB) / (count - prev.sessions),
                ),
                controlPlaneRss: r1(
                  (mem.controlPlaneRssKB - prev.controlPlaneRssKB) / (count - prev.sessions),
                ),
              }
            : null,
        perSessionFromZeroKB:
          zeroLevel && count > 0
            ? {
                gatewayRss: r1((mem.gatewayRssKB - zeroLevel.gatewayRssKB) / count),
                gatewayHeapUsed: r1((mem.gatewayHeapUsedKB - zeroLevel.gatewayHeapUsedKB) / count),
                controlPlaneRss: r1((mem.controlPlaneRssKB - zeroLevel.controlPlaneRssKB) / count),
                hostMemAvailable: r1(
                  ((zeroLevel.host.memAvailableMB - hostNow.memAvailableMB) * 1024) / count,
                ),
              }
            : null,
        ...lat,
        createWallSeconds: times.length ? r1(wall / 1000) : null,
        host: hostNow,
        net: await netCounts(),
      });
      if (report.createFailure) break;
    }
    report.reached = ids.length;

    // Decided sample: first, last, evenly between.
    const n = ids.length;
    const picks = [
      ...new Set(
        Array.from({ length: Math.min(SAMPLE, n) }, (_, i) =>
          Math.round((i * (n - 1)) / Math.max(1, SAMPLE - 1)),
        ),
      ),
    ];
    log(`decided check on sessions #${picks.map((i) => i + 1).join(', #')}`);
    const results = [];
    for (const i of picks) {
      const other = await sessionAddresses(ids[(i + Math.floor(n / 2)) % n]);
      const wrong = await decided(serve, ids[i], other);
      results.push({ index: i + 1, id: ids[i], ok: wrong.length === 0, wrong });
    }
    report.decided = { checked: results.length, ok: results.filter((r) => r.ok).length, results };
    const memAfter = await memory(serve);
    report.decided.gatewayRssKBAfterCalls = memAfter.gatewayRssKB;
    report.decided.gatewayHeapUsedKBAfterCalls = memAfter.gatewayHeapUsedKB;

    // Restarts at this density (DENSITY_RESTART=1): `airlock serve` stopped and started again with
    // the same config (the gateway is adopted), then with a changed gateway setting (the gateway
    // container is re-created and joins every session network again). Each time: seconds until the
    // API is ready, until the gateway is on every session network, and the decided check on the
    // first, middle and last session.
    if (RESTART && n > 0) {
      report.restarts = [];
      const few = [...new Set([0, Math.floor(n / 2), n - 1])];
      for (const [what, extra] of [
        ['same config: gateway adopted', {}],
        ['gateway setting changed: gateway re-created', { connectTimeoutMs: 4_999 }],
      ]) {
        log(`restart: ${what}`);
        await stopChild(serve.child);
        const t0 = performance.now();
        serve = await startServe(dir, extra);
        const readySeconds = r1((performance.now() - t0) / 1000);
        const m = await gatewayMetrics();
        const listed = (await serve.call('GET', '/v1/sessions')).sessions.length;
        const checks = [];
        for (const i of few) {
          const other = await sessionAddresses(ids[(i + Math.floor(n / 2)) % n]);
          const wrong = await decided(serve, ids[i], other);
          checks.push({ index: i + 1, ok: wrong.length === 0, wrong });
        }
        report.restarts.push({
          what,
          readySeconds,
          sessionsListed: listed,
          gatewayNetworks: m.networks,
          gatewaySessionsGauge: m.sessions,
          decidedOk: checks.filter((c) => c.ok).length,
          checks,
        });
        log(`restart: ready in ${readySeconds} s, ${listed} sessions, gateway on ${m.networks} networks`);
      }
    }
  } catch (err) {
    report.error = String(err.stack ?? err);
    log(`failed: ${report.error}`);
    process.exitCode = 1;
  } finally {
    report.reached = ids.length;
    // Removal: every session through the API, bounded.
    if (serve && ids.length > 0) {
      log(`deleting ${ids.length} sessions`);
      const del = [];
      const t0 = performance.now();
      const failure = await bounded([...ids], async (id) => {
        const a = performance.now();
        await serve.call('DELETE', `/v1/sessions/${id}`);
        deleted.add(id);
        del.push(performance.now() - a);
      });
      report.removal = {
        sessions: ids.length,
        deleteMs: stats(del),
        totalSeconds: r1((performance.now() - t0) / 1000),
        failure: failure ? String(failure.message ?? failure) : null,
      };
    }
    if (serve) {
      const gw = await gatewayMetrics().catch(() => null);
      report.after = { gatewayNetworks: gw?.networks ?? null, gatewaySessionsGauge: gw?.sessions ?? null };
      await stopChild(serve.child);
    }
    if (forumChild.child) await stopChild(forumChild.child);
    // Whatever the API did not delete (the run failed, serve died) is removed here, so the engine is
    // left as the e2e suites expect; the JSON says how many had to be.
    const stranded = ids.filter((id) => !deleted.has(id));
    for (const id of stranded) {
      await sh('docker', ['rm', '-f', `airlock-${id}`]).catch(() => undefined);
      await sh('docker', ['network', 'disconnect', '-f', `airlock-net-${id}`, GATEWAY_CONTAINER]).catch(
        () => undefined,
      );
      await sh('docker', ['network', 'rm', `airlock-net-${id}`]).catch(() => undefined);
    }
    report.removedDirectly = stranded.length;
    const end = await netCounts();
    report.after = { ...report.after, ...end };
    const zero = report.levels.find((l) => l.sessions === 0);
    report.leftovers = {
      sandboxContainers: end.sandboxContainers,
      sessionNetworks: end.sessionNetworks,
      alkBridges: end.alkBridges,
      gatewayNetworksBesidesEgress:
        report.after.gatewayNetworks === null ? null : report.after.gatewayNetworks - 1,
      // Against the count at 0 sessions (serve running: its egress network and gateway stay).
      iptablesLinesDelta: zero ? end.iptablesLines - zero.net.iptablesLines : null,
      ip6tablesLinesDelta: zero ? end.ip6tablesLines - zero.net.ip6tablesLines : null,
    };
    rmSync(dir, { recursive: true, force: true });
    await agent.close();
  }
  return report;
}

function table(report) {
  const out = [];
  out.push(
    '| sessions | gateway RSS MB | KB/session from 0 (from previous) | gateway heap MB | Δ heap/session KB | control-plane RSS MB | list p50/p99 ms | get p50/p99 ms | bg cores | create p50/p99 ms | create wall s | host MemAvailable MB | shims RSS MB | networks | bridges | veth | iptables lines |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const l of report.levels) {
    const mb = (kb) => r1(kb / 1024);
    out.push(
      `| ${l.sessions} | ${mb(l.gatewayRssKB)} | ${l.perSessionFromZeroKB?.gatewayRss ?? '-'} (${l.perSessionKB?.gatewayRss ?? '-'}) | ${mb(l.gatewayHeapUsedKB)} | ${l.perSessionKB?.gatewayHeapUsed ?? '-'} | ${mb(l.controlPlaneRssKB)} | ${l.listMs.p50}/${l.listMs.p99} | ${l.getMs.p50 ?? '-'}/${l.getMs.p99 ?? '-'} | ${l.backgroundCores} | ${l.createMs.p50 ?? '-'}/${l.createMs.p99 ?? '-'} | ${l.createWallSeconds ?? '-'} | ${l.host.memAvailableMB} | ${l.host.shimsRssMB} | ${l.net.dockerNetworks} | ${l.net.bridges} | ${l.net.veth} | ${l.net.iptablesLines} |`,
    );
  }
  return out.join('\n');
}

let report;
try {
  report = await main();
} catch (err) {
  log(`failed: ${err.stack ?? err}`);
  process.exitCode = 1;
}
if (report) {
  mkdirSync(path.join(BENCH_DIR, 'results'), { recursive: true });
  const file = path.join(BENCH_DIR, 'results', `density-${report.time.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(table(report));
  console.log(
    `reached ${report.reached}/${TARGET}${report.createFailure ? ` (create failed: ${report.createFailure.error})` : ''}; decided ${report.decided?.ok}/${report.decided?.checked}; leftovers ${JSON.stringify(report.leftovers)}; removal ${JSON.stringify(report.removal)}`,
  );
  for (const r of report.restarts ?? [])
    console.log(
      `restart (${r.what}): ready in ${r.readySeconds} s, ${r.sessionsListed} sessions listed, gateway on ${r.gatewayNetworks} networks, decided ${r.decidedOk}/${r.checks.length}`,
    );
  console.log(`wrote ${path.relative(ROOT, file)}`);
}
