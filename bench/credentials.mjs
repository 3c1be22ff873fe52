#!/usr/bin/env node
/**
 * Micro-benchmark of what credentials.yaml adds to each HTTP request in the gateway (issue 14 target:
 * <= 5 us CPU per request): the binding match (CredentialSet.match), the known-secret scan of the URL
 * and every header (CredentialVault.findLeak) and, for a bound call, building the injected header
 * (CredentialVault.inject). Measured with process.cpuUsage() over many iterations, for 1, 10 and 50
 * credentials, on a request with a query string and 12 realistic headers (~900 bytes), with and
 * without a binding. Prints one JSON object and writes it to bench/results/credentials-<time>.json.
 *
 * Needs dist/ (`npm run build`). Usage: node bench/credentials.mjs [iterations=200000]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => path.join(ROOT, 'dist', p);
const { parseCredentials } = await import(dist('policy/credentials.js'));
const { CredentialVault } = await import(dist('gateway/credentials.js'));
const { appliedAs } = await import(dist('policy/credentials.js'));

const N = Number(process.argv[2] ?? 200_000);

const request = {
  url: '/repos/acme/widgets/issues?state=open&per_page=100&page=3&sort=updated&direction=desc',
  rawHeaders: [
    'Host',
    'api.example.com',
    'User-Agent',
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) agent/1.4.2',
    'Accept',
    'application/vnd.github+json, application/json;q=0.9, */*;q=0.8',
    'Accept-Encoding',
    'gzip, deflate, br',
    'Accept-Language',
    'en-US,en;q=0.9',
    'Authorization',
    'Bearer placeholder-the-agent-sent-0000000000000000',
    'X-Request-Id',
    '6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b',
    'X-GitHub-Api-Version',
    '2022-11-28',
    'Cookie',
    'session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmno; theme=dark',
    'Content-Type',
    'application/json',
    'Cache-Control',
    'no-cache',
    'Proxy-Authorization',
    'Basic c2Vzc2lvbi0xMjM6Y3JlZGVudGlhbC00NTY=',
  ],
};

async function scenario(count) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-creds-'));
  const env = {};
  const lines = ['version: 1', 'credentials:'];
  for (let i = 0; i < count; i++) {
    env[`TOKEN_${i}`] =
      `ghp_${i}_${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
    lines.push(
      `  - name: c${i}`,
      '    roles: [analyst]',
      `    bindings: [{ host: ${i === 0 ? 'api.example.com' : `api${i}.example.com`}, path: /repos/*, methods: [GET] }]`,
      '    apply: { type: bearer }',
      `    source: { env: TOKEN_${i} }`,
    );
  }
  const set = parseCredentials(lines.join('\n') + '\n');
  const vault = new CredentialVault({ env, pollIntervalMs: 0 });
  await vault.sync(set);
  const one = (host) => {
    const m = set.match('analyst', host, '/repos/acme/widgets/issues', 'GET');
    const leak = vault.findLeak(request, m ? appliedAs(m.credential.apply) : null);
    if (leak) throw new Error('unexpected leak');
    return m ? vault.inject(m) : null;
  };
  const measure = (host) => {
    for (let i = 0; i < 20_000; i++) one(host); // warm up
    const t0 = process.cpuUsage();
    let sink = 0;
    for (let i = 0; i < N; i++) sink += one(host) ? 1 : 0;
    const d = process.cpuUsage(t0);
    if (sink < 0) console.log(sink);
    return Math.round(((d.user + d.system) / N) * 1000) / 1000;
  };
  const bound = measure('api.example.com');
  const unbound = measure('other.example.com');
  vault.close();
  rmSync(dir, { recursive: true, force: true });
  return { credentials: count, boundUsPerRequest: bound, unboundUsPerRequest: unbound };
}

const results = [];
for (const count of [1, 10, 50]) results.push(await scenario(count));
const out = {
  bench: 'credentials',
  time: new Date().toISOString(),
  node: process.version,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
  iterations: N,
  requestBytes: request.url.length + request.rawHeaders.join('').length,
  targetUsPerRequest: 5,
  results,
  pass: results.every((r) => r.boundUsPerRequest <= 5 && r.unboundUsPerRequest <= 5),
};
console.log(JSON.stringify(out, null, 2));
mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
writeFileSync(
  path.join(ROOT, 'bench', 'results', `credentials-${out.time.replace(/[:.]/g, '-')}.json`),
  JSON.stringify(out, null, 2) + '\n',
);
