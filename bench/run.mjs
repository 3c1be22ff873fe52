#!/usr/bin/env node
/**
 * Airlock gateway benchmark (not a test): the same nginx upstream reached three ways in one run —
 * direct, through Airlock's gateway (its own process, audit to a file), and through squid with an
 * equivalent host ACL — measured for saturation throughput (wrk) and for latency at a fixed rate
 * (bench/rate-client.mjs, open loop). Loopback only. See bench/README.md.
 *
 *   npm run build && npm run bench
 *
 * Environment (all optional):
 *   BENCH_SAT_SECONDS (4), BENCH_SAT_ROUNDS (3)       wrk saturation: rounds x paths, rotating order
 *   BENCH_WARMUP_SECONDS (2)                          wrk warm-up per path before the rounds
 *   BENCH_CONNECTIONS (32), BENCH_WRK_THREADS (1)
 *   BENCH_RATE (1000), BENCH_RATE_SECONDS (5), BENCH_RATE_ROUNDS (2), BENCH_RATE_WARMUP_SECONDS (1)
 *   BENCH_SQUID_ACCESS_LOG (1: squid logs each request to a temp file, as Airlock audits; 0: off)
 *   BENCH_WAIT_QUIET (20): seconds to wait at most for the machine to be idle before measuring
 *   BENCH_KEEP (1: keep the temp dir), BENCH_NO_INSTALL (1: never apt-get install)
 *   BENCH_GATEWAY_NODE_ARGS: extra node flags for the gateway process ("--cpu-prof --cpu-prof-dir=/tmp/p")
 *   BENCH_DIST: a compiled tree to run instead of ./dist (e.g. a patched scratch copy)
 *   BENCH_GATEWAY_WORKERS (off; e.g. "2"): more Airlock paths with a multi-worker gateway (gateway.workers),
 *     comma separated: "2", "2,4". Every connection from one address goes to one worker (wrk's all do:
 *     these paths measure one worker); the ":none" scheduling suffix no longer changes the proxy port
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BENCH_DIR,
  CFG,
  NOISY_CORES,
  ROOT,
  SESSION,
  UPSTREAM_NAME,
  ensureTools,
  freePort,
  get,
  log,
  percentiles,
  runRate,
  runWrk,
  sleep,
  startGateway,
  startNginx,
  startSquid,
  stopAll,
  stopChild,
  toolVersion,
  treeCpuSeconds,
  withBackground,
} from './lib.mjs';

const r2 = (x) => (x === null || x === undefined || Number.isNaN(x) ? null : Math.round(x * 100) / 100);
const r3 = (x) => (x === null || x === undefined || Number.isNaN(x) ? null : Math.round(x * 1000) / 1000);
const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Waits (bounded) until other processes use less than NOISY_CORES; returns what was seen last. */
async function waitForQuiet(maxSeconds) {
  const deadline = Date.now() + maxSeconds * 1000;
  let seen;
  for (;;) {
    seen = (await withBackground(() => sleep(1000).then(() => ({})))).backgroundCores;
    if (seen <= NOISY_CORES || Date.now() >= deadline) return seen;
    log(`machine busy (${seen} cores used by other processes); waiting for quiet`);
  }
}

async function main() {
  const startedAt = new Date();
  const wall0 = Date.now();
  const dist = process.env.BENCH_DIST ? path.resolve(process.env.BENCH_DIST) : path.join(ROOT, 'dist');
  if (!existsSync(path.join(dist, 'gateway', 'service.js'))) {
    throw new Error(`${dist}/gateway/service.js is missing: run \`npm run build\` first`);
  }
  const tools = ensureTools();

  const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-'));
  chmodSync(dir, 0o755); // squid drops to user "proxy"
  const cleanup = async () => {
    await stopAll();
    if (process.env.BENCH_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  };
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => void cleanup().then(() => process.exit(130)));
  }

  try {
    const [nginxPort, squidPort] = [await freePort(), await freePort()];
    const nginx = await startNginx(tools.nginx, dir, nginxPort);
    const squid = await startSquid(tools.squid, dir, squidPort, nginxPort);
    const gw = await startGateway(dir, nginxPort);
    log(`nginx :${nginxPort}, squid :${squidPort}, airlock :${gw.proxyPort} (policy ${gw.policyVersion})`);
    // Multi-worker gateways (gateway.workers), each in its own dir with its own audit file.
    const multi = [];
    // Off by default: the primary hands all of one source address's connections (wrk's) to one worker.
    for (const spec of (process.env.BENCH_GATEWAY_WORKERS ?? '').split(',').filter(Boolean)) {
      const [n, sched] = spec.split(':');
      const name = `airlock-${n}w${sched ? `-${sched}` : ''}`;
      const g = await startGateway(path.join(dir, name), nginxPort, {
        config: { workers: Number(n) },
        ...(sched ? { sched } : {}),
      });
      log(`${name} :${g.proxyPort} (${n} workers, scheduling ${sched ?? 'rr'})`);
      multi.push({ name, workers: Number(n), sched: sched ?? 'rr', gw: g });
    }

    const host = `${UPSTREAM_NAME}:${nginxPort}`;
    const absolute = `http://${host}/payload`;
    const auth = `Basic ${Buffer.from(`${SESSION.id}:${SESSION.cred}`).toString('base64')}`;
    const paths = [
      { name: 'direct', port: nginxPort, target: '/payload', host, server: nginx.pid },
      { name: 'airlock', port: gw.proxyPort, target: absolute, host, auth, server: gw.child.pid },
      { name: 'squid', port: squidPort, target: absolute, host, server: squid.pid },
      ...multi.map((m) => ({
        name: m.name,
        port: m.gw.proxyPort,
        target: absolute,
        host,
        auth,
        server: m.gw.child.pid,
      })),
    ];

    // Sanity: every path serves the body; both proxies refuse what their ACL does not allow.
    for (const p of paths) {
      const r = await get(p.port, p.target, { host, ...(p.auth ? { 'proxy-authorization': p.auth } : {}) });
      if (r.status !== 200 || r.bytes !== CFG.bodyBytes) {
        throw new Error(`${p.name}: sanity GET got ${r.status}, ${r.bytes} bytes`);
      }
    }
    const deniedA = await get(gw.proxyPort, `http://${host}/admin/x`, { host, 'proxy-authorization': auth });
    if (deniedA.status !== 403 || deniedA.headers['x-airlock-decision'] !== 'deny') {
      throw new Error(`airlock did not deny /admin/x: ${deniedA.status}`);
    }
    const otherPort = `${UPSTREAM_NAME}:${squidPort}`;
    const deniedS = await get(squidPort, `http://${otherPort}/payload`, { host: otherPort });
    if (deniedS.status !== 403) throw new Error(`squid did not deny another port: ${deniedS.status}`);
    log('sanity ok: 200 + 256 bytes on all three paths; airlock and squid deny outside their ACL');

    const quietAtStart = await waitForQuiet(Number(process.env.BENCH_WAIT_QUIET ?? 20));

    // 1. Saturation (wrk, closed loop): warm-up per path, then rounds in rotating order.
    const sat = Object.fromEntries(paths.map((p) => [p.name, { rounds: [] }]));
    for (const p of paths) await runWrk(tools.wrk, p, CFG.warmupSeconds);
    for (let round = 0; round < CFG.satRounds; round++) {
      for (const p of paths.map((_, i) => paths[(i + round) % paths.length])) {
        const cpu0 = [treeCpuSeconds(p.server), treeCpuSeconds(nginx.pid)];
        const r = await withBackground(() => runWrk(tools.wrk, p, CFG.satSeconds));
        const secs = r.durationUs / 1e6;
        const proxyCpu = treeCpuSeconds(p.server) - cpu0[0];
        r.upstreamCores = r2((treeCpuSeconds(nginx.pid) - cpu0[1]) / secs);
        r.proxyCores = p.name === 'direct' ? null : r2(proxyCpu / secs);
        r.proxyCpuUsPerRequest = p.name === 'direct' ? null : r2((proxyCpu / r.requests) * 1e6);
        r.failed = r.non2xx + r.errors.connect + r.errors.read + r.errors.write + r.errors.timeout;
        sat[p.name].rounds.push(r);
        log(
          `saturation ${p.name} #${round + 1}: ${r.rps} req/s, p99 ${r.latencyUs.p99} us` +
            (r.proxyCpuUsPerRequest === null ? '' : `, proxy ${r.proxyCpuUsPerRequest} us CPU/req`) +
            `, failed ${r.failed}, background ${r.backgroundCores} cores`,
        );
      }
    }
    for (const p of paths) {
      const s = sat[p.name];
      const rps = s.rounds.map((r) => r.rps);
      s.rps = Math.round(median(rps));
      s.rpsMin = Math.min(...rps);
      s.rpsMax = Math.max(...rps);
      s.proxyCpuUsPerRequest =
        p.name === 'direct' ? null : r2(median(s.rounds.map((r) => r.proxyCpuUsPerRequest)));
      s.failed = s.rounds.reduce((a, r) => a + r.failed, 0);
      s.backgroundCoresMax = Math.max(...s.rounds.map((r) => r.backgroundCores));
    }

    // 2. Latency at a fixed rate (open loop), rounds in rotating order, samples pooled per path.
    const rateRuns = Object.fromEntries(paths.map((p) => [p.name, []]));
    for (let round = 0; round < CFG.rateRounds; round++) {
      for (const p of paths.map((_, i) => paths[(i + round) % paths.length])) {
        const r = await withBackground(() =>
          runRate(p, { seconds: CFG.rateSeconds, warmupSeconds: CFG.rateWarmupSeconds, samples: true }),
        );
        rateRuns[p.name].push(r);
        log(
          `rate ${CFG.rate}/s ${p.name} #${round + 1}: p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, ` +
            `ok ${r.ok}/${r.scheduled}, background ${r.backgroundCores} cores`,
        );
      }
    }
    const lat = {};
    for (const p of paths) {
      const runs = rateRuns[p.name];
      const pool = (key) => {
        const all = Float64Array.from(runs.flatMap((r) => r.samples[key]));
        return percentiles(all, all.length);
      };
      lat[p.name] = {
        rate: CFG.rate,
        scheduled: runs.reduce((a, r) => a + r.scheduled, 0),
        ok: runs.reduce((a, r) => a + r.ok, 0),
        failed: runs.reduce((a, r) => a + r.errors + r.badStatus, 0),
        achievedRate: r2(median(runs.map((r) => r.achievedRate))),
        latencyMs: pool('latencyMs'),
        correctedLatencyMs: pool('correctedLatencyMs'),
        sendLagMsP99: Math.max(...runs.map((r) => r.sendLagMs.p99)),
        backgroundCoresMax: Math.max(...runs.map((r) => r.backgroundCores)),
        rounds: runs.map(({ samples: _samples, ...rest }) => rest),
      };
    }

    // Audit: stop the gateway (flushes its file) and count the lines it wrote.
    await stopChild(gw.child);
    const auditLines = existsSync(gw.auditFile)
      ? readFileSync(gw.auditFile, 'utf8').split('\n').filter(Boolean).length
      : 0;
    // The multi-worker gateways: every line of their shared audit file must parse (whole lines).
    const multiAudit = {};
    for (const m of multi) {
      await stopChild(m.gw.child);
      const lines = existsSync(m.gw.auditFile)
        ? readFileSync(m.gw.auditFile, 'utf8').split('\n').filter(Boolean)
        : [];
      const byWorker = {};
      let broken = 0;
      for (const l of lines) {
        try {
          const w = JSON.parse(l).worker;
          byWorker[w] = (byWorker[w] ?? 0) + 1;
        } catch {
          broken++;
        }
      }
      multiAudit[m.name] = { lines: lines.length, broken, byWorker };
    }
    const airlockMeasured =
      sat.airlock.rounds.reduce((a, r) => a + r.requests, 0) +
      rateRuns.airlock.reduce((a, r) => a + r.sent, 0);

    const added = (name, key) => ({
      p50: r3(lat[name][key].p50 - lat.direct[key].p50),
      p99: r3(lat[name][key].p99 - lat.direct[key].p99),
    });
    const ratios = {
      airlockOverDirectRps: r3(sat.airlock.rps / sat.direct.rps),
      squidOverDirectRps: r3(sat.squid.rps / sat.direct.rps),
      airlockOverSquidRps: r3(sat.airlock.rps / sat.squid.rps),
      addedLatencyMs: { airlock: added('airlock', 'latencyMs'), squid: added('squid', 'latencyMs') },
      addedCorrectedLatencyMs: {
        airlock: added('airlock', 'correctedLatencyMs'),
        squid: added('squid', 'correctedLatencyMs'),
      },
      /** Each multi-worker gateway's req/s over the one-worker gateway's, same run. */
      workersOverOneRps: Object.fromEntries(
        multi.map((m) => [m.name, r3(sat[m.name].rps / sat.airlock.rps)]),
      ),
    };
    for (const m of multi) {
      ratios.addedLatencyMs[m.name] = added(m.name, 'latencyMs');
      ratios.addedCorrectedLatencyMs[m.name] = added(m.name, 'correctedLatencyMs');
    }
    const backgroundMax = Math.max(
      quietAtStart,
      ...paths.flatMap((p) => [sat[p.name].backgroundCoresMax, lat[p.name].backgroundCoresMax]),
    );

    const targets = {
      airlockRpsAtLeastSquid: sat.airlock.rps >= sat.squid.rps,
      airlockAddedP99AtMost1ms: ratios.addedLatencyMs.airlock.p99 <= 1,
      /** False when other processes used more than NOISY_CORES during the run: then neither verdict holds. */
      conclusive: backgroundMax <= NOISY_CORES,
    };
    const result = {
      startedAt: startedAt.toISOString(),
      wallSeconds: Math.round((Date.now() - wall0) / 100) / 10,
      config: {
        ...CFG,
        dist: path.relative(ROOT, dist) || dist,
        gatewayNodeArgs: process.env.BENCH_GATEWAY_NODE_ARGS ?? '',
      },
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? null,
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        kernel: os.release(),
        node: process.version,
        nginx: toolVersion(tools.nginx, ['-v']),
        squid: toolVersion(tools.squid, ['-v']),
        wrk: toolVersion(tools.wrk, ['-v']),
        gitCommit: toolVersion('git', ['-C', ROOT, 'rev-parse', 'HEAD']),
      },
      saturation: sat,
      fixedRate: lat,
      ratios,
      targets,
      noise: {
        backgroundCoresAtStart: quietAtStart,
        backgroundCoresMax: backgroundMax,
        noisy: backgroundMax > NOISY_CORES,
        note: 'backgroundCores = CPU used by processes this bench did not start, in cores (the machine has 2)',
      },
      audit: { lines: auditLines, measuredAirlockRequests: airlockMeasured, workers: multiAudit },
      workers: multi.map((m) => ({ name: m.name, workers: m.workers, sched: m.sched })),
    };
    const resultsDir = path.join(BENCH_DIR, 'results');
    mkdirSync(resultsDir, { recursive: true });
    const file = path.join(resultsDir, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(
      table(paths, sat, lat, ratios, targets, backgroundMax, auditLines, airlockMeasured, file, result),
    );
  } finally {
    await cleanup();
  }
}

function table(paths, sat, lat, ratios, targets, backgroundMax, auditLines, airlockMeasured, file, result) {
  const sign = (x) => `${x >= 0 ? '+' : ''}${x.toFixed(3)}`;
  const rows = paths.map((p) => {
    const s = sat[p.name];
    const l = lat[p.name].latencyMs;
    const a = ratios.addedLatencyMs[p.name];
    return [
      p.name,
      String(s.rps),
      `${s.rpsMin}-${s.rpsMax}`,
      s.proxyCpuUsPerRequest === null ? '-' : String(s.proxyCpuUsPerRequest),
      l.p50.toFixed(3),
      l.p99.toFixed(3),
      a ? sign(a.p50) : '-',
      a ? sign(a.p99) : '-',
      `${s.backgroundCoresMax.toFixed(2)}/${lat[p.name].backgroundCoresMax.toFixed(2)}`,
    ];
  });
  const head = [
    'path',
    'req/s',
    'range',
    'proxy CPU us/req',
    `p50 ms @${CFG.rate}/s`,
    `p99 ms @${CFG.rate}/s`,
    'added p50',
    'added p99',
    'bg cores',
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [
    '',
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    `req/s: median of ${CFG.satRounds} wrk rounds (${CFG.connections} connections, ${CFG.satSeconds}s); ` +
      `latency: ${CFG.rateRounds} x ${CFG.rateSeconds}s open loop at ${CFG.rate}/s, pooled`,
    `airlock/direct ${ratios.airlockOverDirectRps}  squid/direct ${ratios.squidOverDirectRps}  ` +
      `airlock/squid ${ratios.airlockOverSquidRps}`,
    ...Object.entries(ratios.workersOverOneRps).map(
      ([name, x]) =>
        `${name}/airlock (1 worker) req/s ${x}; audit ${JSON.stringify(result.audit.workers[name])}`,
    ),
    `target airlock req/s >= squid: ${targets.airlockRpsAtLeastSquid ? 'MET' : 'NOT MET'}; ` +
      `added p99 <= 1 ms at ${CFG.rate}/s: ${targets.airlockAddedP99AtMost1ms ? 'MET' : 'NOT MET'} ` +
      `(${ratios.addedLatencyMs.airlock.p99} ms)` +
      (targets.conclusive ? '' : ' -- NOT CONCLUSIVE: the machine was busy'),
    ...(backgroundMax > NOISY_CORES
      ? [
          `WARNING: other processes used up to ${backgroundMax} of the 2 cores during the run; figures are noisy`,
        ]
      : []),
    `audit lines written: ${auditLines} (measured airlock requests: ${airlockMeasured}, plus warm-ups)`,
    `results: ${path.relative(ROOT, file)} (${result.wallSeconds}s)`,
    '',
  ].join('\n');
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
