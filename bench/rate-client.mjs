/**
 * Open-loop, fixed-rate HTTP load generator with exact percentiles (bench/README.md says why not
 * autocannon). Runs in its own process; prints one JSON object on stdout.
 *
 * argv[2]: JSON {origin, path, headers, rate, warmupMs, durationMs, connections, expectBytes, samples,
 *               localAddress?, waitAfterWarmup?}
 *   origin: where TCP goes (nginx for the direct path, the proxy otherwise)
 *   path:   request target (`/payload` direct, `http://upstream.test:PORT/payload` through a proxy)
 *   localAddress: source address of the connections (e.g. 127.0.0.2: another session of the gateway)
 *   waitAfterWarmup: after the warm-up, print `warm` on stdout and measure only once a line arrives
 *     on stdin (bench/fairness.mjs starts its other load in between)
 *
 * Requests are scheduled at fixed instants t0 + i/rate whatever the previous answers did (no
 * coordinated omission at the sender). Each request records
 *   - latency: from the moment it was actually written to the pool until its whole body arrived;
 *   - corrected latency: from its scheduled instant (adds the sender's own timer lag; what a
 *     caller that wanted to send at that instant would see).
 */
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { percentiles } from './lib.mjs';

const o = JSON.parse(process.argv[2]);
const interval = 1000 / o.rate;
const pool = new Pool(o.origin, {
  connections: o.connections,
  pipelining: 1,
  keepAliveTimeout: 30_000,
  ...(o.localAddress ? { localAddress: o.localAddress } : {}),
});

/** Runs one phase at the fixed rate; resolves with its samples (ms). */
function phase(durationMs) {
  const total = Math.round((durationMs / 1000) * o.rate);
  const lat = new Float64Array(total);
  const corr = new Float64Array(total);
  const lag = new Float64Array(total);
  let sent = 0;
  let done = 0;
  let ok = 0;
  let errors = 0;
  let badStatus = 0;
  return new Promise((resolve) => {
    const t0 = performance.now() + 5;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(guard);
      resolve({
        total,
        sent,
        done,
        ok,
        errors,
        badStatus,
        lat,
        corr,
        lag,
        elapsedMs: performance.now() - t0,
      });
    };
    // Bound: stop waiting for stragglers 5 s after the last scheduled send.
    const guard = setTimeout(finish, durationMs + 5_000);
    const fire = (intended) => {
      const start = performance.now();
      lag[sent] = start - intended;
      sent++;
      pool
        .request({ path: o.path, method: 'GET', headers: o.headers })
        .then(async (res) => {
          const body = Buffer.from(await res.body.arrayBuffer());
          const end = performance.now();
          if (res.statusCode !== 200 || (o.expectBytes && body.length !== o.expectBytes)) badStatus++;
          else {
            lat[ok] = end - start;
            corr[ok] = end - intended;
            ok++;
          }
        })
        .catch(() => {
          errors++;
        })
        .finally(() => {
          done++;
          if (sent === total && done === total) finish();
        });
    };
    const tick = () => {
      const now = performance.now();
      while (sent < total && t0 + sent * interval <= now) fire(t0 + sent * interval);
      if (sent < total) setTimeout(tick, Math.max(0, t0 + sent * interval - performance.now()));
    };
    setTimeout(tick, 5);
  });
}

await phase(o.warmupMs);
if (o.waitAfterWarmup) {
  process.stdout.write('warm\n');
  await new Promise((resolve) => {
    const parentGone = () => process.exit(1);
    process.stdin.once('end', parentGone);
    process.stdin.once('data', () => {
      process.stdin.off('end', parentGone);
      process.stdin.destroy();
      resolve();
    });
  });
}
const r = await phase(o.durationMs);
const out = {
  rate: o.rate,
  scheduled: r.total,
  sent: r.sent,
  ok: r.ok,
  errors: r.errors,
  badStatus: r.badStatus,
  achievedRate: Math.round((r.sent / r.elapsedMs) * 1000 * 10) / 10,
  latencyMs: percentiles(r.lat, r.ok),
  correctedLatencyMs: percentiles(r.corr, r.ok),
  sendLagMs: percentiles(r.lag, r.sent),
};
// Raw samples (ms, µs resolution) so the caller can pool several rounds into one distribution.
if (o.samples) {
  const us = (a, n) => Array.from(a.subarray(0, n), (x) => Math.round(x * 1000) / 1000);
  out.samples = { latencyMs: us(r.lat, r.ok), correctedLatencyMs: us(r.corr, r.ok) };
}
await pool.close();
process.stdout.write(JSON.stringify(out) + '\n');
