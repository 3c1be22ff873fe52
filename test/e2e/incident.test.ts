/**
 * The motivating incident replayed on real components: a real Docker engine, the gateway and sandbox
 * images, json-server as the forum and etcd as the config store, and the control plane as
 * `airlock serve` runs it. An agent asked to *analyze* tries to *post* and to reconfigure; Airlock
 * stops it. Acceptance items of the main issue are numbered in the test names.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { sandboxContainerName, sessionNetworkName } from '../../src/runtime/docker/labels.js';
import { TestApi, curlResult } from '../helpers/api-client.js';
import { airlock } from '../helpers/cli.js';
import {
  docker,
  exists,
  networkGateway,
  removeAirlockObjects,
  requireDockerAndImages,
} from '../helpers/docker.js';
import { startEtcd, startJsonServer, type Etcd, type JsonServer } from '../helpers/upstreams.js';
import { expectErrorLog, watchedLogger } from '../helpers/log-watch.js';

const run = promisify(execFile);
const EGRESS_SUBNET = '10.214.0.0/24';
const TOKEN = 'e2e-token-0123456789abcdef';
const FORUM = 'http://forum.test:3000';
const CONFIG = 'http://config.test:2379';
const b64 = (s: string): string => Buffer.from(s).toString('base64');

let stateDir: string;
let cfg: Config;
let server: RunningServer;
let api: TestApi;
let forum: JsonServer;
let etcd: Etcd;
let hostGateway: string;

function makeConfig(policyDir: string): Config {
  return parseConfig(
    {
      api: { listen: '127.0.0.1:0', tokens: [{ name: 'e2e', token: TOKEN }] },
      gateway: {
        hostAliases: { 'forum.test': 'host-gateway', 'config.test': 'host-gateway' },
        allowPrivateCidrs: [EGRESS_SUBNET],
      },
      policy: { dir: policyDir },
      runtime: {
        docker: { egressSubnet: EGRESS_SUBNET },
        resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
      },
      stateDir,
    },
    process.cwd(),
  );
}

async function start(c: Config): Promise<RunningServer> {
  const s = await startServer(c, watchedLogger());
  api = new TestApi(s.url, TOKEN);
  return s;
}

/** curl inside the sandbox through the gateway; returns status and body. */
async function curl(id: string, args: string): Promise<{ status: number; body: string }> {
  const out = await api.sh(id, `curl -s -w '\\n%{http_code}' ${args}`);
  return curlResult(out.stdout);
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  stateDir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-'));
  cfg = makeConfig(path.resolve('policies'));
  server = await start(cfg);
  hostGateway = await networkGateway('airlock-egress');
  // The upstreams listen only on the egress bridge's host address (the project's own network).
  [forum, etcd] = await Promise.all([startJsonServer(hostGateway, 3000), startEtcd(hostGateway, 2379)]);
});

afterAll(async () => {
  await server?.close();
  await removeAirlockObjects();
  await Promise.all([forum?.stop(), etcd?.stop()]);
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('the incident, replayed', () => {
  let analyst: string;
  let responder: string;
  const decided: Array<{ method: string; path: string; decision: 'allow' | 'deny' }> = [];

  it('creates sessions as isolated sandboxes (property 8)', async () => {
    analyst = (await api.create({ role: 'analyst', labels: { ticket: 'FORUM-1' } })).id;
    responder = (await api.create({ role: 'responder' })).id;
    const info = await docker.getContainer(sandboxContainerName(analyst)).inspect();
    const hc = info.HostConfig;
    expect(hc.CapDrop).toEqual(['ALL']);
    expect(hc.CapAdd ?? []).toEqual([]);
    expect(hc.SecurityOpt).toContain('no-new-privileges');
    expect(hc.Privileged).toBe(false);
    expect(hc.NanoCpus).toBe(0.5e9);
    expect(hc.Memory).toBe(256 * 1024 * 1024);
    expect(hc.PidsLimit).toBe(128);
    expect(hc.Binds ?? []).toEqual([]);
    expect(info.Mounts).toEqual([]);
    expect(info.Config.User).not.toBe('');
    expect(Object.keys(info.NetworkSettings.Networks)).toEqual([sessionNetworkName(analyst)]);
    const env = (await api.sh(analyst, 'env | grep -i _proxy | sort')).stdout;
    expect(env).toMatch(/^HTTP_PROXY=http:\/\/s-[0-9a-f]+:[^@]+@10\.213\.\d+\.\d+:3128$/m);
    expect(env).toMatch(/^NO_PROXY=$/m);
    const caps = (await api.sh(analyst, 'grep -E "^(CapEff|NoNewPrivs)" /proc/self/status')).stdout;
    expect(caps).toMatch(/CapEff:\s+0000000000000000/);
    expect(caps).toMatch(/NoNewPrivs:\s+1/);
  });

  it('1. analyst reads a forum post (200) but cannot post a reply (403 contract body); forum unchanged', async () => {
    const get = await curl(analyst, `${FORUM}/posts/1`);
    expect(get.status).toBe(200);
    expect(JSON.parse(get.body).title).toMatch(/port 22/);
    decided.push({ method: 'GET', path: '/posts/1', decision: 'allow' });

    const before = forum.db();
    const post = await curl(
      analyst,
      `-X POST -H 'content-type: application/json' -d '{"postId":1,"body":"Just open it to everyone."}' ${FORUM}/comments`,
    );
    expect(post.status).toBe(403);
    const body = JSON.parse(post.body);
    expect(body).toMatchObject({
      error: 'egress_denied',
      sessionId: analyst,
      role: 'analyst',
      method: 'POST',
      url: `${FORUM}/comments`,
      policyVersion: server.policy.current()!.version,
    });
    expect(body.hint).toMatch(/policy/);
    decided.push({ method: 'POST', path: '/comments', decision: 'deny' });
    expect(forum.db()).toEqual(before);
    expect(await (await fetch(`${forum.url}/comments`)).json()).toEqual(before.comments);
  });

  it('2. analyst cannot write etcd config or change its ACL (403 each; etcd unchanged); reads work', async () => {
    const put = await curl(
      analyst,
      `-X POST -d '{"key":"${b64('app/feature-flags')}","value":"${b64('{"beta":true}')}"}' ${CONFIG}/v3/kv/put`,
    );
    expect(put.status).toBe(403);
    decided.push({ method: 'POST', path: '/v3/kv/put', decision: 'deny' });
    const role = await curl(analyst, `-X POST -d '{"name":"open-to-all"}' ${CONFIG}/v3/auth/role/add`);
    expect(role.status).toBe(403);
    decided.push({ method: 'POST', path: '/v3/auth/role/add', decision: 'deny' });
    const grant = await curl(
      analyst,
      `-X POST -d '{"name":"root","perm":{"permType":"READWRITE","key":"${b64('a')}"}}' ${CONFIG}/v3/auth/role/grant`,
    );
    expect(grant.status).toBe(403);
    decided.push({ method: 'POST', path: '/v3/auth/role/grant', decision: 'deny' });
    expect(await etcd.etcdctl('get', 'app/feature-flags', '--print-value-only')).toBe('{"beta":false}\n');
    expect(await etcd.etcdctl('role', 'list')).not.toContain('open-to-all');

    const range = await curl(
      analyst,
      `-X POST -d '{"key":"${b64('app/feature-flags')}"}' ${CONFIG}/v3/kv/range`,
    );
    expect(range.status).toBe(200);
    expect(Buffer.from(JSON.parse(range.body).kvs[0].value, 'base64').toString()).toBe('{"beta":false}');
    decided.push({ method: 'POST', path: '/v3/kv/range', decision: 'allow' });
  });

  it('3. responder posts a reply; it appears in json-server', async () => {
    const post = await curl(
      responder,
      `-X POST -H 'content-type: application/json' -d '{"postId":1,"body":"Please use the access-request process."}' ${FORUM}/comments`,
    );
    expect(post.status).toBe(201);
    await expect
      .poll(async () =>
        ((await (await fetch(`${forum.url}/comments`)).json()) as Array<{ body: string }>).map((c) => c.body),
      )
      .toContain('Please use the access-request process.');
  });

  it('4a. the gateway is the only exit: direct connections from the sandbox fail (property 1)', async () => {
    // A listener on every host address: Docker 20.10 would let an --internal network reach it.
    const seen: string[] = [];
    const trap = net.createServer((s) => {
      seen.push(String(s.remoteAddress));
      s.destroy();
    });
    await new Promise<void>((r) => trap.listen(0, '0.0.0.0', () => r()));
    const trapPort = (trap.address() as net.AddressInfo).port;
    const proxyUrl = (await api.sh(analyst, 'printf %s "$HTTP_PROXY"')).stdout;
    const gatewayIp = /@([\d.]+):3128$/.exec(proxyUrl)![1]!;
    const bridgeIp = gatewayIp.replace(/\.\d+$/, (m) => `.${Number(m.slice(1)) - 1}`);
    // Every IPv4 address of this machine (docker0, the egress bridge, the uplink, ...).
    const hostAddresses = Object.values(networkInterfaces())
      .flat()
      .filter((a) => a && a.family === 'IPv4' && !a.internal)
      .map((a) => a!.address);
    expect(hostAddresses).toContain(hostGateway);
    const targets = [
      `http://${hostGateway}:3000/posts/1`, // the upstream itself, skipping the gateway
      `http://${hostGateway}:2379/health`,
      `http://${bridgeIp}:${trapPort}/`, // the session network's .1: no one may hold it
      ...hostAddresses.map((a) => `http://${a}:${trapPort}/`),
    ];
    // All probes at once (each bounded to 2 s); each prints "URL EXIT_CODE".
    const script = targets
      .map((u) => `(curl --noproxy '*' -s -o /dev/null --max-time 2 ${u}; echo "${u} $?") &`)
      .join('\n');
    const r = await api.sh(analyst, `${script}\nwait`);
    const results = new Map(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(' ') as [string, string]),
    );
    for (const url of targets) {
      expect(results.get(url), `${url} must be unreachable from the sandbox`).toBeDefined();
      expect(results.get(url), `${url} must be unreachable from the sandbox`).not.toBe('0');
    }
    // The gateway's admin API refuses a sandbox even when reached directly.
    const admin = await api.sh(
      analyst,
      `curl --noproxy '*' -s -o /dev/null --max-time 3 -w '%{http_code}' http://${gatewayIp}:9090/admin/status`,
    );
    expect(['403', '000']).toContain(admin.stdout.trim());
    await new Promise<void>((r) => trap.close(() => r()));
    expect(seen).toEqual([]);
    // Defence in depth on the host: session bridges are named alk*, and INPUT drops their traffic.
    const sessionNet = await docker.getNetwork(sessionNetworkName(analyst)).inspect();
    expect(sessionNet.Internal).toBe(true);
    expect(sessionNet.Options?.['com.docker.network.bridge.inhibit_ipv4']).toBe('true');
    expect(sessionNet.Options?.['com.docker.network.bridge.name']).toMatch(/^alk[0-9a-f]{12}$/);
    if (process.getuid?.() === 0) {
      for (const tool of ['iptables', 'ip6tables']) {
        const rules = await run(tool, ['-S', 'INPUT']);
        expect(rules.stdout).toMatch(/-A INPUT -i alk\+ .*-j DROP/);
      }
    }
  });

  it("4b. a second session's credential used from the first sandbox is refused", async () => {
    const theirs = (await api.sh(responder, 'printf %s "$HTTP_PROXY"')).stdout;
    const mine = (await api.sh(analyst, 'printf %s "$HTTP_PROXY"')).stdout;
    const creds = /^http:\/\/([^@]+)@/.exec(theirs)![1]!;
    const gw = /@([\d.:]+)$/.exec(mine)![1]!;
    const r = await curl(analyst, `-x http://${creds}@${gw} ${FORUM}/posts/1`);
    expect(r.status).toBe(407);
    expect(JSON.parse(r.body).error).toBe('identity_refused');
    const after = await api.auditUntil(analyst, (e) => e.at(-1)?.reason === 'address_mismatch');
    expect(after.at(-1)).toMatchObject({ reason: 'address_mismatch', decision: 'deny', sessionId: analyst });
  });

  it('6. each session’s audit lists every decision with the matched rule and the policy version', async () => {
    const version = server.policy.current()!.version;
    const events = await api.audit(analyst);
    for (const d of decided) {
      const e = events.find((x) => x.method === d.method && x.path === d.path && x.decision === d.decision);
      expect(e, `${d.method} ${d.path} ${d.decision}`).toBeDefined();
      expect(e!.policyVersion).toBe(version);
      expect(e!.sessionId).toBe(analyst);
      expect(e!.role).toBe('analyst');
      if (d.decision === 'allow') expect(e!.rule).toMatch(/policy\.csv:\d+/);
    }
    const deniedEtcd = events.filter((e) => e.host === 'config.test' && e.decision === 'deny');
    expect(deniedEtcd.every((e) => e.rule !== null && /deny/.test(e.rule))).toBe(true);
    const responderEvents = await api.audit(responder);
    expect(
      responderEvents.some((e) => e.method === 'POST' && e.path === '/comments' && e.decision === 'allow'),
    ).toBe(true);
  });

  it('5. DELETE while a loop keeps calling: nothing is allowed after DELETE returns; the container is gone', async () => {
    await api.sh(
      analyst,
      `nohup sh -c 'while :; do curl -s -o /dev/null -w "%{http_code}\\n" ${FORUM}/posts/1 >> /tmp/loop.log; done' >/dev/null 2>&1 &`,
    );
    await expect
      .poll(async () => (await api.audit(analyst)).filter((e) => e.path === '/posts/1').length, {
        timeout: 20_000,
      })
      .toBeGreaterThan(5);
    await api.remove(analyst);
    const returnedAt = Date.now();
    expect(await exists('container', sandboxContainerName(analyst))).toBe(false);
    expect(await exists('network', sessionNetworkName(analyst))).toBe(false);
    await new Promise((r) => setTimeout(r, 1_000));
    const events: AuditEvent[] = await api.audit(analyst); // ended sessions keep their audit trail
    const lateAllows = events.filter((e) => e.decision === 'allow' && Date.parse(e.time) > returnedAt);
    expect(lateAllows).toEqual([]);
    expect((await api.raw('GET', `/v1/sessions/${analyst}`)).status).toBe(404);
  });

  it('recovers running sessions after a control-plane restart; nothing is lost', async () => {
    try {
      const before = await api.audit(responder);
      await server.close();
      server = await start(cfg);
      const listed = (await (await api.raw('GET', '/v1/sessions')).json()) as {
        sessions: Array<{ id: string }>;
      };
      expect(listed.sessions.map((s) => s.id)).toContain(responder);
      const get = await curl(responder, `${FORUM}/posts/1`);
      expect(get.status).toBe(200);
      // The restarted control plane tails the audit file: wait until the new event has been read.
      await expect
        .poll(async () => (await api.audit(responder)).length, { timeout: 10_000 })
        .toBeGreaterThan(before.length);
      const after = await api.audit(responder);
      expect(after.slice(0, before.length)).toEqual(before);
    } finally {
      await api.remove(responder);
    }
  });
});

describe('airlock run (a person at a terminal)', () => {
  it("streams output, prints a summary of allowed/denied calls, removes the session, exits with CMD's code", async () => {
    const before = (await (await api.raw('GET', '/v1/sessions')).json()) as { sessions: unknown[] };
    const r = await airlock(
      [
        'run',
        '--role',
        'analyst',
        '--',
        'sh',
        '-c',
        `curl -s ${FORUM}/posts/1; echo; curl -s -o /dev/null -w '%{http_code}\\n' -X POST -d '{}' ${FORUM}/comments; exit 3`,
      ],
      { AIRLOCK_API_URL: server.url, AIRLOCK_API_TOKEN: TOKEN },
    );
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/port 22/);
    expect(r.stdout).toMatch(/^403$/m);
    expect(r.stderr).toMatch(/airlock: 1 call\(s\) allowed, 1 denied/);
    expect(r.stderr).toMatch(/denied POST http:\/\/forum\.test:3000\/comments/);
    const after = (await (await api.raw('GET', '/v1/sessions')).json()) as { sessions: unknown[] };
    expect(after.sessions.length).toBe(before.sessions.length);
  });

  it('sessions ls | get | rm and audit print what the API holds', async () => {
    const env = { AIRLOCK_API_URL: server.url, AIRLOCK_API_TOKEN: TOKEN };
    const s = await api.create({ role: 'analyst' });
    await curl(s.id, `${FORUM}/posts/1`);
    const ls = await airlock(['sessions', 'ls'], env);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(new RegExp(`^${s.id}\\tanalyst\\trunning\\t`, 'm'));
    const get = await airlock(['sessions', 'get', s.id], env);
    expect(JSON.parse(get.stdout)).toMatchObject({ id: s.id, role: 'analyst' });
    const audit = await airlock(['audit', s.id], env);
    const events = audit.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { path: string; decision: string });
    expect(events).toContainEqual(expect.objectContaining({ path: '/posts/1', decision: 'allow' }));
    const rm = await airlock(['sessions', 'rm', s.id], env);
    expect(rm.code).toBe(0);
    expect((await airlock(['sessions', 'get', s.id], env)).code).not.toBe(0);
  });
});

describe('bad input on the real server', () => {
  it('400 naming the field, 422 unknown role, 401 missing/bad token; nothing half-created', async () => {
    const containersBefore = (await docker.listContainers({ all: true })).length;
    const bad = await api.raw('POST', '/v1/sessions', { role: 'analyst', ttlSeconds: 'soon' });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(((await bad.json()) as { field: string }).field).toBe('ttlSeconds');
    const unknown = await api.raw('POST', '/v1/sessions', { role: 'root' });
    expect(unknown.status).toBe(422);
    expect((await api.raw('GET', '/v1/sessions', undefined, null)).status).toBe(401);
    expect((await api.raw('GET', '/v1/sessions', undefined, 'wrong-token-xxxxxxxx')).status).toBe(401);
    const badImage = await api.raw('POST', '/v1/sessions', {
      role: 'analyst',
      image: 'airlock-no-such-image:1',
    });
    expect(badImage.status).toBeGreaterThanOrEqual(400);
    expect((await docker.listContainers({ all: true })).length).toBe(containersBefore);
    const nets = await docker.listNetworks({ filters: { label: ['io.airlock.kind=session'] } });
    expect(nets).toEqual([]);
  });
});

describe('fail closed at start (property 3)', () => {
  it('with the policy dir missing: not ready, and no session can be created', async () => {
    await server.close();
    expectErrorLog(
      /^no valid policy[;:] every call is denied$/,
      'this test starts with the policy dir missing',
    );
    const missing = makeConfig(path.join(stateDir, 'no-such-policy-dir'));
    server = await start(missing);
    const ready = await api.raw('GET', '/readyz', undefined, null);
    expect(ready.status).toBe(503);
    const policy = (await (await api.raw('GET', '/v1/policy')).json()) as {
      version: string | null;
      lastError: string;
    };
    expect(policy.version).toBeNull();
    expect(policy.lastError).toBeTruthy();
    expect((await api.raw('POST', '/v1/sessions', { role: 'analyst' })).status).toBe(503);
  });
});
