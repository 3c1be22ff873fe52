/**
 * OAuth2 refresh-token credentials on a multi-worker gateway (`gateway.workers: 2`, cluster.ts): the
 * authorization server is `oidc-provider` (npm), whose public clients get their refresh token rotated
 * on every use, a used one being refused afterwards (and its grant revoked). The primary holds the
 * credential's state and the workers ask it (oauth2-shared.ts), so calls served by both workers keep
 * working across refreshes. With a token cache per worker, the second worker's first refresh would
 * present the refresh token the first worker already used: refused, and every call after it 503.
 *
 * The gateway runs as its container runs it (`node dist/cli/main.js gateway`, needs the build); two
 * sessions whose source addresses map to different workers (cluster.ts `pickWorker`) call an endpoint
 * bound to the credential. The resource server accepts a call only when the provider's introspection
 * says its token is active. Waits are for events (a third distinct token), bounded; nothing is timed.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { pickWorker } from '../../src/gateway/cluster.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { proxyRequest, type ProxyTarget } from '../helpers/proxy-client.js';

const MAIN = path.resolve('dist/cli/main.js');
const TOKEN = 'oauth2-workers-admin-token-0123456789';
const RS_SECRET = 'rs-secret-0f1e2d3c4b5a69788796';
const TTL_S = 4;
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

interface Session {
  id: string;
  cred: string;
  address: string;
}
const session = (n: number): Session => ({
  id: `s-o${n}`,
  cred: `cred-oauth2-${n}-0123456789`,
  address: `127.0.0.${n}`,
});
const firstOn = (w: number): Session => {
  for (let n = 2; n < 255; n++) if (pickWorker(session(n).address, [1, 2]) === w) return session(n);
  throw new Error('no address maps to worker ' + w);
};
const ON1 = firstOn(1);
const ON2 = firstOn(2);

let dir: string;
let provider: Provider;
let idp: http.Server;
let idpPort: number;
let rs: http.Server;
let rsPort: number;
let child: ChildProcess;
let stderr = '';
let proxy: ProxyTarget;
let adminPort: number;
let auditFile: string;
/** What reached the resource server. */
const seen: { path: string; token: string | null; active: boolean }[] = [];
/** Refresh-token grants the provider answered, and the ones it refused. */
const grants: string[] = [];
const grantErrors: string[] = [];

async function introspect(token: string): Promise<{ active: boolean }> {
  const res = await fetch(`http://127.0.0.1:${idpPort}/token/introspection`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`rs:${RS_SECRET}`).toString('base64')}`,
    },
    body: new URLSearchParams({ token }).toString(),
  });
  return (await res.json()) as { active: boolean };
}

beforeAll(async () => {
  if (!existsSync(path.resolve('dist/gateway/oauth2-shared.js'))) {
    const r = spawnSync('npm', ['run', 'build'], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error('npm run build failed');
  }
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-oauth2-workers-'));
  mkdirSync(path.join(dir, 'secrets'), { mode: 0o700 });
  const policyDir = path.join(dir, 'policy');
  mkdirSync(policyDir);

  idp = http.createServer();
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
  idpPort = (idp.address() as AddressInfo).port;
  provider = new Provider(`http://127.0.0.1:${idpPort}`, {
    clients: [
      {
        // Public client: the provider rotates its refresh token on every use (its default for
        // token_endpoint_auth_method none) and refuses a used one.
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
  provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: unknown } } }) =>
    grants.push(String(ctx.oidc.params?.grant_type)),
  );
  provider.on('grant.error', (_ctx: unknown, err: Error) => grantErrors.push(err.message));
  idp.on('request', provider.callback());
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

  rs = http.createServer((req, res) => {
    void (async () => {
      const h = req.headers.authorization ?? '';
      const token = h.startsWith('Bearer ') ? h.slice(7) : null;
      const info = token ? await introspect(token) : { active: false };
      seen.push({ path: req.url ?? '', token, active: info.active });
      res.writeHead(info.active ? 200 : 401);
      res.end();
    })();
  });
  await new Promise<void>((r) => rs.listen(0, '127.0.0.1', r));
  rsPort = (rs.address() as AddressInfo).port;

  writeFileSync(path.join(dir, 'secrets', 'rt'), `${refreshToken}\n`, { mode: 0o600 });
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(path.join(policyDir, 'policy.csv'), `p, worker, api.test:${rsPort}, /*, GET, allow\n`);
  writeFileSync(
    path.join(policyDir, 'credentials.yaml'),
    [
      'version: 1',
      'credentials:',
      '  - name: api-rt',
      '    roles: [worker]',
      `    bindings: [{ host: "api.test:${rsPort}", path: /rt/*, methods: [GET] }]`,
      `    apply: { type: oauth2-refresh-token, tokenUrl: "http://127.0.0.1:${idpPort}/token", clientId: rt }`,
      `    source: { file: ${path.join(dir, 'secrets', 'rt')} }`,
      '',
    ].join('\n'),
  );
  auditFile = path.join(dir, 'audit', 'audit.jsonl');
  const config = {
    port: 0,
    adminPort: 0,
    listenHost: '127.0.0.1',
    policyDir,
    auditFile,
    auditStdout: false,
    allowPrivateCidrs: ['127.0.0.0/8'],
    hostAliases: { 'api.test': '127.0.0.1' },
    workers: 2,
    oauth2RefreshSkewMs: 1_500,
  };
  child = spawn(process.execPath, [MAIN, 'gateway'], {
    env: { ...process.env, AIRLOCK_GATEWAY_CONFIG: JSON.stringify(config), AIRLOCK_ADMIN_TOKEN: TOKEN },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const ready = await new Promise<{ proxyPort: number; adminPort: number }>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const line = stderr.split('\n').find((l) => l.includes('"gateway listening"'));
      if (line) resolve(JSON.parse(line) as { proxyPort: number; adminPort: number });
    });
    child.once('exit', (code) => reject(new Error(`gateway exited (${code}): ${stderr}`)));
  });
  proxy = { host: '127.0.0.1', port: ready.proxyPort };
  adminPort = ready.adminPort;
  for (const s of [ON1, ON2]) {
    const r = await fetch(`http://127.0.0.1:${adminPort}/admin/sessions/${s.id}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        id: s.id,
        role: 'worker',
        address: s.address,
        credentialSha256: sha(s.cred),
        expiresAtMs: Date.now() + 3_600_000,
      }),
    });
    expect(r.status).toBe(204);
  }
}, 120_000);

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await new Promise((r) => rs?.close(r));
  idp?.closeAllConnections();
  await new Promise((r) => idp?.close(r));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function auditEvents(): AuditEvent[] {
  if (!existsSync(auditFile)) return [];
  return readFileSync(auditFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditEvent);
}

describe('OAuth2 refresh-token rotation with gateway.workers: 2', () => {
  it('calls served by both workers share one rotating refresh token: every call 200 across refreshes, each refresh token used once', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 150; i++) {
      for (const s of [ON1, ON2]) {
        const r = await proxyRequest(proxy, `http://api.test:${rsPort}/rt/${s.id}-${i}`, {
          auth: `${s.id}:${s.cred}`,
          localAddress: s.address,
        });
        statuses.push(r.status);
      }
      if (new Set(seen.filter((x) => x.path.startsWith('/rt/')).map((x) => x.token)).size >= 3) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    expect(
      statuses.every((s) => s === 200),
      `statuses ${statuses.join(',')}; ${stderr.slice(-2000)}`,
    ).toBe(true);
    const used = seen.filter((x) => x.path.startsWith('/rt/'));
    const tokens = new Set(used.map((x) => x.token));
    expect(tokens.size).toBeGreaterThanOrEqual(3);
    expect(used.every((x) => x.active)).toBe(true);
    // Both workers served calls, and with the same tokens (one cache, in the primary).
    const events = auditEvents().filter((e) => e.path.startsWith('/rt/'));
    expect(new Set(events.map((e) => e.worker))).toEqual(new Set([1, 2]));
    const by = (s: Session): Set<string | null> =>
      new Set(used.filter((x) => x.path.startsWith(`/rt/${s.id}-`)).map((x) => x.token));
    expect([...by(ON1)].some((t) => by(ON2).has(t))).toBe(true);
    // The provider refused no grant (a reused refresh token would be refused and its grant revoked),
    // and answered one refresh per token the gateway used (at most one more, fetched ahead of expiry).
    expect(grantErrors).toEqual([]);
    expect(grants.every((g) => g === 'refresh_token')).toBe(true);
    expect(grants.length).toBeGreaterThanOrEqual(tokens.size);
    expect(grants.length).toBeLessThanOrEqual(tokens.size + 1);
  }, 120_000);
});
