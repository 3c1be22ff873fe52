#!/usr/bin/env node
/**
 * Quick loop for hot-path work: nginx + the Airlock gateway only, saturated with wrk (and optionally
 * the fixed-rate client), no squid, no JSON file. Takes the same BENCH_* variables as run.mjs, e.g.
 *
 *   BENCH_GATEWAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" node bench/gateway-only.mjs
 *   BENCH_DIST=/tmp/patched/dist node bench/gateway-only.mjs     # compare a patched build
 *
 * BENCH_ROUNDS (3) saturation rounds of BENCH_SAT_SECONDS; BENCH_WITH_RATE=1 adds the rate run.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CFG,
  SESSION,
  UPSTREAM_NAME,
  ensureTools,
  freePort,
  log,
  runRate,
  runWrk,
  startGateway,
  startNginx,
  stopAll,
  treeCpuSeconds,
  withBackground,
} from './lib.mjs';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const tools = ensureTools();
const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-'));
chmodSync(dir, 0o755);
try {
  const nginxPort = await freePort();
  const nginx = await startNginx(tools.nginx, dir, nginxPort);
  const gw = await startGateway(dir, nginxPort);
  const host = `${UPSTREAM_NAME}:${nginxPort}`;
  const p = {
    name: 'airlock',
    port: gw.proxyPort,
    target: `http://${host}/payload`,
    host,
    auth: `Basic ${Buffer.from(`${SESSION.id}:${SESSION.cred}`).toString('base64')}`,
  };
  await runWrk(tools.wrk, p, CFG.warmupSeconds);
  for (let i = 0; i < rounds; i++) {
    const g0 = treeCpuSeconds(gw.child.pid);
    const n0 = treeCpuSeconds(nginx.pid);
    const r = await withBackground(() => runWrk(tools.wrk, p, CFG.satSeconds));
    const g = treeCpuSeconds(gw.child.pid) - g0;
    const n = treeCpuSeconds(nginx.pid) - n0;
    log(
      `airlock: ${r.rps} req/s, p50 ${r.latencyUs.p50} us, p99 ${r.latencyUs.p99} us, ` +
        `gateway CPU ${((g / r.requests) * 1e6).toFixed(1)} us/req (${(g / CFG.satSeconds).toFixed(2)} cores), ` +
        `nginx ${(n / CFG.satSeconds).toFixed(2)} cores, background ${r.backgroundCores} cores, failed ${r.non2xx + r.errors.read + r.errors.timeout}`,
    );
  }
  if (process.env.BENCH_WITH_RATE === '1') {
    const l = await withBackground(() => runRate(p));
    log(
      `rate ${CFG.rate}/s: p50 ${l.latencyMs.p50} ms, p99 ${l.latencyMs.p99} ms, background ${l.backgroundCores}`,
    );
  }
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}
