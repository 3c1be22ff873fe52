/**
 * mcp.yaml (issue 10): parsing with file:line errors, endpoint matching, the virtual-path encoding of
 * tool names and resource URIs, the version hash, loading with the policy directory, and MCP as a
 * named-only method (a `*` rule never grants a tool call).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { PolicyError } from '../../../src/errors.js';
import { isNormalizedPath } from '../../../src/request/normalize.js';
import { lintPolicy } from '../../../src/policy/lint.js';
import { parseAuditLines, replayCalls } from '../../../src/policy/replay.js';
import { compilePolicy, loadPolicyDir, policyVersion } from '../../../src/policy/load.js';
import { mcpSegment, mcpVirtualPath, parseMcp } from '../../../src/policy/mcp.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';

const GOOD = `version: 1
endpoints:
  - name: github
    host: gh.test
    path: /mcp
  - name: local
    host: tools.test:8080
    path: /
`;

const CSV = [
  'p, analyst, gh.test, /mcp, POST, allow',
  'p, analyst, gh.test, /mcp/tools/call/search_issues, MCP, allow',
  'p, analyst, gh.test, /mcp/tools/call/create_issue, MCP, deny',
  'p, analyst, gh.test, /mcp/tools/call/*, GET, allow',
  'p, wide, gh.test, /*, *, allow',
  '',
].join('\n');

function errorOf(text: string): PolicyError {
  try {
    parseMcp(text);
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return err as PolicyError;
  }
  throw new Error('expected a PolicyError');
}

describe('mcp.yaml', () => {
  it('parses endpoints and matches them by policy host and exact path', () => {
    const set = parseMcp(GOOD);
    expect(set.size).toBe(2);
    expect(set.match('gh.test', '/mcp')?.name).toBe('github');
    expect(set.match('gh.test', '/mcp/')).toBeNull();
    expect(set.match('gh.test', '/mcp/x')).toBeNull();
    expect(set.match('gh.test:8443', '/mcp')).toBeNull();
    expect(set.match('tools.test:8080', '/')?.name).toBe('local');
  });

  it("matches the older transport's SSE stream by its ssePath", () => {
    const set = parseMcp(
      'version: 1\nendpoints:\n  - name: legacy\n    host: gh.test\n    path: /messages\n    transport: sse\n    ssePath: /sse\n',
    );
    expect(set.matchStream('gh.test', '/sse')?.name).toBe('legacy');
    expect(set.matchStream('gh.test', '/messages')).toBeNull();
    expect(set.match('gh.test', '/sse')).toBeNull();
  });

  it.each([
    ['version: 2\nendpoints: []\n', 'mcp.yaml:1', 'version'],
    [
      'version: 1\nendpoints:\n  - name: a\n    host: GH.test\n    path: /mcp\n',
      'mcp.yaml:4',
      'endpoints.0.host',
    ],
    [
      'version: 1\nendpoints:\n  - name: a\n    host: gh.test\n    path: /mcp/../x\n',
      'mcp.yaml:5',
      'endpoints.0.path',
    ],
    [
      'version: 1\nendpoints:\n  - name: a\n    host: gh.test\n    path: /mcp/\n',
      'mcp.yaml:5',
      'trailing slash',
    ],
    [
      'version: 1\nendpoints:\n  - name: a\n    host: gh.test\n    path: /mcp\n  - name: b\n    host: gh.test\n    path: /mcp\n',
      'mcp.yaml:8',
      'declared twice',
    ],
    [
      'version: 1\nendpoints:\n  - name: a\n    host: gh.test\n    path: /mcp\n    extra: 1\n',
      'mcp.yaml',
      'extra',
    ],
    ['version: 1\nendpoints: [\n', 'mcp.yaml:', 'YAML syntax error'],
    ['- a\n', 'mcp.yaml:1', 'expected a mapping'],
    [
      'version: 1\nendpoints:\n  - name: a\n    host: gh.test\n    path: /mcp\n    ssePath: /sse\n',
      'mcp.yaml:6',
      'ssePath is for transport: sse only',
    ],
  ])('refuses %j at %s', (text, where, words) => {
    const e = errorOf(text);
    expect(e.message).toContain(where);
    expect(e.message).toContain(words);
  });
});

describe('virtual paths', () => {
  it('keeps tool names as they are and encodes URIs as one segment', () => {
    expect(mcpVirtualPath('/mcp', 'tools/call', 'search_issues')).toBe('/mcp/tools/call/search_issues');
    expect(mcpVirtualPath('/', 'prompts/get', 'summarise')).toBe('/prompts/get/summarise');
    expect(mcpVirtualPath('/mcp', 'resources/read', 'repo://acme/app/README.md')).toBe(
      '/mcp/resources/read/repo%3A!!acme!app!README.md',
    );
    expect(mcpSegment('a!b')).toBe('a%21b');
    expect(mcpSegment('ünï code')).toBe('%C3%BCn%C3%AF%20code');
  });

  it('refuses names that cannot be a segment', () => {
    expect(mcpSegment('')).toBeNull();
    expect(mcpSegment('.')).toBeNull();
    expect(mcpSegment('..')).toBeNull();
    expect(mcpSegment('x\uD800')).toBeNull(); // would encode as U+FFFD
    expect(mcpVirtualPath('/mcp', 'tools/call', 'x'.repeat(9000))).toBeNull();
  });

  it('is injective and always a normalised single segment (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.string({ maxLength: 40 }), (a, b) => {
        const sa = mcpSegment(a);
        const sb = mcpSegment(b);
        if (sa !== null) {
          expect(sa.includes('/')).toBe(false);
          expect(isNormalizedPath(`/mcp/tools/call/${sa}`)).toBe(true);
        }
        if (a !== b && sa !== null) expect(sa).not.toBe(sb);
      }),
      { numRuns: 2000, seed: 10 },
    );
  });
});

describe('MCP in the policy', () => {
  it('is a named-only method: `*` never grants a tool call; deny-override on the virtual path', () => {
    const p = compilePolicy(CANONICAL_MODEL, CSV, { files: { 'mcp.yaml': GOOD } });
    const d = (role: string, p2: string, method = 'MCP') =>
      p.decide({ role, host: 'gh.test', path: p2, method });
    expect(d('analyst', '/mcp/tools/call/search_issues').allowed).toBe(true);
    expect(d('analyst', '/mcp/tools/call/create_issue')).toMatchObject({
      allowed: false,
      reason: 'rule_deny',
    });
    expect(d('analyst', '/mcp', 'POST').allowed).toBe(true);
    expect(d('analyst', '/mcp/tools/call/list_repos')).toMatchObject({ allowed: false, reason: 'no_match' });
    expect(d('wide', '/mcp/tools/call/create_issue')).toMatchObject({ allowed: false, reason: 'no_match' });
    expect(d('wide', '/mcp/tools/call/create_issue', 'POST').allowed).toBe(true);
    expect(p.mcp.match('gh.test', '/mcp')?.name).toBe('github');
  });

  it('changes the version only when mcp.yaml is present, and is located on errors', () => {
    expect(policyVersion(CANONICAL_MODEL, CSV)).toBe(policyVersion(CANONICAL_MODEL, CSV, {}));
    expect(policyVersion(CANONICAL_MODEL, CSV, { 'mcp.yaml': GOOD })).not.toBe(
      policyVersion(CANONICAL_MODEL, CSV),
    );
    expect(() => compilePolicy(CANONICAL_MODEL, CSV, { files: { 'mcp.yaml': 'version: 3\n' } })).toThrow(
      /mcp\.yaml:1/,
    );
  });
});

describe('policy check', () => {
  it('counts MCP as state-changing: every tool of every endpoint on a wildcard host is a dangerous-allow', () => {
    const p = compilePolicy(CANONICAL_MODEL, 'p, analyst, *.gh.test, /mcp/tools/call/*, MCP, allow\n');
    expect(lintPolicy(p).map((f) => f.id)).toContain('dangerous-allow');
    const named = compilePolicy(CANONICAL_MODEL, CSV);
    expect(lintPolicy(named).filter((f) => f.severity === 'error' && f.message.includes('MCP'))).toEqual([]);
  });
});

describe('policy diff', () => {
  it('replays each decided MCP message of an audit event as method MCP on its virtual path', () => {
    const event = {
      time: '2026-11-29T00:00:00.000Z',
      role: 'analyst',
      method: 'POST',
      scheme: 'https',
      host: 'gh.test',
      port: 443,
      path: '/mcp',
      mcp: {
        endpoint: 'github',
        batch: true,
        messages: [
          { method: 'tools/list', id: 1 },
          {
            method: 'tools/call',
            id: 2,
            name: 'search_issues',
            path: '/mcp/tools/call/search_issues',
            decision: 'allow',
          },
        ],
      },
    };
    const calls = parseAuditLines(JSON.stringify(event) + '\n');
    expect(calls.map((c) => [c?.method, c?.path])).toEqual([
      ['POST', '/mcp'],
      ['MCP', '/mcp/tools/call/search_issues'],
    ]);
    const before = compilePolicy(CANONICAL_MODEL, CSV);
    const after = compilePolicy(
      CANONICAL_MODEL,
      CSV.replace('search_issues, MCP, allow', 'search_issues, MCP, deny'),
    );
    const report = replayCalls(before, after, calls);
    expect(report.changes).toHaveLength(1);
    expect(report.changes[0]).toMatchObject({
      method: 'MCP',
      path: '/mcp/tools/call/search_issues',
      count: 1,
    });
  });
});

describe('loading a directory', () => {
  let dir: string | null = null;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = null;
  });

  it('reads mcp.yaml when present', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'airlock-mcp-'));
    writeFileSync(path.join(dir, 'model.conf'), CANONICAL_MODEL);
    writeFileSync(path.join(dir, 'policy.csv'), CSV);
    expect((await loadPolicyDir(dir)).mcp.size).toBe(0);
    writeFileSync(path.join(dir, 'mcp.yaml'), GOOD);
    expect((await loadPolicyDir(dir)).mcp.size).toBe(2);
  });
});
