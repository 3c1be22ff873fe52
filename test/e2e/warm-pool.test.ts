/**
 * Warm pools (issue 12 item 3; docs/architecture.md "Warm pools") on the real Docker engine with the
 * real images and json-server as the upstream, `sessions.warmPool.size: 2`:
 * - the pool fills in the background: two sandboxes started and self-tested, with no role, no
 *   credential and no proxy settings, unknown to the gateway;
 * - from inside a pooled, unclaimed sandbox no call is allowed (407 with or without a guessed
 *   credential) and nothing reaches json-server;
 * - a create claims a pooled sandbox (metric, the sandbox existed before the POST): role, TTL,
 *   credential and env are the claim's; GET is 200 and POST 403 as the analyst role says;
 * - the pool refills; DELETE (kill switch) removes the claimed sandbox — no call sent after DELETE
 *   returned is allowed — and its id is never handed out again; a claimed session ends at its TTL
 *   counted from the claim;
 * - a control-plane restart recovers the claimed session (it still works) and removes the unclaimed
 *   members, then fills the pool again with new ones.
 * Traffic goes only to this machine and the project's own containers.
 *
 * Run under the Docker lock: `flock /tmp/airlock-e2e.lock npx vitest run --project e2e test/e2e/warm-pool.test.ts`.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../../src/cli/serve.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { LABEL, sandboxContainerName, sessionNetworkName } from '../../src/runtime/docker/labels.js';
import { claimsDir, type ClaimRecord } from '../../src/runtime/docker/runtime.js';
import { subnetAddresses } from '../../src/runtime/docker/subnets.js';
import { TestApi, curlResult } from '../helpers/api-client.js';
import { docker, exists, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';
import { FORUM_SEED, startJsonServer, type JsonServer } from '../helpers/upstreams.js';

const TOKEN = 'e2e-warm-pool-token-0123456789';
const EGRESS_SUBNET = '10.214.0.0/24';
const FORUM = 'http://forum.test:3000';
const IMAGE = 'airlock-sandbox:dev';
const POOL = 2;

let stateDir: string;
let server: Awaited<ReturnType<typeof startServer>> | null = null;
let api: TestApi;
let forum: JsonServer;
const lines: Array<Record<string, unknown>> = [];

function makeConfig(): Config {
  return parseConfig(
    {
      api: { listen: '127.0.0.1:0', tokens: [{ name: 'e2e', token: TOKEN }] },
      gateway: { hostAliases: { 'forum.test': 'host-gateway' }, allowPrivateCidrs: [EGRESS_SUBNET] },
      policy: { dir: path.resolve('policies') },
      runtime: {
        docker: { egressSubnet: EGRESS_SUBNET },
        resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
      },
      sessions: { warmPool: { size: POOL } },
      stateDir,
    },
    process.cwd(),
  );
}

async function start(): Promise<void> {
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  server = await startServer(makeConfig(), logger);
  api = new TestApi(server.url, TOKEN);
}

/** A metric's value from `GET /metrics` (0 when the series is absent). */
async function metric(name: string, labels = `image="${IMAGE}"`): Promise<number> {
  const text = await (await fetch(`${server!.url}/metrics`)).text();
  const m = new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** Pooled sandboxes on the engine (claimed or not), by session id. */
async function pooledContainers(): Promise<Map<string, { running: boolean; created: number }>> {
  const cs = await docker.listContainers({ all: true, filters: { label: [`${LABEL.pooled}=true`] } });
  return new Map(
    cs.map((c) => [c.Labels[LABEL.session]!, { running: c.State === 'running', created: c.Created }]),
  );
}

/** The ready members of the running control plane's pool. */
const readyMembers = (): string[] => server!.manager.pool!.members()[IMAGE] ?? [];

async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs `sh -c script` in a sandbox through the engine (not the API), with `env` added. */
async function dockerSh(id: string, script: string, env: string[] = []): Promise<string> {
  const exec = await docker.getContainer(sandboxContainerName(id)).exec({
    Cmd: ['sh', '-c', script],
    Env: env,
    AttachStdout: true,
    AttachStderr: true,
  });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (d: Buffer) => chunks.push(d));
  docker.modem.demuxStream(stream, out, new PassThrough());
  await new Promise<void>((resolve) => stream.on('end', () => resolve()));
  return Buffer.concat(chunks).toString('utf8');
}

/** The gateway's proxy address on a sandbox's own network (.2 of its /29). */
async function gatewayOf(id: string): Promise<string> {
  const info = await docker.getNetwork(sessionNetworkName(id)).inspect();
  return subnetAddresses(info.IPAM!.Config![0]!.Subnet!).gateway;
}

const comments = (): number => forum.db().comments.length;

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', IMAGE]);
  await removeAirlockObjects();
  stateDir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-warm-pool-'));
  await start();
  forum = await startJsonServer(EGRESS_SUBNET.replace(/\.0\/24$/, '.1'), 3000);
});

afterAll(async () => {
  // No fill in flight when the control plane stops: its sandbox would be removed under it below.
  if (server)
    await until(() => readyMembers().length === POOL, 120_000, 'a full pool').catch(() => undefined);
  await server?.close();
  await removeAirlockObjects();
  await forum?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  // An error-level line of the control plane during a passing run is a finding (issue 15).
  expect(lines.filter((l) => Number(l.level) >= 50).map((l) => JSON.stringify(l))).toEqual([]);
});

describe('warm pools (issue 12 item 3)', () => {
  let firstMembers: string[] = [];

  it('fills the pool in the background: started, self-tested, with no role, credential or proxy', async () => {
    await until(async () => (await metric('airlock_warm_pool_ready')) === POOL, 180_000, 'a full pool');
    firstMembers = readyMembers();
    expect(firstMembers).toHaveLength(POOL);
    for (const id of firstMembers) {
      const c = await docker.getContainer(sandboxContainerName(id)).inspect();
      expect(c.State.Running).toBe(true);
      expect(c.Config.Labels[LABEL.pooled]).toBe('true');
      expect(c.Config.Labels[LABEL.role]).toBeUndefined();
      expect(c.Config.Labels[LABEL.credentialSha256]).toBeUndefined();
      expect(c.Config.Env.filter((e) => /^(https?|all)_proxy=/i.test(e))).toEqual([]);
      expect(existsSync(path.join(claimsDir(stateDir), `${id}.json`))).toBe(false);
      // Its only route is its own /29 (the runtime drops Docker's default route after start).
      if (process.getuid?.() === 0) {
        const routes = (await dockerSh(id, 'cat /proc/net/route')).trim().split('\n').slice(1);
        expect(routes.length).toBeGreaterThan(0);
        expect(routes.filter((r) => r.split(/\s+/)[1] === '00000000')).toEqual([]);
      }
      const selfTest = lines.find((l) => l.event === 'isolation_selftest' && l.sessionId === id);
      expect(selfTest?.result).toBe('pass');
    }
    expect(server!.manager.list()).toEqual([]);
  });

  it('a pooled, unclaimed sandbox can make no allowed call and reaches no upstream', async () => {
    const id = firstMembers[0]!;
    const gw = await gatewayOf(id);
    const before = comments();
    const curl = (proxy: string, extra = ''): string =>
      `curl -s -o /dev/null -w '%{http_code}\\n' --max-time 5 -x '${proxy}' ${extra}`;
    const out = await dockerSh(
      id,
      [
        `${curl(`http://${gw}:3128`)} '${FORUM}/posts/1'`,
        `${curl(`http://${id}:guessed-credential@${gw}:3128`)} '${FORUM}/posts/1'`,
        `${curl(`http://${id}:@${gw}:3128`)} -X POST -H 'content-type: application/json' -d '{"postId":1,"body":"x"}' '${FORUM}/comments'`,
        `curl -s -o /dev/null -w '%{http_code}\\n' --max-time 2 --noproxy '*' '${FORUM.replace('forum.test', EGRESS_SUBNET.replace(/\.0\/24$/, '.1'))}/posts/1'`,
      ].join('; '),
    );
    expect(out.trim().split('\n')).toEqual(['407', '407', '407', '000']);
    expect(comments()).toBe(before);
    // No session of the control plane, none at the gateway: the refusals name no session.
    expect(server!.manager.list()).toEqual([]);
  });

  let claimed = '';

  it('a create claims a pooled sandbox: role, TTL, credential and env are the claim’s', async () => {
    const pooledBefore = await pooledContainers();
    const t0 = Date.now();
    const view = await api.create({ role: 'analyst', ttlSeconds: 600, env: { GREETING: 'hello' } });
    claimed = view.id;
    expect(view.status).toBe('running');
    expect(firstMembers).toContain(view.id);
    // The sandbox existed (created, started) before the request.
    expect(pooledBefore.get(view.id)?.running).toBe(true);
    expect(pooledBefore.get(view.id)!.created * 1000).toBeLessThan(t0);
    expect(await metric('airlock_warm_pool_claims_total')).toBe(1);
    expect(lines.find((l) => l.msg === 'session created' && l.sessionId === view.id)?.pooled).toBe(true);
    // TTL runs from the claim.
    expect(Date.parse(view.createdAt)).toBeGreaterThanOrEqual(t0 - 1_000);
    expect(Date.parse(view.expiresAt) - Date.parse(view.createdAt)).toBe(600_000);
    const rec = JSON.parse(
      readFileSync(path.join(claimsDir(stateDir), `${view.id}.json`), 'utf8'),
    ) as ClaimRecord;
    expect(rec.role).toBe('analyst');

    const before = comments();
    const get = curlResult((await api.sh(view.id, `curl -s -w '\\n%{http_code}' ${FORUM}/posts/1`)).stdout);
    expect(get.status).toBe(200);
    expect(JSON.parse(get.body)).toEqual(FORUM_SEED.posts[0]);
    const post = curlResult(
      (
        await api.sh(
          view.id,
          `curl -s -w '\\n%{http_code}' -X POST -H 'content-type: application/json' -d '{"postId":1,"body":"x"}' ${FORUM}/comments`,
        )
      ).stdout,
    );
    expect(post.status).toBe(403);
    expect(comments()).toBe(before);
    expect((await api.sh(view.id, 'echo "$GREETING $AIRLOCK_SESSION_ID"')).stdout.trim()).toBe(
      `hello ${view.id}`,
    );
    const events = await api.auditUntil(view.id, (e) => e.length >= 2);
    expect(events.map((e) => [e.method, e.decision])).toEqual([
      ['GET', 'allow'],
      ['POST', 'deny'],
    ]);
  });

  it('the pool refills in the background', async () => {
    await until(
      () => readyMembers().length === POOL && !readyMembers().includes(claimed),
      180_000,
      'the pool to refill',
    );
    expect(await metric('airlock_warm_pool_ready')).toBe(POOL);
  });

  it('DELETE removes the claimed sandbox: no call sent after it returned is allowed, never reused', async () => {
    const rec = JSON.parse(
      readFileSync(path.join(claimsDir(stateDir), `${claimed}.json`), 'utf8'),
    ) as ClaimRecord;
    const env = Object.entries(rec.env).map(([k, v]) => `${k}=${v}`);
    const calls: Array<{ code: number; t: number }> = [];
    // A loop in the sandbox with the session's own environment, stamped when each call is sent.
    const loop = (async () => {
      const exec = await docker.getContainer(sandboxContainerName(claimed)).exec({
        Cmd: [
          'sh',
          '-c',
          `i=0; while [ $i -lt 400 ]; do i=$((i+1)); t=$(date +%s%3N); ` +
            `c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 '${FORUM}/posts/1'); echo "$c $t"; sleep 0.05; done`,
        ],
        Env: env,
        AttachStdout: true,
        AttachStderr: true,
      });
      const stream = await exec.start({ hijack: true, stdin: false });
      const out = new PassThrough();
      docker.modem.demuxStream(stream, out, new PassThrough());
      let partial = '';
      out.on('data', (d: Buffer) => {
        const ls = (partial + d.toString()).split('\n');
        partial = ls.pop() ?? '';
        for (const l of ls) {
          const [code, t] = l.trim().split(' ').map(Number);
          if (code !== undefined && t !== undefined) calls.push({ code, t });
        }
      });
      await new Promise<void>((resolve) => {
        stream.on('end', () => resolve());
        stream.on('close', () => resolve());
      });
    })();
    await until(() => calls.filter((c) => c.code === 200).length >= 3, 30_000, 'allowed calls in the loop');
    await api.remove(claimed);
    const returned = Date.now();
    await loop;
    expect(calls.filter((c) => c.code === 200).length).toBeGreaterThanOrEqual(3);
    expect(calls.filter((c) => c.t > returned && c.code === 200)).toEqual([]);

    expect(await exists('container', sandboxContainerName(claimed))).toBe(false);
    expect(await exists('network', sessionNetworkName(claimed))).toBe(false);
    expect(existsSync(path.join(claimsDir(stateDir), `${claimed}.json`))).toBe(false);
    expect(readyMembers()).not.toContain(claimed);
    const next = await api.create({ role: 'analyst' });
    expect(next.id).not.toBe(claimed);
    await api.remove(next.id);
    expect(await exists('container', sandboxContainerName(next.id))).toBe(false);
  });

  it('a claimed session ends at its TTL, counted from the claim; its sandbox is removed', async () => {
    await until(() => readyMembers().length === POOL, 180_000, 'a full pool');
    const members = readyMembers();
    const view = await api.create({ role: 'analyst', ttlSeconds: 3 });
    expect(members).toContain(view.id);
    expect(Date.parse(view.expiresAt) - Date.parse(view.createdAt)).toBe(3_000);
    await until(
      async () => (await api.raw('GET', `/v1/sessions/${view.id}`)).status === 404,
      30_000,
      'the session to expire',
    );
    expect(await exists('container', sandboxContainerName(view.id))).toBe(false);
    expect(existsSync(path.join(claimsDir(stateDir), `${view.id}.json`))).toBe(false);
  });

  it('a control-plane restart recovers claimed sessions and removes unclaimed members', async () => {
    await until(() => readyMembers().length === POOL, 180_000, 'a full pool');
    const session = await api.create({ role: 'analyst', env: { GREETING: 'again' } });
    await until(() => readyMembers().length === POOL, 180_000, 'a full pool');
    const unclaimed = readyMembers();
    await server!.close();
    server = null;
    // A record whose sandbox is gone (removed while the control plane was down) is not kept.
    const stale = path.join(claimsDir(stateDir), 's-00000000deadbeef.json');
    writeFileSync(stale, readFileSync(path.join(claimsDir(stateDir), `${session.id}.json`)));
    await start();
    expect(existsSync(stale)).toBe(false);

    expect(api.base).not.toBe('');
    expect((await api.raw('GET', `/v1/sessions/${session.id}`)).status).toBe(200);
    const get = curlResult(
      (await api.sh(session.id, `curl -s -w '\\n%{http_code}' ${FORUM}/posts/1`)).stdout,
    );
    expect(get.status).toBe(200);
    expect((await api.sh(session.id, 'echo "$GREETING"')).stdout.trim()).toBe('again');
    for (const id of unclaimed) expect(await exists('container', sandboxContainerName(id))).toBe(false);
    expect(lines.some((l) => l.sessionId === unclaimed[0] && /removing/.test(String(l.msg)))).toBe(true);

    await until(() => readyMembers().length === POOL, 180_000, 'the pool to fill after the restart');
    expect(readyMembers().filter((id) => unclaimed.includes(id))).toEqual([]);
    await api.remove(session.id);
    expect(await exists('container', sandboxContainerName(session.id))).toBe(false);
  });
});
