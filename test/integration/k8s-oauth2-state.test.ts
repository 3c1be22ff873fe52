/**
 * OAuth2 refresh-token state shared by gateway replicas through a Secret (src/gateway/oauth2-kube-store.ts,
 * docs/credentials.md "Several replicas") on a real kube-apiserver (+ etcd, RBAC on; test/helpers/k8s.ts).
 *
 * The chart is installed with two gateway replicas and a credential Secret (`oauth2RefreshState: auto`
 * → on): it creates the empty state Secret and a Role naming it. Every store below runs under the
 * chart's gateway ServiceAccount token. The authorization server is `oidc-provider` (npm), which
 * rotates a public client's refresh token at every use and refuses a used one (and then revokes the
 * grant); the resource server accepts a call only when the provider's introspection says its token
 * is active.
 *
 * - two gateways (startGatewayService, the Pod watch as session source) with the refresh token in a
 *   Secret, called alternately over more than two access-token lifetimes: every call 200, one refresh
 *   per token lifetime for both, no refresh token presented twice; without the shared state the
 *   second gateway's first refresh is refused (shown on two plain caches);
 * - the CAS: six replicas' first asks at once → one refresh;
 * - lease expiry: a holder that died before the token endpoint is taken over, the chain goes on;
 * - a holder that died after the endpoint rotated the token: the taker's refresh is refused, the chain
 *   is lost with a reason naming the holder and how to re-seed, other replicas answer it without
 *   asking the endpoint; a new refresh token in the source re-seeds;
 * - the API server unreachable: the held access token serves until it expires, then the reason;
 * - RBAC: the gateway may get/update the state Secret only.
 *
 * Run under the lock: `flock /tmp/airlock-e2e.lock npx vitest run --project integration test/integration/k8s-oauth2-state.test.ts`.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { DestinationPolicy } from '../../src/gateway/address.js';
import { OAuth2Tokens, type OAuth2Input } from '../../src/gateway/oauth2.js';
import {
  KubeRefreshState,
  parseState,
  seedOf,
  type StoredRefreshState,
} from '../../src/gateway/oauth2-kube-store.js';
import { answerOAuth2Query, primaryOAuth2Tokens, SharedOAuth2 } from '../../src/gateway/oauth2-shared.js';
import { UpstreamResolver } from '../../src/gateway/resolve.js';
import { parseGatewayServiceConfig } from '../../src/gateway-wire/config.js';
import { createLogger } from '../../src/log.js';
import type { RunningGateway } from '../../src/gateway/service.js';
import { kubeFailure } from '../../src/kube/client.js';
import { K8S_ANNOTATION, K8S_LABEL, MANAGED_BY, SANDBOX_COMPONENT } from '../../src/kube/labels.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import {
  GATEWAY_SA,
  k8sTools,
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

const STATE = 'airlock-gateway-oauth2-state';
const SOURCE = 'airlock-idp';
const TTL_S = 5;
// oidc-provider's expiry is whole seconds from the second of issue: a token may end up to 1 s before
// its expires_in says, so the skew covers that and the calls' spacing.
const SKEW_MS = 2_000;
const RS_SECRET = 'rs-secret-0123456789abcdef';
const SESSION = { id: 's-oauth2', cred: 'cred-oauth2-0123456789abcdef', address: '127.0.0.1', role: 'agent' };
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const b64 = (s: string): string => Buffer.from(s).toString('base64');

let cluster: TestCluster;
let core: CoreV1Api;
let gatewayKc: KubeConfig;
let gatewayKubeconfigFile: string;
let work: string;
let provider: Provider;
let idp: http.Server;
let idpPort: number;
let rs: http.Server;
let rsPort: number;
const gateways: RunningGateway[] = [];
/** Refresh tokens presented at the provider (answered or refused), and its refusals. */
const presented: string[] = [];
const grantErrors: string[] = [];
/** Tokens the resource server saw, with the provider's verdict. */
const seen: { token: string | null; active: boolean }[] = [];
const resolver = new UpstreamResolver(new DestinationPolicy(['127.0.0.0/8']), new Map());

async function mintRefreshToken(): Promise<string> {
  const client = await provider.Client.find('rt');
  const grant = new provider.Grant({ accountId: 'alice', clientId: 'rt' });
  grant.addOIDCScope('openid offline_access');
  const grantId = await grant.save();
  return new provider.RefreshToken({
    client: client!,
    accountId: 'alice',
    grantId,
    scope: 'openid offline_access',
    gty: 'authorization_code',
  }).save();
}

async function introspect(token: string): Promise<{ active: boolean }> {
  const res = await fetch(`http://127.0.0.1:${idpPort}/token/introspection`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${b64(`rs:${RS_SECRET}`)}`,
    },
    body: new URLSearchParams({ token }).toString(),
  });
  return (await res.json()) as { active: boolean };
}

const input = (name: string, secret: string): OAuth2Input => ({
  name,
  apply: {
    type: 'oauth2-refresh-token',
    tokenUrl: `http://127.0.0.1:${idpPort}/token`,
    clientId: 'rt',
    clientAuth: 'basic',
  } as OAuth2Input['apply'],
  secret,
  clientSecret: null,
  version: `v-${sha(secret).slice(0, 12)}`,
});

/** A replica's token cache over its own store (as service.ts wires them), under the gateway's identity. */
function replica(holder: string, kc: KubeConfig = gatewayKc, secretName = STATE): OAuth2Tokens {
  const store = new KubeRefreshState({
    kc,
    namespace: RELEASE_NS,
    secretName,
    refreshSkewMs: SKEW_MS,
    leaseMs: 1_500,
    holder,
  });
  return new OAuth2Tokens({ resolver, refreshSkewMs: SKEW_MS, remote: store.token });
}

async function stored(name: string): Promise<{ s: StoredRefreshState | null; rv: string }> {
  const sec = await core.readNamespacedSecret({ name: STATE, namespace: RELEASE_NS });
  const v = sec.data?.[name];
  return {
    s: v ? parseState(Buffer.from(v, 'base64').toString('utf8')) : null,
    rv: sec.metadata?.resourceVersion ?? '',
  };
}

/** Writes `change(state)` for credential `name` as the admin (what a crashed replica left behind). */
async function edit(name: string, change: (s: StoredRefreshState) => StoredRefreshState): Promise<void> {
  const sec = await core.readNamespacedSecret({ name: STATE, namespace: RELEASE_NS });
  const s = parseState(Buffer.from(sec.data![name]!, 'base64').toString('utf8'))!;
  sec.data = { ...sec.data, [name]: b64(JSON.stringify(change(s))) };
  await core.replaceNamespacedSecret({ name: STATE, namespace: RELEASE_NS, body: sec });
}

async function putSource(token: string): Promise<void> {
  const body = { metadata: { name: SOURCE, namespace: RELEASE_NS }, data: { 'refresh-token': b64(token) } };
  try {
    await core.replaceNamespacedSecret({ name: SOURCE, namespace: RELEASE_NS, body });
  } catch (err) {
    if (kubeFailure(err).status !== 404) throw err;
    await core.createNamespacedSecret({ namespace: RELEASE_NS, body });
  }
}

beforeAll(async () => {
  cluster = await startTestCluster();
  core = cluster.admin().makeApiClient(CoreV1Api);
  work = mkdtempSync(path.join(os.tmpdir(), 'airlock-k8s-oauth2-'));
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
    'gateway.replicas=2',
    '--set',
    `gateway.credentialSecrets={${SOURCE}}`,
  ]);
  const t = cluster.kubeConfigForToken(await cluster.serviceAccountToken(RELEASE_NS, GATEWAY_SA), 'gateway');
  gatewayKc = t.kc;
  gatewayKubeconfigFile = t.file;

  idp = http.createServer();
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
  idpPort = (idp.address() as AddressInfo).port;
  provider = new Provider(`http://127.0.0.1:${idpPort}`, {
    clients: [
      {
        // Public client: rotated at every use, a used one refused (oidc-provider's default for "none").
        client_id: 'rt',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/cb'],
      },
      { client_id: 'rs', client_secret: RS_SECRET, grant_types: [], response_types: [], redirect_uris: [] },
    ],
    scopes: ['openid', 'offline_access'],
    features: { introspection: { enabled: true } },
    ttl: { AccessToken: TTL_S, RefreshToken: 3600, Grant: 3600, IdToken: 3600 },
  });
  type Ctx = { oidc: { params?: { grant_type?: unknown; refresh_token?: unknown } } };
  const record = (ctx: Ctx): void => {
    if (ctx.oidc.params?.grant_type === 'refresh_token')
      presented.push(String(ctx.oidc.params.refresh_token));
  };
  provider.on('grant.success', record);
  provider.on('grant.error', (ctx: Ctx, err: Error) => {
    record(ctx);
    grantErrors.push(err.message);
  });
  idp.on('request', provider.callback());

  rs = http.createServer((req, res) => {
    void (async () => {
      const h = req.headers.authorization ?? '';
      const token = h.startsWith('Bearer ') ? h.slice(7) : null;
      const info = token ? await introspect(token) : { active: false };
      seen.push({ token, active: info.active });
      res.writeHead(info.active ? 200 : 401);
      res.end();
    })();
  });
  await new Promise<void>((r) => rs.listen(0, '127.0.0.1', r));
  rsPort = (rs.address() as AddressInfo).port;
}, 240_000);

afterAll(async () => {
  for (const g of gateways) await g.close();
  idp?.closeAllConnections();
  await new Promise((r) => idp?.close(r));
  await new Promise((r) => rs?.close(r));
  await cluster?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('OAuth2 refresh-token state shared by gateway replicas (Kubernetes Secret, CAS + lease)', () => {
  it('the chart: an empty state Secret, a Role naming it (get, update), the gateways told to use it', async () => {
    const sec = await core.readNamespacedSecret({ name: STATE, namespace: RELEASE_NS });
    expect(sec.data ?? {}).toEqual({});
    expect(sec.metadata?.annotations?.['helm.sh/resource-policy']).toBe('keep');
    const gw = new KubeConfig();
    gw.loadFromFile(gatewayKubeconfigFile);
    const api = gw.makeApiClient(CoreV1Api);
    // The gateway may read and update it by name …
    await api.replaceNamespacedSecret({
      name: STATE,
      namespace: RELEASE_NS,
      body: await api.readNamespacedSecret({ name: STATE, namespace: RELEASE_NS }),
    });
    // … and not list Secrets, create one, or delete this one.
    const list = await api.listNamespacedSecret({ namespace: RELEASE_NS }).catch((e: unknown) => e);
    expect(kubeFailure(list).status).toBe(403);
    const create = await api
      .createNamespacedSecret({ namespace: RELEASE_NS, body: { metadata: { name: 'airlock-gateway-x' } } })
      .catch((e: unknown) => e);
    expect(kubeFailure(create).status).toBe(403);
    const del = await api
      .deleteNamespacedSecret({ name: STATE, namespace: RELEASE_NS })
      .catch((e: unknown) => e);
    expect(kubeFailure(del).status).toBe(403);
    // The rendered gateway settings name it.
    const deploy = await cluster.helm(['get', 'manifest', RELEASE, '--namespace', RELEASE_NS]);
    expect(deploy).toContain(
      `\\"oauth2RefreshState\\":{\\"kind\\":\\"kubernetes\\",\\"namespace\\":\\"${RELEASE_NS}\\",\\"secretName\\":\\"${STATE}\\"}`,
    );
  });

  it("without shared state a second replica's first refresh is refused (the gap this closes)", async () => {
    const rt = await mintRefreshToken();
    const a = new OAuth2Tokens({ resolver, refreshSkewMs: SKEW_MS });
    const b = new OAuth2Tokens({ resolver, refreshSkewMs: SKEW_MS });
    expect((await a.token(input('unshared', rt))).ok).toBe(true);
    const second = await b.token(input('unshared', rt));
    expect(second).toEqual({
      ok: false,
      reason: `token endpoint http://127.0.0.1:${idpPort}/token: answered 400 (invalid_grant)`,
    });
    presented.length = 0;
    grantErrors.length = 0;
  });

  it('two gateways, calls alternating over more than two token lifetimes: every call 200, one refresh per lifetime, no refresh token presented twice', async () => {
    await putSource(await mintRefreshToken());
    const policyDir = path.join(work, 'policy');
    mkdirSync(policyDir);
    writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
    writeFileSync(path.join(policyDir, 'policy.csv'), `p, agent, api.test:${rsPort}, /*, GET, allow\n`);
    writeFileSync(
      path.join(policyDir, 'credentials.yaml'),
      [
        'version: 1',
        'credentials:',
        '  - name: calendar',
        '    roles: [agent]',
        `    bindings: [{ host: "api.test:${rsPort}", path: /cal/*, methods: [GET] }]`,
        `    apply: { type: oauth2-refresh-token, tokenUrl: "http://127.0.0.1:${idpPort}/token", clientId: rt }`,
        `    source: { secretRef: { name: ${SOURCE}, key: refresh-token } }`,
        '',
      ].join('\n'),
    );
    for (const i of [0, 1])
      gateways.push(
        await startPodWatchGateway(
          { policyDir, auditFile: path.join(work, `audit-${i}.jsonl`), kubeconfig: gatewayKubeconfigFile },
          {
            allowPrivateCidrs: ['127.0.0.0/8'],
            hostAliases: { 'api.test': '127.0.0.1' },
            oauth2RefreshSkewMs: SKEW_MS,
            credentialSecrets: { namespace: RELEASE_NS, names: [SOURCE], kubeconfig: gatewayKubeconfigFile },
            oauth2RefreshState: {
              kind: 'kubernetes',
              namespace: RELEASE_NS,
              secretName: STATE,
              kubeconfig: gatewayKubeconfigFile,
            },
          },
        ),
      );
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
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 10001,
            seccompProfile: { type: 'RuntimeDefault' },
          },
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
    const auth = `${SESSION.id}:${SESSION.cred}`;
    const call = (g: RunningGateway, p: string) =>
      proxyRequest({ host: '127.0.0.1', port: g.proxyPort }, `http://api.test:${rsPort}${p}`, { auth });
    for (const g of gateways)
      await waitUntil(
        'the gateway serves the session',
        20_000,
        async () => (await call(g, '/cal/probe')).status !== 407,
      );

    seen.length = 0;
    const statuses: number[] = [];
    const until = Date.now() + (2 * TTL_S + 2) * 1000;
    for (let i = 0; Date.now() < until; i++) {
      statuses.push((await call(gateways[i % 2]!, `/cal/${i}`)).status);
      await new Promise((r) => setTimeout(r, 150));
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(seen.every((s) => s.active)).toBe(true);
    const tokens = new Set(seen.map((s) => s.token));
    expect(tokens.size).toBeGreaterThanOrEqual(3); // refreshed at least twice during the calls
    // One refresh per access token for both gateways together, each refresh token presented once.
    expect(grantErrors).toEqual([]);
    expect(new Set(presented).size).toBe(presented.length);
    expect(presented.length).toBeLessThanOrEqual(tokens.size + 1);
    console.log(
      `two gateways sharing refresh state: ${statuses.length} calls, ${tokens.size} access tokens, ` +
        `${presented.length} refreshes, ${grantErrors.length} refused`,
    );
    // The state Secret holds the current (rotated) refresh token; no ConfigMap holds any of them.
    const { s } = await stored('calendar');
    expect(s).toMatchObject({ lease: null, lost: null, failure: null });
    expect(presented).not.toContain(s!.refreshToken);
    const cms = JSON.stringify(await core.listNamespacedConfigMap({ namespace: RELEASE_NS }));
    for (const v of [s!.refreshToken, ...presented, ...[...tokens].map(String)]) expect(cms).not.toContain(v);
  }, 120_000);

  it('CAS: six replicas asking at once for a new credential → one refresh, the same token everywhere', async () => {
    const rt = await mintRefreshToken();
    const before = presented.length;
    const replicas = Array.from({ length: 6 }, (_, i) => replica(`race-${i}`));
    const results = await Promise.all(replicas.map((r) => r.token(input('race', rt))));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(new Set(results.map((r) => (r.ok ? r.accessToken : ''))).size).toBe(1);
    expect(presented.length - before).toBe(1);
    expect(grantErrors).toEqual([]);
  });

  it('a client secret rotated alone (a new value version, the same refresh token) keeps the chain', async () => {
    const rt = await mintRefreshToken();
    const v1 = { ...input('cs', rt), version: 'rt1.cs1' };
    const first = await replica('a').token(v1);
    expect(first.ok).toBe(true);
    const before = presented.length;
    // Another replica (or this one after the rotation) with the new client secret's version: the stored token.
    expect(await replica('b').token({ ...v1, version: 'rt1.cs2' })).toEqual(first);
    expect(presented.length).toBe(before);
    expect((await stored('cs')).s).toMatchObject({ seed: seedOf(rt), retired: [] });
  });

  it('replicas with workers: each primary asks the shared state (primaryOAuth2Tokens), its workers ask the primary → one refresh for 2 x 2 workers', async () => {
    const rt = await mintRefreshToken();
    const cfg = parseGatewayServiceConfig(
      {
        port: 0,
        adminPort: 0,
        policyDir: work,
        auditFile: path.join(work, 'unused.jsonl'),
        sessionSource: { kind: 'admin' },
        allowPrivateCidrs: ['127.0.0.0/8'],
        oauth2RefreshSkewMs: SKEW_MS,
        oauth2RefreshState: {
          kind: 'kubernetes',
          namespace: RELEASE_NS,
          secretName: STATE,
          kubeconfig: gatewayKubeconfigFile,
        },
      },
      'admin-token-0123456789',
    );
    const workers = [0, 1].flatMap(() => {
      const primary = primaryOAuth2Tokens(cfg, createLogger({ level: 'silent' }));
      return [0, 1].map(() => {
        const shared: SharedOAuth2 = new SharedOAuth2((q) => {
          void answerOAuth2Query(primary, q).then((reply) => shared.receive(reply));
        });
        return new OAuth2Tokens({ resolver, refreshSkewMs: SKEW_MS, remote: shared.request });
      });
    });
    const before = presented.length;
    const results = await Promise.all(
      workers.flatMap((w) => Array.from({ length: 5 }, () => w.token(input('workers', rt)))),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    expect(new Set(results.map((r) => (r.ok ? r.accessToken : ''))).size).toBe(1);
    expect(presented.length - before).toBe(1);
    expect((await stored('workers')).s).toMatchObject({ lease: null, seed: seedOf(rt) });
    expect(grantErrors).toEqual([]);
  });

  it('lease expiry: a holder that died before the token endpoint is taken over and the chain goes on', async () => {
    const rt = await mintRefreshToken();
    expect((await replica('a').token(input('stale', rt))).ok).toBe(true);
    const held = (await stored('stale')).s!;
    // A replica took the lease and died before presenting the refresh token; the access token expired.
    await edit('stale', (s) => ({
      ...s,
      accessToken: null,
      expiresAtMs: 0,
      lease: { holder: 'gateway-dead/1', id: 'dead-lease', untilMs: Date.now() + 800 },
    }));
    const before = presented.length;
    const r = await replica('b').token(input('stale', rt));
    expect(r.ok).toBe(true);
    expect(presented.slice(before)).toEqual([held.refreshToken]);
    const after = (await stored('stale')).s!;
    expect(after).toMatchObject({ lease: null, lost: null });
    expect(after.refreshToken).not.toBe(held.refreshToken);
    expect(grantErrors).toEqual([]);
  });

  it('a holder that died after the endpoint rotated the token: lost, named, answered without the endpoint, re-seeded by a new source value', async () => {
    const rt = await mintRefreshToken();
    expect((await replica('a').token(input('crash', rt))).ok).toBe(true);
    const held = (await stored('crash')).s!;
    // The holder took the lease, the endpoint rotated the token (answered), then the holder died.
    await edit('crash', (s) => ({
      ...s,
      accessToken: null,
      expiresAtMs: 0,
      lease: { holder: 'gateway-crashed/7', id: 'crashed-lease', untilMs: Date.now() + 800 },
    }));
    const answered = await fetch(`http://127.0.0.1:${idpPort}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: held.refreshToken,
        client_id: 'rt',
      }),
    });
    expect(answered.status).toBe(200);

    const r = await replica('b').token(input('crash', rt));
    expect(r.ok).toBe(false);
    const reason = r.ok ? '' : r.reason;
    expect(reason).toContain('answered 400 (invalid_grant)');
    expect(reason).toContain('replica gateway-crashed/7 held the refresh lease');
    expect(reason).toContain("put a new refresh token in the credential's source to re-seed it");
    expect((await stored('crash')).s).toMatchObject({ lost: reason, lease: null });
    // Another replica gets the same reason and the endpoint is not asked again.
    const before = presented.length;
    expect(await replica('c').token(input('crash', rt))).toEqual({ ok: false, reason });
    expect(presented.length).toBe(before);
    // Re-seed: a new refresh token in the source (a new value version) starts a new chain.
    const fresh = await mintRefreshToken();
    const again = await replica('c').token(input('crash', fresh));
    expect(again.ok).toBe(true);
    const reseeded = (await stored('crash')).s!;
    expect(reseeded).toMatchObject({ lost: null, seed: seedOf(fresh) });
    expect(reseeded.retired).toContain(seedOf(rt));
    // A replica whose source still holds the old value (its watch is behind) uses the new chain.
    const late = await replica('d').token(input('crash', rt));
    expect(late).toEqual(again);
    grantErrors.length = 0;
  });

  it('the API server unreachable: the held access token serves until it expires, then 503 with the reason; back again when it is', async () => {
    // A TCP forwarder in front of the API server, closed and reopened by the test.
    let sockets: net.Socket[] = [];
    const apiPort = Number(new URL(cluster.server).port);
    const fwd = net.createServer((c) => {
      const u = net.connect(apiPort, '127.0.0.1');
      sockets.push(c, u);
      c.pipe(u).pipe(c);
      c.on('error', () => u.destroy());
      u.on('error', () => c.destroy());
    });
    await new Promise<void>((r) => fwd.listen(0, '127.0.0.1', r));
    const fwdPort = (fwd.address() as AddressInfo).port;
    const kc = new KubeConfig();
    kc.loadFromString(gatewayKc.exportConfig().replace(cluster.server, `https://127.0.0.1:${fwdPort}`));
    const r = replica('offline', kc);
    const rt = await mintRefreshToken();
    const first = await r.token(input('offline', rt));
    expect(first.ok).toBe(true);
    await new Promise<void>((res) => fwd.close(() => res()));
    for (const s of sockets) s.destroy();
    sockets = [];
    // Within the skew the background refresh fails (no API server); the held token still serves.
    const { s } = await stored('offline');
    await new Promise((res) => setTimeout(res, s!.expiresAtMs - SKEW_MS + 300 - Date.now()));
    expect(await r.token(input('offline', rt))).toEqual(first);
    await waitUntil('the held token expired', 10_000, async () => !(await r.token(input('offline', rt))).ok);
    const down = await r.token(input('offline', rt));
    expect(down.ok).toBe(false);
    expect(down.ok ? '' : down.reason).toMatch(
      new RegExp(`^cannot read the OAuth2 refresh state Secret ${RELEASE_NS}/${STATE}: `),
    );
    // The API server reachable again: the chain was never touched, the next ask refreshes.
    await new Promise<void>((res) => fwd.listen(fwdPort, '127.0.0.1', res));
    try {
      await waitUntil('a token again', 10_000, async () => (await r.token(input('offline', rt))).ok);
    } finally {
      await new Promise<void>((res) => fwd.close(() => res()));
      for (const s of sockets) s.destroy();
    }
    expect(grantErrors).toEqual([]);
  }, 60_000);

  it('RBAC: a store naming another Secret gets nothing, with the reason', async () => {
    const other = replica('x', gatewayKc, 'airlock-not-the-state');
    const r = await other.token(input('other', 'never-presented-0000000000'));
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.reason).toMatch(
      /^cannot read the OAuth2 refresh state Secret airlock\/airlock-not-the-state: .*\(HTTP 403 Forbidden\): the gateway ServiceAccount needs get and update on it/,
    );
  });
});

describe('chart upgrade and uninstall keep the state', () => {
  it('helm upgrade with a changed value leaves the stored chains; uninstall leaves the Secret (keep)', async () => {
    const before = await core.readNamespacedSecret({ name: STATE, namespace: RELEASE_NS });
    expect(Object.keys(before.data ?? {}).length).toBeGreaterThan(0);
    await cluster.helm([
      'upgrade',
      RELEASE,
      path.join(repoRoot, 'charts/airlock'),
      '--namespace',
      RELEASE_NS,
      '-f',
      path.join(repoRoot, 'charts/airlock/ci/local-images-values.yaml'),
      '--set',
      'gateway.replicas=2',
      '--set',
      `gateway.credentialSecrets={${SOURCE}}`,
      '--set',
      'gateway.oauth2RefreshSkewSeconds=5',
    ]);
    const after = await core.readNamespacedSecret({ name: STATE, namespace: RELEASE_NS });
    expect(after.data).toEqual(before.data);
    await cluster.helm(['uninstall', RELEASE, '--namespace', RELEASE_NS]);
    const kept = await core.readNamespacedSecret({ name: STATE, namespace: RELEASE_NS });
    expect(kept.data).toEqual(before.data);
  });
});

describe('chart: gateway.oauth2RefreshState', () => {
  type Obj = { kind: string; metadata: { name: string }; spec?: unknown };
  const render = async (args: string[]): Promise<Obj[]> => {
    const { stdout } = await promisify(execFile)(
      k8sTools().helm,
      ['template', RELEASE, path.join(repoRoot, 'charts/airlock'), '--namespace', RELEASE_NS, ...args],
      { maxBuffer: 64 << 20 },
    );
    return YAML.parseAllDocuments(stdout)
      .map((d) => d.toJS() as Obj | null)
      .filter((o): o is Obj => o !== null);
  };
  const stateOf = (objs: Obj[]): unknown => {
    const gw = objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'airlock-gateway')!;
    const env = (
      gw.spec as { template: { spec: { containers: { env: { name: string; value: string }[] }[] } } }
    ).template.spec.containers[0]!.env;
    return (
      JSON.parse(env.find((e) => e.name === 'AIRLOCK_GATEWAY_CONFIG')!.value) as {
        oauth2RefreshState?: unknown;
      }
    ).oauth2RefreshState;
  };
  const named = (objs: Obj[]): string[] =>
    objs
      .filter((o) => o.metadata.name === STATE)
      .map((o) => o.kind)
      .sort();
  const on = { kind: 'kubernetes', namespace: RELEASE_NS, secretName: STATE };

  it.each([
    ['auto, 2 replicas, credential Secrets', true, ['--set', `gateway.credentialSecrets={${SOURCE}}`]],
    ['auto, 2 replicas, no credential Secrets (no refresh token can be read)', false, []],
    [
      'auto, 1 replica',
      false,
      ['--set', 'gateway.replicas=1', '--set', `gateway.credentialSecrets={${SOURCE}}`],
    ],
    [
      'off',
      false,
      ['--set', 'gateway.oauth2RefreshState=off', '--set', `gateway.credentialSecrets={${SOURCE}}`],
    ],
    [
      'kubernetes, 1 replica',
      true,
      ['--set', 'gateway.oauth2RefreshState=kubernetes', '--set', 'gateway.replicas=1'],
    ],
  ])('%s → shared state: %s', async (_what, shared, args) => {
    const objs = await render(args);
    expect(named(objs)).toEqual(shared ? ['Role', 'RoleBinding', 'Secret'] : []);
    expect(stateOf(objs)).toEqual(shared ? on : undefined);
  });

  it('a value other than auto, kubernetes, off is refused by the schema, naming the key', async () => {
    await expect(render(['--set', 'gateway.oauth2RefreshState=redis'])).rejects.toThrow(
      /\/gateway\/oauth2RefreshState/,
    );
  });
});
