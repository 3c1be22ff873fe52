/**
 * GitPolicySource on a real local repository (git CLI, file:// URL): a good commit is enforced with the
 * commit SHA as version; a broken commit keeps the last good policy and reports lastError; a fixed
 * commit recovers; fetch failures are reported and recovered from; subdir, tags and a cache reused
 * across restarts work. Measures commit → enforced time with the default 2 s poll (target < 5 s) and
 * prints it. No fixed sleeps: every wait polls a condition with a deadline.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { gitCacheDir, GitPolicySource } from '../../src/policy/git-source.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { openPolicySource } from '../../src/policy/source.js';
import { PolicyStore, type ReloadResult } from '../../src/policy/store.js';
import type { PolicyRequest } from '../../src/policy/types.js';

const run = promisify(execFile);
const quiet = { info() {}, warn() {}, error() {} };

let root: string;
let repo: string;
let sources: { close(): Promise<void> }[] = [];

async function git(...args: string[]): Promise<string> {
  const { stdout } = await run(
    'git',
    [
      '-c',
      'user.name=Policy Author',
      '-c',
      'user.email=author@example.test',
      '-c',
      'commit.gpgsign=false',
      ...args,
    ],
    { cwd: repo },
  );
  return stdout.trim();
}

/** Writes files (relative to the repo), commits them on the current branch, returns the commit SHA. */
async function commit(files: Record<string, string>, message = 'policy change'): Promise<string> {
  for (const [name, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(repo, name)), { recursive: true });
    await writeFile(path.join(repo, name), text);
  }
  await git('add', '--all');
  await git('commit', '--quiet', '--allow-empty', '-m', message);
  return git('rev-parse', 'HEAD');
}

const csv = (...paths: string[]) => paths.map((p) => `p, r, a.test, ${p}, GET, allow`).join('\n') + '\n';
const testFile = (p: string, expect: 'allow' | 'deny') =>
  `cases:\n  - role: r\n    method: GET\n    url: https://a.test${p}\n    expect: ${expect}\n`;
const req = (p: string): PolicyRequest => ({ role: 'r', host: 'a.test', path: p, method: 'GET' });

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<number> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - start;
}

async function open(
  opts: Partial<Parameters<typeof GitPolicySource.open>[0]> = {},
): Promise<GitPolicySource> {
  const src = await GitPolicySource.open({
    url: `file://${repo}`,
    cacheDir: path.join(root, 'state', 'cache.git'),
    logger: quiet,
    ...opts,
  });
  sources.push(src);
  return src;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'airlock-git-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
afterEach(async () => {
  await Promise.all(sources.map((s) => s.close()));
  sources = [];
  await rm(path.join(root, 'state'), { recursive: true, force: true });
  await rm(path.join(root, 'repo'), { recursive: true, force: true });
});

async function initRepo(): Promise<string> {
  repo = path.join(root, 'repo');
  await mkdir(repo, { recursive: true });
  await git('init', '--quiet', '--initial-branch=main');
  return commit(
    {
      'model.conf': CANONICAL_MODEL,
      'policy.csv': csv('/one'),
      'tests/basic.yaml': testFile('/one', 'allow'),
    },
    'first policy',
  );
}

describe('GitPolicySource', () => {
  it('enforces the ref’s commit, keeps the last good one on a broken commit, recovers; commit → enforced < 5 s', async () => {
    const first = await initRepo();
    const attempts: ReloadResult[] = [];
    const src = await open({ pollIntervalMs: 2000, onReload: (r) => attempts.push(r) });
    expect(src.lastError()).toBeNull();
    expect(src.current()?.version).toBe(first.slice(0, 12));
    expect(src.commit()).toBe(first);
    expect(src.current()?.decide(req('/one')).allowed).toBe(true);

    // Good commits: measure commit → enforced (the commit is complete when `git commit` returns).
    const samples: number[] = [];
    for (let i = 0; i < 3; i++) {
      const p = `/v${i}`;
      const sha = await commit({ 'policy.csv': csv(p), 'tests/basic.yaml': testFile(p, 'allow') });
      samples.push(await until(`commit ${sha}`, () => src.current()?.version === sha.slice(0, 12)));
      expect(src.current()?.decide(req(p)).allowed).toBe(true);
      expect(src.current()?.decide(req('/one')).allowed).toBe(false);
      expect(src.lastError()).toBeNull();
    }
    const sorted = [...samples].sort((a, b) => a - b);
    const summary =
      `commit → enforced with a 2000 ms poll: ${samples.map((s) => s.toFixed(0)).join(', ')} ms ` +
      `(max ${sorted[sorted.length - 1]?.toFixed(0)} ms; target < 5000 ms)`;
    // The part that is not waiting for the poll: fetch + read objects + compile + tests + swap.
    const direct = await commit({ 'policy.csv': csv('/v2', '/direct') });
    const t0 = performance.now();
    const r = await src.reload();
    const fetchLoadMs = performance.now() - t0;
    expect(r.version).toBe(direct.slice(0, 12));
    console.log(`${summary}; fetch + load + tests + swap on reload(): ${fetchLoadMs.toFixed(0)} ms`);
    for (const s of samples) expect(s).toBeLessThan(5000);
    const good = src.current()?.version;

    // A broken policy.csv: kept, reported with the commit and line.
    const broken = await commit({ 'policy.csv': 'p, r, a.test, /x, GET, permit\n' });
    await until('the broken commit to be reported', () => src.lastError() !== null);
    expect(src.lastError()).toMatch(
      new RegExp(`^commit ${broken.slice(0, 12)}: policy\\.csv:1: unknown effect "permit"`),
    );
    expect(src.current()?.version).toBe(good);
    expect(src.current()?.decide(req('/v2')).allowed).toBe(true);

    // Failing tests: kept too.
    const failing = await commit({
      'policy.csv': csv('/two'),
      'tests/basic.yaml': testFile('/one', 'allow'),
    });
    await until(
      'the failing tests to be reported',
      () => src.lastError()?.includes(failing.slice(0, 12)) ?? false,
    );
    expect(src.lastError()).toMatch(/1 of 1 policy test case failed/);
    expect(src.current()?.version).toBe(good);

    // The same broken commit is not retried by polls, but reload() retries it.
    const before = attempts.length;
    const forced = await src.reload();
    expect(forced.changed).toBe(false);
    expect(forced.error).toMatch(/policy test case failed/);
    expect(attempts.length).toBe(before + 1);

    // A fix is enforced and clears lastError.
    const fixed = await commit({ 'tests/basic.yaml': testFile('/two', 'allow') });
    await until('the fix', () => src.current()?.version === fixed.slice(0, 12));
    expect(src.lastError()).toBeNull();
    expect(src.current()?.decide(req('/two')).allowed).toBe(true);
  }, 60_000);

  it('reports fetch failures, keeps the policy, and recovers when the remote is back', async () => {
    const first = await initRepo();
    const src = await open({ pollIntervalMs: 100 });
    await rename(repo, `${repo}-away`);
    await until('a fetch error', () => src.lastError() !== null);
    expect(src.lastError()).toMatch(/^git fetch file:\/\/.* main failed: /);
    expect(src.current()?.version).toBe(first.slice(0, 12));
    await rename(`${repo}-away`, repo);
    await until('recovery', () => src.lastError() === null);
    expect(src.current()?.version).toBe(first.slice(0, 12));
  });

  it('starts fail-closed on an unusable remote or commit, and loads once it is fixed', async () => {
    repo = path.join(root, 'repo');
    const missing = await open({ url: `file://${root}/nothing-here`, pollIntervalMs: 0 });
    expect(missing.current()).toBeNull();
    expect(missing.lastError()).toMatch(/git fetch .* failed/);

    await initRepo();
    await commit({ 'model.conf': '[request_definition]\nr = sub\n' });
    const src = await open({ pollIntervalMs: 100 });
    expect(src.current()).toBeNull();
    expect(src.lastError()).toMatch(/model\.conf/);
    const fixed = await commit({ 'model.conf': CANONICAL_MODEL });
    await until('the fixed commit', () => src.current()?.version === fixed.slice(0, 12));
    expect(src.lastError()).toBeNull();
  });

  it('follows another branch or a tag, reads a subdir, and refuses symlinked files', async () => {
    await initRepo();
    await git('checkout', '--quiet', '-b', 'prod');
    const prod = await commit({
      'envs/prod/model.conf': CANONICAL_MODEL,
      'envs/prod/policy.csv': csv('/prod'),
      'envs/prod/tests/t.yaml': testFile('/prod', 'allow'),
      'envs/prod/tests/nested/ignored.yaml': 'not: [valid',
    });
    const onBranch = await open({ ref: 'prod', subdir: 'envs/prod', pollIntervalMs: 0 });
    expect(onBranch.lastError()).toBeNull();
    expect(onBranch.current()?.version).toBe(prod.slice(0, 12));
    expect(onBranch.current()?.decide(req('/prod')).allowed).toBe(true);

    await git('tag', 'v1');
    await rm(path.join(root, 'state'), { recursive: true, force: true });
    const onTag = await open({
      ref: 'v1',
      subdir: 'envs/prod',
      pollIntervalMs: 0,
      cacheDir: path.join(root, 'state', 't.git'),
    });
    expect(onTag.current()?.version).toBe(prod.slice(0, 12));

    const noDir = await open({
      ref: 'prod',
      subdir: 'envs/staging',
      pollIntervalMs: 0,
      cacheDir: path.join(root, 'state', 'n.git'),
    });
    expect(noDir.lastError()).toMatch(/directory "envs\/staging" is not in the commit/);

    // onBranch's cache directory was removed with the state dir above: it is recreated, no error.
    expect((await onBranch.reload()).error).toBeNull();

    await run('ln', ['-s', 'policy.csv', path.join(repo, 'envs/prod/linked.csv')]);
    await rm(path.join(repo, 'envs/prod/policy.csv'));
    await run('ln', ['-s', '../../other.csv', path.join(repo, 'envs/prod/policy.csv')]);
    await commit({ 'other.csv': csv('/other') });
    const r = await onBranch.reload();
    expect(r.error).toMatch(/policy\.csv: must be a regular file/);
    expect(onBranch.current()?.version).toBe(prod.slice(0, 12));
  });

  it('reuses its cache across restarts and recreates a corrupt one', async () => {
    const first = await initRepo();
    const a = await open({ pollIntervalMs: 0 });
    await a.close();
    const b = await open({ pollIntervalMs: 0 });
    expect(b.current()?.version).toBe(first.slice(0, 12));
    await b.close();
    await rm(path.join(root, 'state', 'cache.git', 'objects'), { recursive: true, force: true });
    await writeFile(path.join(root, 'state', 'cache.git', 'HEAD'), 'garbage');
    const c = await open({ pollIntervalMs: 0 });
    expect(c.lastError()).toBeNull();
    expect(c.current()?.version).toBe(first.slice(0, 12));
  });
});

describe('openPolicySource', () => {
  it('opens a directory store for policy.dir and a git source for policy.git', async () => {
    const first = await initRepo();
    const dirCfg = parseConfig({ policy: { dir: repo } }, root);
    const store = await openPolicySource(dirCfg.policy, path.join(root, 'state'), {
      logger: quiet,
      pollIntervalMs: 0,
      watch: false,
    });
    sources.push(store);
    expect(store).toBeInstanceOf(PolicyStore);
    expect(store.current()?.decide(req('/one')).allowed).toBe(true);

    const gitCfg = parseConfig({ policy: { git: { url: `file://${repo}`, pollIntervalMs: 100 } } }, root);
    const stateDir = path.join(root, 'state');
    const src = await openPolicySource(gitCfg.policy, stateDir, { logger: quiet });
    sources.push(src);
    expect(src).toBeInstanceOf(GitPolicySource);
    expect((src as GitPolicySource).cacheDir).toBe(gitCacheDir(stateDir, `file://${repo}`));
    expect(src.current()?.version).toBe(first.slice(0, 12));
    expect((await src.reload()).version).toBe(first.slice(0, 12));
  });
});
