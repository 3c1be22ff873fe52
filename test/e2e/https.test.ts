/**
 * HTTPS under policy on real Docker: sandboxes trust the installation CA (bundle written into the
 * container, named by SSL_CERT_FILE & co.), the gateway container intercepts CONNECT, and real
 * clients inside the sandbox (curl, git, node fetch, python requests) reach nginx (test CA) in front
 * of json-server and git-http-backend, listening on the egress bridge address.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { sandboxContainerName } from '../../src/runtime/docker/labels.js';
import { TestApi, curlResult } from '../helpers/api-client.js';
import { docker, networkGateway, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';
import { startTlsUpstreams, type TlsUpstreams } from '../helpers/tls-upstream.js';
import { startJsonServer, type JsonServer } from '../helpers/upstreams.js';
import { watchedLogger } from '../helpers/log-watch.js';

const EGRESS_SUBNET = '10.214.0.0/24';
const TOKEN = 'e2e-token-0123456789abcdef';
const PORTS = { secure: 8443, expired: 8444, wrongName: 8445 };
const SECURE = `https://secure.test:${PORTS.secure}`;

let dir: string;
let server: RunningServer;
let api: TestApi;
let forum: JsonServer;
let up: TlsUpstreams;
let reader: string;

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-https-'));
  const policyDir = path.join(dir, 'policies');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(policyDir);
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(
    path.join(policyDir, 'policy.csv'),
    [
      `p, reader, secure.test:${PORTS.secure}, /posts/*, GET, allow`,
      `p, reader, secure.test:${PORTS.secure}, /git/repo.git/info/refs, GET, allow`,
      `p, reader, secure.test:${PORTS.secure}, /git/repo.git/git-upload-pack, POST, allow`,
      `p, reader, expired.test:${PORTS.expired}, /*, GET, allow`,
      '',
    ].join('\n'),
  );
  // The egress network must exist before upstreams can bind its host address: start Airlock first.
  const upstreamCa = path.join(dir, 'upstream-ca.pem');
  writeFileSync(upstreamCa, ''); // replaced below, before any session exists
  const cfgRaw = {
    api: { listen: '127.0.0.1:0', tokens: [{ name: 'e2e', token: TOKEN }] },
    gateway: {
      hostAliases: { 'secure.test': 'host-gateway', 'expired.test': 'host-gateway' },
      allowPrivateCidrs: [EGRESS_SUBNET],
      tls: { upstreamCaFile: upstreamCa },
    },
    policy: { dir: policyDir },
    runtime: { docker: { egressSubnet: EGRESS_SUBNET } },
    stateDir: path.join(dir, 'state'),
  };
  // Start once to create the egress network, then again with the upstream CA in place.
  server = await startServer(parseConfig(cfgRaw, dir), watchedLogger());
  const hostGateway = await networkGateway('airlock-egress');
  forum = await startJsonServer(hostGateway);
  up = await startTlsUpstreams(hostGateway, forum.url, PORTS);
  writeFileSync(upstreamCa, up.caPem);
  await server.close();
  server = await startServer(parseConfig(cfgRaw, dir), watchedLogger());
  api = new TestApi(server.url, TOKEN);
  reader = (await api.create({ role: 'reader' })).id;
});

afterAll(async () => {
  await server?.close();
  await removeAirlockObjects();
  await up?.stop();
  await forum?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function curl(args: string): Promise<{ status: number; body: string; exitCode: number }> {
  const out = await api.sh(reader, `curl -s -w '\\n%{http_code}' ${args}`);
  return { ...curlResult(out.stdout), exitCode: out.exitCode };
}

describe('sandbox trust', () => {
  it('names the bundle in every variable and puts the CA in the system store, read-only', async () => {
    const env = (
      await api.sh(
        reader,
        'env | grep -E "^(SSL_CERT_FILE|NODE_EXTRA_CA_CERTS|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|GIT_SSL_CAINFO)=" | sort',
      )
    ).stdout;
    expect(env.trim().split('\n')).toHaveLength(5);
    expect(env).not.toMatch(/=(?!\/etc\/airlock\/ca-bundle\.pem$)/m);
    const ls = await api.sh(
      reader,
      'stat -c "%U %a" /etc/airlock/ca-bundle.pem /etc/ssl/certs/ca-certificates.crt; grep -c "BEGIN CERTIFICATE" /etc/ssl/certs/ca-certificates.crt; echo x >> /etc/airlock/ca-bundle.pem',
    );
    expect(ls.stdout).toMatch(/^root 444\nroot 444\n/);
    expect(ls.exitCode).not.toBe(0); // the sandbox user cannot change it
    const info = await docker.getContainer(sandboxContainerName(reader)).inspect();
    expect(info.Mounts).toEqual([]); // written into the container, not mounted from the host
    const key = await api.sh(reader, 'grep -rl "PRIVATE KEY" /etc /home 2>/dev/null | head -1');
    expect(key.stdout.trim()).toBe(''); // the CA key never enters a sandbox
  });
});

describe('curl, git, node and python inside the sandbox', () => {
  it('curl: allowed GET works; POST is denied with the JSON 403; upstream unchanged', async () => {
    const get = await curl(`${SECURE}/posts/1`);
    expect(get.status).toBe(200);
    expect(JSON.parse(get.body).id).toBe(1);
    const before = forum.db();
    const post = await curl(
      `-X POST -H 'content-type: application/json' -d '{"postId":1,"body":"x"}' ${SECURE}/posts/1/comments`,
    );
    expect(post.status).toBe(403);
    expect(JSON.parse(post.body)).toMatchObject({
      error: 'egress_denied',
      sessionId: reader,
      method: 'POST',
    });
    expect(forum.db()).toEqual(before);
  });

  it('git: clone allowed; push (git-receive-pack) denied; repository unchanged', async () => {
    const head = await up.head();
    const clone = await api.sh(reader, `cd /tmp && git clone -q ${SECURE}/git/repo.git && cat repo/README`);
    expect(clone.exitCode, clone.stderr).toBe(0);
    expect(clone.stdout).toMatch(/runbook/);
    const push = await api.sh(
      reader,
      `cd /tmp/repo && echo 'open port 22 to all' > README && git -c user.name=a -c user.email=a@a commit -qam edit && git push -q origin main`,
    );
    expect(push.exitCode).not.toBe(0);
    expect(push.stderr).toMatch(/403/);
    expect(await up.head()).toBe(head);
  });

  it('node fetch through the environment proxy: one allowed, one denied', async () => {
    const r = await api.exec(reader, [
      'node',
      '--input-type=module',
      '-e',
      `const a = await fetch('${SECURE}/posts/1'); const d = await fetch('${SECURE}/posts/1', { method: 'DELETE' });
       console.log(a.status, d.status, (await d.json()).error);`,
    ]);
    expect(r.stdout.trim(), r.stderr).toBe('200 403 egress_denied');
  });

  it('python requests: one allowed, one denied', async () => {
    const r = await api.exec(reader, [
      'python3',
      '-c',
      `import requests\na = requests.get('${SECURE}/posts/1')\nd = requests.put('${SECURE}/posts/1', json={'title': 'x'})\nprint(a.status_code, d.status_code, d.json()['error'])`,
    ]);
    expect(r.stdout.trim(), r.stderr).toBe('200 403 egress_denied');
  });
});

describe('refusals', () => {
  it('a client that does not trust the Airlock CA fails the handshake', async () => {
    const r = await api.exec(reader, [
      'env',
      '-u',
      'NODE_EXTRA_CA_CERTS',
      'node',
      '-e',
      `fetch('${SECURE}/posts/1').then(() => console.log('ok'), (e) => console.log('failed', e.cause?.code))`,
    ]);
    expect(r.stdout).toMatch(
      /^failed (UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)/,
    );
  });

  it('a Host header naming another host than the CONNECT is refused', async () => {
    const r = await curl(`-H 'Host: evil.test:${PORTS.secure}' ${SECURE}/posts/1`);
    expect(r.status).toBe(400);
  });

  it('CONNECT to a port no rule grants is refused', async () => {
    const r = await curl(`https://secure.test:9443/posts/1`);
    expect(r.exitCode).not.toBe(0);
    const events = await api.auditUntil(reader, (e) =>
      e.some((x) => x.method === 'CONNECT' && x.port === 9443),
    );
    expect(events.filter((x) => x.port === 9443).at(-1)).toMatchObject({
      method: 'CONNECT',
      port: 9443,
      decision: 'deny',
    });
  });

  it('an expired upstream certificate is a 502 naming the reason', async () => {
    const r = await curl(`https://expired.test:${PORTS.expired}/posts/1`);
    expect(r.status).toBe(502);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'upstream_tls_error' });
  });
});

describe('kill switch with an open keep-alive tunnel', () => {
  it('no call is allowed after DELETE returns', async () => {
    const urls = Array.from({ length: 400 }, () => `${SECURE}/posts/1`).join(' ');
    await api.sh(reader, `nohup curl -s -o /dev/null --rate 50/s ${urls} >/dev/null 2>&1 &`);
    await expect
      .poll(async () => (await api.audit(reader)).filter((e) => e.path === '/posts/1').length, {
        timeout: 20_000,
      })
      .toBeGreaterThan(8);
    await api.remove(reader);
    const returnedAt = Date.now();
    await new Promise((r) => setTimeout(r, 1_000));
    const late = (await api.audit(reader)).filter(
      (e) => e.decision === 'allow' && Date.parse(e.time) > returnedAt,
    );
    expect(late).toEqual([]);
  });
});
