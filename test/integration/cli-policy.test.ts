/**
 * `airlock policy check|test|explain|diff` as a user runs them: the built CLI (`node …/cli/main.js`)
 * in a child process, against the example policy, fixtures (broken ones included) and temp
 * directories. Asserts output lines and exit codes (0 ok, 1 findings/failures, 2 usage or input).
 *
 * The CLI is compiled once in beforeAll with `tsc -p tsconfig.build.json` into a private temp
 * directory (with a `node_modules` symlink and `"type": "module"`), so the test never races other
 * builds writing `dist/`. Each CLI start takes 0.3–2 s (it loads the whole CLI), hence the timeouts.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURES = path.join(ROOT, 'test/fixtures/policies');
const EXAMPLE = path.join(ROOT, 'policies');

let tmp: string;
let main: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function airlock(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [main, 'policy', ...args],
      { cwd: ROOT, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'airlock-cli-policy-'));
  const out = path.join(tmp, 'build');
  await mkdir(out);
  await symlink(path.join(ROOT, 'node_modules'), path.join(out, 'node_modules'), 'dir');
  await writeFile(path.join(out, 'package.json'), '{"type":"module"}\n');
  const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
  const result = await new Promise<Run>((resolve) => {
    execFile(
      process.execPath,
      [
        tsc,
        '-p',
        'tsconfig.build.json',
        '--outDir',
        path.join(out, 'dist'),
        '--declaration',
        'false',
        '--sourceMap',
        'false',
      ],
      { cwd: ROOT, timeout: 240_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }),
    );
  });
  main = path.join(out, 'dist/cli/main.js');
  // tsc emits even when files others are editing do not type-check; the CLI must exist and run.
  if (!existsSync(main)) throw new Error(`build failed:\n${result.stdout}${result.stderr}`);
}, 300_000);

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A policy directory in tmp from model.conf + policy.csv lines (+ test files). */
async function policyDir(name: string, lines: string[], tests: Record<string, string> = {}): Promise<string> {
  const dir = path.join(tmp, name);
  await mkdir(path.join(dir, 'tests'), { recursive: true });
  await cp(path.join(EXAMPLE, 'model.conf'), path.join(dir, 'model.conf'));
  await writeFile(path.join(dir, 'policy.csv'), lines.join('\n') + '\n');
  for (const [f, text] of Object.entries(tests)) await writeFile(path.join(dir, 'tests', f), text);
  return dir;
}

describe('airlock policy check', { timeout: 180_000 }, () => {
  it('passes the example policy', async () => {
    const r = await airlock('check', 'policies');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^ok: policies: 0 errors, 0 warnings \(10 rules, 2 role links, 3 roles, 31 test cases in 2 files; version [0-9a-f]{12}\)\n$/,
    );
  });

  it('prints FILE:LINE: SEVERITY: MESSAGE for every lint and exits 1 on errors', async () => {
    const r = await airlock('check', 'test/fixtures/policies/lint-findings');
    expect(r.code).toBe(1);
    const lines = r.stdout.trimEnd().split('\n');
    const p = 'test/fixtures/policies/lint-findings/policy.csv';
    expect(lines.slice(0, -1).map((l) => l.replace(/: (error|warning): .*\[(.*)\]$/, ' $1 $2'))).toEqual([
      `${p}:2 warning deny-carve-out`,
      `${p}:3 warning deny-carve-out`,
      `${p}:7 error unknown-parent`,
      `${p}:10 warning shadowed-allow`,
      `${p}:13 warning unreachable-rule`,
      `${p}:15 warning unreachable-rule`,
      `${p}:17 error dangerous-allow`,
      `${p}:19 error dangerous-allow`,
    ]);
    expect(lines[3]).toContain(
      'shadowed by broader deny rule policy.csv:2 (base: config.test:2379 /v3/auth/* *)',
    );
    expect(lines[0]).toContain(
      'deny carved out of the broader allow policy.csv:21 (analyst: config.test:2379 /v3/* GET)',
    );
    expect(lines.at(-1)).toMatch(/^FAIL: test\/fixtures\/policies\/lint-findings: 3 errors, 5 warnings/);
  });

  it('--json gives the same findings as data', async () => {
    const r = await airlock('check', '--json', path.join(FIXTURES, 'lint-findings'));
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout) as {
      ok: boolean;
      errors: number;
      warnings: number;
      findings: { line: number; id: string }[];
    };
    expect(j).toMatchObject({ ok: false, errors: 3, warnings: 5 });
    expect(j.findings.map((f) => `${f.line}:${f.id}`)).toEqual([
      '2:deny-carve-out',
      '3:deny-carve-out',
      '7:unknown-parent',
      '10:shadowed-allow',
      '13:unreachable-rule',
      '15:unreachable-rule',
      '17:dangerous-allow',
      '19:dangerous-allow',
    ]);
  });

  it('warnings alone pass, and fail with --strict', async () => {
    const dir = await policyDir('warn-only', [
      'p, r, a.test, /x/*, GET, deny',
      'p, r, a.test, /x/y, GET, allow',
    ]);
    const plain = await airlock('check', dir);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/policy\.csv:2: warning: allow can never match/);
    expect(plain.stdout).toMatch(/^ok: .*1 warning/m);
    const strict = await airlock('check', '--strict', dir);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toMatch(/^FAIL: .*0 errors, 1 warning .*\[--strict\]$/m);
  });

  it('reports broken policies and test files at their file:line and exits 1', async () => {
    const cycle = await airlock('check', path.join(FIXTURES, 'cycle'));
    expect(cycle.code).toBe(1);
    expect(cycle.stdout).toContain(
      `${path.join(FIXTURES, 'cycle')}/policy.csv:4: error: role inheritance cycle: a -> b -> c -> a (lines 1, 2, 4)`,
    );
    const badTests = await airlock('check', path.join(FIXTURES, 'bad-test-file'));
    expect(badTests.code).toBe(1);
    expect(badTests.stdout).toMatch(/bad-test-file\/tests\/reader\.yaml:\d+: error: case 1: expect: /);
    const missing = await airlock('check', path.join(FIXTURES, 'missing-model'));
    expect(missing.code).toBe(1);
    expect(missing.stdout).toMatch(/missing-model\/model\.conf: error: file is missing/);
    expect(missing.stdout).toMatch(/^FAIL: .*policy not loaded/m);
  });

  it('exits 2 on usage errors and unreadable directories', async () => {
    const none = await airlock('check');
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/missing required argument 'dir'/);
    const gone = await airlock('check', path.join(tmp, 'nope'));
    expect(gone.code).toBe(2);
    expect(gone.stderr).toMatch(/^airlock: cannot read policy directory .*nope: ENOENT/);
    const file = await airlock('check', path.join(EXAMPLE, 'policy.csv'));
    expect(file.code).toBe(2);
    expect(file.stderr).toMatch(/is not a directory/);
    expect((await airlock('check', '--bogus', 'policies')).code).toBe(2);
    expect((await airlock('frobnicate')).code).toBe(2);
  });
});

describe('airlock policy test', { timeout: 180_000 }, () => {
  it('runs the example tests', async () => {
    const r = await airlock('test', 'policies');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ok: policies: 31 cases in 2 files passed \(policy [0-9a-f]{12}\)\n$/);
  });

  it('prints a diff-like report and exits 1 on failing cases', async () => {
    const dir = path.join(FIXTURES, 'failing-tests');
    const r = await airlock('test', dir);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(
      `--- ${dir}/tests/reader.yaml:7 case 1 "writes are allowed (wrong on purpose)"\n` +
        '- expected allow\n' +
        '+ got      deny  role=reader PUT https://api.example.com/items/1  (no rule matched)\n' +
        `FAIL: ${dir}: 1 of 2 cases in 1 file failed (policy ${(/policy ([0-9a-f]{12})\)/.exec(r.stdout) ?? [])[1]})\n`,
    );
    const j = JSON.parse((await airlock('test', '--json', dir)).stdout) as { failures: unknown[] };
    expect(j.failures).toEqual([
      expect.objectContaining({
        line: 7,
        index: 1,
        expected: 'allow',
        actual: 'deny',
        reason: 'no_match',
        rule: null,
      }),
    ]);
  });

  it('names the deciding rule of a failing case', async () => {
    const dir = await policyDir(
      'wrong-deny',
      ['p, r, a.test, /*, GET, allow', 'p, r, a.test, /admin/*, GET, deny'],
      {
        'a.yaml':
          'cases:\n  - role: r\n    method: GET\n    url: https://a.test/admin/x\n    expect: allow\n',
      },
    );
    const r = await airlock('test', dir);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      '+ got      deny  role=r GET https://a.test/admin/x  (rule policy.csv:2: p, r, a.test, /admin/*, GET, deny)',
    );
  });

  it('an invalid policy or test file fails with its location', async () => {
    const r = await airlock('test', path.join(FIXTURES, 'bad-test-file'));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/tests\/reader\.yaml:\d+: error: case 1: expect/);
    expect((await airlock('test', path.join(tmp, 'nope'))).code).toBe(2);
  });
});

describe('airlock policy explain', { timeout: 180_000 }, () => {
  it('shows the decision, role chain, matching rules and why', async () => {
    const r = await airlock(
      'explain',
      'policies',
      '--role',
      'responder',
      'POST',
      'http://config.test:2379/v3/kv/put',
    );
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('decision: deny (rule_deny)');
    expect(lines[1]).toBe(
      'request:  role=responder POST config.test:2379/v3/kv/put   (http://config.test:2379/v3/kv/put)',
    );
    expect(r.stdout).toContain('  analyst   via responder -> analyst  (policies/policy.csv:30)');
    expect(r.stdout).toContain('  base   via responder -> analyst -> base  (policies/policy.csv:25)');
    expect(r.stdout).toContain(
      '  policies/policy.csv:17  p, base, config.test:2379, /v3/kv/put, *, deny   <- decides',
    );
    expect(r.stdout).toMatch(
      /^why: +deny overrides allow: policy\.csv:17 \(role base\) denies this request/m,
    );
  });

  it('normalises the URL like the gateway, and --casbin cross-checks', async () => {
    const r = await airlock(
      'explain',
      'policies',
      '-r',
      'analyst',
      'get',
      'http://FORUM.test:3000/posts/./1/../2?q=1',
      '--casbin',
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('request:  role=analyst GET forum.test:3000/posts/2');
    expect(r.stdout).toContain('decision: allow (rule_allow)');
    expect(r.stdout).toMatch(/^casbin: +allow \(p, analyst, forum\.test:3000, \/\*, GET, allow\) — agrees$/m);
  });

  it('explains and tests MCP tool calls on their virtual paths (issue 10), and checks mcp.yaml', async () => {
    const dir = await policyDir(
      'mcp',
      [
        'p, analyst, gh.test, /mcp, POST, allow',
        'p, analyst, gh.test, /mcp/tools/call/search_issues, MCP, allow',
        'p, analyst, gh.test, /mcp/tools/call/create_issue, MCP, deny',
        'p, analyst, gh.test, /mcp/tools/call/list_issues, *, allow',
      ],
      {
        'mcp.yaml': [
          'cases:',
          '  - {role: analyst, method: MCP, url: "http://gh.test/mcp/tools/call/search_issues", expect: allow}',
          '  - {role: analyst, method: MCP, url: "http://gh.test/mcp/tools/call/create_issue", expect: deny}',
          '  - {role: analyst, method: MCP, url: "http://gh.test/mcp/tools/call/list_issues", expect: deny}',
          '',
        ].join('\n'),
      },
    );
    await writeFile(
      path.join(dir, 'mcp.yaml'),
      'version: 1\nendpoints:\n  - {name: github, host: gh.test, path: /mcp}\n',
    );
    const t = await airlock('test', dir);
    expect(t.code, t.stdout + t.stderr).toBe(0);
    const e = await airlock(
      'explain',
      dir,
      '--casbin',
      '--role',
      'analyst',
      'MCP',
      'http://gh.test/mcp/tools/call/create_issue',
    );
    expect(e.stdout).toContain('decision: deny (rule_deny)');
    expect(e.stdout).toMatch(
      /^casbin: +deny \(p, analyst, gh\.test, \/mcp\/tools\/call\/create_issue, MCP, deny\) — agrees$/m,
    );
    // `*` never grants MCP (a named-only method): list_issues is granted for HTTP methods only.
    const star = await airlock(
      'explain',
      dir,
      '--casbin',
      '--role',
      'analyst',
      'MCP',
      'http://gh.test/mcp/tools/call/list_issues',
    );
    expect(star.stdout).toContain('decision: deny (no_match)');
    expect(star.stdout).toMatch(/— agrees$/m);
    await writeFile(
      path.join(dir, 'mcp.yaml'),
      'version: 1\nendpoints:\n  - {name: github, host: GH.test, path: /mcp}\n',
    );
    const bad = await airlock('check', dir);
    expect(bad.code).toBe(1);
    expect(bad.stdout + bad.stderr).toContain('mcp.yaml:3');
  });

  it('--json, unknown roles, and input errors (exit 2)', async () => {
    const j = JSON.parse(
      (await airlock('explain', 'policies', '--json', '--role', 'ghost', 'GET', 'http://forum.test:3000/'))
        .stdout,
    ) as { decision: { reason: string }; why: string; roles: unknown[] };
    expect(j.decision.reason).toBe('no_match');
    expect(j.why).toMatch(/role "ghost" is not named/);
    const badUrl = await airlock('explain', 'policies', '--role', 'analyst', 'GET', 'ftp://x/');
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toMatch(/^airlock: url: url must be an absolute http/);
    const encoded = await airlock(
      'explain',
      'policies',
      '--role',
      'analyst',
      'GET',
      'http://forum.test:3000/a%2Fb',
    );
    expect(encoded.code).toBe(2);
    const noRole = await airlock('explain', 'policies', 'GET', 'http://forum.test:3000/');
    expect(noRole.code).toBe(2);
    expect(noRole.stderr).toMatch(/required option '-r, --role <role>'/);
    const broken = await airlock(
      'explain',
      path.join(FIXTURES, 'cycle'),
      '--role',
      'a',
      'GET',
      'https://api.example.com/',
    );
    expect(broken.code).toBe(2);
    expect(broken.stderr).toMatch(/invalid policy: .*cycle\/policy\.csv:4: error: role inheritance cycle/);
  });
});

describe('airlock policy diff', { timeout: 180_000 }, () => {
  const event = (role: string | null, method: string, host: string, port: number, p: string) =>
    JSON.stringify({
      time: '2026-11-23T10:00:00.000Z',
      sessionId: 's1',
      role,
      method,
      scheme: 'http',
      host,
      port,
      path: p,
      decision: 'allow',
      rule: null,
      reason: 'rule_allow',
      status: 200,
      durationMs: 1,
      bytesOut: 0,
      bytesIn: 0,
      policyVersion: 'x',
    });

  it('lists the recorded calls whose decision changes, deduplicated with counts', async () => {
    const csv = await readFile(path.join(EXAMPLE, 'policy.csv'), 'utf8');
    const next = await policyDir(
      'pr',
      csv
        .replace('p, responder, forum.test:3000, /comments, POST, allow', '# responders no longer comment')
        .split('\n')
        .concat(['p, analyst, forum.test:3000, /posts/:id, DELETE, allow']),
    );
    const audit = path.join(tmp, 'audit.jsonl');
    await writeFile(
      audit,
      [
        ...Array.from({ length: 3 }, () => event('responder', 'POST', 'forum.test', 3000, '/comments')),
        event('analyst', 'DELETE', 'forum.test', 3000, '/posts/1'),
        event('analyst', 'GET', 'forum.test', 3000, '/posts/1'),
        event(null, 'GET', 'forum.test', 3000, '/'),
        '',
      ].join('\n'),
    );
    const r = await airlock('diff', 'policies', next, '--audit', audit);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')).toEqual([
      'replayed 5 of 6 recorded calls (3 distinct); skipped 1: 1 without a role, 0 without a usable target',
      `2 distinct calls (4 recorded events) change decision from policies to ${next}:`,
      '  allow -> deny   x3  role=responder POST forum.test:3000/comments',
      '      old: allow (rule policy.csv:32: p, responder, forum.test:3000, /comments, POST, allow)',
      '      new: deny (no rule matched)',
      '  deny -> allow  x1  role=analyst DELETE forum.test:3000/posts/1',
      '      old: deny (no rule matched)',
      `      new: allow (rule policy.csv:${csv.split('\n').length + 1}: p, analyst, forum.test:3000, /posts/:id, DELETE, allow)`,
      '',
    ]);
    const j = JSON.parse((await airlock('diff', '--json', 'policies', next, '-a', audit)).stdout) as {
      changes: { role: string; count: number }[];
      changedEvents: number;
    };
    expect(j.changes.map((c) => [c.role, c.count])).toEqual([
      ['responder', 3],
      ['analyst', 1],
    ]);
    expect(j.changedEvents).toBe(4);
    const same = await airlock('diff', 'policies', 'policies', '--audit', audit);
    expect(same.stdout).toMatch(/no decision changes between policies and policies/);
  });

  it('exits 2 for a missing --audit, unreadable or malformed audit files and invalid policies', async () => {
    const noAudit = await airlock('diff', 'policies', 'policies');
    expect(noAudit.code).toBe(2);
    expect(noAudit.stderr).toMatch(/required option '-a, --audit <file>'/);
    const gone = await airlock('diff', 'policies', 'policies', '--audit', path.join(tmp, 'none.jsonl'));
    expect(gone.code).toBe(2);
    expect(gone.stderr).toMatch(/cannot read audit file/);
    const bad = path.join(tmp, 'bad.jsonl');
    await writeFile(bad, `${event('a', 'GET', 'x.test', 80, '/')}\nnot json\n`);
    const malformed = await airlock('diff', 'policies', 'policies', '--audit', bad);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toMatch(/bad\.jsonl:2: not JSON/);
    const broken = await airlock('diff', 'policies', path.join(FIXTURES, 'cycle'), '--audit', bad);
    expect(broken.code).toBe(2);
  });
});

describe('airlock policy suggest', { timeout: 180_000 }, () => {
  const AUDIT = 'test/fixtures/audit/suggest.jsonl';

  it('proposes lines, tests and their diff; names the deny that blocks a call and exits 1 for it', async () => {
    const r = await airlock('suggest', 'policies', '--audit', AUDIT);
    expect(r.code).toBe(1);
    const out = r.stdout.split('\n');
    expect(out.slice(0, 4)).toEqual([
      'learned from 14 of 16 recorded calls (13 distinct); skipped 2: 0 filtered out, 1 without a role, 1 not decided by the policy, 0 without a usable target',
      'already allowed: 1 distinct call',
      'blocked by deny rules, nothing suggested (1):',
      '  role=analyst POST config.test:2379/v3/kv/put  x1  denied by policy.csv:17: p, base, config.test:2379, /v3/kv/put, *, deny',
    ]);
    expect(out.filter((l) => l.startsWith('+ p, '))).toEqual([
      '+ p, agent, api.test, /items/:id, GET, allow',
      '+ p, agent, forum.test:3000, /posts/:id, GET, allow',
      '+ p, agent, forum.test:3000, /users, GET, allow',
      '+ p, agent, forum.test:3000, /posts/1/comments, POST, allow',
      '+ p, agent, forum.test:3000, /posts/2/comments, POST, allow',
      '+ p, agent, git.test:8080, /repo.git/*, GET, allow',
    ]);
    expect(r.stdout).toContain(
      '+ # suggested from 4 denied calls: GET forum.test:3000 /posts/1, /posts/2 (x2), /posts/3\n',
    );
    expect(r.stdout).toMatch(/\n@@ -34,0 \+35,14 @@\n/);
    expect(r.stdout).toContain(
      '  11 distinct calls (12 recorded events) change decision from policies to proposal:',
    );
  });

  it('--role: applying the patch and the tests gives a policy that passes check and test', async () => {
    const r = await airlock('suggest', 'policies', '--audit', AUDIT, '--role', 'agent', '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as {
      ok: boolean;
      lines: { text: string; covers: { url: string }[] }[];
      blocked: unknown[];
      addition: string;
      tests: string;
      diff: { changedEvents: number };
    };
    expect(j.ok).toBe(true);
    expect(j.blocked).toEqual([]);
    expect(j.lines).toHaveLength(6);
    expect(j.lines[0]?.covers.map((c) => c.url)).toEqual([
      'https://api.test/items/0f8c2a9e-5b1d-4c3e-9a7f-1e2d3c4b5a69',
      'https://api.test/items/7d3e1f20-8a4b-4c5d-b6e7-f8091a2b3c4d',
    ]);
    expect(j.diff.changedEvents).toBe(12);
    const csv = await readFile(path.join(EXAMPLE, 'policy.csv'), 'utf8');
    const dir = await policyDir('suggested', (csv + j.addition).split('\n'), { 'suggested.yaml': j.tests });
    const test = await airlock('test', dir);
    expect(test.code).toBe(0);
    expect(test.stdout).toMatch(/^ok: .*: 11 cases in 1 file passed/);
    expect((await airlock('check', dir)).code).toBe(0);
    // Nothing left to suggest once applied.
    const again = await airlock('suggest', dir, '--audit', AUDIT, '--role', 'agent');
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to suggest');
    expect(again.stdout).toContain('already allowed: 11 distinct calls');
  });

  it('--session and --since filter; exits 2 for a bad --since, a missing --audit or a malformed file', async () => {
    const none = await airlock('suggest', 'policies', '-a', AUDIT, '--session', 's9');
    expect(none.code).toBe(0);
    expect(none.stdout).toContain('nothing to suggest');
    const late = await airlock(
      'suggest',
      'policies',
      '-a',
      AUDIT,
      '--since',
      '2026-11-23T10:11:00Z',
      '--json',
    );
    expect((JSON.parse(late.stdout) as { lines: { text: string }[] }).lines.map((l) => l.text)).toEqual([
      'p, agent, git.test:8080, /repo.git/objects/4b/825dc642cb6eb9a060e54bf8d69288fbee4904, GET, allow',
    ]);
    const bad = await airlock('suggest', 'policies', '-a', AUDIT, '--since', 'yesterday');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--since "yesterday"/);
    expect((await airlock('suggest', 'policies')).code).toBe(2);
    const broken = path.join(tmp, 'broken.jsonl');
    await writeFile(broken, 'not json\n');
    const malformed = await airlock('suggest', 'policies', '-a', broken);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toMatch(/broken\.jsonl:1: not JSON/);
  });

  it('complain mode: learns from would_deny events, explain says what the gateway would do', async () => {
    const dir = await policyDir('complain', ['p, agent, forum.test:3000, /health, GET, allow']);
    await writeFile(path.join(dir, 'modes.yaml'), 'version: 1\ncomplain: [learner]\n');
    const check = await airlock('check', dir);
    expect(check.code).toBe(0);
    const ev = (method: string, p: string, decision: string) =>
      JSON.stringify({
        time: '2026-11-29T10:00:00.000Z',
        sessionId: 's1',
        role: 'learner',
        method,
        scheme: 'http',
        host: 'forum.test',
        port: 3000,
        path: p,
        decision,
        rule: null,
        reason: 'no_match',
        status: decision === 'would_deny' ? 200 : 403,
        durationMs: 1,
        bytesOut: 0,
        bytesIn: 0,
        policyVersion: 'x',
      });
    const audit = path.join(tmp, 'complain.jsonl');
    await writeFile(
      audit,
      [
        ev('GET', '/posts/1', 'would_deny'),
        ev('GET', '/posts/2', 'would_deny'),
        ev('POST', '/posts', 'deny'),
      ].join('\n') + '\n',
    );
    const j = JSON.parse(
      (await airlock('suggest', dir, '-a', audit, '--role', 'learner', '--json')).stdout,
    ) as {
      lines: { text: string }[];
    };
    expect(j.lines.map((l) => l.text)).toEqual([
      'p, learner, forum.test:3000, /posts/:id, GET, allow',
      'p, learner, forum.test:3000, /posts, POST, allow',
    ]);
    const get = await airlock('explain', dir, '--role', 'learner', 'GET', 'http://forum.test:3000/posts/1');
    expect(get.stdout).toContain('decision: deny (no_match)');
    expect(get.stdout).toMatch(
      /complain: role learner is in complain mode \(modes\.yaml\): the gateway forwards this denied GET and audits it would_deny/,
    );
    const post = await airlock('explain', dir, '--role', 'learner', 'POST', 'http://forum.test:3000/posts');
    expect(post.stdout).toMatch(
      /but POST is not a safe method \(GET, HEAD, OPTIONS\): the gateway refuses this call/,
    );
    const jx = JSON.parse(
      (await airlock('explain', dir, '--json', '--role', 'agent', 'GET', 'http://forum.test:3000/posts/1'))
        .stdout,
    ) as { mode: string; wouldDeny: boolean };
    expect(jx).toMatchObject({ mode: 'enforce', wouldDeny: false });
    await writeFile(path.join(dir, 'modes.yaml'), 'version: 1\ncomplain: [learner, learner]\n');
    const bad = await airlock('check', dir);
    expect(bad.code).toBe(1);
    expect(bad.stdout + bad.stderr).toMatch(
      /modes\.yaml:2: error: complain\.1: role "learner" is listed twice/,
    );
  });
});
