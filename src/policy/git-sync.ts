/**
 * `airlock policy sync`: keeps a checkout of a Git branch or tag published under a directory, with
 * the layout of git-sync v4 (the chart's `policies.git.syncer: airlock`, docs/kubernetes.md
 * "Policies from Git"), so the policy directory `ROOT/LINK[/path]` of the gateways and controller
 * works unchanged whichever syncer runs.
 *
 * Layout under ROOT:
 * - `.airlock-sync.git`: a bare cache repository, fetched with `git fetch --depth=N --force URL
 *   +REF:refs/airlock/sync` (the `git` CLI through `execFile`, never a shell);
 * - `.worktrees/<sha>`: the files of one commit, written under a temporary name and renamed when
 *   complete (never seen half-written);
 * - `LINK` → `.worktrees/<sha>`: a relative symlink, replaced atomically (a new symlink under a
 *   temporary name, then rename(2) over LINK).
 *
 * The previous worktree is kept (a reader may still hold it open); older ones are removed. A failed
 * fetch (remote down, ref missing, refused credentials, a broken cache) keeps the published checkout
 * and is logged with git's reason; the loop never exits on it (`oneTime` instead fails, so an init
 * container is retried).
 *
 * Credentials: `GITSYNC_USERNAME` / `GITSYNC_PASSWORD` from the environment become an HTTP Basic
 * `Authorization` header passed to git through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`
 * (never in argv or in the URL). `GIT_SSL_CAINFO` (a CA bundle file) is honoured by git itself.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readlink, rename, rm, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import { GitCommandError, gitEnv, runGit } from './git-source.js';
import type { PolicyLogger } from './last-good.js';

/** Options of {@link GitSync}. */
export interface GitSyncOptions {
  /** Remote URL (https://, http://, file://, ssh). Credentials must not be in it (see GITSYNC_*). */
  repo: string;
  /** Branch, tag or full commit id to follow. @default "main" */
  ref?: string;
  /** Directory the checkout is published under (created if missing). */
  root: string;
  /** Name of the symlink under `root` pointing at the published worktree. @default "current" */
  link?: string;
  /** Fetch depth (commits). @default 1 */
  depth?: number;
  /** The git executable. @default "git" */
  gitBinary?: string;
  /** Time limit of each git command, in ms. @default 120000 */
  commandTimeoutMs?: number;
  /** Environment to read GITSYNC_USERNAME / GITSYNC_PASSWORD from. @default process.env */
  env?: NodeJS.ProcessEnv;
  logger?: PolicyLogger;
}

/** Outcome of one {@link GitSync.syncOnce}. */
export interface SyncResult {
  /** Full id of the commit published at `root/link` after this attempt. */
  commit: string;
  /** A new commit was published by this attempt. */
  changed: boolean;
}

/** The private ref the fetched commit is stored under in the cache repository. */
const SYNC_REF = 'refs/airlock/sync';
/** Cache repository, worktrees directory (git-sync v4 uses `.worktrees` too). */
const CACHE_DIR = '.airlock-sync.git';
export const WORKTREES_DIR = '.worktrees';

/**
 * Parses a git-sync style period: `30s`, `500ms`, `2m`, or a bare number of seconds (`30`).
 * @returns milliseconds (> 0)
 * @throws Error naming the value when it is not a positive duration
 */
export function parsePeriod(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  const n = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000) : NaN;
  if (!Number.isFinite(n) || n < 1) {
    throw new Error(`period "${value}" is not a positive duration (e.g. 30s, 500ms, 2m or 30)`);
  }
  return Math.round(n);
}

/**
 * The git config entries passed through the environment: an HTTP Basic header when
 * GITSYNC_USERNAME or GITSYNC_PASSWORD is set (appended after any GIT_CONFIG_COUNT entries already
 * present).
 */
export function credentialEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const user = env.GITSYNC_USERNAME ?? '';
  const pass = env.GITSYNC_PASSWORD ?? '';
  if (user === '' && pass === '') return {};
  const base = Number(env.GIT_CONFIG_COUNT ?? '0');
  const i = Number.isInteger(base) && base >= 0 ? base : 0;
  return {
    GIT_CONFIG_COUNT: String(i + 1),
    [`GIT_CONFIG_KEY_${i}`]: 'http.extraHeader',
    [`GIT_CONFIG_VALUE_${i}`]: `Authorization: Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`,
  };
}

/** One published checkout of a remote ref, updated by {@link GitSync.syncOnce}. */
export class GitSync {
  readonly repo: string;
  readonly ref: string;
  readonly root: string;
  readonly link: string;
  readonly #depth: number;
  readonly #git: string;
  readonly #timeout: number;
  readonly #env: NodeJS.ProcessEnv;
  readonly #logger: PolicyLogger | undefined;
  readonly #cache: string;
  #cacheReady = false;

  /**
   * @throws Error when `link` is not a plain file name, `depth` not a positive integer, or `ref`
   *   empty, starting with "-" or holding ":" or whitespace
   */
  constructor(opts: GitSyncOptions) {
    this.repo = opts.repo;
    this.ref = opts.ref ?? 'main';
    this.root = path.resolve(opts.root);
    this.link = opts.link ?? 'current';
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(this.link)) {
      throw new Error(`link "${this.link}" must be a plain file name (letters, digits, . _ -)`);
    }
    this.#depth = opts.depth ?? 1;
    if (!Number.isInteger(this.#depth) || this.#depth < 1) {
      throw new Error(`depth ${String(opts.depth)} must be a positive integer`);
    }
    if (this.ref === '' || this.ref.startsWith('-') || /[:\s]/.test(this.ref)) {
      throw new Error(`ref "${this.ref}" must be a branch, tag or commit (no leading "-", no ":" or spaces)`);
    }
    this.#git = opts.gitBinary ?? 'git';
    this.#timeout = opts.commandTimeoutMs ?? 120_000;
    this.#env = { ...gitEnv(), ...credentialEnv(opts.env ?? process.env) };
    this.#logger = opts.logger;
    this.#cache = path.join(this.root, CACHE_DIR);
  }

  /** The commit `root/link` points at now, or null when nothing is published. */
  async published(): Promise<string | null> {
    const target = await readlink(path.join(this.root, this.link)).catch(() => null);
    const sha = target === null ? null : path.basename(target);
    return sha !== null && /^[0-9a-f]{40,64}$/.test(sha) ? sha : null;
  }

  /**
   * Fetches the ref and, when its commit is not the published one, materialises and publishes it.
   * Removes worktrees other than the published and the previous one.
   * @throws GitCommandError (git's reason) when fetching or reading the commit fails; the published
   *   checkout is then unchanged
   */
  async syncOnce(): Promise<SyncResult> {
    await mkdir(path.join(this.root, WORKTREES_DIR), { recursive: true });
    const sha = await this.#fetch();
    const before = await this.published();
    if (before === sha) {
      await this.#prune(sha, null);
      return { commit: sha, changed: false };
    }
    const dest = path.join(this.root, WORKTREES_DIR, sha);
    const exists = await stat(dest).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!exists) await this.#materialise(sha, dest);
    const tmpLink = path.join(this.root, `.${this.link}.${randomBytes(6).toString('hex')}.tmp`);
    await symlink(path.join(WORKTREES_DIR, sha), tmpLink);
    try {
      await rename(tmpLink, path.join(this.root, this.link));
    } catch (err) {
      await rm(tmpLink, { force: true });
      throw err;
    }
    await this.#prune(sha, before);
    return { commit: sha, changed: true };
  }

  /** Fetches into the cache (recreated once if unusable); resolves to the fetched commit id. */
  async #fetch(): Promise<string> {
    const fetchRef = () =>
      this.#run([
        'fetch',
        '--quiet',
        '--no-tags',
        `--depth=${this.#depth}`,
        '--force',
        '--',
        this.repo,
        `+${this.ref}:${SYNC_REF}`,
      ]);
    if (!this.#cacheReady) {
      await this.#ensureCache();
      await fetchRef();
    } else {
      await fetchRef().catch(async (err: unknown) => {
        // The cache may have been damaged or removed: recreate it and retry once.
        this.#cacheReady = false;
        await rm(this.#cache, { recursive: true, force: true });
        await this.#ensureCache();
        await fetchRef().catch(() => {
          throw err;
        });
      });
    }
    this.#cacheReady = true;
    const sha = (await this.#run(['rev-parse', '--verify', '--quiet', `${SYNC_REF}^{commit}`]))
      .toString()
      .trim();
    if (!/^[0-9a-f]{40,64}$/.test(sha)) throw new GitCommandError(`unexpected commit id "${sha}"`);
    return sha;
  }

  async #ensureCache(): Promise<void> {
    const ok = await this.#run(['rev-parse', '--is-bare-repository']).then(
      (out) => out.toString().trim() === 'true',
      () => false,
    );
    if (ok) return;
    await rm(this.#cache, { recursive: true, force: true });
    await mkdir(this.#cache, { recursive: true, mode: 0o700 });
    await this.#run(['init', '--bare', '--quiet', this.#cache], this.root);
  }

  /** Writes the commit's files into `dest` through a temporary directory renamed when complete. */
  async #materialise(sha: string, dest: string): Promise<void> {
    const tmp = path.join(
      this.root,
      WORKTREES_DIR,
      `.tmp-${sha.slice(0, 12)}-${randomBytes(6).toString('hex')}`,
    );
    const index = `${tmp}.index`;
    await mkdir(tmp, { mode: 0o755 });
    try {
      const env = { GIT_INDEX_FILE: index };
      await this.#run(['--work-tree', tmp, 'read-tree', sha], this.#cache, env);
      await this.#run(['--work-tree', tmp, 'checkout-index', '--all', '--force'], tmp, env);
      await rename(tmp, dest);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    } finally {
      await rm(index, { force: true });
    }
  }

  /**
   * Removes every worktree and leftover temporary except `keep` and the previous worktree
   * (`previous`, or when unknown, e.g. after a restart, the most recently modified other one).
   */
  async #prune(keep: string, previous: string | null): Promise<void> {
    const dir = path.join(this.root, WORKTREES_DIR);
    const kept = new Set([keep, previous ?? (await this.#newestOther(dir, keep))]);
    for (const name of await readdir(dir)) {
      if (kept.has(name)) continue;
      await rm(path.join(dir, name), { recursive: true, force: true }).catch((err: unknown) =>
        this.#logger?.warn({ dir: path.join(dir, name), err: String(err) }, 'cannot remove old worktree'),
      );
    }
  }

  /** The most recently modified worktree other than `keep` (the previous one after a restart). */
  async #newestOther(dir: string, keep: string): Promise<string | null> {
    let best: string | null = null;
    let bestAt = -1;
    for (const name of await readdir(dir)) {
      if (name === keep || name.startsWith('.')) continue;
      const at = await stat(path.join(dir, name)).then(
        (s) => s.mtimeMs,
        () => -1,
      );
      if (at > bestAt) [best, bestAt] = [name, at];
    }
    return best;
  }

  /** Runs git against the cache repository. @throws GitCommandError with git's stderr (first lines). */
  #run(args: string[], cwd = this.#cache, extraEnv: NodeJS.ProcessEnv = {}): Promise<Buffer> {
    return runGit(this.#git, args, {
      gitDir: this.#cache,
      cwd,
      timeoutMs: this.#timeout,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...this.#env, ...extraEnv },
    });
  }
}

/** Options of {@link runGitSync}: {@link GitSyncOptions} plus the loop's. */
export interface RunGitSyncOptions extends GitSyncOptions {
  /** Time between attempts, in ms. */
  periodMs: number;
  /** One attempt, then return (exit code 0 on success, 1 on failure). */
  oneTime?: boolean;
  /** Stops the loop (after the running attempt). */
  signal?: AbortSignal;
}

/**
 * Runs {@link GitSync.syncOnce} every `periodMs` until `signal` aborts; failures are logged
 * (`policy sync failed; keeping the published checkout`, with `reason`) and never end the loop.
 * @returns the process exit code: 0, or 1 when `oneTime` and the attempt failed
 */
export async function runGitSync(opts: RunGitSyncOptions): Promise<number> {
  const sync = new GitSync(opts);
  const log = opts.logger;
  const ctx = { repo: sync.repo, ref: sync.ref, root: sync.root, link: sync.link };
  let lastFailure: string | null = null;
  for (;;) {
    try {
      const r = await sync.syncOnce();
      if (r.changed) log?.info({ ...ctx, commit: r.commit }, 'policy sync published a new commit');
      else if (lastFailure !== null) log?.info({ ...ctx, commit: r.commit }, 'policy sync recovered');
      lastFailure = null;
      if (opts.oneTime) return 0;
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      const published = await sync.published();
      // Logged once per distinct reason, so a long outage is not one line per period.
      if (reason !== lastFailure) {
        log?.error({ ...ctx, reason, published }, 'policy sync failed; keeping the published checkout');
      }
      lastFailure = reason;
      if (opts.oneTime) return 1;
    }
    if (opts.signal?.aborted) return 0;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, opts.periodMs);
      opts.signal?.addEventListener(
        'abort',
        () => {
          clearTimeout(t);
          resolve();
        },
        { once: true },
      );
    });
    if (opts.signal?.aborted) return 0;
  }
}
