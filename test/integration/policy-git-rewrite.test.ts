/**
 * Policy source faults mid-run (issue 15 section 1): the Git history rewritten under a running
 * GitPolicySource (a force-push: the ref moves to a commit that does not descend from the one in
 * force), on a real local repository (git CLI, file:// URL). The ref's commit is what is enforced,
 * whatever its ancestry, when it is valid; a rewrite to a broken commit keeps the last good policy
 * and says why (lastError, what GET /v1/policy and airlock_policy_load_error report); a rewrite
 * back to a good commit recovers. (A corrupt commit and a remote that is down mid-run are in
 * policy-git.test.ts.)
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { GitPolicySource } from '../../src/policy/git-source.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';

const run = promisify(execFile);
let root: string;
let repo: string;

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

async function commit(files: Record<string, string>): Promise<string> {
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(repo, name), text);
  await git('add', '--all');
  await git('commit', '--quiet', '-m', 'policy change');
  return git('rev-parse', 'HEAD');
}

const csv = (p: string) => `p, r, a.test, ${p}, GET, allow\n`;
const allowed = (src: GitPolicySource, p: string) =>
  src.current()?.decide({ role: 'r', host: 'a.test', path: p, method: 'GET' }).allowed ?? false;

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'airlock-git-rewrite-'));
  repo = path.join(root, 'repo');
  await mkdir(repo);
  await git('init', '--quiet', '--initial-branch=main');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

it('history rewritten under a running source: valid rewrite enforced, broken rewrite keeps the last good', async () => {
  const a = await commit({ 'model.conf': CANONICAL_MODEL, 'policy.csv': csv('/a') });
  const b = await commit({ 'policy.csv': csv('/b') });
  const quiet = { info() {}, warn() {}, error() {} };
  const src = await GitPolicySource.open({
    url: `file://${repo}`,
    cacheDir: path.join(root, 'cache.git'),
    logger: quiet,
    pollIntervalMs: 100,
  });
  try {
    expect(src.commit()).toBe(b);

    // Rewrite: drop b, put a broken commit in its place (not a descendant of b).
    await git('reset', '--quiet', '--hard', a);
    const broken = await commit({ 'policy.csv': 'p, r, a.test, /c, GET, permit\n' });
    await until('the rewritten, broken commit to be reported', () => src.lastError() !== null);
    expect(src.lastError()).toMatch(
      new RegExp(`^commit ${broken.slice(0, 12)}: policy\\.csv:1: unknown effect`),
    );
    expect(src.commit()).toBe(b); // last known good, though it is no longer in the history
    expect(allowed(src, '/b')).toBe(true);

    // Rewrite again to a good commit: enforced, the error gone.
    await git('reset', '--quiet', '--hard', a);
    const good = await commit({ 'policy.csv': csv('/d') });
    await until('the rewritten good commit', () => src.commit() === good);
    expect(src.lastError()).toBeNull();
    expect(allowed(src, '/d')).toBe(true);
    expect(allowed(src, '/b')).toBe(false);

    // Rewritten back to an older commit (a rollback by force-push): the ref's commit is enforced.
    await git('reset', '--quiet', '--hard', a);
    await until('the rollback to the first commit', () => src.commit() === a);
    expect(allowed(src, '/a')).toBe(true);
  } finally {
    await src.close();
  }
});
