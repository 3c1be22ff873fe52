/**
 * Compiled trees of other commits for same-run comparisons (bench/gateway-only.mjs,
 * bench/fairness.mjs): a commit is built once into `$TMPDIR/airlock-bench-tree-<sha12>` — git archive
 * of the commit (no worktree metadata in the repository), node_modules symlinked to this checkout's,
 * `tsc -p tsconfig.build.json` — and reused by later runs.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, log } from './lib.mjs';

/** The last commit before the issue 13 hardening work (its first commit is b398420). */
export const PRE_HARDENING = '9d9e810';

/**
 * The compiled tree (`dist/`) of `ref` (any commit-ish), built on first use.
 * @returns {{sha: string, dist: string}}
 */
export function buildTree(ref) {
  const sha = execFileSync('git', ['rev-parse', '--verify', `${ref}^{commit}`], { cwd: ROOT })
    .toString()
    .trim();
  const dir = path.join(os.tmpdir(), `airlock-bench-tree-${sha.slice(0, 12)}`);
  const dist = path.join(dir, 'dist');
  if (existsSync(path.join(dist, 'gateway', 'service.js'))) return { sha, dist };
  log(`building ${ref} (${sha.slice(0, 12)}) into ${dir}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  execFileSync('sh', ['-c', `git archive ${sha} | tar -x -C '${dir}'`], { cwd: ROOT, stdio: 'inherit' });
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  execFileSync(path.join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json'], {
    cwd: dir,
    stdio: 'inherit',
  });
  return { sha, dist };
}
