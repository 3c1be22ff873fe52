/**
 * Learning a policy on real Docker and real upstreams (issue 17; docs/policy.md "Learning a policy").
 *
 * An agent script in a sandbox, under a fresh role `learner` that has no rule (modes.yaml puts it in
 * complain mode, which also makes it a known role), reads json-server (plain HTTP), reads etcd with
 * range requests (its JSON gateway: POST /v3/kv/range) and clones a repository from git
 * http-backend behind nginx over HTTPS (the gateway intercepts the tunnel). Each round: the calls the
 * policy denies are recorded, `airlock policy suggest` (the real CLI) proposes lines from the
 * session's audit, the patch and the generated tests go into the policy directory `airlock serve`
 * watches; until a round has nothing left to suggest. Then the role is enforced (taken out of
 * modes.yaml): every exercised call is allowed, the mutations never exercised (json-server DELETE,
 * etcd kv/put) are denied and the upstreams unchanged, and `airlock policy test` passes.
 *
 * Complain mode itself: a GET the rules deny reaches json-server and is audited `would_deny`; a
 * POST, and a GET carrying a method override to DELETE, are refused and json-server is unchanged.
 */
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { parseConfig } from '../../src/config/load.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { airlock } from '../helpers/cli.js';
import { TestApi, curlResult } from '../helpers/api-client.js';
import { networkGateway, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';
import { startTlsUpstreams, type TlsUpstreams } from '../helpers/tls-upstream.js';
import { startEtcd, startJsonServer, type Etcd, type JsonServer } from '../helpers/upstreams.js';
import { watchedLogger } from '../helpers/log-watch.js';

const EGRESS_SUBNET = '10.214.0.0/24';
const TOKEN = 'e2e-token-0123456789abcdef';
const PORTS = { secure: 8443, expired: 8444, wrongName: 8445 };
const FORUM = 'http://forum.test:3000';
const CONFIG = 'http://config.test:2379';
const REPO = `https://secure.test:${PORTS.secure}/git/repo.git`;
/** base64 of `app/feature-flags`, the key the etcd helper writes. */
const FLAGS_KEY = 'YXBwL2ZlYXR1cmUtZmxhZ3M=';

/**
 * The agent: prints `NAME STATUS` per call (`clone ok|failed`), so a round's outcome is data. The
 * clone comes first; `/comments/1` is the last call (the audit is read once it is there).
 */
const AGENT = [
  `rm -rf /tmp/clone; if git clone -q ${REPO} /tmp/clone 2>/dev/null && grep -q runbook /tmp/clone/README; then echo "clone ok"; else echo "clone failed"; fi`,
  `code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }`,
  `echo "range $(code -X POST -H 'content-type: application/json' -d '{"key":"${FLAGS_KEY}"}' ${CONFIG}/v3/kv/range)"`,
  `echo "posts $(code ${FORUM}/posts)"`,
  `echo "post1 $(code ${FORUM}/posts/1)"`,
  `echo "comment1 $(code ${FORUM}/comments/1)"`,
].join('\n');

let dir: string;
let policyDir: string;
let auditFile: string;
let server: RunningServer;
let api: TestApi;
let forum: JsonServer;
let etcd: Etcd;
let up: TlsUpstreams;
const logLines: { msg?: string; complain?: string[] }[] = [];

function writeModes(roles: string[]): void {
  writeFileSync(path.join(policyDir, 'modes.yaml'), `version: 1\ncomplain: [${roles.join(', ')}]\n`);
}

/** Runs the agent in a new session of `role`; its results and its audit once the last call is in. */
async function runAgent(role: string): Promise<{
  id: string;
  results: Record<string, string>;
  events: AuditEvent[];
}> {
  const id = (await api.create({ role })).id;
  const out = await api.sh(id, AGENT, 120);
  const results = Object.fromEntries(
    out.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(' ') as [string, string]),
  );
  const events = await api.auditUntil(
    id,
    (e) => e.some((x) => x.path === '/comments/1') && e.some((x) => x.method === 'CONNECT'),
    15_000,
  );
  return { id, results, events };
}

/** Waits until the gateway container decides with policy `version` (its own watcher reloads the dir). */
async function gatewayEnforces(version: string): Promise<void> {
  const probe = (await api.create({ role: 'watcher' })).id;
  const deadline = Date.now() + 30_000;
  for (;;) {
    await api.sh(probe, `curl -s -o /dev/null ${FORUM}/posts/1`);
    const last = (await api.audit(probe)).at(-1);
    if (last?.policyVersion === version) break;
    if (Date.now() > deadline) throw new Error(`gateway still on ${last?.policyVersion}, want ${version}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  await api.remove(probe);
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-learning-'));
  policyDir = path.join(dir, 'policies');
  mkdirSync(path.join(policyDir, 'tests'), { recursive: true });
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  // `learner` has no rule at all; `watcher` (complain mode too) one rule elsewhere.
  writeFileSync(path.join(policyDir, 'policy.csv'), 'p, watcher, forum.test:3000, /profile, GET, allow\n');
  writeModes(['learner', 'watcher']);
  const upstreamCa = path.join(dir, 'upstream-ca.pem');
  writeFileSync(upstreamCa, '');
  const cfgRaw = {
    api: { listen: '127.0.0.1:0', tokens: [{ name: 'e2e', token: TOKEN }] },
    gateway: {
      hostAliases: {
        'forum.test': 'host-gateway',
        'config.test': 'host-gateway',
        'secure.test': 'host-gateway',
      },
      allowPrivateCidrs: [EGRESS_SUBNET],
      tls: { upstreamCaFile: upstreamCa },
    },
    policy: { dir: policyDir },
    runtime: { docker: { egressSubnet: EGRESS_SUBNET } },
    stateDir: path.join(dir, 'state'),
  };
  // Start once to create the egress network (the upstreams bind its host address), then again with
  // the upstream CA in place.
  const quiet = watchedLogger();
  server = await startServer(parseConfig(cfgRaw, dir), quiet);
  const hostGateway = await networkGateway('airlock-egress');
  forum = await startJsonServer(hostGateway, 3000);
  etcd = await startEtcd(hostGateway, 2379);
  up = await startTlsUpstreams(hostGateway, forum.url, PORTS);
  writeFileSync(upstreamCa, up.caPem);
  await server.close();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(line));
      done();
    },
  });
  const cfg = parseConfig(cfgRaw, dir);
  auditFile = cfg.audit.file;
  server = await startServer(cfg, pino({ level: 'warn' }, sink));
  api = new TestApi(server.url, TOKEN);
}, 240_000);

afterAll(async () => {
  await server?.close();
  await removeAirlockObjects();
  await up?.stop();
  await etcd?.stop();
  await forum?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('complain mode on a real upstream', () => {
  it('warns at start, shows the modes, forwards a denied GET as would_deny, refuses mutations', async () => {
    const warned = logLines.filter((l) => /complain mode/.test(l.msg ?? ''));
    expect(warned.length).toBeGreaterThanOrEqual(1);
    expect(warned.at(-1)?.complain).toEqual(['learner', 'watcher']);
    const status = (await (await api.raw('GET', '/v1/policy')).json()) as { modes: Record<string, string> };
    expect(status.modes).toEqual({ learner: 'complain', watcher: 'complain' });

    const s = (await api.create({ role: 'watcher' })).id;
    const get = curlResult((await api.sh(s, `curl -s -w '\\n%{http_code}' ${FORUM}/posts/1`)).stdout);
    expect(get.status).toBe(200);
    expect(JSON.parse(get.body)).toMatchObject({ id: 1 }); // json-server answered
    const post = curlResult(
      (
        await api.sh(
          s,
          `curl -s -w '\\n%{http_code}' -X POST -H 'content-type: application/json' -d '{"title":"x"}' ${FORUM}/posts`,
        )
      ).stdout,
    );
    expect(post.status).toBe(403);
    expect(JSON.parse(post.body)).toMatchObject({ error: 'egress_denied' });
    // A GET the upstream may execute as DELETE (method override) is not a safe call.
    const override = curlResult(
      (await api.sh(s, `curl -s -w '\\n%{http_code}' -H 'X-HTTP-Method-Override: DELETE' ${FORUM}/posts/1`))
        .stdout,
    );
    expect(override.status).not.toBe(200);
    const events = await api.auditUntil(s, (e) => e.length >= 3);
    expect(events.map((e) => [e.method, e.path, e.decision, e.reason, e.status])).toEqual([
      ['GET', '/posts/1', 'would_deny', 'no_match', 200],
      ['POST', '/posts', 'deny', 'no_match', 403],
      ['GET', '/posts/1', 'deny', events[2]!.reason, override.status],
    ]);
    expect(events[0]!.rule).toBeNull();
    expect(forum.db().posts.map((p) => p.id)).toEqual([1]); // nothing created, nothing deleted
    await api.remove(s);
  });
});

describe('learning a policy with airlock policy suggest', () => {
  it('rounds of run → suggest → apply until nothing is left; then enforced, only what was exercised passes', async () => {
    const rounds: { results: Record<string, string>; lines: string[] }[] = [];
    for (let round = 1; round <= 4; round++) {
      const { id, results, events } = await runAgent('learner');
      expect(events.every((e) => e.role === 'learner')).toBe(true);
      const r = await airlock([
        'policy',
        'suggest',
        policyDir,
        '--audit',
        auditFile,
        '--role',
        'learner',
        '--session',
        id,
        '--json',
      ]);
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout) as {
        lines: { text: string }[];
        addition: string;
        tests: string;
        proposedVersion: string;
      };
      rounds.push({ results, lines: j.lines.map((l) => l.text) });
      await api.remove(id);
      if (j.lines.length === 0) break;
      // Apply the patch and the generated tests, as a reviewer merging the proposal would.
      appendFileSync(path.join(policyDir, 'policy.csv'), j.addition);
      writeFileSync(path.join(policyDir, 'tests', `learned-${round}.yaml`), j.tests);
      await expect.poll(() => server.policy.current()?.version, { timeout: 15_000 }).toBe(j.proposedVersion);
      expect(server.policy.lastError()).toBeNull();
      await gatewayEnforces(j.proposedVersion);
    }
    console.log(JSON.stringify(rounds, null, 2));
    // The first round, with no rule: denials recorded; nothing succeeded but complain-mode reads.
    expect(rounds[0]!.results.clone).toBe('failed');
    expect(rounds[0]!.results.range).toBe('403'); // POST: complain mode never forwards it
    expect(rounds[0]!.lines.length).toBeGreaterThan(0);
    // Learning converged: the last round had nothing to suggest and everything worked.
    const last = rounds.at(-1)!;
    expect(last.lines).toEqual([]);
    expect(last.results).toEqual({ clone: 'ok', range: '200', posts: '200', post1: '200', comment1: '200' });
    const learned = rounds.flatMap((r) => r.lines);
    // Mutation methods are learned exactly as observed, never generalised.
    expect(learned).toContain('p, learner, config.test:2379, /v3/kv/range, POST, allow');
    expect(learned).toContain(
      `p, learner, secure.test:${PORTS.secure}, /git/repo.git/git-upload-pack, POST, allow`,
    );
    expect(
      learned.filter((l) => /, (POST|PUT|PATCH|DELETE), allow$/.test(l) && /[*:]/.test(l.split(', ')[3]!)),
    ).toEqual([]);

    // Enforce the learned policy: learner leaves complain mode.
    writeModes(['watcher']);
    await expect
      .poll(() => server.policy.current()?.complainRoles?.has('learner'), { timeout: 15_000 })
      .toBe(false);
    const enforced = server.policy.current()!.version;
    await gatewayEnforces(enforced);
    const warnedAgain = logLines.filter((l) => /complain mode/.test(l.msg ?? '')).at(-1);
    expect(warnedAgain?.complain).toEqual(['watcher']); // still warned while watcher complains

    const run = await runAgent('learner');
    expect(run.results).toEqual({ clone: 'ok', range: '200', posts: '200', post1: '200', comment1: '200' });
    // (git's first CONNECT carries no proxy credentials and is answered 407, audited bad_credential.)
    const inside = run.events.filter((e) => e.method !== 'CONNECT');
    expect(inside.length).toBeGreaterThanOrEqual(6);
    for (const e of inside)
      expect([e.method, e.path, e.decision, e.policyVersion]).toEqual([e.method, e.path, 'allow', enforced]);

    // Never exercised, never learned: still denied, the upstreams unchanged.
    const del = curlResult(
      (await api.sh(run.id, `curl -s -w '\\n%{http_code}' -X DELETE ${FORUM}/posts/1`)).stdout,
    );
    expect(del.status).toBe(403);
    const put = curlResult(
      (
        await api.sh(
          run.id,
          `curl -s -w '\\n%{http_code}' -X POST -H 'content-type: application/json' -d '{"key":"${FLAGS_KEY}","value":"eyJiZXRhIjp0cnVlfQ=="}' ${CONFIG}/v3/kv/put`,
        )
      ).stdout,
    );
    expect(put.status).toBe(403);
    const denied = await api.auditUntil(run.id, (e) => e.some((x) => x.path === '/v3/kv/put'));
    expect(
      denied
        .filter((e) => e.decision === 'deny' && e.method !== 'CONNECT')
        .map((e) => [e.method, e.path, e.reason]),
    ).toEqual([
      ['DELETE', '/posts/1', 'no_match'],
      ['POST', '/v3/kv/put', 'no_match'],
    ]);
    expect(forum.db().posts.map((p) => p.id)).toEqual([1]);
    expect((await etcd.etcdctl('get', 'app/feature-flags', '--print-value-only')).trim()).toBe(
      '{"beta":false}',
    );
    expect(await up.head()).toMatch(/^[0-9a-f]{40}$/);

    // The generated tests pass, through the real CLI, as CI would run them.
    const test = await airlock(['policy', 'test', policyDir]);
    expect(test.code, test.stdout + test.stderr).toBe(0);
    expect(test.stdout).toMatch(/^ok: .*: \d+ cases in \d+ files? passed/);
    const check = await airlock(['policy', 'check', policyDir]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(readFileSync(path.join(policyDir, 'policy.csv'), 'utf8')).toMatch(
      /# --- suggested by `airlock policy suggest` from recorded calls: review each line ---/,
    );
  });
});
