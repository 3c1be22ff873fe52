/**
 * `airlock policy sync`: a git-sync compatible subset (src/policy/git-sync.ts) so the chart's
 * `policies.git.syncer: airlock` runs its init container and sidecar with the Airlock image itself.
 */
import { type Command, InvalidArgumentError } from 'commander';
import { createLogger } from '../log.js';
import { parsePeriod, runGitSync } from '../policy/git-sync.js';

interface SyncOptions {
  repo: string;
  ref: string;
  root: string;
  link: string;
  period: number;
  depth: number;
  oneTime?: boolean;
}

function period(v: string): number {
  try {
    return parsePeriod(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function depth(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/** Adds `sync` under the `policy` command. Exit 0 on SIGTERM/SIGINT; `--one-time` exits 1 on failure. */
export function registerPolicySyncCommand(policy: Command): void {
  policy
    .command('sync')
    .description(
      'publish a Git ref under ROOT/LINK (git-sync v4 layout) and keep it current; ' +
        'credentials from GITSYNC_USERNAME/GITSYNC_PASSWORD, CA bundle from GIT_SSL_CAINFO',
    )
    .requiredOption('--repo <url>', 'remote repository URL (no credentials in it)')
    .option('--ref <ref>', 'branch, tag or commit to follow', 'main')
    .requiredOption('--root <dir>', 'directory the checkout is published under')
    .option('--link <name>', 'symlink under ROOT pointing at the published checkout', 'current')
    .option('--period <duration>', 'time between fetches: 30s, 500ms, 2m or seconds', period, 10_000)
    .option('--depth <n>', 'fetch depth in commits', depth, 1)
    .option('--one-time', 'sync once and exit (non-zero when it failed)')
    .action(async (opts: SyncOptions) => {
      const logger = createLogger({ component: 'policy-sync' });
      const stop = new AbortController();
      process.once('SIGTERM', () => stop.abort());
      process.once('SIGINT', () => stop.abort());
      const code = await runGitSync({
        repo: opts.repo,
        ref: opts.ref,
        root: opts.root,
        link: opts.link,
        depth: opts.depth,
        periodMs: opts.period,
        oneTime: opts.oneTime ?? false,
        signal: stop.signal,
        logger,
      });
      process.exit(code);
    });
}
