// Generates src/sdk/openapi.gen.ts, the TypeScript SDK's wire types, from the API's OpenAPI document
// (src/api/openapi.ts) with openapi-typescript, formatted with the repository's prettier settings so
// the checked-in file passes `prettier --check`.
//
//   npm run sdk:types                                    # build, then rewrite src/sdk/openapi.gen.ts
//   node scripts/sdk-types.mjs --check                    # exit 1 when the checked-in file differs
//
// test/unit/sdk/openapi-types.test.ts runs the same generation on the current source and fails when
// the checked-in file differs (CI's guard against a stale SDK).
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import openapiTS, { astToString } from 'openapi-typescript';
import prettier from 'prettier';

/** Where the generated types live. */
export const SDK_TYPES_FILE = fileURLToPath(new URL('../src/sdk/openapi.gen.ts', import.meta.url));

const HEADER =
  '/**\n' +
  ' * Wire types of the Airlock API, generated from its OpenAPI document (`GET /openapi.json`,\n' +
  ' * src/api/openapi.ts) by openapi-typescript. Do not edit: run `npm run sdk:types`.\n' +
  ' * test/unit/sdk/openapi-types.test.ts fails when this file is stale.\n' +
  ' */\n\n';

/**
 * The text of src/sdk/openapi.gen.ts for an OpenAPI document (a plain object).
 * @param {Record<string, unknown>} doc
 * @returns {Promise<string>}
 */
export async function generateSdkTypes(doc) {
  const ast = await openapiTS(/** @type {any} */ (doc), {
    alphabetize: false,
    exportType: false,
    defaultNonNullable: false,
  });
  const text = HEADER + astToString(ast);
  const options = (await prettier.resolveConfig(SDK_TYPES_FILE)) ?? {};
  return prettier.format(text, { ...options, filepath: SDK_TYPES_FILE });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { buildOpenApiDocument } = await import('../dist/api/openapi.js');
  const text = await generateSdkTypes(buildOpenApiDocument());
  if (process.argv.includes('--check')) {
    const current = await readFile(SDK_TYPES_FILE, 'utf8').catch(() => '');
    if (current !== text) {
      process.stderr.write(`${SDK_TYPES_FILE} is stale: run npm run sdk:types\n`);
      process.exit(1);
    }
  } else {
    await writeFile(SDK_TYPES_FILE, text);
    process.stdout.write(`wrote ${SDK_TYPES_FILE}\n`);
  }
}
