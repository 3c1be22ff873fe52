/**
 * HTTPS interception on the Kubernetes runtime, on a real kube-apiserver + etcd with the chart installed
 * by the real helm (test/helpers/k8s.ts; no nodes): the CA Secret the chart creates empty is filled once
 * by the control plane (under the chart's controller ServiceAccount token) and reused across restarts
 * and `helm upgrade`; the gateway Deployment mounts it read-only; the sandbox namespace gets a trust
 * bundle ConfigMap and never the key; sandbox Pods mount the bundle at /etc/airlock with the trust
 * variables; RBAC lets the controller read/write that one Secret name and nothing else in the release
 * namespace. Then the path end to end on loopback: a gateway whose caDir holds the Secret's files (as
 * the kubelet projects them) intercepts a sandbox's CONNECT, and a client trusting only the bundle
 * ConfigMap gets an allowed GET through and a POST denied; a rotation reaches the running gateway.
 *
 * Missing tools or a failed cluster start fail every test (never a skip).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import {
  AppsV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1Pod,
  type V1Secret,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditIndex } from '../../src/audit/index-reader.js';
import type { Config } from '../../src/config/schema.js';
import { ConfigError, RuntimeError } from '../../src/errors.js';
import { startGatewayService, type RunningGateway } from '../../src/gateway/service.js';
import { CA_FILE_NAMES, type CaMaterial } from '../../src/pki/ca.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore } from '../../src/policy/store.js';
import { KubernetesRuntime } from '../../src/runtime/kubernetes/runtime.js';
import { SessionManager } from '../../src/sessions/manager.js';
import {
  FakeKubelet,
  GATEWAY_ADMIN_TOKEN as ADMIN_TOKEN,
  installAirlockChart,
  kubernetesControlPlaneConfig,
  RELEASE,
  RELEASE_NS as NS,
  repoRoot,
  SANDBOX_NS,
  startPodWatchGateway,
  startTestCluster,
  waitUntil,
  type TestCluster,
} from '../helpers/k8s.js';
import { makeTestPki } from '../helpers/tls-upstream.js';

const CA_SECRET = 'airlock-ca';
const BUNDLE = 'airlock-ca-bundle';

let cluster: TestCluster;
let admin: KubeConfig;
let core: CoreV1Api;
let controllerKubeconfigFile: string;
let controllerKc: KubeConfig;
let gatewayKubeconfigFile: string;
let work: string;
let caDir: string;
let upstream: https.Server;
let upstreamPort: number;
let upstreamCaFile: string;
let gateway: RunningGateway | null = null;
let setupError: unknown = null;
const runtimes: KubernetesRuntime[] = [];

const sha256Hex = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');
const fingerprint = (pem: string): string => sha256Hex(new X509Certificate(pem).raw);

function config(
  extra: { kubeconfig?: string; intercept?: boolean; ca?: Record<string, unknown> } = {},
): Config {
  return kubernetesControlPlaneConfig({
    work,
    policyDir: path.join(work, 'policies'),
    kubeconfig: extra.kubeconfig ?? controllerKubeconfigFile,
    gateway: { port: gateway?.proxyPort ?? 3128, tls: { intercept: extra.intercept ?? true } },
    adminUrls: gateway ? [`http://127.0.0.1:${gateway.adminPort}`] : ['http://127.0.0.1:9'],
    kubernetes: { ca: { secretName: CA_SECRET, bundleConfigMap: BUNDLE, ...extra.ca } },
  });
}

/** A control-plane runtime (closed after the tests). */
function newRuntime(cfg: Config = config()): KubernetesRuntime {
  const r = new KubernetesRuntime(cfg, { adminToken: ADMIN_TOKEN });
  runtimes.push(r);
  return r;
}

const readCaSecret = (): Promise<V1Secret> => core.readNamespacedSecret({ name: CA_SECRET, namespace: NS });
const decode = (s: V1Secret, key: string): string => Buffer.from(s.data?.[key] ?? '', 'base64').toString();
const bundlePem = async (): Promise<string> =>
  (await core.readNamespacedConfigMap({ name: BUNDLE, namespace: SANDBOX_NS })).data?.['ca-bundle.pem'] ?? '';

/** Plays the kubelet for the gateway Pod: the Secret's keys as files in caDir (0400, atomic renames). */
async function projectCaSecret(): Promise<void> {
  const s = await readCaSecret();
  mkdirSync(caDir, { recursive: true });
  for (const key of CA_FILE_NAMES) {
    if (!s.data?.[key]) continue;
    const tmp = path.join(caDir, `.${key}.tmp`);
    writeFileSync(tmp, decode(s, key), { mode: 0o400 });
    renameSync(tmp, path.join(caDir, key));
  }
}

/** Plays the kubelet for sandbox Pods: Running and the next 127.0.0.x from .40 (test/helpers/k8s.ts). */
const fakeKubelet = (): FakeKubelet => new FakeKubelet(core, { firstHost: 40 });

/**
 * A sandbox's HTTPS request through the gateway: CONNECT from `localAddress` with the session's proxy
 * credential, then TLS trusting only `ca` (the bundle), SNI and Host `secure.test`.
 */
async function httpsViaGateway(
  localAddress: string,
  auth: string,
  ca: string,
  method: string,
  urlPath: string,
): Promise<{ status: number; body: string; issuerSha256: string }> {
  const authority = `secure.test:${upstreamPort}`;
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: gateway!.proxyPort,
      method: 'CONNECT',
      path: authority,
      headers: { host: authority, 'proxy-authorization': `Basic ${Buffer.from(auth).toString('base64')}` },
      localAddress,
      agent: false,
    });
    req.once('connect', (res, s) => {
      if (res.statusCode === 200) resolve(s);
      else reject(new Error(`CONNECT answered ${res.statusCode}`));
    });
    req.once('error', reject);
    req.end();
  });
  return new Promise((resolve, reject) => {
    let issuerSha256 = '';
    const req = https.request({
      host: 'secure.test',
      port: upstreamPort,
      method,
      path: urlPath,
      headers: { host: authority, 'content-type': 'application/json' },
      // No agent: the request runs on this TLS socket inside the tunnel (no DNS, no pooling).
      createConnection: () => {
        const t = tls.connect({ socket, servername: 'secure.test', ca });
        t.once('secureConnect', () => {
          const issuer = t.getPeerCertificate(true).issuerCertificate as
            tls.DetailedPeerCertificate | undefined;
          issuerSha256 = issuer?.raw ? sha256Hex(issuer.raw) : '';
        });
        return t;
      },
    });
    req.once('error', reject);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => {
        socket.destroy();
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), issuerSha256 });
      });
    });
    req.end(method === 'GET' ? undefined : '{}');
  });
}

function startGateway(): Promise<RunningGateway> {
  return startPodWatchGateway(
    {
      policyDir: path.join(work, 'policies'),
      auditFile: path.join(work, 'audit-gw.jsonl'),
      kubeconfig: gatewayKubeconfigFile,
    },
    {
      hostAliases: { 'secure.test': '127.0.0.1' },
      allowPrivateCidrs: ['127.0.0.0/8'],
      caDir,
      caWaitSeconds: 10,
      caReloadSeconds: 1,
      upstreamCaFile,
    },
  );
}

beforeAll(async () => {
  try {
    work = mkdtempSync(path.join(os.tmpdir(), 'airlock-k8s-tls-'));
    caDir = path.join(work, 'gateway-ca');
    writeFileSync(path.join(work, 'admin-token'), ADMIN_TOKEN + '\n');
    // The upstream: HTTPS with a test CA the gateway trusts through upstreamCaFile.
    const pki = await makeTestPki();
    const leaf = await pki.issue('secure.test');
    upstreamCaFile = path.join(work, 'upstream-ca.pem');
    writeFileSync(upstreamCaFile, pki.caPem);
    upstream = https.createServer({ cert: leaf.cert, key: leaf.key }, (req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ method: req.method, url: req.url }));
    });
    upstreamPort = await new Promise<number>((resolve) =>
      upstream.listen(0, '127.0.0.1', () => resolve((upstream.address() as net.AddressInfo).port)),
    );
    mkdirSync(path.join(work, 'policies'));
    writeFileSync(path.join(work, 'policies', 'model.conf'), CANONICAL_MODEL);
    writeFileSync(
      path.join(work, 'policies', 'policy.csv'),
      `p, reader, secure.test:${upstreamPort}, /posts/*, GET, allow\n`,
    );

    cluster = await startTestCluster();
    admin = cluster.admin();
    core = admin.makeApiClient(CoreV1Api);
    ({ controllerKc, controllerKubeconfigFile, gatewayKubeconfigFile } = await installAirlockChart(cluster));
  } catch (err) {
    setupError = err;
  }
}, 180_000);

beforeEach(() => {
  if (setupError) throw setupError;
});

afterAll(async () => {
  for (const r of runtimes) await r.close().catch(() => undefined);
  await gateway?.close().catch(() => undefined);
  upstream?.close();
  await cluster?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the CA Secret (release namespace)', () => {
  let first: CaMaterial;

  it('the chart creates it empty (no key in any template) and keeps it on uninstall', async () => {
    const s = await readCaSecret();
    expect(s.type).toBe('Opaque');
    expect(s.data ?? {}).toEqual({});
    expect(s.metadata?.annotations?.['helm.sh/resource-policy']).toBe('keep');
  });

  it('is filled once by the controller, even by two starting at the same time', async () => {
    const [a, b] = await Promise.all([newRuntime().ensureTrust(), newRuntime().ensureTrust()]);
    expect(a!.certPem).toBe(b!.certPem); // one wrote, the other lost the resourceVersion race and re-read
    first = a!;
    const s = await readCaSecret();
    expect(s.type).toBe('Opaque');
    expect(Object.keys(s.data ?? {}).sort()).toEqual(['ca.crt', 'ca.key']);
    const cert = new X509Certificate(decode(s, 'ca.crt'));
    expect(cert.ca).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(decode(s, 'ca.key')))).toBe(
      true,
    );
    expect(decode(s, 'ca.key')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(s.metadata?.annotations?.['airlock.io/ca-sha256']).toBe(fingerprint(first.certPem));
    // Helm's labels and annotations survive the controller's write.
    expect(s.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('Helm');
    expect(s.metadata?.annotations?.['helm.sh/resource-policy']).toBe('keep');
  });

  it('is reused across controller restarts: nothing is written again', async () => {
    const before = await readCaSecret();
    const cm = await core.readNamespacedConfigMap({ name: BUNDLE, namespace: SANDBOX_NS });
    const again = await newRuntime().ensureTrust();
    expect(again!.certPem).toBe(first.certPem);
    expect((await readCaSecret()).metadata?.resourceVersion).toBe(before.metadata?.resourceVersion);
    expect(
      (await core.readNamespacedConfigMap({ name: BUNDLE, namespace: SANDBOX_NS })).metadata?.resourceVersion,
    ).toBe(cm.metadata?.resourceVersion);
  });

  it('survives `helm upgrade` that changes the Secret manifest (Helm never writes its data)', async () => {
    await cluster.helm([
      'upgrade',
      RELEASE,
      path.join(repoRoot, 'charts/airlock'),
      '--namespace',
      NS,
      '-f',
      path.join(repoRoot, 'charts/airlock/ci/local-images-values.yaml'),
      '--set',
      'commonLabels.upgraded=yes',
    ]);
    const s = await readCaSecret();
    expect(s.metadata?.labels?.upgraded).toBe('yes'); // Helm did patch this Secret
    expect(decode(s, 'ca.crt')).toBe(first.certPem);
    expect(decode(s, 'ca.key')).toBe(first.keyPem);
  });

  it('the gateway Deployment mounts it read-only (0400, fsGroup), in the gateway container only, as caDir', async () => {
    const d = await admin
      .makeApiClient(AppsV1Api)
      .readNamespacedDeployment({ name: 'airlock-gateway', namespace: NS });
    const pod = d.spec!.template.spec!;
    expect(pod.securityContext).toMatchObject({ runAsUser: 10002, runAsGroup: 10002, fsGroup: 10002 });
    const vol = pod.volumes?.find((v) => v.name === 'ca');
    expect(vol?.projected).toEqual({ defaultMode: 0o400, sources: [{ secret: { name: CA_SECRET } }] });
    const gw = pod.containers.find((c) => c.name === 'gateway')!;
    expect(gw.volumeMounts).toContainEqual({ name: 'ca', mountPath: '/etc/airlock/ca', readOnly: true });
    for (const c of [...pod.containers, ...(pod.initContainers ?? [])].filter((x) => x.name !== 'gateway'))
      expect(c.volumeMounts?.map((m) => m.name)).not.toContain('ca');
    const cfg = JSON.parse(gw.env!.find((e) => e.name === 'AIRLOCK_GATEWAY_CONFIG')!.value!) as Record<
      string,
      unknown
    >;
    expect(cfg).toMatchObject({ caDir: '/etc/airlock/ca', caReloadSeconds: 30 });
    // Only the controller's Deployment carries no CA mount at all (it uses the API).
    const ctl = await admin
      .makeApiClient(AppsV1Api)
      .readNamespacedDeployment({ name: 'airlock-controller', namespace: NS });
    expect(JSON.stringify(ctl.spec)).not.toContain(CA_SECRET + '"');
  });

  it('a missing Secret: created when the identity may (outside the chart), a clear error when not', async () => {
    const viaAdmin = newRuntime(
      config({ kubeconfig: cluster.adminKubeconfig, ca: { secretName: 'other-ca' } }),
    );
    const m = await viaAdmin.ensureTrust();
    const created = await core.readNamespacedSecret({ name: 'other-ca', namespace: NS });
    expect(decode(created, 'ca.crt')).toBe(m!.certPem);
    expect(created.metadata?.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'airlock' });
    await core.deleteNamespacedSecret({ name: 'other-ca', namespace: NS });
    // The chart's controller may touch only its own Secret name.
    await expect(newRuntime(config({ ca: { secretName: 'other-ca' } })).ensureTrust()).rejects.toThrow(
      /may not read the CA Secret airlock\/other-ca/,
    );
    // An incomplete CA is never replaced silently.
    await core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: 'half-ca' }, stringData: { 'ca.crt': first.certPem } },
    });
    const half = newRuntime(config({ kubeconfig: cluster.adminKubeconfig, ca: { secretName: 'half-ca' } }));
    await expect(half.ensureTrust()).rejects.toThrow(
      /half-ca is unusable: the CA needs both ca.crt and ca.key/,
    );
    await expect(half.ensureTrust()).rejects.toBeInstanceOf(RuntimeError);
  });
});

describe('RBAC for the CA, checked by the API server', () => {
  const can = async (user: string, attrs: Record<string, string>): Promise<boolean> => {
    const r = await admin.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
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
  const controller = `system:serviceaccount:${NS}:airlock-controller`;
  const gatewaySa = `system:serviceaccount:${NS}:airlock-gateway`;

  it('the controller can read and write the CA Secret by name, and no other Secret in the release namespace', async () => {
    for (const verb of ['get', 'update'])
      expect(await can(controller, { namespace: NS, verb, resource: 'secrets', name: CA_SECRET }), verb).toBe(
        true,
      );
    const denied: Array<Record<string, string>> = [
      { verb: 'create', resource: 'secrets' },
      { verb: 'create', resource: 'secrets', name: CA_SECRET },
      { verb: 'create', resource: 'secrets', name: 'anything' },
      { verb: 'delete', resource: 'secrets', name: CA_SECRET },
      { verb: 'patch', resource: 'secrets', name: CA_SECRET },
      { verb: 'list', resource: 'secrets' },
      { verb: 'watch', resource: 'secrets' },
      { verb: 'get', resource: 'secrets', name: 'airlock-tokens' },
      { verb: 'update', resource: 'secrets', name: 'airlock-tokens' },
      { verb: 'get', resource: 'secrets', name: 'sh.helm.release.v1.airlock.v1' },
      { verb: 'get', resource: 'configmaps', name: BUNDLE },
      { verb: 'create', resource: 'configmaps' },
      { verb: 'create', resource: 'pods' },
    ];
    for (const a of denied)
      expect(await can(controller, { namespace: NS, ...a }), JSON.stringify(a)).toBe(false);
    // The CA name grants nothing in other namespaces.
    for (const ns of [SANDBOX_NS, 'default', 'kube-system'])
      expect(
        await can(controller, { namespace: ns, verb: 'get', resource: 'secrets', name: CA_SECRET }),
        ns,
      ).toBe(false);
  });

  it('the controller can create configmaps in the sandbox namespace, read/write only the bundle there', async () => {
    const allowed: Array<Record<string, string>> = [
      { verb: 'create', resource: 'configmaps' },
      { verb: 'get', resource: 'configmaps', name: BUNDLE },
      { verb: 'update', resource: 'configmaps', name: BUNDLE },
    ];
    for (const a of allowed)
      expect(await can(controller, { namespace: SANDBOX_NS, ...a }), JSON.stringify(a)).toBe(true);
    const denied: Array<Record<string, string>> = [
      { namespace: SANDBOX_NS, verb: 'get', resource: 'configmaps', name: 'kube-root-ca.crt' },
      { namespace: SANDBOX_NS, verb: 'list', resource: 'configmaps' },
      { namespace: SANDBOX_NS, verb: 'delete', resource: 'configmaps', name: BUNDLE },
      { namespace: 'default', verb: 'create', resource: 'configmaps' },
    ];
    for (const a of denied) expect(await can(controller, a), JSON.stringify(a)).toBe(false);
  });

  it('the gateways cannot read the CA through the API (only the kubelet mounts it)', async () => {
    expect(await can(gatewaySa, { namespace: NS, verb: 'get', resource: 'secrets', name: CA_SECRET })).toBe(
      false,
    );
  });

  it('with its own token the controller reads the CA Secret but not the tokens Secret', async () => {
    const c = controllerKc.makeApiClient(CoreV1Api);
    expect((await c.readNamespacedSecret({ name: CA_SECRET, namespace: NS })).data?.['ca.crt']).toBeTruthy();
    await expect(c.readNamespacedSecret({ name: 'airlock-tokens', namespace: NS })).rejects.toMatchObject({
      code: 403,
    });
    await expect(c.listNamespacedSecret({ namespace: NS })).rejects.toMatchObject({ code: 403 });
  });
});

describe('sandboxes: the trust bundle, and HTTPS through the intercepting gateway', () => {
  let kubelet: FakeKubelet;
  let policy: PolicyStore;
  let auditIndex: AuditIndex;
  let manager: SessionManager;
  let runtime: KubernetesRuntime;
  let ca: CaMaterial;

  beforeAll(async () => {
    if (setupError) return;
    ca = (await newRuntime().ensureTrust())!;
    await projectCaSecret();
    gateway = await startGateway();
    kubelet = fakeKubelet();
    kubelet.start();
    const cfg = config();
    policy = await PolicyStore.open(cfg.policy.dir);
    auditIndex = new AuditIndex(path.join(work, 'audit.jsonl'));
    await auditIndex.start();
    runtime = newRuntime(cfg);
    manager = new SessionManager(cfg, runtime, policy, auditIndex);
    await manager.start();
  });

  afterAll(() => {
    kubelet?.stop();
    manager?.stop();
    auditIndex?.close();
    policy?.close();
  });

  it('the bundle ConfigMap: system roots + the CA, certificates only', async () => {
    const cm = await core.readNamespacedConfigMap({ name: BUNDLE, namespace: SANDBOX_NS });
    expect(cm.metadata?.labels).toMatchObject({
      'app.kubernetes.io/managed-by': 'airlock',
      'app.kubernetes.io/component': 'ca-bundle',
      'airlock.io/instance': RELEASE,
    });
    expect(cm.metadata?.annotations?.['airlock.io/ca-sha256']).toBe(fingerprint(ca.certPem));
    const bundle = cm.data?.['ca-bundle.pem'] ?? '';
    expect(Object.keys(cm.data ?? {})).toEqual(['ca-bundle.pem']);
    expect(bundle.endsWith(ca.certPem)).toBe(true);
    expect(bundle.match(/BEGIN CERTIFICATE/g)!.length).toBeGreaterThan(50); // the system roots come first
    expect(bundle).not.toMatch(/PRIVATE KEY/);
  });

  it('a sandbox Pod mounts the bundle read-only at /etc/airlock and names it in the trust variables', async () => {
    const view = await manager.create({ role: 'reader' }, 'tester');
    const pod: V1Pod = await core.readNamespacedPod({ name: `airlock-${view.id}`, namespace: SANDBOX_NS });
    expect(pod.spec?.volumes?.find((v) => v.name === 'airlock-trust')?.configMap).toEqual({
      name: BUNDLE,
      items: [{ key: 'ca-bundle.pem', path: 'ca-bundle.pem' }],
      defaultMode: 0o444,
    });
    const c = pod.spec!.containers[0]!;
    expect(c.volumeMounts).toContainEqual({
      name: 'airlock-trust',
      mountPath: '/etc/airlock',
      readOnly: true,
    });
    expect(c.securityContext?.readOnlyRootFilesystem).toBe(true);
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
    for (const v of [
      'SSL_CERT_FILE',
      'NODE_EXTRA_CA_CERTS',
      'REQUESTS_CA_BUNDLE',
      'CURL_CA_BUNDLE',
      'GIT_SSL_CAINFO',
    ])
      expect(env[v], v).toBe('/etc/airlock/ca-bundle.pem');
    expect(env.NODE_USE_ENV_PROXY).toBe('1');
    await manager.remove(view.id);
  });

  it('no object in the sandbox namespace contains the CA private key', async () => {
    const view = await manager.create({ role: 'reader' }, 'tester'); // a live session's objects too
    const keyBody = ca.keyPem.replace(/-----[^-]+-----|\s/g, '');
    const texts: string[] = [];
    for (const s of (await core.listNamespacedSecret({ namespace: SANDBOX_NS })).items) {
      texts.push(JSON.stringify(s));
      for (const v of Object.values(s.data ?? {})) texts.push(Buffer.from(v, 'base64').toString());
    }
    for (const list of [
      await core.listNamespacedConfigMap({ namespace: SANDBOX_NS }),
      await core.listNamespacedPod({ namespace: SANDBOX_NS }),
      await core.listNamespacedServiceAccount({ namespace: SANDBOX_NS }),
    ])
      for (const o of list.items) texts.push(JSON.stringify(o));
    expect(texts.length).toBeGreaterThan(4);
    for (const t of texts) {
      expect(t).not.toContain('PRIVATE KEY');
      expect(t).not.toContain(keyBody.slice(0, 40));
      expect(t).not.toContain(CA_SECRET + '"'); // not even a reference to the Secret
    }
    await manager.remove(view.id);
  });

  it('HTTPS from a sandbox trusting only the bundle: GET allowed through the interception, POST denied', async () => {
    const view = await manager.create({ role: 'reader' }, 'tester');
    const name = `airlock-${view.id}`;
    const ip = kubelet.assigned.get(name)!;
    const s = await core.readNamespacedSecret({ name, namespace: SANDBOX_NS });
    const url = new URL(decode(s, 'proxy-url'));
    const auth = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    const bundle = await bundlePem();
    await waitUntil('the gateway watch to bind the Pod IP', 5_000, () => !!gateway!.sessions.atAddress(ip));
    const ok = await httpsViaGateway(ip, auth, bundle, 'GET', '/posts/1');
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ method: 'GET', url: '/posts/1' });
    expect(ok.issuerSha256).toBe(fingerprint(ca.certPem)); // the leaf was minted by the installation CA
    const denied = await httpsViaGateway(ip, auth, bundle, 'POST', '/posts');
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toMatchObject({ error: 'egress_denied', sessionId: view.id });
    // Without the bundle (system roots only) the handshake fails: no silent downgrade.
    await expect(
      httpsViaGateway(ip, auth, tls.rootCertificates.join('\n'), 'GET', '/posts/1'),
    ).rejects.toThrow(/certificate/i);
    await manager.remove(view.id);
  });

  it('rotation: the bundle keeps the old CA for the overlap, the running gateway switches without a restart', async () => {
    const view = await manager.create({ role: 'reader' }, 'tester');
    const name = `airlock-${view.id}`;
    const ip = kubelet.assigned.get(name)!;
    const url = new URL(
      decode(await core.readNamespacedSecret({ name, namespace: SANDBOX_NS }), 'proxy-url'),
    );
    const auth = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    const rotated = await runtime.rotateCa(3_600_000);
    expect(rotated.certPem).not.toBe(ca.certPem);
    const s = await readCaSecret();
    expect(Object.keys(s.data ?? {}).sort()).toEqual([
      'ca.crt',
      'ca.key',
      'previous.crt',
      'previous.expires',
    ]);
    expect(decode(s, 'previous.crt')).toBe(ca.certPem);
    const bundle = await bundlePem();
    expect(bundle.endsWith(rotated.certPem + ca.certPem)).toBe(true);
    await projectCaSecret(); // the kubelet refreshes the gateway's projected volume
    await waitUntil('the gateway to mint with the new CA', 10_000, async () => {
      const r = await httpsViaGateway(ip, auth, bundle, 'GET', '/posts/2');
      return r.status === 200 && r.issuerSha256 === fingerprint(rotated.certPem);
    });
    // A sandbox that only trusts the new CA works too.
    const fresh = await httpsViaGateway(ip, auth, rotated.certPem, 'GET', '/posts/3');
    expect(fresh.status).toBe(200);
    await manager.remove(view.id);
  });

  it('interception off: no bundle volume or trust variables on the Pod', async () => {
    const r = newRuntime(config({ intercept: false }));
    expect(await r.ensureTrust()).toBeNull();
    const sessionId = 's-00000000000000dd';
    await r.prepare({
      sessionId,
      role: 'reader',
      image: 'airlock-sandbox:dev',
      env: {},
      credential: 'c',
      credentialSha256: 'a'.repeat(64),
      createdAt: new Date(),
      expiresAt: new Date(Date.now() + 60_000),
      createdBy: 'tester',
      labels: {},
    });
    const pod = await core.readNamespacedPod({ name: `airlock-${sessionId}`, namespace: SANDBOX_NS });
    expect(JSON.stringify(pod.spec)).not.toMatch(/airlock-trust|SSL_CERT_FILE|ca-bundle/);
    await r.remove(sessionId);
  });
});

describe('the gateway side of a fresh install', () => {
  it('waits for the CA files the kubelet projects once the controller filled the Secret', async () => {
    const dir = path.join(work, 'late-ca');
    mkdirSync(dir);
    const src = await readCaSecret();
    setTimeout(() => {
      for (const key of ['ca.crt', 'ca.key'])
        writeFileSync(path.join(dir, key), decode(src, key), { mode: 0o400 });
    }, 700);
    const g = await startGatewayService(
      {
        port: 0,
        adminPort: 0,
        listenHost: '127.0.0.1',
        policyDir: path.join(work, 'policies'),
        auditFile: path.join(work, 'audit-late.jsonl'),
        auditStdout: false,
        caDir: dir,
        caWaitSeconds: 10,
      },
      ADMIN_TOKEN,
    );
    await g.close();
    // Without a wait, an empty caDir is a config error naming the file.
    await expect(
      startGatewayService(
        {
          port: 0,
          adminPort: 0,
          listenHost: '127.0.0.1',
          policyDir: path.join(work, 'policies'),
          auditFile: path.join(work, 'audit-none.jsonl'),
          auditStdout: false,
          caDir: path.join(work, 'no-ca'),
        },
        ADMIN_TOKEN,
      ),
    ).rejects.toThrow(ConfigError);
  });
});
