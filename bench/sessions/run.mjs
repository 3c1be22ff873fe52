#!/usr/bin/env node
/**
 * Session start-up benchmark (not a test; issue 16 item 8): for N sessions one after another,
 *   create   POST /v1/sessions until it answers 201 (the API answers once the sandbox runs)
 *   first    create + the first allowed call: an exec of `curl http://forum.test:3000/posts/1` in the
 *            sandbox, through the gateway, answered 200 by json-server (exec overhead included)
 * as p50/p99, on both runtimes in the same run:
 *   docker      `airlock serve` in-process (dist/), the Docker engine, the offline images;
 *   kubernetes  the chart installed on the one-node cluster of scripts/k8s-node.sh (which must be up),
 *               API through kubectl port-forward, exec through the Kubernetes exec API.
 * json-server listens on the egress bridge's host address (Docker) and on the node's address
 * (Kubernetes); nothing leaves the machine. See bench/README.md ("Session start-up").
 *
 *   npm run build && node bench/sessions/run.mjs [--only docker|kubernetes]
 *
 * Environment: BENCH_SESSIONS (20). The Docker part removes every io.airlock.managed container and
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

/** N sessions one after another; returns the create and first-call times in ms. */
async function measure(call, label) {
  const create = [];
  const first = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    const s = await call('POST', '/v1/sessions', { role: 'analyst', ttlSeconds: 600 });
    const t1 = performance.now();
    const out = await call('POST', `/v1/sessions/${s.id}/exec`, {
      command: ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', 'http://forum.test:3000/posts/1'],
      timeoutSeconds: 30,
    });
    const t2 = performance.now();
    if (out.stdout !== '200') throw new Error(`${label}: first call answered ${out.stdout} ${out.stderr}`);
    create.push(t1 - t0);
    first.push(t2 - t0);
    await call('DELETE', `/v1/sessions/${s.id}`);
  }
  const r = (a) => ({
    p50: Math.round(percentile(a, 50)),
    p99: Math.round(percentile(a, 99)),
    max: Math.round(Math.max(...a)),
  });
  return { runtime: label, sessions: N, createMs: r(create), firstAllowedCallMs: r(first) };
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
        docker: { egressSubnet: DOCKER_SUBNET },
        resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
      },
      stateDir,
    },
    ROOT,
  );
  const server = await startServer(cfg, pino({ level: 'warn' }));
  const forum = await startJsonServer(DOCKER_SUBNET.replace(/\.0\/24$/, '.1'));
  try {
    return await measure(api(server.url), 'docker');
  } finally {
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
if (only !== 'kubernetes') results.push(await dockerPart());
if (only !== 'docker') results.push(await kubernetesPart());
const report = {
  time: new Date().toISOString(),
  loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
  results,
};
console.log(JSON.stringify(report, null, 2));
