import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminServer, listen } from '../../../src/gateway/admin.js';
import { SessionTable } from '../../../src/gateway/sessions.js';
import type { PolicySource } from '../../../src/policy/types.js';
import { GatewayReplicas, isConnectFailure } from '../../../src/runtime/kubernetes/gateway-replicas.js';

// Issue 16: the controller resolved the headless admin Service with dns.resolve4/resolve6, which
// query DNS servers directly and ignore resolv.conf's search list and /etc/hosts; inside a Pod a
// namespace-qualified name (`x.ns.svc`) then failed with ESERVFAIL. Discovery must resolve names the
// way every other client does (getaddrinfo). `localhost` comes from /etc/hosts only: resolve4 fails
// on it, lookup answers.
describe('GatewayReplicas.endpoints (issue 16)', () => {
  it('resolves the Service name through the system resolver (hosts file, search list)', async () => {
    const r = new GatewayReplicas({ service: 'localhost', port: 9090, token: 't' });
    const urls = await r.endpoints();
    expect(urls).toContain('http://127.0.0.1:9090');
    expect(new Set(urls).size).toBe(urls.length);
  });

  it('reports a name that resolves to nothing', async () => {
    const r = new GatewayReplicas({ service: 'no-such-name.invalid', port: 9090, token: 't' });
    await expect(r.endpoints()).rejects.toThrow(/resolves to no address/);
  });
});

// A rollout: the headless admin Service still lists a terminating gateway Pod, which refuses
// connections. A new session's first push may skip it (it learns sessions from its Pod watch);
// grants and resyncs may not; a replica that answers with an error is never skipped.
describe('GatewayReplicas.register during a rollout', () => {
  const token = 'replica-admin-token-0123456789';
  const session = {
    id: 's-0123456789abcdef',
    role: 'analyst',
    address: '10.244.0.9',
    credentialSha256: 'a'.repeat(64),
    expiresAtMs: Date.now() + 60_000,
  };
  let live: http.Server;
  let table: SessionTable;
  let liveUrl: string;
  let goneUrl: string;
  beforeAll(async () => {
    table = new SessionTable();
    const policy = { current: () => null, lastError: () => null } as unknown as PolicySource;
    live = createAdminServer({ sessions: table, policy, token, instanceId: 'live' });
    liveUrl = `http://127.0.0.1:${(await listen(live, 0, '127.0.0.1')).port}`;
    const gone = http.createServer();
    const port = (await listen(gone, 0, '127.0.0.1')).port;
    await new Promise<void>((r) => gone.close(() => r()));
    goneUrl = `http://127.0.0.1:${port}`; // nothing listens there any more: ECONNREFUSED
  });
  afterAll(() => new Promise<void>((r) => live.close(() => r())));

  it('a new session skips a replica it cannot connect to, once another one took it', async () => {
    const r = new GatewayReplicas({ urls: [liveUrl, goneUrl], port: 0, token });
    await r.register(session, true);
    expect(table.atAddress(session.address)?.id).toBe(session.id);
  });

  it('every other push needs every replica', async () => {
    const r = new GatewayReplicas({ urls: [liveUrl, goneUrl], port: 0, token });
    await expect(r.register(session)).rejects.toThrow(/1 of 2 gateway replicas failed: .*ECONNREFUSED/);
  });

  it('with no replica reached, or one answering an error, the push fails', async () => {
    await expect(
      new GatewayReplicas({ urls: [goneUrl], port: 0, token }).register(session, true),
    ).rejects.toThrow(/1 of 1 gateway replicas failed/);
    const wrongToken = new GatewayReplicas({ urls: [liveUrl], port: 0, token: 'wrong-token-0123456789' });
    const mixed = new GatewayReplicas({ urls: [liveUrl, goneUrl], port: 0, token });
    await expect(wrongToken.register(session, true)).rejects.toThrow(/answered 401/);
    expect(isConnectFailure(new Error('answered 500'))).toBe(false);
    await expect(mixed.register(session, true)).resolves.toBeUndefined();
  });
});
