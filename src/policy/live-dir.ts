import { mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BUDGETS_FILE } from './budgets.js';
import { CREDENTIALS_FILE } from './credentials.js';
import { MCP_FILE } from './mcp.js';
import { MODEL_FILE } from './model.js';
import { POLICY_FILE } from './csv.js';
import type { CompiledPolicy } from './compile.js';

/** File naming the version of a materialised policy (a git commit); PolicyStore adopts it. */
export const VERSION_FILE = '.airlock-version';

/**
 * Writes a snapshot (e.g. the commit the Git source enforces) into `dir` the way Kubernetes
 * ConfigMap volumes do it: the files go into a fresh `..<version>` directory, then the `..data`
 * symlink is swapped to it with one rename, and `model.conf`, `policy.csv`, `budgets.yaml` and
 * `credentials.yaml`, `mcp.yaml` (dangling when the policy has none) and `.airlock-version` are symlinks through `..data`. A PolicyStore watching `dir` (the gateway's) sees one whole policy
 * or the other, never a mix, and takes the snapshot's version from `.airlock-version`.
 * @throws Error from the filesystem.
 */
export function materializePolicy(dir: string, snapshot: CompiledPolicy): void {
  mkdirSync(dir, { recursive: true });
  const target = `..${snapshot.version}-${Date.now()}`;
  const targetDir = path.join(dir, target);
  mkdirSync(targetDir);
  writeFileSync(path.join(targetDir, MODEL_FILE), snapshot.source.modelText);
  writeFileSync(path.join(targetDir, POLICY_FILE), snapshot.source.policyText);
  writeFileSync(path.join(targetDir, VERSION_FILE), snapshot.version + '\n');
  // budgets.yaml is optional: without one the link below dangles and readers see no budgets.
  if (snapshot.source.budgetsText !== undefined && snapshot.source.budgetsText !== null)
    writeFileSync(path.join(targetDir, BUDGETS_FILE), snapshot.source.budgetsText);
  if (snapshot.source.credentialsText !== undefined && snapshot.source.credentialsText !== null)
    writeFileSync(path.join(targetDir, CREDENTIALS_FILE), snapshot.source.credentialsText);
  if (snapshot.source.mcpText !== undefined && snapshot.source.mcpText !== null)
    writeFileSync(path.join(targetDir, MCP_FILE), snapshot.source.mcpText);
  const tmpLink = path.join(dir, `..data_tmp`);
  rmSync(tmpLink, { force: true });
  symlinkSync(target, tmpLink);
  renameSync(tmpLink, path.join(dir, '..data'));
  for (const f of [MODEL_FILE, POLICY_FILE, BUDGETS_FILE, CREDENTIALS_FILE, MCP_FILE, VERSION_FILE]) {
    try {
      symlinkSync(path.join('..data', f), path.join(dir, f));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  for (const e of readdirSync(dir)) {
    if (e.startsWith('..') && e !== '..data' && e !== target)
      rmSync(path.join(dir, e), { recursive: true, force: true });
  }
}
