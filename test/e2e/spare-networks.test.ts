/**
 * Spare session networks (issue 12 item 3, `runtime.docker.spareNetworks: 2`; docs/architecture.md
 * "Session create") on the real Docker engine with the real images and json-server as the upstream:
 * - spares fill in the background: internal /29s (`inhibit_ipv4`) with the gateway at .2 and a bare
 *   network holder at .3 (nobody, no capability, read-only, no session env), no sandbox, no session;
 * - a cold create binds one: its session id is the spare's, the network existed before the POST, the
 *   sandbox is in the holder's network namespace (that network only, no default route), from the
 *   image with the trust bundle baked in, self-tested, and its calls are decided as its role says;
 * - spares refill with new ids; DELETE removes the bound network and its id is never handed out again;
 * - kill switch: no call sent after DELETE returned is allowed; sandbox, holder and network gone;
 * - a create that fails on a spare (image missing) leaves neither its network nor a container;
 * - a spare whose holder was stopped behind Airlock's back is not used: the create makes its own;
 * - a trust image removed behind Airlock's back is built again by the next create;
 * - more concurrent creates than spares all run, each on its own network;
 * - a spare left by a control plane that did not stop (no close) is removed by the next one.
 * Traffic goes only to this machine and the project's own containers.
 *
 * Run under the Docker lock: `flock /tmp/airlock-e2e.lock npx vitest run --project e2e test/e2e/spare-networks.test.ts`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../../src/cli/serve.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import {
  GATEWAY_CONTAINER,
  LABEL,
  netnsHolderName,
  sandboxContainerName,
  sessionNetworkName,
} from '../../src/runtime/docker/labels.js';
import { DockerRuntime, TRUST_IMAGE_REPO } from '../../src/runtime/docker/runtime.js';
import { subnetAddresses } from '../../src/runtime/docker/subnets.js';
import { TestApi, curlResult } from '../helpers/api-client.js';
import { docker, exists, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';
import { FORUM_SEED, startJsonServer, type JsonServer } from '../helpers/upstreams.js';

const TOKEN = 'e2e-spare-networks-token-0123456789';
const EGRESS_SUBNET = '10.214.0.0/24';
const FORUM = 'http://forum.test:3000';
const SPARES = 2;

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
        docker: { egressSubnet: EGRESS_SUBNET, spareNetworks: SPARES },
        resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
      },
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

async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Session ids of spare networks with no container on the engine (ready or being bound). */
async function spares(): Promise<string[]> {
  const nets = await docker.listNetworks({ filters: { label: [`${LABEL.spare}=true`] } });
  const containers = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL.managed}=true`] },
  });
  const used = new Set(
    containers.filter((c) => c.Labels[LABEL.kind] === 'sandbox').map((c) => c.Labels[LABEL.session]),
  );
  return nets.map((n) => n.Labels![LABEL.session]!).filter((id) => !used.has(id));
}

/** Containers on a network, by name (one inspect). */
async function onNetwork(id: string): Promise<Map<string, string>> {
  const info = await docker.getNetwork(sessionNetworkName(id)).inspect();
  return new Map(
    Object.values(info.Containers ?? {}).map((c) => [c.Name, c.IPv4Address.replace(/\/\d+$/, '')]),
  );
}

/**
 * The networks a sandbox is on, and who holds its network namespace: itself, or (on a spare) the
 * spare's holder container, whose namespace it joined.
 */
async function sandboxNetworks(id: string): Promise<{ holder: string; networks: string[] }> {
  const c = await docker.getContainer(sandboxContainerName(id)).inspect();
  const mode = c.HostConfig.NetworkMode ?? '';
  if (!mode.startsWith('container:'))
    return { holder: c.Name.slice(1), networks: Object.keys(c.NetworkSettings.Networks) };
  const h = await docker.getContainer(mode.slice('container:'.length)).inspect();
  return { holder: h.Name.slice(1), networks: Object.keys(h.NetworkSettings.Networks) };
}

/** Runs `sh -c script` in a sandbox through the engine (not the API). */
async function dockerSh(id: string, script: string): Promise<string> {
  const exec = await docker.getContainer(sandboxContainerName(id)).exec({
    Cmd: ['sh', '-c', script],
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

/** GET allowed and POST denied for the analyst role, both decided by the gateway (audit). */
async function expectDecided(id: string): Promise<void> {
  const before = forum.db().comments.length;
  const get = curlResult((await api.sh(id, `curl -s -w '\\n%{http_code}' ${FORUM}/posts/1`)).stdout);
  expect(get.status).toBe(200);
  expect(JSON.parse(get.body)).toEqual(FORUM_SEED.posts[0]);
  const post = curlResult(
    (
      await api.sh(
        id,
        `curl -s -w '\\n%{http_code}' -X POST -H 'content-type: application/json' -d '{"postId":1,"body":"x"}' ${FORUM}/comments`,
      )
    ).stdout,
  );
  expect(post.status).toBe(403);
  expect(forum.db().comments.length).toBe(before);
  const events = await api.auditUntil(id, (e) => e.length >= 2);
  expect(events.map((e) => [e.method, e.decision])).toEqual([
    ['GET', 'allow'],
    ['POST', 'deny'],
  ]);
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  stateDir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-spare-networks-'));
  await start();
  forum = await startJsonServer(EGRESS_SUBNET.replace(/\.0\/24$/, '.1'), 3000);
});

afterAll(async () => {
  // No fill in flight when the control plane stops.
  if (server)
    await until(async () => (await spares()).length === SPARES, 60_000, 'spares').catch(() => undefined);
  await server?.close();
  await removeAirlockObjects();
  await forum?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  // An error-level line during a passing run is a finding (issue 15), except the failed create's.
  expect(
    lines
      .filter((l) => Number(l.level) >= 50 && !JSON.stringify(l).includes('airlock-no-such-image'))
      .map((l) => JSON.stringify(l)),
  ).toEqual([]);
});

describe('spare session networks (issue 12 item 3)', () => {
  let firstSpares: string[] = [];
  let bound = '';

  it('fill in the background: internal /29s with the gateway and a bare network holder, no sandbox, no session', async () => {
    await until(async () => (await spares()).length === SPARES, 60_000, 'the spares');
    firstSpares = await spares();
    expect(firstSpares).toHaveLength(SPARES);
    for (const id of firstSpares) {
      const info = await docker.getNetwork(sessionNetworkName(id)).inspect();
      expect(info.Internal).toBe(true);
      expect(info.Options?.['com.docker.network.bridge.inhibit_ipv4']).toBe('true');
      expect(info.Labels?.[LABEL.kind]).toBe('session');
      const addrs = subnetAddresses(info.IPAM!.Config![0]!.Subnet!);
      expect(await onNetwork(id)).toEqual(
        new Map([
          [GATEWAY_CONTAINER, addrs.gateway],
          [netnsHolderName(id), addrs.sandbox],
        ]),
      );
      // The holder only holds the namespace: nobody, no capability, no environment of a session.
      const h = await docker.getContainer(netnsHolderName(id)).inspect();
      expect(h.State.Running).toBe(true);
      expect(h.Config.User).toBe('65534:65534');
      expect(h.HostConfig.CapDrop).toEqual(['ALL']);
      expect(h.HostConfig.ReadonlyRootfs).toBe(true);
      expect(h.Config.Env.filter((e) => /proxy|credential|AIRLOCK_SESSION/i.test(e))).toEqual([]);
      expect(h.Config.Labels[LABEL.kind]).toBe('netns');
      expect(h.Mounts).toEqual([]);
    }
    expect(server!.manager.list()).toEqual([]);
  });

  it('a cold create binds one: the spare’s id, that network only, self-tested, calls decided', async () => {
    const t0 = Date.now();
    const view = await api.create({ role: 'analyst', ttlSeconds: 600 });
    bound = view.id;
    expect(view.status).toBe('running');
    expect(firstSpares).toContain(bound);
    const net = await docker.getNetwork(sessionNetworkName(bound)).inspect();
    expect(Date.parse(net.Created)).toBeLessThan(t0);
    const addrs = subnetAddresses(net.IPAM!.Config![0]!.Subnet!);
    const c = await docker.getContainer(sandboxContainerName(bound)).inspect();
    // In the spare holder's network namespace, whose only network is the session's.
    expect(await sandboxNetworks(bound)).toEqual({
      holder: netnsHolderName(bound),
      networks: [sessionNetworkName(bound)],
    });
    expect(c.HostConfig.CapDrop).toEqual(['ALL']);
    // From the sandbox image with the trust bundle baked in: no mount, the asked-for image recorded.
    expect(view.image).toBe('airlock-sandbox:dev');
    expect(c.Config.Labels[LABEL.image]).toBe('airlock-sandbox:dev');
    expect(c.Mounts).toEqual([]);
    const img = await docker.getImage(c.Image).inspect();
    expect(img.RepoTags.some((t) => t.startsWith(`${TRUST_IMAGE_REPO}:`))).toBe(true);
    expect(await onNetwork(bound)).toEqual(
      new Map([
        [GATEWAY_CONTAINER, addrs.gateway],
        [netnsHolderName(bound), addrs.sandbox],
      ]),
    );
    const selfTest = lines.find((l) => l.event === 'isolation_selftest' && l.sessionId === bound);
    expect(selfTest?.result).toBe('pass');
    if (process.getuid?.() === 0) {
      // Its only route is its own /29 (the default route is dropped at start).
      const routes = (await dockerSh(bound, 'cat /proc/net/route')).trim().split('\n').slice(1);
      expect(routes.length).toBeGreaterThan(0);
      expect(routes.filter((r) => r.split(/\s+/)[1] === '00000000')).toEqual([]);
    }
    await expectDecided(bound);
  });

  it('spares refill with new ids; DELETE removes the bound network, its id is never handed out again', async () => {
    await until(async () => (await spares()).length === SPARES, 60_000, 'the spares to refill');
    const refilled = await spares();
    expect(refilled).not.toContain(bound);
    await api.remove(bound);
    expect(await exists('network', sessionNetworkName(bound))).toBe(false);
    expect(await exists('container', sandboxContainerName(bound))).toBe(false);
    expect(await exists('container', netnsHolderName(bound))).toBe(false);
    const gw = await docker.getContainer(GATEWAY_CONTAINER).inspect();
    expect(gw.NetworkSettings.Networks[sessionNetworkName(bound)]).toBeUndefined();
    const next = await api.create({ role: 'analyst' });
    expect(next.id).not.toBe(bound);
    expect(refilled).toContain(next.id);
    await api.remove(next.id);
    await until(async () => (await spares()).length === SPARES, 60_000, 'the spares to refill');
    expect(await spares()).not.toContain(bound);
  });

  it('kill switch on a spare: no call sent after DELETE returned is allowed; sandbox, holder, network gone', async () => {
    await until(async () => (await spares()).length === SPARES, 60_000, 'the spares');
    const view = await api.create({ role: 'analyst' });
    expect(await exists('container', netnsHolderName(view.id))).toBe(true);
    const calls: Array<{ code: number; t: number }> = [];
    // A loop in the sandbox (its own proxy environment), each call stamped when it is sent.
    const loop = (async () => {
      const exec = await docker.getContainer(sandboxContainerName(view.id)).exec({
        Cmd: [
          'sh',
          '-c',
          `i=0; while [ $i -lt 400 ]; do i=$((i+1)); t=$(date +%s%3N); ` +
            `c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 '${FORUM}/posts/1'); echo "$c $t"; sleep 0.05; done`,
        ],
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
    await api.remove(view.id);
    const returned = Date.now();
    await loop;
    expect(calls.filter((c) => c.t > returned && c.code === 200)).toEqual([]);
    expect(await exists('container', sandboxContainerName(view.id))).toBe(false);
    expect(await exists('container', netnsHolderName(view.id))).toBe(false);
    expect(await exists('network', sessionNetworkName(view.id))).toBe(false);
  });

  it('a create that fails on a spare leaves neither its network nor a container', async () => {
    await until(async () => (await spares()).length === SPARES, 60_000, 'the spares');
    const before = await spares();
    const res = await api.raw('POST', '/v1/sessions', { role: 'analyst', image: 'airlock-no-such-image:1' });
    expect(res.status).toBeGreaterThanOrEqual(400);
    const now = await spares();
    const taken = before.filter((id) => !now.includes(id));
    expect(taken).toHaveLength(1);
    expect(await exists('network', sessionNetworkName(taken[0]!))).toBe(false);
    expect(await exists('container', netnsHolderName(taken[0]!))).toBe(false);
    const left = await docker.listContainers({
      all: true,
      filters: { label: [`${LABEL.session}=${taken[0]}`] },
    });
    expect(left).toEqual([]);
    expect(server!.manager.list()).toEqual([]);
    await until(async () => (await spares()).length === SPARES, 60_000, 'the spares to refill');
    expect(await spares()).not.toContain(taken[0]);
  });

  it('a spare whose holder was stopped behind Airlock’s back is not used: the create makes its own network', async () => {
    await until(async () => (await spares()).length === SPARES, 60_000, 'the spares');
    const dead = await spares();
    for (const id of dead) await docker.getContainer(netnsHolderName(id)).kill();
    for (let i = 0; i < dead.length; i++) {
      const view = await api.create({ role: 'analyst' });
      expect(view.status).toBe('running');
      expect(dead).toContain(view.id);
      // Its own network under the spare's name, made anew; no holder.
      expect(await sandboxNetworks(view.id)).toEqual({
        holder: sandboxContainerName(view.id),
        networks: [sessionNetworkName(view.id)],
      });
      expect(await exists('container', netnsHolderName(view.id))).toBe(false);
      const get = curlResult((await api.sh(view.id, `curl -s -w '\\n%{http_code}' ${FORUM}/posts/1`)).stdout);
      expect(get.status).toBe(200);
      await api.remove(view.id);
      expect(await exists('network', sessionNetworkName(view.id))).toBe(false);
    }
    await until(async () => (await spares()).length === SPARES, 60_000, 'new spares');
    expect((await spares()).filter((id) => dead.includes(id))).toEqual([]);
  });

  it('a sandbox image with the trust bundle removed behind Airlock’s back is built again by the next create', async () => {
    expect(server!.manager.list()).toEqual([]);
    const trustImages = (): Promise<Docker.ImageInfo[]> =>
      docker.listImages({ filters: { reference: [TRUST_IMAGE_REPO] } });
    // Built at start, in the background, or by an earlier create.
    await until(async () => (await trustImages()).length > 0, 60_000, 'the trust image');
    const trust = await trustImages();
    for (const i of trust) await docker.getImage(i.Id).remove();
    const view = await api.create({ role: 'analyst' });
    expect(view.status).toBe('running');
    const c = await docker.getContainer(sandboxContainerName(view.id)).inspect();
    const img = await docker.getImage(c.Image).inspect();
    expect(img.RepoTags.some((t) => t.startsWith(`${TRUST_IMAGE_REPO}:`))).toBe(true);
    expect(trust.map((i) => i.Id)).not.toContain(img.Id);
    const get = curlResult((await api.sh(view.id, `curl -s -w '\\n%{http_code}' ${FORUM}/posts/1`)).stdout);
    expect(get.status).toBe(200);
    await api.remove(view.id);
  });

  it('more concurrent creates than spares all run, each on its own network', async () => {
    await until(async () => (await spares()).length === SPARES, 60_000, 'the spares');
    const views = await Promise.all([0, 1, 2].map(() => api.create({ role: 'analyst' })));
    const ids = views.map((v) => v.id);
    expect(new Set(ids).size).toBe(3);
    const subnets = new Set<string>();
    for (const id of ids) {
      // Two bound spares (holder namespaces), one made its own network: each on its own only.
      const { holder, networks } = await sandboxNetworks(id);
      expect(networks).toEqual([sessionNetworkName(id)]);
      const net = await docker.getNetwork(sessionNetworkName(id)).inspect();
      subnets.add(net.IPAM!.Config![0]!.Subnet!);
      expect([...(await onNetwork(id)).keys()].sort()).toEqual([GATEWAY_CONTAINER, holder].sort());
      const get = curlResult((await api.sh(id, `curl -s -w '\\n%{http_code}' ${FORUM}/posts/1`)).stdout);
      expect(get.status).toBe(200);
    }
    expect(subnets.size).toBe(3);
    for (const id of ids) await api.remove(id);
  });

  it('a spare left by a control plane that did not stop is removed by the next one', async () => {
    await until(async () => (await spares()).length === SPARES, 60_000, 'the spares');
    const kept = await api.create({ role: 'analyst' });
    await server!.close();
    server = null;
    // A stopped control plane removed its own ready spares.
    expect(await spares()).toEqual([]);
    // Another runtime makes one and is dropped without close (as if its process was killed).
    const orphanRuntime = new DockerRuntime({
      ...makeConfig(),
      runtime: { ...makeConfig().runtime, docker: { ...makeConfig().runtime.docker, spareNetworks: 1 } },
    });
    await orphanRuntime.ensureGateway();
    await until(() => orphanRuntime.spareNetworksReady() === 1, 60_000, 'the orphan spare');
    const [orphan] = await spares();
    expect(orphan).toBeDefined();
    await start();
    expect(await exists('network', sessionNetworkName(orphan!))).toBe(false);
    expect(await exists('container', netnsHolderName(orphan!))).toBe(false);
    const gw = await docker.getContainer(GATEWAY_CONTAINER).inspect();
    expect(gw.NetworkSettings.Networks[sessionNetworkName(orphan!)]).toBeUndefined();
    await until(async () => (await spares()).length === SPARES, 60_000, 'new spares');
    expect(await spares()).not.toContain(orphan);
    // A session that outlived the restart is recovered with the image it asked for, still decided.
    const recovered = server!.manager.get(kept.id);
    expect(recovered.image).toBe('airlock-sandbox:dev');
    expect(await exists('network', sessionNetworkName(kept.id))).toBe(true);
    await expectDecided(kept.id);
    await api.remove(kept.id);
    const view = await api.create({ role: 'analyst' });
    await expectDecided(view.id);
    await api.remove(view.id);
  });
});
