/**
 * The last-known-good policy: the one validate → compile → test → swap chain shared by every policy
 * source (a watched directory, {@link PolicyStore}; a followed Git ref, {@link GitPolicySource}).
 *
 * A source reads candidate files its own way (filesystem, git objects) and offers them here. A
 * candidate becomes the policy in force only when model.conf, policy.csv (and the optional files
 * present: budgets.yaml, credentials.yaml, mcp.yaml, modes.yaml) validate and compile and
 * every `tests/*.yaml` case passes; the swap is one reference assignment, so a concurrent decision
 * uses whichever whole snapshot it fetched. Any failure keeps the previous snapshot and is recorded
 * as `lastError()`. Attempts run one at a time ({@link LastKnownGood.serialize}).
 */
import type { CompiledPolicy } from './compile.js';
import { compilePolicy } from './load.js';
import type { OptionalPolicyTexts } from './optional-files.js';
import { assertPolicyTestsPass, runPolicyTestFiles, type PolicyTestFile } from './policy-tests.js';
import type { PolicySnapshot } from './types.js';

/** The subset of a pino logger the policy sources use. */
export interface PolicyLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Outcome of one reload attempt. */
export interface ReloadResult {
  /** A new snapshot is now in force. */
  readonly changed: boolean;
  /** Version in force after the attempt (null: none). */
  readonly version: string | null;
  /** Why the attempt failed, or null. */
  readonly error: string | null;
}

/** Listeners and logger every policy source accepts. */
export interface PolicyListeners {
  logger?: PolicyLogger;
  /** Called after a new snapshot replaced the previous one (not for reloads that change nothing). */
  onChange?: (next: PolicySnapshot, previous: PolicySnapshot | null) => void;
  /** Called after every reload attempt that read changed (or forced) input, successful or not. */
  onReload?: (result: ReloadResult) => void;
}

/** The files of one candidate policy, as a source read them. */
export interface PolicyCandidate {
  /** model.conf's text. */
  modelText: string;
  /** policy.csv's text. */
  policyText: string;
  /** The optional files present (name → text, src/policy/optional-files.ts); absent: none. */
  files?: OptionalPolicyTexts;
  /** tests/*.yaml (names relative to the policy directory), run against the compiled candidate. */
  tests: readonly PolicyTestFile[];
  /** Recorded as the snapshot's source directory. */
  dir?: string;
  /** The snapshot's version (a commit SHA); absent: the content hash (see `policyVersion`). */
  version?: string;
}

/**
 * Holds the policy in force for one source. Not a source itself: the owner decides when and what to
 * offer, and which of its own errors (e.g. a failed fetch) to report besides the candidate's.
 */
export class LastKnownGood {
  #current: CompiledPolicy | null = null;
  #lastError: string | null = null;
  #chain: Promise<unknown> = Promise.resolve();
  readonly #logger: PolicyLogger | undefined;
  readonly #onChange: PolicyListeners['onChange'];
  readonly #onReload: PolicyListeners['onReload'];

  constructor(opts: PolicyListeners = {}) {
    this.#logger = opts.logger;
    this.#onChange = opts.onChange;
    this.#onReload = opts.onReload;
  }

  /** The snapshot in force, or null when no valid policy has been accepted (fail closed). */
  current(): CompiledPolicy | null {
    return this.#current;
  }

  /** Why the newest candidate was rejected, or null when it is in force (or none was offered). */
  lastError(): string | null {
    return this.#lastError;
  }

  /** The logger given at construction (for the owner's own lines), if any. */
  get logger(): PolicyLogger | undefined {
    return this.#logger;
  }

  /**
   * Runs `attempt` after every previously serialised attempt settled (attempts never overlap).
   * @returns `attempt`'s result; a rejection does not block later attempts.
   */
  serialize<T>(attempt: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(attempt);
    this.#chain = next.catch(() => undefined);
    return next;
  }

  /** Resolves once the running and queued attempts settled. Never rejects. */
  idle(): Promise<void> {
    return this.#chain.then(
      () => undefined,
      () => undefined,
    );
  }

  /**
   * Validates, compiles and tests `candidate`, then makes it the policy in force. Logs
   * `policy loaded` (with `context` and version, rules, tests, previous) and calls `onChange` when the
   * version changed; `swapped` runs right after the swap, before both. While a role is in complain
   * mode (modes.yaml) every accepted candidate also logs a warning naming those roles (`complain`).
   * @returns whether the version in force changed.
   * @throws PolicyError (compile: `FILE:LINE`; tests: the failed cases) — nothing is swapped then;
   *   the owner passes the message to {@link reject}.
   */
  accept(
    candidate: PolicyCandidate,
    context: Record<string, unknown>,
    swapped?: (snapshot: CompiledPolicy) => void,
  ): boolean {
    const snapshot = compilePolicy(candidate.modelText, candidate.policyText, {
      ...(candidate.dir !== undefined ? { dir: candidate.dir } : {}),
      ...(candidate.version !== undefined ? { version: candidate.version } : {}),
      ...(candidate.files !== undefined ? { files: candidate.files } : {}),
    });
    const report = runPolicyTestFiles(snapshot, candidate.tests);
    assertPolicyTestsPass(report);
    const previous = this.#current;
    this.#current = snapshot; // the swap: one reference assignment
    this.#lastError = null;
    swapped?.(snapshot);
    if (snapshot.complainRoles.size > 0) {
      // Complain mode is a learning aid, never a steady state: say so at every load and reload.
      this.#logger?.warn(
        { ...context, version: snapshot.version, complain: [...snapshot.complainRoles].sort() },
        "complain mode (modes.yaml): calls these roles' rules deny are forwarded for GET, HEAD and OPTIONS and audited would_deny",
      );
    }
    const changed = previous?.version !== snapshot.version;
    if (changed) {
      this.#logger?.info(
        {
          ...context,
          version: snapshot.version,
          rules: snapshot.rules,
          tests: report.cases,
          previous: previous?.version ?? null,
        },
        'policy loaded',
      );
      try {
        this.#onChange?.(snapshot, previous);
      } catch (err) {
        this.#logger?.warn({ err }, 'policy onChange listener threw');
      }
    }
    return changed;
  }

  /**
   * Records that the newest candidate could not be used (the policy in force stays) and logs it:
   * `keeping` when a policy is in force, else `no valid policy; every call is denied`.
   * @param error the message `lastError()` reports.
   * @param context fields of the log line (`{dir}`, `{url, ref, commit}`).
   */
  reject(error: string, context: Record<string, unknown>, keeping: string): void {
    this.#lastError = error;
    this.logFailure(error, context, keeping);
  }

  /** Logs a failure that is the owner's to record (e.g. a fetch): same line shape as {@link reject}. */
  logFailure(error: string, context: Record<string, unknown>, keeping: string): void {
    this.#logger?.error(
      { ...context, error, keeping: this.#current?.version ?? null },
      this.#current ? keeping : 'no valid policy; every call is denied',
    );
  }

  /** Calls `onReload` with `result` (a throwing listener is logged, not propagated). @returns `result`. */
  report(result: ReloadResult): ReloadResult {
    try {
      this.#onReload?.(result);
    } catch (err) {
      this.#logger?.warn({ err }, 'policy onReload listener threw');
    }
    return result;
  }
}

/** The message of a thrown value (`Error.message`, else its string form). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
