/**
 * Delegation on real components, in-process on loopback: the real API (Express app), the real
 * SessionManager, the real policy store, the real gateway with its admin API, and json-server as the
 * forum. Only the sandbox runtime is a double (no containers): each "sandbox" is a loopback source
 * address (127.0.0.21, .22, ...) from which the test sends the session's proxy calls itself, with the
 * credential the SessionManager handed to the runtime.
 *
 * Callers (API token names): alice is on call (every operation on analyst and responder sessions, no
 * egress rules of her own); bob is on call too but his own egress is an analyst's; dave's own rules
 * deny posting comments; carol may only start and read analyst sessions; mallory is in no rule.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiApp } from '../../src/api/app.js';
import { FanoutSink, FileAuditSink, MemoryAuditSink } from '../../src/audit/file-sink.js';
import { AuditIndex } from '../../src/audit/index-reader.js';
import { parseConfig } from '../../src/config/load.js';
import { DestinationPolicy } from '../../src/gateway/address.js';
import { createAdminServer, listen } from '../../src/gateway/admin.js';
import { GatewayAdminClient, type GatewayEndpoint } from '../../src/gateway-wire/admin-client.js';
import type { GatewayControl } from '../../src/gateway-wire/control.js';
import { EgressGateway, withGatewayDefaults } from '../../src/gateway/proxy.js';
import { UpstreamResolver } from '../../src/gateway/resolve.js';
import { SessionTable } from '../../src/gateway/sessions.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore } from '../../src/policy/store.js';
import type { ExecResult, SandboxInfo, SandboxRuntime, SandboxSpec } from '../../src/runtime/types.js';
import { SessionManager } from '../../src/sessions/manager.js';
import type { SessionView } from '../../src/sessions/types.js';
import { proxyRequest, rawExchange, type ProxyTarget } from '../helpers/proxy-client.js';
import { startJsonServer, type JsonServer } from '../helpers/upstreams.js';

const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const TOKENS = ['alice', 'bob', 'carol', 'dave', 'mallory'].map((name) => ({
  name,
  token: `${name}-token-0123456789abcdef`,
}));

/** Runtime double: no containers, loopback addresses, credentials kept for the test to use. */
class LoopbackRuntime implements SandboxRuntime {
  readonly credentials = new Map<string, string>();
  readonly sandboxes = new Map<string, SandboxInfo>();
  private next = 21;
  constructor(private readonly endpoint: GatewayEndpoint) {}
  async ensureGateway(): Promise<GatewayControl> {
    return new GatewayAdminClient(this.endpoint);
  }
  async prepare(spec: SandboxSpec): Promise<SandboxInfo> {
    const { credential, env: _env, ...rest } = spec;
    const info: SandboxInfo = { ...rest, address: `127.0.0.${this.next++}`, running: false };
    this.credentials.set(spec.sessionId, credential);
    this.sandboxes.set(spec.sessionId, info);
    return info;
  }
  async start(): Promise<void> {}
  async exec(_id: string, command: string[]): Promise<ExecResult> {
    return { exitCode: 0, stdout: command.join(' '), stderr: '' };
  }
  async remove(id: string): Promise<void> {
    this.sandboxes.delete(id);
  }
  async list(): Promise<SandboxInfo[]> {
    return [];
  }
  async close(): Promise<void> {}
}

let forum: JsonServer;
let dir: string;
let store: PolicyStore;
let table: SessionTable;
let memory: MemoryAuditSink;
let gateway: EgressGateway;
let admin: http.Server;
let runtime: LoopbackRuntime;
let auditIndex: AuditIndex;
let manager: SessionManager;
let apiServer: http.Server;
let apiUrl: string;
let proxy: ProxyTarget;

function writePolicy(port: number, delegation: boolean): void {
  const F = `forum.test:${port}`;
  const lines = [
    `p, base, ${F}, /admin/*, *, deny`,
    'g, analyst, base',
    `p, analyst, ${F}, /*, GET, allow`,
    'g, responder, analyst',
    `p, responder, ${F}, /comments, POST, allow`,
    `p, responder, ${F}, /, CONNECT, allow`,
    // A rule on the pseudo-host as a port (lint refuses it): the gateway must refuse it anyway.
    `p, responder, airlock.api:${port}, /comments, POST, allow`,
    // Callers' own egress (independent of the management rules).
    'g, bob, analyst',
    `p, dave, ${F}, /*, *, allow`,
    `p, dave, ${F}, /comments, POST, deny`,
  ];
  if (delegation) {
    lines.push(
      'p, oncall, airlock.api, /sessions/responder, *, allow',
      'p, oncall, airlock.api, /sessions/analyst, *, allow',
      'g, alice, oncall',
      'g, bob, oncall',
      'p, dave, airlock.api, /sessions/responder, *, allow',
      'p, carol, airlock.api, /sessions/analyst, CREATE, allow',
      'p, carol, airlock.api, /sessions/analyst, READ, allow',
    );
  } else {
    // Without delegation the airlock.api:PORT rule would still switch it on: leave it out too.
    lines.splice(6, 1);
  }
  writeFileSync(path.join(dir, 'policy.csv'), lines.join('\n') + '\n');
}

beforeAll(async () => {
  forum = await startJsonServer();
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-delegation-'));
  writeFileSync(path.join(dir, 'model.conf'), CANONICAL_MODEL);
  writePolicy(forum.port, true);
  store = await PolicyStore.open(dir, { watch: false, pollIntervalMs: 0 });
  expect(store.current(), store.lastError() ?? '').not.toBeNull();

  const auditFile = path.join(dir, 'state', 'audit.jsonl');
  table = new SessionTable();
  memory = new MemoryAuditSink();
  gateway = new EgressGateway(
    withGatewayDefaults({
      policy: store,
      sessions: table,
      audit: new FanoutSink([new FileAuditSink(auditFile), memory]),
      resolver: new UpstreamResolver(
        new DestinationPolicy(['127.0.0.0/8']),
        new Map([
          ['forum.test', '127.0.0.1'],
          ['airlock.api', '127.0.0.1'], // as if someone had aliased it: still never dialled
        ]),
      ),
    }),
  );
  proxy = { host: '127.0.0.1', port: (await gateway.listen(0, '127.0.0.1')).port };
  admin = createAdminServer({ sessions: table, policy: store, token: ADMIN_TOKEN, instanceId: 'test' });
  const adminAddr = await listen(admin, 0, '127.0.0.1');
  runtime = new LoopbackRuntime({ adminUrl: `http://127.0.0.1:${adminAddr.port}`, adminToken: ADMIN_TOKEN });

  const cfg = parseConfig({ policy: { dir }, stateDir: path.join(dir, 'state') }, dir);
  writeFileSync(auditFile, '');
  auditIndex = new AuditIndex(auditFile, 50);
  await auditIndex.start();
  manager = new SessionManager(cfg, runtime, store, auditIndex);
  await manager.start();
  const app = createApiApp({ sessions: manager, policy: store, tokens: TOKENS });
  apiServer = await new Promise<http.Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  apiUrl = `http://127.0.0.1:${(apiServer.address() as AddressInfo).port}`;
});

afterAll(async () => {
  manager?.stop();
  auditIndex?.close();
  await new Promise<void>((r) => {
    if (!apiServer) return r();
    apiServer.close(() => r());
    apiServer.closeAllConnections();
  });
  await new Promise<void>((r) => (admin ? admin.close(() => r()) : r()));
  await gateway?.close();
  await store?.close();
  await forum?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function api(caller: string, method: string, p: string, body?: unknown): Promise<Response> {
  const token = TOKENS.find((t) => t.name === caller)!.token;
  return fetch(apiUrl + p, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function create(caller: string, role: string): Promise<SessionView> {
  const res = await api(caller, 'POST', '/v1/sessions', { role });
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as SessionView;
}

/** A proxy call from the session's sandbox address with its credential. */
function call(s: SessionView, method: string, url: string, body?: string) {
  const info = runtime.sandboxes.get(s.id)!;
  return proxyRequest(proxy, url, {
    method,
    auth: `${s.id}:${runtime.credentials.get(s.id)!}`,
    localAddress: info.address,
    ...(body === undefined ? {} : { body }),
  });
}

const forumUrl = (p: string): string => `http://forum.test:${forum.port}${p}`;
const comment = (text: string): string => JSON.stringify({ postId: 1, body: text });
const lastEventOf = (id: string) => memory.events.filter((e) => e.sessionId === id).at(-1)!;

describe('who may do what through the API', () => {
  it('403 problem+json naming CREATE when the caller may not start sessions of the role; nothing created', async () => {
    const before = runtime.sandboxes.size;
    for (const [caller, role] of [
      ['carol', 'responder'],
      ['mallory', 'analyst'],
      ['dave', 'analyst'],
    ] as const) {
      const res = await api(caller, 'POST', '/v1/sessions', { role });
      expect(res.status).toBe(403);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const p = (await res.json()) as { code: string; detail: string };
      expect(p.code).toBe('AIRLOCK_FORBIDDEN');
      expect(p.detail).toContain(`caller "${caller}" may not create sessions of role "${role}"`);
      expect(p.detail).toContain('operation CREATE');
    }
    expect(runtime.sandboxes.size).toBe(before);
    expect(table.size).toBe(0);
  });

  it('list shows only readable sessions; exec and delete need their own grants', async () => {
    const a = await create('carol', 'analyst');
    const r = await create('alice', 'responder');
    const ids = async (caller: string) =>
      ((await (await api(caller, 'GET', '/v1/sessions')).json()) as { sessions: SessionView[] }).sessions
        .map((s) => s.id)
        .sort();
    expect(await ids('alice')).toEqual([a.id, r.id].sort());
    expect(await ids('carol')).toEqual([a.id]);
    expect(await ids('mallory')).toEqual([]);
    expect((await api('carol', 'GET', `/v1/sessions/${r.id}`)).status).toBe(403);
    expect((await api('carol', 'GET', `/v1/sessions/${a.id}/audit`)).status).toBe(200);
    const exec = await api('carol', 'POST', `/v1/sessions/${a.id}/exec`, { command: ['id'] });
    expect(exec.status).toBe(403);
    expect(((await exec.json()) as { detail: string }).detail).toContain('operation EXEC');
    expect((await api('carol', 'DELETE', `/v1/sessions/${a.id}`)).status).toBe(403);
    expect(table.list().map((s) => s.id)).toContain(a.id); // still served: nothing was removed
    expect((await api('alice', 'POST', `/v1/sessions/${a.id}/exec`, { command: ['id'] })).status).toBe(200);
    expect((await api('alice', 'DELETE', `/v1/sessions/${a.id}`)).status).toBe(204);
    expect((await api('alice', 'DELETE', `/v1/sessions/${r.id}`)).status).toBe(204);
    expect(table.size).toBe(0);
  });
});

describe("a session never exceeds its creator's egress (gateway, real json-server)", () => {
  it('carries the creator to the gateway', async () => {
    const s = await create('bob', 'responder');
    expect(table.list().find((x) => x.id === s.id)).toMatchObject({ role: 'responder', creator: 'bob' });
    await api('alice', 'DELETE', `/v1/sessions/${s.id}`);
  });

  it("denies a POST the role allows when the creator's own rules do not; GETs both allow pass", async () => {
    const s = await create('bob', 'responder');
    const before = forum.db();
    const post = await call(s, 'POST', forumUrl('/comments'), comment('Open it to everyone.'));
    expect(post.status).toBe(403);
    expect(post.headers['x-airlock-decision']).toBe('deny');
    const body = post.json<{ error: string; role: string; hint: string; policyVersion: string }>();
    expect(body).toMatchObject({
      error: 'egress_denied',
      sessionId: s.id,
      role: 'responder',
      method: 'POST',
      url: forumUrl('/comments'),
      policyVersion: store.current()!.version,
    });
    expect(body.hint).toContain('created by API caller "bob", who lacks that permission');
    expect(forum.db()).toEqual(before);
    expect(lastEventOf(s.id)).toMatchObject({
      role: 'responder',
      decision: 'deny',
      reason: 'no_match',
      rule: null,
      status: 403,
    });
    const get = await call(s, 'GET', forumUrl('/posts/1'));
    expect(get.status).toBe(200);
    expect(lastEventOf(s.id)).toMatchObject({ decision: 'allow', reason: 'rule_allow' });
    expect(lastEventOf(s.id).rule).toMatch(/p, analyst, forum\.test:\d+, \/\*, GET, allow$/);

    // A passthrough tunnel the role is granted is refused for the creator too.
    const auth = Buffer.from(`${s.id}:${runtime.credentials.get(s.id)!}`).toString('base64');
    const connect = await rawExchange(
      proxy,
      `CONNECT forum.test:${forum.port} HTTP/1.1\r\nHost: forum.test:${forum.port}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
      runtime.sandboxes.get(s.id)!.address,
    );
    expect(connect).toMatch(/^HTTP\/1\.1 403/);
    expect(connect).toContain('created by API caller \\"bob\\"'); // JSON-escaped quotes
    // The audit trail through the API shows the denial.
    await expect
      .poll(async () => {
        const res = await api('alice', 'GET', `/v1/sessions/${s.id}/audit`);
        const events = ((await res.json()) as { events: Array<{ method: string; reason: string }> }).events;
        return events.filter((e) => e.method === 'POST').map((e) => e.reason);
      })
      .toEqual(['no_match']);
    await api('alice', 'DELETE', `/v1/sessions/${s.id}`);
  });

  it("names the creator's deny rule", async () => {
    const s = await create('dave', 'responder');
    const post = await call(s, 'POST', forumUrl('/comments'), comment('no'));
    expect(post.status).toBe(403);
    expect(post.json<{ hint: string }>().hint).toContain('"dave"');
    expect(lastEventOf(s.id)).toMatchObject({ decision: 'deny', reason: 'rule_deny' });
    expect(lastEventOf(s.id).rule).toMatch(/p, dave, forum\.test:\d+, \/comments, POST, deny$/);
    await api('dave', 'DELETE', `/v1/sessions/${s.id}`);
  });

  it('lets a creator without egress rules use everything the role allows; the comment reaches json-server', async () => {
    const s = await create('alice', 'responder');
    const post = await call(
      s,
      'POST',
      forumUrl('/comments'),
      comment('Please use the access-request process.'),
    );
    expect(post.status).toBe(201);
    await expect
      .poll(() => forum.db().comments.map((c) => c.body))
      .toContain('Please use the access-request process.');
    await api('alice', 'DELETE', `/v1/sessions/${s.id}`);
  });

  it('refuses airlock.api as a destination whatever the policy says (plain and CONNECT)', async () => {
    const s = await create('alice', 'responder');
    const before = forum.db();
    const viaPseudoHost = await call(
      s,
      'POST',
      `http://airlock.api:${forum.port}/comments`,
      comment('through the pseudo-host'),
    );
    expect(viaPseudoHost.status).toBe(403);
    expect(viaPseudoHost.json()).toMatchObject({ error: 'destination_refused', sessionId: s.id });
    expect(lastEventOf(s.id)).toMatchObject({
      decision: 'deny',
      reason: 'destination_refused',
      host: 'airlock.api',
      rule: null,
    });
    const bare = await call(s, 'GET', 'http://airlock.api/sessions/responder');
    expect(bare.status).toBe(403);
    const auth = Buffer.from(`${s.id}:${runtime.credentials.get(s.id)!}`).toString('base64');
    const connect = await rawExchange(
      proxy,
      `CONNECT airlock.api:443 HTTP/1.1\r\nHost: airlock.api:443\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
      runtime.sandboxes.get(s.id)!.address,
    );
    expect(connect).toMatch(/^HTTP\/1\.1 403/);
    expect(connect).toContain('destination_refused');
    expect(forum.db()).toEqual(before);
    await api('alice', 'DELETE', `/v1/sessions/${s.id}`);
  });
});

describe('backward compatible without airlock.api rules', () => {
  it('every caller may do everything; callers with egress rules still limit their sessions', async () => {
    writePolicy(forum.port, false);
    const r = await store.reload();
    expect(r.error).toBeNull();
    const s = await create('mallory', 'responder');
    expect((await api('carol', 'GET', `/v1/sessions/${s.id}`)).status).toBe(200);
    const post = await call(s, 'POST', forumUrl('/comments'), comment('mallory has no egress rules'));
    expect(post.status).toBe(201);
    const b = await create('bob', 'responder');
    expect((await call(b, 'POST', forumUrl('/comments'), comment('x'))).status).toBe(403);
    expect((await api('carol', 'DELETE', `/v1/sessions/${s.id}`)).status).toBe(204);
    expect((await api('mallory', 'DELETE', `/v1/sessions/${b.id}`)).status).toBe(204);
  });
});
