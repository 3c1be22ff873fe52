// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/*
 * Import directions between the parts of src/ (DESIGN.md "Import directions"; the table and the
 * reasons are in docs/architecture.md "Parts and import directions"). Parts import only downward:
 * cli -> api -> sessions -> runtime; gateway -> policy, audit; everyone may use config, errors and the
 * leaf parts, which import nothing of Airlock but errors and config.
 *
 * For each part: the parts it must never import. test/unit/lint/layering.test.ts proves the rules fire.
 */
/** Leaf parts: the request model, the PKI/CA, the kube client loader, the gateway's wire contract. */
const LEAF_PARTS = ['request', 'pki', 'kube', 'gateway-wire'];
const ALL_PARTS = [
  'api',
  'audit',
  'cli',
  'config',
  'gateway',
  'images',
  'policy',
  'runtime',
  'sessions',
  'sdk',
  'telemetry',
  ...LEAF_PARTS,
];
/** @type {Record<string, string[]>} */
const FORBIDDEN_IMPORTS = {
  policy: ['gateway', 'api', 'runtime', 'sessions', 'cli', 'audit', 'images'],
  gateway: ['runtime', 'api', 'cli', 'sessions', 'images'],
  runtime: ['api', 'gateway', 'cli', 'sessions'],
  audit: ['gateway', 'api', 'cli', 'sessions', 'runtime', 'policy'],
  sessions: ['api', 'cli', 'gateway'],
  api: ['cli', 'gateway', 'runtime'],
  // The SDK is what library users call the API with: it stands alone (wire types are generated).
  sdk: ALL_PARTS.filter((p) => p !== 'sdk'),
  // Telemetry reads audit events and config; the gateway and the CLI use it.
  telemetry: ['gateway', 'api', 'cli', 'sessions', 'runtime', 'policy', 'images', 'sdk'],
  ...Object.fromEntries(
    LEAF_PARTS.map((leaf) => [leaf, ALL_PARTS.filter((p) => p !== leaf && p !== 'config')]),
  ),
};
/**
 * Files a forbidden part may still be imported from: part -> target -> file names under it.
 * @type {Record<string, Record<string, string[]>>}
 */
const exceptions = {};

/**
 * ESLint config blocks enforcing FORBIDDEN_IMPORTS. Import specifiers are relative, so one block per
 * folder depth: from `src/<part>/` plus `depth - 1` subfolders, `src/<target>/` is `../` × depth +
 * `<target>/`. Static imports and re-exports go through `no-restricted-imports`, `import()` with a
 * literal specifier through `no-restricted-syntax` (ESLint's rule does not look at dynamic imports).
 */
function layeringRules() {
  const blocks = [];
  for (const [part, targets] of Object.entries(FORBIDDEN_IMPORTS)) {
    const alternatives = targets.map((t) => {
      const allowed = exceptions[part]?.[t];
      return allowed ? `${t}/(?!(?:${allowed.map((f) => f.replace(/\./g, '\\.')).join('|')})$)` : `${t}/`;
    });
    const message = `src/${part} must not import src/{${targets.join(',')}}: parts import only downward (docs/architecture.md "Parts and import directions").`;
    for (let depth = 1; depth <= 4; depth++) {
      const regex = `^(?:\\.\\./){${depth}}(?:${alternatives.join('|')})`;
      blocks.push({
        files: [`src/${part}/${'*/'.repeat(depth - 1)}*.ts`],
        rules: {
          'no-restricted-imports': ['error', { patterns: [{ regex, message }] }],
          'no-restricted-syntax': [
            'error',
            // esquery regex literals cannot hold a slash, even escaped: \x2F stands for it.
            { selector: `ImportExpression[source.value=/${regex.replaceAll('/', '\\x2F')}/]`, message },
          ],
        },
      });
    }
  }
  return blocks;
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'charts/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        URL: 'readonly',
        Buffer: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      eqeqeq: ['error', 'always'],
    },
  },
  ...layeringRules(),
);
