/**
 * Loading a policy directory: model.conf + policy.csv → validated, compiled, immutable snapshot.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PolicyError } from '../errors.js';
import { CompiledPolicy } from './compile.js';
import { POLICY_FILE, parsePolicyCsv } from './csv.js';
import { MODEL_FILE, validateModel } from './model.js';

/**
 * Content version: the first 12 hex digits of SHA-256 over model.conf's bytes followed by
 * policy.csv's bytes.
 */
export function policyVersion(modelText: string, policyText: string): string {
  return createHash('sha256').update(modelText).update(policyText).digest('hex').slice(0, 12);
}

/**
 * Validates and compiles policy text (no filesystem access).
 * @param opts.dir recorded as the snapshot's source directory.
 * @param opts.version overrides the content hash (e.g. a git commit SHA).
 * @throws PolicyError located at `model.conf:LINE` or `policy.csv:LINE`.
 */
export function compilePolicy(
  modelText: string,
  policyText: string,
  opts: { dir?: string; version?: string } = {},
): CompiledPolicy {
  validateModel(modelText);
  const parsed = parsePolicyCsv(policyText);
  return new CompiledPolicy(parsed, opts.version ?? policyVersion(modelText, policyText), {
    dir: opts.dir ?? null,
    modelText,
    policyText,
  });
}

async function readPolicyFile(dir: string, name: string): Promise<string> {
  try {
    return await readFile(path.join(dir, name), 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'file is missing' : `cannot read: ${e.message}`;
    throw new PolicyError(`${why} (in ${dir})`, name);
  }
}

/** Reads model.conf and policy.csv from `dir` (following symlinks, e.g. a ConfigMap's `..data`). */
export async function readPolicyDir(dir: string): Promise<{ modelText: string; policyText: string }> {
  // Both reads run at once; the error reported is always model.conf's first (deterministic).
  const [model, policy] = await Promise.allSettled([
    readPolicyFile(dir, MODEL_FILE),
    readPolicyFile(dir, POLICY_FILE),
  ]);
  if (model.status === 'rejected') throw model.reason;
  if (policy.status === 'rejected') throw policy.reason;
  return { modelText: model.value, policyText: policy.value };
}

/**
 * Loads `dir/model.conf` and `dir/policy.csv` into a snapshot. Does not run `dir/tests` (see
 * `runPolicyTests`; `PolicyStore` does both).
 * @returns a {@link CompiledPolicy} (a `PolicySnapshot` with `explain()` and the parsed rules).
 * @throws PolicyError: `model.conf`/`policy.csv` when a file is missing or unreadable, otherwise
 *   `FILE:LINE` naming the first offending line.
 */
export async function loadPolicyDir(dir: string): Promise<CompiledPolicy> {
  const { modelText, policyText } = await readPolicyDir(dir);
  return compilePolicy(modelText, policyText, { dir });
}
