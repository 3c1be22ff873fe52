/**
 * The policy's own tests: `tests/*.yaml` in the policy directory (docs/policy.md "Policy tests").
 *
 * File format (one mapping with a `cases` list; unknown keys are errors):
 *
 * ```yaml
 * cases:
 *   - name: analysts read posts        # optional
 *     role: analyst
 *     method: GET
 *     url: http://forum.test:3000/posts/1
 *     expect: allow                    # allow | deny
 * ```
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { PolicyError, PolicyTestError, RequestValidationError } from '../errors.js';
import { requestFromUrl } from '../request/normalize.js';
import { dottedPath, firstIssue } from '../validation.js';
import type { PolicyDecision, PolicySnapshot } from './types.js';

export const TESTS_DIR = 'tests';

const caseSchema = z.strictObject({
  name: z.string().min(1).optional(),
  role: z.string().min(1),
  method: z.string().min(1),
  url: z.string().min(1),
  expect: z.enum(['allow', 'deny', 'ask']),
});
const fileSchema = z.strictObject({
  cases: z.array(caseSchema).min(1, 'a test file needs at least one case'),
});

/** One decision case. */
export type PolicyTestCase = z.infer<typeof caseSchema>;

/** A case whose decision differs from `expect`. */
export interface PolicyTestFailure {
  /** `tests/NAME.yaml`, relative to the policy directory. */
  readonly file: string;
  /** 0-based index in `cases`. */
  readonly index: number;
  /** 1-based line of the case in the file. */
  readonly line: number;
  readonly case: PolicyTestCase;
  readonly actual: PolicyDecision;
  /** Multi-line, diff-like: the case, then `- expected:` and `+ actual:` lines. */
  readonly message: string;
}

export interface PolicyTestReport {
  /** Test files run, relative to the policy directory, sorted. */
  readonly files: readonly string[];
  /** Number of cases run. */
  readonly cases: number;
  readonly failures: readonly PolicyTestFailure[];
}

function lineOf(doc: Document, counter: LineCounter, p: readonly (string | number)[]): number | undefined {
  for (let len = p.length; len >= 0; len--) {
    const node = len === 0 ? doc.contents : doc.getIn(p.slice(0, len), true);
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    if (range) return counter.linePos(range[0]).line;
  }
  return undefined;
}

function caseLabel(c: PolicyTestCase, index: number): string {
  return `case ${index}${c.name ? ` "${c.name}"` : ''}`;
}

/**
 * Parses and validates one test file's text.
 * @param file name used in errors (`tests/forum.yaml`).
 * @returns the cases with their 1-based lines.
 * @throws PolicyError at `FILE:LINE` naming the case index and field for YAML errors, schema
 *   violations and URLs or methods that cannot be normalised.
 */
export function parsePolicyTestFile(file: string, text: string): { case: PolicyTestCase; line: number }[] {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false });
  const yamlError = doc.errors[0];
  if (yamlError) {
    const line = counter.linePos(yamlError.pos[0]).line;
    throw new PolicyError(
      `YAML syntax error: ${yamlError.message.split('\n')[0]}`,
      line ? `${file}:${line}` : file,
    );
  }
  const raw: unknown = doc.toJS();
  if (Array.isArray(raw)) {
    throw new PolicyError(
      'expected a mapping with a "cases" list ("cases:\\n  - role: ..."), got a bare list',
      `${file}:1`,
    );
  }
  const result = fileSchema.safeParse(raw);
  if (!result.success) {
    const f = firstIssue(result.error);
    if (!f) throw new PolicyError('invalid test file', file);
    const p = f.at;
    const line = lineOf(doc, counter, p);
    const where = p[0] === 'cases' && typeof p[1] === 'number' ? `case ${p[1]}: ` : '';
    const field = f.unknownKeys
      ? `unknown key "${f.unknownKeys[0]}"`
      : `${dottedPath(p.slice(p[0] === 'cases' ? 2 : 0)) || f.field || '(root)'}: ${f.message}`;
    throw new PolicyError(`${where}${field}`, line ? `${file}:${line}` : file);
  }
  const cases = result.data.cases;
  const contents = doc.get('cases', true);
  return cases.map((c, i) => {
    const node = isSeq(contents) ? contents.items[i] : undefined;
    const range = isMap(node) ? node.range : undefined;
    const line = range ? counter.linePos(range[0]).line : 1;
    try {
      requestFromUrl(c.url, c.method);
    } catch (err) {
      if (err instanceof RequestValidationError) {
        throw new PolicyError(`${caseLabel(c, i)}: ${err.field}: ${err.message}`, `${file}:${line}`);
      }
      throw err;
    }
    return { case: c, line };
  });
}

/** `allow`, `ask` (an ask rule: needs a person's approval, docs/approvals.md) or `deny`. */
export function verdictOf(d: PolicyDecision): 'allow' | 'deny' | 'ask' {
  return d.allowed ? 'allow' : d.reason === 'rule_ask' ? 'ask' : 'deny';
}

function describe(d: PolicyDecision): string {
  const verdict = verdictOf(d);
  return d.rule ? `${verdict} (${d.reason}: ${d.rule})` : `${verdict} (${d.reason})`;
}

/** Lists `tests/*.yaml` and `tests/*.yml` (sorted); none when the directory does not exist. */
export async function listPolicyTestFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(path.join(dir, TESTS_DIR));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new PolicyError(`cannot list ${TESTS_DIR}/: ${(err as Error).message}`, TESTS_DIR);
  }
  return names
    .filter((n) => /\.ya?ml$/.test(n) && !n.startsWith('.'))
    .sort()
    .map((n) => `${TESTS_DIR}/${n}`);
}

/** A test file's name (`tests/NAME.yaml`, relative to the policy directory) and text. */
export interface PolicyTestFile {
  readonly file: string;
  readonly text: string;
}

/**
 * Reads every `tests/*.yaml` / `tests/*.yml` of a policy directory, sorted by name.
 * @throws PolicyError when the directory or a file cannot be read.
 */
export async function readPolicyTestFiles(dir: string): Promise<PolicyTestFile[]> {
  const files = await listPolicyTestFiles(dir);
  return Promise.all(
    files.map(async (file) => {
      try {
        return { file, text: await readFile(path.join(dir, file), 'utf8') };
      } catch (err) {
        throw new PolicyError(`cannot read: ${(err as Error).message}`, file);
      }
    }),
  );
}

/**
 * Runs already-read test files against `snapshot` (what `PolicyStore` uses, so the tests run are
 * exactly the ones it fingerprinted).
 * @throws PolicyError (`tests/FILE.yaml:LINE`) when a test file is invalid.
 */
export function runPolicyTestFiles(
  snapshot: PolicySnapshot,
  files: readonly PolicyTestFile[],
): PolicyTestReport {
  const failures: PolicyTestFailure[] = [];
  let count = 0;
  for (const { file, text } of files) {
    const cases = parsePolicyTestFile(file, text);
    cases.forEach(({ case: c, line }, index) => {
      count++;
      const req = requestFromUrl(c.url, c.method);
      const actual = snapshot.decide({
        role: c.role,
        host: req.policyHost,
        path: req.path,
        method: req.method,
      });
      if (verdictOf(actual) === c.expect) return;
      const message =
        `${file}:${line} ${caseLabel(c, index)}: ${req.method} ${c.url} as ${c.role}\n` +
        `  - expected: ${c.expect}\n` +
        `  + actual:   ${describe(actual)}`;
      failures.push({ file, index, line, case: c, actual, message });
    });
  }
  return { files: files.map((f) => f.file), cases: count, failures };
}

/**
 * Runs every case of `dir/tests/*.yaml` against `snapshot`. A missing `tests/` directory means no
 * cases (and an empty report).
 * @returns the report; failing cases are in `failures`, not thrown.
 * @throws PolicyError (`tests/FILE.yaml:LINE`) when a test file is unreadable or invalid.
 */
export async function runPolicyTests(snapshot: PolicySnapshot, dir: string): Promise<PolicyTestReport> {
  return runPolicyTestFiles(snapshot, await readPolicyTestFiles(dir));
}

/**
 * Throws when a report has failures.
 * @throws PolicyTestError whose message lists every failure and whose `failures` holds their messages.
 */
export function assertPolicyTestsPass(report: PolicyTestReport): void {
  if (report.failures.length === 0) return;
  const n = report.failures.length;
  throw new PolicyTestError(
    `${n} of ${report.cases} policy test case${report.cases === 1 ? '' : 's'} failed:\n` +
      report.failures.map((f) => f.message).join('\n'),
    report.failures.map((f) => f.message),
  );
}
