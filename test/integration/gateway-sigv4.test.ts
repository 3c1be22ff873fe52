/**
 * Issue 14 part B: AWS SigV4 credentials. The gateway signs allowed S3 calls with the access key it
 * holds, on plain HTTP and inside intercepted HTTPS tunnels, replacing whatever the agent signed.
 * The S3 server is real and not ours: moto's server mode (PyPI `moto[server]`, installed by
 * scripts/moto.sh) with IAM authentication on (`INITIAL_NO_AUTH_ACTION_COUNT=3`: after the three
 * setup calls that create the gateway's access key, every call must carry a valid SigV4 signature
 * of a known key, or moto answers 403 as S3 does). For the HTTPS path nginx terminates TLS in front
 * of moto with a test CA (Host passed through unchanged, so the signed host is the one moto checks).
 * One agent is the real AWS SDK for Python (boto3) configured with a made-up key.
 *
 * Presigned URLs: moto 5.2.5 does not check query signatures (with IAM authentication on, a request
 * without an Authorization header fails its check with 500), so the presigned requests go to a
 * recording S3 stand-in (plain and TLS) and what the gateway forwarded is checked against the AWS SDK
 * for JavaScript's own presigner (`@smithy/signature-v4`) for the same request and time: the agent's
 * URL comes from boto3's `generate_presigned_url` with a made-up key.
 *
 * aws-chunked uploads (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`): moto checks the header signature (whose
 * payload hash is that marker) and decodes the chunked body, but does not check chunk signatures;
 * the gateway's chunk signatures are checked against AWS's published example in
 * test/unit/gateway/sigv4.test.ts. No AWS SDK at hand sends chunk-signed bodies (boto3 and the SDK for
 * JavaScript v3 send unsigned or trailer-checksum payloads), so the agent here frames the body itself,
 * with made-up chunk signatures.
 */
import 'reflect-metadata';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../src/audit/file-sink.js';
import { DestinationPolicy } from '../../src/gateway/address.js';
import { CredentialVault } from '../../src/gateway/credentials.js';
import { EgressGateway, withGatewayDefaults } from '../../src/gateway/proxy.js';
import { UpstreamResolver } from '../../src/gateway/resolve.js';
import { SessionTable } from '../../src/gateway/sessions.js';
import { SigV4Signers } from '../../src/gateway/sigv4.js';
import { LeafCache } from '../../src/gateway/tls/leaf-cache.js';
import { loadOrCreateCa } from '../../src/pki/ca.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore } from '../../src/policy/store.js';
import { proxyRequest, type ProxyTarget } from '../helpers/proxy-client.js';
import { makeTestPki } from '../helpers/tls-upstream.js';
import { freePort } from '../helpers/upstreams.js';

const run = promisify(execFile);
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const fixtures = path.join(repoRoot, 'test/fixtures/sigv4');

const AGENT = { id: 's-agent', cred: 'cred-agent-0123456789', address: '127.0.0.1', role: 'agent' };
/** A role with the same rules but no credential binding: its calls reach moto unsigned by the gateway. */
const PLAIN = { id: 's-plain', cred: 'cred-plain-0123456789', address: '127.0.0.2', role: 'plain' };
const auth = (s: typeof AGENT): string => `${s.id}:${s.cred}`;
const BOGUS_AUTH =
  'AWS4-HMAC-SHA256 Credential=AKIAAGENTMADETHISUP0/20260101/us-east-1/s3/aws4_request, ' +
  'SignedHeaders=host;x-amz-date, Signature=' +
  '0'.repeat(64);

let dir: string;
let motoPython: string;
let moto: ChildProcess;
let nginx: ChildProcess;
let ports: { moto: number; tls: number; rec: number; recTls: number };
/** The recording S3 stand-ins (presigned URLs): every request's method, URL and headers. */
let recorder: http.Server;
let recorderTls: https.Server;
const recorded: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
let keys: { accessKeyId: string; secretAccessKey: string };
let caFile: string;
let policy: PolicyStore;
let vault: CredentialVault;
let gateway: EgressGateway;
let audit: MemoryAuditSink;
let proxy: ProxyTarget;

async function waitFor(what: string, probe: () => Promise<unknown>): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await probe();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what} did not start: ${String(err)}`, { cause: err });
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function stop(p: ChildProcess | undefined): Promise<void> {
  if (p && p.exitCode === null && p.signalCode === null) {
    p.kill('SIGTERM');
    await once(p, 'exit');
  }
}

beforeAll(async () => {
  const paths = await run('bash', [path.join(repoRoot, 'scripts/moto.sh'), '--paths']).catch(
    (err: unknown) => {
      throw new Error(`moto is not installed: run bash scripts/moto.sh (${String(err)})`, { cause: err });
    },
  );
  motoPython = /MOTO_PYTHON=(.*)/.exec(paths.stdout)![1]!.trim();
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-sigv4-'));
  ports = { moto: await freePort(), tls: await freePort(), rec: 0, recTls: 0 };

  moto = spawn(motoPython, ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(ports.moto)], {
    // Path-style buckets whatever the Host (s3.test would otherwise be read as bucket "s3").
    env: { ...process.env, INITIAL_NO_AUTH_ACTION_COUNT: '3', S3_IGNORE_SUBDOMAIN_BUCKETNAME: 'true' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let motoLog = '';
  moto.stderr!.on('data', (c: Buffer) => (motoLog = (motoLog + c.toString()).slice(-4_000)));
  // moto's own health page (not an AWS action, so it does not use up the unauthenticated calls).
  await waitFor(`moto (${motoLog})`, () =>
    run('curl', ['-sf', '-o', '/dev/null', `http://127.0.0.1:${ports.moto}/moto-api/`]),
  );
  const setup = await run(motoPython, [
    path.join(fixtures, 'moto-iam-setup.py'),
    `http://127.0.0.1:${ports.moto}`,
  ]);
  keys = JSON.parse(setup.stdout) as typeof keys;

  // TLS in front of moto for the intercepted path.
  const pki = await makeTestPki();
  const cert = await pki.issue('s3tls.test');
  writeFileSync(path.join(dir, 'tls.crt'), cert.cert);
  writeFileSync(path.join(dir, 'tls.key'), cert.key, { mode: 0o600 });
  writeFileSync(
    path.join(dir, 'nginx.conf'),
    `daemon off;
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${ports.tls} ssl;
    server_name s3tls.test;
    ssl_certificate ${path.join(dir, 'tls.crt')};
    ssl_certificate_key ${path.join(dir, 'tls.key')};
    client_max_body_size 0;
    location / { proxy_pass http://127.0.0.1:${ports.moto}; proxy_set_header Host $http_host; }
  }
}
`,
  );
  nginx = spawn('nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });
  const upstreamCa = path.join(dir, 'upstream-ca.pem');
  writeFileSync(upstreamCa, pki.caPem);
  await waitFor('nginx', () =>
    run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '--cacert',
      upstreamCa,
      '--resolve',
      `s3tls.test:${ports.tls}:127.0.0.1`,
      `https://s3tls.test:${ports.tls}/moto-api/`,
    ]),
  );

  const record = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      recorded.push({
        method: req.method!,
        url: req.url!,
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      res.end('recorded');
    });
  };
  recorder = http.createServer(record);
  await new Promise<void>((r) => recorder.listen(0, '127.0.0.1', r));
  ports.rec = (recorder.address() as AddressInfo).port;
  const recCert = await pki.issue('s3rec.test');
  recorderTls = https.createServer({ cert: recCert.cert, key: recCert.key }, record);
  await new Promise<void>((r) => recorderTls.listen(0, '127.0.0.1', r));
  ports.recTls = (recorderTls.address() as AddressInfo).port;

  const secrets = path.join(dir, 'secrets');
  mkdirSync(secrets, { mode: 0o700 });
  writeFileSync(path.join(secrets, 's3'), `${keys.accessKeyId}:${keys.secretAccessKey}\n`, { mode: 0o600 });
  const policyDir = path.join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(
    path.join(policyDir, 'policy.csv'),
    [
      `p, agent, s3.test:${ports.moto}, /*, *, allow`,
      `p, agent, s3tls.test:${ports.tls}, /*, *, allow`,
      `p, agent, s3tls.test:${ports.tls}, /, CONNECT, allow`,
      `p, plain, s3.test:${ports.moto}, /*, *, allow`,
      `p, agent, s3rec.test:${ports.rec}, /*, *, allow`,
      `p, agent, s3rec.test:${ports.recTls}, /*, *, allow`,
      `p, agent, s3rec.test:${ports.recTls}, /, CONNECT, allow`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    path.join(policyDir, 'credentials.yaml'),
    [
      'version: 1',
      'credentials:',
      '  - name: s3',
      '    roles: [agent]',
      '    bindings:',
      `      - { host: "s3.test:${ports.moto}", path: /*, methods: ["*"] }`,
      `      - { host: "s3tls.test:${ports.tls}", path: /*, methods: ["*"] }`,
      `      - { host: "s3rec.test:${ports.rec}", path: /*, methods: ["*"] }`,
      `      - { host: "s3rec.test:${ports.recTls}", path: /*, methods: ["*"] }`,
      '    apply: { type: aws-sigv4, region: us-east-1 }',
      `    source: { file: ${path.join(secrets, 's3')} }`,
      '',
    ].join('\n'),
  );
  policy = await PolicyStore.open(policyDir, { watch: false, pollIntervalMs: 0 });
  expect(policy.current(), policy.lastError() ?? '').not.toBeNull();
  vault = new CredentialVault({ pollIntervalMs: 0 });
  const sessions = new SessionTable();
  for (const s of [AGENT, PLAIN]) {
    sessions.upsert({
      id: s.id,
      role: s.role,
      address: s.address,
      credentialSha256: sha(s.cred),
      expiresAtMs: Date.now() + 3_600_000,
    });
  }
  const ca = await loadOrCreateCa(path.join(dir, 'ca'));
  caFile = path.join(dir, 'airlock-ca.pem');
  writeFileSync(caFile, ca.trustPem);
  audit = new MemoryAuditSink();
  gateway = new EgressGateway(
    withGatewayDefaults({
      policy,
      sessions,
      audit,
      credentials: vault,
      resolver: new UpstreamResolver(
        new DestinationPolicy(['127.0.0.0/8']),
        new Map([
          ['s3.test', '127.0.0.1'],
          ['s3tls.test', '127.0.0.1'],
          ['s3rec.test', '127.0.0.1'],
        ]),
      ),
      upstreamCaPem: pki.caPem,
      intercept: { leaves: new LeafCache(ca), passthrough: [] },
    }),
  );
  proxy = { host: '127.0.0.1', port: (await gateway.listen(0, '127.0.0.1')).port };
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  vault?.close();
  await policy?.close();
  await stop(nginx);
  await stop(moto);
  await new Promise((r) => recorder?.close(r));
  await new Promise((r) => recorderTls?.close(r));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const s3 = (p: string): string => `http://s3.test:${ports.moto}${p}`;
const lastCall = () => audit.events.filter((e) => e.method !== 'CONNECT').at(-1)!;

/** curl through the gateway over HTTPS (intercepted), trusting the installation CA. */
async function curlTls(
  method: string,
  p: string,
  opts: { body?: string; headers?: string[] } = {},
): Promise<{ status: number; body: string }> {
  const args = [
    '-s',
    '-X',
    method,
    '--proxy',
    `http://${auth(AGENT)}@127.0.0.1:${proxy.port}`,
    '--cacert',
    caFile,
    '-w',
    '\n%{http_code}',
    ...(opts.headers ?? []).flatMap((h) => ['-H', h]),
    ...(opts.body !== undefined ? ['--data-binary', opts.body] : []),
    `https://s3tls.test:${ports.tls}${p}`,
  ];
  const r = await run('curl', args);
  const cut = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(cut + 1)), body: r.stdout.slice(0, cut) };
}

/** An aws-chunked body of these chunks and the final one, with made-up chunk signatures (the agent's). */
function chunked(chunks: Buffer[]): Buffer {
  const sig = 'a'.repeat(64);
  return Buffer.concat([
    ...chunks.flatMap((c) => [
      Buffer.from(`${c.length.toString(16)};chunk-signature=${sig}\r\n`),
      c,
      Buffer.from('\r\n'),
    ]),
    Buffer.from(`0;chunk-signature=${sig}\r\n\r\n`),
  ]);
}

/** The headers of a chunk-signed upload as an SDK sends them, signed with the agent's made-up key. */
function chunkedHeaders(decodedLength: number): Record<string, string> {
  return {
    authorization: BOGUS_AUTH,
    'x-amz-date': '20260101T000000Z',
    'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
    'x-amz-decoded-content-length': String(decodedLength),
    'content-encoding': 'aws-chunked',
  };
}

/** Presigned GET and PUT URLs from boto3 with a made-up key, valid 7200 s (the gateway caps it). */
async function presign(endpoint: string, bucket: string, key: string): Promise<{ get: string; put: string }> {
  const r = await run(motoPython, [path.join(fixtures, 'boto3-presign.py'), endpoint, bucket, key, '7200']);
  return JSON.parse(r.stdout) as { get: string; put: string };
}

/** curl through the gateway (intercepted for https), trusting the installation CA. */
async function curlVia(
  method: string,
  url: string,
  opts: { body?: string; headers?: string[] } = {},
): Promise<{ status: number; body: string }> {
  const r = await run('curl', [
    '-s',
    '-X',
    method,
    '--proxy',
    `http://${auth(AGENT)}@127.0.0.1:${proxy.port}`,
    '--cacert',
    caFile,
    '-w',
    '\n%{http_code}',
    ...(opts.headers ?? []).flatMap((h) => ['-H', h]),
    ...(opts.body !== undefined ? ['--data-binary', opts.body] : []),
    url,
  ]);
  const cut = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(cut + 1)), body: r.stdout.slice(0, cut) };
}

/** SHA-256 / HMAC on node:crypto for the reference presigner. */
class RefSha256 {
  readonly #h: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    const b =
      secret === undefined
        ? null
        : typeof secret === 'string'
          ? Buffer.from(secret)
          : ArrayBuffer.isView(secret)
            ? Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength)
            : Buffer.from(secret);
    this.#h = b ? createHmac('sha256', b) : createHash('sha256');
  }
  update(d: string | ArrayBuffer | ArrayBufferView): void {
    this.#h.update(
      typeof d === 'string'
        ? d
        : ArrayBuffer.isView(d)
          ? Buffer.from(d.buffer, d.byteOffset, d.byteLength)
          : Buffer.from(d),
    );
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.#h.digest());
  }
  reset(): void {}
}

/**
 * What reached the stand-in carries the gateway's presigned query: its access key, an expiry capped
 * at 3600 s, no Authorization header, and the signature `@smithy/signature-v4`'s presigner gives for
 * the same request, headers and time with the gateway's key.
 */
async function expectGatewayPresigned(
  rec: (typeof recorded)[number],
  method: string,
  authority: string,
): Promise<void> {
  const q = rec.url.indexOf('?');
  const reqPath = rec.url.slice(0, q);
  const params = new URLSearchParams(rec.url.slice(q + 1));
  expect(rec.headers['authorization']).toBeUndefined();
  expect(params.get('X-Amz-Credential')).toMatch(
    new RegExp(`^${keys.accessKeyId}/\\d{8}/us-east-1/s3/aws4_request$`),
  );
  expect(params.get('X-Amz-Expires')).toBe('3600');
  expect(params.getAll('X-Amz-Signature')).toHaveLength(1);
  const signed = params.get('X-Amz-SignedHeaders')!.split(';');
  const headers: Record<string, string> = { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
  for (const h of signed) headers[h] = String(rec.headers[h]);
  const d = params.get('X-Amz-Date')!;
  const at = new Date(
    `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}T${d.slice(9, 11)}:${d.slice(11, 13)}:${d.slice(13, 15)}Z`,
  );
  const ref = await new SignatureV4({
    credentials: keys,
    region: 'us-east-1',
    service: 's3',
    sha256: RefSha256,
    uriEscapePath: false,
  }).presign(
    { method, protocol: 'http:', hostname: authority, path: reqPath, query: {}, headers },
    {
      signingDate: at,
      expiresIn: 3600,
      unhoistableHeaders: new Set(
        signed.filter((h) => h.startsWith('x-amz-')).concat('x-amz-content-sha256'),
      ),
      unsignableHeaders: new Set(['x-amz-content-sha256']),
    },
  );
  expect(headers['host']).toBe(authority);
  expect(params.get('X-Amz-Signature')).toBe(ref.query!['X-Amz-Signature']);
}

describe('AWS SigV4 signing by the gateway (issue 14 part B)', () => {
  it('moto checks signatures: a made-up key and a wrong secret for the real key are refused 403 directly', async () => {
    const bogus = await fetch(`http://127.0.0.1:${ports.moto}/any-bucket`, {
      headers: {
        authorization: BOGUS_AUTH,
        'x-amz-date': '20260101T000000Z',
        'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
      },
    });
    expect(bogus.status).toBe(403);
    expect(await bogus.text()).toContain('InvalidAccessKeyId');
    const authority = `127.0.0.1:${ports.moto}`;
    const wrong = new SigV4Signers().sign(
      { method: 'GET', authority, path: '/any-bucket', query: '', rawHeaders: [] },
      { accessKeyId: keys.accessKeyId, secretAccessKey: 'wrong-secret-0000000000000000000000000000' },
      { region: 'us-east-1', service: 's3' },
    );
    const headers: Record<string, string> = { authorization: wrong.authorization! };
    for (let i = 0; i < wrong.headers.length; i += 2) headers[wrong.headers[i]!] = wrong.headers[i + 1]!;
    const mismatch = await fetch(`http://${authority}/any-bucket`, { headers });
    expect(mismatch.status).toBe(403);
    expect(await mismatch.text()).toContain('SignatureDoesNotMatch');
  });

  it('plain HTTP: create a bucket, PUT, GET and list an object — signed by the gateway', async () => {
    expect(
      (await proxyRequest(proxy, s3('/plain-bucket'), { method: 'PUT', auth: auth(AGENT) })).status,
    ).toBe(200);
    const body = 'hello from the sandbox, signed at the gateway\n';
    const put = await proxyRequest(proxy, s3('/plain-bucket/dir/hello.txt'), {
      method: 'PUT',
      auth: auth(AGENT),
      body,
      headers: { 'content-type': 'text/plain' },
    });
    expect(put.status, put.body).toBe(200);
    expect(lastCall()).toMatchObject({ decision: 'allow', status: 200, credential: { name: 's3' } });
    const get = await proxyRequest(proxy, s3('/plain-bucket/dir/hello.txt'), { auth: auth(AGENT) });
    expect(get.status).toBe(200);
    expect(get.body).toBe(body);
    // A query string is signed too (list-type=2&prefix=dir%2F).
    const list = await proxyRequest(proxy, s3('/plain-bucket?list-type=2&prefix=dir%2F'), {
      auth: auth(AGENT),
    });
    expect(list.status, list.body).toBe(200);
    expect(list.body).toContain('<Key>dir/hello.txt</Key>');
    // The audit names the credential and its version, never the key.
    expect(JSON.stringify(audit.events)).not.toContain(keys.secretAccessKey);
  });

  it("the agent's own signature, date, security token and payload hash are replaced", async () => {
    const r = await proxyRequest(proxy, s3('/plain-bucket/dir/hello.txt'), {
      auth: auth(AGENT),
      headers: {
        authorization: BOGUS_AUTH,
        'x-amz-date': '20200101T000000Z',
        'x-amz-security-token': 'agent-token-that-moto-would-reject',
      },
    });
    expect(r.status, r.body).toBe(200);
    // A payload hash the agent states for its body is kept and signed (moto accepts the upload).
    const body = 'stated hash\n';
    const put = await proxyRequest(proxy, s3('/plain-bucket/dir/hashed.txt'), {
      method: 'PUT',
      auth: auth(AGENT),
      body,
      headers: { 'x-amz-content-sha256': sha(body), authorization: BOGUS_AUTH },
    });
    expect(put.status, put.body).toBe(200);
  });

  it("without the credential binding (another role, same rules) the agent's own signature reaches moto: 403", async () => {
    // (An unsigned call makes moto's server fail with 500 before its auth check: not asserted.)
    const r = await proxyRequest(proxy, s3('/plain-bucket/dir/hello.txt'), {
      auth: auth(PLAIN),
      localAddress: PLAIN.address,
      headers: {
        authorization: BOGUS_AUTH,
        'x-amz-date': '20260101T000000Z',
        'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
      },
    });
    expect(r.status).toBe(403);
    expect(r.body).toContain('InvalidAccessKeyId');
    expect(lastCall()).toMatchObject({ sessionId: PLAIN.id, decision: 'allow', status: 403 });
    expect(lastCall().credential ?? null).toBeNull();
  });

  it("a chunk-signed upload (STREAMING-AWS4-HMAC-SHA256-PAYLOAD): the agent's chunk signatures replaced, moto stores the decoded body", async () => {
    const data = Buffer.alloc(8192 + 100, 'x');
    data.write('chunk-signed through the gateway', 0);
    const body = chunked([data.subarray(0, 8192), data.subarray(8192)]).toString('latin1');
    const r = await proxyRequest(proxy, s3('/plain-bucket/dir/chunked.bin'), {
      method: 'PUT',
      auth: auth(AGENT),
      body,
      headers: chunkedHeaders(data.length),
    });
    expect(r.status, r.body).toBe(200);
    expect(lastCall()).toMatchObject({ decision: 'allow', status: 200, credential: { name: 's3' } });
    const get = await proxyRequest(proxy, s3('/plain-bucket/dir/chunked.bin'), { auth: auth(AGENT) });
    expect(get.status).toBe(200);
    expect(get.body).toBe(data.toString());
  });

  it('a chunk-signed upload with malformed framing is refused 400 and nothing is sent (moto has no object)', async () => {
    const good = chunked([Buffer.from('hello')]).toString();
    for (const [name, body] of [
      ['a chunk longer than its size', good.replace('5;chunk', '3;chunk')],
      ['no final chunk', good.slice(0, good.indexOf('0;chunk'))],
      ['a chunk header without its signature', '5\r\nhello\r\n0\r\n\r\n'],
    ] as const) {
      const key = `/plain-bucket/dir/bad-${name.replaceAll(' ', '-')}.txt`;
      const r = await proxyRequest(proxy, s3(key), {
        method: 'PUT',
        auth: auth(AGENT),
        body,
        headers: chunkedHeaders(5),
      });
      expect(r.status, name).toBe(400);
      expect(r.json()).toMatchObject({ error: 'bad_request' });
      expect(String(r.json().detail)).toMatch(/aws-chunked body/);
      expect(lastCall()).toMatchObject({
        reason: 'bad_request',
        status: 400,
        credential: { name: 's3' },
      });
      expect((await proxyRequest(proxy, s3(key), { auth: auth(AGENT) })).status, name).toBe(404);
    }
  });

  it('a server-side copy (x-amz-copy-source) is refused 400: it would read an object its path does not name', async () => {
    const r = await proxyRequest(proxy, s3('/plain-bucket/dir/copied.txt'), {
      method: 'PUT',
      auth: auth(AGENT),
      headers: { 'x-amz-copy-source': '/plain-bucket/dir/hello.txt' },
    });
    expect(r.status).toBe(400);
    expect(String(r.json().detail)).toMatch(/x-amz-copy-source/);
    expect(
      (await proxyRequest(proxy, s3('/plain-bucket/dir/copied.txt'), { auth: auth(AGENT) })).status,
    ).toBe(404);
  });

  it('the trailer variant of chunk signing is refused 400 before anything is sent', async () => {
    const r = await proxyRequest(proxy, s3('/plain-bucket/dir/trailer.txt'), {
      method: 'PUT',
      auth: auth(AGENT),
      body: chunked([Buffer.from('hello')]).toString('latin1'),
      headers: { ...chunkedHeaders(5), 'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER' },
    });
    expect(r.status).toBe(400);
    expect(String(r.json().detail)).toMatch(/TRAILER/);
  });

  it("presigned URLs (boto3 with a made-up key), plain HTTP: the agent's query signature is replaced by the gateway's", async () => {
    const urls = await presign(`http://s3rec.test:${ports.rec}`, 'rec-bucket', 'dir/a b.txt');
    const get = await curlVia('GET', urls.get);
    expect(get).toEqual({ status: 200, body: 'recorded' });
    await expectGatewayPresigned(recorded.at(-1)!, 'GET', `s3rec.test:${ports.rec}`);
    expect(lastCall()).toMatchObject({ decision: 'allow', status: 200, credential: { name: 's3' } });
    const put = await curlVia('PUT', urls.put, {
      body: 'presigned upload\n',
      headers: ['Content-Type: text/plain'],
    });
    expect(put.status).toBe(200);
    const rec = recorded.at(-1)!;
    expect(rec.body).toBe('presigned upload\n');
    await expectGatewayPresigned(rec, 'PUT', `s3rec.test:${ports.rec}`);
    // The agent's own query signature, key and date are nowhere in what was forwarded.
    expect(recorded.some((r) => r.url.includes('AKIAAGENTMADETHISUP0'))).toBe(false);
  });

  it('presigned URLs through an intercepted HTTPS tunnel: the same', async () => {
    const urls = await presign(`https://s3rec.test:${ports.recTls}`, 'rec-bucket', 'tls/object.txt');
    expect(await curlVia('GET', urls.get)).toEqual({ status: 200, body: 'recorded' });
    await expectGatewayPresigned(recorded.at(-1)!, 'GET', `s3rec.test:${ports.recTls}`);
    expect(lastCall()).toMatchObject({ scheme: 'https', decision: 'allow', credential: { name: 's3' } });
  });

  it('a presigned URL with an invalid X-Amz-Expires is refused 400, nothing sent', async () => {
    const before = recorded.length;
    const r = await proxyRequest(
      proxy,
      `http://s3rec.test:${ports.rec}/rec-bucket/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=99999999&X-Amz-Signature=00`,
      { auth: auth(AGENT) },
    );
    expect(r.status).toBe(400);
    expect(String(r.json().detail)).toMatch(/X-Amz-Expires/);
    expect(recorded.length).toBe(before);
  });

  it('intercepted HTTPS: PUT, GET and list through the tunnel, signed for the TLS host', async () => {
    expect((await curlTls('PUT', '/tls-bucket')).status).toBe(200);
    const put = await curlTls('PUT', '/tls-bucket/a/b.txt', {
      body: 'over TLS\n',
      headers: [`Authorization: ${BOGUS_AUTH}`, 'Content-Type: text/plain'],
    });
    expect(put.status, put.body).toBe(200);
    const get = await curlTls('GET', '/tls-bucket/a/b.txt');
    expect(get).toEqual({ status: 200, body: 'over TLS\n' });
    const list = await curlTls('GET', '/tls-bucket?list-type=2');
    expect(list.status).toBe(200);
    expect(list.body).toContain('<Key>a/b.txt</Key>');
    expect(lastCall()).toMatchObject({ scheme: 'https', decision: 'allow', credential: { name: 's3' } });
  });

  it('the AWS SDK for Python (boto3) with a made-up key works through the gateway (HTTPS)', async () => {
    expect((await curlTls('PUT', '/sdk-bucket')).status).toBe(200);
    const r = await run(motoPython, [
      path.join(fixtures, 'boto3-agent.py'),
      `https://s3tls.test:${ports.tls}`,
      `http://${auth(AGENT)}@127.0.0.1:${proxy.port}`,
      caFile,
      'sdk-bucket',
    ]).catch((err: { stderr?: string }) => {
      throw new Error(`boto3 agent failed: ${err.stderr ?? String(err)}`, { cause: err });
    });
    expect(JSON.parse(r.stdout)).toEqual({
      body: 'written by boto3 through the gateway\n',
      keys: ['sdk/hello.txt'],
    });
  }, 60_000);

  it('the secret access key on its own is a known secret: carried in a header, the call is refused', async () => {
    const r = await proxyRequest(proxy, s3('/plain-bucket/dir/hello.txt'), {
      auth: auth(AGENT),
      headers: { 'x-note': Buffer.from(keys.secretAccessKey).toString('base64') },
    });
    expect(r.status).toBe(403);
    expect(r.json()).toMatchObject({ error: 'credential_not_bound' });
    expect(lastCall()).toMatchObject({ reason: 'exfiltration_attempt', credential: { name: 's3' } });
  });

  it('a changed file is used from the next call: a malformed value is 503 (nothing sent), the key again 200', async () => {
    writeFileSync(path.join(dir, 'secrets', 's3'), 'not-a-key-pair\n', { mode: 0o600 });
    await vault.refresh();
    const r = await proxyRequest(proxy, s3('/plain-bucket/dir/hello.txt'), { auth: auth(AGENT) });
    expect(r.status).toBe(503);
    expect(String(r.json().detail)).toMatch(/ACCESS_KEY_ID:SECRET_ACCESS_KEY/);
    writeFileSync(path.join(dir, 'secrets', 's3'), `${keys.accessKeyId}:${keys.secretAccessKey}\n`, {
      mode: 0o600,
    });
    await vault.refresh();
    expect((await proxyRequest(proxy, s3('/plain-bucket/dir/hello.txt'), { auth: auth(AGENT) })).status).toBe(
      200,
    );
  });
});
