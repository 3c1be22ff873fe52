#!/usr/bin/env node
/**
 * Policy decisions as policies grow: Airlock's compiled `decide()` (what the gateway calls per
 * request) and Casbin's `enforce()` on the same model.conf + policy.csv (Casbin 5.51 with Airlock's
 * safe matchers registered, src/policy/casbin.ts), at 100, 10,000 and 100,000 `p` lines, in one run.
 *
 *   npm run bench:policy            # builds, then runs this file (~1.5 minutes)
 *   node --expose-gc bench/policy/run.mjs   # after `npm run build` (--expose-gc: GC between phases)
 *
 * Per size it reports:
 * - load + compile: `loadPolicyDir()` on a temp directory (read model.conf + policy.csv, validate
 *   the model, parse and validate every line, build the index), median of 3; and Casbin's
 *   `newEnforcer` on the same text, once;
 * - Airlock decide: 200,000 requests (from bench/policy/gen.mjs: 80% aimed at rules, 20% misses),
 *   each rebuilt from freshly allocated strings (as the gateway's normalisation hands them over) and
 *   timed on its own with `performance.now()` after a warm-up; p50/p99/p99.9/max in µs (the timer's
 *   own cost, measured and printed, is included), and decisions/s from timed batches of 1,000;
 * - Casbin: `await enforcer.enforce(...)` and then `enforcer.enforceSync(...)` on the same requests
 *   for about 4 s each per size (at least 3 calls), p50/p99 and decisions/s;
 * - agreement: every Casbin answer is compared with Airlock's (a disagreement aborts the run).
 *
 * Writes bench/results/policy-scale-<timestamp>.json (gitignored) and prints a table.
 * Environment: BENCH_POLICY_SIZES=100,10000 to pick sizes; BENCH_POLICY_CASBIN_MS per-size budget.
 */
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makePolicy, makeRequests } from './gen.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const dist = (p) => path.join(ROOT, 'dist', p);
let mods;
try {
  mods = {
    load: await import(dist('policy/load.js')),
    casbin: await import(dist('policy/casbin.js')),
  };
} catch (err) {
  process.stderr.write(`bench/policy: cannot load dist/ (run "npm run build" first): ${err.message}\n`);
  process.exit(2);
}
const { loadPolicyDir } = mods.load;
const { newCasbinEnforcer } = mods.casbin;
const modelText = readFileSync(path.join(ROOT, 'policies', 'model.conf'), 'utf8');

const SIZES = (process.env.BENCH_POLICY_SIZES ?? '100,10000,100000').split(',').map(Number);
const CASBIN_MS = Number(process.env.BENCH_POLICY_CASBIN_MS ?? 4000);
const DECISIONS = 200_000;

function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}
const round = (x, d = 3) => Math.round(x * 10 ** d) / 10 ** d;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const gc = () => globalThis.gc?.();
/** A freshly allocated copy of a string (not the generator's, possibly cold, object). */
const copy = (s) => Buffer.from(s, 'latin1').toString('latin1');

/** p50 of an empty timed region: the timer's own cost, included in every per-call figure. */
function timerOverheadUs() {
  const lat = new Float64Array(200_000);
  for (let i = 0; i < lat.length; i++) {
    const a = performance.now();
    lat[i] = (performance.now() - a) * 1000;
  }
  lat.sort();
  return round(percentile(lat, 0.5));
}
const timerUs = timerOverheadUs();

const results = [];
for (const n of SIZES) {
  const pol = makePolicy(n, n);
  const reqs = makeRequests(pol, DECISIONS, n);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-policy-'));
  writeFileSync(path.join(dir, 'model.conf'), modelText);
  writeFileSync(path.join(dir, 'policy.csv'), pol.text);

  // Load + compile.
  const loads = [];
  let compiled;
  for (let i = 0; i < 3; i++) {
    gc();
    const t0 = performance.now();
    compiled = await loadPolicyDir(dir);
    loads.push(performance.now() - t0);
  }
  rmSync(dir, { recursive: true, force: true });

  // Airlock decide. Each request is rebuilt from freshly allocated strings right before it is decided
  // (untimed), as the gateway's normalisation hands decide() new strings; the index itself stays cold
  // for uniformly random roles and hosts over the whole policy.
  const fresh = (r) => ({
    role: copy(r.role),
    host: copy(r.host),
    path: copy(r.path),
    method: copy(r.method),
  });
  let allowed = 0;
  for (const r of reqs) if (compiled.decide(fresh(r)).allowed) allowed++; // warm-up
  let sink = 0;
  let busyMs = 0;
  const CHUNK = 1000;
  for (let k = 0; k < 2; k++) {
    for (let i = 0; i < reqs.length; i += CHUNK) {
      const batch = reqs.slice(i, i + CHUNK).map(fresh);
      const t0 = performance.now();
      for (const r of batch) sink += compiled.decide(r).allowed ? 1 : 0;
      busyMs += performance.now() - t0;
    }
  }
  gc();
  const lat = new Float64Array(reqs.length);
  for (let i = 0; i < reqs.length; i++) {
    const r = fresh(reqs[i]);
    const a = performance.now();
    const d = compiled.decide(r);
    lat[i] = (performance.now() - a) * 1000;
    sink += d.allowed ? 1 : 0;
  }
  lat.sort();
  const airlock = {
    decisions: reqs.length,
    perSecond: Math.round((2 * reqs.length) / (busyMs / 1000)),
    p50us: round(percentile(lat, 0.5)),
    p99us: round(percentile(lat, 0.99)),
    p999us: round(percentile(lat, 0.999)),
    maxUs: round(lat[lat.length - 1]),
    allowedShare: round(allowed / reqs.length, 3),
  };

  // Casbin: the same requests (spread over the list), enforce() then enforceSync(), each for about
  // CASBIN_MS (at least 3 calls); every answer must equal Airlock's.
  gc();
  const t0 = performance.now();
  const enforcer = await newCasbinEnforcer(modelText, pol.text);
  const casbinLoadMs = performance.now() - t0;
  const measure = async (call) => {
    const out = [];
    const start = performance.now();
    for (let i = 0; (i < 3 || performance.now() - start < CASBIN_MS) && i < reqs.length; i++) {
      const r = reqs[(i * 7919) % reqs.length];
      const a = performance.now();
      const ok = await call(r);
      out.push((performance.now() - a) * 1000);
      const ours = compiled.decide(r).allowed;
      if (ok !== ours)
        throw new Error(`disagreement at ${n} rules on ${JSON.stringify(r)}: airlock ${ours}, casbin ${ok}`);
    }
    const ms = performance.now() - start;
    out.sort((x, y) => x - y);
    return {
      calls: out.length,
      perSecond: round(out.length / (ms / 1000), 1),
      p50us: round(percentile(out, 0.5), 0),
      p99us: round(percentile(out, 0.99), 0),
    };
  };
  const casbin = {
    loadMs: round(casbinLoadMs, 0),
    enforce: await measure((r) => enforcer.enforce(r.role, r.host, r.path, r.method)),
    enforceSync: await measure((r) => enforcer.enforceSync(r.role, r.host, r.path, r.method)),
  };
  results.push({
    rules: n,
    pLines: pol.pLines,
    gLines: pol.gLines,
    roles: pol.roles.length + 1,
    airlock: {
      loadCompileMs: { median: round(median(loads), 1), runs: loads.map((x) => round(x, 1)) },
      ...airlock,
    },
    casbin,
    agreedOn: casbin.enforce.calls + casbin.enforceSync.calls,
    speedupP50: Math.round(casbin.enforceSync.p50us / airlock.p50us),
    sink,
  });
  process.stderr.write(`bench/policy: ${n} rules done\n`);
}

const startedAt = new Date();
const cpu = os.cpus()[0]?.model ?? 'unknown';
mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
const file = path.join(
  ROOT,
  'bench',
  'results',
  `policy-scale-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`,
);
writeFileSync(
  file,
  JSON.stringify(
    {
      startedAt: startedAt.toISOString(),
      node: process.version,
      cpu,
      cores: os.cpus().length,
      loadAverage: os.loadavg(),
      timerOverheadUs: timerUs,
      results,
    },
    null,
    2,
  ) + '\n',
);

const head = [
  'p lines',
  'load+compile ms',
  'decide/s',
  'p50 µs',
  'p99 µs',
  'p99.9 µs',
  'casbin load ms',
  'enforce p50 µs',
  'enforceSync/s',
  'p50 µs',
  'p99 µs',
];
const rows = results.map((r) => [
  r.rules.toLocaleString('en-US'),
  String(r.airlock.loadCompileMs.median),
  r.airlock.perSecond.toLocaleString('en-US'),
  String(r.airlock.p50us),
  String(r.airlock.p99us),
  String(r.airlock.p999us),
  r.casbin.loadMs.toLocaleString('en-US'),
  r.casbin.enforce.p50us.toLocaleString('en-US'),
  String(r.casbin.enforceSync.perSecond),
  r.casbin.enforceSync.p50us.toLocaleString('en-US'),
  r.casbin.enforceSync.p99us.toLocaleString('en-US'),
]);
const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const fmt = (c) => c.map((x, i) => x.padStart(w[i])).join('  ');
process.stdout.write(
  [
    '',
    `node ${process.version}, ${cpu} x${os.cpus().length}`,
    `load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(
        ' ',
      )} (the figures are only as quiet as the machine); per-call figures include the timer's own ${timerUs} µs`,
    fmt(head),
    fmt(w.map((x) => '-'.repeat(x))),
    ...rows.map(fmt),
    '',
    `results: ${path.relative(ROOT, file)}`,
    '',
  ].join('\n'),
);
