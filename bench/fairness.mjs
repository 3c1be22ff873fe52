#!/usr/bin/env node
/**
 * Per-session fairness benchmark (not a test; issue 13 section 2): does one session's slow uploads
 * change another session's latency to the same upstream? One nginx upstream, the Airlock gateway in
 * its own process with two sessions: A at 127.0.0.1, B at 127.0.0.2, each with its own credential.
 *
 *   B: bench/rate-client.mjs from 127.0.0.2, open loop at BENCH_FAIR_RATE req/s, GET /payload.
 *   A: BENCH_FAIR_UPLOADS concurrent `POST /payload` with `Transfer-Encoding: chunked`, each
 *      trickling 1 byte every BENCH_FAIR_TRICKLE_MS ms (nginx answers 204 only after the whole body,
 *      so every upload holds its upstream connection until it ends).
 *
 * Phases, alternated in every round: B alone; B while A's uploads are in flight. Per round and tree:
 * B's p50/p99 with A over without A. With BENCH_BASELINE_DIST (e.g. /tmp/bench-e3c8311/dist, the
 * tree before per-session pools: one shared 128-connection pool per origin) a second gateway runs
 * that tree and the same phases are taken against it in the same rounds (tree order rotates).
 *
 * The gateway under test runs with `gateway.limits` {concurrentRequests: 1024, connections: 1024,
 * bodyMinBytesPerSecond: 0}: all of A's uploads reach the upstream pool and none is cut by the
 * slow-body rule, so what is measured is pool isolation, not the limits (BENCH_FAIR_LIMITS, JSON,
 * replaces these; the baseline tree has no limits).
 *
 * Environment (all optional): BENCH_FAIR_ROUNDS (3), BENCH_FAIR_RATE (500), BENCH_FAIR_SECONDS (5),
 * BENCH_FAIR_WARMUP_SECONDS (1), BENCH_FAIR_UPLOADS (150), BENCH_FAIR_TRICKLE_MS (500),
 * BENCH_FAIR_LIMITS, BENCH_BASELINE_DIST, BENCH_DIST (the tree under test instead of ./dist),
 * BENCH_WAIT_QUIET (10), BENCH_KEEP. About 2 minutes with a baseline; writes
 * bench/results/fairness-<timestamp>.json. Loopback only; every phase is bounded in time.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  BENCH_DIR,
  CFG,
  NOISY_CORES,
  ROOT,
  SESSION,
  UPSTREAM_NAME,
  ensureTools,
  env,
  freePort,
  get,
  log,
  runRate,
  sleep,
  startGateway,
  startNginx,
  stopAll,
  toolVersion,
  withBackground,
} from './lib.mjs';

const FAIR = {
  rounds: env('BENCH_FAIR_ROUNDS', 3),
  rate: env('BENCH_FAIR_RATE', 500),
  seconds: env('BENCH_FAIR_SECONDS', 5),
  warmupSeconds: env('BENCH_FAIR_WARMUP_SECONDS', 1),
  uploads: env('BENCH_FAIR_UPLOADS', 150),
  trickleMs: env('BENCH_FAIR_TRICKLE_MS', 500),
  /** A's uploads start this long before B measures (time to fill the upstream pool). */
  leadMs: 1_000,
  /** and end this long after B's last scheduled request. */
  tailMs: 1_000,
  connections: 32,
};
const LIMITS = process.env.BENCH_FAIR_LIMITS
  ? JSON.parse(process.env.BENCH_FAIR_LIMITS)
  : { concurrentRequests: 1024, connections: 1024, bodyMinBytesPerSecond: 0 };
const SESSION_B = {
  id: 's-bench-b',
  cred: 'bench-credential-b-0123456789abcdef',
  role: 'bench',
  address: '127.0.0.2',
};
const basic = (s) => `Basic ${Buffer.from(`${s.id}:${s.cred}`).toString('base64')}`;

const r3 = (x) => (x === null || x === undefined || Number.isNaN(x) ? null : Math.round(x * 1000) / 1000);
const median = (a) => {
  const s = a.filter((x) => x !== null).sort((x, y) => x - y);
  if (s.length === 0) return null;
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

/** nginx's stub_status: active connections (client side of nginx, gateway pools included). */
async function nginxActive(statusPort) {
  try {
    const body = await new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: statusPort, path: '/', agent: false }, (res) => {
        let t = '';
        res.on('data', (c) => (t += c));
        res.on('end', () => resolve(t));
      });
      req.setTimeout(2_000, () => req.destroy(new Error('timeout')));
      req.once('error', reject);
    });
    const m = /Active connections:\s*(\d+)/.exec(body);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * Session A's slow uploads through the gateway on `port`: `n` raw sockets from 127.0.0.1, each a
 * chunked POST trickling one byte every `trickleMs`. `end()` sends the last chunk and waits (at most
 * 10 s) for the answers; an answer that arrives before `end()` is counted as early (refused or cut).
 */
function startUploads(port, target, host, auth, n, trickleMs) {
  const uploads = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const u = { socket: null, status: null, early: false, atMs: null, error: null, done: null };
    u.done = new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1' });
      u.socket = s;
      let head = '';
      s.setNoDelay(true);
      s.on('data', (d) => {
        if (u.status !== null) return;
        head += d.toString('latin1');
        const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
        if (m) {
          u.status = Number(m[1]);
          u.atMs = performance.now() - t0;
          u.early = !u.ending;
          s.destroy();
        }
      });
      s.on('error', (e) => (u.error = e.code ?? e.message));
      s.on('close', resolve);
      s.write(
        `POST ${target} HTTP/1.1\r\nHost: ${host}\r\nProxy-Authorization: ${auth}\r\n` +
          'Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n',
      );
    });
    uploads.push(u);
  }
  const timer = setInterval(() => {
    for (const u of uploads) if (u.status === null && !u.socket.destroyed) u.socket.write('1\r\na\r\n');
  }, trickleMs);
  return {
    uploads,
    async end() {
      clearInterval(timer);
      const heldMs = performance.now() - t0;
      for (const u of uploads) {
        u.ending = true;
        if (u.status === null && !u.socket.destroyed) u.socket.write('0\r\n\r\n');
      }
      const all = Promise.all(uploads.map((u) => u.done));
      const bound = sleep(10_000).then(() => {
        for (const u of uploads) u.socket.destroy();
      });
      await Promise.race([all, bound]);
      await all;
      const statuses = {};
      for (const u of uploads) {
        const k = u.status === null ? (u.error ?? 'no answer') : String(u.status);
        statuses[k] = (statuses[k] ?? 0) + 1;
      }
      return {
        heldMs: Math.round(heldMs),
        statuses,
        early: uploads.filter((u) => u.early).length,
        lastAnswerMs: r3(Math.max(0, ...uploads.map((u) => u.atMs ?? 0))),
      };
    },
  };
}

/** One phase: B at the fixed rate, with or without A's uploads; bounded by the phase lengths. */
async function phase(tree, withA, statusPort) {
  return withBackground(async () => {
    let a = null;
    let activeDuringA = null;
    const b = await runRate(tree.pathB, {
      rate: FAIR.rate,
      seconds: FAIR.seconds,
      warmupSeconds: FAIR.warmupSeconds,
      connections: FAIR.connections,
      localAddress: SESSION_B.address,
      onWarm: async () => {
        if (withA) {
          const p = tree.pathA;
          a = startUploads(p.port, p.target, p.host, p.auth, FAIR.uploads, FAIR.trickleMs);
        }
        await sleep(FAIR.leadMs);
        if (withA) activeDuringA = await nginxActive(statusPort);
        // A's uploads end a fixed time after B's last scheduled request (not when B is done: on a
        // shared pool B's requests wait for them).
        if (a) a.endTimer = sleep(FAIR.seconds * 1000 + FAIR.tailMs).then(() => a.end());
      },
    });
    const aResult = a ? await a.endTimer : null;
    await sleep(300);
    return {
      tree: tree.name,
      withA,
      b: {
        scheduled: b.scheduled,
        ok: b.ok,
        errors: b.errors,
        badStatus: b.badStatus,
        achievedRate: b.achievedRate,
        latencyMs: b.latencyMs,
        correctedLatencyMs: b.correctedLatencyMs,
        sendLagMs: b.sendLagMs,
      },
      a: aResult,
      nginxActiveConnections: activeDuringA,
    };
  });
}

async function main() {
  const startedAt = new Date();
  const wall0 = Date.now();
  const distUnder = process.env.BENCH_DIST ? path.resolve(process.env.BENCH_DIST) : path.join(ROOT, 'dist');
  const distBase = process.env.BENCH_BASELINE_DIST ? path.resolve(process.env.BENCH_BASELINE_DIST) : null;
  for (const d of [distUnder, distBase].filter(Boolean)) {
    if (!existsSync(path.join(d, 'gateway', 'service.js')))
      throw new Error(`${d}/gateway/service.js is missing`);
  }
  const tools = ensureTools();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-fair-'));
  chmodSync(dir, 0o755);
  const cleanup = async () => {
    await stopAll();
    if (process.env.BENCH_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  };
  for (const sig of ['SIGINT', 'SIGTERM'])
    process.once(sig, () => void cleanup().then(() => process.exit(130)));

  try {
    const [nginxPort, statusPort] = [await freePort(), await freePort()];
    await startNginx(tools.nginx, dir, nginxPort, { uploadSink: true, statusPort });
    const host = `${UPSTREAM_NAME}:${nginxPort}`;
    const target = `http://${host}/payload`;
    const policyLines = [`p, bench, ${host}, /payload, POST, allow`];
    const sessions = [SESSION_B];
    const trees = [];
    const gwUnder = await startGateway(path.join(dir, 'under-test'), nginxPort, {
      config: { limits: LIMITS },
      policyLines,
      sessions,
      dist: distUnder,
    });
    trees.push({ name: 'per-session pools', dist: distUnder, gw: gwUnder });
    if (distBase) {
      const gwBase = await startGateway(path.join(dir, 'baseline'), nginxPort, {
        policyLines,
        sessions,
        dist: distBase,
      });
      trees.push({ name: 'baseline', dist: distBase, gw: gwBase });
    }
    for (const t of trees) {
      t.pathA = { name: `${t.name} A`, port: t.gw.proxyPort, target, host, auth: basic(SESSION) };
      t.pathB = { name: `${t.name} B`, port: t.gw.proxyPort, target, host, auth: basic(SESSION_B) };
      log(`${t.name}: gateway :${t.gw.proxyPort} (${path.relative(ROOT, t.dist) || t.dist})`);
    }

    // Sanity: B (127.0.0.2) gets the payload as session B; A's POST is answered 204 after its body.
    for (const t of trees) {
      const r = await new Promise((resolve, reject) => {
        const req = http.request(
          {
            host: '127.0.0.1',
            port: t.gw.proxyPort,
            localAddress: SESSION_B.address,
            path: target,
            headers: { host, 'proxy-authorization': t.pathB.auth },
            agent: false,
          },
          (res) => {
            let n = 0;
            res.on('data', (c) => (n += c.length));
            res.on('end', () => resolve({ status: res.statusCode, bytes: n }));
          },
        );
        req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
        req.once('error', reject);
        req.end();
      });
      if (r.status !== 200 || r.bytes !== CFG.bodyBytes)
        throw new Error(`${t.name}: B's GET got ${r.status}`);
      const wrongCred = await get(t.gw.proxyPort, target, { host, 'proxy-authorization': t.pathB.auth });
      if (wrongCred.status === 200)
        throw new Error(`${t.name}: B's credential from A's address was accepted`);
      const up = startUploads(t.gw.proxyPort, target, host, t.pathA.auth, 1, 200);
      await sleep(700);
      const ur = await up.end();
      if (ur.statuses['204'] !== 1 || ur.early !== 0) {
        throw new Error(`${t.name}: A's chunked POST: ${JSON.stringify(ur)}`);
      }
      // Warm the gateway (JIT) on B's path, untimed.
      await runRate(t.pathB, {
        rate: FAIR.rate,
        seconds: 1,
        warmupSeconds: 1,
        localAddress: SESSION_B.address,
      });
    }
    log('sanity ok: B 200 from 127.0.0.2, B refused from A address, A chunked POST 204 after its body');

    const quietAtStart = await waitForQuiet(Number(process.env.BENCH_WAIT_QUIET ?? 10));
    const phases = [];
    for (let round = 0; round < FAIR.rounds; round++) {
      const order = trees.map((_, i) => trees[(i + round) % trees.length]);
      for (const t of order) {
        const kinds = round % 2 === 0 ? [false, true] : [true, false];
        for (const withA of kinds) {
          const r = await phase(t, withA, statusPort);
          r.round = round + 1;
          phases.push(r);
          log(
            `round ${round + 1} ${t.name} ${withA ? 'with A' : 'B alone'}: B p50 ${r.b.latencyMs.p50} ms, ` +
              `p99 ${r.b.latencyMs.p99} ms, ok ${r.b.ok}/${r.b.scheduled}` +
              (r.a
                ? `; A ${JSON.stringify(r.a.statuses)} (early ${r.a.early}), nginx active ${r.nginxActiveConnections}`
                : '') +
              `; bg ${r.backgroundCores} cores`,
          );
        }
      }
    }

    // Per round and tree: B's percentiles with A over without A.
    const rounds = [];
    for (const t of trees) {
      for (let round = 1; round <= FAIR.rounds; round++) {
        const alone = phases.find((p) => p.tree === t.name && p.round === round && !p.withA);
        const withA = phases.find((p) => p.tree === t.name && p.round === round && p.withA);
        const ratio = (k) =>
          alone.b.latencyMs[k] && withA.b.latencyMs[k] !== null
            ? r3(withA.b.latencyMs[k] / alone.b.latencyMs[k])
            : null;
        rounds.push({
          tree: t.name,
          round,
          aloneP50: alone.b.latencyMs.p50,
          aloneP99: alone.b.latencyMs.p99,
          withAP50: withA.b.latencyMs.p50,
          withAP99: withA.b.latencyMs.p99,
          p50Ratio: ratio('p50'),
          p99Ratio: ratio('p99'),
          bMissing: withA.b.scheduled - withA.b.ok + (alone.b.scheduled - alone.b.ok),
          aStatuses: withA.a?.statuses ?? null,
          aEarly: withA.a?.early ?? null,
          nginxActive: withA.nginxActiveConnections,
          bgCores: Math.max(alone.backgroundCores, withA.backgroundCores),
        });
      }
    }
    const summary = trees.map((t) => {
      const rs = rounds.filter((r) => r.tree === t.name);
      return {
        tree: t.name,
        dist: t.dist,
        medianP99Ratio: r3(median(rs.map((r) => r.p99Ratio))),
        medianP50Ratio: r3(median(rs.map((r) => r.p50Ratio))),
        medianAloneP99: r3(median(rs.map((r) => r.aloneP99))),
        medianWithAP99: r3(median(rs.map((r) => r.withAP99))),
        /** Median p99 with A over median p99 alone: less sensitive to one stalled round. */
        p99RatioOfMedians: r3(median(rs.map((r) => r.withAP99)) / median(rs.map((r) => r.aloneP99))),
      };
    });
    const backgroundMax = Math.max(quietAtStart, ...phases.map((p) => p.backgroundCores));
    const under = summary[0];
    const result = {
      benchmark: 'airlock-gateway-fairness',
      startedAt: startedAt.toISOString(),
      wallSeconds: Math.round((Date.now() - wall0) / 1000),
      config: { ...FAIR, limits: LIMITS, sessionA: '127.0.0.1', sessionB: SESSION_B.address },
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model,
        memGiB: Math.round(os.totalmem() / 2 ** 30),
        kernel: os.release(),
        node: process.version,
        nginx: toolVersion(tools.nginx, ['-v']),
      },
      phases,
      rounds,
      summary,
      target: {
        text: "one session's slow uploads change another session's p99 by at most 10 %",
        medianP99Ratio: under.medianP99Ratio,
        met: under.medianP99Ratio !== null && under.medianP99Ratio <= 1.1,
        conclusive: backgroundMax <= NOISY_CORES,
      },
      noise: { quietAtStart, backgroundMaxCores: backgroundMax, noisy: backgroundMax > NOISY_CORES },
    };
    const resultsDir = path.join(BENCH_DIR, 'results');
    mkdirSync(resultsDir, { recursive: true });
    const file = path.join(resultsDir, `fairness-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify(result, null, 2) + '\n');

    const lines = [
      '',
      `B at ${FAIR.rate} req/s for ${FAIR.seconds} s (GET, 127.0.0.2) with/without A's ${FAIR.uploads} slow uploads (POST, 127.0.0.1, 1 byte / ${FAIR.trickleMs} ms)`,
      '',
      '| tree | round | B p50 alone | B p99 alone | B p50 with A | B p99 with A | p99 ratio | A answers | nginx conns | bg cores |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |',
      ...rounds.map(
        (r) =>
          `| ${r.tree} | ${r.round} | ${r.aloneP50} | ${r.aloneP99} | ${r.withAP50} | ${r.withAP99} | ${r.p99Ratio} | ` +
          `${JSON.stringify(r.aStatuses)}${r.aEarly ? ` (${r.aEarly} early)` : ''} | ${r.nginxActive} | ${r.bgCores} |`,
      ),
      '',
      ...summary.map(
        (s) =>
          `${s.tree}: median p99 ratio ${s.medianP99Ratio} (p50 ratio ${s.medianP50Ratio}); ` +
          `median B p99 ${s.medianAloneP99} ms alone, ${s.medianWithAP99} ms with A (ratio ${s.p99RatioOfMedians})`,
      ),
      `target (p99 ratio <= 1.10, ${under.tree}): ${result.target.met ? 'met' : 'NOT met'}` +
        (result.target.conclusive ? '' : ' (not conclusive: noisy machine)'),
      ...(backgroundMax > NOISY_CORES
        ? [
            `WARNING: other processes used up to ${backgroundMax} of the cores during the run; figures are noisy`,
          ]
        : []),
      `results: ${path.relative(ROOT, file)} (${result.wallSeconds}s)`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  process.stderr.write(`fairness bench failed: ${err.stack ?? err}\n`);
  void stopAll().then(() => process.exit(1));
});
