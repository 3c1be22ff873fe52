/**
 * The Airlock gateway for the benchmark, in its own process (so it never shares an event loop with
 * the load generator). It runs the same code as `airlock gateway` (startGatewayService from dist/):
 * policy store watching a real policy dir, session table, FileAuditSink + metrics sink, admin API.
 *
 * Input: env BENCH_GATEWAY_CONFIG (GatewayServiceConfig JSON) and BENCH_SESSION (GatewaySession JSON);
 * optionally BENCH_SESSIONS, a JSON array of more GatewaySessions (other source addresses).
 * With `workers` > 1 in the config it runs the multi-worker gateway (primary + workers, all children of
 * this process, so the bench's process-tree CPU accounting covers them).
 * Output: one JSON line on stdout when ready: {proxyPort, adminPort, policyVersion}.
 * Then, for each line "cpu" written to its stdin, a JSON line {cpu: {user, system}, eld: {p50Ms, p99Ms,
 * maxMs}}: process.cpuUsage() in µs (this process only, not a multi-worker gateway's workers) and the
 * event loop delay since the previous query.
 * Stops on SIGTERM/SIGINT (flushes the audit file) or when stdin closes (parent died).
 */
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

// BENCH_DIST: another compiled tree (a patched scratch copy) to compare against ./dist.
const dist = process.env.BENCH_DIST
  ? path.resolve(process.env.BENCH_DIST)
  : path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const { startGatewayService } = await import(pathToFileURL(path.join(dist, 'gateway', 'service.js')).href);

const cfg = JSON.parse(process.env.BENCH_GATEWAY_CONFIG ?? '');
const session = JSON.parse(process.env.BENCH_SESSION ?? '');
const moreSessions = process.env.BENCH_SESSIONS ? JSON.parse(process.env.BENCH_SESSIONS) : [];
const token = 'bench-admin-token-0123456789abcdef';
const { fetch } = globalThis;
let gw;
let policyVersion;
if ((cfg.workers ?? 1) > 1) {
  // gateway.workers > 1: what `airlock gateway` runs (src/gateway/cluster.ts); the session goes in
  // through the admin API, which fans it out to every worker.
  const { startGatewayCluster } = await import(pathToFileURL(path.join(dist, 'gateway', 'cluster.js')).href);
  gw = await startGatewayCluster(cfg, token, { workers: cfg.workers });
  const admin = `http://127.0.0.1:${gw.adminPort}`;
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  // Status first: once the session (at 127.0.0.1) is registered, the admin API refuses this address.
  const status = await (await fetch(`${admin}/admin/status`, { headers })).json();
  // The other sessions (other addresses) first, for the same reason.
  for (const s of [...moreSessions, session]) {
    const put = await fetch(`${admin}/admin/sessions/${s.id}`, {
      method: 'PUT',
      headers,
      body: JSON.stringify(s),
    });
    if (put.status !== 204 || !status.policyVersion) {
      process.stderr.write(`bench gateway: register ${put.status}, policy ${status.policyError}\n`);
      process.exit(2);
    }
  }
  policyVersion = status.policyVersion;
} else {
  gw = await startGatewayService(cfg, token);
  if (!gw.policy.current()) {
    process.stderr.write(`bench gateway: no valid policy: ${gw.policy.lastError()}\n`);
    process.exit(2);
  }
  for (const s of [...moreSessions, session]) gw.sessions.upsert(s);
  policyVersion = gw.policy.current().version;
}
process.stdout.write(
  JSON.stringify({
    proxyPort: gw.proxyPort,
    adminPort: gw.adminPort,
    policyVersion,
    pid: process.pid,
  }) + '\n',
);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  void gw.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
process.stdin.on('end', stop);
// A line "cpu" on stdin: this process's CPU time so far (process.cpuUsage(), µs) and its event loop's
// delay since the previous query (p50/p99/max ms; 1 ms sampling) as one JSON line.
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();
process.stdin.on('data', (d) => {
  if (!d.toString().includes('cpu')) return;
  const ms = (ns) => Math.round(ns / 1e3) / 1e3;
  const eld = {
    p50Ms: ms(loopDelay.percentile(50)),
    p99Ms: ms(loopDelay.percentile(99)),
    maxMs: ms(loopDelay.max),
  };
  loopDelay.reset();
  process.stdout.write(JSON.stringify({ cpu: process.cpuUsage(), eld }) + '\n');
});
process.stdin.resume();
