/**
 * One entry point for `airlock serve`: the configured policy source, a watched directory
 * (`policy.dir`, {@link PolicyStore}) or a followed Git repository (`policy.git`,
 * {@link GitPolicySource}), behind one interface.
 */
import type { CompiledPolicy } from './compile.js';
import type { PolicyConfig } from './config.js';
import { gitCacheDir, GitPolicySource } from './git-source.js';
import { PolicyStore, type PolicyStoreOptions, type ReloadResult } from './store.js';
import type { PolicySource } from './types.js';

/** What the server needs from any policy source. */
export interface ReloadablePolicySource extends PolicySource {
  /** The snapshot in force (with `explain()`), or null: fail closed. */
  current(): CompiledPolicy | null;
  /** Forces a reload attempt; resolves after it. */
  reload(): Promise<ReloadResult>;
  /** Stops watching/polling; waits for a running attempt. */
  close(): Promise<void>;
}

/** Options for both sources. `pollIntervalMs` here applies to `policy.dir` only (`policy.git` has its own). */
export type OpenPolicySourceOptions = PolicyStoreOptions;

/**
 * Opens the source `cfg` names: `cfg.git` set → a {@link GitPolicySource} with its cache in
 * `<stateDir>/policy-git/` (see {@link gitCacheDir}); otherwise a {@link PolicyStore} on `cfg.dir`.
 * Like both sources, never throws for policy problems (current() is null and lastError() says why).
 * @param cfg the `policy` config section (paths already resolved by the config loader).
 * @param stateDir Airlock's state directory (absolute, or relative to the working directory).
 */
export async function openPolicySource(
  cfg: PolicyConfig,
  stateDir: string,
  opts: OpenPolicySourceOptions = {},
): Promise<ReloadablePolicySource> {
  if (cfg.git) {
    return GitPolicySource.open({
      url: cfg.git.url,
      ref: cfg.git.ref,
      subdir: cfg.git.subdir,
      pollIntervalMs: cfg.git.pollIntervalMs,
      cacheDir: gitCacheDir(stateDir, cfg.git.url),
      ...(opts.logger ? { logger: opts.logger } : {}),
      ...(opts.onChange ? { onChange: opts.onChange } : {}),
      ...(opts.onReload ? { onReload: opts.onReload } : {}),
    });
  }
  return PolicyStore.open(cfg.dir, opts);
}
