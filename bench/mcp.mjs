#!/usr/bin/env node
/**
 * What deciding MCP calls one by one costs (issue 10), for requests of the same size:
 *
 * 1. CPU of the decision per request (process.cpuUsage over many iterations): a plain POST is one
 *    policy decision; a POST to an MCP endpoint is that decision plus parsing the JSON-RPC body
 *    (UTF-8 check, JSON.parse, the repeated-key scan) and one decision per tool call
 *    (src/gateway/mcp.ts). Bodies of ~1 KiB and ~16 KiB (a tools/call whose arguments carry the bulk).
 * 2. End to end through the in-process gateway on loopback: the same body POSTed by one keep-alive
 *    client to an upstream that answers 200 at once, to a plain path and to a declared MCP endpoint;
 *    latency p50/p99 (ms) and requests/s, rounds alternated. The MCP path also buffers the body
 *    (body.ts) before dialling.
 *
 * Prints one JSON object and writes it to bench/results/mcp-<time>.json.
 * Needs a build: dist/ (`npm run build`) or AIRLOCK_DIST=/path/to/dist.
 * Usage: node bench/mcp.mjs [iterations=100000] [requests=3000]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DIST = process.env.AIRLOCK_DIST ?? path.join(ROOT, 'dist');
const dist = (p) => path.join(DIST, p);
const { compilePolicy } = await import(dist('policy/load.js'));
const { CANONICAL_MODEL } = await import(dist('policy/model.js'));
const { parseJsonRpc, decideMcpMessages } = await import(dist('gateway/mcp.js'));
const { EgressGateway, withGatewayDefaults } = await import(dist('gateway/proxy.js'));
const { SessionTable } = await import(dist('gateway/sessions.js'));
const { UpstreamResolver } = await import(dist('gateway/resolve.js'));
const { DestinationPolicy } = await import(dist('gateway/address.js'));
const { PolicyStore } = await import(dist('policy/store.js'));

const ITER = Number(process.argv[2] ?? 100_000);
const REQUESTS = Number(process.argv[3] ?? 3_000);

/** A tools/call body of about `size` bytes. */
function body(size) {
  const m = {
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { name: 'search_issues', arguments: { q: '' } },
  };
  const base = Buffer.byteLength(JSON.stringify(m));
  m.params.arguments.q = 'x'.repeat(Math.max(0, size - base));
  return Buffer.from(JSON.stringify(m));
}

const csv = (host) =>
  [
    // Some unrelated rules, so the index is not trivial.
    ...Array.from({ length: 200 }, (_, i) => `p, role${i % 20}, api${i}.test, /v1/*, GET, allow`),
    `p, analyst, ${host}, /mcp, POST, allow`,
    `p, analyst, ${host}, /plain, POST, allow`,
    `p, analyst, ${host}, /mcp/tools/call/search_issues, MCP, allow`,
    `p, analyst, ${host}, /mcp/tools/call/create_issue, MCP, deny`,
    '',
  ].join('\n');

function cpuMicros(fn, n) {
  for (let i = 0; i < Math.min(n, 5_000); i++) fn(); // warm up
  const t = process.cpuUsage();
  for (let i = 0; i < n; i++) fn();
  const d = process.cpuUsage(t);
  return Math.round(((d.user + d.system) / n) * 1000) / 1000;
}

const session = {
  id: 's',
  role: 'analyst',
  address: '127.0.0.1',
  credentialSha256: '00',
  expiresAtMs: Infinity,
};
const micro = {};
{
  const policy = compilePolicy(CANONICAL_MODEL, csv('gh.test'));
  for (const size of [1024, 16 * 1024]) {
    const b = body(size);
    const plain = cpuMicros(() => {
      policy.decide({ role: 'analyst', host: 'gh.test', path: '/plain', method: 'POST' });
    }, ITER);
    const mcp = cpuMicros(
      () => {
        policy.decide({ role: 'analyst', host: 'gh.test', path: '/mcp', method: 'POST' });
        const p = parseJsonRpc(b);
        if (!p.ok) throw new Error(p.detail);
        const d = decideMcpMessages(policy, session, 'gh.test', '/mcp', p.messages);
        if (d.denied) throw new Error('denied');
      },
      Math.max(1_000, Math.floor(ITER / (size / 1024))),
    );
    micro[`${b.length}B`] = {
      plainDecisionUs: plain,
      mcpDecisionUs: mcp,
      extraUs: Math.round((mcp - plain) * 1000) / 1000,
    };
  }
}

// End to end.
const upstream = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 });
    res.end('{}');
  });
});
await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
const up = upstream.address().port;
const host = `gh.test:${up}`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-mcp-'));
writeFileSync(path.join(dir, 'model.conf'), CANONICAL_MODEL);
writeFileSync(path.join(dir, 'policy.csv'), csv(host));
writeFileSync(
  path.join(dir, 'mcp.yaml'),
  `version: 1\nendpoints:\n  - {name: github, host: "${host}", path: /mcp}\n`,
);
const store = await PolicyStore.open(dir, { watch: false });
if (!store.current()) throw new Error(store.lastError());
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
    policy: store,
    sessions,
    audit: { emit() {} },
    resolver: new UpstreamResolver(
      new DestinationPolicy(['127.0.0.0/8']),
      new Map([['gh.test', '127.0.0.1']]),
    ),
  }),
);
const proxyPort = (await gateway.listen(0, '127.0.0.1')).port;
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const auth = 'Basic ' + Buffer.from(`s-bench:${cred}`).toString('base64');

function post(p, b) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: proxyPort,
      method: 'POST',
      path: `http://${host}${p}`,
      agent,
      headers: {
        host,
        'proxy-authorization': auth,
        'content-type': 'application/json',
        'content-length': b.length,
      },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      res.resume();
      res.on('end', () =>
        res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`)),
      );
    });
    req.end(b);
  });
}

async function round(p, b, n) {
  const lat = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await post(p, b);
    lat.push(performance.now() - t);
  }
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, c) => a - c);
  return { p50: lat[Math.floor(n * 0.5)], p99: lat[Math.floor(n * 0.99)], rps: n / secs };
}

const e2e = {};
for (const size of [1024, 16 * 1024]) {
  const b = body(size);
  await round('/plain', b, 200); // warm up
  await round('/mcp', b, 200);
  const acc = { plain: [], mcp: [] };
  for (let r = 0; r < 3; r++) {
    acc.plain.push(await round('/plain', b, Math.floor(REQUESTS / 3)));
    acc.mcp.push(await round('/mcp', b, Math.floor(REQUESTS / 3)));
  }
  const med = (xs, k) => xs.map((x) => x[k]).sort((a, c) => a - c)[1];
  const fmt = (v) => Math.round(v * 1000) / 1000;
  e2e[`${b.length}B`] = {
    plain: {
      p50Ms: fmt(med(acc.plain, 'p50')),
      p99Ms: fmt(med(acc.plain, 'p99')),
      rps: Math.round(med(acc.plain, 'rps')),
    },
    mcp: {
      p50Ms: fmt(med(acc.mcp, 'p50')),
      p99Ms: fmt(med(acc.mcp, 'p99')),
      rps: Math.round(med(acc.mcp, 'rps')),
    },
  };
}
agent.destroy();
await gateway.close();
store.close();
upstream.close();
rmSync(dir, { recursive: true, force: true });

const result = {
  bench: 'mcp',
  node: process.version,
  cpus: os.cpus().length,
  iterations: ITER,
  requests: REQUESTS,
  decisionCpu: micro,
  endToEnd: e2e,
};
console.log(JSON.stringify(result, null, 2));
mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true });
writeFileSync(
  path.join(ROOT, `bench/results/mcp-${new Date().toISOString().replace(/[:.]/g, '-')}.json`),
  JSON.stringify(result, null, 2) + '\n',
);
