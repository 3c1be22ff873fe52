/**
 * The policy in force, followed from a Git repository (`policy.git`, docs/policy.md "Git source").
 *
 * A bare cache repository under the state directory is fetched every `pollIntervalMs` (`git fetch
 * --depth=1 URL +REF:refs/airlock/policy`, through the `git` CLI with `execFile`, never a shell). When
 * the fetched commit differs from the last one tried, that commit's files are read straight from git
 * objects (no checkout, so no half-written working tree is ever read) and go through the same steps
 * as a directory reload: validate → compile → run `tests/*.yaml` → swap one reference. The snapshot's
 * version is the commit SHA's first 12 hex digits. Any failure keeps the last good snapshot and is
 * reported by `lastError()`; a commit that failed is not retried until the ref moves (or `reload()`).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { PolicyError } from '../errors.js';
import type { CompiledPolicy } from './compile.js';
import { POLICY_FILE } from './csv.js';
import { errorMessage, LastKnownGood, type PolicyListeners, type ReloadResult } from './last-good.js';
import { MODEL_FILE } from './model.js';
import { OPTIONAL_POLICY_FILES, type OptionalPolicyTexts } from './optional-files.js';
import { TESTS_DIR, type PolicyTestFile } from './policy-tests.js';
import type { PolicySource } from './types.js';

/** Options of {@link GitPolicySource.open}. */
export interface GitPolicySourceOptions extends PolicyListeners {
  /** Remote to follow (any git URL, including `file://`; validated by the config schema). */
  url: string;
  /** Branch or tag. @default "main" */
  ref?: string;
  /** Directory inside the repository with model.conf, policy.csv and tests/. @default "." */
  subdir?: string;
  /** Fetch interval in ms (0: only `reload()`). @default 2000 */
  pollIntervalMs?: number;
  /** Directory for the bare cache repository (created if missing; reused across restarts). */
  cacheDir: string;
  /** The git executable. @default "git" */
  gitBinary?: string;
  /** Time limit of each git command, in ms. @default 60000 */
  commandTimeoutMs?: number;
}

/** The private ref the fetched commit is stored under in the cache repository. */
const LOCAL_REF = 'refs/airlock/policy';
/** Largest file read from a commit (model.conf, policy.csv, test files), in bytes. */
const MAX_FILE_BYTES = 64 * 1024 * 1024;

/** A git command failed; `message` has git's own stderr (first lines). */
export class GitCommandError extends Error {
  override name = 'GitCommandError';
}

/** Variables that would point git at another repository than the cache. */
const REPO_VARS = [
  'GIT_DIR',
  'GIT_WORK_TREE',
  'GIT_INDEX_FILE',
  'GIT_OBJECT_DIRECTORY',
  'GIT_ALTERNATE_OBJECT_DIRECTORIES',
  'GIT_NAMESPACE',
  'GIT_COMMON_DIR',
];

/**
 * The environment git runs with: never prompts (no terminal, ssh in batch mode), C locale, and no
 * variable pointing git at another repository than the one it is given.
 */
export function gitEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const v of REPO_VARS) delete env[v];
  env.GIT_TERMINAL_PROMPT = '0';
  env.GIT_SSH_COMMAND = process.env.GIT_SSH_COMMAND ?? 'ssh -o BatchMode=yes';
  env.LC_ALL = 'C';
  return env;
}

/** How {@link runGit} runs one git command. */
export interface RunGitOptions {
  /** The repository (`--git-dir`); unset: none given (e.g. `init`). */
  gitDir?: string;
  cwd: string;
  /** Time limit, ms. */
  timeoutMs: number;
  /** Largest stdout accepted, bytes. */
  maxBuffer: number;
  env: NodeJS.ProcessEnv;
}

/**
 * Runs `git ARGS` through `execFile` (never a shell) with repository hooks off and the `ext::`
 * transport refused; resolves to stdout. Shared by the Git policy source and `airlock policy sync`.
 * @throws GitCommandError with the first three non-empty lines of git's stderr, or the time limit.
 */
export function runGit(git: string, args: string[], o: RunGitOptions): Promise<Buffer> {
  const full = ['-c', 'protocol.ext.allow=never', '-c', 'core.hooksPath=/dev/null'];
  if (o.gitDir !== undefined) full.push('--git-dir', o.gitDir);
  full.push(...args);
  return new Promise((resolve, reject) => {
    execFile(
      git,
      full,
      { cwd: o.cwd, encoding: 'buffer', maxBuffer: o.maxBuffer, timeout: o.timeoutMs, env: o.env },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const detail = stderr
          .toString('utf8')
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean)
          .slice(0, 3)
          .join(' | ');
        const why = (err as NodeJS.ErrnoException & { killed?: boolean }).killed
          ? `timed out after ${o.timeoutMs} ms`
          : detail || err.message;
        reject(new GitCommandError(why));
      },
    );
  });
}

/**
 * The cache directory for a remote: `<stateDir>/policy-git/<first 16 hex of sha256(url)>.git`, so
 * two configured remotes never share a cache.
 */
export function gitCacheDir(stateDir: string, url: string): string {
  return path.join(
    stateDir,
    'policy-git',
    `${createHash('sha256').update(url).digest('hex').slice(0, 16)}.git`,
  );
}

/**
 * Follows a branch or tag of a Git repository; implements the same read side as `PolicyStore`
 * (`current()`, `lastError()`, `reload()`, `close()`).
 */
export class GitPolicySource implements PolicySource {
  readonly url: string;
  readonly ref: string;
  readonly subdir: string;
  readonly cacheDir: string;
  readonly #held: LastKnownGood;
  #commit: string | null = null;
  #fetchError: string | null = null;
  #lastTried: string | null = null;
  #pollPending = false;
  /** The cache repository was usable at the last fetch (skips re-checking it on every poll). */
  #cacheReady = false;
  #poll: NodeJS.Timeout | null = null;
  #closed = false;
  readonly #git: string;
  readonly #timeout: number;

  private constructor(opts: GitPolicySourceOptions) {
    this.url = opts.url;
    this.ref = opts.ref ?? 'main';
    this.subdir = (opts.subdir ?? '.').replace(/\/+$/, '') || '.';
    this.cacheDir = path.resolve(opts.cacheDir);
    this.#git = opts.gitBinary ?? 'git';
    this.#timeout = opts.commandTimeoutMs ?? 60_000;
    this.#held = new LastKnownGood(opts);
  }

  /**
   * Creates (or reuses) the cache repository, fetches and loads the ref's commit, and starts polling.
   * Never throws for repository or policy problems: when the first load fails `current()` is null
   * (every call is denied) and `lastError()` says why; polling continues.
   */
  static async open(opts: GitPolicySourceOptions): Promise<GitPolicySource> {
    const src = new GitPolicySource(opts);
    await src.reload();
    const every = opts.pollIntervalMs ?? 2000;
    if (every > 0) {
      src.#poll = setInterval(() => {
        if (src.#pollPending) return; // the previous poll is still fetching
        src.#pollPending = true;
        void src.#enqueue(false).finally(() => {
          src.#pollPending = false;
        });
      }, every);
      src.#poll.unref();
    }
    return src;
  }

  /** The snapshot in force, or null when no valid commit has been loaded (fail closed). */
  current(): CompiledPolicy | null {
    return this.#held.current();
  }

  /** The full SHA of the commit in force, or null. */
  commit(): string | null {
    return this.#commit;
  }

  /**
   * Why the source is unhealthy: the last fetch error if fetching fails, else the error of the newest
   * commit if it could not be used; null when the newest commit is in force.
   */
  lastError(): string | null {
    return this.#fetchError ?? this.#held.lastError();
  }

  /** Fetches now and loads the ref's commit even if it was tried before. Attempts never overlap. */
  reload(): Promise<ReloadResult> {
    return this.#enqueue(true);
  }

  /** Stops polling and waits for a running attempt. `current()` keeps its last value. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#poll) clearInterval(this.#poll);
    this.#poll = null;
    await this.#held.idle();
  }

  #enqueue(force: boolean): Promise<ReloadResult> {
    return this.#held.serialize(() =>
      this.#closed && !force ? Promise.resolve(this.#result(false)) : this.#attempt(force),
    );
  }

  #result(changed: boolean): ReloadResult {
    return { changed, version: this.current()?.version ?? null, error: this.lastError() };
  }

  async #attempt(force: boolean): Promise<ReloadResult> {
    let sha: string;
    try {
      const fetchRef = () =>
        this.#run([
          'fetch',
          '--quiet',
          '--no-tags',
          '--depth=1',
          '--force',
          '--',
          this.url,
          `+${this.ref}:${LOCAL_REF}`,
        ]);
      if (!this.#cacheReady) {
        await this.#ensureCache();
        await fetchRef();
      } else {
        // The cache was fine last time; if it has been removed or damaged since, recreate and retry once.
        await fetchRef().catch(async () => {
          this.#cacheReady = false;
          await this.#ensureCache();
          await fetchRef();
        });
      }
      this.#cacheReady = true;
      sha = (await this.#run(['rev-parse', '--verify', '--quiet', `${LOCAL_REF}^{commit}`]))
        .toString()
        .trim();
      if (!/^[0-9a-f]{40,64}$/.test(sha)) throw new GitCommandError(`unexpected commit id "${sha}"`);
      this.#fetchError = null;
    } catch (err) {
      this.#cacheReady = false; // check the cache repository first next time
      const message = `git fetch ${this.url} ${this.ref} failed: ${(err as Error).message}`;
      const first = this.#fetchError === null;
      this.#fetchError = message;
      if (first) {
        this.#held.logFailure(
          message,
          { url: this.url, ref: this.ref },
          'policy fetch failed; keeping the last good policy',
        );
      }
      return this.#held.report(this.#result(false));
    }
    if (!force && sha === this.#lastTried) return this.#result(false);
    this.#lastTried = sha;
    const context = { url: this.url, ref: this.ref, commit: sha };
    try {
      const { modelText, policyText, files, tests } = await this.#readCommit(sha);
      const changed = this.#held.accept(
        { modelText, policyText, files, tests, version: sha.slice(0, 12) },
        context,
        () => {
          this.#commit = sha;
        },
      );
      return this.#held.report(this.#result(changed));
    } catch (err) {
      this.#held.reject(
        `commit ${sha.slice(0, 12)}: ${errorMessage(err)}`,
        context,
        'policy commit rejected; keeping the last good policy',
      );
      return this.#held.report(this.#result(false));
    }
  }

  /** Creates the bare cache repository, or recreates it when it is not a usable repository. */
  async #ensureCache(): Promise<void> {
    const exists = await stat(path.join(this.cacheDir, 'HEAD')).then(
      () => true,
      () => false,
    );
    if (exists) {
      const ok = await this.#run(['rev-parse', '--is-bare-repository']).then(
        (out) => out.toString().trim() === 'true',
        () => false,
      );
      if (ok) return;
      this.#held.logger?.warn(
        { cacheDir: this.cacheDir },
        'policy git cache is not a bare repository; recreating it',
      );
      await rm(this.cacheDir, { recursive: true, force: true });
    }
    await mkdir(this.cacheDir, { recursive: true, mode: 0o700 });
    await this.#run(['init', '--bare', '--quiet', this.cacheDir], path.dirname(this.cacheDir));
  }

  /**
   * Reads model.conf, policy.csv, the optional files present (OPTIONAL_POLICY_FILES) and
   * tests/*.y(a)ml of `subdir` at `sha` from git objects.
   */
  async #readCommit(sha: string): Promise<{
    modelText: string;
    policyText: string;
    files: OptionalPolicyTexts;
    tests: PolicyTestFile[];
  }> {
    const tree = this.subdir === '.' ? `${sha}^{tree}` : `${sha}:${this.subdir}`;
    let listing: Buffer;
    try {
      listing = await this.#run(['ls-tree', '-r', '-z', '--full-tree', tree]);
    } catch {
      throw new PolicyError(`directory "${this.subdir}" is not in the commit`, this.subdir);
    }
    const entries = new Map<string, { mode: string; type: string; object: string }>();
    for (const rec of listing.toString('utf8').split('\0')) {
      if (rec === '') continue;
      const tab = rec.indexOf('\t');
      const [mode = '', type = '', object = ''] = rec.slice(0, tab).split(' ');
      entries.set(rec.slice(tab + 1), { mode, type, object });
    }
    const blob = async (name: string): Promise<string> => {
      const e = entries.get(name);
      const where = this.subdir === '.' ? '' : ` (in ${this.subdir}/)`;
      if (!e) throw new PolicyError(`file is missing${where}`, name);
      if (e.type !== 'blob' || e.mode === '120000') {
        throw new PolicyError(
          `must be a regular file in the commit (symlinks are not followed)${where}`,
          name,
        );
      }
      return (await this.#run(['cat-file', 'blob', e.object])).toString('utf8');
    };
    const testNames = [...entries.keys()]
      .filter((n) => {
        if (!n.startsWith(`${TESTS_DIR}/`)) return false;
        const base = n.slice(TESTS_DIR.length + 1);
        return !base.includes('/') && !base.startsWith('.') && /\.ya?ml$/.test(base);
      })
      .sort();
    const optionalNames = OPTIONAL_POLICY_FILES.filter((n) => entries.has(n));
    const [modelText, policyText, ...texts] = await Promise.all([
      blob(MODEL_FILE),
      blob(POLICY_FILE),
      ...optionalNames.map((n) => blob(n)),
      ...testNames.map((n) => blob(n)),
    ]);
    const files: Partial<Record<(typeof OPTIONAL_POLICY_FILES)[number], string>> = {};
    optionalNames.forEach((n, i) => (files[n] = texts[i]!));
    return {
      modelText: modelText!,
      policyText: policyText!,
      files,
      tests: testNames.map((file, i) => ({ file, text: texts[optionalNames.length + i]! })),
    };
  }

  /** Runs git in the cache repository; resolves to stdout. @throws GitCommandError with git's stderr. */
  #run(args: string[], cwd = this.cacheDir): Promise<Buffer> {
    return runGit(this.#git, args, {
      ...(cwd === this.cacheDir ? { gitDir: this.cacheDir } : {}),
      cwd,
      timeoutMs: this.#timeout,
      maxBuffer: MAX_FILE_BYTES,
      env: gitEnv(),
    });
  }
}
