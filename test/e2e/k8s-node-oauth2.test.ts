/**
 * OAuth2 refresh-token credentials across gateway replicas on the one-node cluster of
 * scripts/k8s-node.sh (issue 14; docs/credentials.md "Several replicas"): the chart with two gateway
 * replicas and `gateway.credentialSecrets` (so `gateway.oauth2RefreshState: auto` is on), the refresh
 * token in a Secret, and `oidc-provider` (npm) on the node as the authorization server, rotating the
 * refresh token at every use and refusing a used one (it then revokes the grant). The resource server
 * on the node accepts a call only when the provider's introspection says its token is active.
 *
 * From inside a session's Pod, calls alternate between the two replicas (each dialled by its Pod IP)
 * over three access-token lifetimes: every call 200, both replicas used the same tokens, one refresh
 * per token for the two together, no refresh token presented twice; the state Secret holds the
 * rotated refresh token; no token in the gateways' logs or in a ConfigMap.
 *
 * Run (node up: `bash scripts/k8s-node.sh up`, images loaded) under the lock:
 * `flock /tmp/airlock-e2e.lock npx vitest run --project cluster test/e2e/k8s-node-oauth2.test.ts`.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestApi } from '../helpers/api-client.js';
import { repoRoot } from '../helpers/k8s.js';
import { helm, kubectl, portForward, requireNode, type NodeEnv } from '../helpers/k8s-node.js';

const RELEASE = 'airlock';
const NS = 'airlock';
const SANDBOX_NS = 'airlock-sandboxes';
const TOKEN = 'ci-api-token-0123456789abcdef'; // ci/local-images-values.yaml
const chart = path.join(repoRoot, 'charts/airlock');
/** The provider and the resource server on the node (fixed: the policy names them). */
const IDP_PORT = 19480;
const RS_PORT = 19481;
const TTL_S = 6;
const SKEW_S = 2;
const RS_SECRET = 'rs-secret-0123456789abcdef';
const STATE = `${RELEASE}-gateway-oauth2-state`;

let n: NodeEnv;
let provider: Provider;
let idp: http.Server | undefined;
let rs: http.Server | undefined;
let api: TestApi;
let stopForward: (() => Promise<void>) | undefined;
let setupError: unknown = null;
const presented: string[] = [];
const grantErrors: string[] = [];
const seen: { token: string | null; active: boolean }[] = [];

async function introspect(token: string): Promise<{ active: boolean }> {
  const res = await fetch(`http://${n.nodeIp}:${IDP_PORT}/token/introspection`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`rs:${RS_SECRET}`).toString('base64')}`,
    },
    body: new URLSearchParams({ token }).toString(),
  });
  return (await res.json()) as { active: boolean };
}

async function cleanup(): Promise<void> {
  await helm(n, ['uninstall', RELEASE, '-n', NS, '--wait', '--timeout', '2m']);
  await kubectl(n, ['delete', 'namespace', NS, SANDBOX_NS, '--ignore-not-found', '--wait=true'], 180_000);
}

beforeAll(async () => {
  try {
    n = await requireNode();
    await cleanup(); // leftovers of an aborted run
    idp = http.createServer();
    await new Promise<void>((r) => idp!.listen(IDP_PORT, n.nodeIp, r));
    provider = new Provider(`http://${n.nodeIp}:${IDP_PORT}`, {
      clients: [
        {
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
        res.end(info.active ? 'ok' : 'inactive');
      })();
    });
    await new Promise<void>((r) => rs!.listen(RS_PORT, n.nodeIp, r));
  } catch (err) {
    setupError = err;
  }
}, 300_000);

afterAll(async () => {
  await stopForward?.();
  if (n) await cleanup().catch((e: unknown) => console.error('cleanup:', e));
  idp?.closeAllConnections();
  await new Promise((r) => (idp ? idp.close(r) : r(null)));
  await new Promise((r) => (rs ? rs.close(r) : r(null)));
}, 300_000);

describe('OAuth2 refresh token shared by two gateway replicas (oauth2RefreshState: kubernetes)', () => {
  it('calls through both replicas over three token lifetimes: all 200, one refresh per token, no refresh token reused', async () => {
    if (setupError) throw setupError;
    // The user's consent, obtained once outside the sandbox: a refresh token in a Secret.
    const client = await provider.Client.find('rt');
    const grant = new provider.Grant({ accountId: 'alice', clientId: 'rt' });
    grant.addOIDCScope('openid offline_access');
    const grantId = await grant.save();
    const refreshToken = await new provider.RefreshToken({
      client: client!,
      accountId: 'alice',
      grantId,
      scope: 'openid offline_access',
      gty: 'authorization_code',
    }).save();
    await kubectl(n, ['create', 'namespace', NS]);
    await kubectl(n, [
      '-n',
      NS,
      'create',
      'secret',
      'generic',
      'airlock-idp',
      `--from-literal=refresh-token=${refreshToken}`,
    ]);

    const dir = mkdtempSync(path.join(tmpdir(), 'airlock-k8s-oauth2-'));
    const policyFile = path.join(dir, 'policy.csv');
    writeFileSync(
      policyFile,
      readFileSync(path.join(repoRoot, 'policies/policy.csv'), 'utf8') +
        `p, analyst, cal.test:${RS_PORT}, /cal/*, GET, allow\n`,
    );
    const credentialsFile = path.join(dir, 'credentials.yaml');
    writeFileSync(
      credentialsFile,
      [
        'version: 1',
        'credentials:',
        '  - name: calendar',
        '    roles: [analyst]',
        `    bindings: [{ host: "cal.test:${RS_PORT}", path: /cal/*, methods: [GET] }]`,
        `    apply: { type: oauth2-refresh-token, tokenUrl: "http://${n.nodeIp}:${IDP_PORT}/token", clientId: rt }`,
        '    source: { secretRef: { name: airlock-idp, key: refresh-token } }',
        '',
      ].join('\n'),
    );
    const install = await helm(n, [
      'install',
      RELEASE,
      chart,
      '-n',
      NS,
      '-f',
      path.join(chart, 'ci/local-images-values.yaml'),
      '--set',
      'gateway.replicas=2',
      '--set',
      'gateway.credentialSecrets={airlock-idp}',
      '--set',
      `gateway.oauth2RefreshSkewSeconds=${SKEW_S}`,
      '--set',
      `gateway.hostAliases.cal\\.test=${n.nodeIp}`,
      '--set',
      `gateway.allowPrivateCidrs={${n.nodeIp}/32}`,
      '--set',
      'controller.networkPolicyEnforced=true',
      '--set-json',
      'sandbox.resources.cpus=0.25',
      '--set',
      'sandbox.resources.memoryMiB=256',
      '--set-file',
      `policies.files.policy\\.csv=${policyFile}`,
      '--set-file',
      `policies.files.credentials\\.yaml=${credentialsFile}`,
      '--wait',
      '--timeout',
      '3m',
    ]);
    expect(install.code, install.stderr).toBe(0);
    const fwd = await portForward(n, NS, `svc/${RELEASE}-controller`, 8080);
    stopForward = fwd.stop;
    api = new TestApi(`http://127.0.0.1:${fwd.port}`, TOKEN);
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
      .split(/\s+/);
    expect(ips).toHaveLength(2);

    const s = await api.create({ role: 'analyst', ttlSeconds: 600 });
    // Alternate between the replicas (each by its Pod IP in the session's proxy URL) for three token
    // lifetimes, one call every ~0.3 s; each line: replica index and status.
    const rounds = Math.ceil((3 * TTL_S * 1000) / 300);
    const script = [
      `a=$(echo "$HTTP_PROXY" | sed -E 's#@[^:/]+#@${ips[0]}#')`,
      `b=$(echo "$HTTP_PROXY" | sed -E 's#@[^:/]+#@${ips[1]}#')`,
      `i=0; while [ $i -lt ${rounds} ]; do`,
      '  if [ $((i % 2)) -eq 0 ]; then p=$a; r=0; else p=$b; r=1; fi',
      `  c=$(curl -s -o /dev/null -m 10 -w '%{http_code}' -x "$p" http://cal.test:${RS_PORT}/cal/$i)`,
      '  echo "$r $c"; i=$((i + 1)); sleep 0.3',
      'done',
    ].join('\n');
    const out = await api.sh(s.id, script, 120);
    const lines = out.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(' '));
    expect(lines).toHaveLength(rounds);
    expect(
      lines.filter(([, code]) => code !== '200'),
      out.stderr,
    ).toEqual([]);
    expect(new Set(lines.map(([r]) => r))).toEqual(new Set(['0', '1']));
    expect(seen.every((x) => x.active)).toBe(true);
    const tokens = new Set(seen.map((x) => x.token));
    expect(tokens.size).toBeGreaterThanOrEqual(3); // refreshed at least twice during the calls
    expect(grantErrors).toEqual([]);
    expect(new Set(presented).size).toBe(presented.length);
    expect(presented.length).toBeLessThanOrEqual(tokens.size + 1);
    console.log(
      `[k8s-node oauth2] ${lines.length} calls through 2 replicas: ${tokens.size} access tokens, ` +
        `${presented.length} refreshes, ${grantErrors.length} refused`,
    );

    // The state Secret holds the rotated refresh token, no lease; nothing of it anywhere else.
    const state = JSON.parse(await kubectl(n, ['-n', NS, 'get', 'secret', STATE, '-o', 'json'])) as {
      data: Record<string, string>;
    };
    const cal = JSON.parse(Buffer.from(state.data['calendar']!, 'base64').toString('utf8')) as {
      refreshToken: string;
      lease: unknown;
      lost: unknown;
    };
    expect(cal.lease).toBeNull();
    expect(cal.lost).toBeNull();
    expect(presented).not.toContain(cal.refreshToken);
    const secrets = [cal.refreshToken, refreshToken, ...presented, ...[...tokens].map(String)];
    const logs = await kubectl(n, [
      '-n',
      NS,
      'logs',
      '-l',
      'app.kubernetes.io/component=gateway',
      '--all-containers',
      '--tail=-1',
    ]);
    const cms = await kubectl(n, ['-n', NS, 'get', 'configmaps', '-o', 'json']);
    for (const v of secrets) {
      expect(logs).not.toContain(v);
      expect(cms).not.toContain(v);
    }
  });
});
