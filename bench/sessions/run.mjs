#!/usr/bin/env node
/**
 * Session start-up benchmark (not a test; issue 16 item 8): for N sessions one after another,
 *   create   POST /v1/sessions until it answers 201 (the API answers once the sandbox runs)
 *   first    create + the first allowed call: an exec of `curl http://forum.test:3000/posts/1` in the
 *            sandbox, through the gateway, answered 200 by json-server (exec overhead included)
 * as p50/p99, on both runtimes in the same run:
 *   docker      `airlock serve` in-process (dist/), the Docker engine, the offline images, with a warm
 *               pool of 2 for airlock-sandbox:dev (issue 12 item 3): N warm creates (claims) and N
 *               cold creates (a second tag of the same image, not pooled) interleaved, each started
 *               once the pool is full again, so warm and cold share the run's noise; cold creates
 *               bind a spare network (`runtime.docker.spareNetworks`, BENCH_SPARE_NETWORKS, 1;
 *               0 turns them off), each started once the spares are made again too;
 *   kubernetes  the chart installed on the one-node cluster of scripts/k8s-node.sh (which must be up),
 *               API through kubectl port-forward, exec through the Kubernetes exec API.
 * json-server listens on the egress bridge's host address (Docker) and on the node's address
 * (Kubernetes); nothing leaves the machine. See bench/README.md ("Session start-up").
 *
 *   npm run build && node bench/sessions/run.mjs [--only docker|kubernetes]
 *
 * JSON on stdout and in bench/results/sessions-<time>.json.
 * Environment: BENCH_SESSIONS (20 of each kind), BENCH_SPARE_NETWORKS (1). The Docker part removes every io.airlock.managed container and
 * network when it ends: never run it during an e2e run (the e2e suites own those objects).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { fetch } from 'undici';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const N = Number(process.env.BENCH_SESSIONS ?? 20);
const TOKEN = 'ci-api-token-0123456789abcdef'; // charts/airlock/ci/local-images-values.yaml
const DOCKER_SUBNET = '10.217.0.0/24';
const SANDBOX_IMAGE = 'airlock-sandbox:dev';
/** Another tag of the sandbox image, not pooled: creates naming it take the cold path. */
const COLD_IMAGE = 'airlock-sandbox:bench-cold';
/** `runtime.docker.spareNetworks` of the Docker part. */
const SPARES = Number(process.env.BENCH_SPARE_NETWORKS ?? 1);
const POOL = 2;
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null;

function percentile(values, p) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

async function waitFor(check, what, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

async function startJsonServer(host) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-forum-'));
  const db = path.join(dir, 'db.json');
  writeFileSync(db, JSON.stringify({ posts: [{ id: 1, title: 'hello' }], comments: [] }));
  const require = createRequire(import.meta.url);
  const bin = path.join(path.dirname(require.resolve('json-server/package.json')), 'lib/cli/bin.js');
  const proc = spawn(process.execPath, [bin, '--host', host, '--port', '3000', '--quiet', db], {
    stdio: 'ignore',
  });
  await waitFor(async () => (await fetch(`http://${host}:3000/posts/1`)).ok, 'json-server', 20_000);
  return {
    stop: async () => {
      proc.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function api(base) {
  const call = async (method, p, body) => {
    const res = await fetch(base + p, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  return call;
}

/** One session: create, first allowed call, delete. @returns the create and first-call times in ms. */
async function oneSession(call, label, image) {
  const t0 = performance.now();
  const s = await call('POST', '/v1/sessions', {
    role: 'analyst',
    ttlSeconds: 600,
    ...(image ? { image } : {}),
  });
  const t1 = performance.now();
  const out = await call('POST', `/v1/sessions/${s.id}/exec`, {
    command: ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', 'http://forum.test:3000/posts/1'],
    timeoutSeconds: 30,
  });
  const t2 = performance.now();
  if (out.stdout !== '200') throw new Error(`${label}: first call answered ${out.stdout} ${out.stderr}`);
  await call('DELETE', `/v1/sessions/${s.id}`);
  return { create: t1 - t0, first: t2 - t0 };
}

const stats = (a) => ({
  p50: Math.round(percentile(a, 50)),
  p99: Math.round(percentile(a, 99)),
  max: Math.round(Math.max(...a)),
});

/** N sessions one after another; returns the create and first-call times in ms. */
async function measure(call, label) {
  const create = [];
  const first = [];
  for (let i = 0; i < N; i++) {
    const r = await oneSession(call, label);
    create.push(r.create);
    first.push(r.first);
  }
  return { runtime: label, sessions: N, createMs: stats(create), firstAllowedCallMs: stats(first) };
}

/** A metric's value from the API's `/metrics` (0 when absent). */
async function metric(base, name, labels) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** Spare session networks on the engine (label io.airlock.spare, no container on them). */
async function spareNetworks() {
  const nets = (
    await run('docker', ['network', 'ls', '--filter', 'label=io.airlock.spare=true', '--format', '{{.Name}}'])
  ).stdout
    .split(/\s+/)
    .filter(Boolean);
  const used = new Set(
    (
      await run('docker', ['ps', '-a', '--filter', 'label=io.airlock.managed=true', '--format', '{{.Names}}'])
    ).stdout
      .split(/\s+/)
      .filter(Boolean)
      .map((n) => n.replace(/^airlock-/, 'airlock-net-')),
  );
  return nets.filter((n) => !used.has(n)).length;
}

/**
 * Warm against cold in the same run, on one control plane with `sessions.warmPool.size` POOL for
 * SANDBOX_IMAGE: N creates of each, interleaved (warm, cold, cold, warm, ...), each one started only
 * once the pool is full again (so no refill runs while a create is measured). Cold creates name
 * COLD_IMAGE, a second tag of the same image that is not pooled, so they take the cold path.
 */
async function measureWarmCold(base, call) {
  const warm = { create: [], first: [] };
  const cold = { create: [], first: [] };
  const ready = `image="${SANDBOX_IMAGE}"`;
  // One untimed cold create first: the sandbox image with the trust bundle is built once.
  await oneSession(call, 'docker cold (warm-up)', COLD_IMAGE);
  const claims0 = await metric(base, 'airlock_warm_pool_claims_total', ready);
  for (let i = 0; i < 2 * N; i++) {
    const isWarm = i % 4 === 0 || i % 4 === 3;
    await waitFor(
      async () => (await metric(base, 'airlock_warm_pool_ready', ready)) === POOL,
      'a full warm pool',
      120_000,
    );
    await waitFor(async () => (await spareNetworks()) === SPARES, 'the spare networks', 60_000);
    const r = await oneSession(call, isWarm ? 'docker warm' : 'docker cold', isWarm ? undefined : COLD_IMAGE);
    const into = isWarm ? warm : cold;
    into.create.push(r.create);
    into.first.push(r.first);
  }
  // No fill in flight when the control plane stops (its sandbox would be removed under it).
  await waitFor(
    async () => (await metric(base, 'airlock_warm_pool_ready', ready)) === POOL,
    'a full warm pool',
    120_000,
  );
  const claims = (await metric(base, 'airlock_warm_pool_claims_total', ready)) - claims0;
  if (claims !== N) throw new Error(`warm creates claimed ${claims} pooled sandboxes, expected ${N}`);
  const c = stats(cold.create);
  const w = stats(warm.create);
  return [
    {
      runtime: 'docker cold',
      sessions: N,
      spareNetworks: SPARES,
      createMs: c,
      firstAllowedCallMs: stats(cold.first),
    },
    {
      runtime: `docker warm (pool ${POOL})`,
      sessions: N,
      pooledClaims: claims,
      createMs: w,
      firstAllowedCallMs: stats(warm.first),
      warmOverColdCreateP50: Math.round((w.p50 / c.p50) * 1000) / 1000,
      warmOverColdCreateP99: Math.round((w.p99 / c.p99) * 1000) / 1000,
    },
  ];
}

async function dockerPart() {
  const { startServer } = await import(path.join(ROOT, 'dist/cli/serve.js'));
  const { parseConfig } = await import(path.join(ROOT, 'dist/config/load.js'));
  const { pino } = await import('pino');
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-sessions-'));
  const cfg = parseConfig(
    {
      api: { listen: '127.0.0.1:0', tokens: [{ name: 'bench', token: TOKEN }] },
      gateway: { hostAliases: { 'forum.test': 'host-gateway' }, allowPrivateCidrs: [DOCKER_SUBNET] },
      policy: { dir: path.join(ROOT, 'policies') },
      runtime: {
        docker: { egressSubnet: DOCKER_SUBNET, spareNetworks: SPARES },
        resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
      },
      sessions: { warmPool: { size: POOL, images: [SANDBOX_IMAGE] } },
      stateDir,
    },
    ROOT,
  );
  await run('docker', ['tag', SANDBOX_IMAGE, COLD_IMAGE]);
  const server = await startServer(cfg, pino({ level: 'warn' }));
  const forum = await startJsonServer(DOCKER_SUBNET.replace(/\.0\/24$/, '.1'));
  try {
    return await measureWarmCold(server.url, api(server.url));
  } finally {
    await run('docker', ['rmi', COLD_IMAGE]).catch(() => undefined);
    await forum.stop();
    await server.close();
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
}

async function kubernetesPart() {
  const node = path.join(ROOT, 'scripts/k8s-node.sh');
  await run('bash', [node, 'status']).catch(() => {
    throw new Error('the one-node cluster is not up: bash scripts/k8s-node.sh up');
  });
  const env = Object.fromEntries(
    (await run('bash', [node, 'env'])).stdout
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const tools = Object.fromEntries(
    (await run('bash', [path.join(ROOT, 'scripts/k8s-tools.sh'), '--paths', '--with-kubectl'])).stdout
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const kc = ['--kubeconfig', env.KUBECONFIG];
  const chart = path.join(ROOT, 'charts/airlock');
  const forum = await startJsonServer(env.NODE_IP);
  await run(tools.HELM, [...kc, 'uninstall', 'airlock-bench', '-n', 'airlock-bench', '--wait']).catch(
    () => undefined,
  );
  await run(
    tools.HELM,
    [
      ...kc,
      'install',
      'airlock-bench',
      chart,
      '-n',
      'airlock-bench',
      '--create-namespace',
      '-f',
      path.join(chart, 'ci/local-images-values.yaml'),
      '--set',
      'sandbox.namespace=airlock-bench-sandboxes',
      '--set',
      `gateway.hostAliases.forum\\.test=${env.NODE_IP}`,
      '--set',
      `gateway.allowPrivateCidrs={${env.NODE_IP}/32}`,
      '--set',
      'controller.networkPolicyEnforced=true',
      '--set-json',
      'sandbox.resources.cpus=0.25',
      '--set',
      'sandbox.resources.memoryMiB=256',
      '--wait',
      '--timeout',
      '4m',
    ],
    { maxBuffer: 16 << 20 },
  );
  const pf = spawn(
    tools.KUBECTL,
    [
      ...kc,
      '-n',
      'airlock-bench',
      'port-forward',
      '--address',
      '127.0.0.1',
      'svc/airlock-bench-controller',
      ':8080',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const port = await new Promise((resolve, reject) => {
      let out = '';
      pf.stdout.on('data', (d) => {
        out += d;
        const m = /127\.0\.0\.1:(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      pf.once('exit', (c) => reject(new Error(`port-forward exited ${c}`)));
    });
    return await measure(api(`http://127.0.0.1:${port}`), 'kubernetes');
  } finally {
    pf.kill('SIGTERM');
    await forum.stop();
    await run(tools.HELM, [...kc, 'uninstall', 'airlock-bench', '-n', 'airlock-bench', '--wait']).catch(
      () => undefined,
    );
    await run(tools.KUBECTL, [
      ...kc,
      'delete',
      'namespace',
      'airlock-bench',
      'airlock-bench-sandboxes',
      '--wait=true',
    ]).catch(() => undefined);
  }
}

const results = [];
if (only !== 'kubernetes') results.push(...(await dockerPart()));
if (only !== 'docker') results.push(await kubernetesPart());
const report = {
  time: new Date().toISOString(),
  loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
  results,
};
console.log(JSON.stringify(report, null, 2));
const out = path.join(ROOT, 'bench/results', `sessions-${report.time.replace(/[:.]/g, '-')}.json`);
writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
console.error(`written ${path.relative(ROOT, out)}`);
