/**
 * Loading a policy directory: model.conf + policy.csv → validated, compiled, immutable snapshot.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PolicyError } from '../errors.js';
import { BUDGETS_FILE } from './budgets.js';
import { CompiledPolicy } from './compile.js';
import { CREDENTIALS_FILE } from './credentials.js';
import { MCP_FILE } from './mcp.js';
import { POLICY_FILE, parsePolicyCsv } from './csv.js';
import { MODEL_FILE, validateModel } from './model.js';

/**
 * Content version: the first 12 hex digits of SHA-256 over model.conf's bytes followed by
 * policy.csv's bytes, and, when the policy has one, a separator and budgets.yaml's bytes (a policy
 * without budgets keeps the version it had before budgets existed); then, likewise, credentials.yaml's
 * (definitions only: the secret values are not in the policy and do not change its version); then
 * mcp.yaml's.
 */
export function policyVersion(
  modelText: string,
  policyText: string,
  budgetsText?: string | null,
  credentialsText?: string | null,
  mcpText?: string | null,
): string {
  const h = createHash('sha256').update(modelText).update(policyText);
  if (budgetsText !== undefined && budgetsText !== null) h.update(`\0${BUDGETS_FILE}\0`).update(budgetsText);
  if (credentialsText !== undefined && credentialsText !== null)
    h.update(`\0${CREDENTIALS_FILE}\0`).update(credentialsText);
  if (mcpText !== undefined && mcpText !== null) h.update(`\0${MCP_FILE}\0`).update(mcpText);
  return h.digest('hex').slice(0, 12);
}

/**
 * Validates and compiles policy text (no filesystem access).
 * @param opts.dir recorded as the snapshot's source directory.
 * @param opts.version overrides the content hash (e.g. a git commit SHA).
 * @param opts.budgetsText budgets.yaml's text (src/policy/budgets.ts); absent/null: no budgets.
 * @param opts.credentialsText credentials.yaml's text (src/policy/credentials.ts); absent/null: none.
 * @param opts.mcpText mcp.yaml's text (src/policy/mcp.ts); absent/null: no MCP endpoints.
 * @throws PolicyError located at `model.conf:LINE`, `policy.csv:LINE`, `budgets.yaml:LINE` or
 *   `credentials.yaml:LINE`.
 */
export function compilePolicy(
  modelText: string,
  policyText: string,
  opts: {
    dir?: string;
    version?: string;
    budgetsText?: string | null;
    credentialsText?: string | null;
    mcpText?: string | null;
  } = {},
): CompiledPolicy {
  validateModel(modelText);
  const parsed = parsePolicyCsv(policyText);
  const budgetsText = opts.budgetsText ?? null;
  const credentialsText = opts.credentialsText ?? null;
  const mcpText = opts.mcpText ?? null;
  return new CompiledPolicy(
    parsed,
    opts.version ?? policyVersion(modelText, policyText, budgetsText, credentialsText, mcpText),
    {
      dir: opts.dir ?? null,
      modelText,
      policyText,
      budgetsText,
      credentialsText,
      mcpText,
    },
  );
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

/** An optional file's text (budgets.yaml, credentials.yaml), or null when the directory has none. */
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
 * Reads model.conf, policy.csv and the optional budgets.yaml and credentials.yaml from `dir`
 * (following symlinks, e.g. a ConfigMap's `..data`). `budgetsText` / `credentialsText` are null when
 * the file is absent.
 */
export async function readPolicyDir(dir: string): Promise<{
  modelText: string;
  policyText: string;
  budgetsText: string | null;
  credentialsText: string | null;
  mcpText: string | null;
}> {
  // The reads run at once; the error reported is always model.conf's first (deterministic).
  const [model, policy, budgets, credentials, mcp] = await Promise.allSettled([
    readPolicyFile(dir, MODEL_FILE),
    readPolicyFile(dir, POLICY_FILE),
    readOptionalFile(dir, BUDGETS_FILE),
    readOptionalFile(dir, CREDENTIALS_FILE),
    readOptionalFile(dir, MCP_FILE),
  ]);
  if (model.status === 'rejected') throw model.reason;
  if (policy.status === 'rejected') throw policy.reason;
  if (budgets.status === 'rejected') throw budgets.reason;
  if (credentials.status === 'rejected') throw credentials.reason;
  if (mcp.status === 'rejected') throw mcp.reason;
  return {
    modelText: model.value,
    policyText: policy.value,
    budgetsText: budgets.value,
    credentialsText: credentials.value,
    mcpText: mcp.value,
  };
}

/**
 * Loads `dir/model.conf`, `dir/policy.csv` and, when present, `dir/budgets.yaml` and
 * `dir/credentials.yaml` into a snapshot.
 * Does not run `dir/tests` (see `runPolicyTests`; `PolicyStore` does both).
 * @returns a {@link CompiledPolicy} (a `PolicySnapshot` with `explain()` and the parsed rules).
 * @throws PolicyError: `model.conf`/`policy.csv` when a file is missing or unreadable, otherwise
 *   `FILE:LINE` naming the first offending line.
 */
export async function loadPolicyDir(dir: string): Promise<CompiledPolicy> {
  const { modelText, policyText, budgetsText, credentialsText, mcpText } = await readPolicyDir(dir);
  return compilePolicy(modelText, policyText, { dir, budgetsText, credentialsText, mcpText });
}
