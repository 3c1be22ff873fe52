/** Runs the built CLI (`dist/cli/main.js`) as a user would; builds dist/ first when it is missing. */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const MAIN = path.resolve('dist/cli/main.js');

export function ensureBuilt(): void {
  if (existsSync(MAIN)) return;
  const r = spawnSync('npm', ['run', 'build'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('npm run build failed');
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `airlock ARGS...` and resolves with its exit code and output (never rejects on exit code). */
export function airlock(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<CliResult> {
  ensureBuilt();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [MAIN, ...args],
      { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr });
      },
    );
  });
}
