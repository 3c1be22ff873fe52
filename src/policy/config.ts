/**
 * The `policy` section of the config file (src/config/schema.ts uses {@link policyConfigSchema}):
 * where the policy comes from — a directory (`policy.dir`) or a Git repository (`policy.git`), never
 * both.
 */
import { z } from 'zod';

function hasControl(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * A git remote Airlock may fetch from: `file://`, `http(s)://`, `ssh://` or `git://` URLs, an absolute
 * path, or scp-style `user@host:path`. Refused: anything starting with `-` (it would be read as an
 * option), `transport::address` remote helpers (`ext::` runs commands), whitespace and control
 * characters, relative paths (git would resolve them against its cache directory).
 */
const gitUrl = z
  .string()
  .min(1)
  .refine((v) => !v.startsWith('-'), 'must not start with "-"')
  .refine((v) => !/\s/.test(v) && !hasControl(v), 'must not contain whitespace or control characters')
  .refine((v) => !v.includes('::'), 'remote helpers ("transport::address") are not allowed')
  .refine(
    (v) =>
      /^(?:file|https?|ssh|git):\/\/./.test(v) ||
      v.startsWith('/') ||
      /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:./.test(v),
    'expected a git URL: file://, http(s)://, ssh://, git://, an absolute path, or user@host:path',
  );

/** A branch or tag name as `git check-ref-format` accepts it, without a leading `-`. */
const gitRef = z
  .string()
  .min(1)
  .max(255)
  .regex(
    /^[A-Za-z0-9_][A-Za-z0-9._/-]*$/,
    'expected a branch or tag name (letters, digits, "_", ".", "/", "-")',
  )
  .refine(
    (v) =>
      !v.includes('..') && !v.includes('//') && !v.endsWith('/') && !v.endsWith('.') && !v.endsWith('.lock'),
    'is not a valid git ref name',
  );

/** A relative directory inside the repository: `.` or `a/b` (no `..`, no leading `/`). */
const repoSubdir = z
  .string()
  .min(1)
  .transform((v) => v.replace(/\/+$/, '') || '.')
  .refine(
    (v) =>
      v === '.' || (!v.startsWith('/') && v.split('/').every((s) => s !== '' && s !== '.' && s !== '..')),
    'expected a relative directory inside the repository ("." or "policies/prod"), without ".."',
  )
  .refine((v) => !v.includes('\\') && !hasControl(v), 'must not contain backslashes or control characters');

/** `policy.git`: load the policy from a Git repository (docs/policy.md "Git source"). */
export const gitSourceSchema = z.strictObject({
  /** Remote to fetch (any git URL, including file://). */
  url: gitUrl,
  /** Branch or tag to follow. @default "main" */
  ref: gitRef.default('main'),
  /** How often to `git fetch`, in ms (100 ms – 1 h). @default 2000 */
  pollIntervalMs: z.number().int().min(100).max(3_600_000).default(2_000),
  /** Directory in the repository holding model.conf, policy.csv and tests/. @default "." */
  subdir: repoSubdir.default('.'),
});

/** `policy.git` with defaults applied. */
export type GitSourceConfig = z.output<typeof gitSourceSchema>;

/**
 * The `policy` section. `dir` and `git` are mutually exclusive (an error names `policy.git`); with
 * neither, `dir` is `policies`. The output always has a `dir` (relative to the config file until the
 * loader resolves it) so existing callers keep working; it is not used when `git` is set.
 */
export const policyConfigSchema = z
  .object({
    /** Directory with model.conf, policy.csv and tests/. Relative paths are relative to the config file. */
    dir: z.string().min(1).optional(),
    /** Git repository to follow instead of a directory. */
    git: gitSourceSchema.optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.dir !== undefined && v.git !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['git'],
        message:
          'policy.dir and policy.git are mutually exclusive: set policy.dir to load a directory or policy.git ' +
          'to follow a Git repository, not both',
      });
    }
  })
  .transform((v): { dir: string; git: GitSourceConfig | undefined } => ({
    dir: v.dir ?? 'policies',
    git: v.git,
  }))
  .prefault({});

/** The `policy` section with defaults applied. */
export type PolicyConfig = z.output<typeof policyConfigSchema>;
