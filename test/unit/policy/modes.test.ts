/**
 * modes.yaml (complain mode) and the one map of optional policy files it travels in: parsing and its
 * errors, the version hash (identical to the per-file formula it replaced), every source carrying it
 * (directory, Git commit, materialised directory), the warning while a role is in complain mode, and
 * the statement that complain mode never changes a decision (compiled index = Casbin = no modes.yaml).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PolicyError } from '../../../src/errors.js';
import { newCasbinEnforcer } from '../../../src/policy/casbin.js';
import { GitPolicySource } from '../../../src/policy/git-source.js';
import { materializePolicy } from '../../../src/policy/live-dir.js';
import { compilePolicy, loadPolicyDir, policyVersion, readPolicyDir } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import { MODES_FILE, parseModes } from '../../../src/policy/modes.js';
import { OPTIONAL_POLICY_FILES } from '../../../src/policy/optional-files.js';
import { PolicyStore } from '../../../src/policy/store.js';
import type { PolicyRequest } from '../../../src/policy/types.js';

const CSV = 'p, analyst, forum.test, /posts/*, GET, allow\np, analyst, forum.test, /posts/9, GET, deny\n';
const MODES = 'version: 1\ncomplain: [learner]\n';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-modes-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function errorOf(text: string): PolicyError {
  try {
    parseModes(text);
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return err as PolicyError;
  }
  throw new Error('expected a PolicyError');
}

function logger() {
  const lines: { level: string; obj: Record<string, unknown>; msg?: string }[] = [];
  const log = (level: string) => (obj: object, msg?: string) =>
    void lines.push({ level, obj: obj as Record<string, unknown>, msg });
  return { lines, info: log('info'), warn: log('warn'), error: log('error') };
}

describe('modes.yaml', () => {
  it('lists the roles in complain mode', () => {
    expect([...parseModes(MODES).complain]).toEqual(['learner']);
    expect([...parseModes('version: 1\n').complain]).toEqual([]);
    expect([...parseModes('version: 1\ncomplain:\n  - a\n  - b\n').complain]).toEqual(['a', 'b']);
  });

  it('rejects bad input at modes.yaml:LINE naming the field', () => {
    expect(errorOf('version: 2\n').message).toMatch(/^modes\.yaml:1: version: /);
    expect(errorOf('version: 1\ncomplain: [a, a]\n').message).toBe(
      'modes.yaml:2: complain.1: role "a" is listed twice',
    );
    expect(errorOf('version: 1\ncomplain:\n  - ok\n  - "a b"\n').message).toMatch(
      /^modes\.yaml:4: complain\.1: must be a role name/,
    );
    expect(errorOf('version: 1\ncomplain: ["*"]\n').message).toMatch(/complain\.0: must be a role name/);
    expect(errorOf('version: 1\nenforce: [a]\n').message).toMatch(/^modes\.yaml:1: /);
    expect(errorOf('- learner\n').message).toMatch(/^modes\.yaml:1: expected a mapping/);
    expect(errorOf('version: 1\ncomplain: learner\n').message).toMatch(/^modes\.yaml:2: complain: /);
  });

  it('is a compile error of the policy, and a role it lists is a known role (may start with no rules)', () => {
    expect(() =>
      compilePolicy(CANONICAL_MODEL, CSV, { files: { 'modes.yaml': 'version: 1\ncomplain: 3\n' } }),
    ).toThrow(/^modes\.yaml:2: /);
    const p = compilePolicy(CANONICAL_MODEL, CSV, { files: { 'modes.yaml': MODES } });
    expect([...p.complainRoles]).toEqual(['learner']);
    expect(p.roles.has('learner')).toBe(true);
    // budgets.yaml may name it like any role of the policy
    const budgets =
      'version: 1\nbudgets:\n  - name: b\n    role: learner\n    host: forum.test\n    requestsPerMinute: 5\n';
    expect(() =>
      compilePolicy(CANONICAL_MODEL, CSV, { files: { 'modes.yaml': MODES, 'budgets.yaml': budgets } }),
    ).not.toThrow();
    expect(compilePolicy(CANONICAL_MODEL, CSV).complainRoles.size).toBe(0);
  });
});

describe('the optional files travel as one map', () => {
  it('hashes exactly as the per-file formula did (budgets, credentials, mcp), modes.yaml last', () => {
    /** The formula before the map (commit d4a3dea), written out: versions must never change. */
    const before = (budgets: string | null, credentials: string | null, mcp: string | null): string => {
      const h = createHash('sha256').update(CANONICAL_MODEL).update(CSV);
      if (budgets !== null) h.update('\0budgets.yaml\0').update(budgets);
      if (credentials !== null) h.update('\0credentials.yaml\0').update(credentials);
      if (mcp !== null) h.update('\0mcp.yaml\0').update(mcp);
      return h.digest('hex').slice(0, 12);
    };
    for (let mask = 0; mask < 8; mask++) {
      const b = mask & 1 ? 'B' : null;
      const c = mask & 2 ? 'C' : null;
      const m = mask & 4 ? 'M' : null;
      const files = {
        ...(b !== null ? { 'budgets.yaml': b } : {}),
        ...(c !== null ? { 'credentials.yaml': c } : {}),
        ...(m !== null ? { 'mcp.yaml': m } : {}),
      };
      expect(policyVersion(CANONICAL_MODEL, CSV, files), `mask ${mask}`).toBe(before(b, c, m));
      // the key order of the map does not matter, only the fixed file order does
      const reversed = Object.fromEntries(Object.entries(files).reverse());
      expect(policyVersion(CANONICAL_MODEL, CSV, reversed)).toBe(before(b, c, m));
    }
    expect(OPTIONAL_POLICY_FILES.at(-1)).toBe(MODES_FILE);
    const withModes = createHash('sha256')
      .update(CANONICAL_MODEL)
      .update(CSV)
      .update('\0mcp.yaml\0')
      .update('M')
      .update('\0modes.yaml\0')
      .update(MODES)
      .digest('hex')
      .slice(0, 12);
    expect(policyVersion(CANONICAL_MODEL, CSV, { 'modes.yaml': MODES, 'mcp.yaml': 'M' })).toBe(withModes);
    expect(compilePolicy(CANONICAL_MODEL, CSV, { files: { 'modes.yaml': MODES } }).version).not.toBe(
      compilePolicy(CANONICAL_MODEL, CSV).version,
    );
  });

  it('a directory, its materialised copy and a Git commit of it give the same snapshot', async () => {
    const src = path.join(dir, 'src');
    await mkdir(src);
    await writeFile(path.join(src, 'model.conf'), CANONICAL_MODEL);
    await writeFile(path.join(src, 'policy.csv'), CSV);
    await writeFile(path.join(src, 'modes.yaml'), MODES);
    const read = await readPolicyDir(src);
    expect(read.files).toEqual({ 'modes.yaml': MODES });
    const loaded = await loadPolicyDir(src);
    expect([...loaded.complainRoles]).toEqual(['learner']);
    expect(loaded.version).toBe(policyVersion(CANONICAL_MODEL, CSV, { 'modes.yaml': MODES }));

    // materialised (the Git source's copy for the gateway): modes.yaml written, absent files dangle
    const live = path.join(dir, 'live');
    materializePolicy(live, loaded);
    expect(await readFile(path.join(live, 'modes.yaml'), 'utf8')).toBe(MODES);
    expect((await readPolicyDir(live)).files).toEqual({ 'modes.yaml': MODES });
    const store = await PolicyStore.open(live, { watch: false, pollIntervalMs: 0 });
    expect([...store.current()!.complainRoles]).toEqual(['learner']);
    expect(store.current()!.version).toBe(loaded.version);
    await store.close();

    // a Git commit of the directory
    const repo = path.join(dir, 'repo');
    const git = (...args: string[]) =>
      execFileSync('git', args, {
        cwd: repo,
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: 't',
          GIT_AUTHOR_EMAIL: 't@t',
          GIT_COMMITTER_NAME: 't',
          GIT_COMMITTER_EMAIL: 't@t',
        },
      });
    await mkdir(repo);
    git('init', '--quiet', '--initial-branch=main');
    for (const f of ['model.conf', 'policy.csv', 'modes.yaml'])
      await writeFile(path.join(repo, f), await readFile(path.join(src, f)));
    git('add', '.');
    git('commit', '--quiet', '-m', 'learner in complain mode');
    const fromGit = await GitPolicySource.open({
      url: `file://${repo}`,
      cacheDir: path.join(dir, 'cache.git'),
      pollIntervalMs: 0,
    });
    expect(fromGit.lastError()).toBeNull();
    expect([...fromGit.current()!.complainRoles]).toEqual(['learner']);
    expect(fromGit.current()!.source.files).toEqual({ 'modes.yaml': MODES });
    await fromGit.close();
  });

  it('a bad modes.yaml keeps the last good policy, like any bad edit', async () => {
    await writeFile(path.join(dir, 'model.conf'), CANONICAL_MODEL);
    await writeFile(path.join(dir, 'policy.csv'), CSV);
    const store = await PolicyStore.open(dir, { watch: false, pollIntervalMs: 0 });
    const good = store.current()!.version;
    await writeFile(path.join(dir, 'modes.yaml'), 'version: 1\ncomplain: [a, a]\n');
    const r = await store.reload();
    expect(r.changed).toBe(false);
    expect(r.error).toMatch(/^modes\.yaml:2: complain\.1: role "a" is listed twice/);
    expect(store.current()!.version).toBe(good);
    expect(store.current()!.complainRoles.size).toBe(0);
    await store.close();
  });
});

describe('complain mode warning', () => {
  it('is logged at the first load and at every reload while a role is in complain mode', async () => {
    await writeFile(path.join(dir, 'model.conf'), CANONICAL_MODEL);
    await writeFile(path.join(dir, 'policy.csv'), CSV);
    await writeFile(path.join(dir, 'modes.yaml'), MODES);
    const log = logger();
    const store = await PolicyStore.open(dir, { watch: false, pollIntervalMs: 0, logger: log });
    const warnings = () => log.lines.filter((l) => l.level === 'warn' && /complain mode/.test(l.msg ?? ''));
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]!.obj).toMatchObject({ complain: ['learner'], version: store.current()!.version });
    await writeFile(path.join(dir, 'policy.csv'), CSV + 'p, learner, forum.test, /posts/1, GET, allow\n');
    await store.reload();
    expect(warnings()).toHaveLength(2);
    await rm(path.join(dir, 'modes.yaml'));
    await store.reload();
    expect(store.current()!.complainRoles.size).toBe(0);
    expect(warnings()).toHaveLength(2); // no role in complain mode: no warning
    await store.close();
  });
});

describe('complain mode never changes a decision', () => {
  const ROLES = ['learner', 'analyst', 'other'];
  const rule = fc
    .tuple(
      fc.constantFrom(...ROLES),
      fc.constantFrom('a.test', '*.a.test', 'b.test:8080'),
      fc.constantFrom('/', '/x', '/x/*', '/x/:id', '/*'),
      fc.constantFrom('GET', 'HEAD', 'POST', 'DELETE', '*'),
      fc.constantFrom('allow', 'allow', 'deny'),
    )
    .map((f) => `p, ${f.join(', ')}`);
  const link = fc.constantFrom('g, learner, analyst', 'g, other, learner');
  const policyText = fc
    .array(fc.oneof({ weight: 6, arbitrary: rule }, { weight: 1, arbitrary: link }), { maxLength: 30 })
    .map((lines) => [...new Set(lines)].join('\n') + '\n');
  const request: fc.Arbitrary<PolicyRequest> = fc.record({
    role: fc.constantFrom(...ROLES, 'nobody'),
    host: fc.constantFrom('a.test', 'x.a.test', 'b.test:8080', 'c.test'),
    path: fc.constantFrom('/', '/x', '/x/1', '/x/1/2', '/y'),
    method: fc.constantFrom('GET', 'HEAD', 'OPTIONS', 'POST', 'DELETE'),
  });

  it('the compiled index with modes.yaml answers as Casbin and as the same policy without it', async () => {
    await fc.assert(
      fc.asyncProperty(
        policyText,
        fc.subarray(ROLES),
        fc.array(request, { minLength: 50, maxLength: 50 }),
        async (text, complain, reqs) => {
          const modes = `version: 1\ncomplain: [${complain.join(', ')}]\n`;
          const withModes = compilePolicy(CANONICAL_MODEL, text, { files: { 'modes.yaml': modes } });
          const without = compilePolicy(CANONICAL_MODEL, text);
          const casbin = await newCasbinEnforcer(CANONICAL_MODEL, text);
          for (const r of reqs) {
            const ours = withModes.decide(r);
            expect(ours).toEqual(without.decide(r));
            const [allowed] = casbin.enforceExSync(r.role, r.host, r.path, r.method) as [boolean, string[]];
            expect(ours.allowed, `${JSON.stringify(r)}\n${text}`).toBe(allowed);
          }
        },
      ),
      { numRuns: 60 },
    );
  }, 60_000);
});
