#!/usr/bin/env node
/**
 * Session-create latency with and without the isolation self-test (issue 13 item 5; not a test).
 * One control plane (`startServer` from dist/) on the real Docker engine with the real images; the
 * same API call `POST /v1/sessions` timed end to end, alternating `runtime.selfTest` on and off
 * (the bench flips the key on the config object the SessionManager reads), each session deleted
 * untimed before the next. One warm-up create per mode is not counted. The self-test's own wall
 * time comes from the control plane's `isolation_selftest` log line. Ratios are against the
 * self-test-off creates of the same run. Only this machine and the project's containers are involved.
 *
 *   npm run build && node bench/selftest.mjs      # ~1 min; writes bench/results/selftest-<timestamp>.json
 *
 * Needs the Docker engine to itself (it creates and removes io.airlock.* objects and may recreate the
 * gateway container): never run it while an e2e suite runs.
 *
 * Environment: BENCH_SELFTEST_CREATES (10) timed creates per mode; BENCH_DIST (dist/) compiled tree.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { fetch } from 'undici';
import { BENCH_DIR, ROOT, env, log, withBackground } from './lib.mjs';

const N = env('BENCH_SELFTEST_CREATES', 10);
const TOKEN = 'bench-selftest-token-0123456789';
const dist = process.env.BENCH_DIST ? path.resolve(process.env.BENCH_DIST) : path.join(ROOT, 'dist');
const load = (rel) => import(pathToFileURL(path.join(dist, rel)).href);

const { startServer } = await load('cli/serve.js');
const { parseConfig } = await load('config/load.js');
const { pino } = await import('pino');

const stateDir = mkdtempSync(path.join(tmpdir(), 'airlock-bench-selftest-'));
const cfg = parseConfig(
  {
    api: { listen: '127.0.0.1:0', tokens: [{ name: 'bench', token: TOKEN }] },
    policy: { dir: path.join(ROOT, 'policies') },
    runtime: {
      docker: { egressSubnet: '10.214.0.0/24' },
      resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
    },
    stateDir,
  },
  ROOT,
);
const selfTestLines = [];
const logger = pino(
  { level: 'info' },
  {
    write: (s) => {
      const l = JSON.parse(s);
      if (l.event === 'isolation_selftest') selfTestLines.push(l);
      else if (l.level >= 40) process.stderr.write(s);
    },
  },
);

const r1 = (x) => Math.round(x * 10) / 10;
function stats(xs) {
  const a = [...xs].sort((x, y) => x - y);
  const at = (q) => a[Math.min(a.length - 1, Math.max(0, Math.ceil(q * a.length) - 1))];
  return {
    count: a.length,
    p50: r1(at(0.5)),
    mean: r1(a.reduce((s, x) => s + x, 0) / a.length),
    min: r1(a[0]),
    max: r1(a[a.length - 1]),
  };
}

const server = await startServer(cfg, logger);
const call = async (method, p, body) => {
  const res = await fetch(server.url + p, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
};
/** One timed create (ms) with runtime.selfTest = `on`; the session is deleted afterwards, untimed. */
async function createOnce(on) {
  cfg.runtime.selfTest = on;
  const t0 = performance.now();
  const view = await call('POST', '/v1/sessions', { role: 'analyst' });
  const ms = performance.now() - t0;
  await call('DELETE', `/v1/sessions/${view.id}`);
  return ms;
}

const samples = { on: [], off: [] };
let result;
try {
  log(`warm-up, then ${N} creates per mode, alternating (self-test on/off)`);
  await createOnce(true);
  await createOnce(false);
  selfTestLines.length = 0;
  result = await withBackground(async () => {
    for (let i = 0; i < N; i++) {
      for (const on of i % 2 === 0 ? [true, false] : [false, true])
        samples[on ? 'on' : 'off'].push(await createOnce(on));
    }
    return {};
  });
} finally {
  await server.close();
  rmSync(stateDir, { recursive: true, force: true });
}

const on = stats(samples.on);
const off = stats(samples.off);
const probe = stats(selfTestLines.map((l) => l.durationMs));
const out = {
  bench: 'selftest',
  time: new Date().toISOString(),
  config: { createsPerMode: N, dist, cpus: cpus().length },
  createMs: { selfTestOn: on, selfTestOff: off, samples },
  selfTestMs: {
    ...probe,
    probes: selfTestLines[0]?.probes ?? null,
    results: [...new Set(selfTestLines.map((l) => l.result))],
  },
  ratios: {
    p50OnOverOff: Math.round((on.p50 / off.p50) * 100) / 100,
    meanOnOverOff: Math.round((on.mean / off.mean) * 100) / 100,
  },
  addedMs: { p50: r1(on.p50 - off.p50), mean: r1(on.mean - off.mean) },
  backgroundCores: result.backgroundCores,
};
const dir = path.join(BENCH_DIR, 'results');
mkdirSync(dir, { recursive: true });
const file = path.join(dir, `selftest-${out.time.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
console.log(`| create | p50 ms | mean ms | min-max ms |`);
console.log(`| --- | ---: | ---: | ---: |`);
console.log(`| self-test off | ${off.p50} | ${off.mean} | ${off.min}-${off.max} |`);
console.log(`| self-test on | ${on.p50} | ${on.mean} | ${on.min}-${on.max} |`);
console.log(
  `self-test itself: p50 ${probe.p50} ms (${probe.min}-${probe.max}), ${out.selfTestMs.probes} probes, results ${out.selfTestMs.results.join(',')}; ` +
    `on/off p50 ${out.ratios.p50OnOverOff}, mean ${out.ratios.meanOnOverOff}; added p50 ${out.addedMs.p50} ms; bg cores ${out.backgroundCores}`,
);
log(`wrote ${path.relative(ROOT, file)}`);
