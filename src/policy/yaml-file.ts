/**
 * The optional YAML files of a policy directory (budgets.yaml, credentials.yaml, mcp.yaml) are read
 * the same way: YAML parsed with line positions, a mapping at the top, validated by a zod schema,
 * and every error a {@link PolicyError} located at `FILE:LINE` and naming the field path, so
 * `airlock policy check` points at the offending line whatever the file.
 */
import { isMap, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { PolicyError } from '../errors.js';
import { firstIssue } from '../validation.js';

/** A validated policy YAML file, and where each of its nodes is. */
export interface PolicyYamlFile<T> {
  readonly data: T;
  /** `FILE:LINE` of the node at `path` (or of its nearest ancestor that has a position), else `FILE`. */
  at(path: readonly (string | number)[]): string;
  /** The 1-based line of the node at `path` (or of its nearest ancestor), if known. */
  line(path: readonly (string | number)[]): number | undefined;
}

function lineOf(doc: Document, counter: LineCounter, p: readonly (string | number)[]): number | undefined {
  for (let len = p.length; len >= 0; len--) {
    const node = len === 0 ? doc.contents : doc.getIn(p.slice(0, len), true);
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    if (range) return counter.linePos(range[0]).line;
  }
  return undefined;
}

/**
 * Parses and validates one policy YAML file.
 * @param file the file's name in the policy directory (`budgets.yaml`), used in error locations.
 * @param expected what the top level must hold, for the error when it is not a mapping
 *   (`"version: 1" and a "budgets" list`).
 * @throws PolicyError at `FILE:LINE`: a YAML syntax error, a top level that is not a mapping, or the
 *   first schema issue as `field.path: message`.
 */
export function parsePolicyYaml<S extends z.ZodType>(
  text: string,
  file: string,
  schema: S,
  expected: string,
): PolicyYamlFile<z.output<S>> {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false });
  const at = (p: readonly (string | number)[]): string => {
    const line = lineOf(doc, counter, p);
    return line ? `${file}:${line}` : file;
  };
  const yamlError = doc.errors[0];
  if (yamlError) {
    const line = counter.linePos(yamlError.pos[0]).line;
    throw new PolicyError(
      `YAML syntax error: ${yamlError.message.split('\n')[0]}`,
      line ? `${file}:${line}` : file,
    );
  }
  if (!isMap(doc.contents)) throw new PolicyError(`expected a mapping: ${expected}`, `${file}:1`);
  const result = schema.safeParse(doc.toJS());
  if (!result.success) {
    const f = firstIssue(result.error);
    throw new PolicyError(
      f ? `${f.field || '(file)'}: ${f.message}` : `invalid ${file}`,
      f ? at(f.at) : file,
    );
  }
  return { data: result.data as z.output<S>, at, line: (p) => lineOf(doc, counter, p) };
}
