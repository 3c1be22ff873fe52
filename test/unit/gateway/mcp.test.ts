/**
 * The gateway's MCP step (issue 10) without a network: JSON-RPC parsing (what is refused 400 and
 * why), the repeated-key check, the decision of each message on its virtual path with method MCP
 * (role and creator, deny-override), the denial bodies (ids, batch, rule named), the audit record,
 * and the bounded body reader (body.ts) on in-memory streams.
 */
import { PassThrough } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readBody } from '../../../src/gateway/body.js';
import { ToolPins, toolDigest } from '../../../src/gateway/mcp-pins.js';
import { MAX_JSON_BYTES, toolsListFilter } from '../../../src/gateway/mcp-response.js';
import {
  auditMessages,
  decideMcpMessages,
  denialMessage,
  denialResponse,
  duplicateKey,
  MCP_DENIED_CODE,
  parseJsonRpc,
  mcpApprovalBinding,
} from '../../../src/gateway/mcp.js';
import type { GatewaySession } from '../../../src/gateway-wire/session.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';

const b = (v: unknown): Buffer => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));
const call = (id: number | string, name: string) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: {} },
});

describe('parseJsonRpc', () => {
  it('reads a single message, a batch, notifications and client responses', () => {
    const one = parseJsonRpc(b(call(1, 'search_issues')));
    expect(one).toEqual({
      ok: true,
      batch: false,
      messages: [
        {
          method: 'tools/call',
          id: 1,
          name: 'search_issues',
          decided: true,
          params: { name: 'search_issues', arguments: {} },
        },
      ],
    });
    const batch = parseJsonRpc(
      b([
        { jsonrpc: '2.0', id: 'i', method: 'initialize', params: {} },
        { jsonrpc: '2.0', method: 'notifications/initialized' },
        { jsonrpc: '2.0', id: 9, result: {} },
        { jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: 'repo://a/b' } },
        { jsonrpc: '2.0', id: 3, method: 'prompts/get', params: { name: 'summarise' } },
      ]),
    );
    expect(batch.ok && batch.batch).toBe(true);
    expect(batch.ok && batch.messages).toEqual([
      { method: 'initialize', id: 'i', name: null, decided: false },
      { method: 'notifications/initialized', id: null, name: null, decided: false },
      { method: null, id: 9, name: null, decided: false },
      { method: 'resources/read', id: 2, name: 'repo://a/b', decided: true, params: { uri: 'repo://a/b' } },
      { method: 'prompts/get', id: 3, name: 'summarise', decided: true, params: { name: 'summarise' } },
    ]);
  });

  it.each([
    ['not UTF-8', Buffer.from([0x7b, 0xff, 0x7d]), 'not UTF-8'],
    ['not JSON', b('{"jsonrpc":'), 'not JSON'],
    ['a scalar', b('42'), 'not a JSON object'],
    ['an empty batch', b('[]'), 'empty batch'],
    ['no jsonrpc 2.0', b({ id: 1, method: 'ping' }), '"jsonrpc": "2.0"'],
    ['a null id', b({ jsonrpc: '2.0', id: null, method: 'ping' }), '"id"'],
    ['a non-string method', b({ jsonrpc: '2.0', id: 1, method: 5 }), '"method"'],
    ['neither request nor response', b({ jsonrpc: '2.0', id: 1 }), 'not a response'],
    [
      'tools/call without a name',
      b({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: {} }),
      'params.name',
    ],
    [
      'resources/read without a uri',
      b({ jsonrpc: '2.0', id: 1, method: 'resources/read', params: { name: 'x' } }),
      'params.uri',
    ],
    [
      'a name that is not a string',
      b({ jsonrpc: '2.0', id: 1, method: 'prompts/get', params: { name: 1 } }),
      'params.name',
    ],
    ['params a string', b({ jsonrpc: '2.0', id: 1, method: 'ping', params: 'x' }), '"params"'],
    [
      'a bad message inside a batch',
      b([call(1, 'a'), { jsonrpc: '1.0', id: 2, method: 'ping' }]),
      'message 1',
    ],
    [
      'a repeated key',
      b('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\\u0061me":"b"}}'),
      'repeats the key "name"',
    ],
  ])('refuses %s', (_what, body, words) => {
    const r = parseJsonRpc(body);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.detail).toContain(words);
  });
});

describe('duplicateKey', () => {
  it.each([
    ['{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}', null],
    ['{"a":"x\\"a","a":1}', 'a'],
    ['[{"a":1,"b":[1,2,{"c":1,"c":2}]}]', 'c'],
    ['{"a":{"b":1},"a":2}', 'a'],
    ['{"s":"{\\"a\\":1,\\"a\\":2}"}', null],
  ])('%s → %s', (text, key) => {
    expect(duplicateKey(text)).toBe(key);
  });

  it('finds no repeat in any serialised value, and finds one added to any object (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.string(), (v, k) => {
        const text = JSON.stringify(v);
        expect(duplicateKey(text)).toBeNull();
        // A key with escaped quotes and backslashes between the two: the scan must not lose its place.
        const odd = JSON.stringify('x\\"y\\\\');
        const dup = `{${JSON.stringify(k)}:${text},${odd}:1,${JSON.stringify(k)}:0}`;
        expect(duplicateKey(dup)).toBe(k);
      }),
      { numRuns: 3000, seed: 10 },
    );
  });
});

const CSV = [
  'p, analyst, gh.test, /mcp, POST, allow',
  'p, analyst, gh.test, /mcp/tools/call/search_issues, MCP, allow',
  'p, analyst, gh.test, /mcp/tools/call/create_issue, MCP, deny',
  'p, analyst, gh.test, /mcp/resources/read/repo%3A!!acme, MCP, allow',
  'p, lead, gh.test, /mcp/tools/call/search_issues, MCP, allow',
  'p, lead, gh.test, /mcp/tools/call/create_issue, MCP, allow',
  // The creator "bot" has egress rules of its own (delegation): only search_issues.
  'p, bot, gh.test, /mcp/tools/call/search_issues, MCP, allow',
  '',
].join('\n');
const policy = compilePolicy(CANONICAL_MODEL, CSV);
const session = (role: string, creator?: string): GatewaySession => ({
  id: `s-${role}`,
  role,
  address: '10.0.0.1',
  credentialSha256: '00',
  expiresAtMs: Number.MAX_SAFE_INTEGER,
  ...(creator ? { creator } : {}),
});

function decideBody(role: string, body: unknown, creator?: string) {
  const parsed = parseJsonRpc(b(body));
  if (!parsed.ok) throw new Error(parsed.detail);
  return { parsed, ...decideMcpMessages(policy, session(role, creator), 'gh.test', '/mcp', parsed.messages) };
}

describe('decideMcpMessages', () => {
  it('decides each tool call on its virtual path with method MCP; other messages are not decided', () => {
    const d = decideBody('analyst', [
      { jsonrpc: '2.0', id: 0, method: 'tools/list' },
      call(1, 'search_issues'),
      call(2, 'create_issue'),
    ]);
    expect(d.decisions.map((x) => [x.index, x.path, x.allowed])).toEqual([
      [1, '/mcp/tools/call/search_issues', true],
      [2, '/mcp/tools/call/create_issue', false],
    ]);
    expect(d.denied?.index).toBe(2);
    expect(d.denied?.rule).toContain('create_issue, MCP, deny');
  });

  it('reads resources by URI (encoded segment); an unnamed resource is no_match', () => {
    const ok = decideBody('analyst', {
      jsonrpc: '2.0',
      id: 1,
      method: 'resources/read',
      params: { uri: 'repo://acme' },
    });
    expect(ok.denied).toBeNull();
    const no = decideBody('analyst', {
      jsonrpc: '2.0',
      id: 1,
      method: 'resources/read',
      params: { uri: 'file:///etc/passwd' },
    });
    expect(no.denied).toMatchObject({ rule: null, path: '/mcp/resources/read/file%3A!!!etc!passwd' });
  });

  it('a session never exceeds its creator: lead may create issues, a session of lead created by bot may not', () => {
    expect(decideBody('lead', call(1, 'create_issue')).denied).toBeNull();
    const d = decideBody('lead', call(1, 'create_issue'), 'bot');
    expect(d.denied?.by).toBe('creator');
    expect(denialMessage(d.denied!, session('lead', 'bot'), 'github', 'gh.test')).toContain('creator "bot"');
    expect(decideBody('lead', call(1, 'search_issues'), 'bot').denied).toBeNull();
  });

  it('a name that cannot be a segment is refused without a rule', () => {
    const d = decideBody('analyst', call(1, '..'));
    expect(d.denied).toMatchObject({ path: null, rule: null });
    expect(denialMessage(d.denied!, session('analyst'), 'github', 'gh.test')).toContain('cannot be decided');
  });
});

describe('denial bodies and audit', () => {
  it('answers a single request with its id, the rule and code', () => {
    const d = decideBody('analyst', call('req-7', 'create_issue'));
    const msg = denialMessage(d.denied!, session('analyst'), 'github', 'gh.test');
    expect(msg).toContain('role "analyst" may not call tool "create_issue" on MCP server "github"');
    expect(msg).toContain('policy.csv:3');
    const body = JSON.parse(denialResponse(d.parsed, d.denied!, msg, { sessionId: 's' }));
    expect(body).toEqual({
      jsonrpc: '2.0',
      id: 'req-7',
      error: {
        code: MCP_DENIED_CODE,
        message: msg,
        data: { error: 'mcp_denied', rule: d.denied!.rule, sessionId: 's' },
      },
    });
  });

  it('answers every request of a batch (not notifications), the others saying why they were not sent', () => {
    const d = decideBody('analyst', [
      call(1, 'search_issues'),
      { jsonrpc: '2.0', method: 'notifications/progress' },
      call(2, 'create_issue'),
    ]);
    const body = JSON.parse(denialResponse(d.parsed, d.denied!, 'denied', {})) as {
      id: number;
      error: { message: string };
    }[];
    expect(body.map((x) => x.id)).toEqual([1, 2]);
    expect(body[0]!.error.message).toContain('message 2 of the same batch was refused');
    expect(body[1]!.error.message).toBe('denied');
  });

  it('a denied notification (no id) is answered with id null', () => {
    const d = decideBody('analyst', {
      jsonrpc: '2.0',
      method: 'tools/call',
      params: { name: 'create_issue' },
    });
    expect(JSON.parse(denialResponse(d.parsed, d.denied!, 'denied', {}))).toMatchObject({ id: null });
  });

  it('records method, id, name, path, decision and rule of each message', () => {
    const d = decideBody('analyst', [{ jsonrpc: '2.0', id: 0, method: 'ping' }, call(1, 'search_issues')]);
    expect(auditMessages(d.parsed.messages, d.decisions)).toEqual([
      { method: 'ping', id: 0 },
      {
        method: 'tools/call',
        id: 1,
        name: 'search_issues',
        path: '/mcp/tools/call/search_issues',
        decision: 'allow',
        rule: expect.stringContaining('search_issues, MCP, allow') as unknown as string,
      },
    ]);
  });
});

/** An IncomingMessage stand-in: a stream with headers. */
function fakeReq(headers: Record<string, string>): PassThrough & IncomingMessage {
  const s = new PassThrough() as PassThrough & IncomingMessage;
  (s as { headers: Record<string, string> }).headers = headers;
  return s;
}

const LIMITS = { bufferedBodyBytes: 10, bodyMinBytesPerSecond: 0, bodyRateWindowMs: 10_000, bodyMaxMs: 0 };

describe('readBody (body.ts)', () => {
  it('reads a body up to the bound, chunked or declared', async () => {
    const r = fakeReq({ 'transfer-encoding': 'chunked' });
    const p = readBody(r, LIMITS);
    r.write('hello');
    r.end('world');
    expect(await p).toEqual({ ok: true, body: Buffer.from('helloworld') });
    expect(await readBody(fakeReq({}), LIMITS)).toEqual({ ok: true, body: Buffer.alloc(0) });
  });

  it('refuses a declared length over the bound before reading', async () => {
    const r = await readBody(fakeReq({ 'content-length': '11' }), LIMITS);
    expect(r).toMatchObject({ ok: false, why: 'too_large' });
    expect(!r.ok && r.detail).toContain('gateway.limits.bufferedBodyBytes');
  });

  it('refuses a chunked body as soon as it passes the bound', async () => {
    const r = fakeReq({ 'transfer-encoding': 'chunked' });
    const p = readBody(r, LIMITS);
    r.write('0123456789');
    r.write('x');
    expect(await p).toMatchObject({ ok: false, why: 'too_large' });
  });

  it('cuts off a body that takes longer than bodyMaxMs, and reports a client that goes away', async () => {
    const slow = fakeReq({ 'content-length': '5' });
    const p = readBody(slow, { ...LIMITS, bodyMaxMs: 20 });
    slow.write('ab');
    expect(await p).toMatchObject({ ok: false, why: 'timeout' });
    const gone = fakeReq({ 'content-length': '5' });
    const q = readBody(gone, LIMITS);
    gone.destroy();
    expect(await q).toMatchObject({ ok: false, why: 'closed' });
  });
});

describe('tools/list filtering (mcp-response.ts)', () => {
  const list = (id: number, names: string[]) => ({
    jsonrpc: '2.0',
    id,
    result: { tools: names.map((name) => ({ name, description: `${name} tool`, inputSchema: {} })) },
  });
  const may = (t: string) => t.startsWith('get_');

  function run(
    headers: Record<string, string>,
    parts: string[],
    ids = new Set<string | number>([1]),
  ): { out: string; hidden: string[]; taken: boolean } {
    const hidden: string[] = [];
    const f = toolsListFilter(ids, may, hidden);
    const taken = f.start(200, headers);
    if (!taken) return { out: parts.join(''), hidden, taken };
    let out = '';
    for (const p of parts) out += f.chunk(Buffer.from(p)).toString();
    out += f.end().toString();
    return { out, hidden, taken };
  }

  it('removes the tools the session may not call from a JSON answer (and only from the listed ids)', () => {
    const body = JSON.stringify([list(1, ['get_a', 'put_b']), list(2, ['put_c'])]);
    const r = run({ 'content-type': 'application/json' }, [body.slice(0, 10), body.slice(10)]);
    expect(JSON.parse(r.out)).toEqual([list(1, ['get_a']), list(2, ['put_c'])]);
    expect(r.hidden).toEqual(['put_b']);
  });

  it('rewrites SSE events split across chunks, keeping other events and fields', () => {
    const ev1 = `event: message\nid: e1\ndata: ${JSON.stringify(list(1, ['put_b', 'get_a']))}\n\n`;
    const ev2 = `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 5, result: {} })}\n\n`;
    const text = ev1 + ev2;
    const r = run({ 'content-type': 'text/event-stream' }, [
      text.slice(0, 7),
      text.slice(7, 60),
      text.slice(60),
    ]);
    const events = r.out.split('\n\n').filter(Boolean);
    expect(events[0]).toBe(`event: message\nid: e1\ndata: ${JSON.stringify(list(1, ['get_a']))}`);
    expect(events[1]).toBe(ev2.trimEnd());
    expect(r.hidden).toEqual(['put_b']);
  });

  it('relays unreadable answers unchanged: compressed, other types, errors, or too large', () => {
    expect(run({ 'content-type': 'application/json', 'content-encoding': 'gzip' }, ['x']).taken).toBe(false);
    expect(run({ 'content-type': 'text/plain' }, ['x']).taken).toBe(false);
    const f = toolsListFilter(new Set([1]), may, []);
    expect(f.start(500, { 'content-type': 'application/json' })).toBe(false);
    const big = toolsListFilter(new Set([1]), may, []);
    expect(big.start(200, { 'content-type': 'application/json' })).toBe(true);
    const first = big.chunk(Buffer.alloc(MAX_JSON_BYTES, 0x20));
    expect(first.length).toBe(0);
    const rest = big.chunk(Buffer.from('{}'));
    expect(rest.length).toBe(MAX_JSON_BYTES + 2);
    expect(big.chunk(Buffer.from('z')).toString()).toBe('z');
    expect(run({ 'content-type': 'application/json' }, ['not json']).out).toBe('not json');
  });
});

describe('tool pinning (mcp-pins.ts)', () => {
  const tool = (
    description: string,
    schema: Record<string, unknown> = { type: 'object', properties: { q: {} } },
  ) => ({
    name: 't',
    description,
    inputSchema: schema,
  });

  it('digests what the model reads, whatever the key order', () => {
    expect(toolDigest({ description: 'd', inputSchema: { a: 1, b: 2 } })).toBe(
      toolDigest({ inputSchema: { b: 2, a: 1 }, description: 'd' }),
    );
    expect(toolDigest(tool('d'))).not.toBe(toolDigest(tool('d ')));
    expect(toolDigest(tool('d'))).not.toBe(toolDigest(tool('d', { type: 'object' })));
  });

  it('pins at first sight per session and endpoint; a change is refused from then on, even if reverted', () => {
    const pins = new ToolPins(() => true);
    expect(pins.check('s1', 'gh', 't', tool('safe'))).toBe(true);
    expect(pins.check('s1', 'gh', 't', tool('safe'))).toBe(true);
    expect(pins.check('s2', 'gh', 't', tool('evil'))).toBe(true); // another session
    expect(pins.check('s1', 'other', 't', tool('evil'))).toBe(true); // another endpoint
    expect(pins.changed('s1', 'gh', 't')).toBe(false);
    expect(pins.check('s1', 'gh', 't', tool('evil'))).toBe(false);
    expect(pins.changed('s1', 'gh', 't')).toBe(true);
    expect(pins.check('s1', 'gh', 't', tool('safe'))).toBe(false);
    pins.forget('s1');
    expect(pins.changed('s1', 'gh', 't')).toBe(false);
  });

  it('refuses a changed tool call even where the policy allows it', () => {
    const parsed = parseJsonRpc(b(call(1, 'search_issues')));
    if (!parsed.ok) throw new Error(parsed.detail);
    const d = decideMcpMessages(policy, session('analyst'), 'gh.test', '/mcp', parsed.messages, () => true);
    expect(d.denied).toMatchObject({ changed: true, allowed: false });
    expect(denialMessage(d.denied!, session('analyst'), 'github', 'gh.test')).toContain('tool pinning');
  });
});

describe('mcpApprovalBinding', () => {
  it('binds the decided messages by method and params, not by JSON-RPC id or key order', () => {
    const parse = (v: unknown) => {
      const p = parseJsonRpc(b(v));
      if (!p.ok) throw new Error(p.detail);
      return p.messages;
    };
    const a = mcpApprovalBinding(
      parse({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: { name: 't', arguments: { x: 1, y: 2 } },
      }),
    );
    const sameNewId = mcpApprovalBinding(
      parse({
        jsonrpc: '2.0',
        id: 'z',
        method: 'tools/call',
        params: { arguments: { y: 2, x: 1 }, name: 't' },
      }),
    );
    const otherArgs = mcpApprovalBinding(
      parse({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: { name: 't', arguments: { x: 2, y: 2 } },
      }),
    );
    expect(sameNewId).toBe(a);
    expect(otherArgs).not.toBe(a);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
  });
});
