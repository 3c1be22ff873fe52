/**
 * Audit on Kubernetes (issue 16): the controller's AuditCollector pulls every gateway replica's events
 * (`GET /admin/audit`) into its audit file, so `GET /v1/sessions/{id}/audit` answers the calls made
 * through every replica, in time order, including those of a replica shut down right after a call.
 * Real kube-apiserver + etcd, the chart's identities, in-process Pod-watch gateways (test/helpers/k8s.ts).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiApp } from '../../src/api/index.js';
import type { AuditEvent } from '../../src/audit/event.js';
import { AuditIndex } from '../../src/audit/index-reader.js';
import type { RunningGateway } from '../../src/gateway/service.js';
import { PolicyStore } from '../../src/policy/store.js';
import { KubernetesRuntime } from '../../src/runtime/kubernetes/runtime.js';
import { SessionManager } from '../../src/sessions/manager.js';
import {
  FakeKubelet,
  GATEWAY_ADMIN_TOKEN,
  installAirlockChart,
  kubernetesControlPlaneConfig,
  repoRoot,
  SANDBOX_NS,
  startPodWatchGateway,
  startTestCluster,
  waitUntil,
  type TestCluster,
} from '../helpers/k8s.js';
import { proxyRequest } from '../helpers/proxy-client.js';

const API_TOKEN = 'test-token-0123456789';
let cluster: TestCluster;
let work: string;
let gatewayKubeconfigFile: string;
const gateways: RunningGateway[] = [];
let kubelet: FakeKubelet;
let policy: PolicyStore;
let auditIndex: AuditIndex;
let runtime: KubernetesRuntime;
let manager: SessionManager;
let api: http.Server;
let apiUrl: string;

beforeAll(async () => {
  cluster = await startTestCluster();
  const core = cluster.admin().makeApiClient(CoreV1Api);
  work = mkdtempSync(path.join(os.tmpdir(), 'airlock-k8s-audit-'));
  writeFileSync(path.join(work, 'admin-token'), GATEWAY_ADMIN_TOKEN + '\n');
  let controllerKubeconfigFile: string;
  ({ controllerKubeconfigFile, gatewayKubeconfigFile } = await installAirlockChart(cluster));
  for (let i = 0; i < 2; i++)
    gateways.push(
      await startPodWatchGateway({
        policyDir: path.join(repoRoot, 'policies'),
        auditFile: path.join(work, `gateway-${i}.jsonl`),
        kubeconfig: gatewayKubeconfigFile,
      }),
    );
  const cfg = kubernetesControlPlaneConfig({
    work,
    policyDir: path.join(repoRoot, 'policies'),
    kubeconfig: controllerKubeconfigFile,
    gateway: { port: gateways[0]!.proxyPort },
    adminUrls: gateways.map((g) => `http://127.0.0.1:${g.adminPort}`),
  });
  kubelet = new FakeKubelet(core, { firstHost: 10, ready: true });
  kubelet.start();
  policy = await PolicyStore.open(cfg.policy.dir);
  auditIndex = new AuditIndex(cfg.audit.file, 50);
  await auditIndex.start();
  runtime = new KubernetesRuntime(cfg, { auditIntervalMs: 100 });
  manager = new SessionManager(cfg, runtime, policy, auditIndex);
  await manager.start();
  const app = createApiApp({ sessions: manager, policy, tokens: [{ name: 'tester', token: API_TOKEN }] });
  api = await new Promise<http.Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
}, 180_000);

afterAll(async () => {
  await new Promise<void>((r) => (api ? api.close(() => r()) : r()));
  kubelet?.stop();
  manager?.stop();
  await runtime?.close();
  auditIndex?.close();
  policy?.close();
  for (const g of gateways) await g.close({ auditDrainMs: 0 }).catch(() => undefined);
  await cluster?.stop();
});

async function sessionAudit(id: string): Promise<AuditEvent[]> {
  const res = await fetch(`${apiUrl}/v1/sessions/${id}/audit`, {
    headers: { authorization: `Bearer ${API_TOKEN}` },
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { events?: AuditEvent[] } | AuditEvent[];
  return Array.isArray(body) ? body : (body.events ?? []);
}

async function sandboxAuth(sessionId: string): Promise<string> {
  const core = cluster.admin().makeApiClient(CoreV1Api);
  const s = await core.readNamespacedSecret({ name: `airlock-${sessionId}`, namespace: SANDBOX_NS });
  const url = new URL(Buffer.from(s.data?.['proxy-url'] ?? '', 'base64').toString());
  return `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
}

describe('audit collected from every gateway replica', () => {
  it('GET /v1/sessions/{id}/audit answers the calls through both replicas in time order, and a replica shut down right after a call', async () => {
    const view = await manager.create({ role: 'analyst' }, 'tester');
    const ip = kubelet.assigned.get(`airlock-${view.id}`)!;
    const auth = await sandboxAuth(view.id);
    const paths: string[] = [];
    for (let i = 0; i < 4; i++) {
      const g = gateways[i % 2]!;
      const p = `/posts/${i}`;
      paths.push(p);
      const res = await proxyRequest({ host: '127.0.0.1', port: g.proxyPort }, `http://forum.test:3000${p}`, {
        method: 'POST',
        body: '{}',
        auth,
        localAddress: ip,
      });
      expect(res.status).toBe(403); // identified, then denied by the policy: one event each
    }
    await waitUntil(
      'events of both replicas collected',
      15_000,
      async () => (await sessionAudit(view.id)).length >= 4,
      50,
    );
    const events = await sessionAudit(view.id);
    expect(events.map((e) => e.path)).toEqual(paths);
    const times = events.map((e) => e.time);
    expect([...times].sort()).toEqual(times);

    // A third replica: one call, then shut down at once (SIGTERM); its event is still collected,
    // because it keeps its admin API up until the collector acknowledged everything.
    const late = await startPodWatchGateway({
      policyDir: path.join(repoRoot, 'policies'),
      auditFile: path.join(work, 'gateway-late.jsonl'),
      kubeconfig: gatewayKubeconfigFile,
    });
    const lateUrl = `http://127.0.0.1:${late.adminPort}`;
    // Discovery: the collector reads the admin URLs of the config; add this one as DNS would.
    const replicas = (runtime as unknown as { replicas: { d: { urls: string[] } } }).replicas;
    replicas.d.urls.push(lateUrl);
    await waitUntil('the collector reads the new replica', 10_000, () => late.auditRing!.collected(), 20);
    await waitUntil(
      'the new replica knows the session',
      10_000,
      () => late.sessions.atAddress(ip) !== null,
      20,
    );
    const res = await proxyRequest(
      { host: '127.0.0.1', port: late.proxyPort },
      'http://forum.test:3000/posts/late',
      {
        method: 'POST',
        body: '{}',
        auth,
        localAddress: ip,
      },
    );
    expect(res.status).toBe(403);
    replicas.d.urls.pop(); // the Pod leaves the Service as it terminates: read until it is gone
    await late.close(); // waits (up to 10 s) for the collector's acknowledgement
    expect(late.auditRing!.acknowledged()).toBe(late.auditRing!.last());
    const after = await sessionAudit(view.id);
    expect(after.map((e) => e.path)).toEqual([...paths, '/posts/late']);
    await manager.remove(view.id);
  });
});
