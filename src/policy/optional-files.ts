/**
 * The optional files of a policy directory (budgets.yaml, credentials.yaml, mcp.yaml, modes.yaml)
 * travel together as one map, name → text, from every source (directory, Git commit, materialised
 * ConfigMap-style directory) to the compiled snapshot. Adding a file is one entry in
 * {@link OPTIONAL_POLICY_FILES} and its parser in compile.ts.
 */
import { BUDGETS_FILE } from './budgets.js';
import { CREDENTIALS_FILE } from './credentials.js';
import { MCP_FILE } from './mcp.js';
import { MODES_FILE } from './modes.js';

/**
 * The optional files, in the order their bytes enter the policy version (`policyVersion`): a new
 * file goes last, so every existing policy keeps its version.
 */
export const OPTIONAL_POLICY_FILES = [BUDGETS_FILE, CREDENTIALS_FILE, MCP_FILE, MODES_FILE] as const;

/** The name of an optional policy file. */
export type OptionalPolicyFile = (typeof OPTIONAL_POLICY_FILES)[number];

/** The optional files a policy has: name → text; a name absent from the map: the policy has no such file. */
export type OptionalPolicyTexts = Readonly<Partial<Record<OptionalPolicyFile, string>>>;

/** No optional files. */
export const NO_OPTIONAL_FILES: OptionalPolicyTexts = Object.freeze({});
