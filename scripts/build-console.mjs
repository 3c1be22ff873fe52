#!/usr/bin/env node
// Builds the web console (src/console, Preact) into dist/console: app.js bundled and minified by
// esbuild (no third-party CDN: everything the page loads is served by `airlock serve` at /ui/),
// app.css and index.html copied. Run by `npm run build`.
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'src/console');
const out = path.join(root, 'dist/console');
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [path.join(src, 'main.tsx')],
  outfile: path.join(out, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  sourcemap: true,
  jsx: 'automatic',
  jsxImportSource: 'preact',
  tsconfig: path.join(src, 'tsconfig.json'),
  legalComments: 'linked',
  logLevel: 'warning',
});
for (const f of ['index.html', 'app.css']) copyFileSync(path.join(src, f), path.join(out, f));
