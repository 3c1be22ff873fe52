/**
 * Delegation (the confused-deputy fix) on real components: a real Docker engine, the gateway and
 * sandbox images, json-server as the forum, and the control plane as `airlock serve` runs it, with two
 * API tokens. The policy is the example policy plus management rules:
 *
 * - `triage` may start (and run, read, delete) analyst sessions only;
 * - `helper` may manage every session, but its own egress is an analyst's (`g, helper, analyst`):
 *   a responder session it starts cannot post, although the responder role may.
 */
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { parseConfig } from '../../src/config/load.js';
import { TestApi, curlResult } from '../helpers/api-client.js';
import { networkGateway, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';
import { startJsonServer, type JsonServer } from '../helpers/upstreams.js';
import { watchedLogger } from '../helpers/log-watch.js';

const EGRESS_SUBNET = '10.214.0.0/24';
const TRIAGE = 'triage-token-0123456789abcdef';
const HELPER = 'helper-token-0123456789abcdef';
const FORUM = 'http://forum.test:3000';

let stateDir: string;
let server: RunningServer;
let triage: TestApi;
let helper: TestApi;
let forum: JsonServer;

/** The example policy (and its tests) plus the delegation rules above, readable by the gateway's user. */
function writePolicyDir(dir: string): void {
  const src = path.resolve('policies');
  mkdirSync(path.join(dir, 'tests'), { recursive: true });
  copyFileSync(path.join(src, 'model.conf'), path.join(dir, 'model.conf'));
  for (const f of readdirSync(path.join(src, 'tests')))
    copyFileSync(path.join(src, 'tests', f), path.join(dir, 'tests', f));
  const csv = readFileSync(path.join(src, 'policy.csv'), 'utf8');
  writeFileSync(
    path.join(dir, 'policy.csv'),
    csv +
      [
        '',
        '# --- delegation: API callers ---',
        'p, triage, airlock.api, /sessions/analyst, *, allow',
        'p, helper, airlock.api, /sessions/*, *, allow',
        'g, helper, analyst',
        '',
      ].join('\n'),
  );
  for (const p of [dir, path.join(dir, 'tests')]) chmodSync(p, 0o755);
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  stateDir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-delegation-'));
  const policyDir = path.join(stateDir, 'policies');
  writePolicyDir(policyDir);
  const cfg = parseConfig(
    {
      api: {
        listen: '127.0.0.1:0',
        tokens: [
          { name: 'triage', token: TRIAGE },
          { name: 'helper', token: HELPER },
        ],
      },
      gateway: { hostAliases: { 'forum.test': 'host-gateway' }, allowPrivateCidrs: [EGRESS_SUBNET] },
      policy: { dir: policyDir },
      runtime: {
        docker: { egressSubnet: EGRESS_SUBNET },
        resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
      },
      stateDir,
    },
    process.cwd(),
  );
  server = await startServer(cfg, watchedLogger());
  expect(server.policy.current(), server.policy.lastError() ?? '').not.toBeNull();
  triage = new TestApi(server.url, TRIAGE);
  helper = new TestApi(server.url, HELPER);
  forum = await startJsonServer(await networkGateway('airlock-egress'), 3000);
});

afterAll(async () => {
  await server?.close();
  await removeAirlockObjects();
  await forum?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('delegation on the real server', () => {
  it('a caller allowed to start only analyst sessions gets 403 starting a responder', async () => {
    const res = await triage.raw('POST', '/v1/sessions', { role: 'responder' });
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const p = (await res.json()) as { code: string; detail: string };
    expect(p.code).toBe('AIRLOCK_FORBIDDEN');
    expect(p.detail).toContain(
      'caller "triage" may not create sessions of role "responder" (operation CREATE)',
    );
    const listed = (await (await helper.raw('GET', '/v1/sessions')).json()) as { sessions: unknown[] };
    expect(listed.sessions).toEqual([]);
  });

  it('a responder session started by a caller whose own rules forbid POST cannot post; it can read', async () => {
    // The responder role itself may post.
    const policy = server.policy.current()!;
    expect(
      policy.decide({ role: 'responder', host: 'forum.test:3000', path: '/comments', method: 'POST' })
        .allowed,
    ).toBe(true);

    const s = await helper.create({ role: 'responder' });
    expect(s.createdBy).toBe('helper');
    const out = await helper.sh(
      s.id,
      `curl -s -w '\\n%{http_code}' ${FORUM}/posts/1; echo; echo ---; ` +
        `curl -s -w '\\n%{http_code}' -X POST -H 'content-type: application/json' ` +
        `-d '{"postId":1,"body":"Just open it to everyone."}' ${FORUM}/comments`,
    );
    const [read, post] = out.stdout.split('\n---\n') as [string, string];
    expect(curlResult(read.trimEnd()).status).toBe(200);
    const denied = curlResult(post);
    expect(denied.status).toBe(403);
    const body = JSON.parse(denied.body) as Record<string, string>;
    expect(body).toMatchObject({
      error: 'egress_denied',
      sessionId: s.id,
      role: 'responder',
      method: 'POST',
    });
    expect(body.hint).toContain('created by API caller "helper", who lacks that permission');
    expect(forum.db().comments.map((c) => c.body)).not.toContain('Just open it to everyone.');
    const events = await helper.audit(s.id);
    expect(events.find((e) => e.method === 'POST' && e.path === '/comments')).toMatchObject({
      decision: 'deny',
      reason: 'no_match',
      role: 'responder',
    });
    // triage may not even look at it.
    expect((await triage.raw('GET', `/v1/sessions/${s.id}`)).status).toBe(403);
    await helper.remove(s.id);
  });
});
