#!/usr/bin/env node
/**
 * What the gateway's DNS answer reuse saves (src/gateway/resolve.ts, `gateway.dnsCacheSeconds`): CPU
 * and wall time per `UpstreamResolver.resolve()` of a name that needs a lookup, with reuse off (every
 * call runs getaddrinfo on libuv's thread pool) and on (5 s), alternating, in one process. The name is
 * `localhost` (answered from /etc/hosts: no packet leaves the machine), so this is the floor of a
 * lookup; a name answered by a DNS server costs a round trip on top.
 *
 *   npm run build && node bench/dns.mjs      # a few seconds; bench/results/dns-<timestamp>.json
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (f) => pathToFileURL(path.join(root, 'dist', 'gateway', f)).href;
const { UpstreamResolver } = await import(dist('resolve.js'));
const { DestinationPolicy } = await import(dist('address.js'));

const N = Number(process.env.BENCH_DNS_CALLS ?? 5000);
const ROUNDS = Number(process.env.BENCH_DNS_ROUNDS ?? 5);
const rows = { off: [], on: [] };
for (let round = 0; round <= ROUNDS; round++) {
  for (const [name, ttlMs] of round % 2
    ? [
        ['on', 5000],
        ['off', 0],
      ]
    : [
        ['off', 0],
        ['on', 5000],
      ]) {
    const r = new UpstreamResolver(new DestinationPolicy(['127.0.0.0/8']), new Map(), undefined, { ttlMs });
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const x = await r.resolve('localhost');
      if (!x.ok) throw new Error(`localhost: ${JSON.stringify(x)}`);
    }
    const c = process.cpuUsage(c0);
    const wall = performance.now() - t0;
    // Round 0 is a warm-up.
    if (round > 0) rows[name].push({ cpuUs: (c.user + c.system) / N, wallUs: (wall * 1000) / N });
  }
}
const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const summary = Object.fromEntries(
  Object.entries(rows).map(([k, v]) => [
    k,
    { cpuUsPerResolve: med(v.map((x) => x.cpuUs)), wallUsPerResolve: med(v.map((x) => x.wallUs)), rounds: v },
  ]),
);
const out = { bench: 'dns', at: new Date().toISOString(), calls: N, rounds: ROUNDS, ...summary };
console.log(
  `reuse off: ${summary.off.cpuUsPerResolve.toFixed(2)} us CPU, ${summary.off.wallUsPerResolve.toFixed(1)} us wall per resolve; ` +
    `on: ${summary.on.cpuUsPerResolve.toFixed(2)} us CPU, ${summary.on.wallUsPerResolve.toFixed(1)} us wall`,
);
mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
const file = path.join(root, 'bench', 'results', `dns-${out.at.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify(out, null, 2));
console.log(file);
