import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiApp } from '../../../src/api/app.js';
import { MemoryAuditSink } from '../../../src/audit/file-sink.js';
import { ApprovalService } from '../../../src/sessions/approvals.js';
import { ApiMetrics } from '../../../src/api/metrics.js';
import { FakeSessions, FixedPolicy, SNAPSHOT, startApi, TOKENS, type TestApi } from './helpers.js';

type Json = Record<string, unknown>;

let api: TestApi;
let doc: Json;
beforeAll(async () => {
  api = await startApi();
  const res = await fetch(`${api.url}/openapi.json`);
  expect(res.status).toBe(200);
  doc = (await res.json()) as Json;
});
afterAll(async () => {
  await api.close();
});

/** Every `$ref` string anywhere in `node`. */
function refs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) refs(n, out);
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else refs(v, out);
    }
  }
  return out;
}

function resolve(pointer: string): unknown {
  expect(pointer.startsWith('#/')).toBe(true);
  return pointer
    .slice(2)
    .split('/')
    .reduce<unknown>((node, key) => (node as Json | undefined)?.[key], doc);
}

const paths = (): Record<string, Record<string, Json>> => doc.paths as Record<string, Record<string, Json>>;
const schemas = (): Record<string, Json> => (doc.components as { schemas: Record<string, Json> }).schemas;

describe('GET /openapi.json', () => {
  it('is an OpenAPI 3.1 document with info and a bearer security scheme', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info).toMatchObject({ title: 'Airlock API', version: expect.any(String) });
    expect((doc.components as Json).securitySchemes).toEqual({
      bearer: expect.objectContaining({ type: 'http', scheme: 'bearer' }),
    });
  });

  it('describes every route the app serves, and only those', () => {
    const app = createApiApp({
      sessions: new FakeSessions(),
      policy: new FixedPolicy(SNAPSHOT),
      tokens: TOKENS,
      metrics: new ApiMetrics({ defaultMetrics: false }),
      approvals: new ApprovalService(
        { pendingSeconds: 60, defaultUses: 1, defaultTtlSeconds: 60, webhook: null },
        { lookup: () => null },
        new MemoryAuditSink(),
      ),
      grants: { grant: () => Promise.reject(new Error('not in this test')) },
    });
    const served = new Set<string>();
    const stack = (
      app as unknown as { router: { stack: Array<{ route?: { path: string; methods: Json } }> } }
    ).router.stack;
    for (const layer of stack) {
      if (!layer.route) continue;
      for (const [method, on] of Object.entries(layer.route.methods)) {
        if (on && method !== '_all') served.add(`${method} ${layer.route.path.replace(/:(\w+)/g, '{$1}')}`);
      }
    }
    const documented = new Set<string>();
    for (const [path, item] of Object.entries(paths())) {
      for (const method of Object.keys(item))
        if (method !== 'parameters') documented.add(`${method} ${path}`);
    }
    expect([...documented].sort()).toEqual([...served].sort());
    expect(served).toContain('post /v1/sessions/{id}/exec');
  });

  it('resolves every $ref', () => {
    const all = refs(doc);
    expect(all.length).toBeGreaterThan(10);
    for (const r of all) expect(resolve(r), r).toBeDefined();
  });

  it('has unique operationIds and problem+json error answers', () => {
    const ids = new Set<string>();
    for (const item of Object.values(paths())) {
      for (const [method, op] of Object.entries(item)) {
        if (method === 'parameters') continue;
        expect(ids.has(op.operationId as string)).toBe(false);
        ids.add(op.operationId as string);
        for (const [status, answer] of Object.entries(op.responses as Record<string, Json>)) {
          if (Number(status) >= 400 && status !== '503') {
            const resolved = (answer.$ref ? resolve(answer.$ref as string) : answer) as Json;
            expect(Object.keys(resolved.content as Json)).toEqual(['application/problem+json']);
          }
        }
      }
    }
  });

  it('requires the bearer token on /v1 routes only', () => {
    for (const [path, item] of Object.entries(paths())) {
      for (const [method, op] of Object.entries(item)) {
        if (method === 'parameters') continue;
        expect(op.security, `${method} ${path}`).toEqual(path.startsWith('/v1/') ? [{ bearer: [] }] : []);
      }
    }
  });

  it('generates request schemas from the validators: strict, with bounds and defaults', () => {
    const create = schemas().CreateSessionRequest!;
    expect(create.additionalProperties).toBe(false);
    expect(create.required).toEqual(['role']);
    const exec = schemas().ExecRequest!;
    const props = exec.properties as Record<string, Json>;
    expect(props.timeoutSeconds).toMatchObject({ type: 'integer', minimum: 1, maximum: 3600, default: 60 });
    expect(props.command).toMatchObject({ type: 'array', minItems: 1, items: { type: 'string' } });
    expect(exec.required).toEqual(['command']);
  });

  it('describes the problem body with code and field', () => {
    const problem = schemas().Problem!;
    expect(Object.keys(problem.properties as Json).sort()).toEqual(
      ['code', 'detail', 'field', 'status', 'title', 'type'].sort(),
    );
    expect(problem.required).toEqual(['type', 'title', 'status', 'detail', 'code']);
  });

  it('has no per-schema $schema or $id left over from the conversion', () => {
    for (const s of Object.values(schemas())) {
      expect(s.$schema).toBeUndefined();
      expect(s.$id).toBeUndefined();
    }
  });
});
