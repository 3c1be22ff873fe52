/**
 * The policy in force, reloaded when its directory changes (docs/policy.md "Reloading").
 *
 * A reload reads model.conf, policy.csv, the optional files (src/policy/optional-files.ts) and
 * tests/*.yaml and offers them to the source's
 * {@link LastKnownGood} (src/policy/last-good.ts, shared with the Git source), which validates and
 * compiles them into a new immutable snapshot, runs the tests against it, and only then replaces the
 * single reference that `current()` returns. Any failure keeps the previous snapshot and records `lastError()`. There is no
 * in-place mutation (Casbin's `loadPolicy()` clears and refills its model, so a concurrent decision
 * can see half a policy): a decision uses whichever whole snapshot it fetched.
 */
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { lstat, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import type { CompiledPolicy } from './compile.js';
import { errorMessage, LastKnownGood, type PolicyListeners, type ReloadResult } from './last-good.js';
import { readPolicyDir } from './load.js';
import { OPTIONAL_POLICY_FILES } from './optional-files.js';
import { readPolicyTestFiles, TESTS_DIR } from './policy-tests.js';
import type { PolicySource } from './types.js';
import { VERSION_FILE } from './live-dir.js';

export type { PolicyLogger, ReloadResult } from './last-good.js';

export interface PolicyStoreOptions extends PolicyListeners {
  /** Quiet time after the last filesystem event before reloading. @default 100 */
  debounceMs?: number;
  /** Safety-net re-read for events the watcher missed (0 disables). @default 2000 */
  pollIntervalMs?: number;
  /** Use `fs.watch` (events). Independent of polling. @default true */
  watch?: boolean;
}

/** Reads of a tree whose publishing symlink moved meanwhile, before giving up. */
const MAX_READ_ATTEMPTS = 5;

/** Longest a burst of events can postpone a reload. */
const MAX_DEBOUNCE_WAIT_MS = 1000;

/**
 * Holds the policy in force and keeps it up to date with its directory.
 *
 * Watching: `fs.watch` on the directory (which sees editors' rename-writes and Kubernetes ConfigMap
 * updates, where the `..data` symlink is swapped atomically) and on `tests/`, plus a periodic
 * re-read that catches anything the watchers miss (directories replaced wholesale, network
 * filesystems). Reloads run one at a time; an attempt whose files are byte-identical to the previous
 * attempt is skipped unless forced.
 */
export class PolicyStore implements PolicySource {
  readonly dir: string;
  readonly #held: LastKnownGood;
  #lastFingerprint: string | null = null;
  #closed = false;
  #watching = false;
  #dirWatcher: FSWatcher | null = null;
  #dirIno: number | null = null;
  #testsWatcher: FSWatcher | null = null;
  #testsReal: string | null = null;
  /** Watcher of the directory holding the symlink `dir` is published through (`ROOT` of `ROOT/current`). */
  #linkWatcher: FSWatcher | null = null;
  #linkDir: string | null = null;
  #debounce: NodeJS.Timeout | null = null;
  #firstEventAt = 0;
  #poll: NodeJS.Timeout | null = null;
  readonly #debounceMs: number;

  private constructor(dir: string, opts: PolicyStoreOptions) {
    this.dir = path.resolve(dir);
    this.#held = new LastKnownGood(opts);
    this.#debounceMs = opts.debounceMs ?? 100;
  }

  /**
   * Loads `dir` and starts watching it. Never throws for policy problems: when the first load fails,
   * `current()` is null (every call is denied) and `lastError()` says why, and the store keeps
   * watching for a fixed policy.
   */
  static async open(dir: string, opts: PolicyStoreOptions = {}): Promise<PolicyStore> {
    const store = new PolicyStore(dir, opts);
    await store.reload();
    store.#watching = opts.watch ?? true;
    await store.#attachWatchers();
    const every = opts.pollIntervalMs ?? 2000;
    if (every > 0) {
      store.#poll = setInterval(() => {
        void store.#attachWatchers().then(() => store.#enqueue(false));
      }, every);
      store.#poll.unref();
    }
    return store;
  }

  /** The snapshot in force, or null when no valid policy has been loaded (fail closed). */
  current(): CompiledPolicy | null {
    return this.#held.current();
  }

  /** Why the last attempt failed (`policy.csv:12: unknown effect "permit" ...`), or null after a success. */
  lastError(): string | null {
    return this.#held.lastError();
  }

  /** Reloads now, even if the files look unchanged. Resolves after this attempt (queued behind any running one). */
  reload(): Promise<ReloadResult> {
    return this.#enqueue(true);
  }

  /** Stops watching and polling; waits for a running reload. `current()` keeps its last value. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#debounce) clearTimeout(this.#debounce);
    if (this.#poll) clearInterval(this.#poll);
    this.#debounce = null;
    this.#poll = null;
    this.#dirWatcher?.close();
    this.#testsWatcher?.close();
    this.#linkWatcher?.close();
    this.#dirWatcher = null;
    this.#testsWatcher = null;
    this.#linkWatcher = null;
    await this.#held.idle();
  }

  #enqueue(force: boolean): Promise<ReloadResult> {
    return this.#held.serialize(() => this.#attempt(force));
  }

  #schedule(): void {
    if (this.#closed) return;
    const now = Date.now();
    if (this.#debounce) clearTimeout(this.#debounce);
    else this.#firstEventAt = now;
    const wait = Math.max(0, Math.min(this.#debounceMs, this.#firstEventAt + MAX_DEBOUNCE_WAIT_MS - now));
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      if (this.#closed) return;
      void this.#enqueue(false).then(() => this.#attachWatchers());
    }, wait);
    this.#debounce.unref();
  }

  #result(changed: boolean): ReloadResult {
    return { changed, version: this.current()?.version ?? null, error: this.lastError() };
  }

  async #attempt(force: boolean): Promise<ReloadResult> {
    let fingerprint: string | null = null;
    try {
      const [{ modelText, policyText, files }, testFiles, pinned] = await this.#readConsistent();
      const h = createHash('sha256')
        .update(modelText)
        .update('\0')
        .update(policyText)
        .update('\0')
        .update(pinned ?? '');
      for (const name of OPTIONAL_POLICY_FILES) {
        const text = files[name];
        h.update('\0').update(text === undefined ? '-' : `+${text}`);
      }
      for (const t of testFiles) h.update('\0').update(t.file).update('\0').update(t.text);
      fingerprint = h.digest('hex');
      if (!force && fingerprint === this.#lastFingerprint) return this.#result(false);
      this.#lastFingerprint = fingerprint;
      const changed = this.#held.accept(
        {
          modelText,
          policyText,
          files,
          tests: testFiles,
          dir: this.dir,
          ...(pinned ? { version: pinned } : {}),
        },
        { dir: this.dir },
      );
      return this.#held.report(this.#result(changed));
    } catch (err) {
      // A failed read (e.g. a file missing mid-update) is not fingerprinted, so it is retried.
      if (fingerprint === null) this.#lastFingerprint = null;
      this.#held.reject(
        errorMessage(err),
        { dir: this.dir },
        'policy reload failed; keeping the last good policy',
      );
      return this.#held.report(this.#result(false));
    }
  }

  /**
   * Reads every file of one tree: the directory is resolved first (`dir` may be, or lie under, a
   * symlink swapped to publish a new tree: git-sync's and `airlock policy sync`'s `ROOT/current`)
   * and read through the resolved path; when the link moved during the read, the read is repeated,
   * so files of two trees are never mixed. The version of a tree under `.worktrees/<commit>` is the
   * commit's first 12 hex digits unless `.airlock-version` pins one.
   */
  async #readConsistent(): Promise<
    [
      Awaited<ReturnType<typeof readPolicyDir>>,
      Awaited<ReturnType<typeof readPolicyTestFiles>>,
      string | null,
    ]
  > {
    for (let attempt = 1; ; attempt++) {
      const real = await realpath(this.dir).catch(() => this.dir);
      try {
        const [dir, tests, pinned] = await Promise.all([
          readPolicyDir(real),
          readPolicyTestFiles(real),
          readPinnedVersion(real),
        ]);
        const after = await realpath(this.dir).catch(() => this.dir);
        if (after === real || attempt >= MAX_READ_ATTEMPTS)
          return [dir, tests, pinned ?? worktreeVersion(real)];
      } catch (err) {
        // A tree removed under the reader (the old worktree pruned after a swap): read the new one.
        const after = await realpath(this.dir).catch(() => this.dir);
        if (after === real || attempt >= MAX_READ_ATTEMPTS) throw err;
      }
    }
  }

  /** (Re)attaches the directory and tests/ watchers when missing or pointing at a replaced directory. */
  async #attachWatchers(): Promise<void> {
    if (this.#closed || !this.#watching) return;
    let attached = false;
    try {
      const ino = (await stat(this.dir)).ino;
      if (this.#dirWatcher === null || ino !== this.#dirIno) {
        this.#dirWatcher?.close();
        this.#dirWatcher = this.#watch(this.dir, (w) => {
          if (this.#dirWatcher === w) this.#dirWatcher = null;
        });
        this.#dirIno = ino;
        attached = this.#dirWatcher !== null;
      }
    } catch {
      // Directory missing: the poll retries.
    }
    // A swap of the symlink (`ROOT/current` -> a new worktree) is an event in ROOT, not in the
    // directory watched above (which is the old tree): watch ROOT too.
    const linkDir = await symlinkParent(this.dir);
    if (this.#closed) return;
    if (linkDir !== this.#linkDir || (linkDir !== null && this.#linkWatcher === null)) {
      this.#linkWatcher?.close();
      this.#linkWatcher = null;
      this.#linkDir = linkDir;
      if (linkDir !== null) {
        this.#linkWatcher = this.#watch(linkDir, (w) => {
          if (this.#linkWatcher !== w) return;
          this.#linkWatcher = null;
          this.#linkDir = null;
        });
      }
    }
    const testsDir = path.join(this.dir, TESTS_DIR);
    const real = await realpath(testsDir).catch(() => null);
    if (this.#closed) return;
    if (real !== this.#testsReal || (real !== null && this.#testsWatcher === null)) {
      this.#testsWatcher?.close();
      this.#testsWatcher = null;
      this.#testsReal = real;
      if (real !== null) {
        this.#testsWatcher = this.#watch(real, (w) => {
          if (this.#testsWatcher !== w) return;
          this.#testsWatcher = null;
          this.#testsReal = null;
        });
        attached = this.#testsWatcher !== null;
      }
    }
    // A change between the last read and the new watcher would go unseen: check once more (cheap:
    // identical files are skipped by fingerprint).
    if (attached) this.#schedule();
  }

  #watch(target: string, onDead: (w: FSWatcher) => void): FSWatcher | null {
    if (this.#closed) return null;
    try {
      const w = watch(target, { persistent: false }, () => this.#schedule());
      w.on('error', (err) => {
        this.#held.logger?.warn({ dir: target, err }, 'policy watcher failed; relying on polling');
        w.close();
        onDead(w);
        this.#schedule();
      });
      return w;
    } catch (err) {
      this.#held.logger?.warn({ dir: target, err }, 'cannot watch policy directory; relying on polling');
      return null;
    }
  }
}

/**
 * The version a materialised policy carries (`.airlock-version`, written by `materializePolicy` for
 * the Git source: the commit the control plane enforces), so the gateway's audit events name the
 * same version. Absent or malformed: null, and the content hash is the version.
 */
async function readPinnedVersion(dir: string): Promise<string | null> {
  try {
    const v = (await readFile(path.join(dir, VERSION_FILE), 'utf8')).trim();
    return /^[0-9a-f]{7,64}$/.test(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * The commit of a tree published by git-sync or `airlock policy sync` (`ROOT/.worktrees/<sha>`,
 * src/policy/git-sync.ts): its first 12 hex digits, or null for any other directory.
 */
export function worktreeVersion(realDir: string): string | null {
  const m = /\/\.worktrees\/([0-9a-f]{40,64})(?:\/|$)/.exec(realDir);
  return m ? m[1]!.slice(0, 12) : null;
}

/** The directory holding the nearest symlink among `dir` and its ancestors, or null when none is one. */
async function symlinkParent(dir: string): Promise<string | null> {
  for (let p = dir; p !== path.dirname(p); p = path.dirname(p)) {
    const isLink = await lstat(p).then(
      (st) => st.isSymbolicLink(),
      () => false,
    );
    if (isLink) return path.dirname(p);
  }
  return null;
}
