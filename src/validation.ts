/**
 * Zod issues as field paths: the one place that turns a `ZodError` into "which key, what is wrong",
 * shared by the config loader, the API's body validation, policy test files and the gateway's
 * options. Each caller words its own message (`unknown key "x"`, `unknown field "x"`, `x: msg`); the
 * path rules live here.
 */
import type { z } from 'zod';

/** A path segment as zod reports it, without symbols (which never occur in parsed JSON/YAML). */
export type PathSegment = string | number;

/** The first issue of a `ZodError`, located. */
export interface FieldIssue {
  /** zod's issue, for callers that reword particular codes. */
  readonly issue: z.core.$ZodIssue;
  /** Where the issue is: zod's path (an unknown key's parent object), e.g. `['cases', 0]`. */
  readonly at: readonly PathSegment[];
  /**
   * The offending field as a dotted path (`gateway.hostAliases.forum`, `command.0`): for an unknown
   * key the key itself (`gateway.prot`), otherwise {@link at} joined; `''` for the value as a whole.
   */
  readonly field: string;
  /** The unknown keys (the first is named in {@link field}), or null when the issue is another one. */
  readonly unknownKeys: readonly string[] | null;
  /** zod's message (or the schema's own). */
  readonly message: string;
}

/** Joins path segments with dots (`['env', 'HTTP_PROXY']` → `env.HTTP_PROXY`); `[]` → `''`. */
export function dottedPath(segments: readonly PropertyKey[]): string {
  return segments.map(String).join('.');
}

/**
 * Locates the first issue of `error`.
 * @returns null when `error` has no issues (zod never produces that, but the type allows it).
 */
export function firstIssue(error: z.ZodError): FieldIssue | null {
  const issue = error.issues[0];
  if (!issue) return null;
  const at = issue.path.filter((k): k is PathSegment => typeof k !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    return {
      issue,
      at,
      field: dottedPath([...issue.path, issue.keys[0] ?? '']),
      unknownKeys: issue.keys,
      message: issue.message,
    };
  }
  return { issue, at, field: dottedPath(issue.path), unknownKeys: null, message: issue.message };
}
