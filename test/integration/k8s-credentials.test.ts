/**
 * Issue 14 part B on a real kube-apiserver (+ etcd, RBAC on; test/helpers/k8s.ts): credential values
 * in Kubernetes Secrets of the gateway namespace (`source: { secretRef: { name, key } }`).
 *
 * The chart is installed with `gateway.credentialSecrets`, and a real gateway process
 * (startGatewayService, the Pod watch as its session source) runs under the chart's gateway
 * ServiceAccount token: it reads the listed Secret through the Role the chart made
 * (resourceNames), injects its value as a bearer token, follows a change of the Secret without a
 * restart (watch), and gets nothing from a Secret the Role does not name. The upstream is a small
 * recorder on loopback that checks the token.
 *
 * Run under the lock: `flock /tmp/airlock-e2e.lock npx vitest run --project integration test/integration/k8s-credentials.test.ts`.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningGateway } from '../../src/gateway/service.js';
import { kubeFailure } from '../../src/kube/client.js';
import { K8S_ANNOTATION, K8S_LABEL, MANAGED_BY, SANDBOX_COMPONENT } from '../../src/kube/labels.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import {
  GATEWAY_SA,
  RELEASE,
  RELEASE_NS,
  repoRoot,
  runningStatus,
  SANDBOX_NS,
  startPodWatchGateway,
  startTestCluster,
  waitUntil,
  type TestCluster,
} from '../helpers/k8s.js';
import { proxyRequest } from '../helpers/proxy-client.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const TOKEN_1 = 'k8s-token-1-8f7e6d5c4b3a29180716';
const TOKEN_2 = 'k8s-token-2-0a1b2c3d4e5f60718293';
const OTHER_VALUE = 'other-secret-value-5566778899aabb';
const LISTED = 'airlock-cred-forum';
const UNLISTED = 'airlock-cred-other';
const SESSION = { id: 's-cred', cred: 'cred-k8s-0123456789abcdef', address: '127.0.0.1', role: 'agent' };

let cluster: TestCluster;
let core: CoreV1Api;
let work: string;
let gatewayKubeconfigFile: string;
let gateway: RunningGateway;
let upstream: http.Server;
let upstreamPort: number;
const seen: (string | null)[] = [];

const b64 = (s: string): string => Buffer.from(s).toString('base64');

async function putSecret(name: string, token: string): Promise<void> {
  const body = { metadata: { name, namespace: RELEASE_NS }, data: { token: b64(token) } };
  try {
    await core.replaceNamespacedSecret({ name, namespace: RELEASE_NS, body });
  } catch (err) {
    if (kubeFailure(err).status !== 404) throw err;
    await core.createNamespacedSecret({ namespace: RELEASE_NS, body });
  }
}

beforeAll(async () => {
  cluster = await startTestCluster();
  core = cluster.admin().makeApiClient(CoreV1Api);
  work = mkdtempSync(path.join(os.tmpdir(), 'airlock-k8s-creds-'));
  await cluster.helm([
    'install',
    RELEASE,
    path.join(repoRoot, 'charts/airlock'),
    '--namespace',
    RELEASE_NS,
    '--create-namespace',
    '-f',
    path.join(repoRoot, 'charts/airlock/ci/local-images-values.yaml'),
    '--set',
    `gateway.credentialSecrets={${LISTED}}`,
  ]);
  gatewayKubeconfigFile = cluster.kubeConfigForToken(
    await cluster.serviceAccountToken(RELEASE_NS, GATEWAY_SA),
    'gateway',
  ).file;
  await putSecret(LISTED, TOKEN_1);
  await putSecret(UNLISTED, OTHER_VALUE);

  upstream = http.createServer((req, res) => {
    const h = req.headers.authorization ?? null;
    seen.push(h);
    res.writeHead(h === `Bearer ${TOKEN_1}` || h === `Bearer ${TOKEN_2}` ? 200 : 401);
    res.end(h === `Bearer ${TOKEN_2}` ? 'token 2' : 'token 1');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamPort = (upstream.address() as AddressInfo).port;

  const policyDir = path.join(work, 'policy');
  mkdirSync(policyDir);
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(path.join(policyDir, 'policy.csv'), `p, agent, api.test:${upstreamPort}, /*, GET, allow\n`);
  writeFileSync(
    path.join(policyDir, 'credentials.yaml'),
    [
      'version: 1',
      'credentials:',
      '  - name: forum',
      '    roles: [agent]',
      `    bindings: [{ host: "api.test:${upstreamPort}", path: /forum/*, methods: [GET] }]`,
      '    apply: { type: bearer }',
      `    source: { secretRef: { name: ${LISTED}, key: token } }`,
      '  - name: other',
      '    roles: [agent]',
      `    bindings: [{ host: "api.test:${upstreamPort}", path: /other/*, methods: [GET] }]`,
      '    apply: { type: bearer }',
      `    source: { secretRef: { name: ${UNLISTED}, key: token } }`,
      '',
    ].join('\n'),
  );
  gateway = await startPodWatchGateway(
    { policyDir, auditFile: path.join(work, 'audit.jsonl'), kubeconfig: gatewayKubeconfigFile },
    {
      allowPrivateCidrs: ['127.0.0.0/8'],
      hostAliases: { 'api.test': '127.0.0.1' },
      // The gateway is told to read both; RBAC lets it read only the one the chart lists.
      credentialSecrets: {
        namespace: RELEASE_NS,
        names: [LISTED, UNLISTED],
        kubeconfig: gatewayKubeconfigFile,
      },
    },
  );

  // The session: a sandbox Pod as the runtime writes it, "running" at 127.0.0.1 (no kubelet here).
  const name = `airlock-${SESSION.id}`;
  await core.createNamespacedPod({
    namespace: SANDBOX_NS,
    body: {
      metadata: {
        name,
        labels: {
          [K8S_LABEL.managedBy]: MANAGED_BY,
          [K8S_LABEL.component]: SANDBOX_COMPONENT,
          [K8S_LABEL.instance]: RELEASE,
          [K8S_LABEL.session]: SESSION.id,
        },
        annotations: {
          [K8S_ANNOTATION.role]: SESSION.role,
          [K8S_ANNOTATION.credentialSha256]: sha(SESSION.cred),
          [K8S_ANNOTATION.expiresAt]: new Date(Date.now() + 3_600_000).toISOString(),
        },
      },
      spec: {
        serviceAccountName: 'airlock-sandbox',
        automountServiceAccountToken: false,
        securityContext: { runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [
          {
            name: 'sandbox',
            image: 'airlock-sandbox:dev',
            securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
          },
        ],
      },
    },
  });
  await runningStatus(core, name, SESSION.address);
  await waitUntil('the gateway serves the session', 20_000, async () => {
    const r = await proxyRequest({ host: '127.0.0.1', port: gateway.proxyPort }, api('/forum/probe'), {
      auth,
    });
    return r.status !== 407;
  });
}, 240_000);

afterAll(async () => {
  await gateway?.close();
  await new Promise((r) => upstream?.close(r));
  await cluster?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const auth = `${SESSION.id}:${SESSION.cred}`;
const api = (p: string): string => `http://api.test:${upstreamPort}${p}`;

describe('Kubernetes Secrets as credential values (issue 14 part B)', () => {
  it("RBAC: the gateway's ServiceAccount may read the listed Secret by name, and no other Secret", async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(gatewayKubeconfigFile);
    const gw = kc.makeApiClient(CoreV1Api);
    const listed = await gw.readNamespacedSecret({ name: LISTED, namespace: RELEASE_NS });
    expect(listed.metadata?.name).toBe(LISTED);
    const other = await gw
      .readNamespacedSecret({ name: UNLISTED, namespace: RELEASE_NS })
      .catch((e: unknown) => e);
    expect(kubeFailure(other).status).toBe(403);
    const all = await gw.listNamespacedSecret({ namespace: RELEASE_NS }).catch((e: unknown) => e);
    expect(kubeFailure(all).status).toBe(403);
    const byName = await gw.listNamespacedSecret({
      namespace: RELEASE_NS,
      fieldSelector: `metadata.name=${LISTED}`,
    });
    expect(byName.items.map((s) => s.metadata?.name)).toEqual([LISTED]);
  });

  it('the gateway injects the value of the listed Secret', async () => {
    const r = await proxyRequest({ host: '127.0.0.1', port: gateway.proxyPort }, api('/forum/1'), {
      auth,
      headers: { authorization: 'Bearer agent-made-this-up' },
    });
    expect(r.status).toBe(200);
    expect(r.body).toBe('token 1');
    expect(seen.at(-1)).toBe(`Bearer ${TOKEN_1}`);
  });

  it('a changed Secret is used without a restart (watch); change → used is measured', async () => {
    const t0 = performance.now();
    await putSecret(LISTED, TOKEN_2);
    let usedMs = -1;
    await waitUntil('the new token in use', 20_000, async () => {
      const r = await proxyRequest({ host: '127.0.0.1', port: gateway.proxyPort }, api('/forum/2'), { auth });
      if (r.body !== 'token 2') return false;
      usedMs = performance.now() - t0;
      return true;
    });
    expect(seen.at(-1)).toBe(`Bearer ${TOKEN_2}`);
    console.log(`k8s Secret rotation: replaced -> first call with the new value ${usedMs.toFixed(1)} ms`);
    // The old value is no longer a value the gateway holds: carried by the agent it is just a header.
    const old = await proxyRequest({ host: '127.0.0.1', port: gateway.proxyPort }, api('/forum/3'), {
      auth,
      headers: { 'x-note': TOKEN_1 },
    });
    expect(old.status).toBe(200);
    // The new one is: carried elsewhere, refused.
    const leak = await proxyRequest({ host: '127.0.0.1', port: gateway.proxyPort }, api('/forum/4'), {
      auth,
      headers: { 'x-note': TOKEN_2 },
    });
    expect(leak.status).toBe(403);
    expect(leak.json()).toMatchObject({ error: 'credential_not_bound' });
  });

  it('a Secret the Role does not name gives the gateway nothing: 503 credential_unavailable, nothing sent', async () => {
    const before = seen.length;
    const r = await proxyRequest({ host: '127.0.0.1', port: gateway.proxyPort }, api('/other/1'), { auth });
    expect(r.status).toBe(503);
    expect(r.json()).toMatchObject({ error: 'credential_unavailable' });
    expect(seen.length).toBe(before);
  });

  it('a deleted Secret stops injection: 503, nothing sent', async () => {
    await core.deleteNamespacedSecret({ name: LISTED, namespace: RELEASE_NS });
    await waitUntil('the deleted value unavailable', 20_000, async () => {
      const r = await proxyRequest({ host: '127.0.0.1', port: gateway.proxyPort }, api('/forum/5'), { auth });
      return r.status === 503;
    });
    const before = seen.length;
    const r = await proxyRequest({ host: '127.0.0.1', port: gateway.proxyPort }, api('/forum/6'), { auth });
    expect(r.status).toBe(503);
    expect(seen.length).toBe(before);
  });
});
