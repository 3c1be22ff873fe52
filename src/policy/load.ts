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
import { NO_OPTIONAL_FILES, OPTIONAL_POLICY_FILES, type OptionalPolicyTexts } from './optional-files.js';

/**
 * Content version: the first 12 hex digits of SHA-256 over model.conf's bytes followed by
 * policy.csv's bytes, then, for each optional file the policy has, in {@link OPTIONAL_POLICY_FILES}
 * order (budgets.yaml, credentials.yaml, mcp.yaml, modes.yaml), `\0NAME\0` and its bytes. A policy
 * without a file keeps the version it had before that file existed. credentials.yaml holds
 * definitions only: the secret values are not in the policy and do not change its version.
 * @param files the optional files (name → text); absent names are not hashed.
 */
export function policyVersion(
  modelText: string,
  policyText: string,
  files: OptionalPolicyTexts = NO_OPTIONAL_FILES,
): string {
  const h = createHash('sha256').update(modelText).update(policyText);
  for (const name of OPTIONAL_POLICY_FILES) {
    const text = files[name];
    if (text !== undefined) h.update(`\0${name}\0`).update(text);
  }
  return h.digest('hex').slice(0, 12);
}

/**
 * Validates and compiles policy text (no filesystem access).
 * @param opts.dir recorded as the snapshot's source directory.
 * @param opts.version overrides the content hash (e.g. a git commit SHA).
 * @param opts.files the optional files (budgets.yaml, credentials.yaml, mcp.yaml, modes.yaml; see
 *   src/policy/optional-files.ts) as name → text; absent: the policy has none.
 * @throws PolicyError located at `model.conf:LINE`, `policy.csv:LINE` or `FILE:LINE` of an optional file.
 */
export function compilePolicy(
  modelText: string,
  policyText: string,
  opts: { dir?: string; version?: string; files?: OptionalPolicyTexts } = {},
): CompiledPolicy {
  validateModel(modelText);
  const parsed = parsePolicyCsv(policyText);
  const files = opts.files ?? NO_OPTIONAL_FILES;
  return new CompiledPolicy(parsed, opts.version ?? policyVersion(modelText, policyText, files), {
    dir: opts.dir ?? null,
    modelText,
    policyText,
    files,
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

/** An optional file's text, or null when the directory has none. */
async function readOptionalFile(dir: string, name: string): Promise<string | null> {
  try {
    return await readFile(path.join(dir, name), 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') return null;
    throw new PolicyError(`cannot read: ${e.message}`, name);
  }
}

/**
 * Reads model.conf, policy.csv and the optional files ({@link OPTIONAL_POLICY_FILES}) from `dir`
 * (following symlinks, e.g. a ConfigMap's `..data`). `files` holds only the optional files present.
 * @throws PolicyError naming the first file (model.conf, policy.csv, then the optional files in order)
 *   that is missing (required files) or unreadable.
 */
export async function readPolicyDir(
  dir: string,
): Promise<{ modelText: string; policyText: string; files: OptionalPolicyTexts }> {
  // The reads run at once; the error reported is always model.conf's first (deterministic).
  const [model, policy, ...optional] = await Promise.allSettled([
    readPolicyFile(dir, MODEL_FILE),
    readPolicyFile(dir, POLICY_FILE),
    ...OPTIONAL_POLICY_FILES.map((name) => readOptionalFile(dir, name)),
  ]);
  if (model.status === 'rejected') throw model.reason;
  if (policy.status === 'rejected') throw policy.reason;
  const files: Partial<Record<(typeof OPTIONAL_POLICY_FILES)[number], string>> = {};
  OPTIONAL_POLICY_FILES.forEach((name, i) => {
    const r = optional[i]!;
    if (r.status === 'rejected') throw r.reason;
    if (r.value !== null) files[name] = r.value;
  });
  return { modelText: model.value as string, policyText: policy.value as string, files };
}

/**
 * Loads `dir/model.conf`, `dir/policy.csv` and the optional files present into a snapshot.
 * Does not run `dir/tests` (see `runPolicyTests`; `PolicyStore` does both).
 * @returns a {@link CompiledPolicy} (a `PolicySnapshot` with `explain()` and the parsed rules).
 * @throws PolicyError: `model.conf`/`policy.csv` when a file is missing or unreadable, otherwise
 *   `FILE:LINE` naming the first offending line.
 */
export async function loadPolicyDir(dir: string): Promise<CompiledPolicy> {
  const { modelText, policyText, files } = await readPolicyDir(dir);
  return compilePolicy(modelText, policyText, { dir, files });
}
