#!/usr/bin/env node
/**
 * What the per-request credential kinds (issue 14 part B) cost the gateway, CPU per request, against
 * a static bearer injection measured in the same run (the baseline):
 *
 * - `aws-sigv4`: CredentialVault.injectDynamic signing the forwarded request (src/gateway/sigv4.ts on
 *   node:crypto: the signing key is derived once per key, day, region and service, so this is the
 *   canonical request, one SHA-256 and one HMAC) for a GET with a query string and 12 headers;
 * - `aws-sigv4` with `@smithy/signature-v4` (the signer the gateway used before, with its SHA-256/HMAC
 *   on node:crypto and KeyObject keys, as src/gateway/sigv4.ts had it): the "before" figure, same
 *   request, same run;
 * - `oauth2-client-credentials` with a cached token (the common case: a token request happens once
 *   per token lifetime; the first one goes to a token endpoint on loopback and is not counted);
 * - `bearer`: CredentialVault.inject (the part A path), the baseline.
 *
 * process.cpuUsage() over many sequential iterations, each awaited (the async paths include their
 * promise overhead: `usPerRequest`). The gateway calls the SigV4 and bearer paths synchronously
 * (decide.ts: no promise on the signing path), so they are measured called that way too
 * (`usPerRequestSync`), with the signer alone (`SigV4Signers.sign`, no vault) beside them.
 *
 * `--before REV`: the signer of git revision REV (its src/gateway/sigv4.ts, compiled with esbuild into
 * a temp dir) against the current one, alternating rounds in the same run, medians (`signerBeforeAfter`).
 *
 * Prints one JSON object and writes it to bench/results/credentials-dynamic-<time>.json.
 * Needs dist/ (`npm run build`). Usage: node bench/credentials-dynamic.mjs [iterations=50000] [--before REV]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => path.join(ROOT, 'dist', p);
const { parseCredentials } = await import(dist('policy/credentials.js'));
const { CredentialVault } = await import(dist('gateway/credentials.js'));
const { OAuth2Tokens } = await import(dist('gateway/oauth2.js'));
const { UpstreamResolver } = await import(dist('gateway/resolve.js'));
const { DestinationPolicy } = await import(dist('gateway/address.js'));
const { SignatureV4 } = await import('@smithy/signature-v4');
const { createHash, createHmac, createSecretKey } = await import('node:crypto');

const args = process.argv.slice(2);
const beforeAt = args.indexOf('--before');
const beforeRev = beforeAt >= 0 ? args.splice(beforeAt, 2)[1] : null;
if (beforeAt >= 0 && !beforeRev) throw new Error('--before needs a git revision');
const N = Number(args[0] ?? 50_000);
if (!(N > 0)) throw new Error(`iterations must be a positive number, not ${args[0]}`);
const { SigV4Signers } = await import(dist('gateway/sigv4.js'));
const round3 = (x) => Math.round(x * 1000) / 1000;

// A token endpoint on loopback for the one token request the OAuth2 path makes.
let tokenRequests = 0;
const idp = http.createServer((req, res) => {
  req.resume();
  tokenRequests++;
  res.setHeader('content-type', 'application/json');
  res.end(
    JSON.stringify({ access_token: 'at-bench-0123456789abcdef', token_type: 'Bearer', expires_in: 3600 }),
  );
});
await new Promise((r) => idp.listen(0, '127.0.0.1', r));
const idpPort = idp.address().port;

const yaml = [
  'version: 1',
  'credentials:',
  '  - name: s3',
  '    roles: [bot]',
  '    bindings: [{ host: s3.example.com, path: /*, methods: [GET] }]',
  '    apply: { type: aws-sigv4, region: eu-west-1 }',
  '    source: { env: S3_KEYS }',
  '  - name: cc',
  '    roles: [bot]',
  '    bindings: [{ host: api.example.com, path: /*, methods: [GET] }]',
  `    apply: { type: oauth2-client-credentials, tokenUrl: "http://127.0.0.1:${idpPort}/token", clientId: bot }`,
  '    source: { env: CC_SECRET }',
  '  - name: gh',
  '    roles: [bot]',
  '    bindings: [{ host: gh.example.com, path: /*, methods: [GET] }]',
  '    apply: { type: bearer }',
  '    source: { env: GH_TOKEN }',
  '',
].join('\n');
const set = parseCredentials(yaml);
const vault = new CredentialVault({
  env: {
    S3_KEYS: 'AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    CC_SECRET: 'cc-secret-0123456789abcdef',
    GH_TOKEN: 'ghp_bench_0123456789abcdefghij',
  },
  pollIntervalMs: 0,
  oauth2: new OAuth2Tokens({
    resolver: new UpstreamResolver(new DestinationPolicy(['127.0.0.0/8']), new Map()),
  }),
});
await vault.sync(set);

const rawHeaders = [
  'User-Agent',
  'aws-sdk-js/3.700.0 ua/2.1 os/linux lang/js md/nodejs#24.0.0',
  'Accept',
  '*/*',
  'Accept-Encoding',
  'gzip, deflate, br',
  'X-Amz-User-Agent',
  'aws-sdk-js/3.700.0',
  'Amz-Sdk-Invocation-Id',
  '6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b',
  'Amz-Sdk-Request',
  'attempt=1; max=3',
  'X-Amz-Content-Sha256',
  'UNSIGNED-PAYLOAD',
  'X-Amz-Date',
  '20260101T000000Z',
  'Authorization',
  'AWS4-HMAC-SHA256 Credential=AKIAAGENT/20260101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00',
  'X-Request-Id',
  'bench-0001',
  'Cache-Control',
  'no-cache',
  'Content-Type',
  'application/xml',
];
const req = (authority) => ({
  method: 'GET',
  authority,
  path: '/reports-bucket/',
  query: '?list-type=2&prefix=2026%2F11%2F&max-keys=100',
  rawHeaders,
});
const match = (host) => set.match('bot', host, '/reports-bucket/', 'GET');

async function measure(fn) {
  for (let i = 0; i < 2_000; i++) await fn(); // warm up
  const t0 = process.cpuUsage();
  for (let i = 0; i < N; i++) await fn();
  const d = process.cpuUsage(t0);
  return round3((d.user + d.system) / N);
}

const s3 = match('s3.example.com');
const cc = match('api.example.com');
const gh = match('gh.example.com');
const s3Req = req('s3.example.com');
const ccReq = req('api.example.com');
const check = async (m, r) => {
  const got = await vault.injectDynamic(m, r);
  if (got.kind !== 'inject') throw new Error(`not injected: ${JSON.stringify(got)}`);
  return got;
};
await check(s3, s3Req);
await check(cc, ccReq); // the one token request

// The previous signer (before): @smithy/signature-v4 over node:crypto, HMAC keys as KeyObjects.
const bytesOf = (d) =>
  typeof d === 'string'
    ? Buffer.from(d, 'utf8')
    : ArrayBuffer.isView(d)
      ? Buffer.from(d.buffer, d.byteOffset, d.byteLength)
      : Buffer.from(d);
const keyObjects = new Map();
class Sha256 {
  constructor(secret) {
    if (secret !== undefined) {
      const b = bytesOf(secret);
      const id = b.toString('base64');
      if (!keyObjects.has(id)) keyObjects.set(id, createSecretKey(b));
      this.secret = keyObjects.get(id);
    } else this.secret = null;
    this.reset();
  }
  update(d) {
    this.h.update(bytesOf(d));
  }
  digest() {
    return Promise.resolve(this.h.digest());
  }
  reset() {
    this.h = this.secret ? createHmac('sha256', this.secret) : createHash('sha256');
  }
}
const smithy = new SignatureV4({
  credentials: {
    accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
    secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  },
  region: 'eu-west-1',
  service: 's3',
  sha256: Sha256,
  uriEscapePath: false,
  applyChecksum: true,
});
const smithySign = async () => {
  const headers = { host: s3Req.authority };
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    if (
      ['authorization', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256', 'host'].includes(name)
    )
      continue;
    if (name !== 'content-type' && name !== 'content-md5' && !name.startsWith('x-amz-')) continue;
    headers[name] = name in headers ? `${headers[name]},${rawHeaders[i + 1]}` : rawHeaders[i + 1];
  }
  headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  const query = {};
  for (const part of s3Req.query.slice(1).split('&')) {
    const eq = part.indexOf('=');
    query[decodeURIComponent(part.slice(0, eq))] = decodeURIComponent(part.slice(eq + 1));
  }
  return smithy.sign(
    { method: 'GET', protocol: 'https:', hostname: s3Req.authority, path: s3Req.path, query, headers },
    { signingDate: new Date() },
  );
};
// Both sign the same request identically (the unit test's differential checks it more widely).
{
  const now = new Date();
  const ours = await check(s3, s3Req);
  const ref = await smithySign();
  const sig = (a) => /Signature=([0-9a-f]{64})/.exec(a)[1];
  if (
    new Date().getSeconds() === now.getSeconds() &&
    sig(ours.credential.value) !== sig(ref.headers.authorization)
  )
    throw new Error('the gateway signer and @smithy/signature-v4 disagree on the bench request');
}

function measureSync(fn) {
  for (let i = 0; i < 2_000; i++) fn(); // warm up
  const t0 = process.cpuUsage();
  for (let i = 0; i < N; i++) fn();
  const d = process.cpuUsage(t0);
  return round3((d.user + d.system) / N);
}
const checkSync = (m, r) => {
  const got = vault.injectDynamic(m, r);
  if (got.kind !== 'inject') throw new Error(`not injected: ${JSON.stringify(got)}`);
  return got;
};
const s3Keys = {
  accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
};
const s3Scope = { region: 'eu-west-1', service: 's3' };

// The signer of another revision (--before), alternating rounds with the current one.
let signerBeforeAfter = null;
if (beforeRev !== null) {
  const { transformSync } = await import('esbuild');
  const src = execFileSync('git', ['-C', ROOT, 'show', `${beforeRev}:src/gateway/sigv4.ts`], {
    encoding: 'utf8',
  });
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-sigv4-'));
  const file = path.join(tmp, 'sigv4-before.mjs');
  writeFileSync(file, transformSync(src, { loader: 'ts', format: 'esm', target: 'node22' }).code);
  const Before = (await import(file)).SigV4Signers;
  rmSync(tmp, { recursive: true, force: true });
  const before = new Before();
  const after = new SigV4Signers();
  const at = new Date();
  if (
    before.sign(s3Req, s3Keys, s3Scope, at).authorization !==
    after.sign(s3Req, s3Keys, s3Scope, at).authorization
  )
    throw new Error(`the signer of ${beforeRev} and the current one disagree on the bench request`);
  const rounds = { before: [], after: [] };
  for (let r = 0; r < 7; r++) {
    rounds.before.push(measureSync(() => before.sign(s3Req, s3Keys, s3Scope)));
    rounds.after.push(measureSync(() => after.sign(s3Req, s3Keys, s3Scope)));
  }
  const median = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];
  signerBeforeAfter = {
    beforeRev,
    rounds: 7,
    beforeUs: median(rounds.before),
    afterUs: median(rounds.after),
    ratio: round3(median(rounds.after) / median(rounds.before)),
    beforeRoundsUs: rounds.before,
    afterRoundsUs: rounds.after,
  };
}

const signers = new SigV4Signers();
const signerUs = measureSync(() => signers.sign(s3Req, s3Keys, s3Scope));
const bearerSyncUs = measureSync(() => vault.inject(gh));
const sigv4SyncUs = measureSync(() => checkSync(s3, s3Req));
const bearerUs = await measure(async () => vault.inject(gh));
const smithyUs = await measure(smithySign);
const sigv4Us = await measure(() => check(s3, s3Req));
const oauth2CachedUs = await measure(() => check(cc, ccReq));
vault.close();
await new Promise((r) => idp.close(r));

const result = {
  bench: 'credentials-dynamic',
  time: new Date().toISOString(),
  node: process.version,
  cpus: os.cpus().length,
  loadavg1: round3(os.loadavg()[0]),
  iterations: N,
  usPerRequest: {
    bearerBaseline: bearerUs,
    awsSigV4: sigv4Us,
    awsSigV4SmithyBefore: smithyUs,
    oauth2CachedToken: oauth2CachedUs,
  },
  usPerRequestSync: {
    bearerBaseline: bearerSyncUs,
    awsSigV4: sigv4SyncUs,
    awsSigV4SignerOnly: signerUs,
    vaultShare: round3(sigv4SyncUs - signerUs),
  },
  targetUs: 5,
  awsSigV4TargetMet: sigv4SyncUs <= 5,
  signerBeforeAfter,
  ratioToBearer: {
    awsSigV4: round3(sigv4Us / bearerUs),
    awsSigV4SmithyBefore: round3(smithyUs / bearerUs),
    oauth2CachedToken: round3(oauth2CachedUs / bearerUs),
  },
  speedupOverSmithy: round3(smithyUs / sigv4Us),
  tokenRequests,
};
const out = path.join(ROOT, 'bench', 'results');
mkdirSync(out, { recursive: true });
writeFileSync(
  path.join(out, `credentials-dynamic-${result.time.replace(/[:.]/g, '-')}.json`),
  JSON.stringify(result, null, 2) + '\n',
);
console.log(JSON.stringify(result, null, 2));
