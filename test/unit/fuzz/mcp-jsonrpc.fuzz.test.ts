/**
 * Fuzzing the MCP JSON-RPC parser of the gateway (src/gateway/mcp.ts), issue 15 section 3:
 * - any body (bytes, JSON or not) parses or is refused with a sentence; it never throws;
 * - duplicateKey is checked against a model: JSON texts are generated from trees whose objects may
 *   repeat a key (spelled with escapes, `"n\u0061me"`), so the truth is known — a repeated key is
 *   how a body could show the policy one tool name and the server another;
 * - parsed messages carry exactly the method, id and tool name of the body, in order.
 * Seeds: test/fuzz/corpus/jsonrpc.jsonl.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { duplicateKey, parseJsonRpc } from '../../../src/gateway/mcp.js';
import { corpus, runs } from './corpus.js';

/** A JSON tree whose objects are key lists (duplicates possible), rendered to text by hand. */
type Tree = { t: 'v'; v: string } | { t: 'a'; items: Tree[] } | { t: 'o'; entries: [string, Tree][] };

const keyName = fc.constantFrom('name', 'method', 'id', 'a', 'b', '"q"', 'x\\y', '');
const { tree } = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc
      .constantFrom('1', '-2.5e3', 'true', 'null', '"s"', '"a\\"b"', '"\\\\"', '"{"', '"}"', '","')
      .map((v) => ({ t: 'v' as const, v })),
    fc.array(tie('tree'), { maxLength: 3 }).map((items) => ({ t: 'a' as const, items })),
    fc
      .array(fc.tuple(keyName, tie('tree')), { maxLength: 4 })
      .map((entries) => ({ t: 'o' as const, entries })),
  ),
}));

/** A key spelled plainly or with \u escapes (both decode to the same key). */
function spell(key: string, escape: boolean): string {
  if (!escape || key === '') return JSON.stringify(key);
  return `"${[...key].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"`;
}

function render(t: Tree, escapes: boolean[], ws: string): string {
  if (t.t === 'v') return t.v;
  if (t.t === 'a') return `[${ws}${t.items.map((i) => render(i, escapes, ws)).join(`,${ws}`)}]`;
  return `{${ws}${t.entries.map(([k, v], i) => `${spell(k, escapes[i % escapes.length] ?? false)}${ws}:${ws}${render(v, escapes, ws)}`).join(`,${ws}`)}${ws}}`;
}

function firstDuplicate(t: Tree): string | null {
  if (t.t === 'v') return null;
  if (t.t === 'a') {
    for (const i of t.items) {
      const d = firstDuplicate(i);
      if (d !== null) return d;
    }
    return null;
  }
  // Document order: a key's repeat may come after a nested duplicate in an earlier value.
  const seen = new Set<string>();
  for (const [k, v] of t.entries) {
    if (seen.has(k)) return k;
    seen.add(k);
    const d = firstDuplicate(v);
    if (d !== null) return d;
  }
  return null;
}

describe('fuzz: MCP JSON-RPC parser', () => {
  it('duplicateKey agrees with the model on generated JSON (escaped keys, nesting, whitespace)', () => {
    fc.assert(
      fc.property(
        tree,
        fc.array(fc.boolean(), { minLength: 1, maxLength: 4 }),
        fc.constantFrom('', ' ', '\n\t'),
        (t, esc, ws) => {
          const text = render(t, esc, ws);
          JSON.parse(text); // the generator makes valid JSON
          expect(duplicateKey(text) !== null, text).toBe(firstDuplicate(t) !== null);
        },
      ),
      { numRuns: runs(4000) },
    );
  });

  it('any body: parsed or refused with a sentence, never a throw', () => {
    const seeds = corpus('jsonrpc').map((s) => [Buffer.from(s)] as [Buffer]);
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a)),
      fc.json().map((s) => Buffer.from(s)),
      fc
        .jsonValue()
        .map((v) => Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: v }))),
      fc.string().map((s) => Buffer.from(s)),
    );
    fc.assert(
      fc.property(body, (b) => {
        const r = parseJsonRpc(b);
        if (!r.ok) expect(r.detail).toMatch(/^not a valid MCP JSON-RPC body: ./);
        else expect(r.messages.length).toBeGreaterThan(0);
      }),
      { numRuns: runs(4000), examples: seeds },
    );
  });

  const message = fc.record({
    id: fc.oneof(fc.integer(), fc.string({ maxLength: 5 })),
    method: fc.constantFrom(
      'tools/call',
      'prompts/get',
      'resources/read',
      'tools/list',
      'initialize',
      'notifications/x',
    ),
    name: fc.string({ maxLength: 8 }),
  });

  it('parsed messages are exactly those of the body, in order', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 5 }), fc.boolean(), (msgs, asBatch) => {
        const bodyOf = (m: (typeof msgs)[number]) => ({
          jsonrpc: '2.0',
          id: m.id,
          method: m.method,
          params: m.method === 'resources/read' ? { uri: m.name } : { name: m.name },
        });
        const batch = asBatch || msgs.length > 1;
        const text = JSON.stringify(batch ? msgs.map(bodyOf) : bodyOf(msgs[0]!));
        const r = parseJsonRpc(Buffer.from(text));
        expect(r.ok).toBe(true);
        if (!r.ok) return;
        expect(r.batch).toBe(batch);
        expect(r.messages.map((m) => [m.method, m.id])).toEqual(msgs.map((m) => [m.method, m.id]));
        for (const [i, m] of r.messages.entries())
          if (m.decided) expect(m.name).toBe(msgs[i]!.name);
          else expect(m.name).toBeNull();
      }),
      { numRuns: runs(2000) },
    );
  });
});
