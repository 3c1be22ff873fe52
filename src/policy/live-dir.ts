import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { MODEL_FILE } from './model.js';
import { OPTIONAL_POLICY_FILES } from './optional-files.js';
import { POLICY_FILE } from './csv.js';
import type { CompiledPolicy } from './compile.js';

/** File naming the version of a materialised policy (a git commit); PolicyStore adopts it. */
export const VERSION_FILE = '.airlock-version';

/** Entries of another process's materialisation younger than this are left alone by the clean-up, ms. */
export const MATERIALIZE_GRACE_MS = 60_000;

/** Snapshot directories this process wrote (removed at its next materialisation). */
const written = new Set<string>();

/**
 * Writes a snapshot (e.g. the commit the Git source enforces) into `dir` the way Kubernetes
 * ConfigMap volumes do it: the files go into a fresh `..<version>` directory, then the `..data`
 * symlink is swapped to it with one rename, and `model.conf`, `policy.csv`, each optional file
 * (OPTIONAL_POLICY_FILES; dangling when the policy has none) and `.airlock-version` are symlinks
 * through `..data`. A PolicyStore watching `dir` (the gateway's) sees one whole policy
 * or the other, never a mix, and takes the snapshot's version from `.airlock-version`.
 * @throws Error from the filesystem.
 */
export function materializePolicy(dir: string, snapshot: CompiledPolicy): void {
  mkdirSync(dir, { recursive: true });
  // A unique name (mkdtemp): two snapshots of the same version in the same millisecond once
  // collided here (EEXIST, issue 15). Readable like a plain mkdir (the gateway's uid reads it).
  const targetDir = mkdtempSync(path.join(dir, `..${snapshot.version}-`));
  chmodSync(targetDir, 0o755);
  const target = path.basename(targetDir);
  writeFileSync(path.join(targetDir, MODEL_FILE), snapshot.source.modelText);
  writeFileSync(path.join(targetDir, POLICY_FILE), snapshot.source.policyText);
  writeFileSync(path.join(targetDir, VERSION_FILE), snapshot.version + '\n');
  // An optional file the policy lacks is not written: its link below dangles and readers see none.
  for (const name of OPTIONAL_POLICY_FILES) {
    const text = snapshot.source.files[name];
    if (text !== undefined) writeFileSync(path.join(targetDir, name), text);
  }
  const tmpLink = path.join(dir, `..data_tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  symlinkSync(target, tmpLink);
  renameSync(tmpLink, path.join(dir, '..data'));
  for (const f of [MODEL_FILE, POLICY_FILE, ...OPTIONAL_POLICY_FILES, VERSION_FILE]) {
    try {
      symlinkSync(path.join('..data', f), path.join(dir, f));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  // Old snapshots go: this process's at once; another process's (materialising into `dir` at the
  // same time) only once older than a minute, so its swap stays whole. `..data`'s target stays.
  const live = readlinkSync(path.join(dir, '..data'));
  const now = Date.now();
  for (const e of readdirSync(dir)) {
    if (!e.startsWith('..') || e === '..data' || e === target || e === live) continue;
    const at = path.join(dir, e);
    if (!written.delete(at)) {
      try {
        if (now - lstatSync(at).mtimeMs < MATERIALIZE_GRACE_MS) continue;
      } catch {
        continue; // gone already
      }
    }
    rmSync(at, { recursive: true, force: true });
  }
  written.add(targetDir);
}
