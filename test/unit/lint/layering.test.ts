/**
 * The import-direction lint (eslint.config.js, docs/architecture.md "Parts and import directions")
 * fires where a part imports upward or sideways, and stays quiet on allowed imports. Runs ESLint's
 * Node API on snippets placed (by file path only; nothing is written) inside each part.
 */
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { beforeAll, describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('../../..', import.meta.url));
let eslint: ESLint;

beforeAll(() => {
  eslint = new ESLint({ cwd: repoRoot });
});

/** Rule ids ESLint reports for `code` placed at `file` (repo-relative). */
async function layeringErrors(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${repoRoot}/${file}` });
  return (result?.messages ?? [])
    .filter((m) => m.ruleId === 'no-restricted-imports' || m.ruleId === 'no-restricted-syntax')
    .map((m) => `${m.ruleId}: ${m.message}`);
}

const staticImport = (spec: string): string => `import * as m from '${spec}';\nexport const x = m;\n`;
const dynamicImport = (spec: string): string => `export const load = () => import('${spec}');\n`;
const reExport = (spec: string): string => `export * from '${spec}';\n`;
const typeImport = (spec: string): string => `import type { T } from '${spec}';\nexport type U = T;\n`;

describe('import directions (issue 8)', () => {
  it.each([
    ['src/policy/probe.ts', '../gateway/proxy.js'],
    ['src/policy/probe.ts', '../api/app.js'],
    ['src/policy/probe.ts', '../runtime/types.js'],
    ['src/policy/probe.ts', '../sessions/manager.js'],
    ['src/policy/probe.ts', '../cli/main.js'],
    ['src/gateway/probe.ts', '../runtime/kubernetes/runtime.js'],
    ['src/gateway/probe.ts', '../api/app.js'],
    ['src/gateway/probe.ts', '../cli/serve.js'],
    ['src/gateway/probe.ts', '../sessions/manager.js'],
    ['src/gateway/probe.ts', '../sessions/types.js'],
    ['src/gateway/session-sources/probe.ts', '../../runtime/kubernetes/runtime.js'],
    ['src/gateway/tls/probe.ts', '../../api/app.js'],
    ['src/runtime/probe.ts', '../gateway/service.js'],
    ['src/runtime/docker/probe.ts', '../../gateway/service.js'],
    ['src/runtime/kubernetes/probe.ts', '../../gateway/admin.js'],
    ['src/runtime/kubernetes/probe.ts', '../../api/app.js'],
    ['src/audit/probe.ts', '../gateway/proxy.js'],
    ['src/request/probe.ts', '../policy/types.js'],
    ['src/pki/probe.ts', '../gateway/tls/leaf-cache.js'],
    ['src/kube/probe.ts', '../runtime/kubernetes/runtime.js'],
    ['src/kube/probe.ts', '../gateway/session-sources/kubernetes-pods.js'],
    ['src/gateway-wire/probe.ts', '../gateway/sessions.js'],
    ['src/gateway-wire/probe.ts', '../sessions/types.js'],
    ['src/sdk/probe.ts', '../api/openapi.js'],
    ['src/sdk/probe.ts', '../audit/event.js'],
    ['src/sdk/probe.ts', '../config/schema.js'],
    ['src/telemetry/probe.ts', '../gateway/service.js'],
    ['src/telemetry/probe.ts', '../policy/store.js'],
  ])('%s importing %s is an error (static, type-only, re-export and dynamic)', async (file, spec) => {
    const [s, t, r, d] = await Promise.all([
      layeringErrors(file, staticImport(spec)),
      layeringErrors(file, typeImport(spec)),
      layeringErrors(file, reExport(spec)),
      layeringErrors(file, dynamicImport(spec)),
    ]);
    expect(s).toEqual([expect.stringMatching(/^no-restricted-imports: .*must not import/)]);
    expect(t).toEqual([expect.stringMatching(/^no-restricted-imports: .*must not import/)]);
    expect(r).toEqual([expect.stringMatching(/^no-restricted-imports: .*must not import/)]);
    expect(d).toEqual([expect.stringMatching(/^no-restricted-syntax: .*must not import/)]);
  });

  it.each([
    ['src/policy/probe.ts', '../request/normalize.js'],
    ['src/policy/probe.ts', '../errors.js'],
    ['src/gateway/probe.ts', '../policy/store.js'],
    ['src/gateway/probe.ts', '../audit/event.js'],
    ['src/gateway/probe.ts', '../pki/ca.js'],
    ['src/gateway/probe.ts', '../gateway-wire/session.js'],
    // same-part files whose names equal a part's are not that part
    ['src/gateway/session-sources/probe.ts', '../sessions.js'],
    ['src/gateway/session-sources/probe.ts', '../../kube/client.js'],
    ['src/runtime/kubernetes/probe.ts', '../../gateway-wire/control.js'],
    ['src/runtime/kubernetes/probe.ts', '../../kube/labels.js'],
    ['src/runtime/kubernetes/probe.ts', '../docker/runtime.js'],
    ['src/sessions/probe.ts', '../runtime/types.js'],
    ['src/api/probe.ts', '../sessions/types.js'],
    ['src/cli/probe.ts', '../gateway/service.js'],
    ['src/kube/probe.ts', '../errors.js'],
    ['src/gateway-wire/probe.ts', '../config/schema.js'],
    ['src/telemetry/probe.ts', '../audit/event.js'],
    ['src/gateway/probe.ts', '../telemetry/gateway-metrics.js'],
    ['src/cli/probe.ts', '../telemetry/otlp.js'],
  ])('%s importing %s is allowed', async (file, spec) => {
    expect(await layeringErrors(file, staticImport(spec))).toEqual([]);
    expect(await layeringErrors(file, dynamicImport(spec))).toEqual([]);
  });
});
