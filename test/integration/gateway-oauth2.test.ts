/**
 * Issue 14 part B: OAuth2 credentials — the gateway fetches access tokens itself (client-credentials
 * and refresh-token grants), caches them, refreshes them before they expire, and injects
 * `Authorization: Bearer`. The authorization server is real and not ours: `oidc-provider` (npm),
 * issuing 6-second access tokens; the resource server accepts a call only when the provider's
 * introspection endpoint says its token is active (the check is the provider's, the server only
 * relays it and records which token each call carried).
 *
 * Waits are for events (a second distinct token at the resource server), bounded; nothing asserts a
 * duration.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../src/audit/file-sink.js';
import { DestinationPolicy } from '../../src/gateway/address.js';
import { CredentialVault } from '../../src/gateway/credentials.js';
import { OAuth2Tokens } from '../../src/gateway/oauth2.js';
import { EgressGateway, withGatewayDefaults } from '../../src/gateway/proxy.js';
import { UpstreamResolver } from '../../src/gateway/resolve.js';
import { SessionTable } from '../../src/gateway/sessions.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore } from '../../src/policy/store.js';
import { proxyRequest, type ProxyTarget } from '../helpers/proxy-client.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

const CC_SECRET = 'cc-secret-5b7d9f1a3c5e7a9b1d3f';
const RS_SECRET = 'rs-secret-0f1e2d3c4b5a69788796';
const TTL_S = 6;
const AGENT = { id: 's-agent', cred: 'cred-agent-0123456789', address: '127.0.0.1', role: 'agent' };
const auth = `${AGENT.id}:${AGENT.cred}`;

let dir: string;
let provider: Provider;
let idp: http.Server;
let idpPort: number;
let rs: http.Server;
let rsPort: number;
/** What reached the resource server: path, token (null: none), whether the provider said active. */
const seen: { path: string; token: string | null; active: boolean; clientId: string | null }[] = [];
const tokenRequests: { credential: string; grant: string; ok: boolean; detail: string | null }[] = [];
let refreshTokenValue: string;
let policy: PolicyStore;
let vault: CredentialVault;
let gateway: EgressGateway;
let audit: MemoryAuditSink;
let proxy: ProxyTarget;

/** Introspects `token` at the provider as the resource server's own client. */
async function introspect(token: string): Promise<{ active: boolean; client_id?: string }> {
  const res = await fetch(`http://127.0.0.1:${idpPort}/token/introspection`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`rs:${RS_SECRET}`).toString('base64')}`,
    },
    body: new URLSearchParams({ token }).toString(),
  });
  return (await res.json()) as { active: boolean; client_id?: string };
}

function credentialsYaml(): string {
  const token = `http://127.0.0.1:${idpPort}/token`;
  return [
    'version: 1',
    'credentials:',
    '  - name: api-cc',
    '    roles: [agent]',
    `    bindings: [{ host: "api.test:${rsPort}", path: /cc/*, methods: [GET] }]`,
    `    apply: { type: oauth2-client-credentials, tokenUrl: "${token}", clientId: cc, scope: "api:read" }`,
    `    source: { file: ${path.join(dir, 'secrets', 'cc')} }`,
    '  - name: api-rt',
    '    roles: [agent]',
    `    bindings: [{ host: "api.test:${rsPort}", path: /rt/*, methods: [GET] }]`,
    `    apply: { type: oauth2-refresh-token, tokenUrl: "${token}", clientId: rt }`,
    `    source: { file: ${path.join(dir, 'secrets', 'rt')} }`,
    '  - name: api-bad',
    '    roles: [agent]',
    `    bindings: [{ host: "api.test:${rsPort}", path: /bad/*, methods: [GET] }]`,
    `    apply: { type: oauth2-client-credentials, tokenUrl: "${token}", clientId: cc, clientAuth: post }`,
    `    source: { file: ${path.join(dir, 'secrets', 'bad')} }`,
    '  - name: api-meta',
    '    roles: [agent]',
    `    bindings: [{ host: "api.test:${rsPort}", path: /meta/*, methods: [GET] }]`,
    `    apply: { type: oauth2-client-credentials, tokenUrl: "http://metadata.test/token", clientId: cc }`,
    `    source: { file: ${path.join(dir, 'secrets', 'cc')} }`,
    '',
  ].join('\n');
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-oauth2-'));
  mkdirSync(path.join(dir, 'secrets'), { mode: 0o700 });
  mkdirSync(path.join(dir, 'policy'));

  idp = http.createServer();
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
  idpPort = (idp.address() as AddressInfo).port;
  provider = new Provider(`http://127.0.0.1:${idpPort}`, {
    clients: [
      {
        client_id: 'cc',
        client_secret: CC_SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'api:read',
      },
      {
        // A public client whose refresh tokens the provider rotates on every use (its default for
        // token_endpoint_auth_method none): the gateway must keep the newest one.
        client_id: 'rt',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/cb'],
      },
      { client_id: 'rs', client_secret: RS_SECRET, grant_types: [], response_types: [], redirect_uris: [] },
    ],
    scopes: ['openid', 'offline_access', 'api:read'],
    features: { clientCredentials: { enabled: true }, introspection: { enabled: true } },
    ttl: { AccessToken: TTL_S, ClientCredentials: TTL_S, RefreshToken: 3600, Grant: 3600, IdToken: 3600 },
  });
  idp.on('request', provider.callback());

  // The refresh token an operator would have got from one consent: minted by the provider itself.
  const client = await provider.Client.find('rt');
  const grant = new provider.Grant({ accountId: 'alice', clientId: 'rt' });
  grant.addOIDCScope('openid offline_access');
  const grantId = await grant.save();
  refreshTokenValue = await new provider.RefreshToken({
    client: client!,
    accountId: 'alice',
    grantId,
    scope: 'openid offline_access',
    gty: 'authorization_code',
  }).save();

  rs = http.createServer((req, res) => {
    void (async () => {
      const h = req.headers.authorization ?? '';
      const token = h.startsWith('Bearer ') ? h.slice(7) : null;
      const info = token ? await introspect(token) : { active: false };
      seen.push({ path: req.url ?? '', token, active: info.active, clientId: info.client_id ?? null });
      res.writeHead(info.active ? 200 : 401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ active: info.active, client: info.client_id ?? null }));
    })();
  });
  await new Promise<void>((r) => rs.listen(0, '127.0.0.1', r));
  rsPort = (rs.address() as AddressInfo).port;

  writeFileSync(path.join(dir, 'secrets', 'cc'), `${CC_SECRET}\n`, { mode: 0o600 });
  writeFileSync(path.join(dir, 'secrets', 'bad'), 'not-the-client-secret-1234\n', { mode: 0o600 });
  writeFileSync(path.join(dir, 'secrets', 'rt'), `${refreshTokenValue}\n`, { mode: 0o600 });
  const policyDir = path.join(dir, 'policy');
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(path.join(policyDir, 'policy.csv'), `p, agent, api.test:${rsPort}, /*, GET, allow\n`);
  writeFileSync(path.join(policyDir, 'credentials.yaml'), credentialsYaml());
  policy = await PolicyStore.open(policyDir, { watch: false, pollIntervalMs: 0 });
  expect(policy.current(), policy.lastError() ?? '').not.toBeNull();

  const resolver = new UpstreamResolver(
    new DestinationPolicy(['127.0.0.0/8']),
    new Map([
      ['api.test', '127.0.0.1'],
      // A token endpoint on the cloud metadata address: refused by the destination check, never dialled.
      ['metadata.test', '169.254.169.254'],
    ]),
  );
  vault = new CredentialVault({
    pollIntervalMs: 0,
    oauth2: new OAuth2Tokens({
      resolver,
      refreshSkewMs: 2_000,
      onTokenRequest: (e) => tokenRequests.push(e),
    }),
  });
  const sessions = new SessionTable();
  sessions.upsert({
    id: AGENT.id,
    role: AGENT.role,
    address: AGENT.address,
    credentialSha256: sha(AGENT.cred),
    expiresAtMs: Date.now() + 3_600_000,
  });
  audit = new MemoryAuditSink();
  gateway = new EgressGateway(withGatewayDefaults({ policy, sessions, audit, credentials: vault, resolver }));
  const addr = await gateway.listen(0, '127.0.0.1');
  proxy = { host: '127.0.0.1', port: addr.port };
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  vault?.close();
  await policy?.close();
  await new Promise((r) => rs?.close(r));
  idp?.closeAllConnections();
  await new Promise((r) => idp?.close(r));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const api = (p: string): string => `http://api.test:${rsPort}${p}`;

/**
 * Calls `PREFIX/item-N` every 200 ms until the resource server has seen two different tokens there,
 * at most `max` calls; returns every status.
 */
async function callUntilRefreshed(prefix: string, max = 120): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < max; i++) {
    const r = await proxyRequest(proxy, api(`${prefix}/item-${i}`), { auth });
    statuses.push(r.status);
    const tokens = new Set(seen.filter((s) => s.path.startsWith(`${prefix}/item-`)).map((s) => s.token));
    if (tokens.size >= 2) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  return statuses;
}

describe('OAuth2 credentials (issue 14 part B)', () => {
  it('the resource server refuses a call without a token (the check is real)', async () => {
    const direct = await fetch(`http://127.0.0.1:${rsPort}/cc/direct`);
    expect(direct.status).toBe(401);
  });

  it('client credentials: 20 concurrent first calls share one token request (single flight)', async () => {
    const before = tokenRequests.filter((t) => t.credential === 'api-cc').length;
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => proxyRequest(proxy, api(`/cc/first-${i}`), { auth })),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    const requests = tokenRequests.filter((t) => t.credential === 'api-cc');
    expect(requests.length - before).toBe(1);
    expect(requests.at(-1)).toMatchObject({ grant: 'client_credentials', ok: true });
    const tokens = new Set(seen.filter((s) => s.path.startsWith('/cc/first-')).map((s) => s.token));
    expect(tokens.size).toBe(1);
    expect(seen.filter((s) => s.path.startsWith('/cc/first-')).every((s) => s.clientId === 'cc')).toBe(true);
  });

  it("client credentials: the token is refreshed before it expires — two tokens, no failed call; the agent's Authorization is replaced", async () => {
    const statuses = await callUntilRefreshed('/cc');
    expect(statuses.every((s) => s === 200)).toBe(true);
    const used = seen.filter((s) => s.path.startsWith('/cc/item-'));
    expect(new Set(used.map((s) => s.token)).size).toBeGreaterThanOrEqual(2);
    expect(used.every((s) => s.active)).toBe(true);
    // The agent's own header never reaches the upstream.
    const r = await proxyRequest(proxy, api('/cc/own-header'), {
      auth,
      headers: { authorization: 'Bearer agent-made-this-up' },
    });
    expect(r.status).toBe(200);
    expect(seen.at(-1)!.token).not.toBe('agent-made-this-up');
    const e = audit.events.at(-1)!;
    expect(e.credential).toEqual({ name: 'api-cc', version: expect.stringMatching(/^[0-9a-f]{12}$/) });
    expect(JSON.stringify(audit.events)).not.toContain(seen.at(-1)!.token!);
    expect(JSON.stringify(audit.events)).not.toContain(CC_SECRET);
  }, 40_000);

  it('refresh token: access tokens from the refresh-token grant, refreshed with the rotated refresh token', async () => {
    const statuses = await callUntilRefreshed('/rt');
    expect(statuses.every((s) => s === 200)).toBe(true);
    const used = seen.filter((s) => s.path.startsWith('/rt/item-'));
    expect(new Set(used.map((s) => s.token)).size).toBeGreaterThanOrEqual(2);
    expect(used.every((s) => s.active && s.clientId === 'rt')).toBe(true);
    const rt = tokenRequests.filter((t) => t.credential === 'api-rt');
    expect(rt.length).toBeGreaterThanOrEqual(2);
    // The provider rotated the refresh token at the first use and would refuse (and revoke the
    // grant for) a second use of the original: every request succeeded, so the rotated one was used.
    expect(rt.every((t) => t.ok && t.grant === 'refresh_token')).toBe(true);
  }, 40_000);

  it('an access token the agent got hold of (an upstream echoed it) is a known secret: refused anywhere but where the gateway sets it', async () => {
    const ok = await proxyRequest(proxy, api('/cc/echo'), { auth });
    expect(ok.status).toBe(200);
    const token = seen.at(-1)!.token!;
    const before = seen.length;
    // In a header of the bound endpoint other than Authorization: refused, nothing sent.
    const inHeader = await proxyRequest(proxy, api('/cc/x'), { auth, headers: { 'x-forward-token': token } });
    expect(inHeader.status).toBe(403);
    expect(inHeader.json()).toMatchObject({ error: 'credential_not_bound' });
    // As Authorization to a path the binding does not name (the rules allow it): refused too.
    const unbound = await proxyRequest(proxy, api('/elsewhere'), {
      auth,
      headers: { authorization: `Bearer ${token}` },
    });
    expect(unbound.status).toBe(403);
    expect(seen.length).toBe(before);
    expect(audit.events.at(-1)).toMatchObject({
      reason: 'exfiltration_attempt',
      credential: { name: 'api-cc' },
    });
    // Where the binding applies, the gateway sets Authorization itself: the agent's copy is replaced.
    const bound = await proxyRequest(proxy, api('/cc/y'), {
      auth,
      headers: { authorization: `Bearer ${token}` },
    });
    expect(bound.status).toBe(200);
  });

  it('a refused grant: 503 credential_unavailable with the reason, nothing reaches the resource server', async () => {
    const before = seen.length;
    const r = await proxyRequest(proxy, api('/bad/x'), { auth });
    expect(r.status).toBe(503);
    expect(r.headers['x-airlock-decision']).toBe('upstream-error');
    expect(r.json()).toMatchObject({ error: 'credential_unavailable' });
    expect(String(r.json().detail)).toMatch(/api-bad.*token endpoint .*answered 401 \(invalid_client\)/);
    expect(seen.length).toBe(before);
    const e = audit.events.at(-1)!;
    expect(e).toMatchObject({
      decision: 'allow',
      reason: 'credential_unavailable',
      credential: { name: 'api-bad' },
    });
  });

  it('a token endpoint on a refused address (link-local) is never dialled: 503, nothing sent', async () => {
    const before = seen.length;
    const r = await proxyRequest(proxy, api('/meta/x'), { auth });
    expect(r.status).toBe(503);
    expect(String(r.json().detail)).toMatch(/metadata\.test resolves to a link-local address/);
    expect(seen.length).toBe(before);
  });
});
