#!/usr/bin/env node
/**
 * Gateway CPU per request, this tree against a baseline tree, in one run (issue 13 "Done means": no
 * more than 5 % more CPU per request than the gateway before the hardening). nginx + gateways only,
 * saturated with wrk, no squid.
 *
 *   npm run build && node bench/gateway-only.mjs          # this ./dist against the pre-hardening commit
 *   BENCH_BASELINE=e3c8311 node bench/gateway-only.mjs    # another baseline commit
 *   BENCH_CURRENT=HEAD node bench/gateway-only.mjs        # a commit instead of ./dist (no uncommitted edits)
 *   BENCH_BASELINE= node bench/gateway-only.mjs           # this tree alone (the old quick loop)
 *   BENCH_ALSO=156abcc^,e3c8311 node bench/gateway-only.mjs   # more trees in the same rounds
 *   BENCH_ALSO=/tmp/patched/dist node bench/gateway-only.mjs   # a compiled tree (a path), as is
 *   BENCH_ALSO='/work/main/dist#--max-semi-space-size=32' node bench/gateway-only.mjs   # with node flags
 *   BENCH_GATEWAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" BENCH_BASELINE= node bench/gateway-only.mjs
 *
 * A commit is built once into `$TMPDIR/airlock-bench-tree-<sha12>` (git archive of the commit,
 * node_modules symlinked to this checkout's, `tsc -p tsconfig.build.json`) and reused by later runs.
 * Every gateway runs in its own process (bench/gateway-child.mjs, `startGatewayService` of its tree)
 * with the same policy, session, audit file settings and nginx upstream; all are started before
 * measuring and stay up. Each round measures every tree once, back to back, in an order that
 * alternates between rounds (A B, B A, ...): a warm-up of BENCH_WARMUP_SECONDS, then
 * BENCH_SAT_SECONDS of wrk. CPU per request = the gateway process's `process.cpuUsage()` (user +
 * system, µs) over the round / the requests wrk completed. The figure is the median over
 * BENCH_ROUNDS rounds (default 8), with min-max and the interquartile range; the ratio is the median
 * of the per-round ratios (the trees measured within seconds of each other), with its own spread; with
 * BENCH_ALSO (commits, comma-separated) those trees run in the same rounds too, each with its ratio to
 * the baseline.
 * JSON: bench/results/gateway-ab-<timestamp>.json. Never fails on a number.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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
  startGateway,
  startNginx,
  stopAll,
  treeCpuSeconds,
} from './lib.mjs';
import { buildTree, PRE_HARDENING } from './trees.mjs';

const rounds = Number(process.env.BENCH_ROUNDS ?? 8);
const baselineRef = process.env.BENCH_BASELINE ?? PRE_HARDENING;
const currentRef = process.env.BENCH_CURRENT ?? '';
const alsoRefs = (process.env.BENCH_ALSO ?? '').split(',').filter(Boolean);

/** Asks a gateway child for its process.cpuUsage() (bench/gateway-child.mjs), in seconds. */
function cpuOf(gw) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error('gateway did not report its CPU')), 5_000);
    const onData = (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      gw.child.stdout.off('data', onData);
      clearTimeout(t);
      const { cpu } = JSON.parse(buf.slice(0, nl));
      resolve((cpu.user + cpu.system) / 1e6);
    };
    gw.child.stdout.on('data', onData);
    gw.child.stdin.write('cpu\n');
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * q;
  const lo = Math.floor(i);
  return s[lo] + (s[Math.ceil(i)] - s[lo]) * (i - lo);
};
const spread = (xs) => ({
  median: median(xs),
  min: Math.min(...xs),
  max: Math.max(...xs),
  q1: quantile(xs, 0.25),
  q3: quantile(xs, 0.75),
});
const r1 = (x) => Math.round(x * 10) / 10;
const r3 = (x) => Math.round(x * 1000) / 1000;

const tools = ensureTools();
const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-'));
chmodSync(dir, 0o755);
try {
  const trees = [
    currentRef
      ? { name: `current (${currentRef})`, ...buildTree(currentRef) }
      : { name: 'current (./dist)', sha: 'working tree', dist: process.env.BENCH_DIST ?? '' },
  ];
  // An entry that is a path names a compiled tree (`dist/`) to run as is (e.g. a patched copy).
  // `/path/dist#--flag --flag2` runs that tree's gateway with extra node flags.
  for (const entry of alsoRefs) {
    const [ref, flags] = entry.split('#');
    const t = ref.startsWith('/')
      ? { name: entry, sha: 'dist', dist: ref }
      : { name: entry, ...buildTree(ref) };
    trees.push(flags ? { ...t, nodeArgs: flags.split(' ').filter(Boolean) } : t);
  }
  if (baselineRef) trees.push({ name: `baseline (${baselineRef})`, ...buildTree(baselineRef) });
  const base = baselineRef ? trees.at(-1) : null;
  const nginxPort = await freePort();
  await startNginx(tools.nginx, dir, nginxPort);
  const host = `${UPSTREAM_NAME}:${nginxPort}`;
  for (const [i, t] of trees.entries()) {
    // Each gateway its own dir (policy, audit file), the same settings.
    const d = path.join(dir, `gw${i}`);
    mkdirSync(d);
    t.gw = await startGateway(d, nginxPort, {
      ...(t.dist ? { dist: t.dist } : {}),
      ...(t.nodeArgs ? { nodeArgs: t.nodeArgs } : {}),
    });
    t.p = {
      name: t.name,
      port: t.gw.proxyPort,
      target: `http://${host}/payload`,
      host,
      auth: `Basic ${Buffer.from(`${SESSION.id}:${SESSION.cred}`).toString('base64')}`,
    };
    t.rounds = [];
  }
  for (const t of trees) await runWrk(tools.wrk, t.p, CFG.warmupSeconds);
  for (let r = 0; r < rounds; r++) {
    // Rotated and, every other round, reversed: no tree always runs first or after the same one.
    const rotated = trees.map((_, i) => trees[(i + (r >> 1)) % trees.length]);
    const order = r % 2 === 0 ? rotated : rotated.reverse();
    for (const t of order) {
      await runWrk(tools.wrk, t.p, 1); // 1 s warm-up right before (caches, JIT after the other tree ran)
      const c0 = await cpuOf(t.gw);
      const busy0 = machineBusySeconds();
      const ours0 = treeCpuSeconds(process.pid, true);
      const t0 = Date.now();
      const w = await runWrk(tools.wrk, t.p, CFG.satSeconds);
      const wall = (Date.now() - t0) / 1000;
      const cpu = (await cpuOf(t.gw)) - c0;
      const bg = Math.max(
        0,
        (machineBusySeconds() - busy0 - (treeCpuSeconds(process.pid, true) - ours0)) / wall,
      );
      const x = {
        round: r + 1,
        rps: w.rps,
        requests: w.requests,
        failed: w.non2xx + w.errors.read + w.errors.timeout,
        cpuUsPerReq: r1((cpu / w.requests) * 1e6),
        gatewayCores: r3(cpu / wall),
        backgroundCores: r3(bg),
      };
      t.rounds.push(x);
      log(
        `round ${r + 1} ${t.name}: ${x.rps} req/s, gateway ${x.cpuUsPerReq} us/req (${x.gatewayCores} cores), ` +
          `background ${x.backgroundCores} cores, failed ${x.failed}`,
      );
    }
  }
  // Per round: each tree's CPU per request over the baseline's in the same round.
  for (const t of trees) {
    if (!base || t === base) continue;
    t.ratios = t.rounds.map((x, i) => x.cpuUsPerReq / base.rounds[i].cpuUsPerReq);
  }
  const ratios = trees[0].ratios ?? [];

  const summary = trees.map((t) => ({
    name: t.name,
    commit: t.sha,
    cpuUsPerReq: spread(t.rounds.map((x) => x.cpuUsPerReq)),
    ...(t.ratios ? { overBaseline: { ...spread(t.ratios.map(r3)), perRound: t.ratios.map(r3) } } : {}),
    rps: spread(t.rounds.map((x) => x.rps)),
    rounds: t.rounds,
  }));
  const bgAll = trees.flatMap((t) => t.rounds.map((x) => x.backgroundCores));
  const result = {
    bench: 'gateway-ab',
    at: new Date().toISOString(),
    config: { rounds, satSeconds: CFG.satSeconds, connections: CFG.connections, wrkThreads: CFG.wrkThreads },
    machine: { cpus: os.cpus().length, node: process.version },
    trees: summary,
    ...(ratios.length
      ? {
          ratio: {
            what: 'current / baseline gateway CPU per request, per round',
            ...spread(ratios.map(r3)),
            perRound: ratios.map(r3),
          },
          target: {
            what: 'current <= 1.05 x baseline CPU per request',
            met: median(ratios) <= 1.05,
            conclusive: quantile(ratios, 0.75) <= 1.05 || quantile(ratios, 0.25) > 1.05,
          },
        }
      : {}),
    noise: { backgroundCores: spread(bgAll), noisy: median(bgAll) > 0.1 },
  };
  mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
  const out = path.join(ROOT, 'bench', 'results', `gateway-ab-${result.at.replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  console.log(
    '\n| tree | gateway CPU us/req, median | IQR | min-max | req/s median | over baseline, median of rounds (IQR; min-max) |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const t of summary) {
    const c = t.cpuUsPerReq;
    const o = t.overBaseline;
    console.log(
      `| ${t.name} | ${r1(c.median)} | ${r1(c.q1)}-${r1(c.q3)} | ${r1(c.min)}-${r1(c.max)} | ${Math.round(t.rps.median)} | ` +
        `${o ? `${r3(o.median)} (${r3(o.q1)}-${r3(o.q3)}; ${r3(o.min)}-${r3(o.max)})` : '-'} |`,
    );
  }
  if (result.ratio) {
    const q = result.ratio;
    console.log(
      `\ncurrent/baseline CPU per request: median ${r3(q.median)} (IQR ${r3(q.q1)}-${r3(q.q3)}, ` +
        `rounds ${r3(q.min)}-${r3(q.max)}); target <= 1.05: ${result.target.met ? 'met' : 'NOT met'}` +
        `${result.target.conclusive ? '' : ' (not conclusive: the IQR straddles 1.05)'}`,
    );
  }
  console.log(
    `background (other processes) ${r3(result.noise.backgroundCores.median)} cores median` +
      `${result.noise.noisy ? ' — NOISY: other work shared the cores' : ''}; ${out}`,
  );
} finally {
  await stopAll();
  if (process.env.BENCH_KEEP) log(`kept ${dir} (BENCH_KEEP)`);
  else rmSync(dir, { recursive: true, force: true });
}
