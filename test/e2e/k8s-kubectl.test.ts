/**
 * The motivating case with Kubernetes itself as the upstream (issue 5): an agent holding a
 * credential that the API server would let change RBAC and configuration runs the real `kubectl`
 * in a Docker sandbox with the `cluster-reader` role. Airlock's gateway intercepts the HTTPS calls to
 * a real kube-apiserver (listening on the egress bridge address, serving certificate for
 * `kube.test`): reads pass, `kubectl create rolebinding` and `kubectl patch configmap` get the
 * gateway's JSON 403, and the API server, checked from the host as admin, is unchanged.
 *
 * Needs Docker, the images (`airlock images build --offline`) and the Kubernetes tools including
 * kubectl (`bash scripts/k8s-tools.sh --with-kubectl`); without them every test fails, none skips.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tar from 'tar-stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { parseConfig } from '../../src/config/load.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { TestApi } from '../helpers/api-client.js';
import { docker, networkGateway, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';
import { k8sTools, kubectl, requireKubectl, startTestCluster, type TestCluster } from '../helpers/k8s.js';
import { watchedLogger } from '../helpers/log-watch.js';

const EGRESS_SUBNET = '10.214.0.0/24';
const TOKEN = 'e2e-token-0123456789abcdef';
const BASE_IMAGE = 'airlock-sandbox:dev';
/** Test-only: the sandbox image plus kubectl, built at test time from a two-file context. */
const KUBECTL_IMAGE = 'airlock-sandbox-kubectl:test';
const NS = 'team-a';
const SANDBOX_KUBECONFIG = '/home/agent/.kube/config';

let dir: string;
let server: RunningServer | undefined;
let cluster: TestCluster | undefined;
let api: TestApi;
let hostKubectl: string;
let session: string;
let apiPort: number;
let hostGateway: string;
let agentKubeconfig: string;
let configMapBefore: { resourceVersion: string; data: Record<string, string> };
/** Set when the image build starts: afterAll removes the image. */
let imageBuilt = false;
/** A failed setup (missing tool or image, cluster not started): every test reports it, none skips. */
let setupError: unknown = null;

/** Builds KUBECTL_IMAGE FROM the sandbox image with kubectl added (no network, no host mount). */
async function buildKubectlImage(kubectlBin: string): Promise<void> {
  imageBuilt = true; // from here on afterAll removes it (a leftover of an aborted run included)
  const pack = tar.pack();
  pack.entry(
    { name: 'Dockerfile', mode: 0o644 },
    `FROM ${BASE_IMAGE}\nCOPY kubectl /usr/local/bin/kubectl\n`,
  );
  pack.entry({ name: 'kubectl', mode: 0o755 }, readFileSync(kubectlBin));
  pack.finalize();
  const stream = await docker.buildImage(pack as unknown as NodeJS.ReadableStream, {
    t: KUBECTL_IMAGE,
    rm: true,
    forcerm: true,
  });
  const output = await new Promise<Array<{ error?: string; stream?: string }>>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, res: Array<{ error?: string }>) =>
      err ? reject(err) : resolve(res),
    );
  });
  const failed = output.find((o) => o.error);
  if (failed) throw new Error(`building ${KUBECTL_IMAGE} failed: ${failed.error}`);
}

/** The admin's view of the API server, from the host (never through Airlock). */
function admin(args: string[]): ReturnType<typeof kubectl> {
  if (!cluster) throw new Error('no cluster');
  return kubectl(hostKubectl, cluster.adminKubeconfig, args);
}

async function configMap(): Promise<{ resourceVersion: string; data: Record<string, string> }> {
  const r = await admin(['get', 'configmap', 'settings', '-n', NS, '-o', 'json']);
  expect(r.exitCode, r.stderr).toBe(0);
  const cm = JSON.parse(r.stdout) as { metadata: { resourceVersion: string }; data: Record<string, string> };
  return { resourceVersion: cm.metadata.resourceVersion, data: cm.data };
}

/** kubectl inside the sandbox (HTTPS_PROXY from the sandbox environment: the gateway). */
function sandboxKubectl(args: string): ReturnType<TestApi['sh']> {
  return api.sh(session, `kubectl --request-timeout=20s ${args}`);
}

/**
 * The last response kubectl logged with -v=8 (client-go's round-tripper and body logs on stderr):
 * `"Response" status="403 Forbidden" headers=<...>` and `"Response Body" body="<quoted JSON>"`.
 */
function lastResponse(stderr: string): { status: string; headers: string; body: unknown } {
  const heads = [...stderr.matchAll(/"Response" status="([^"]*)" headers=<\n([\s\S]*?)\n\s*>/g)];
  const bodies = [...stderr.matchAll(/"Response Body" body=("(?:[^"\\]|\\.)*")/g)];
  const head = heads.at(-1);
  const body = bodies.at(-1);
  if (!head || !body) throw new Error(`no response logged by kubectl -v=8:\n${stderr}`);
  return {
    status: head[1] ?? '',
    headers: head[2] ?? '',
    body: JSON.parse(JSON.parse(body[1] ?? '""') as string) as unknown,
  };
}

function policyCsv(port: number): string {
  const host = `kube.test:${port}`;
  return [
    '# Guard rails: never change RBAC, whatever else a role is granted (deny overrides allow).',
    `p, k8s-guard, ${host}, /apis/rbac.authorization.k8s.io/*, POST, deny`,
    `p, k8s-guard, ${host}, /apis/rbac.authorization.k8s.io/*, PUT, deny`,
    `p, k8s-guard, ${host}, /apis/rbac.authorization.k8s.io/*, PATCH, deny`,
    `p, k8s-guard, ${host}, /apis/rbac.authorization.k8s.io/*, DELETE, deny`,
    '# cluster-reader: every GET (discovery under /api, /apis, /openapi included), nothing else.',
    'g, cluster-reader, k8s-guard',
    `p, cluster-reader, ${host}, /*, GET, allow`,
    '',
  ].join('\n');
}

beforeAll(async () => {
  try {
    await requireDockerAndImages(['airlock-gateway:dev', BASE_IMAGE]);
    hostKubectl = requireKubectl(k8sTools());
    await removeAirlockObjects();
    dir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-kubectl-'));
    const policyDir = path.join(dir, 'policies');
    mkdirSync(policyDir);
    writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
    writeFileSync(path.join(policyDir, 'policy.csv'), policyCsv(6443)); // port known below
    const upstreamCa = path.join(dir, 'kube-ca.pem');
    writeFileSync(upstreamCa, '');
    const cfgRaw = {
      api: { listen: '127.0.0.1:0', tokens: [{ name: 'e2e', token: TOKEN }] },
      gateway: {
        hostAliases: { 'kube.test': 'host-gateway' },
        allowPrivateCidrs: [EGRESS_SUBNET],
        tls: { upstreamCaFile: upstreamCa },
      },
      policy: { dir: policyDir },
      runtime: { docker: { egressSubnet: EGRESS_SUBNET } },
      stateDir: path.join(dir, 'state'),
    };
    // First start creates the egress network, whose host address the API server must bind.
    server = await startServer(parseConfig(cfgRaw, dir), watchedLogger());
    hostGateway = await networkGateway('airlock-egress');
    // Both settle before a failure is reported, so that afterAll finds whatever was started.
    const [started, built] = await Promise.allSettled([
      startTestCluster({ bindAddress: hostGateway, extraSans: ['kube.test'] }),
      buildKubectlImage(hostKubectl),
    ]);
    if (started.status === 'fulfilled') cluster = started.value;
    for (const r of [started, built]) if (r.status === 'rejected') throw r.reason;
    if (!cluster) throw new Error('test cluster did not start');
    apiPort = cluster.port;

    // As admin: a namespace with a ConfigMap, and an agent ServiceAccount that owns the namespace
    // (every verb on every resource there), so the API server itself would let the agent bind roles
    // and change the ConfigMap. (The built-in admin/edit/view ClusterRoles are aggregated by the
    // controller manager, which this node-less cluster does not run: they are empty here.)
    const rbac = path.join(dir, 'rbac.yaml');
    writeFileSync(
      rbac,
      [
        'apiVersion: rbac.authorization.k8s.io/v1',
        'kind: Role',
        `metadata: {name: namespace-owner, namespace: ${NS}}`,
        'rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]',
        '---',
        'apiVersion: rbac.authorization.k8s.io/v1',
        'kind: RoleBinding',
        `metadata: {name: agent-owner, namespace: ${NS}}`,
        'roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: namespace-owner}',
        `subjects: [{kind: ServiceAccount, name: agent, namespace: ${NS}}]`,
        '',
      ].join('\n'),
    );
    for (const args of [
      ['create', 'namespace', NS],
      ['create', 'configmap', 'settings', '-n', NS, '--from-literal=mode=closed'],
      ['create', 'serviceaccount', 'agent', '-n', NS],
      ['create', '-f', rbac],
    ]) {
      const r = await admin(args);
      expect(r.exitCode, `kubectl ${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    const agentToken = await cluster.serviceAccountToken(NS, 'agent');
    agentKubeconfig = cluster.kubeConfigForToken(agentToken, 'agent').file;
    configMapBefore = await configMap();

    // Restart with the API server's CA trusted upstream and the policy naming its port.
    writeFileSync(upstreamCa, cluster.caPem);
    writeFileSync(path.join(policyDir, 'policy.csv'), policyCsv(apiPort));
    await server.close();
    server = await startServer(parseConfig(cfgRaw, dir), watchedLogger());
    api = new TestApi(server.url, TOKEN);
    session = (await api.create({ role: 'cluster-reader', image: KUBECTL_IMAGE })).id;
    // The agent's kubeconfig: the real API server's name, the agent's token, and the Airlock CA bundle
    // (the gateway intercepts, so the sandbox sees the gateway's leaf for kube.test).
    const kubeconfig = [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: kube',
      `  cluster: {server: "https://kube.test:${apiPort}", certificate-authority: /etc/airlock/ca-bundle.pem}`,
      'users:',
      '- name: agent',
      `  user: {token: "${agentToken}"}`,
      'contexts:',
      '- name: kube',
      `  context: {cluster: kube, user: agent, namespace: ${NS}}`,
      'current-context: kube',
      '',
    ].join('\n');
    const w = await api.sh(
      session,
      `mkdir -p ${path.dirname(SANDBOX_KUBECONFIG)} && umask 077 && cat > ${SANDBOX_KUBECONFIG} <<'EOF'\n${kubeconfig}EOF`,
    );
    expect(w.exitCode, w.stderr).toBe(0);
  } catch (err) {
    setupError = err; // reported by every test below (never a silent skip)
  }
});

beforeEach(() => {
  if (setupError) throw setupError;
});

afterAll(async () => {
  await server?.close();
  await removeAirlockObjects();
  await cluster?.stop();
  if (imageBuilt)
    await docker
      .getImage(KUBECTL_IMAGE)
      .remove({ force: true })
      .catch(() => undefined);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the API server would allow the agent everything tested here', () => {
  it('server-side dry runs with the agent token, from the host without Airlock, succeed', async () => {
    const bind = await kubectl(hostKubectl, agentKubeconfig, [
      'create',
      'rolebinding',
      'mallory-admin',
      '-n',
      NS,
      '--role=namespace-owner',
      '--user=mallory',
      '--dry-run=server',
    ]);
    expect(bind.exitCode, bind.stderr).toBe(0);
    const patch = await kubectl(hostKubectl, agentKubeconfig, [
      'patch',
      'configmap',
      'settings',
      '-n',
      NS,
      '-p',
      '{"data":{"mode":"open"}}',
      '--dry-run=server',
    ]);
    expect(patch.exitCode, patch.stderr).toBe(0);
    expect(await configMap()).toEqual(configMapBefore);
  });
});

describe('kubectl through the gateway, over HTTPS', () => {
  it('the sandbox cannot reach the API server except through the gateway', async () => {
    const r = await api.sh(
      session,
      `curl --noproxy '*' -sk --max-time 3 https://${hostGateway}:${apiPort}/version`,
    );
    expect(r.exitCode).not.toBe(0);
  });

  it('kubectl get is allowed', async () => {
    const list = await sandboxKubectl(`get configmaps -n ${NS} -o name`);
    expect(list.exitCode, list.stderr).toBe(0);
    expect(list.stdout).toContain('configmap/settings');
    const one = await sandboxKubectl(`get configmap settings -n ${NS} -o jsonpath='{.data.mode}'`);
    expect(one.exitCode, one.stderr).toBe(0);
    expect(one.stdout).toBe('closed');
  });

  it('kubectl create rolebinding is denied with the JSON 403', async () => {
    const r = await sandboxKubectl(
      `create rolebinding mallory-admin -n ${NS} --role=namespace-owner --user=mallory -v=8`,
    );
    expect(r.exitCode).not.toBe(0);
    // The deny body is also a Kubernetes Status, so kubectl itself shows the gateway's hint.
    expect(r.stderr).toMatch(
      /^error: failed to create rolebinding: Airlock egress policy does not let role "cluster-reader" POST/m,
    );
    const res = lastResponse(r.stderr);
    expect(res.status).toBe('403 Forbidden');
    expect(res.headers).toMatch(/^\s*X-Airlock-Decision: deny$/im);
    expect(res.body).toEqual({
      error: 'egress_denied',
      sessionId: session,
      role: 'cluster-reader',
      method: 'POST',
      url: `https://kube.test:${apiPort}/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`,
      policyVersion: expect.stringMatching(/^\S+$/),
      hint: expect.stringContaining('This is a policy decision, not a network fault'),
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      reason: 'Forbidden',
      code: 403,
      message: expect.stringContaining('This is a policy decision, not a network fault'),
    });
  });

  it('kubectl patch configmap is denied with the JSON 403', async () => {
    const r = await sandboxKubectl(`patch configmap settings -n ${NS} -p '{"data":{"mode":"open"}}' -v=8`);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(
      /^Error from server \(Forbidden\): Airlock egress policy does not let role "cluster-reader" PATCH/m,
    );
    const res = lastResponse(r.stderr);
    expect(res.status).toBe('403 Forbidden');
    expect(res.headers).toMatch(/^\s*X-Airlock-Decision: deny$/im);
    expect(res.body).toMatchObject({
      error: 'egress_denied',
      sessionId: session,
      role: 'cluster-reader',
      method: 'PATCH',
      url: `https://kube.test:${apiPort}/api/v1/namespaces/${NS}/configmaps/settings`,
    });
  });

  it('the API server is unchanged (checked from the host as admin)', async () => {
    const rb = await admin(['get', 'rolebindings', '-n', NS, '-o', 'name']);
    expect(rb.exitCode, rb.stderr).toBe(0);
    expect(rb.stdout.trim().split('\n')).toEqual(['rolebinding.rbac.authorization.k8s.io/agent-owner']);
    const missing = await admin(['get', 'rolebinding', 'mallory-admin', '-n', NS]);
    expect(missing.exitCode).not.toBe(0);
    expect(missing.stderr).toMatch(/NotFound/);
    expect(await configMap()).toEqual(configMapBefore);
  });

  it('the session audit has the allowed reads and both denials with rule and policy version', async () => {
    const policy = (await (await api.raw('GET', '/v1/policy')).json()) as { version: string };
    const events = await api.audit(session);
    const kube = events.filter((e) => e.host === 'kube.test' && e.port === apiPort);
    const reads = kube.filter((e) => e.method === 'GET');
    expect(reads.length).toBeGreaterThan(0);
    for (const e of reads)
      expect(e).toMatchObject({ decision: 'allow', reason: 'rule_allow', scheme: 'https' });
    expect(reads.map((e) => e.path)).toContain(`/api/v1/namespaces/${NS}/configmaps`);

    const denied = kube.filter((e) => e.decision === 'deny');
    const byMethod = (m: string): AuditEvent | undefined => denied.find((e) => e.method === m);
    expect(byMethod('POST')).toMatchObject({
      scheme: 'https',
      path: `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`,
      status: 403,
      reason: 'rule_deny',
      rule: expect.stringMatching(
        /^policy\.csv:\d+: p, k8s-guard, kube\.test:\d+, \/apis\/rbac\.authorization\.k8s\.io\/\*, POST, deny$/,
      ),
      policyVersion: policy.version,
      bytesOut: 0,
    });
    expect(byMethod('PATCH')).toMatchObject({
      scheme: 'https',
      path: `/api/v1/namespaces/${NS}/configmaps/settings`,
      status: 403,
      reason: 'no_match',
      rule: null,
      policyVersion: policy.version,
      bytesOut: 0,
    });
    expect(denied.map((e) => e.method).sort()).toEqual(['PATCH', 'POST']);
  });
});
