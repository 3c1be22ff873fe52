#!/usr/bin/env node
/**
 * `airlock policy suggest` on a large audit trail, end to end through the real CLI (issue 17: at most
 * 2 s for 100,000 events on the reference machine).
 *
 *   npm run bench:suggest                 # builds, then runs this file
 *   node bench/suggest.mjs                # after `npm run build`
 *
 * Generates, with a fixed seed, an audit file of BENCH_SUGGEST_EVENTS events (default 100,000) the
 * way a learning session produces them: 4 roles, 12 hosts, REST-style paths with numeric ids, UUIDs
 * and hashes, free-text tails, GET-heavy with POST/PUT/DELETE, a few CONNECT, MCP and identity
 * failures; a policy directory with allow and deny rules that covers part of it. Then runs
 * `node dist/cli/main.js policy suggest DIR --audit FILE --json` BENCH_SUGGEST_RUNS times (default 5),
 * each a fresh process (start-up, read, parse, generalise, compile the proposal, lint, replay, tests,
 * JSON out), and reports the wall time of each run, the median and the minimum in ms, and — as a
 * baseline measured in the same run on the same machine — `node dist/cli/main.js policy check DIR`
 * (the process start-up plus loading the policy), so the figure can be read against the machine's
 * speed. No assertion: the numbers go to bench/results/suggest-<timestamp>.json and bench/README.md.
 *
 * BENCH_SUGGEST_COMPARE_CLI=/path/to/other/dist/cli/main.js also times that build (e.g. an older
 * commit, built with `tsc -p tsconfig.build.json` in a `git archive` of it) on the same trail,
 * alternating with this one run by run, and reports the ratio of the medians.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const CLI = process.env.BENCH_SUGGEST_CLI ?? path.join(ROOT, 'dist', 'cli', 'main.js');
const EVENTS = Number(process.env.BENCH_SUGGEST_EVENTS ?? 100_000);
const RUNS = Number(process.env.BENCH_SUGGEST_RUNS ?? 5);
const COMPARE = process.env.BENCH_SUGGEST_COMPARE_CLI;

/** Deterministic PRNG (mulberry32) so every run reads the same trail. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(17);
const pick = (a) => a[Math.floor(rand() * a.length)];
const hex = (n) => Array.from({ length: n }, () => Math.floor(rand() * 16).toString(16)).join('');
const uuid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;

const ROLES = ['learner', 'analyst', 'builder', 'reporter'];
const HOSTS = [
  'forum.test:3000',
  'config.test:2379',
  'git.test:8080',
  'api.github.test',
  'registry.npm.test',
  'pypi.test',
  'docs.test',
  'storage.test:9000',
  'search.test',
  'metrics.test:9090',
  'queue.test:5672',
  'kube.test:6443',
];
/** Path shapes: a function of the PRNG returning a normalised path. */
const SHAPES = [
  () => `/posts/${Math.floor(rand() * 5000)}`,
  () => `/posts/${Math.floor(rand() * 5000)}/comments`,
  () => `/users/${uuid()}`,
  () => `/users/${uuid()}/repos/${pick(['a', 'b', 'c', 'd', 'e'])}`,
  () => `/objects/${hex(40)}`,
  () => `/v3/kv/range`,
  () => `/v3/kv/put`,
  () => `/repo.git/info/refs`,
  () => `/repo.git/git-upload-pack`,
  () => `/docs/${pick(['intro', 'setup', 'api', 'faq', 'limits', 'errors', 'cli'])}/${pick(['a', 'b', 'c'])}`,
  () => `/search`,
  () => `/api/v1/namespaces/${pick(['default', 'kube-system', 'team-a'])}/pods`,
  () =>
    `/api/v1/namespaces/${pick(['default', 'kube-system'])}/pods/${pick(['web', 'db', 'cache'])}-${hex(5)}`,
  () => `/packages/${pick(['left-pad', 'lodash', 'react', 'zod', 'yaml'])}/-/${hex(6)}.tgz`,
  () => `/`,
];
/** Paths of writes: collections, and a few objects. */
const WRITE_SHAPES = [
  () => `/posts`,
  () => `/posts/${Math.floor(rand() * 40)}`,
  () => `/posts/${Math.floor(rand() * 40)}/comments`,
  () => `/v3/kv/put`,
  () => `/v3/kv/deleterange`,
  () => `/repo.git/git-upload-pack`,
  () => `/repo.git/git-receive-pack`,
  () => `/api/v1/namespaces/${pick(['default', 'team-a'])}/pods`,
  () =>
    `/users/${pick(['0b7f0a52-1c1e-4a7e-9d4f-2f3c5b6a7d8e', '5d1e7c2a-8b9f-4c3d-a2e1-0f9e8d7c6b5a'])}/keys`,
  () => `/search`,
];
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Each host serves its own API: four read shapes and two write shapes of the lists above. */
const READS_OF = HOSTS.map((_, h) => [0, 1, 2, 3].map((k) => SHAPES[(h * 4 + k) % SHAPES.length]));
const WRITES_OF = HOSTS.map((_, h) => [0, 1].map((k) => WRITE_SHAPES[(h * 2 + k) % WRITE_SHAPES.length]));
const METHODS = [
  'GET',
  'GET',
  'GET',
  'GET',
  'GET',
  'GET',
  'HEAD',
  'OPTIONS',
  'POST',
  'POST',
  'PUT',
  'DELETE',
  'PATCH',
];

function event(i) {
  const role = pick(ROLES);
  const hostPort = pick(HOSTS);
  const [host, p] = hostPort.split(':');
  const scheme = rand() < 0.3 ? 'https' : 'http';
  const port = p ? Number(p) : scheme === 'https' ? 443 : 80;
  const r = rand();
  let method = pick(METHODS);
  // Reads roam over many objects; writes go to collections and a few objects (as agents do).
  const h = HOSTS.indexOf(hostPort);
  let pth = SAFE.has(method) ? pick(READS_OF[h])() : pick(WRITES_OF[h])();
  let reason = rand() < 0.7 ? 'no_match' : 'rule_allow';
  let sessionRole = role;
  if (r < 0.01) {
    method = 'CONNECT';
    pth = '';
  } else if (r < 0.02) {
    reason = 'unknown_session';
    sessionRole = null;
  } else if (r < 0.025) reason = 'ambiguous_request';
  const e = {
    time: new Date(Date.UTC(2026, 10, 29, 10, 0, 0) + i * 50).toISOString(),
    sessionId: sessionRole ? `s-${role}-${i % 7}` : null,
    role: sessionRole,
    method,
    scheme,
    host,
    port,
    path: pth,
    decision: reason === 'rule_allow' ? 'allow' : rand() < 0.5 ? 'deny' : 'would_deny',
    rule: null,
    reason,
    status: reason === 'rule_allow' ? 200 : 403,
    durationMs: Math.round(rand() * 5000) / 1000,
    bytesOut: 0,
    bytesIn: Math.floor(rand() * 4000),
    policyVersion: 'abc123def456',
  };
  if (rand() < 0.01 && method === 'POST') {
    e.path = '/mcp';
    e.mcp = {
      endpoint: 'tools',
      batch: false,
      messages: [
        {
          method: 'tools/call',
          id: i,
          name: 'search',
          path: '/mcp/tools/call/search',
          decision: 'deny',
          rule: null,
        },
      ],
    };
  }
  return JSON.stringify(e);
}

const POLICY = `# bench policy: part of the trail allowed, some of it denied
p, analyst, forum.test:3000, /posts/*, GET, allow
p, analyst, forum.test:3000, /posts/:id/comments, POST, allow
p, analyst, docs.test, /*, GET, allow
p, builder, registry.npm.test, /packages/*, GET, allow
p, builder, git.test:8080, /repo.git/*, GET, allow
p, builder, git.test:8080, /repo.git/git-upload-pack, POST, allow
p, reporter, search.test, /search, GET, allow
p, learner, config.test:2379, /v3/kv/put, POST, deny
p, learner, forum.test:3000, /posts/:id, DELETE, deny
p, learner, kube.test:6443, /api/v1/namespaces/kube-system/*, *, deny
g, reporter, analyst
`;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * Runs the CLI once: wall time, and the CPU time (user + system) the process used, read with bash's
 * `times` (children's line) — on a loaded machine the wall time mostly measures the queue for a core.
 */
function timed(args, cli = CLI) {
  const t0 = performance.now();
  const r = spawnSync(
    'bash',
    ['-c', '"$@" > "$OUT"; s=$?; times >&2; exit $s', 'bash', process.execPath, cli, ...args],
    {
      encoding: 'utf8',
      maxBuffer: 512 * 1024 * 1024,
      env: { ...process.env, OUT: outFile },
    },
  );
  const ms = performance.now() - t0;
  const times = r.stderr.trim().split('\n').slice(-1)[0] ?? '';
  const secs = [...times.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  const cpuMs = secs.length === 2 ? (secs[0] + secs[1]) * 1000 : NaN;
  r.stdout = readFileSync(outFile, 'utf8');
  // 0 or 1 (calls blocked by deny rules) with a report; anything else (a crash exits 1 too) is a failure.
  const reported = args[1] !== 'suggest' || r.stdout.startsWith('learned from') || r.stdout.startsWith('{');
  if ((r.status !== 0 && r.status !== 1) || !reported) {
    process.stderr.write(r.stderr);
    throw new Error(`airlock ${args.join(' ')} exited ${r.status}`);
  }
  return { ms, cpuMs, stdout: r.stdout, status: r.status };
}

const work = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-suggest-'));
const outFile = path.join(work, 'out.txt');
try {
  const dir = path.join(work, 'policy');
  mkdirSync(dir);
  writeFileSync(
    path.join(dir, 'model.conf'),
    readFileSync(path.join(ROOT, 'policies', 'model.conf'), 'utf8'),
  );
  writeFileSync(path.join(dir, 'policy.csv'), POLICY);
  const audit = path.join(work, 'audit.jsonl');
  const lines = [];
  for (let i = 0; i < EVENTS; i++) lines.push(event(i));
  writeFileSync(audit, lines.join('\n') + '\n');
  const bytes = Buffer.byteLength(lines.join('\n')) + 1;

  timed(['policy', 'check', dir]); // warm the file cache and the module cache of the OS
  const baseline = [];
  for (let i = 0; i < RUNS; i++) baseline.push(timed(['policy', 'check', dir]).ms);
  const runs = [];
  const cpu = [];
  const compared = [];
  const comparedCpu = [];
  const suggest = ['policy', 'suggest', dir, '--audit', audit];
  const report = JSON.parse(timed([...suggest, '--json']).stdout);
  for (let i = 0; i < RUNS; i++) {
    // The text output a person reads (the patch, the tests, the first 100 changes of the diff).
    const r = timed(suggest);
    runs.push(r.ms);
    cpu.push(r.cpuMs);
    if (COMPARE) {
      const c = timed(suggest, COMPARE);
      compared.push(c.ms);
      comparedCpu.push(c.cpuMs);
    }
  }
  const result = {
    bench: 'policy-suggest',
    time: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? null,
    loadavg: os.loadavg(),
    events: EVENTS,
    auditBytes: bytes,
    distinctConsidered: report.considered,
    suggestedLines: report.lines?.length ?? null,
    loadavgAfter: os.loadavg(),
    suggestCpuMs: { runs: cpu.map((x) => Math.round(x)), median: Math.round(median(cpu)) },
    suggestMs: {
      runs: runs.map((x) => Math.round(x)),
      median: Math.round(median(runs)),
      min: Math.round(Math.min(...runs)),
    },
    baselinePolicyCheckMs: { runs: baseline.map((x) => Math.round(x)), median: Math.round(median(baseline)) },
    ratioToBaseline: Math.round((median(runs) / median(baseline)) * 100) / 100,
    ...(COMPARE
      ? {
          compareCli: COMPARE,
          compareMs: { runs: compared.map((x) => Math.round(x)), median: Math.round(median(compared)) },
          compareCpuMs: {
            runs: comparedCpu.map((x) => Math.round(x)),
            median: Math.round(median(comparedCpu)),
          },
          compareOverThis: Math.round((median(compared) / median(runs)) * 100) / 100,
          compareOverThisCpu: Math.round((median(comparedCpu) / median(cpu)) * 100) / 100,
        }
      : {}),
    targetMs: 2000,
  };
  const outDir = path.join(ROOT, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `suggest-${result.time.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(
    `policy suggest, ${EVENTS} events (${(bytes / 1e6).toFixed(1)} MB, ${result.suggestedLines} lines suggested): ` +
      `median ${result.suggestMs.median} ms, min ${result.suggestMs.min} ms over ${RUNS} runs ` +
      `(CPU median ${result.suggestCpuMs.median} ms) ` +
      `(policy check baseline ${result.baselinePolicyCheckMs.median} ms; ratio ${result.ratioToBaseline}); ` +
      `target <= 2000 ms` +
      (COMPARE
        ? `; ${COMPARE}: median ${result.compareMs.median} ms (${result.compareOverThis}x), ` +
          `CPU ${result.compareCpuMs.median} ms (${result.compareOverThisCpu}x)`
        : '') +
      `\n${file}\n`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
