/**
 * Issue 14 part B: AWS SigV4 credentials. The gateway signs allowed S3 calls with the access key it
 * holds, on plain HTTP and inside intercepted HTTPS tunnels, replacing whatever the agent signed.
 * The S3 server is real and not ours: moto's server mode (PyPI `moto[server]`, installed by
 * scripts/moto.sh) with IAM authentication on (`INITIAL_NO_AUTH_ACTION_COUNT=3`: after the three
 * setup calls that create the gateway's access key, every call must carry a valid SigV4 signature
 * of a known key, or moto answers 403 as S3 does). For the HTTPS path nginx terminates TLS in front
 * of moto with a test CA (Host passed through unchanged, so the signed host is the one moto checks).
 * One agent is the real AWS SDK for Python (boto3) configured with a made-up key.
 */
import 'reflect-metadata';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
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
let ports: { moto: number; tls: number };
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
  ports = { moto: await freePort(), tls: await freePort() };

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
    const wrong = await new SigV4Signers().sign(
      { method: 'GET', authority, path: '/any-bucket', query: '', rawHeaders: [] },
      { accessKeyId: keys.accessKeyId, secretAccessKey: 'wrong-secret-0000000000000000000000000000' },
      { region: 'us-east-1', service: 's3' },
    );
    const headers: Record<string, string> = { authorization: wrong.authorization };
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

  it('a chunk-signed upload (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) is refused 400 before anything is sent', async () => {
    const r = await proxyRequest(proxy, s3('/plain-bucket/dir/chunked.txt'), {
      method: 'PUT',
      auth: auth(AGENT),
      body: '5;chunk-signature=00\r\nhello\r\n0;chunk-signature=00\r\n\r\n',
      headers: {
        'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
        'x-amz-decoded-content-length': '5',
      },
    });
    expect(r.status).toBe(400);
    expect(r.json()).toMatchObject({ error: 'bad_request' });
    expect(String(r.json().detail)).toMatch(/chunk-signed/);
    const get = await proxyRequest(proxy, s3('/plain-bucket/dir/chunked.txt'), { auth: auth(AGENT) });
    expect(get.status).toBe(404);
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
