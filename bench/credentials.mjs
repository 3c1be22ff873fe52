#!/usr/bin/env node
/**
 * What credentials.yaml adds to each HTTP request in the gateway (issue 14 target: <= 5 us CPU per
 * request), in two parts of one run:
 *
 * 1. micro: the binding match (CredentialSet.match), the known-secret scan of the URL and every
 *    header with the session's placeholders (CredentialVault.findLeak) and, for a bound call,
 *    building the injected header (CredentialVault.inject) — process.cpuUsage() over many
 *    iterations, for 1, 10 and 50 credentials, on a request with a query string and 12 realistic
 *    headers, with and without a binding, against the same loop without credentials.yaml (the
 *    no-injection baseline: `injectionUsPerRequest` is the difference); plus the body scan
 *    (findLeakInBody) of a 16 KiB JSON body;
 * 2. end to end: the in-process EgressGateway forwarding GET requests (keep-alive, 8 in flight) to a
 *    local upstream, with and without a bound bearer credential (scan + injection), alternating
 *    rounds; the process's CPU per request (client, gateway and upstream alike: the difference is the
 *    credentials' share) and the ratio with / without, median of the rounds.
 *
 * Prints one JSON object and writes it to bench/results/credentials-<time>.json.
 * Needs dist/ (`npm run build`). Usage: node bench/credentials.mjs [iterations=200000] [e2eRequests=4000]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => path.join(ROOT, 'dist', p);
const { parseCredentials } = await import(dist('policy/credentials.js'));
const { CredentialVault } = await import(dist('gateway/credentials.js'));
const { appliedAs, newPlaceholder } = await import(dist('policy/credentials.js'));
const { EgressGateway, withGatewayDefaults } = await import(dist('gateway/proxy.js'));
const { SessionTable } = await import(dist('gateway/sessions.js'));
const { UpstreamResolver } = await import(dist('gateway/resolve.js'));
const { DestinationPolicy } = await import(dist('gateway/address.js'));
const { PolicyStore } = await import(dist('policy/store.js'));
const { CANONICAL_MODEL } = await import(dist('policy/model.js'));

const N = Number(process.argv[2] ?? 200_000);
const E2E_REQUESTS = Number(process.argv[3] ?? 4_000);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const round3 = (x) => Math.round(x * 1000) / 1000;
/** A session with two placeholders, as the control plane registers it. */
const SESSION = { placeholders: { c0: newPlaceholder('c0'), other: newPlaceholder('other') } };

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
    const leak = vault.findLeak(request, m ? appliedAs(m.credential.apply) : null, SESSION);
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
  // The body scan of an allowed POST (16 KiB of JSON without a secret), per request.
  const body = Buffer.from(
    JSON.stringify({
      items: Array.from({ length: 160 }, (_, i) => ({
        id: i,
        title: `issue ${i}`,
        state: 'open',
        x: 'y'.repeat(40),
      })),
    }).slice(0, 16_384),
  );
  for (let i = 0; i < 2_000; i++) vault.findLeakInBody(body, SESSION);
  const b0 = process.cpuUsage();
  const bodyN = Math.max(1_000, Math.floor(N / 20));
  for (let i = 0; i < bodyN; i++) if (vault.findLeakInBody(body, SESSION)) throw new Error('unexpected leak');
  const bd = process.cpuUsage(b0);
  vault.close();
  rmSync(dir, { recursive: true, force: true });
  return {
    credentials: count,
    boundUsPerRequest: bound,
    unboundUsPerRequest: unbound,
    body16KiBScanUs: round3((bd.user + bd.system) / bodyN),
  };
}

/** The same loop without credentials.yaml: no match, no scan, no injection (the baseline). */
function baseline() {
  const vault = new CredentialVault({ env: {}, pollIntervalMs: 0 });
  const set = parseCredentials('version: 1\ncredentials: []\n');
  const one = () => {
    const m = set.match('analyst', 'api.example.com', '/repos/acme/widgets/issues', 'GET');
    const leak = vault.findLeak(request, m ? appliedAs(m.credential.apply) : null, {});
    return m || leak ? 1 : 0;
  };
  for (let i = 0; i < 20_000; i++) one();
  const t0 = process.cpuUsage();
  let sink = 0;
  for (let i = 0; i < N; i++) sink += one();
  const d = process.cpuUsage(t0);
  if (sink < 0) console.log(sink);
  vault.close();
  return round3((d.user + d.system) / N);
}

/** End to end through the in-process gateway: CPU per request with and without a bound credential. */
async function endToEnd() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-creds-e2e-'));
  const upstream = http.createServer((req, res) => {
    req.resume();
    res.end(req.headers.authorization === 'Bearer ghp_bench_0123456789abcdefghij' ? 'ok' : 'anon');
  });
  await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
  const port = upstream.address().port;
  const policyDir = path.join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(path.join(policyDir, 'policy.csv'), `p, analyst, up.test:${port}, /repos/*, GET, allow\n`);
  const yaml = [
    'version: 1',
    'credentials:',
    '  - name: gh',
    '    roles: [analyst]',
    `    bindings: [{ host: "up.test:${port}", path: /repos/*, methods: [GET] }]`,
    '    apply: { type: bearer }',
    '    source: { env: GH }',
    '',
  ].join('\n');
  const policy = await PolicyStore.open(policyDir, { watch: false, pollIntervalMs: 0 });
  const vault = new CredentialVault({ env: { GH: 'ghp_bench_0123456789abcdefghij' }, pollIntervalMs: 0 });
  const sessions = new SessionTable();
  const cred = 'bench-credential-0123456789';
  sessions.upsert({
    id: 's-bench',
    role: 'analyst',
    address: '127.0.0.1',
    credentialSha256: createHash('sha256').update(cred).digest('hex'),
    expiresAtMs: Date.now() + 3_600_000,
  });
  const gateway = new EgressGateway(
    withGatewayDefaults({
      policy,
      sessions,
      audit: { emit() {} },
      credentials: vault,
      resolver: new UpstreamResolver(
        new DestinationPolicy(['127.0.0.0/8']),
        new Map([['up.test', '127.0.0.1']]),
      ),
    }),
  );
  const addr = await gateway.listen(0, '127.0.0.1');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const proxyAuth = 'Basic ' + Buffer.from(`s-bench:${cred}`).toString('base64');
  const get = () =>
    new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: addr.port,
          agent,
          path: `http://up.test:${port}/repos/acme/widgets/issues?state=open&per_page=100`,
          headers: { host: `up.test:${port}`, 'proxy-authorization': proxyAuth, accept: 'application/json' },
        },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve(Buffer.concat(chunks).toString()));
        },
      );
      req.on('error', reject);
      req.end();
    });
  const batch = async (n, expect) => {
    let next = 0;
    const worker = async () => {
      while (next < n) {
        next++;
        const body = await get();
        if (body !== expect) throw new Error(`unexpected answer ${body}`);
      }
    };
    const t0 = process.cpuUsage();
    await Promise.all(Array.from({ length: 8 }, worker));
    const d = process.cpuUsage(t0);
    return (d.user + d.system) / n;
  };
  const setCredentials = async (on) => {
    if (on) writeFileSync(path.join(policyDir, 'credentials.yaml'), yaml);
    else rmSync(path.join(policyDir, 'credentials.yaml'), { force: true });
    const r = await policy.reload();
    if (r.error) throw new Error(r.error);
  };
  const rounds = { with: [], without: [] };
  for (const on of [false, true]) {
    await setCredentials(on);
    await batch(500, on ? 'ok' : 'anon'); // warm up
  }
  for (let round = 0; round < 6; round++) {
    for (const on of round % 2 ? [true, false] : [false, true]) {
      await setCredentials(on);
      rounds[on ? 'with' : 'without'].push(await batch(E2E_REQUESTS, on ? 'ok' : 'anon'));
    }
  }
  await gateway.close();
  agent.destroy();
  vault.close();
  await policy.close();
  await new Promise((r) => upstream.close(r));
  rmSync(dir, { recursive: true, force: true });
  const w = median(rounds.with);
  const wo = median(rounds.without);
  return {
    requestsPerRound: E2E_REQUESTS,
    rounds: rounds.with.length,
    cpuUsPerRequestWithInjection: round3(w),
    cpuUsPerRequestWithout: round3(wo),
    ratioWithOverWithout: round3(w / wo),
    differenceUsPerRequest: round3(w - wo),
    roundsUs: { with: rounds.with.map(round3), without: rounds.without.map(round3) },
  };
}

const baselineUs = baseline();
const results = [];
for (const count of [1, 10, 50]) results.push(await scenario(count));
for (const r of results) {
  r.injectionUsPerRequest = round3(r.boundUsPerRequest - baselineUs);
  r.ratioVsNoCredentials = round3(r.boundUsPerRequest / Math.max(baselineUs, 0.001));
}
const e2e = await endToEnd();
const out = {
  bench: 'credentials',
  time: new Date().toISOString(),
  node: process.version,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
  iterations: N,
  requestBytes: request.url.length + request.rawHeaders.join('').length,
  targetUsPerRequest: 5,
  baselineNoCredentialsUsPerRequest: baselineUs,
  results,
  endToEnd: e2e,
  pass: results.every((r) => r.boundUsPerRequest <= 5 && r.unboundUsPerRequest <= 5),
};
console.log(JSON.stringify(out, null, 2));
mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
writeFileSync(
  path.join(ROOT, 'bench', 'results', `credentials-${out.time.replace(/[:.]/g, '-')}.json`),
  JSON.stringify(out, null, 2) + '\n',
);
