#!/usr/bin/env node
/**
 * Multi-core gateway scaling (issue 12 item 1): one gateway process against `gateway.workers: N`,
 * loaded by SEVERAL sessions at once, in one run.
 *
 *   npm run build && node bench/workers.mjs          # ~2 min; bench/results/workers-<timestamp>.json
 *   BENCH_WORKERS=1,2,4 BENCH_SESSIONS=4 node bench/workers.mjs   # on a bigger machine
 *
 * Why several sessions: the primary hands every connection of one source address to the same worker
 * (per-session limits hold for the whole gateway; docs/architecture.md "Gateway workers"), so load
 * from one address (one wrk) measures one worker. Here each session has its own source address
 * (127.0.0.1, 127.0.0.2, ...) and its own wrk, all running at once.
 *
 * Loopback only, in a network namespace of its own: the script re-runs itself under `unshare --net`
 * (root), brings `lo` up and gives each 127.0.0.K a local route with itself as the source, so a
 * connection to 127.0.0.K comes *from* 127.0.0.K. Nothing started here can reach any other address.
 *
 * Each round: for every worker count (order rotating), all sessions' wrk (1 thread, BENCH_CONNECTIONS
 * connections each) saturate the gateway together for BENCH_SAT_SECONDS after a warm-up; throughput
 * = the sum of their requests/s; gateway CPU = its process tree's CPU (primary + workers) over the
 * round. The figure per worker count is the median over rounds, and "vs 1" the median of per-round
 * ratios. On this project's 2-core machine, wrk, nginx and the gateway share two cores, so the
 * ratio says little about a machine with spare cores (bench/README.md "Multi-core gateway").
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CFG,
  ROOT,
  SESSION,
  UPSTREAM_NAME,
  ensureTools,
  freePort,
  log,
  machineBusySeconds,
  runWrk,
  sleep,
  startGateway,
  startNginx,
  stopAll,
  treeCpuSeconds,
} from './lib.mjs';

const workerCounts = (process.env.BENCH_WORKERS ?? '1,2').split(',').map(Number);
const sessions = Number(process.env.BENCH_SESSIONS ?? 2);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);

if (process.env.BENCH_IN_NETNS !== '1') {
  // Re-run inside a loopback-only network namespace (see the header).
  ensureTools();
  const setup = ['ip link set lo up'];
  for (let k = 2; k <= sessions; k++)
    setup.push(`ip route add local 127.0.0.${k}/32 dev lo src 127.0.0.${k} table local`);
  const script = `${setup.join(' && ')} && exec "${process.execPath}" "${fileURLToPath(import.meta.url)}"`;
  const r = spawnSync('unshare', ['--net', 'sh', '-c', script], {
    stdio: 'inherit',
    env: { ...process.env, BENCH_IN_NETNS: '1' },
  });
  process.exit(r.status ?? 1);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const r1 = (x) => Math.round(x * 10) / 10;
const r3 = (x) => Math.round(x * 1000) / 1000;

const tools = ensureTools();
const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-workers-'));
const results = {
  bench: 'workers',
  at: new Date().toISOString(),
  config: { ...CFG, workerCounts, sessions, rounds },
};
try {
  const nginxPort = await freePort();
  await startNginx(tools.nginx, dir, nginxPort);
  const up = `${UPSTREAM_NAME}:${nginxPort}`;
  const extra = Array.from({ length: sessions - 1 }, (_, i) => ({
    id: `s-bench-${i + 2}`,
    role: SESSION.role,
    address: `127.0.0.${i + 2}`,
    cred: `bench-credential-${i + 2}-0123456789abcdef`,
  }));
  const all = [{ ...SESSION, address: '127.0.0.1' }, ...extra];
  const gws = [];
  for (const n of workerCounts) {
    const d = path.join(dir, `gw${n}`);
    mkdirSync(d);
    const gw = await startGateway(d, nginxPort, {
      sessions: extra,
      config: { listenHost: '0.0.0.0', ...(n > 1 ? { workers: n } : {}) },
    });
    gws.push({ n, gw, rounds: [] });
    log(`gateway with ${n} worker(s) on port ${gw.proxyPort}`);
  }
  const load = (g, seconds) =>
    Promise.all(
      all.map((s) =>
        runWrk(
          tools.wrk,
          {
            name: `${g.n}w ${s.address}`,
            port: g.gw.proxyPort,
            connectHost: s.address,
            target: `http://${up}/payload`,
            host: up,
            auth: `Basic ${Buffer.from(`${s.id}:${s.cred}`).toString('base64')}`,
          },
          seconds,
        ),
      ),
    );
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? gws : [...gws].reverse();
    for (const g of order) {
      await load(g, CFG.warmupSeconds);
      const cpu0 = treeCpuSeconds(g.gw.child.pid);
      const busy0 = machineBusySeconds();
      const ours0 = treeCpuSeconds(process.pid, true);
      const t0 = Date.now();
      const w = await load(g, CFG.satSeconds);
      const wall = (Date.now() - t0) / 1000;
      const cpu = treeCpuSeconds(g.gw.child.pid) - cpu0;
      const foreign = machineBusySeconds() - busy0 - (treeCpuSeconds(process.pid, true) - ours0);
      const rps = w.reduce((a, x) => a + x.rps, 0);
      const requests = w.reduce((a, x) => a + x.requests, 0);
      const bad = w.reduce((a, x) => a + x.non2xx + x.errors.connect + x.errors.read + x.errors.timeout, 0);
      const round = {
        round: r + 1,
        rps,
        perSession: w.map((x) => x.rps),
        cpuUsPerReq: r1((cpu * 1e6) / requests),
        gatewayCores: r3(cpu / wall),
        backgroundCores: r3(Math.max(0, foreign / wall)),
        failed: bad,
      };
      g.rounds.push(round);
      log(
        `round ${r + 1} ${g.n} worker(s): ${rps} req/s (${round.perSession.join(' + ')}), ` +
          `${round.cpuUsPerReq} us/req, gateway ${round.gatewayCores} cores, background ${round.backgroundCores}, failed ${bad}`,
      );
      await sleep(200);
    }
  }
  const one = gws.find((g) => g.n === 1) ?? gws[0];
  results.paths = gws.map((g) => ({
    workers: g.n,
    rps: median(g.rounds.map((x) => x.rps)),
    cpuUsPerReq: median(g.rounds.map((x) => x.cpuUsPerReq)),
    gatewayCores: median(g.rounds.map((x) => x.gatewayCores)),
    overOneWorker: r3(median(g.rounds.map((x, i) => x.rps / one.rounds[i].rps))),
    backgroundCores: median(g.rounds.map((x) => x.backgroundCores)),
    failed: g.rounds.reduce((a, x) => a + x.failed, 0),
    rounds: g.rounds,
  }));
  results.machine = { cpus: os.cpus().length, node: process.version };
  console.log(
    '\n| workers | req/s (median) | vs 1 worker (median of rounds) | gateway CPU µs/req | gateway cores | bg cores |',
  );
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const p of results.paths)
    console.log(
      `| ${p.workers} | ${p.rps} | ${p.overOneWorker} | ${p.cpuUsPerReq} | ${p.gatewayCores} | ${p.backgroundCores} |`,
    );
  mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
  const out = path.join(ROOT, 'bench', 'results', `workers-${results.at.replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify(results, null, 2));
  console.log(`\n${out}`);
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}
