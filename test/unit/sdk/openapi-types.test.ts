/**
 * The TypeScript SDK's wire types (src/sdk/openapi.gen.ts) are generated from the API's OpenAPI
 * document; this fails when the checked-in file differs from what the current document generates
 * (fix: `npm run sdk:types`).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildOpenApiDocument } from '../../../src/api/openapi.js';
import { SDK_TYPES_FILE, generateSdkTypes } from '../../../scripts/sdk-types.mjs';

describe('src/sdk/openapi.gen.ts', () => {
  it('is what openapi-typescript generates from the current /openapi.json', async () => {
    const expected = await generateSdkTypes(buildOpenApiDocument());
    const actual = readFileSync(SDK_TYPES_FILE, 'utf8');
    expect(actual === expected, 'stale: run `npm run sdk:types`').toBe(true);
  });

  it('types every API route the SDK calls', () => {
    const text = readFileSync(SDK_TYPES_FILE, 'utf8');
    for (const route of [
      '/v1/sessions',
      '/v1/sessions/{id}',
      '/v1/sessions/{id}/exec',
      '/v1/sessions/{id}/audit',
    ])
      expect(text).toContain(`'${route}': {`);
  });
});
