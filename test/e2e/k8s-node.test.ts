/**
 * Helm install on a cluster whose Pods run (issue 16): the one-node cluster of scripts/k8s-node.sh
 * (real kubelet + containerd, kube-proxy, kube-router enforcing NetworkPolicy, CoreDNS), brought up
 * by CI before the e2e tier. Nothing here plays the kubelet.
 *
 *  1. enforcement first: a probe Pod denied by a NetworkPolicy cannot connect (and can without it);
 *  2. `helm install` with documented values only, every Pod Ready, `helm test --logs` passes;
 *  3. a session's Pod runs; curl inside it: allowed GET 200 from json-server through the gateway,
 *     POST 403 with the contract's body, the upstream unchanged;
 *  4. every other way out of the sandbox Pod fails, and once, with the enforcer off, a probe
 *     connects (the probes are not vacuous);
 *  5. kill switch with two gateway replicas, DELETE -> last allowed call measured;
 *     approvals (issue 9) across the replicas: an `ask` call refused 403 approval_required, approved
 *     through the controller's API, the retry forwarded once whichever replica takes it; a grant
 *     honoured by every replica, after Pod updates and by a replacement replica; 503
 *     approval_unavailable while the controller is down;
 *  6. GitOps (policies.source: git, the chart's sync sidecar with `policies.git.syncer: airlock`):
 *     a policy repository served by git http-backend on the node; a pushed commit enforced on both
 *     gateway replicas (commit -> enforced measured), a broken commit keeps the last good policy on
 *     every replica with the reason visible;
 *  7. upgrade and uninstall leave no sandbox Pods, Secrets or NetworkPolicies.
 *
 * Upstreams listen on the node's own address (json-server) or on a link-local address of a bridge
 * this test creates; nothing leaves the machine.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { TestApi, curlResult } from '../helpers/api-client.js';
import { repoRoot } from '../helpers/k8s.js';
import {
  cmd,
  helm,
  kubectl,
  linkLocalListener,
  podConnects,
  podSh,
  portForward,
  requireNode,
  setEnforcer,
  waitUntil,
  type NodeEnv,
} from '../helpers/k8s-node.js';
import { startTlsUpstreams, type TlsUpstreams } from '../helpers/tls-upstream.js';
import { startEtcd, startJsonServer, type Etcd, type JsonServer } from '../helpers/upstreams.js';

const RELEASE = 'airlock';
const NS = 'airlock';
const SANDBOX_NS = 'airlock-sandboxes';
const PROBE_NS = 'airlock-e2e-probe';
const TOKEN = 'ci-api-token-0123456789abcdef'; // ci/local-images-values.yaml
const chart = path.join(repoRoot, 'charts/airlock');
/** nginx's TLS ports on the node (fixed: the policy names them; not the Docker e2e's 9443-9445). */
const HTTPS_PORTS = { secure: 19443, expired: 19444, wrongName: 19445 };
/** nginx's plain-http git port on the node: the policy repository of the GitOps case. */
const GIT_HTTP_PORT = 19446;
/**
 * The tier's `ask` rule (issue 9): an analyst's edit of a post waits for a person's approval (not a
 * comment: policies/tests expect analysts' comments denied and responders', who inherit, allowed).
 */
const ASK_RULE = 'p, analyst, forum.test:3000, /posts/:id, PATCH, ask';
/** A caller name the policy gives egress rules (PUT /posts/:id only); no API token carries it. */
const LIMITED_CREATOR = 'e2e-limited';
/** The controller's approvals port (the chart's approvals.internalPort default). */
const APPROVALS_PORT = 8081;

let n: NodeEnv;
let forum: JsonServer;
let tlsUp: TlsUpstreams | undefined;
let etcd: Etcd | undefined;
/** policies/policy.csv plus the HTTPS upstream's rules, installed with --set-file policies.files. */
let policyFile = '';
let metadata: Awaited<ReturnType<typeof linkLocalListener>> | undefined;
let api: TestApi;
let stopForward: (() => Promise<void>) | undefined;
let setupError: unknown = null;
const timings: Record<string, string> = {};

const ms = (t0: number): string => `${Date.now() - t0} ms`;
const GIT_AUTHOR = {
  GIT_AUTHOR_NAME: 'e2e',
  GIT_AUTHOR_EMAIL: 'e2e@airlock.test',
  GIT_COMMITTER_NAME: 'e2e',
  GIT_COMMITTER_EMAIL: 'e2e@airlock.test',
};

beforeAll(async () => {
  try {
    n = await requireNode();
    // json-server on the node's own address, port 3000 as policies/policy.csv names forum.test:3000.
    forum = await startJsonServer(n.nodeIp, 3000);
    metadata = await linkLocalListener();
    // etcd (Debian's) as config.test:2379, the policy's config store, seeded with one key.
    etcd = await startEtcd(n.nodeIp, 2379);
    await etcd.etcdctl('put', 'app/feature-flags', '{"beta":false}');
    // nginx with a test CA's certificate in front of json-server, and git over HTTPS.
    tlsUp = await startTlsUpstreams(n.nodeIp, forum.url, HTTPS_PORTS, { plainGitPort: GIT_HTTP_PORT });
    const dir = mkdtempSync(path.join(tmpdir(), 'airlock-k8s-node-'));
    policyFile = path.join(dir, 'policy.csv');
    writeFileSync(
      policyFile,
      readFileSync(path.join(repoRoot, 'policies/policy.csv'), 'utf8') +
        [
          `p, analyst, secure.test:${HTTPS_PORTS.secure}, /posts/*, GET, allow`,
          `p, analyst, secure.test:${HTTPS_PORTS.secure}, /git/repo.git/info/refs, GET, allow`,
          `p, analyst, secure.test:${HTTPS_PORTS.secure}, /git/repo.git/git-upload-pack, POST, allow`,
          // Approvals (issue 9): an edit waits for a person.
          ASK_RULE,
          // A creator with egress rules of its own (docs/policy.md "Delegation"): only replacing posts.
          `p, ${LIMITED_CREATOR}, forum.test:3000, /posts/:id, PUT, allow`,
        ].join('\n') +
        '\n',
    );
    await cleanup(); // leftovers of an aborted run
  } catch (err) {
    setupError = err;
  }
}, 300_000);

beforeEach(() => {
  if (setupError) throw setupError;
});

afterAll(async () => {
  for (const [k, v] of Object.entries(timings)) console.log(`[k8s-node e2e] ${k}: ${v}`);
  await stopForward?.();
  if (n) await cleanup().catch((e: unknown) => console.error('cleanup:', e));
  await tlsUp?.stop();
  await etcd?.stop();
  await forum?.stop();
  await metadata?.stop();
}, 300_000);

async function cleanup(): Promise<void> {
  await helm(n, ['uninstall', RELEASE, '-n', NS, '--wait', '--timeout', '2m']);
  await kubectl(
    n,
    ['delete', 'namespace', NS, SANDBOX_NS, PROBE_NS, '--ignore-not-found', '--wait=true'],
    180_000,
  );
}

async function listNames(ns: string, kind: string, selector?: string): Promise<string[]> {
  const out = await kubectl(n, ['-n', ns, 'get', kind, '-o', 'name', ...(selector ? ['-l', selector] : [])]);
  return out.split('\n').filter(Boolean);
}

describe('one-node cluster: helm install, sandboxes that run, NetworkPolicy enforced', () => {
  it('enforcement first: a probe Pod denied by a NetworkPolicy cannot connect, an allowed one can', async () => {
    await kubectl(n, ['create', 'namespace', PROBE_NS]);
    const pod = (name: string, labels: string) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: PROBE_NS, labels: { probe: labels } },
      spec: {
        containers: [
          {
            name: 'probe',
            image: 'airlock-sandbox:dev',
            imagePullPolicy: 'Never',
            command: ['sleep', '3600'],
            securityContext: { runAsUser: 10001, runAsNonRoot: true, allowPrivilegeEscalation: false },
          },
        ],
        terminationGracePeriodSeconds: 0,
      },
    });
    const deny = {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'deny-egress', namespace: PROBE_NS },
      spec: { podSelector: { matchLabels: { probe: 'denied' } }, policyTypes: ['Egress'] },
    };
    await kubectlApply([deny, pod('denied', 'denied'), pod('open', 'open')]);
    await kubectl(n, [
      '-n',
      PROBE_NS,
      'wait',
      '--for=condition=Ready',
      'pod/denied',
      'pod/open',
      '--timeout=120s',
    ]);
    // The unrestricted Pod reaches json-server on the node: the network works.
    await waitUntil(
      () => podConnects(n, PROBE_NS, 'open', n.nodeIp, forum.port),
      'open Pod connects',
      30_000,
    );
    // kube-router applies the policy on its next sync: wait until the denied Pod is blocked, then
    // check it stays blocked.
    await waitUntil(
      async () => !(await podConnects(n, PROBE_NS, 'denied', n.nodeIp, forum.port)),
      'denied Pod blocked',
      30_000,
    );
    for (let i = 0; i < 3; i++)
      expect(await podConnects(n, PROBE_NS, 'denied', n.nodeIp, forum.port)).toBe(false);
    await kubectl(n, ['delete', 'namespace', PROBE_NS, '--wait=false']);
  });

  it('helm install with documented values only: every Pod Ready, helm test --logs passes', async () => {
    // The HTTPS upstream's CA, for the gateways only (tls.upstreamCaSecret).
    await kubectl(n, ['create', 'namespace', NS]);
    await kubectl(n, [
      '-n',
      NS,
      'create',
      'secret',
      'generic',
      'upstream-ca',
      `--from-file=ca.crt=${tlsUp!.caFile}`,
    ]);
    const t0 = Date.now();
    const install = await helm(n, [
      'install',
      RELEASE,
      chart,
      '-n',
      NS,
      '--create-namespace',
      '-f',
      path.join(chart, 'ci/local-images-values.yaml'),
      '--set',
      `gateway.hostAliases.forum\\.test=${n.nodeIp}`,
      '--set',
      `gateway.allowPrivateCidrs={${n.nodeIp}/32}`,
      '--set',
      'controller.networkPolicyEnforced=true',
      // A 2-core node: three sandboxes at once (the default is 1 CPU each, requests = limits).
      '--set-json', // --set would keep 0.25 a string
      'sandbox.resources.cpus=0.25',
      '--set',
      'sandbox.resources.memoryMiB=256',
      '--set',
      `gateway.hostAliases.secure\\.test=${n.nodeIp}`,
      '--set',
      `gateway.hostAliases.config\\.test=${n.nodeIp}`,
      '--set',
      'tls.upstreamCaSecret.name=upstream-ca',
      '--set-file',
      `policies.files.policy\\.csv=${policyFile}`,
      '--wait',
      '--timeout',
      '3m',
    ]);
    if (install.code !== 0) console.error(`helm install failed:\n${install.stderr}\n${await clusterState()}`);
    expect(install.code, install.stderr).toBe(0);
    timings['helm install --wait'] = ms(t0);
    const pods = JSON.parse(await kubectl(n, ['-n', NS, 'get', 'pods', '-o', 'json'])) as {
      items: Array<{
        metadata: { name: string };
        status: { conditions?: Array<{ type: string; status: string }> };
      }>;
    };
    expect(pods.items.length).toBe(3); // controller + 2 gateways
    for (const p of pods.items)
      expect(p.status.conditions?.find((c) => c.type === 'Ready')?.status, p.metadata.name).toBe('True');
    const t1 = Date.now();
    const test = await helm(n, ['test', RELEASE, '-n', NS, '--logs', '--timeout', '2m']);
    expect(test.code, test.stdout + test.stderr).toBe(0);
    expect(test.stdout).toMatch(/Phase:\s+Succeeded/);
    expect(test.stdout).toMatch(/gateway \S+ 200/);
    timings['helm test --logs'] = ms(t1);
    const fwd = await portForward(n, NS, `svc/${RELEASE}-controller`, 8080);
    stopForward = fwd.stop;
    api = new TestApi(`http://127.0.0.1:${fwd.port}`, TOKEN);
  });

  let session = '';
  let sandboxPod = '';
  it('a session Pod runs; inside it GET through the gateway is 200, POST is 403 and never reaches the upstream', async () => {
    const before = forum.db();
    const t0 = Date.now();
    const s = await api.create({ role: 'analyst', ttlSeconds: 900 });
    timings['session create (Pod running)'] = ms(t0);
    session = s.id;
    sandboxPod = `airlock-${s.id}`;
    const phase = await kubectl(n, [
      '-n',
      SANDBOX_NS,
      'get',
      'pod',
      sandboxPod,
      '-o',
      'jsonpath={.status.phase}',
    ]);
    expect(phase).toBe('Running');
    const get = await api.sh(session, "curl -s -m 10 -w '\\n%{http_code}' http://forum.test:3000/posts/1");
    expect(curlResult(get.stdout).status, get.stderr).toBe(200);
    expect(JSON.parse(curlResult(get.stdout).body)).toMatchObject({ id: 1 });
    const post = await api.sh(
      session,
      `curl -s -m 10 -w '\\n%{http_code}' -X POST -H 'content-type: application/json' -d '{"title":"open port 22"}' http://forum.test:3000/posts`,
    );
    const r = curlResult(post.stdout);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({
      error: 'egress_denied',
      sessionId: session,
      role: 'analyst',
      method: 'POST',
    });
    expect(forum.db()).toEqual(before); // checked directly on the upstream
    // etcd: a read is allowed, a write denied, the key unchanged (read with etcdctl, not through Airlock).
    const b64 = (v: string): string => Buffer.from(v).toString('base64');
    const range = await api.sh(
      session,
      `curl -s -m 10 -w '\\n%{http_code}' -X POST -d '{"key":"${b64('app/feature-flags')}"}' http://config.test:2379/v3/kv/range`,
    );
    expect(curlResult(range.stdout).status, range.stderr).toBe(200);
    expect(curlResult(range.stdout).body).toContain(b64('{"beta":false}'));
    const put = await api.sh(
      session,
      `curl -s -m 10 -w '\\n%{http_code}' -X POST -d '{"key":"${b64('app/feature-flags')}","value":"${b64('{"beta":true}')}"}' http://config.test:2379/v3/kv/put`,
    );
    expect(curlResult(put.stdout).status).toBe(403);
    expect(JSON.parse(curlResult(put.stdout).body)).toMatchObject({
      error: 'egress_denied',
      sessionId: session,
    });
    expect(await etcd!.etcdctl('get', 'app/feature-flags', '--print-value-only')).toBe('{"beta":false}\n');
  });

  it("a session the cluster refuses: 422 with the API server's reason, nothing left behind", async () => {
    const res = await api.raw('POST', '/v1/sessions', {
      role: 'analyst',
      labels: { ticket: 'x'.repeat(100) },
    });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { code: string; detail: string };
    expect(body.code).toBe('AIRLOCK_SANDBOX_REJECTED');
    expect(body.detail).toMatch(/63/); // the API server's own label-value rule
    // Only the session created above exists in the sandbox namespace.
    expect(await listNames(SANDBOX_NS, 'pods')).toEqual([`pod/${sandboxPod}`]);
    expect(await listNames(SANDBOX_NS, 'secrets')).toEqual([`secret/${sandboxPod}`]);
  });

  it('HTTPS with interception inside the Pod: curl, node, python and git trust the bundle; a POST is denied', async () => {
    const url = `https://secure.test:${HTTPS_PORTS.secure}`;
    const curl = await api.sh(session, `curl -s -m 10 -w '\\n%{http_code}' ${url}/posts/1`);
    expect(curlResult(curl.stdout).status, curl.stderr).toBe(200);
    const node = await api.sh(
      session,
      `node -e "fetch('${url}/posts/1').then(async (r) => console.log(r.status, (await r.json()).id))"`,
    );
    expect(node.stdout.trim(), node.stderr).toBe('200 1');
    const py = await api.sh(
      session,
      `python3 -c "import requests; r = requests.get('${url}/posts/1', timeout=10); print(r.status_code)"`,
    );
    expect(py.stdout.trim(), py.stderr).toBe('200');
    const git = await api.sh(session, `git ls-remote ${url}/git/repo.git`);
    expect(git.stdout, git.stderr).toContain(await tlsUp!.head());
    const post = await api.sh(
      session,
      `curl -s -m 10 -w '\\n%{http_code}' -X POST -H 'content-type: application/json' -d '{}' ${url}/posts`,
    );
    expect(curlResult(post.stdout).status).toBe(403);
    expect(JSON.parse(curlResult(post.stdout).body)).toMatchObject({
      error: 'egress_denied',
      method: 'POST',
    });
    // The bundle is what made it work: trusting only the image's system roots, curl refuses the
    // gateway's certificate.
    const bare = await api.sh(
      session,
      `CURL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt curl -s -m 10 ${url}/posts/1`,
    );
    expect(bare.exitCode).not.toBe(0);
  });

  describe('approvals across gateway replicas (issue 9)', () => {
    const EDIT = '{"title":"k8s: approved once"}';
    const edit = (ip: string): string =>
      viaReplica(
        ip,
        `-X PATCH -H 'content-type: application/json' -d '${EDIT}' http://forum.test:3000/posts/1`,
      );
    const title = (): unknown => forum.db().posts.find((p) => p.id === 1)?.title;

    it('an ask call is refused 403 approval_required on every replica (one approval), approved through the API, forwarded once, a second identical retry refused', async () => {
      const original = title();
      const [a, b] = await gatewayIps();
      const first = curlResult((await api.sh(session, edit(a!))).stdout);
      expect(first.status, first.body).toBe(403);
      const refusal = JSON.parse(first.body) as { error: string; approvalId: string; sessionId: string };
      expect(refusal).toMatchObject({ error: 'approval_required', sessionId: session });
      // The other replica asks the same controller about the same request: the same pending approval.
      const other = curlResult((await api.sh(session, edit(b!))).stdout);
      expect(other.status).toBe(403);
      expect(JSON.parse(other.body)).toMatchObject({
        error: 'approval_required',
        approvalId: refusal.approvalId,
      });
      expect(title()).toBe(original); // checked on the upstream itself
      const list = await api.raw('GET', `/v1/approvals?status=pending&sessionId=${session}`);
      expect(list.status).toBe(200);
      const pending = ((await list.json()) as { approvals: Array<Record<string, unknown>> }).approvals;
      expect(pending).toEqual([
        expect.objectContaining({
          id: refusal.approvalId,
          method: 'PATCH',
          url: 'http://forum.test:3000/posts/1',
          bodyText: EDIT,
        }),
      ]);
      const ok = await api.raw('POST', `/v1/approvals/${refusal.approvalId}/approve`, {
        reason: 'k8s e2e: the edit is fine',
      });
      expect(ok.status).toBe(200);
      expect(await ok.json()).toMatchObject({ status: 'approved', uses: 1 });
      // The retry through the replica that did not open it is forwarded; the next identical one,
      // through the replica that did, is refused: the single use was spent at the controller.
      const retry = curlResult((await api.sh(session, edit(b!))).stdout);
      expect(retry.status, retry.body).toBe(200);
      expect(title()).toBe('k8s: approved once');
      // Put the title back on the upstream directly, so a forwarded second retry would show.
      const restore = await fetch(`${forum.url}/posts/1`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ title: original }),
      });
      expect(restore.status).toBe(200);
      const again = curlResult((await api.sh(session, edit(a!))).stdout);
      expect(again.status).toBe(403);
      const second = JSON.parse(again.body) as { error: string; approvalId: string };
      expect(second.error).toBe('approval_required');
      expect(second.approvalId).not.toBe(refusal.approvalId);
      expect(title()).toBe(original);
      const got = await api.raw('GET', `/v1/approvals/${refusal.approvalId}`);
      expect(await got.json()).toMatchObject({ status: 'used', used: 1 });
      // The forwarded call's audit event, collected from whichever replica decided it.
      const approved = (e: AuditEvent[]): AuditEvent | undefined =>
        e.find((x) => x.reason === 'approved' && x.approvalId === refusal.approvalId);
      const events = await api.auditUntil(session, (e) => approved(e) !== undefined, 30_000);
      expect(approved(events)).toMatchObject({ decision: 'allow', method: 'PATCH', status: 200 });
      // The second approval (the refused retry) is denied, so nothing is left open.
      const deny = await api.raw('POST', `/v1/approvals/${second.approvalId}/deny`, {
        reason: 'one is enough',
      });
      expect(deny.status).toBe(200);
    });

    it('a grant given through the API is honoured by every replica, and kept when the Pod changes', async () => {
      const ips = await gatewayIps();
      const body = forum.db().posts.find((p) => p.id === 1)?.body;
      // PUT /posts/1 matches no rule of the analyst role: refused until the grant.
      for (const ip of ips)
        expect(curlResult((await api.sh(session, replace(ip, 'x'))).stdout).status).toBe(403);
      const g = await api.raw('POST', `/v1/sessions/${session}/grants`, {
        rule: { host: 'forum.test:3000', path: '/posts/:id', method: 'PUT' },
        ttlSeconds: 900,
        reason: 'k8s e2e: replace a post',
      });
      expect(g.status, await g.clone().text()).toBe(201);
      const putThrough = async (ip: string, t: string): Promise<void> => {
        const r = curlResult((await api.sh(session, replace(ip, t))).stdout);
        expect(r.status, `${ip}: ${r.body}`).toBe(200);
        expect(forum.db().posts.find((p) => p.id === 1)).toMatchObject({ title: t, body });
      };
      for (const [i, ip] of ips.entries()) await putThrough(ip, `replica ${i}`);
      // A Pod update reaches every replica's watch. To know when a replica has applied it, the
      // update also changes the session's creator to one whose own rules allow only PUT /posts/:id:
      // a replica that applied it refuses GET /posts/1 (the creator's limit). The grant must survive.
      const creator = await kubectl(n, [
        '-n',
        SANDBOX_NS,
        'get',
        'pod',
        sandboxPod,
        '-o',
        'jsonpath={.metadata.annotations.airlock\\.io/created-by}',
      ]);
      // The API caller that created it (the tier's token is the controller's AIRLOCK_API_TOKEN).
      expect(creator).not.toBe('');
      expect(creator).not.toBe(LIMITED_CREATOR);
      const getStatus = async (ip: string): Promise<number> =>
        curlResult((await api.sh(session, viaReplica(ip, 'http://forum.test:3000/posts/1'))).stdout).status;
      await setCreator(sandboxPod, LIMITED_CREATOR);
      try {
        for (const [i, ip] of ips.entries()) {
          await waitUntil(
            async () => (await getStatus(ip)) === 403,
            `replica ${i} applied the Pod update`,
            30_000,
          );
          await putThrough(ip, `after a Pod update, replica ${i}`);
        }
      } finally {
        // Back to the real creator (the kill switch case below needs GET allowed on both replicas).
        await setCreator(sandboxPod, creator);
      }
      for (const [i, ip] of ips.entries()) {
        await waitUntil(
          async () => (await getStatus(ip)) === 200,
          `replica ${i} applied the second update`,
          30_000,
        );
        await putThrough(ip, `after two Pod updates, replica ${i}`);
      }
    });
  });

  describe('every other way out of the sandbox Pod fails', () => {
    let other = '';
    let otherIp = '';
    let gatewayIp = '';
    let controllerIp = '';
    beforeAll(async () => {
      if (setupError || !session) return;
      const s = await api.create({ role: 'analyst', ttlSeconds: 900 });
      other = s.id;
      // A listener in the other sandbox (its own ingress is denied by the namespace default).
      await api.sh(other, 'busybox httpd -p 8080 -h /tmp && echo started');
      otherIp = (
        await kubectl(n, [
          '-n',
          SANDBOX_NS,
          'get',
          'pod',
          `airlock-${other}`,
          '-o',
          'jsonpath={.status.podIP}',
        ])
      ).trim();
      gatewayIp = (
        await kubectl(n, [
          '-n',
          NS,
          'get',
          'pods',
          '-l',
          'app.kubernetes.io/component=gateway',
          '-o',
          'jsonpath={.items[0].status.podIP}',
        ])
      ).trim();
      controllerIp = (
        await kubectl(n, [
          '-n',
          NS,
          'get',
          'pods',
          '-l',
          'app.kubernetes.io/component=controller',
          '-o',
          'jsonpath={.items[0].status.podIP}',
        ])
      ).trim();
    }, 120_000);

    const targets = (): Array<[string, string, number]> => [
      ['the upstream directly (node address)', n.nodeIp, forum.port],
      ['the API server on the node', n.nodeIp, 6443],
      ['the kubelet on the node', n.nodeIp, 10250],
      ['the API server ClusterIP', n.apiClusterIp, 443],
      ['the gateway admin port', gatewayIp, 9090],
      ["the controller's approvals port", controllerIp, APPROVALS_PORT],
      ['another sandbox Pod', otherIp, 8080],
      ['the cluster DNS (TCP)', n.clusterDns, 53],
      ['a link-local listener on a bridge of the node', metadata?.ip ?? '', metadata?.port ?? 0],
    ];

    it('each probe target is reachable from the node itself (the probes are not vacuous)', async () => {
      // From the unrestricted node the same targets answer (the DNS and Pod targets from a fresh
      // unconfined Pod would need another namespace; the node reaches Pod IPs over the bridge).
      for (const [what, host, port] of targets()) {
        if (what.includes('ClusterIP') || what.includes('DNS')) continue; // VIPs: DNAT applies to Pod traffic
        const ok = await new Promise<boolean>((resolve) => {
          const s = net.connect({ host, port, timeout: 3000 });
          s.once('connect', () => (s.destroy(), resolve(true)));
          s.once('error', () => resolve(false));
          s.once('timeout', () => (s.destroy(), resolve(false)));
        });
        expect(ok, `${what} ${host}:${port} from the node`).toBe(true);
      }
    });

    it('from the sandbox Pod every probe is blocked', async () => {
      for (const [what, host, port] of targets())
        expect(await podConnects(n, SANDBOX_NS, sandboxPod, host, port), `${what} ${host}:${port}`).toBe(
          false,
        );
      // DNS over UDP too: no answer from the cluster DNS.
      const dns = await api.sh(
        session,
        `timeout 5 busybox nslookup kubernetes.default.svc.cluster.local ${n.clusterDns}`,
      );
      expect(dns.exitCode).not.toBe(0);
    });

    it('with the enforcer stopped the same probes connect, and are blocked again once it is back', async () => {
      try {
        await setEnforcer(false);
        await waitUntil(
          () => podConnects(n, SANDBOX_NS, sandboxPod, n.nodeIp, forum.port),
          'upstream reachable without enforcement',
          20_000,
        );
        // Every probe target: each is blocked only by NetworkPolicy, none by something else.
        for (const [what, host, port] of targets())
          expect(
            await podConnects(n, SANDBOX_NS, sandboxPod, host, port),
            `${what} without enforcement`,
          ).toBe(true);
      } finally {
        await setEnforcer(true);
      }
      await waitUntil(
        async () => !(await podConnects(n, SANDBOX_NS, sandboxPod, n.nodeIp, forum.port)),
        'upstream blocked again after the enforcer restarted',
        60_000,
      );
      for (const [what, host, port] of targets())
        expect(await podConnects(n, SANDBOX_NS, sandboxPod, host, port), `${what} again`).toBe(false);
    });

    afterAll(async () => {
      if (other) await api.remove(other).catch(() => undefined);
    });
  });

  it('kill switch with 2 gateway replicas: no call allowed after DELETE returns; Pod, Secret, NetworkPolicy gone', async () => {
    const gateways = (
      await kubectl(n, [
        '-n',
        NS,
        'get',
        'pods',
        '-l',
        'app.kubernetes.io/component=gateway',
        '-o',
        'jsonpath={.items[*].status.podIP}',
      ])
    )
      .trim()
      .split(/\s+/);
    expect(gateways).toHaveLength(2);
    // One loop per replica (the proxy URL's credential, host swapped for each gateway Pod IP), each
    // line "<epoch ms> <replica> <status>", the time taken by the Pod's clock (the node's: this
    // machine's) just *before* the call was sent: a call sent after DELETE returned must be refused.
    // (Stamping after the answer counted a call answered before the return as later, by the time
    // `date` took to start on a loaded machine.)
    const loop = gateways
      .map(
        (ip, i) =>
          `(p=$(echo "$HTTP_PROXY" | sed -E 's#@[^:/]+#@${ip}#'); while :; do s=$(date +%s%3N); c=$(curl -s -o /dev/null -m 2 -w '%{http_code}' -x "$p" http://forum.test:3000/posts/1); echo "$s ${i} $c"; done) &`,
      )
      .join('\n');
    const proc = spawn(
      n.kubectl,
      [
        '--kubeconfig',
        n.kubeconfig,
        '-n',
        SANDBOX_NS,
        'exec',
        sandboxPod,
        '--',
        'bash',
        '-c',
        `${loop}\nwait`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const lines: Array<{ t: number; replica: string; code: string }> = [];
    let buf = '';
    proc.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const [t, replica, code] = buf.slice(0, i).trim().split(' ');
        buf = buf.slice(i + 1);
        if (t && replica && code) lines.push({ t: Number(t), replica, code });
      }
    });
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    try {
      await waitUntil(
        async () =>
          ['0', '1'].every((r) => lines.filter((l) => l.replica === r && l.code === '200').length >= 3),
        'both replicas allow calls',
        30_000,
      );
      const t0 = Date.now();
      await api.remove(session);
      const deleted = Date.now();
      timings['DELETE (kill switch) took'] = `${deleted - t0} ms`;
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      const allowed = lines.filter((l) => l.code === '200');
      const lastAllowed = Math.max(...allowed.map((l) => l.t));
      timings['DELETE returned -> last allowed call sent'] =
        `${lastAllowed - deleted} ms (negative: sent before it returned)`;
      expect(allowed.filter((l) => l.t > deleted)).toEqual([]);
    } finally {
      proc.kill('SIGKILL');
    }
    await waitUntil(
      async () =>
        (await listNames(SANDBOX_NS, 'pods,secrets,networkpolicies', `airlock.io/session=${session}`))
          .length === 0,
      'Pod, Secret and NetworkPolicy of the session gone',
      30_000,
    );
  });

  describe('faults', () => {
    let f = '';
    let fPod = '';
    /** The gateway replicas (Pod IPs) when `f` got its grant. */
    let grantedReplicas: string[] = [];
    const reconnect = async (): Promise<void> => {
      await stopForward?.();
      const fwd = await portForward(n, NS, `svc/${RELEASE}-controller`, 8080);
      stopForward = fwd.stop;
      api = new TestApi(`http://127.0.0.1:${fwd.port}`, TOKEN);
    };
    const curlStatus = async (id: string): Promise<string> =>
      (await api.sh(id, "curl -s -m 10 -o /dev/null -w '%{http_code}' http://forum.test:3000/posts/1"))
        .stdout;

    it('a gateway Pod deleted mid-session: calls go on through the other replica', async () => {
      f = (await api.create({ role: 'analyst', ttlSeconds: 900 })).id;
      fPod = `airlock-${f}`;
      // A grant from before the restart: the replacement replica must get it back (next case).
      const g = await api.raw('POST', `/v1/sessions/${f}/grants`, {
        rule: { host: 'forum.test:3000', path: '/posts/:id', method: 'PUT' },
        ttlSeconds: 900,
        reason: 'k8s e2e: survives a gateway restart',
      });
      expect(g.status).toBe(201);
      grantedReplicas = await gatewayIps();
      const lines = loopInPod(
        fPod,
        `while :; do c=$(curl -s -o /dev/null -m 2 -w '%{http_code}' http://forum.test:3000/posts/1); echo "$(date +%s%3N) 0 $c"; done`,
      );
      try {
        await waitUntil(
          async () => lines.all.filter((l) => l.code === '200').length >= 5,
          'calls allowed',
          30_000,
        );
        const victim = (
          await kubectl(n, [
            '-n',
            NS,
            'get',
            'pods',
            '-l',
            'app.kubernetes.io/component=gateway',
            '-o',
            'jsonpath={.items[0].metadata.name}',
          ])
        ).trim();
        const t0 = Date.now();
        await kubectl(n, ['-n', NS, 'delete', 'pod', victim, '--wait=false']);
        // Ready again: the victim gone and two other gateway Pods Ready (rollout status alone can
        // answer before the ReplicaSet noticed the deletion).
        await waitUntil(
          async () => {
            const pods = JSON.parse(
              await kubectl(n, [
                '-n',
                NS,
                'get',
                'pods',
                '-l',
                'app.kubernetes.io/component=gateway',
                '-o',
                'json',
              ]),
            ) as { items: PodStatusView[] };
            return (
              !pods.items.some((p) => p.metadata.name === victim) &&
              pods.items.filter((p) => !p.metadata.deletionTimestamp && podReady(p)).length === 2
            );
          },
          'the victim gone and two gateway Pods Ready',
          180_000,
        );
        const ready = Date.now();
        await waitUntil(
          async () => lines.all.filter((l) => l.t > ready && l.code === '200').length >= 10,
          '10 calls allowed after the replacement replica is ready',
          60_000,
        );
        const during = lines.all.filter((l) => l.t > t0);
        const failed = during.filter((l) => l.code !== '200');
        timings['gateway Pod deleted: failed calls during the switch'] =
          `${failed.length} of ${during.length} (${[...new Set(failed.map((l) => l.code))].join(',') || 'none'}); replacement ready after ${ready - t0} ms`;
        // After the replacement is ready every call is allowed again, whichever replica serves it.
        expect(lines.all.filter((l) => l.t > ready + 2_000).every((l) => l.code === '200')).toBe(true);
        // Audit on Kubernetes (issue 16 point 6): every allowed call the loop saw is in the session's
        // audit, collected by the controller from every replica — the deleted one included (its
        // gateway keeps the admin API up on SIGTERM until its events are acknowledged).
        lines.stop();
        await lines.exited;
        // Only calls decided before the loop was stopped count (the shell inside the Pod may outlive
        // the kubectl exec that was killed, and its later calls must not make up for lost events).
        const stoppedAt = Date.now();
        const served = lines.all.filter((l) => l.code === '200').length;
        const allowedBefore = (e: AuditEvent[]): AuditEvent[] =>
          e.filter((x) => x.path === '/posts/1' && x.decision === 'allow' && Date.parse(x.time) <= stoppedAt);
        const events = await api.auditUntil(f, (e) => allowedBefore(e).length >= served, 30_000);
        const allowed = allowedBefore(events);
        expect(allowed.length).toBeGreaterThanOrEqual(served);
        const times = allowed.map((x) => Date.parse(x.time));
        expect(times.every((t, i) => i === 0 || t >= times[i - 1]!)).toBe(true);
        timings['audit collected from every replica (deleted one included)'] =
          `${allowed.length} allowed events decided before the loop stopped, for ${served} calls answered 200; complete ${Date.now() - stoppedAt} ms after`;
      } finally {
        lines.stop();
      }
    });

    it('a replacement gateway replica gets the grants back from the controller (resync)', async () => {
      const ips = await gatewayIps();
      expect(ips.filter((ip) => !grantedReplicas.includes(ip)).length).toBeGreaterThanOrEqual(1);
      // The controller notices the new replica (its instance id) within its 2 s watchdog and
      // registers every session there again, grants included.
      for (const [i, ip] of ips.entries()) {
        const t = `restarted, replica ${i}`;
        await waitUntil(
          async () => curlResult((await api.sh(f, replace(ip, t))).stdout).status === 200,
          `replica ${ip}${grantedReplicas.includes(ip) ? '' : ' (new)'} honours the grant`,
          30_000,
        );
        expect(forum.db().posts.find((p) => p.id === 1)?.title).toBe(t);
      }
    });

    it('the controller restarted: sessions recovered, TTL still enforced; while it is down ask calls get 503 approval_unavailable', async () => {
      const short = await api.create({ role: 'analyst', ttlSeconds: 45 });
      // Down first (no endpoint behind its Services), then back: the gateways cannot ask anyone.
      await kubectl(n, ['-n', NS, 'scale', `deploy/${RELEASE}-controller`, '--replicas=0']);
      await waitUntil(
        async () => (await listNames(NS, 'pods', 'app.kubernetes.io/component=controller')).length === 0,
        'the controller Pod gone',
        120_000,
      );
      // Straight into the sandbox Pod (the API is down): the ask call is refused, fail closed, and
      // never reaches the upstream; an allowed call goes on.
      const before = forum.db().posts;
      const ask = await podSh(
        n,
        SANDBOX_NS,
        fPod,
        `curl -s -m 30 -w '\\n%{http_code}' -X PATCH -H 'content-type: application/json' -d '{"title":"while down"}' http://forum.test:3000/posts/1`,
      );
      expect(curlResult(ask.stdout).status, ask.stdout + ask.stderr).toBe(503);
      expect(JSON.parse(curlResult(ask.stdout).body)).toMatchObject({ error: 'approval_unavailable' });
      expect(forum.db().posts).toEqual(before);
      const get = await podSh(
        n,
        SANDBOX_NS,
        fPod,
        "curl -s -m 10 -o /dev/null -w '%{http_code}' http://forum.test:3000/posts/1",
      );
      expect(get.stdout).toBe('200');
      await kubectl(n, ['-n', NS, 'scale', `deploy/${RELEASE}-controller`, '--replicas=1']);
      await kubectl(
        n,
        ['-n', NS, 'rollout', 'status', `deploy/${RELEASE}-controller`, '--timeout=180s'],
        200_000,
      );
      await waitUntil(
        async () => {
          await reconnect();
          return (await api.raw('GET', '/readyz')).ok;
        },
        'a new controller ready',
        120_000,
      );
      const got = await api.raw('GET', `/v1/sessions/${f}`);
      expect(got.status).toBe(200);
      expect(await curlStatus(f)).toBe('200');
      // The short session expires on the new controller's timer: its Pod goes, its calls end.
      const expiresAt = Date.parse(
        ((await (await api.raw('GET', `/v1/sessions/${short.id}`)).json()) as { expiresAt: string })
          .expiresAt,
      );
      await waitUntil(
        async () => (await api.raw('GET', `/v1/sessions/${short.id}`)).status === 404,
        'short session removed at its TTL',
        Math.max(0, expiresAt - Date.now()) + 30_000,
      );
      timings['TTL expiry -> session gone (after a controller restart)'] = `${Date.now() - expiresAt} ms`;
      await waitUntil(
        async () => (await listNames(SANDBOX_NS, 'pods', `airlock.io/session=${short.id}`)).length === 0,
        'its Pod removed',
        30_000,
      );
    });

    it('the kubelet restarted: running sessions keep their Pod and identity binding', async () => {
      const ipBefore = await kubectl(n, [
        '-n',
        SANDBOX_NS,
        'get',
        'pod',
        fPod,
        '-o',
        'jsonpath={.status.podIP}',
      ]);
      const r = await cmd(
        'bash',
        [path.join(repoRoot, 'scripts/k8s-node.sh'), 'kubelet-restart'],
        {},
        180_000,
      );
      expect(r.code, r.stderr).toBe(0);
      // kubectl port-forward streams through the kubelet: the restart ended it.
      await waitUntil(
        async () => {
          await reconnect();
          return (await api.raw('GET', '/readyz')).ok;
        },
        'the API reachable again after the kubelet restart',
        60_000,
      );
      const after = JSON.parse(await kubectl(n, ['-n', SANDBOX_NS, 'get', 'pod', fPod, '-o', 'json'])) as {
        status: { podIP: string; phase: string; containerStatuses: Array<{ restartCount: number }> };
      };
      expect(after.status.podIP).toBe(ipBefore);
      expect(after.status.phase).toBe('Running');
      expect(after.status.containerStatuses[0]?.restartCount).toBe(0);
      expect(await curlStatus(f)).toBe('200');
      const post = await api.sh(
        f,
        `curl -s -m 10 -X POST -H 'content-type: application/json' -d '{}' http://forum.test:3000/posts`,
      );
      expect(JSON.parse(post.stdout)).toMatchObject({ error: 'egress_denied', sessionId: f });
      await api.remove(f);
    });
  });

  describe("GitOps: policies from a Git repository through the chart's sync sidecar (syncer: airlock)", () => {
    /** A clone of the policy repository served at http://NODE:GIT_HTTP_PORT/git/policies.git. */
    let work = '';
    /** Runs a command on the node; resolves to its stdout, rejects with its stderr. */
    const run = async (file: string, args: string[]): Promise<string> => {
      const r = await cmd(file, args, GIT_AUTHOR);
      if (r.code !== 0) throw new Error(`${file} ${args.join(' ')}: ${r.stderr}`);
      return r.stdout.trim();
    };
    const git = (...args: string[]): Promise<string> => run('git', ['-C', work, ...args]);
    /** Writes policy.csv (the tier's plus `extra` lines), commits, pushes; resolves to the commit id. */
    const pushPolicy = async (extra: string[], message: string): Promise<string> => {
      writeFileSync(
        path.join(work, 'policies', 'policy.csv'),
        readFileSync(policyFile, 'utf8') + extra.map((l) => `${l}\n`).join(''),
      );
      await git('add', '-A');
      await git('commit', '-q', '-m', message);
      await git('push', '-q', 'origin', 'main');
      return git('rev-parse', 'HEAD');
    };
    /** GET /readyz and /admin/status of one gateway replica (admin port, from the node). */
    const replicaStatus = async (
      ip: string,
      token: string,
    ): Promise<{ policyVersion: string | null; policyError: string | null }> => {
      const r = await fetch(`http://${ip}:9090/admin/status`, {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(5000),
      });
      return (await r.json()) as { policyVersion: string | null; policyError: string | null };
    };
    const readyVersion = async (ip: string): Promise<string | null> => {
      const r = await fetch(`http://${ip}:9090/readyz`, { signal: AbortSignal.timeout(5000) });
      return ((await r.json()) as { policyVersion?: string }).policyVersion ?? null;
    };
    /** The status code of GET /comments/1 through one replica, from inside the session Pod. */
    const comment1 = async (s: string, ip: string): Promise<string> =>
      (await api.sh(s, viaReplica(ip, 'http://forum.test:3000/comments/1'))).stdout.trim().split('\n').pop()!;

    it('a pushed commit is enforced on every gateway replica; a broken one keeps the last good policy everywhere, the reason visible', async () => {
      // The policy repository: the tier's policy (model.conf, policy.csv, tests/) under policies/.
      const remote = path.join(path.dirname(tlsUp!.repoDir), 'policies.git');
      await run('git', ['init', '-q', '--bare', '-b', 'main', remote]);
      work = mkdtempSync(path.join(tmpdir(), 'airlock-policy-repo-'));
      await run('git', ['clone', '-q', remote, work]);
      await run('cp', ['-r', path.join(repoRoot, 'policies'), path.join(work, 'policies')]);
      const c1 = await pushPolicy([], 'the tier policy');
      const url = `http://${n.nodeIp}:${GIT_HTTP_PORT}/git/policies.git`;

      const t0 = Date.now();
      const up = await helm(n, [
        'upgrade',
        RELEASE,
        chart,
        '-n',
        NS,
        '--reuse-values',
        '--set',
        'policies.source=git',
        '--set',
        `policies.git.repository=${url}`,
        '--set',
        'policies.git.path=policies',
        '--set',
        'policies.git.periodSeconds=2',
        '--wait',
        '--timeout',
        '3m',
      ]);
      if (up.code !== 0) console.error(`helm upgrade failed:\n${up.stderr}\n${await clusterState()}`);
      expect(up.code, up.stderr).toBe(0);
      timings['helm upgrade to policies.source=git --wait'] = ms(t0);
      await stopForward?.();
      const fwd = await portForward(n, NS, `svc/${RELEASE}-controller`, 8080);
      stopForward = fwd.stop;
      api = new TestApi(`http://127.0.0.1:${fwd.port}`, TOKEN);
      await waitUntil(async () => (await api.raw('GET', '/readyz')).ok, 'controller ready', 120_000);
      const token = Buffer.from(
        await kubectl(n, [
          '-n',
          NS,
          'get',
          'secret',
          `${RELEASE}-tokens`,
          '-o',
          'jsonpath={.data.admin-token}',
        ]),
        'base64',
      ).toString('utf8');

      // Every replica and the controller enforce the commit the sync init container published.
      await waitUntil(
        async () => (await gatewayIps().catch(() => [])).length === 2,
        'two gateway replicas running',
        120_000,
      );
      const ips = await gatewayIps();
      for (const ip of ips) expect(await readyVersion(ip), ip).toBe(c1.slice(0, 12));
      const policyNow = async () =>
        (await (await api.raw('GET', '/v1/policy')).json()) as {
          version: string | null;
          lastError: string | null;
        };
      expect((await policyNow()).version).toBe(c1.slice(0, 12));
      // The rollout leaves the old replicas terminating for a while, and the controller registers a
      // session with every replica it resolves: wait until the old ones are gone from its view.
      await waitUntil(
        async () => (await listNames(NS, 'pods', 'app.kubernetes.io/component=gateway')).length === 2,
        'the old gateway replicas gone',
        120_000,
      );
      let s = '';
      await waitUntil(
        async () => {
          try {
            s = (await api.create({ role: 'analyst', ttlSeconds: 900 })).id;
            return true;
          } catch (err) {
            if (/AIRLOCK_GATEWAY_UNAVAILABLE/.test(String(err))) return false;
            throw err;
          }
        },
        'a session registered with every replica',
        60_000,
      );
      try {
        for (const ip of ips) expect(await comment1(s, ip), ip).toBe('200');

        // A commit that denies GET /comments/1: measured from the push to enforced on each replica.
        const c2 = await pushPolicy(
          ['p, analyst, forum.test:3000, /comments/1, GET, deny'],
          'deny comment 1',
        );
        const pushed = Date.now();
        const enforcedAt: Record<string, number> = {};
        await waitUntil(
          async () => {
            await Promise.all(
              ips
                .filter((ip) => enforcedAt[ip] === undefined)
                .map(async (ip) => {
                  if ((await readyVersion(ip)) === c2.slice(0, 12)) enforcedAt[ip] = Date.now();
                }),
            );
            return Object.keys(enforcedAt).length === ips.length;
          },
          'the new commit in force on every replica',
          120_000,
        );
        const perReplica = ips.map((ip) => enforcedAt[ip]! - pushed);
        timings['git commit -> enforced on every replica (sync period 2 s)'] =
          `${Math.max(...perReplica)} ms (per replica: ${perReplica.join(', ')} ms)`;
        // ...and a call through each replica is decided by the new rule, audited with the commit.
        for (const ip of ips) {
          const out = (await api.sh(s, viaReplica(ip, 'http://forum.test:3000/comments/1'))).stdout
            .trim()
            .split('\n');
          expect(out.pop(), ip).toBe('403');
          expect(JSON.parse(out.join('\n')), ip).toMatchObject({
            error: 'egress_denied',
            policyVersion: c2.slice(0, 12),
          });
        }
        await waitUntil(
          async () => (await policyNow()).version === c2.slice(0, 12),
          'the controller on the new commit',
          60_000,
        );

        // A broken commit (an unknown effect): every replica keeps c2 and says why.
        const c3 = await pushPolicy(['p, analyst, forum.test:3000, /posts/3, GET, permit'], 'broken');
        await waitUntil(
          async () => {
            const all = await Promise.all(ips.map((ip) => replicaStatus(ip, token)));
            return all.every((st) => /permit/.test(st.policyError ?? ''));
          },
          `every replica rejected ${c3.slice(0, 12)}`,
          120_000,
        );
        for (const ip of ips) {
          expect(await replicaStatus(ip, token), ip).toMatchObject({ policyVersion: c2.slice(0, 12) });
          expect(await readyVersion(ip), ip).toBe(c2.slice(0, 12));
          expect(await comment1(s, ip), ip).toBe('403');
          expect(
            (await api.sh(s, viaReplica(ip, 'http://forum.test:3000/posts/1'))).stdout
              .trim()
              .split('\n')
              .pop(),
            ip,
          ).toBe('200');
        }
        await waitUntil(
          async () => /permit/.test((await policyNow()).lastError ?? ''),
          'GET /v1/policy names the reason',
          60_000,
        );
        expect(await policyNow()).toMatchObject({
          version: c2.slice(0, 12),
          lastError: expect.stringMatching(/policy\.csv:\d+:.*permit/),
        });

        // Fixed forward: the next commit is enforced again (and the release stays installable below).
        const c4 = await pushPolicy([], 'back to the tier policy');
        await waitUntil(
          async () =>
            (await Promise.all(ips.map((ip) => readyVersion(ip)))).every((v) => v === c4.slice(0, 12)),
          'the fix on every replica',
          120_000,
        );
        for (const ip of ips) expect(await comment1(s, ip), ip).toBe('200');
      } finally {
        await api.remove(s).catch(() => undefined); // the next case checks nothing is left
      }
    }, 480_000);
  });

  it('helm upgrade to a changed value, then uninstall: nothing left behind', async () => {
    const s = await api.create({ role: 'analyst', ttlSeconds: 900 });
    const up = await helm(n, [
      'upgrade',
      RELEASE,
      chart,
      '-n',
      NS,
      '--reuse-values',
      '--set',
      'sandbox.defaultTtlSeconds=1800',
      '--wait',
      '--timeout',
      '3m',
    ]);
    if (up.code !== 0) console.error(`helm upgrade failed:\n${up.stderr}\n${await clusterState()}`);
    expect(up.code, up.stderr).toBe(0);
    // The controller restarted with the new config: the session it recovered still works.
    await stopForward?.();
    const fwd = await portForward(n, NS, `svc/${RELEASE}-controller`, 8080);
    stopForward = fwd.stop;
    api = new TestApi(`http://127.0.0.1:${fwd.port}`, TOKEN);
    await waitUntil(
      async () => (await api.raw('GET', '/readyz')).ok,
      'controller ready after upgrade',
      120_000,
    );
    const get = await api.sh(
      s.id,
      "curl -s -m 10 -o /dev/null -w '%{http_code}' http://forum.test:3000/posts/1",
    );
    expect(get.stdout).toBe('200');
    // Documented: delete sessions before uninstalling (the default deny stays either way).
    await api.remove(s.id);
    await stopForward();
    stopForward = undefined;
    const un = await helm(n, ['uninstall', RELEASE, '-n', NS, '--wait', '--timeout', '2m']);
    expect(un.code, un.stderr).toBe(0);
    expect(await listNames(SANDBOX_NS, 'pods')).toEqual([]);
    expect(await listNames(SANDBOX_NS, 'secrets')).toEqual([]);
    // Only the kept default deny remains in the kept sandbox namespace.
    expect(await listNames(SANDBOX_NS, 'networkpolicies')).toEqual([
      'networkpolicy.networking.k8s.io/airlock-sandbox-deny',
    ]);
    await waitUntil(
      async () => (await listNames(NS, 'pods', 'app.kubernetes.io/component!=test')).length === 0,
      'release Pods gone',
      120_000,
    );
  }, 480_000);
});

/**
 * Runs `script` (which prints "<epoch ms> <tag> <status>" lines) in a Pod through kubectl exec and
 * collects the lines as they arrive.
 */
function loopInPod(
  pod: string,
  script: string,
): { all: Array<{ t: number; replica: string; code: string }>; exited: Promise<void>; stop(): void } {
  const proc = spawn(
    n.kubectl,
    ['--kubeconfig', n.kubeconfig, '-n', SANDBOX_NS, 'exec', pod, '--', 'bash', '-c', script],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const all: Array<{ t: number; replica: string; code: string }> = [];
  let buf = '';
  proc.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const [t, replica, code] = buf.slice(0, i).trim().split(' ');
      buf = buf.slice(i + 1);
      if (t && replica && code) all.push({ t: Number(t), replica, code });
    }
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return { all, exited, stop: () => proc.kill('SIGKILL') };
}

interface PodStatusView {
  metadata: { name: string; deletionTimestamp?: string };
  status: { conditions?: Array<{ type: string; status: string }> };
}
const podReady = (p: PodStatusView): boolean =>
  p.status.conditions?.find((c) => c.type === 'Ready')?.status === 'True';

/** The Pod IPs of the gateway replicas (running ones with an IP). */
async function gatewayIps(): Promise<string[]> {
  const ips = (
    await kubectl(n, [
      '-n',
      NS,
      'get',
      'pods',
      '-l',
      'app.kubernetes.io/component=gateway',
      '--field-selector=status.phase=Running',
      '-o',
      'jsonpath={.items[*].status.podIP}',
    ])
  )
    .trim()
    .split(/\s+/)
    .filter(Boolean);
  expect(ips).toHaveLength(2);
  return ips;
}

/**
 * A curl (printing the body, then the status on its own line) through one gateway replica: the
 * sandbox's proxy URL (its credential) with the host swapped for that replica's Pod IP.
 */
function viaReplica(ip: string, curlArgs: string): string {
  return `p=$(echo "$HTTP_PROXY" | sed -E 's#@[^:/]+#@${ip}#'); curl -s -m 30 -w '\\n%{http_code}' -x "$p" ${curlArgs}`;
}

/** PUT /posts/1 with `title` (the post's body kept) through one replica: what the tier's grants allow. */
function replace(ip: string, title: string): string {
  const post = JSON.stringify({ title, body: 'Asking for a colleague.' });
  return viaReplica(
    ip,
    `-X PUT -H 'content-type: application/json' -d '${post}' http://forum.test:3000/posts/1`,
  );
}

/** Sets the `created-by` annotation of a session Pod (a Pod update every replica sees). */
async function setCreator(pod: string, creator: string): Promise<void> {
  await kubectl(n, [
    '-n',
    SANDBOX_NS,
    'annotate',
    'pod',
    pod,
    `airlock.io/created-by=${creator}`,
    '--overwrite',
  ]);
}

/** What the cluster looked like, for a failure message. */
async function clusterState(): Promise<string> {
  const pods = await kubectl(n, ['get', 'pods', '-A', '-o', 'wide']).catch((e: unknown) => String(e));
  const events = await kubectl(n, ['get', 'events', '-A', '--sort-by=.lastTimestamp']).catch((e: unknown) =>
    String(e),
  );
  return `${pods}\n${events.split('\n').slice(-25).join('\n')}`;
}

async function kubectlApply(objs: unknown[]): Promise<void> {
  const f = path.join(mkdtempSync(path.join(tmpdir(), 'airlock-k8s-')), 'objs.json');
  writeFileSync(f, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objs }));
  await kubectl(n, ['apply', '-f', f]);
}
