/**
 * model.conf validation. Airlock accepts exactly one Casbin model (DESIGN.md "Policy files"), so that
 * the compiled index can promise Casbin's answers: anything else is a PolicyError naming
 * `model.conf:LINE`.
 */
import { newModelFromString } from 'casbin';
import { PolicyError } from '../errors.js';

export const MODEL_FILE = 'model.conf';

/** The canonical model.conf, as `airlock policy` writes it and docs/policy.md shows it. */
export const CANONICAL_MODEL = `[request_definition]
r = sub, host, path, method

[policy_definition]
p = sub, host, path, method, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub) && hostMatch(r.host, p.host) && pathMatch(r.path, p.path) && methodMatch(r.method, p.method)
`;

const EFFECT = 'some(where (p.eft == allow)) && !some(where (p.eft == deny))';

/** Functions the matcher may call, each with the only argument pair it may take. */
const MATCHER_TERMS: Readonly<Record<string, string>> = {
  g: 'sub',
  hostMatch: 'host',
  pathMatch: 'path',
  methodMatch: 'method',
};

const CANONICAL_MATCHER =
  'g(r.sub, p.sub) && hostMatch(r.host, p.host) && pathMatch(r.path, p.path) && methodMatch(r.method, p.method)';

interface Entry {
  value: string;
  line: number;
}

const SECTIONS: Readonly<Record<string, string>> = {
  request_definition: 'r',
  policy_definition: 'p',
  role_definition: 'g',
  policy_effect: 'e',
  matchers: 'm',
};

function err(message: string, line?: number): PolicyError {
  return new PolicyError(message, line === undefined ? MODEL_FILE : `${MODEL_FILE}:${line}`);
}

function tokens(value: string): string[] {
  return value.split(',').map((t) => t.trim());
}

function checkTokens(e: Entry, key: string, expected: readonly string[]): void {
  const got = tokens(e.value);
  if (got.length !== expected.length || got.some((t, i) => t !== expected[i])) {
    throw err(`"${key} = ${e.value}" must be "${key} = ${expected.join(', ')}"`, e.line);
  }
}

function checkMatcher(e: Entry): void {
  const seen = new Set<string>();
  for (const raw of e.value.split('&&')) {
    const term = raw.trim();
    const call = /^([A-Za-z_][A-Za-z0-9_]*)\s*\(\s*r\.([A-Za-z_]+)\s*,\s*p\.([A-Za-z_]+)\s*\)$/.exec(term);
    const fn = call?.[1] ?? /^([A-Za-z_][A-Za-z0-9_]*)\s*\(/.exec(term)?.[1];
    if (fn !== undefined && !Object.hasOwn(MATCHER_TERMS, fn)) {
      throw err(
        `matcher calls "${fn}"; only g, hostMatch, pathMatch and methodMatch (Airlock's safe matchers) are allowed`,
        e.line,
      );
    }
    const field = fn === undefined ? undefined : MATCHER_TERMS[fn];
    if (!call || field === undefined || call[2] !== field || call[3] !== field || seen.has(fn as string)) {
      throw err(
        `matcher must be the conjunction "${CANONICAL_MATCHER}" (terms in any order); "${term}" is not one of its terms`,
        e.line,
      );
    }
    seen.add(fn as string);
  }
  for (const fn of Object.keys(MATCHER_TERMS)) {
    if (!seen.has(fn))
      throw err(`matcher is missing the term ${fn}(r.${MATCHER_TERMS[fn]}, p.${MATCHER_TERMS[fn]})`, e.line);
  }
}

/**
 * Validates model.conf text. Accepted syntax is Casbin's INI subset: `[section]` lines, `key = value`
 * lines, `#`/`;` comments, blank lines. Line continuations, unknown sections or keys, and duplicates
 * are refused. The content must be the Airlock model ({@link CANONICAL_MODEL}); whitespace may differ
 * except inside the effect expression (Casbin compares that verbatim), and matcher terms may come in
 * any order.
 * @throws PolicyError located at `model.conf:LINE` (or `model.conf` for a missing section).
 */
export function validateModel(text: string): void {
  const entries = new Map<string, Entry>();
  const seenSections = new Set<string>();
  let section: string | undefined;
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  lines.forEach((rawLine, i) => {
    const lineNo = i + 1;
    let line = rawLine;
    for (const c of ['#', ';']) {
      const at = line.indexOf(c);
      if (at !== -1) line = line.slice(0, at);
    }
    line = line.trim();
    if (line === '') return;
    if (line.startsWith('[')) {
      if (!line.endsWith(']')) throw err(`malformed section header "${line}"`, lineNo);
      const name = line.slice(1, -1).trim();
      if (!Object.hasOwn(SECTIONS, name)) throw err(`unknown section [${name}]`, lineNo);
      if (seenSections.has(name)) throw err(`duplicate section [${name}]`, lineNo);
      seenSections.add(name);
      section = name;
      return;
    }
    if (line.endsWith('\\')) throw err('line continuations ("\\") are not supported', lineNo);
    const eq = line.indexOf('=');
    if (eq === -1) throw err(`expected "key = value", got "${line}"`, lineNo);
    if (section === undefined) throw err('key outside any section', lineNo);
    const key = line.slice(0, eq).trim();
    const want = SECTIONS[section] as string;
    if (key !== want) throw err(`unknown key "${key}" in [${section}] (expected "${want}")`, lineNo);
    if (entries.has(key)) throw err(`duplicate key "${key}"`, lineNo);
    entries.set(key, { value: line.slice(eq + 1).trim(), line: lineNo });
  });
  for (const [name, key] of Object.entries(SECTIONS)) {
    if (!entries.has(key)) throw err(`missing [${name}] with "${key} = ..."`);
  }
  const get = (k: string): Entry => entries.get(k) as Entry;
  checkTokens(get('r'), 'r', ['sub', 'host', 'path', 'method']);
  checkTokens(get('p'), 'p', ['sub', 'host', 'path', 'method', 'eft']);
  checkTokens(get('g'), 'g', ['_', '_']);
  const e = get('e');
  if (e.value !== EFFECT) throw err(`policy effect must be "e = ${EFFECT}" (deny overrides allow)`, e.line);
  checkMatcher(get('m'));
  try {
    newModelFromString(text);
  } catch (cause) {
    throw err(`Casbin rejects the model: ${(cause as Error).message}`);
  }
}
