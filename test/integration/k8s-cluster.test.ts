/**
 * The Kubernetes runtime and the chart on a real kube-apiserver + etcd (test/helpers/k8s.ts; no nodes):
 * `helm install`, RBAC checked by the API server, sessions created by the control plane under the
 * chart's ServiceAccount identity (a TokenRequest token), gateways learning sessions from their Pod
 * watch, the kill switch, recovery by label, and a rejected spec leaving nothing behind.
 *
 * Pods stay Pending without nodes; where a test needs a running sandbox it plays the kubelet and
 * patches the Pod's status (phase Running, podIP 127.0.0.x) as the admin through the status
 * subresource. Requests "from the sandbox" then come from that loopback address.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import {
  AuthorizationV1Api,
  CoreV1Api,
  KubernetesObjectApi,
  type KubeConfig,
  NetworkingV1Api,
  NodeV1Api,
  RbacAuthorizationV1Api,
  type V1Pod,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { createApiApp } from '../../src/api/index.js';
import { AuditIndex } from '../../src/audit/index-reader.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import type { Config } from '../../src/config/schema.js';
import { RuntimeError, SandboxRejectedError } from '../../src/errors.js';
import { startGatewayService, type RunningGateway } from '../../src/gateway/service.js';
import { PolicyStore } from '../../src/policy/store.js';
import { KubernetesRuntime } from '../../src/runtime/kubernetes/runtime.js';
import { SessionManager } from '../../src/sessions/manager.js';
import {
  CONTROLLER_SA,
  FakeKubelet,
  GATEWAY_ADMIN_TOKEN as ADMIN_TOKEN,
  GATEWAY_POD_LABELS as GATEWAY_LABELS,
  GATEWAY_SA,
  installAirlockChart,
  kubernetesControlPlaneConfig,
  mergePatch,
  RELEASE,
  RELEASE_NS as NS,
  repoRoot,
  SANDBOX_NS,
  startPodWatchGateway,
  startTestCluster,
  waitUntil as waitUntilK8s,
  type TestCluster,
} from '../helpers/k8s.js';
import { proxyRequest } from '../helpers/proxy-client.js';

const DENIED_URL = 'http://forum.test:3000/posts';

let cluster: TestCluster;
let admin: KubeConfig;
let core: CoreV1Api;
let net: NetworkingV1Api;
let controllerKc: KubeConfig;
let controllerKubeconfigFile: string;
let gatewayKubeconfigFile: string;
const gateways: RunningGateway[] = [];
let work: string;

/** Plays the kubelet: Running, Ready and the next 127.0.0.x from .10 (test/helpers/k8s.ts). */
const fakeKubelet = (c: CoreV1Api): FakeKubelet => new FakeKubelet(c, { firstHost: 10, ready: true });

function controlPlaneConfig(extra: Record<string, unknown> = {}): Config {
  return kubernetesControlPlaneConfig({
    work,
    policyDir: path.join(repoRoot, 'policies'),
    kubeconfig: controllerKubeconfigFile,
    gateway: { port: gateways[0]!.proxyPort },
    adminUrls: gateways.map((g) => `http://127.0.0.1:${g.adminPort}`),
    kubernetes: extra,
  });
}

/** Polls every 50 ms (test/helpers/k8s.ts). */
const waitUntil = (what: string, ms: number, fn: () => boolean | Promise<boolean>): Promise<void> =>
  waitUntilK8s(what, ms, fn, 50);

async function exists(read: () => Promise<unknown>): Promise<boolean> {
  try {
    await read();
    return true;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return false;
    throw err;
  }
}

/** The proxy URL the sandbox would get, read from its Secret (by the admin: the controller cannot read it). */
async function sandboxCredential(sessionId: string): Promise<{ auth: string; url: URL }> {
  const s = await core.readNamespacedSecret({ name: `airlock-${sessionId}`, namespace: SANDBOX_NS });
  const url = new URL(Buffer.from(s.data?.['proxy-url'] ?? '', 'base64').toString());
  return { auth: `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`, url };
}

let setupError: unknown = null;

beforeAll(async () => {
  try {
    cluster = await startTestCluster();
    admin = cluster.admin();
    core = admin.makeApiClient(CoreV1Api);
    net = admin.makeApiClient(NetworkingV1Api);
    work = mkdtempSync(path.join(os.tmpdir(), 'airlock-k8s-work-'));
    writeFileSync(path.join(work, 'admin-token'), ADMIN_TOKEN + '\n');
    // The chart's identities, as the kubelet would mount them: TokenRequest tokens.
    ({ controllerKc, controllerKubeconfigFile, gatewayKubeconfigFile } = await installAirlockChart(cluster));
    for (let i = 0; i < 2; i++) gateways.push(await startGateway(path.join(work, `audit-${i}.jsonl`)));
  } catch (err) {
    setupError = err; // reported by every test below (never a silent skip)
  }
}, 180_000);

beforeEach(() => {
  if (setupError) throw setupError;
});

afterAll(async () => {
  for (const g of gateways) await g.close().catch(() => undefined);
  await cluster?.stop();
});

function startGateway(auditFile: string): Promise<RunningGateway> {
  return startPodWatchGateway({
    policyDir: path.join(repoRoot, 'policies'),
    auditFile,
    kubeconfig: gatewayKubeconfigFile,
  });
}

describe('helm install on a real kube-apiserver', () => {
  it('created every object the chart renders', async () => {
    const status = await cluster.helm(['status', RELEASE, '--namespace', NS, '-o', 'json']);
    expect((JSON.parse(status) as { info: { status: string } }).info.status).toBe('deployed');
    const apps = admin.makeApiClient((await import('@kubernetes/client-node')).AppsV1Api);
    const deps = await apps.listNamespacedDeployment({ namespace: NS });
    expect(deps.items.map((d) => [d.metadata?.name, d.spec?.replicas]).sort()).toEqual([
      ['airlock-controller', 1],
      ['airlock-gateway', 2],
    ]);
    const svcs = await core.listNamespacedService({ namespace: NS });
    expect(svcs.items.map((s) => s.metadata?.name).sort()).toEqual([
      'airlock-approvals', // the controller's approvals port, for the gateways (docs/kubernetes.md)
      'airlock-controller',
      'airlock-gateway',
      'airlock-gateway-admin',
    ]);
    const ns = await core.readNamespace({ name: SANDBOX_NS });
    expect(ns.metadata?.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    const nps = await net.listNamespacedNetworkPolicy({ namespace: SANDBOX_NS });
    expect(nps.items.map((n) => n.metadata?.name)).toEqual(['airlock-sandbox-deny']);
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    // In the release namespace only the CA Secret's Role (HTTPS interception; test/integration/k8s-tls.test.ts).
    expect((await rbac.listNamespacedRole({ namespace: NS })).items.map((r) => r.metadata?.name)).toEqual([
      'airlock-controller-ca',
    ]);
    expect(
      (await rbac.listNamespacedRole({ namespace: SANDBOX_NS })).items.map((r) => r.metadata?.name).sort(),
    ).toEqual(['airlock-controller', 'airlock-gateway']);
    const sa = await core.readNamespacedServiceAccount({ name: 'airlock-sandbox', namespace: SANDBOX_NS });
    expect(sa.automountServiceAccountToken).toBe(false);
  });

  it('every object rendered for each ci scenario passes server-side validation (dry run)', async () => {
    const objects = admin.makeApiClient(KubernetesObjectApi);
    const scenarios = [
      'default',
      'hardened',
      'git-policies',
      'existing-objects',
      'local-images',
      'no-intercept',
    ];
    for (const scenario of scenarios) {
      const out = await cluster.helm([
        'template',
        `ci-${scenario}`,
        path.join(repoRoot, 'charts/airlock'),
        '--namespace',
        `ci-${scenario}`,
        '-f',
        path.join(repoRoot, `charts/airlock/ci/${scenario}-values.yaml`),
      ]);
      const docs = YAML.parseAllDocuments(out)
        .map((d) => d.toJS() as { kind: string; metadata: { name: string; namespace?: string } } | null)
        .filter((d) => d !== null);
      // Namespaces a scenario targets must exist for a dry run of the objects inside them, with the
      // "default" ServiceAccount the (absent) controller-manager would create.
      for (const n of new Set(docs.map((d) => d.metadata.namespace).filter((x): x is string => !!x))) {
        await core.createNamespace({ body: { metadata: { name: n } } }).catch(() => undefined);
        await core
          .createNamespacedServiceAccount({ namespace: n, body: { metadata: { name: 'default' } } })
          .catch(() => undefined);
      }
      for (const d of docs) {
        try {
          await objects.create(d, undefined, 'All');
        } catch (err) {
          // A Namespace that already exists is the only acceptable refusal.
          if (!(d.kind === 'Namespace' && (err as { code?: number }).code === 409))
            throw new Error(
              `${scenario}: ${d.kind} ${d.metadata.name}: ${String((err as { body?: unknown }).body ?? err)}`,
              {
                cause: err,
              },
            );
        }
      }
    }
  });
});

describe('RBAC of the chart ServiceAccounts, checked by the API server', () => {
  const can = async (user: string, attrs: Record<string, string>): Promise<boolean> => {
    const authz = admin.makeApiClient(AuthorizationV1Api);
    const r = await authz.createSubjectAccessReview({
      body: {
        spec: {
          user,
          groups: ['system:serviceaccounts', `system:serviceaccounts:${NS}`, 'system:authenticated'],
          resourceAttributes: attrs,
        },
      },
    });
    return r.status?.allowed === true;
  };
  const controller = `system:serviceaccount:${NS}:${CONTROLLER_SA}`;
  const gateway = `system:serviceaccount:${NS}:${GATEWAY_SA}`;

  it('the controller can do exactly what the runtime needs in the sandbox namespace', async () => {
    const allowed: Array<Record<string, string>> = [
      { verb: 'create', resource: 'pods' },
      { verb: 'get', resource: 'pods' },
      { verb: 'list', resource: 'pods' },
      { verb: 'patch', resource: 'pods' },
      { verb: 'delete', resource: 'pods' },
      { verb: 'create', resource: 'pods', subresource: 'exec' },
      { verb: 'get', resource: 'pods', subresource: 'exec' },
      { verb: 'create', resource: 'secrets' },
      { verb: 'delete', resource: 'secrets' },
      { verb: 'create', resource: 'networkpolicies', group: 'networking.k8s.io' },
      { verb: 'delete', resource: 'networkpolicies', group: 'networking.k8s.io' },
      { verb: 'create', resource: 'configmaps' },
      { verb: 'get', resource: 'configmaps', name: 'airlock-ca-bundle' },
      { verb: 'update', resource: 'configmaps', name: 'airlock-ca-bundle' },
    ];
    for (const a of allowed)
      expect(await can(controller, { namespace: SANDBOX_NS, ...a }), JSON.stringify(a)).toBe(true);
  });

  it('the controller cannot create roles/rolebindings, read Secrets, exec or act outside the sandbox namespace', async () => {
    const denied: Array<Record<string, string>> = [
      { namespace: SANDBOX_NS, verb: 'create', resource: 'roles', group: 'rbac.authorization.k8s.io' },
      { namespace: SANDBOX_NS, verb: 'create', resource: 'rolebindings', group: 'rbac.authorization.k8s.io' },
      { namespace: SANDBOX_NS, verb: 'bind', resource: 'roles', group: 'rbac.authorization.k8s.io' },
      { namespace: SANDBOX_NS, verb: 'escalate', resource: 'roles', group: 'rbac.authorization.k8s.io' },
      { namespace: NS, verb: 'create', resource: 'rolebindings', group: 'rbac.authorization.k8s.io' },
      { verb: 'create', resource: 'clusterrolebindings', group: 'rbac.authorization.k8s.io' },
      { namespace: SANDBOX_NS, verb: 'get', resource: 'secrets' },
      { namespace: SANDBOX_NS, verb: 'list', resource: 'secrets' },
      { namespace: NS, verb: 'get', resource: 'secrets', name: 'airlock-tokens' },
      { namespace: 'kube-system', verb: 'list', resource: 'secrets' },
      { namespace: 'default', verb: 'get', resource: 'secrets' },
      { namespace: NS, verb: 'create', resource: 'pods', subresource: 'exec' },
      { namespace: 'kube-system', verb: 'create', resource: 'pods', subresource: 'exec' },
      { namespace: 'default', verb: 'create', resource: 'pods' },
      { namespace: SANDBOX_NS, verb: 'patch', resource: 'pods', subresource: 'status' },
      { namespace: SANDBOX_NS, verb: 'update', resource: 'networkpolicies', group: 'networking.k8s.io' },
      { verb: 'create', resource: 'namespaces' },
      { namespace: SANDBOX_NS, verb: 'create', resource: 'serviceaccounts', subresource: 'token' },
    ];
    for (const a of denied) expect(await can(controller, a), JSON.stringify(a)).toBe(false);
  });

  it('the gateway can only read sandbox Pods', async () => {
    for (const verb of ['get', 'list', 'watch'])
      expect(await can(gateway, { namespace: SANDBOX_NS, verb, resource: 'pods' })).toBe(true);
    const denied: Array<Record<string, string>> = [
      { namespace: SANDBOX_NS, verb: 'create', resource: 'pods' },
      { namespace: SANDBOX_NS, verb: 'patch', resource: 'pods' },
      { namespace: SANDBOX_NS, verb: 'get', resource: 'secrets' },
      { namespace: SANDBOX_NS, verb: 'create', resource: 'pods', subresource: 'exec' },
      { namespace: NS, verb: 'list', resource: 'pods' },
    ];
    for (const a of denied) expect(await can(gateway, a), JSON.stringify(a)).toBe(false);
  });

  it("with its own token the controller is refused a Role and another namespace's Secret", async () => {
    const rbac = controllerKc.makeApiClient(RbacAuthorizationV1Api);
    await expect(
      rbac.createNamespacedRole({
        namespace: SANDBOX_NS,
        body: {
          metadata: { name: 'escalate' },
          rules: [{ apiGroups: ['*'], resources: ['*'], verbs: ['*'] }],
        },
      }),
    ).rejects.toMatchObject({ code: 403 });
    const c = controllerKc.makeApiClient(CoreV1Api);
    await expect(c.readNamespacedSecret({ name: 'airlock-tokens', namespace: NS })).rejects.toMatchObject({
      code: 403,
    });
    const review = await controllerKc.makeApiClient(AuthorizationV1Api).createSelfSubjectAccessReview({
      body: { spec: { resourceAttributes: { namespace: SANDBOX_NS, verb: 'create', resource: 'pods' } } },
    });
    expect(review.status?.allowed).toBe(true);
  });
});

describe('sessions on Kubernetes, control plane as the chart ServiceAccount', () => {
  let kubelet: FakeKubelet;
  let cfg: Config;
  let policy: PolicyStore;
  let auditIndex: AuditIndex;
  let runtime: KubernetesRuntime;
  let manager: SessionManager;

  beforeAll(async () => {
    if (setupError) return;
    kubelet = fakeKubelet(core);
    kubelet.start();
    cfg = controlPlaneConfig();
    policy = await PolicyStore.open(cfg.policy.dir);
    auditIndex = new AuditIndex(path.join(work, 'audit.jsonl'));
    await auditIndex.start();
    runtime = new KubernetesRuntime(cfg); // kubeconfig: the controller ServiceAccount's token
    manager = new SessionManager(cfg, runtime, policy, auditIndex);
    await manager.start();
  });

  afterAll(async () => {
    kubelet?.stop();
    manager?.stop();
    await runtime?.close();
    auditIndex?.close();
    policy?.close();
  });

  it('creates a gated-then-started Pod, a Secret and a NetworkPolicy with every hardening field', async () => {
    const view = await manager.create(
      { role: 'analyst', labels: { ticket: 'OPS-42' }, env: { TASK: 'read' } },
      'tester',
    );
    const name = `airlock-${view.id}`;
    const pod = await core.readNamespacedPod({ name, namespace: SANDBOX_NS });
    expect(pod.metadata?.labels).toMatchObject({
      'app.kubernetes.io/managed-by': 'airlock',
      'app.kubernetes.io/component': 'sandbox',
      'airlock.io/instance': RELEASE,
      'airlock.io/session': view.id,
      'label.airlock.io/ticket': 'OPS-42',
    });
    expect(pod.metadata?.annotations).toMatchObject({
      'airlock.io/role': 'analyst',
      'airlock.io/created-by': 'tester',
    });
    expect(pod.metadata?.annotations?.['airlock.io/credential-sha256']).toMatch(/^[0-9a-f]{64}$/);
    const spec = pod.spec!;
    expect(spec.schedulingGates ?? []).toEqual([]); // started: the gate is gone
    expect(spec).toMatchObject({
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      serviceAccountName: 'airlock-sandbox',
      restartPolicy: 'Never',
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 10001,
        runAsGroup: 10001,
        seccompProfile: { type: 'RuntimeDefault' },
      },
    });
    expect(spec.hostNetwork ?? false).toBe(false);
    expect(spec.runtimeClassName).toBeUndefined();
    const c = spec.containers[0]!;
    expect(c.image).toBe('airlock-sandbox:dev');
    expect(c.securityContext).toMatchObject({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.resources).toEqual({
      limits: { cpu: '500m', memory: '256Mi' },
      requests: { cpu: '500m', memory: '256Mi' },
    });
    expect(c.volumeMounts?.map((m) => m.mountPath).sort()).toEqual(['/etc/airlock', '/home/agent', '/tmp']);
    expect(spec.volumes?.map((v) => [v.name, v.emptyDir?.sizeLimit ?? v.configMap?.name])).toEqual([
      ['tmp', '1Gi'],
      ['work', '1Gi'],
      ['airlock-trust', 'airlock-ca-bundle'], // HTTPS interception: see k8s-tls.test.ts
    ]);
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));
    for (const v of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'])
      expect(env[v]?.valueFrom?.secretKeyRef).toEqual({ name, key: 'proxy-url' });
    expect(env.NO_PROXY).toBeDefined(); // an empty value: the API server omits the field
    expect(env.NO_PROXY?.value ?? '').toBe('');
    expect(env.TASK?.value).toBe('read');

    const owner = { apiVersion: 'v1', kind: 'Pod', name, uid: pod.metadata?.uid };
    const secret = await core.readNamespacedSecret({ name, namespace: SANDBOX_NS });
    expect(secret.immutable).toBe(true);
    expect(secret.metadata?.ownerReferences).toMatchObject([owner]);
    const { url, auth } = await sandboxCredential(view.id);
    expect(url.host).toBe(`127.0.0.1:${gateways[0]!.proxyPort}`);
    expect(auth.startsWith(`${view.id}:`)).toBe(true);
    expect(JSON.stringify(pod)).not.toContain(auth.slice(view.id.length + 1)); // the credential is only in the Secret

    const np = await net.readNamespacedNetworkPolicy({ name, namespace: SANDBOX_NS });
    expect(np.metadata?.ownerReferences).toMatchObject([owner]);
    expect(np.spec).toEqual({
      podSelector: { matchLabels: { 'airlock.io/session': view.id, 'airlock.io/instance': RELEASE } },
      policyTypes: ['Ingress', 'Egress'],
      egress: [
        {
          to: [
            {
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': NS } },
              podSelector: { matchLabels: GATEWAY_LABELS },
            },
          ],
          ports: [{ protocol: 'TCP', port: gateways[0]!.proxyPort }],
        },
      ],
    });
    await manager.remove(view.id);
  });

  it('every gateway replica serves the session at its Pod IP, and only there', async () => {
    const view = await manager.create({ role: 'analyst' }, 'tester');
    const ip = kubelet.assigned.get(`airlock-${view.id}`)!;
    const { auth } = await sandboxCredential(view.id);
    for (const g of gateways) {
      const proxy = { host: '127.0.0.1', port: g.proxyPort };
      // Identified (the policy then denies a POST): 403 with the JSON deny body.
      const ok = await proxyRequest(proxy, DENIED_URL, {
        method: 'POST',
        body: '{}',
        auth,
        localAddress: ip,
      });
      expect(ok.status).toBe(403);
      expect(ok.json()).toMatchObject({ error: 'egress_denied', sessionId: view.id, role: 'analyst' });
      // The same credential from another address is refused.
      const other = await proxyRequest(proxy, DENIED_URL, { auth, localAddress: '127.0.0.250' });
      expect(other.status).toBe(407);
    }
    await manager.remove(view.id);
  });

  it('a gateway learns a session from its Pod watch alone when status.podIP appears', async () => {
    const late = await startGateway(path.join(work, 'audit-late.jsonl')); // never told by the control plane
    try {
      const spec = {
        sessionId: 's-00000000000000aa',
        role: 'analyst',
        image: 'airlock-sandbox:dev',
        env: {},
        credential: 'watch-only-credential',
        credentialSha256: '',
        createdAt: new Date(),
        expiresAt: new Date(Date.now() + 600_000),
        createdBy: 'tester',
        labels: {},
      };
      spec.credentialSha256 = (await import('node:crypto'))
        .createHash('sha256')
        .update(spec.credential)
        .digest('hex');
      const r = new KubernetesRuntime(cfg);
      await r.prepare(spec);
      const name = `airlock-${spec.sessionId}`;
      // Gated and without an IP: nothing to serve yet.
      await new Promise((res) => setTimeout(res, 300));
      expect(late.sessions.list().map((s) => s.id)).not.toContain(spec.sessionId);
      // The admin removes the gate and plays the kubelet with a fixed IP (the fake kubelet would too).
      kubelet.assigned.set(name, '127.0.0.77');
      await core.patchNamespacedPod(
        { name, namespace: SANDBOX_NS, body: { spec: { schedulingGates: null } } },
        mergePatch,
      );
      await waitUntil(
        'the watch to bind 127.0.0.77',
        5_000,
        () => late.sessions.atAddress('127.0.0.77')?.id === spec.sessionId,
      );
      const res = await proxyRequest({ host: '127.0.0.1', port: late.proxyPort }, DENIED_URL, {
        method: 'POST',
        body: '{}',
        auth: `${spec.sessionId}:${spec.credential}`,
        localAddress: '127.0.0.77',
      });
      expect(res.status).toBe(403);
      // Revoked by label (what the kill switch does first): refused without any admin call.
      await r.markRevoked(spec.sessionId);
      await waitUntil('the watch to revoke', 5_000, () => late.sessions.atAddress('127.0.0.77') === null);
      await r.remove(spec.sessionId);
      await r.close();
    } finally {
      await late.close();
    }
  });

  it('a gateway that cannot watch the sandbox Pods does not start (fails closed)', async () => {
    const bogus = cluster.kubeConfigForToken('not-a-valid-token', 'bogus').file;
    await expect(
      startGatewayService(
        {
          port: 0,
          adminPort: 0,
          listenHost: '127.0.0.1',
          policyDir: path.join(repoRoot, 'policies'),
          auditFile: path.join(work, 'audit-bogus.jsonl'),
          auditStdout: false,
          sessionSource: { kind: 'kubernetes', namespace: SANDBOX_NS, instance: RELEASE, kubeconfig: bogus },
        },
        ADMIN_TOKEN,
      ),
    ).rejects.toThrow(/cannot watch Pods in airlock-sandboxes/);
  });

  it('kill switch: every replica refuses first (Pod labelled revoked), then Pod, Secret and NetworkPolicy go', async () => {
    const view = await manager.create({ role: 'analyst' }, 'tester');
    const name = `airlock-${view.id}`;
    const ip = kubelet.assigned.get(name)!;
    const { auth } = await sandboxCredential(view.id);
    const events: string[] = [];
    const { Watch } = await import('@kubernetes/client-node');
    const w = await new Watch(admin).watch(
      `/api/v1/namespaces/${SANDBOX_NS}/pods`,
      { fieldSelector: `metadata.name=${name}` },
      (type, obj: V1Pod) =>
        events.push(`${type}${obj.metadata?.labels?.['airlock.io/revoked'] ? ':revoked' : ''}`),
      () => undefined,
    );
    await manager.remove(view.id);
    // Right when remove() returns, no replica serves the session any more.
    for (const g of gateways) {
      expect(g.sessions.list().map((s) => s.id)).not.toContain(view.id);
      const res = await proxyRequest({ host: '127.0.0.1', port: g.proxyPort }, DENIED_URL, {
        auth,
        localAddress: ip,
      });
      // Refused as ended (the replica remembers the session at its address), never served.
      expect(res.status).toBe(403);
      expect(res.json()).toMatchObject({ error: 'session_expired', sessionId: view.id });
    }
    expect(await exists(() => core.readNamespacedPod({ name, namespace: SANDBOX_NS }))).toBe(false);
    expect(await exists(() => core.readNamespacedSecret({ name, namespace: SANDBOX_NS }))).toBe(false);
    expect(await exists(() => net.readNamespacedNetworkPolicy({ name, namespace: SANDBOX_NS }))).toBe(false);
    await waitUntil('the DELETED event', 3_000, () => events.some((e) => e.startsWith('DELETED')));
    w.abort();
    expect(events.indexOf('MODIFIED:revoked')).toBeGreaterThan(-1);
    expect(events.indexOf('MODIFIED:revoked')).toBeLessThan(events.findIndex((e) => e.startsWith('DELETED')));
  });

  it("a spec the API server rejects answers 422 with the server's reason and leaves nothing behind", async () => {
    const app = createApiApp({
      sessions: manager,
      policy,
      tokens: [{ name: 'tester', token: 'test-token-0123456789' }],
      logger: pino({ level: 'silent' }),
    });
    const server = await new Promise<http.Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    try {
      const before = (await core.listNamespacedPod({ namespace: SANDBOX_NS })).items.length;
      const res = await fetch(`http://127.0.0.1:${(server.address() as { port: number }).port}/v1/sessions`, {
        method: 'POST',
        headers: { authorization: 'Bearer test-token-0123456789', 'content-type': 'application/json' },
        body: JSON.stringify({ role: 'analyst', labels: { ticket: 'x'.repeat(100) } }),
      });
      expect(res.status).toBe(422);
      const body = (await res.json()) as { code: string; detail: string };
      expect(body.code).toBe('AIRLOCK_SANDBOX_REJECTED');
      expect(body.detail).toMatch(/metadata\.labels: Invalid value: "x{100}": must be no more than 63/);
      expect((await core.listNamespacedPod({ namespace: SANDBOX_NS })).items.length).toBe(before);
      expect(manager.list()).toEqual([]);
    } finally {
      server.close();
    }
    await expect(
      manager.create({ role: 'analyst', labels: { 'a/b/c': 'x' } }, 'tester'),
    ).rejects.toBeInstanceOf(SandboxRejectedError);
  });

  it('a failure after the Pod exists removes what was created (no NetworkPolicy rights)', async () => {
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: 'partial' } } });
    await rbac.createNamespacedRole({
      namespace: SANDBOX_NS,
      body: {
        metadata: { name: 'partial' },
        rules: [
          { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'create', 'patch', 'delete'] },
          { apiGroups: [''], resources: ['secrets'], verbs: ['create', 'delete'] },
        ],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: SANDBOX_NS,
      body: {
        metadata: { name: 'partial' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'partial' },
        subjects: [{ kind: 'ServiceAccount', name: 'partial', namespace: NS }],
      },
    });
    const partial = cluster.kubeConfigForToken(await cluster.serviceAccountToken(NS, 'partial'), 'partial');
    const r = new KubernetesRuntime(cfg, { kubeConfig: partial.kc, adminToken: ADMIN_TOKEN });
    const sessionId = 's-00000000000000bb';
    await expect(
      r.prepare({
        sessionId,
        role: 'analyst',
        image: 'airlock-sandbox:dev',
        env: {},
        credential: 'c',
        credentialSha256: 'a'.repeat(64),
        createdAt: new Date(),
        expiresAt: new Date(Date.now() + 60_000),
        createdBy: 'tester',
        labels: {},
      }),
    ).rejects.toThrow(/networkpolicies.*forbidden|forbidden.*networkpolicies/i);
    const name = `airlock-${sessionId}`;
    expect(await exists(() => core.readNamespacedPod({ name, namespace: SANDBOX_NS }))).toBe(false);
    expect(await exists(() => core.readNamespacedSecret({ name, namespace: SANDBOX_NS }))).toBe(false);
  });

  it('exec goes through the exec API (refused here: no node runs the Pod)', async () => {
    const view = await manager.create({ role: 'analyst' }, 'tester');
    const err = await manager.exec(view.id, ['true'], 5_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeError);
    expect((err as Error).message).toMatch(/exec in pod airlock-sandboxes\/airlock-s-/);
    // Not refused by RBAC (the session id in the Pod name may contain "403": look at the status only).
    const status = /Unexpected server response: (\d{3})/.exec((err as Error).message)?.[1];
    expect(status).not.toBe('403');
    expect((err as Error).message).not.toMatch(/forbidden/i);
    await manager.remove(view.id);
  });

  it('runtimeClassName reaches the Pod (a RuntimeClass the API server knows)', async () => {
    await admin
      .makeApiClient(NodeV1Api)
      .createRuntimeClass({ body: { metadata: { name: 'gvisor' }, handler: 'runsc' } });
    const r = new KubernetesRuntime(
      controlPlaneConfig({ runtimeClassName: 'gvisor', dns: { enabled: true } }),
    );
    const sessionId = 's-00000000000000cc';
    await r.prepare({
      sessionId,
      role: 'analyst',
      image: 'airlock-sandbox:dev',
      env: {},
      credential: 'c',
      credentialSha256: 'a'.repeat(64),
      createdAt: new Date(),
      expiresAt: new Date(Date.now() + 60_000),
      createdBy: 'tester',
      labels: {},
    });
    const name = `airlock-${sessionId}`;
    expect((await core.readNamespacedPod({ name, namespace: SANDBOX_NS })).spec?.runtimeClassName).toBe(
      'gvisor',
    );
    const np = await net.readNamespacedNetworkPolicy({ name, namespace: SANDBOX_NS });
    expect(np.spec?.egress?.[1]).toEqual({
      to: [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
          podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
        },
      ],
      ports: [
        { protocol: 'UDP', port: 53 },
        { protocol: 'TCP', port: 53 },
      ],
    });
    await r.remove(sessionId);
    await r.close();
  });

  it('airlock serve on Kubernetes: recovers sessions by label after a restart and warns about NetworkPolicy', async () => {
    const view = await manager.create({ role: 'analyst', labels: { ticket: 'OPS-7' } }, 'tester');
    const { auth } = await sandboxCredential(view.id);
    const ip = kubelet.assigned.get(`airlock-${view.id}`)!;
    // The old control plane goes away (sandboxes keep running)...
    manager.stop();
    await runtime.close();
    // ...and `airlock serve` starts with the same config (the runtime selected by runtime.kind).
    const lines: string[] = [];
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _e, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    );
    let served: RunningServer | null = null;
    try {
      served = await startServer({ ...cfg, api: { ...cfg.api, listen: '127.0.0.1:0' } }, logger);
      expect(served.manager.get(view.id)).toMatchObject({
        id: view.id,
        role: 'analyst',
        status: 'running',
        labels: { ticket: 'OPS-7' },
      });
      const warn = lines
        .map((l) => JSON.parse(l) as { level: number; msg: string; detail?: string })
        .find((l) => l.level === 40 && /NetworkPolicy/.test(l.msg));
      expect(warn?.detail).toMatch(/cannot inspect kube-system/);
      // Still served by the gateways; the recovered manager's kill switch works.
      const res = await proxyRequest({ host: '127.0.0.1', port: gateways[1]!.proxyPort }, DENIED_URL, {
        method: 'POST',
        body: '{}',
        auth,
        localAddress: ip,
      });
      expect(res.status).toBe(403);
      await served.manager.remove(view.id);
      const after = await proxyRequest({ host: '127.0.0.1', port: gateways[1]!.proxyPort }, DENIED_URL, {
        auth,
        localAddress: ip,
      });
      expect(after.status).toBe(403);
      expect(after.json()).toMatchObject({ error: 'session_expired', sessionId: view.id });
    } finally {
      await served?.close();
    }
  });
});
