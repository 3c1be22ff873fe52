#!/usr/bin/env node
/**
 * Soak (issue 15 section 2): a bounded long run through Airlock's gateway, loopback only.
 *
 *   npm run build && node bench/soak.mjs [--minutes 10] [--rate 1000] [--sessions 20]
 *                                        [--churn-seconds 3] [--burst-seconds 15]
 *
 * - Upstream: Debian's nginx on loopback answering `GET /payload` (as bench/run.mjs).
 * - Gateway: `startGatewayService` from dist/ in its own process (bench/gateway-child.mjs): policy
 *   dir, FileAuditSink (hash-chained audit), metrics, admin API.
 * - Sessions: `--sessions` slots, each a loopback source address 127.0.0.(10+k) with its own session
 *   and credential (the gateway checks both). Churn: every `--churn-seconds` one slot's session is
 *   deleted through the admin API (the kill switch) and a new one registered in its place, as the
 *   control plane does — sessions are created and deleted throughout.
 * - Load: open loop at `--rate` req/s spread over the slots (a slot being churned is skipped for that
 *   moment), undici pools bound to each slot's address. Every answer must be 200 with the 256-byte
 *   body; anything else is an error and counted by kind.
 * - Every 10 s: the gateway's RSS and open file descriptors (/proc), and the latency of the interval.
 * - Then a burst to saturation (`--burst-seconds`, closed loop, 64 in flight over the slots) and back
 *   to `--rate` for 20 s: zero errors and the latency back where it was.
 * - At the end the gateway is stopped (flushing its audit file): audit lines must equal the decisions
 *   the gateway counted (airlock_gateway_decisions_total) and the answers the client got.
 * Results: bench/results/soak-<time>.json and a summary on stdout. Exit code 1 when an expectation
 * (zero errors, audit lines = decisions) fails; RSS / fd figures are reported, not judged.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Agent, Pool, request } from 'undici';
import {
  BENCH_DIR,
  UPSTREAM_NAME,
  ensureTools,
  freePort,
  log,
  percentiles,
  sleep,
  startGateway,
  startNginx,
  stopAll,
  stopChild,
  toolVersion,
} from './lib.mjs';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    rate: { type: 'string', default: '1000' },
    sessions: { type: 'string', default: '20' },
    'churn-seconds': { type: 'string', default: '3' },
    'burst-seconds': { type: 'string', default: '15' },
  },
});
const num = (name, min) => {
  const v = Number(args[name]);
  if (!Number.isFinite(v) || v < min) {
    process.stderr.write(`soak: --${name} must be a number >= ${min}\n`);
    process.exit(2);
  }
  return v;
};
const MINUTES = num('minutes', 0.1);
const RATE = num('rate', 1);
const SLOTS = Math.floor(num('sessions', 1));
const CHURN_MS = num('churn-seconds', 0.1) * 1000;
const BURST_MS = num('burst-seconds', 1) * 1000;
const RECOVER_MS = 20_000;
const SAMPLE_MS = 10_000;
const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';
const BODY_BYTES = 256;

const tools = ensureTools();
const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-soak-'));
chmodSync(dir, 0o755);

/** /proc figures of a process: resident set in MiB and open descriptors. */
function procStats(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return { rssMiB: Math.round((kb / 1024) * 10) / 10, fds: readdirSync(`/proc/${pid}/fd`).length };
}

const sha = (s) => createHash('sha256').update(s).digest('hex');

let result;
try {
  const nginxPort = await freePort();
  await startNginx(tools.nginx, dir, nginxPort);
  const gw = await startGateway(dir, nginxPort);
  const host = `${UPSTREAM_NAME}:${nginxPort}`;
  const target = `http://${host}/payload`;
  const adminAgent = new Agent({ localAddress: '127.0.0.250' });
  const admin = async (method, p, body) => {
    const res = await request(`http://127.0.0.1:${gw.adminPort}${p}`, {
      method,
      dispatcher: adminAgent,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`admin ${method} ${p}: ${res.statusCode} ${text}`);
    return text;
  };

  // Slots: an address, a pool bound to it, and the session registered for it right now.
  let sessionsCreated = 0;
  let sessionsDeleted = 0;
  const newSession = async (slot) => {
    const id = `s-soak-${slot.k}-${sessionsCreated++}`;
    const cred = randomBytes(16).toString('hex');
    await admin('PUT', `/admin/sessions/${id}`, {
      id,
      role: 'bench',
      address: slot.address,
      credentialSha256: sha(cred),
      expiresAtMs: Date.now() + 24 * 3_600_000,
    });
    slot.id = id;
    slot.auth = `Basic ${Buffer.from(`${id}:${cred}`).toString('base64')}`;
  };
  const slots = [];
  for (let k = 0; k < SLOTS; k++) {
    const address = `127.0.0.${10 + k}`;
    const slot = {
      k,
      address,
      pool: new Pool(`http://127.0.0.1:${gw.proxyPort}`, { connections: 8, localAddress: address }),
      inflight: 0,
      paused: false,
    };
    await newSession(slot);
    slots.push(slot);
  }

  // Counters of the whole run.
  const errors = {};
  let sent = 0;
  let answered = 0;
  const addError = (kind) => (errors[kind] = (errors[kind] ?? 0) + 1);
  /** Latency samples (ms): `interval` is reset by each 10 s sample, `phase` by each phase. */
  const series = () => ({ a: new Float64Array(1 << 16), n: 0 });
  const interval = series();
  const phase = series();
  const push = (s, ms) => {
    if (s.n === s.a.length) {
      const bigger = new Float64Array(s.a.length * 2);
      bigger.set(s.a);
      s.a = bigger;
    }
    s.a[s.n++] = ms;
  };
  const record = (ms) => {
    push(interval, ms);
    push(phase, ms);
  };
  const take = (s) => {
    const p = percentiles(s.a, s.n);
    s.n = 0;
    return p;
  };
  const takeLatency = () => take(interval);
  const takePhase = () => {
    interval.n = 0;
    return take(phase);
  };

  let rr = 0;
  const pick = () => {
    for (let n = 0; n < slots.length; n++) {
      const s = slots[rr++ % slots.length];
      if (!s.paused) return s;
    }
    return null;
  };
  const one = async () => {
    const slot = pick();
    if (!slot) return addError('no_slot');
    slot.inflight++;
    sent++;
    const t0 = performance.now();
    try {
      const res = await slot.pool.request({
        method: 'GET',
        path: target,
        headers: { host, 'proxy-authorization': slot.auth },
      });
      const body = await res.body.arrayBuffer();
      answered++;
      if (res.statusCode !== 200) addError(`status_${res.statusCode}`);
      else if (body.byteLength !== BODY_BYTES) addError('short_body');
      else record(performance.now() - t0);
    } catch (err) {
      addError(`exception_${err.code ?? err.name}`);
    } finally {
      slot.inflight--;
    }
  };

  /** Open loop at `rate` req/s for `ms`: requests at fixed instants, whatever earlier answers did. */
  const openLoop = async (rate, ms, onSample) => {
    const start = performance.now();
    let due = 0;
    let nextSample = start + SAMPLE_MS;
    const pending = new Set();
    while (performance.now() - start < ms) {
      const should = Math.floor(((performance.now() - start) / 1000) * rate);
      while (due < should) {
        due++;
        const p = one();
        pending.add(p);
        void p.finally(() => pending.delete(p));
      }
      if (onSample && performance.now() >= nextSample) {
        nextSample += SAMPLE_MS;
        onSample();
      }
      await sleep(2);
    }
    await Promise.all(pending);
  };

  /** Closed loop: `concurrency` requests in flight for `ms`; @returns requests completed. */
  const closedLoop = async (concurrency, ms) => {
    const end = performance.now() + ms;
    let done = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < end) {
          await one();
          done++;
        }
      }),
    );
    return done;
  };

  // Churn: one slot at a time, paused (its in-flight calls finish), session deleted, new one added.
  let churning = true;
  const churn = (async () => {
    let k = 0;
    while (churning) {
      await sleep(CHURN_MS);
      if (!churning) break;
      const slot = slots[k++ % slots.length];
      slot.paused = true;
      while (slot.inflight > 0) await sleep(1);
      await admin('DELETE', `/admin/sessions/${slot.id}`);
      sessionsDeleted++;
      await newSession(slot);
      slot.paused = false;
    }
  })();

  const samples = [];
  const sample = (phase) => {
    const s = {
      phase,
      atS: Math.round((Date.now() - t0) / 1000),
      ...procStats(gw.child.pid),
      latencyMs: takeLatency(),
    };
    samples.push(s);
    log(
      `${phase} t=${s.atS}s rss=${s.rssMiB} MiB fds=${s.fds} p50=${s.latencyMs.p50} p99=${s.latencyMs.p99} ms ` +
        `sent=${sent} errors=${JSON.stringify(errors)}`,
    );
  };

  const t0 = Date.now();
  // A short warm-up (JIT, pools), then the start figures.
  await openLoop(RATE, 5_000);
  takePhase();
  const startStats = procStats(gw.child.pid);
  samples.push({ phase: 'start', atS: Math.round((Date.now() - t0) / 1000), ...startStats, latencyMs: null });
  log(
    `start rss=${startStats.rssMiB} MiB fds=${startStats.fds}; soak ${MINUTES} min at ${RATE} req/s over ${SLOTS} sessions`,
  );
  const soakSent0 = sent;
  await openLoop(RATE, MINUTES * 60_000, () => sample('soak'));
  const soakSent = sent - soakSent0;
  const endStats = procStats(gw.child.pid);
  const soakLatency = takePhase();
  samples.push({
    phase: 'soak-end',
    atS: Math.round((Date.now() - t0) / 1000),
    ...endStats,
    latencyMs: soakLatency,
  });

  // Burst to saturation, then back to the rate.
  const b0 = performance.now();
  const burstDone = await closedLoop(64, BURST_MS);
  const burstRate = Math.round(burstDone / ((performance.now() - b0) / 1000));
  const burstLatency = takePhase();
  log(`burst: ${burstRate} req/s (closed loop, 64 in flight), p99 ${burstLatency.p99} ms`);
  await openLoop(RATE, RECOVER_MS);
  const recoverLatency = takePhase();
  const afterBurst = procStats(gw.child.pid);
  churning = false;
  await churn;

  // Decisions counted by the gateway, then stop it (flushes the audit file) and count the lines.
  const metrics = await admin('GET', '/metrics');
  let decisions = 0;
  for (const m of metrics.matchAll(/^airlock_gateway_decisions_total\{[^}]*\} (\d+)/gm))
    decisions += Number(m[1]);
  await stopChild(gw.child);
  const auditLines = readFileSync(gw.auditFile, 'utf8').split('\n').filter(Boolean).length;

  const totalErrors = Object.values(errors).reduce((a, b) => a + b, 0);
  result = {
    when: new Date().toISOString(),
    machine: { cpus: os.cpus().length, node: process.version, nginx: toolVersion(tools.nginx, ['-v']) },
    params: {
      minutes: MINUTES,
      rate: RATE,
      sessions: SLOTS,
      churnSeconds: CHURN_MS / 1000,
      burstSeconds: BURST_MS / 1000,
    },
    requests: { sent, answered, soakPhase: soakSent, achievedRate: Math.round(soakSent / (MINUTES * 60)) },
    errors,
    totalErrors,
    sessions: { created: sessionsCreated, deleted: sessionsDeleted },
    gateway: {
      start: startStats,
      soakEnd: endStats,
      afterBurst,
      rssGrowthMiB: Math.round((endStats.rssMiB - startStats.rssMiB) * 10) / 10,
      fdGrowth: endStats.fds - startStats.fds,
    },
    latencyMs: { soak: soakLatency, burst: burstLatency, afterBurst: recoverLatency },
    burst: { reqPerSec: burstRate, seconds: BURST_MS / 1000, concurrency: 64 },
    audit: {
      lines: auditLines,
      decisions,
      answered,
      equal: auditLines === decisions && decisions === answered,
    },
    samples,
  };
  const ok = totalErrors === 0 && result.audit.equal;
  result.ok = ok;
  mkdirSync(path.join(BENCH_DIR, 'results'), { recursive: true });
  const out = path.join(BENCH_DIR, 'results', `soak-${result.when.replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(
    `soak ${MINUTES} min at ${RATE} req/s, ${SLOTS} sessions (${sessionsCreated} created, ${sessionsDeleted} deleted): ` +
      `${sent} requests, ${totalErrors} errors ${JSON.stringify(errors)}\n` +
      `gateway RSS ${startStats.rssMiB} -> ${endStats.rssMiB} MiB, fds ${startStats.fds} -> ${endStats.fds}; ` +
      `latency p50/p99 ${soakLatency.p50}/${soakLatency.p99} ms\n` +
      `burst ${burstRate} req/s (p99 ${burstLatency.p99} ms), back at ${RATE} req/s: p50/p99 ${recoverLatency.p50}/${recoverLatency.p99} ms\n` +
      `audit lines ${auditLines}, decisions ${decisions}, answers ${answered}: ${result.audit.equal ? 'equal' : 'NOT EQUAL'}\n` +
      `${ok ? 'OK' : 'FAILED'} -> ${path.relative(process.cwd(), out)}\n`,
  );
  for (const s of slots) await s.pool.close();
  await adminAgent.close();
  process.exitCode = ok ? 0 : 1;
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}
