/**
 * The isolation self-test at session start (issue 13 item 5; docs/security.md "Isolation self-test")
 * on the real Docker engine with the real images: a normal session passes it before it is reported
 * running; a sandbox that can reach this machine is refused with 503 AIRLOCK_ISOLATION_FAILED and
 * nothing of it is left behind. Isolation is broken only for the test's own objects: its sandbox is
 * also attached to an extra `--internal` network the test creates (Docker 20.10 lets such a network
 * reach the host through its bridge address: DESIGN.md property 1), removed in `finally`.
 * Traffic goes only to this machine's addresses and the project's own containers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiMetrics, createApiApp } from '../../src/api/index.js';
import { AuditIndex } from '../../src/audit/index-reader.js';
import { startServer } from '../../src/cli/serve.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { openPolicySource } from '../../src/policy/source.js';
import {
  GATEWAY_CONTAINER,
  LABEL,
  sandboxContainerName,
  sessionNetworkName,
} from '../../src/runtime/docker/labels.js';
import { DockerRuntime } from '../../src/runtime/docker/runtime.js';
import { SessionManager } from '../../src/sessions/manager.js';
import { TestApi } from '../helpers/api-client.js';
import { docker, exists, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';

const TOKEN = 'e2e-selftest-token-0123456789';
/** The test's own extra network (no io.airlock labels: the runtime never sees it as its own). */
const BREACH_NETWORK = 'airlock-selftest-breach';
const BREACH_SUBNET = '10.218.0.0/24';
const BREACH_HOST = '10.218.0.1';

let stateDir: string;

function makeConfig(): Config {
  return parseConfig(
    {
      api: { listen: '127.0.0.1:0', tokens: [{ name: 'e2e', token: TOKEN }] },
      policy: { dir: path.resolve('policies') },
      runtime: {
        docker: { egressSubnet: '10.214.0.0/24' },
        resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
      },
      stateDir,
    },
    process.cwd(),
  );
}

/** A pino logger that keeps its JSON lines for the test to read. */
function capturingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

const selfTestLines = (lines: Array<Record<string, unknown>>): Array<Record<string, unknown>> =>
  lines.filter((l) => l.event === 'isolation_selftest');

/** Sessions, containers and networks that carry a session id. */
async function leftovers(id: string): Promise<string[]> {
  const found: string[] = [];
  const containers = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL.session}=${id}`] },
  });
  found.push(...containers.map((c) => `container ${c.Names.join(',')}`));
  if (await exists('container', sandboxContainerName(id)))
    found.push(`container ${sandboxContainerName(id)}`);
  if (await exists('network', sessionNetworkName(id))) found.push(`network ${sessionNetworkName(id)}`);
  const gw = await docker.getContainer(GATEWAY_CONTAINER).inspect();
  if (gw.NetworkSettings.Networks[sessionNetworkName(id)]) found.push('gateway still on the session network');
  return found;
}

/** The Docker runtime, except that each sandbox is also put on the test's breach network before it starts. */
class BreachingRuntime extends DockerRuntime {
  readonly started: string[] = [];
  override async start(sessionId: string): Promise<void> {
    this.started.push(sessionId);
    await docker.getNetwork(BREACH_NETWORK).connect({ Container: sandboxContainerName(sessionId) });
    await super.start(sessionId);
  }
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  stateDir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-selftest-'));
});

afterAll(async () => {
  await removeAirlockObjects();
  await docker
    .getNetwork(BREACH_NETWORK)
    .remove()
    .catch(() => undefined);
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('isolation self-test at session start (issue 13 item 5)', () => {
  it('a normal session passes it before it is reported running; its cost is measured', async () => {
    const { logger, lines } = capturingLogger();
    const server = await startServer(makeConfig(), logger);
    try {
      const api = new TestApi(server.url, TOKEN);
      const t0 = performance.now();
      const view = await api.create({ role: 'analyst' });
      const createMs = performance.now() - t0;
      expect(view.status).toBe('running');

      const [line, ...more] = selfTestLines(lines);
      expect(more).toEqual([]);
      expect(line).toMatchObject({ sessionId: view.id, role: 'analyst', result: 'pass', findings: [] });
      // gateway proxy + admin API + the gateway on airlock-egress + at least one host address
      expect(line!.probes as number).toBeGreaterThanOrEqual(4);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toContain('airlock_isolation_selftest_total{result="pass"} 1');
      expect(metrics).toContain('airlock_isolation_selftest_total{result="fail"} 0');
      expect(metrics).toMatch(/^airlock_isolation_selftest_duration_seconds_count\{result="pass"\} 1$/m);
      console.log(
        `isolation self-test: ${line!.probes} probes in ${line!.durationMs} ms, of a ${createMs.toFixed(0)} ms create`,
      );
      // The session works as usual afterwards.
      expect((await api.sh(view.id, 'echo ok')).stdout).toBe('ok\n');
      await api.remove(view.id);
      expect(await leftovers(view.id)).toEqual([]);
    } finally {
      await server.close();
    }
  });

  it('a sandbox that can reach this machine is refused with 503 AIRLOCK_ISOLATION_FAILED; nothing is left behind', async () => {
    await docker
      .getNetwork(BREACH_NETWORK)
      .remove()
      .catch(() => undefined);
    await docker.createNetwork({
      Name: BREACH_NETWORK,
      Driver: 'bridge',
      Internal: true,
      CheckDuplicate: true,
      IPAM: { Driver: 'default', Config: [{ Subnet: BREACH_SUBNET, Gateway: BREACH_HOST }] },
    });
    const cfg = makeConfig();
    const { logger, lines } = capturingLogger();
    const policy = await openPolicySource(cfg.policy, cfg.stateDir, { logger });
    const auditIndex = new AuditIndex(cfg.audit.file);
    await auditIndex.start();
    const runtime = new BreachingRuntime(cfg, (m) => logger.warn(m));
    const metrics = new ApiMetrics({ defaultMetrics: false });
    const manager = new SessionManager(cfg, runtime, policy, auditIndex, logger, {
      registry: metrics.registry,
    });
    let server: http.Server | null = null;
    try {
      await manager.start();
      const app = createApiApp({
        sessions: manager,
        policy,
        tokens: [{ name: 'e2e', token: TOKEN }],
        metrics,
        logger,
      });
      server = await new Promise<http.Server>((resolve) => {
        const s = app.listen(0, '127.0.0.1', () => resolve(s));
      });
      const api = new TestApi(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, TOKEN);

      // Control: with the self-test off, the breach is real: the sandbox reaches a listener of this
      // machine through the breach network's bridge address.
      cfg.runtime.selfTest = false;
      const seen: string[] = [];
      const trap = net.createServer((s) => {
        seen.push(String(s.remoteAddress));
        s.destroy();
      });
      await new Promise<void>((r) => trap.listen(0, BREACH_HOST, () => r()));
      const trapPort = (trap.address() as net.AddressInfo).port;
      const control = await api.create({ role: 'analyst' });
      const reach = await api.exec(control.id, [
        'bash',
        '-c',
        `exec 3<>/dev/tcp/${BREACH_HOST}/${trapPort} && echo connected`,
      ]);
      await new Promise<void>((r) => trap.close(() => r()));
      expect(reach.stdout).toBe('connected\n');
      expect(seen.length).toBe(1);
      await api.remove(control.id);
      expect(selfTestLines(lines)).toEqual([]);

      // With the self-test on (the default), the same sandbox is refused.
      cfg.runtime.selfTest = true;
      const res = await api.raw('POST', '/v1/sessions', { role: 'analyst' });
      const body = (await res.json()) as Record<string, string>;
      expect(res.status).toBe(503);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(body).toMatchObject({
        code: 'AIRLOCK_ISOLATION_FAILED',
        type: 'urn:airlock:error:AIRLOCK_ISOLATION_FAILED',
        title: 'Sandbox isolation self-test failed',
        status: 503,
      });
      const refused = runtime.started.at(-1)!;
      expect(body.detail).toContain(`session ${refused}`);
      expect(body.detail).toContain(`${BREACH_HOST}:`);
      expect(body.detail).toMatch(/reachable from the sandbox|accepted a connection/);

      // Nothing is left behind: no container, no session network, gateway detached, no session.
      expect(await leftovers(refused)).toEqual([]);
      expect(Object.keys((await docker.getNetwork(BREACH_NETWORK).inspect()).Containers ?? {})).toEqual([]);
      expect(manager.list()).toEqual([]);
      expect(await (await api.raw('GET', '/v1/sessions')).json()).toEqual({ sessions: [] });
      expect((await api.raw('GET', `/v1/sessions/${refused}`)).status).toBe(404);

      // Logged and counted.
      const [line] = selfTestLines(lines);
      expect(line).toMatchObject({ sessionId: refused, result: 'fail', level: 50 });
      expect((line!.findings as string[]).some((f) => f.includes(BREACH_HOST))).toBe(true);
      const text = await metrics.registry.metrics();
      expect(text).toContain('airlock_isolation_selftest_total{result="fail"} 1');
      expect(text).toContain('airlock_isolation_selftest_total{result="pass"} 0');
      console.log(`refused: ${body.detail}`);
    } finally {
      manager.stop();
      if (server) await new Promise<void>((r) => server!.close(() => r()));
      auditIndex.close();
      await policy.close();
      for (const id of runtime.started) await runtime.remove(id).catch(() => undefined);
      await docker
        .getNetwork(BREACH_NETWORK)
        .remove()
        .catch(() => undefined);
    }
  });
});
