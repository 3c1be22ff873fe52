/**
 * GitOps on real Docker: `policy.git` (a file:// repository) drives the gateway container. Each
 * enforced commit is materialised for the gateway; its audit events carry the commit SHA; a new
 * commit is enforced within seconds without restarts; a broken commit keeps the last good policy.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { TestApi, curlResult } from '../helpers/api-client.js';
import { networkGateway, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';
import { startJsonServer, type JsonServer } from '../helpers/upstreams.js';
import { expectErrorLog, watchedLogger } from '../helpers/log-watch.js';

const run = promisify(execFile);
const EGRESS_SUBNET = '10.214.0.0/24';
const TOKEN = 'e2e-token-0123456789abcdef';

let dir: string;
let repo: string;
let server: RunningServer;
let api: TestApi;
let forum: JsonServer;

const git = (...args: string[]) =>
  run('git', ['-C', repo, '-c', 'user.name=ops', '-c', 'user.email=ops@example.test', ...args]);

async function commitPolicy(csv: string, message: string): Promise<string> {
  writeFileSync(path.join(repo, 'policy.csv'), csv);
  await git('add', '-A');
  await git('commit', '-q', '-m', message);
  return (await git('rev-parse', 'HEAD')).stdout.trim();
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-git-'));
  repo = path.join(dir, 'policy-repo');
  mkdirSync(repo);
  await run('git', ['init', '-q', '-b', 'main', repo]);
  writeFileSync(path.join(repo, 'model.conf'), CANONICAL_MODEL);
  await commitPolicy('p, analyst, forum.test:3000, /posts/*, GET, allow\n', 'analyst reads posts');
  const cfg = parseConfig(
    {
      api: { listen: '127.0.0.1:0', tokens: [{ name: 'e2e', token: TOKEN }] },
      gateway: { hostAliases: { 'forum.test': 'host-gateway' }, allowPrivateCidrs: [EGRESS_SUBNET] },
      policy: { git: { url: `file://${repo}`, ref: 'main', pollIntervalMs: 1000 } },
      runtime: { docker: { egressSubnet: EGRESS_SUBNET } },
      stateDir: path.join(dir, 'state'),
    },
    dir,
  );
  server = await startServer(cfg, watchedLogger());
  api = new TestApi(server.url, TOKEN);
  forum = await startJsonServer(await networkGateway('airlock-egress'), 3000);
});

afterAll(async () => {
  await server?.close();
  await removeAirlockObjects();
  await forum?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('policy.git drives the gateway container', () => {
  it('enforces the commit, audits its SHA, follows a new commit within seconds, keeps the last good one', async () => {
    const first = (await git('rev-parse', 'HEAD')).stdout.trim();
    expect(server.policy.current()?.version).toBe(first.slice(0, 12));
    const s = (await api.create({ role: 'analyst' })).id;
    const get = async (p: string) =>
      curlResult((await api.sh(s, `curl -s -w '\\n%{http_code}' http://forum.test:3000${p}`)).stdout);

    expect((await get('/posts/1')).status).toBe(200);
    expect((await get('/comments')).status).toBe(403);
    const events = await api.auditUntil(s, (e) => e.at(-1)?.path === '/comments');
    expect(events.at(-1)).toMatchObject({
      path: '/comments',
      decision: 'deny',
      policyVersion: first.slice(0, 12),
    });
    expect(events.at(-2)).toMatchObject({
      path: '/posts/1',
      decision: 'allow',
      policyVersion: first.slice(0, 12),
    });

    const committedAt = Date.now();
    const second = await commitPolicy(
      'p, analyst, forum.test:3000, /posts/*, GET, allow\np, analyst, forum.test:3000, /comments, GET, allow\n',
      'analyst reads comments',
    );
    await expect
      .poll(async () => (await get('/comments')).status, { timeout: 15_000, interval: 250 })
      .toBe(200);
    const enforcedMs = Date.now() - committedAt;
    console.log(`policy.git commit -> enforced by the gateway container: ${enforcedMs} ms (poll 1000 ms)`);
    expect(enforcedMs).toBeLessThan(5_000);
    const afterCommit = await api.auditUntil(
      s,
      (e) => e.at(-1)?.decision === 'allow' && e.at(-1)?.path === '/comments',
    );
    expect(afterCommit.at(-1)).toMatchObject({
      path: '/comments',
      decision: 'allow',
      policyVersion: second.slice(0, 12),
    });

    expectErrorLog(
      /^policy commit rejected; keeping the last good policy$/,
      'this test commits a broken policy',
    );
    await commitPolicy('p, analyst, forum.test:3000, /posts/*, GET, allow, extra-field\n', 'broken');
    await expect.poll(() => server.policy.lastError(), { timeout: 10_000 }).toBeTruthy();
    expect(server.policy.current()?.version).toBe(second.slice(0, 12));
    expect((await get('/comments')).status).toBe(200); // last good policy still enforced
  });
});
