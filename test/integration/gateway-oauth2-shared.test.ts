/**
 * The pieces of OAuth2 refresh-token state shared across gateway workers (src/gateway/oauth2-shared.ts),
 * in one process: a primary's OAuth2Tokens answering two workers' OAuth2Tokens through SharedOAuth2
 * (the IPC channel replaced by direct calls). The authorization server is `oidc-provider` (npm), which
 * rotates a public client's refresh token at every use and refuses a used one.
 * test/integration/gateway-oauth2-workers.test.ts runs the same through real worker processes.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DestinationPolicy } from '../../src/gateway/address.js';
import { OAuth2Tokens, type OAuth2Input } from '../../src/gateway/oauth2.js';
import { answerOAuth2Query, SharedOAuth2, type OAuth2Query } from '../../src/gateway/oauth2-shared.js';
import { UpstreamResolver } from '../../src/gateway/resolve.js';

let provider: Provider;
let idp: http.Server;
let idpPort: number;
const grants: string[] = [];
const grantErrors: string[] = [];
let refreshToken: string;

const resolver = new UpstreamResolver(new DestinationPolicy(['127.0.0.0/8']), new Map());
const input = (secret: string, name = 'rt'): OAuth2Input => ({
  name,
  apply: {
    type: 'oauth2-refresh-token',
    tokenUrl: `http://127.0.0.1:${idpPort}/token`,
    clientId: 'rt',
    clientAuth: 'basic',
  } as OAuth2Input['apply'],
  secret,
  clientSecret: null,
  version: `v-${secret.slice(0, 6)}`,
});

beforeAll(async () => {
  idp = http.createServer();
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
  idpPort = (idp.address() as AddressInfo).port;
  provider = new Provider(`http://127.0.0.1:${idpPort}`, {
    clients: [
      {
        client_id: 'rt',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/cb'],
      },
    ],
    scopes: ['openid', 'offline_access'],
    ttl: { AccessToken: 600, RefreshToken: 3600, Grant: 3600, IdToken: 3600 },
  });
  provider.on('grant.success', () => grants.push('ok'));
  provider.on('grant.error', (_ctx: unknown, err: Error) => grantErrors.push(err.message));
  idp.on('request', provider.callback());
  const client = await provider.Client.find('rt');
  const grant = new provider.Grant({ accountId: 'alice', clientId: 'rt' });
  grant.addOIDCScope('openid offline_access');
  const grantId = await grant.save();
  refreshToken = await new provider.RefreshToken({
    client: client!,
    accountId: 'alice',
    grantId,
    scope: 'openid offline_access',
    gty: 'authorization_code',
  }).save();
});

afterAll(async () => {
  idp?.closeAllConnections();
  await new Promise((r) => idp?.close(r));
});

/** A primary and `n` workers wired as cluster.ts and cluster-worker.ts wire them. */
function cluster(n: number): { primary: OAuth2Tokens; workers: OAuth2Tokens[]; asked: OAuth2Query[] } {
  const primary = new OAuth2Tokens({ resolver });
  const asked: OAuth2Query[] = [];
  const workers = Array.from({ length: n }, () => {
    const shared: SharedOAuth2 = new SharedOAuth2((q) => {
      asked.push(q);
      void answerOAuth2Query(primary, q).then((reply) => shared.receive(reply));
    });
    return new OAuth2Tokens({ resolver, remote: shared.request });
  });
  return { primary, workers, asked };
}

describe('OAuth2 refresh-token state held by the primary', () => {
  it('concurrent first calls on two workers: one refresh at the provider, the same token everywhere', async () => {
    const { workers, asked } = cluster(2);
    const before = grants.length;
    const results = await Promise.all(
      workers.flatMap((w) => Array.from({ length: 10 }, () => w.token(input(refreshToken)))),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    expect(new Set(results.map((r) => (r.ok ? r.accessToken : null))).size).toBe(1);
    expect(grants.length - before).toBe(1);
    expect(grantErrors).toEqual([]);
    // Each worker asked the primary once (its own single flight), the primary asked the provider once.
    expect(asked).toHaveLength(2);
    // A worker's held token is a known secret for its leak stop.
    expect(workers[0]!.tokens().map(([, t]) => t)).toEqual([results[0]!.ok ? results[0]!.accessToken : '']);
  });

  it("the provider's refusal reaches every worker with the endpoint's reason, once", async () => {
    const { workers } = cluster(2);
    const bad = input('not-a-refresh-token-0000000000', 'bad');
    const [a, b] = await Promise.all(workers.map((w) => w.token(bad)));
    for (const r of [a!, b!]) {
      expect(r.ok).toBe(false);
      if (!r.ok)
        expect(r.reason).toMatch(
          /^token endpoint http:\/\/127\.0\.0\.1:\d+\/token: answered 400 \(invalid_grant\)$/,
        );
    }
  });

  it('a primary that does not answer: the call fails after the wait with that reason', async () => {
    const mute = new SharedOAuth2(() => undefined, 200);
    const w = new OAuth2Tokens({ resolver, remote: mute.request });
    const r = await w.token(input('never-asked-0000000000', 'mute'));
    expect(r).toEqual({ ok: false, reason: 'the gateway primary did not answer within 200 ms' });
  });
});
