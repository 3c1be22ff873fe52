/**
 * `airlock policy sync` (src/policy/git-sync.ts) against real git repositories on disk (file://, no
 * network): the git-sync v4 layout, atomic swaps, the previous worktree kept and older ones removed,
 * failures that keep the published checkout, rewritten history, credentials kept out of argv; and a
 * PolicyStore reading `ROOT/current` follows every published commit without ever reading a tree
 * mixed from two commits.
 */
import { execFile } from 'node:child_process';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  credentialEnv,
  GitSync,
  parsePeriod,
  runGitSync,
  WORKTREES_DIR,
} from '../../../src/policy/git-sync.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import { PolicyStore, worktreeVersion, type ReloadResult } from '../../../src/policy/store.js';

const run = promisify(execFile);
const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 't',
  GIT_AUTHOR_EMAIL: 't@t',
  GIT_COMMITTER_NAME: 't',
  GIT_COMMITTER_EMAIL: 't@t',
};

let tmp: string;
let work: string;
let remote: string;
let root: string;

async function git(cwd: string, ...args: string[]): Promise<string> {
  return (await run('git', args, { cwd, env: GIT_ENV })).stdout.trim();
}

/** Commits policy files allowing GET /v<n> (with a test case that checks it) and pushes main. */
async function commitPolicy(n: number, opts: { amend?: boolean; subdir?: string } = {}): Promise<string> {
  const d = path.join(work, opts.subdir ?? '.');
  await mkdir(path.join(d, 'tests'), { recursive: true });
  await writeFile(path.join(d, 'model.conf'), CANONICAL_MODEL);
  await writeFile(path.join(d, 'policy.csv'), `p, r, a.test, /v${n}, GET, allow\n`);
  await writeFile(
    path.join(d, 'tests', 'cases.yaml'),
    `cases:\n  - role: r\n    method: GET\n    url: https://a.test/v${n}\n    expect: allow\n` +
      `  - role: r\n    method: GET\n    url: https://a.test/v${n - 1}\n    expect: deny\n`,
  );
  await git(work, 'add', '-A');
  await git(work, 'commit', '-q', ...(opts.amend ? ['--amend'] : []), '-m', `policy ${n}`);
  await git(work, 'push', '-q', '--force', remote, 'main');
  return git(work, 'rev-parse', 'HEAD');
}

async function worktrees(): Promise<string[]> {
  return (await readdir(path.join(root, WORKTREES_DIR))).sort();
}

beforeEach(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'airlock-gitsync-'));
  work = path.join(tmp, 'work');
  remote = path.join(tmp, 'remote.git');
  root = path.join(tmp, 'root');
  await run('git', ['init', '-q', '--bare', '-b', 'main', remote]);
  await run('git', ['init', '-q', '-b', 'main', work]);
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('GitSync', () => {
  it('publishes ROOT/current -> .worktrees/<sha> (relative), keeps the previous worktree, removes older ones', async () => {
    const sync = new GitSync({ repo: `file://${remote}`, root });
    const c1 = await commitPolicy(1);
    expect(await sync.syncOnce()).toEqual({ commit: c1, changed: true });
    expect(await readlink(path.join(root, 'current'))).toBe(path.join(WORKTREES_DIR, c1));
    expect(await readFile(path.join(root, 'current', 'policy.csv'), 'utf8')).toContain('/v1,');
    expect(await sync.syncOnce()).toEqual({ commit: c1, changed: false });

    const c2 = await commitPolicy(2);
    expect(await sync.syncOnce()).toEqual({ commit: c2, changed: true });
    expect(await worktrees()).toEqual([c1, c2].sort());
    const c3 = await commitPolicy(3);
    await sync.syncOnce();
    expect(await worktrees()).toEqual([c2, c3].sort());
    expect(await readFile(path.join(root, 'current', 'policy.csv'), 'utf8')).toContain('/v3,');
    // Nothing but the cache, the worktrees and the link under ROOT (no temporaries left).
    expect((await readdir(root)).sort()).toEqual(['.airlock-sync.git', WORKTREES_DIR, 'current']);
    // A restarted syncer (no memory of the previous commit) keeps the newest other worktree.
    await new GitSync({ repo: `file://${remote}`, root }).syncOnce();
    expect(await worktrees()).toEqual([c2, c3].sort());
  });

  it('a failed fetch (remote gone, ref missing) throws with git’s reason and keeps the published checkout', async () => {
    const c1 = await commitPolicy(1);
    await new GitSync({ repo: `file://${remote}`, root }).syncOnce();
    const missingRef = new GitSync({ repo: `file://${remote}`, ref: 'no-such-branch', root });
    await expect(missingRef.syncOnce()).rejects.toThrow(/no-such-branch/);
    expect(await readlink(path.join(root, 'current'))).toBe(path.join(WORKTREES_DIR, c1));
    const sync = new GitSync({ repo: `file://${remote}`, root });
    await sync.syncOnce();
    await rm(remote, { recursive: true, force: true });
    await expect(sync.syncOnce()).rejects.toThrow(/does not appear to be a git repository|not found/);
    expect(await readlink(path.join(root, 'current'))).toBe(path.join(WORKTREES_DIR, c1));
    expect(await readFile(path.join(root, 'current', 'policy.csv'), 'utf8')).toContain('/v1,');
  });

  it('rewritten history (a force-push) publishes the new commit; a damaged cache is recreated', async () => {
    const sync = new GitSync({ repo: `file://${remote}`, root });
    await commitPolicy(1);
    await sync.syncOnce();
    const amended = await commitPolicy(2, { amend: true });
    expect(await sync.syncOnce()).toEqual({ commit: amended, changed: true });
    await writeFile(path.join(root, '.airlock-sync.git', 'HEAD'), 'garbage');
    const c3 = await commitPolicy(3);
    expect(await sync.syncOnce()).toEqual({ commit: c3, changed: true });
  });

  it('credentials reach git through GIT_CONFIG_* (an Authorization header), never argv or the URL', async () => {
    await commitPolicy(1);
    const log = path.join(tmp, 'git-calls.log');
    const wrapper = path.join(tmp, 'git-wrapper.sh');
    await writeFile(
      wrapper,
      `#!/bin/sh\n{ echo "ARGV $*"; env | grep '^GIT_CONFIG_' | sort; } >> '${log}'\nexec git "$@"\n`,
    );
    await chmod(wrapper, 0o755);
    const env = { ...process.env, GITSYNC_USERNAME: 'bot', GITSYNC_PASSWORD: 's3cret-pw' };
    await new GitSync({ repo: `file://${remote}`, root, gitBinary: wrapper, env }).syncOnce();
    const calls = await readFile(log, 'utf8');
    const header = `Authorization: Basic ${Buffer.from('bot:s3cret-pw').toString('base64')}`;
    expect(calls).toContain(`GIT_CONFIG_VALUE_0=${header}`);
    expect(calls).toContain('GIT_CONFIG_KEY_0=http.extraHeader');
    for (const line of calls.split('\n').filter((l) => l.startsWith('ARGV'))) {
      expect(line).not.toContain('s3cret-pw');
      expect(line).not.toContain(Buffer.from('bot:s3cret-pw').toString('base64'));
    }
    // Entries already configured through the environment are kept (appended after them).
    expect(credentialEnv({ GIT_CONFIG_COUNT: '2', GITSYNC_USERNAME: 'u' })).toMatchObject({
      GIT_CONFIG_COUNT: '3',
      GIT_CONFIG_KEY_2: 'http.extraHeader',
    });
    expect(credentialEnv({})).toEqual({});
  });

  it('a tag or a full commit id as the ref publishes that commit', async () => {
    const c1 = await commitPolicy(1);
    await git(work, 'tag', 'v1');
    await git(work, 'push', '-q', remote, 'v1');
    await commitPolicy(2);
    expect(await new GitSync({ repo: `file://${remote}`, ref: 'v1', root }).syncOnce()).toEqual({
      commit: c1,
      changed: true,
    });
    const pinned = new GitSync({ repo: `file://${remote}`, ref: c1, root: path.join(tmp, 'root2') });
    expect((await pinned.syncOnce()).commit).toBe(c1);
  });

  it('bad input is refused with a message naming it', () => {
    expect(() => new GitSync({ repo: 'x', root, link: '../escape' })).toThrow(/link "..\/escape"/);
    expect(() => new GitSync({ repo: 'x', root, depth: 0 })).toThrow(/depth 0/);
    expect(() => new GitSync({ repo: 'x', root, ref: '--upload-pack=x' })).toThrow(/ref "--upload-pack=x"/);
    expect(() => new GitSync({ repo: 'x', root, ref: 'main:refs/heads/x' })).toThrow(/ref "main:refs/);
    expect(parsePeriod('30s')).toBe(30_000);
    expect(parsePeriod('30')).toBe(30_000);
    expect(parsePeriod('500ms')).toBe(500);
    expect(parsePeriod('2m')).toBe(120_000);
    for (const bad of ['0s', '-1', 'soon', '']) expect(() => parsePeriod(bad)).toThrow(/period/);
  });

  it('runGitSync --one-time: 0 after publishing, 1 when the fetch fails (an init container retries)', async () => {
    await commitPolicy(1);
    const errors: Array<{ reason?: string }> = [];
    const logger = { info: () => {}, warn: () => {}, error: (o: object) => errors.push(o) };
    expect(await runGitSync({ repo: `file://${remote}`, root, periodMs: 1000, oneTime: true, logger })).toBe(
      0,
    );
    expect(
      await runGitSync({ repo: `file://${tmp}/none.git`, root, periodMs: 1000, oneTime: true, logger }),
    ).toBe(1);
    expect(errors[0]?.reason).toMatch(/none\.git/);
  });

  it('the loop survives a remote that goes away and picks up the next commit when it is back', async () => {
    await commitPolicy(1);
    const stop = new AbortController();
    const errors: object[] = [];
    const logger = { info: () => {}, warn: () => {}, error: (o: object) => errors.push(o) };
    const loop = runGitSync({ repo: `file://${remote}`, root, periodMs: 20, signal: stop.signal, logger });
    const moved = path.join(tmp, 'away.git');
    await until(
      'first publish',
      async () => (await lstat(path.join(root, 'current')).catch(() => null)) !== null,
    );
    await run('mv', [remote, moved]);
    await until('a logged failure', () => Promise.resolve(errors.length > 0));
    await run('mv', [moved, remote]);
    const c2 = await commitPolicy(2);
    await until('the new commit published', async () =>
      (await readlink(path.join(root, 'current')).catch(() => '')).endsWith(c2),
    );
    stop.abort();
    expect(await loop).toBe(0);
    expect(errors).toHaveLength(1); // one line per distinct reason, not one per period
  });
});

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('PolicyStore on a published checkout (ROOT/current[/path])', () => {
  it.each([
    ['the top of the repository', undefined],
    ['a directory inside it', 'policies'],
  ])(
    'follows every commit (%s): version = commit[:12], every attempt a whole tree of one commit',
    async (_, subdir) => {
      const sync = new GitSync({ repo: `file://${remote}`, root });
      await commitPolicy(0, { subdir });
      await sync.syncOnce();
      const attempts: ReloadResult[] = [];
      const dir = path.join(root, 'current', ...(subdir ? [subdir] : []));
      const store = await PolicyStore.open(dir, {
        pollIntervalMs: 200,
        onReload: (r) => attempts.push(r),
      });
      try {
        // One commit at a time: each is enforced (watcher on ROOT sees the swap).
        for (let n = 1; n <= 12; n++) {
          const sha = await commitPolicy(n, { subdir });
          await sync.syncOnce();
          await until(`commit ${n} in force`, () =>
            Promise.resolve(store.current()?.version === sha.slice(0, 12)),
          );
          const allowed = (p: string) =>
            store.current()!.decide({ role: 'r', host: 'a.test', path: p, method: 'GET' }).allowed;
          expect([allowed(`/v${n}`), allowed(`/v${n - 1}`)]).toEqual([true, false]);
        }
        // A burst of swaps with no pause: the store reads while links move and worktrees are pruned.
        let last = '';
        for (let n = 13; n <= 24; n++) {
          last = await commitPolicy(n, { subdir });
          await sync.syncOnce();
          void store.reload();
        }
        await until('the last commit in force', () =>
          Promise.resolve(store.current()?.version === last.slice(0, 12)),
        );
        // Had a read mixed two commits, that commit's tests/cases.yaml would have failed it.
        expect(attempts.filter((a) => a.error !== null)).toEqual([]);
        expect(store.lastError()).toBeNull();
      } finally {
        await store.close();
      }
    },
  );

  it('worktreeVersion names the commit of .worktrees/<sha>[/sub] and nothing else', () => {
    const sha = 'a'.repeat(40);
    expect(worktreeVersion(`/r/.worktrees/${sha}`)).toBe('a'.repeat(12));
    expect(worktreeVersion(`/r/.worktrees/${sha}/policies`)).toBe('a'.repeat(12));
    expect(worktreeVersion(`/r/.worktrees/.tmp-${sha}`)).toBeNull();
    expect(worktreeVersion('/etc/airlock/policies')).toBeNull();
  });
});
