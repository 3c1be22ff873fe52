/**
 * The Airlock gateway for the benchmark, in its own process (so it never shares an event loop with
 * the load generator). It runs the same code as `airlock gateway` (startGatewayService from dist/):
 * policy store watching a real policy dir, session table, FileAuditSink + metrics sink, admin API.
 *
 * Input: env BENCH_GATEWAY_CONFIG (GatewayServiceConfig JSON) and BENCH_SESSION (GatewaySession JSON).
 * Output: one JSON line on stdout when ready: {proxyPort, adminPort, policyVersion}.
 * Stops on SIGTERM/SIGINT (flushes the audit file) or when stdin closes (parent died).
 */
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// BENCH_DIST: another compiled tree (a patched scratch copy) to compare against ./dist.
const dist = process.env.BENCH_DIST
  ? path.resolve(process.env.BENCH_DIST)
  : path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const { startGatewayService } = await import(pathToFileURL(path.join(dist, 'gateway', 'service.js')).href);

const cfg = JSON.parse(process.env.BENCH_GATEWAY_CONFIG ?? '');
const session = JSON.parse(process.env.BENCH_SESSION ?? '');
const gw = await startGatewayService(cfg, 'bench-admin-token-0123456789abcdef');
if (!gw.policy.current()) {
  process.stderr.write(`bench gateway: no valid policy: ${gw.policy.lastError()}\n`);
  process.exit(2);
}
gw.sessions.upsert(session);
process.stdout.write(
  JSON.stringify({
    proxyPort: gw.proxyPort,
    adminPort: gw.adminPort,
    policyVersion: gw.policy.current().version,
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
process.stdin.resume();
