#!/usr/bin/env node
/**
 * The gateway's memory per session, without Docker and without GC noise (companion of
 * bench/density.mjs; not a test): the gateway (startGatewayService from dist/, the code behind
 * `airlock gateway`) runs in this process, started with --expose-gc. Sessions are registered through
 * its admin API (PUT /admin/sessions/{id}, as the control plane does), each at its own loopback source
 * address (127.1.x.y), and each makes one allowed call through the proxy (GET /posts/1 on json-server,
 * from its own address, with its credential) so its per-session state (pools, limits, audit) exists.
 * At 0, 50, 200 and DENSITY_GATEWAY_MAX (1000) sessions: two full GCs, then process.memoryUsage()
 * (heapUsed, external, arrayBuffers, rss); per-session deltas in KB against 0. Then every session is
 * revoked (DELETE /admin/sessions/{id}) and the memory measured once more.
 *
 *   npm run build && node --expose-gc bench/density-gateway.mjs
 *
 * Loopback only; writes bench/results/density-gateway-<timestamp>.json and prints a table.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { fetch } from 'undici';
import { BENCH_DIR, ROOT, env, freePort, log, sleep, startChild, stopChild } from './lib.mjs';

if (typeof globalThis.gc !== 'function') {
  log('run with node --expose-gc');
  process.exit(2);
}
const MAX = Math.min(env('DENSITY_GATEWAY_MAX', 1000), 4000);
const LEVELS = [...new Set([0, 50, 200, MAX].filter((n) => n <= MAX))];
const TOKEN = 'density-gateway-admin-token-0123456789';
const r1 = (x) => Math.round(x * 10) / 10;

const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-density-gw-'));
const forumPort = await freePort();
const policyDir = path.join(dir, 'policy');
mkdirSync(policyDir);
writeFileSync(path.join(policyDir, 'model.conf'), readFileSync(path.join(ROOT, 'policies', 'model.conf')));
writeFileSync(path.join(policyDir, 'policy.csv'), `p, analyst, forum.test:${forumPort}, /*, GET, allow\n`);
const db = path.join(dir, 'forum.json');
writeFileSync(db, JSON.stringify({ posts: [{ id: 1, title: 'hello' }], comments: [] }));
const require = createRequire(import.meta.url);
const jsonServer = startChild('json-server', process.execPath, [
  path.join(path.dirname(require.resolve('json-server/package.json')), 'lib/cli/bin.js'),
  '--host',
  '127.0.0.1',
  '--port',
  String(forumPort),
  '--quiet',
  db,
]);
for (let i = 0; ; i++) {
  const ok = await fetch(`http://127.0.0.1:${forumPort}/posts/1`).then(
    (r) => r.ok,
    () => false,
  );
  if (ok) break;
  if (i > 100) throw new Error(`json-server did not start: ${jsonServer.stderrText}`);
  await sleep(200);
}

const { startGatewayService } = await import(pathToFileURL(path.join(ROOT, 'dist/gateway/service.js')).href);
const gw = await startGatewayService(
  {
    port: 0,
    adminPort: 0,
    listenHost: '127.0.0.1',
    policyDir,
    auditFile: path.join(dir, 'audit', 'audit.jsonl'),
    auditStdout: false,
    allowPrivateCidrs: ['127.0.0.0/8'],
    hostAliases: { 'forum.test': '127.0.0.1' },
  },
  TOKEN,
);
const admin = `http://127.0.0.1:${gw.adminPort}`;
const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

const addressOf = (i) => `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`;
const credOf = (i) => `density-credential-${i}-0123456789abcdef`;
const idOf = (i) => `s-${i.toString(16).padStart(16, '0')}`;

async function register(i) {
  const res = await fetch(`${admin}/admin/sessions/${idOf(i)}`, {
    method: 'PUT',
    headers,
    body: JSON.stringify({
      id: idOf(i),
      role: 'analyst',
      address: addressOf(i),
      credentialSha256: createHash('sha256').update(credOf(i)).digest('hex'),
      expiresAtMs: Date.now() + 3_600_000,
    }),
  });
  if (res.status !== 204) throw new Error(`register ${idOf(i)}: ${res.status} ${await res.text()}`);
}

async function revoke(i) {
  const res = await fetch(`${admin}/admin/sessions/${idOf(i)}`, { method: 'DELETE', headers });
  if (!res.ok) throw new Error(`revoke ${idOf(i)}: ${res.status}`);
}

/** One allowed call from the session's own address; resolves with the status. */
function call(i) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: gw.proxyPort,
      localAddress: addressOf(i),
      method: 'GET',
      path: `http://forum.test:${forumPort}/posts/1`,
      agent: false,
      headers: {
        host: `forum.test:${forumPort}`,
        connection: 'close',
        'proxy-authorization': `Basic ${Buffer.from(`${idOf(i)}:${credOf(i)}`).toString('base64')}`,
      },
    });
    req.once('error', reject);
    req.once('response', (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode));
    });
    req.end();
  });
}

async function memory() {
  await sleep(500);
  globalThis.gc();
  await sleep(100);
  globalThis.gc();
  const m = process.memoryUsage();
  const kb = (b) => Math.round(b / 1024);
  return {
    heapUsedKB: kb(m.heapUsed),
    externalKB: kb(m.external),
    arrayBuffersKB: kb(m.arrayBuffers),
    rssKB: kb(m.rss),
  };
}

let n = 0;
let zero = null;
const report = {
  bench: 'density-gateway',
  time: new Date().toISOString(),
  node: process.version,
  levels: [],
};
try {
  // Warm-up: every code path once (register, call, revoke) before the 0 level.
  for (let i = 0; i < 3; i++) {
    const w = MAX + 10 + i;
    await register(w);
    if ((await call(w)) !== 200) throw new Error('warm-up call not allowed');
    await revoke(w);
  }
  for (const level of LEVELS) {
    for (; n < level; n++) {
      await register(n);
      const status = await call(n);
      if (status !== 200) throw new Error(`session ${n}: call answered ${status}`);
    }
    const m = await memory();
    zero ??= m;
    const per = (k) => (level > 0 ? r1((m[k] - zero[k]) / level) : null);
    report.levels.push({
      sessions: level,
      gatewaySessions: gw.sessions.size,
      ...m,
      perSessionKB: { heapUsed: per('heapUsedKB'), external: per('externalKB'), rss: per('rssKB') },
    });
    log(`${level} sessions: heapUsed ${m.heapUsedKB} KB, rss ${m.rssKB} KB`);
  }
  // Idle: the gateway closes a session's upstream pools after 30 s without calls (swept every 10 s).
  log('waiting 42 s for the idle pools to close');
  await sleep(42_000);
  const idle = await memory();
  report.idleAtMax = {
    sessions: n,
    ...idle,
    perSessionKB: {
      heapUsed: r1((idle.heapUsedKB - zero.heapUsedKB) / n),
      rss: r1((idle.rssKB - zero.rssKB) / n),
    },
  };
  for (let i = 0; i < n; i++) await revoke(i);
  await sleep(11_000); // one sweep: pools of ended sessions are destroyed
  report.afterRevoke = { gatewaySessions: gw.sessions.size, ...(await memory()) };
} finally {
  await gw.close();
  await stopChild(jsonServer);
  rmSync(dir, { recursive: true, force: true });
}

mkdirSync(path.join(BENCH_DIR, 'results'), { recursive: true });
const file = path.join(BENCH_DIR, 'results', `density-gateway-${report.time.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
console.log('| sessions | heapUsed MB | KB/session | external KB/session | rss MB | rss KB/session |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: |');
for (const l of report.levels)
  console.log(
    `| ${l.sessions} | ${r1(l.heapUsedKB / 1024)} | ${l.perSessionKB.heapUsed ?? '-'} | ${l.perSessionKB.external ?? '-'} | ${r1(l.rssKB / 1024)} | ${l.perSessionKB.rss ?? '-'} |`,
  );
const d = report.idleAtMax;
console.log(
  `${d.sessions} sessions idle (pools closed): heapUsed ${r1(d.heapUsedKB / 1024)} MB (${d.perSessionKB.heapUsed} KB/session), rss ${r1(d.rssKB / 1024)} MB (${d.perSessionKB.rss} KB/session)`,
);
const a = report.afterRevoke;
console.log(
  `after revoking all: ${a.gatewaySessions} sessions, heapUsed ${r1(a.heapUsedKB / 1024)} MB, rss ${r1(a.rssKB / 1024)} MB`,
);
console.log(`wrote ${path.relative(ROOT, file)}`);
process.exit(0);
