/**
 * Issue 14 part B: presigned S3 URLs re-signed by the gateway, checked by an S3 server that verifies
 * query-string signatures. The server is versitygw (github.com/versity/versitygw, built from the Go
 * module proxy by scripts/versitygw.sh; posix backend in a temp dir, a random root key): nobody here
 * wrote it, and it checks every presigned URL's SigV4 query signature against the key it holds
 * (moto, in gateway-sigv4.test.ts, checks header signatures only). One instance serves plain HTTP,
 * one HTTPS with a test CA (the intercepted-tunnel path).
 *
 * The agent presigns with the real AWS SDK for Python (boto3) and a made-up key, as a tool would; the
 * gateway holds the real key, bound to the agent's role. Negative controls first: the server refuses
 * a URL presigned with the real key id and a wrong secret, one whose signature was altered, and the
 * agent's own URL, and accepts a URL presigned correctly with the real key — so an accepted URL
 * through the gateway means the gateway's query signature verified. Without the binding (another role,
 * same rules) the agent's URL goes through unchanged and the server refuses it.
 */
import 'reflect-metadata';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
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
import { LeafCache } from '../../src/gateway/tls/leaf-cache.js';
import { loadOrCreateCa } from '../../src/pki/ca.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore } from '../../src/policy/store.js';
import { makeTestPki } from '../helpers/tls-upstream.js';
import { startVersitygw, type Versitygw } from '../helpers/upstreams.js';

const run = promisify(execFile);
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const client = path.join(repoRoot, 'test/fixtures/sigv4/boto3-s3.py');

const AGENT = { id: 's-agent', cred: 'cred-agent-0123456789', address: '127.0.0.1', role: 'agent' };
/** Same rules, no credential binding: the agent's URL reaches the server as the agent signed it. */
const PLAIN = { id: 's-plain', cred: 'cred-plain-0123456789', address: '127.0.0.2', role: 'plain' };
/** The key an agent makes up (it never has the real one). */
const AGENT_KEY = { id: 'AKIAAGENTMADETHISUP0', secret: 'agent-made-this-secret-up-too-0000000000' };
const BUCKET = 'presign-bucket';
/** An object key with a space and a non-ASCII character (percent-encoded in the signed path). */
const OBJECT = 'dir/report 2026 é.txt';
const CONTENT = 'quarterly figures\n';

let dir: string;
let python: string;
let plain: Versitygw;
let tls: Versitygw;
let caFile: string;
let policy: PolicyStore;
let vault: CredentialVault;
let gateway: EgressGateway;
let audit: MemoryAuditSink;
let proxyPort: number;

/** boto3 against `endpoint` with the given key (the secret in the environment, never in argv). */
async function s3(
  endpoint: string,
  key: { id: string; secret: string },
  args: string[],
  input?: string,
): Promise<string> {
  const p = run(python, [client, endpoint, ...args], {
    env: { ...process.env, S3_ACCESS_KEY_ID: key.id, S3_SECRET_ACCESS_KEY: key.secret },
  });
  if (input !== undefined) p.child.stdin!.end(input);
  return (await p).stdout;
}

/** The server's key, as the gateway holds it. */
const realKey = (v: Versitygw): { id: string; secret: string } => ({
  id: v.accessKeyId,
  secret: v.secretAccessKey,
});

/** A presigned URL for `method` on the object, from boto3 with `key`, valid 7200 s (the gateway caps it at 3600). */
async function presign(
  v: Versitygw,
  host: string,
  key: { id: string; secret: string },
  method: 'GET' | 'PUT',
  object: string,
  params: Record<string, string> = {},
): Promise<string> {
  const endpoint = `${v.url.startsWith('https') ? 'https' : 'http'}://${host}:${v.port}`;
  const out = await s3(endpoint, key, ['presign', BUCKET, object, method, '7200', JSON.stringify(params)]);
  return out.trim();
}

/** curl straight to the server (no gateway), `host` resolved to it. */
async function direct(
  v: Versitygw,
  method: string,
  url: string,
  body?: string,
): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return curl([
    '--resolve',
    `${u.hostname}:${u.port}:127.0.0.1`,
    ...(v.url.startsWith('https') ? ['--cacert', path.join(dir, 'upstream-ca.pem')] : []),
    '-X',
    method,
    ...(body !== undefined ? ['--data-binary', body, '-H', 'Content-Type: text/plain'] : []),
    url,
  ]);
}

/** curl through the gateway as `who` (https intercepted: the installation CA trusted). */
async function via(
  who: typeof AGENT,
  method: string,
  url: string,
  body?: string,
): Promise<{ status: number; body: string }> {
  return curl([
    '--proxy',
    `http://${who.id}:${who.cred}@127.0.0.1:${proxyPort}`,
    '--interface',
    who.address,
    '--cacert',
    caFile,
    '-X',
    method,
    ...(body !== undefined ? ['--data-binary', body, '-H', 'Content-Type: text/plain'] : []),
    url,
  ]);
}

async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const r = await run('curl', ['-s', '-w', '\n%{http_code}', ...args]);
  const cut = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(cut + 1)), body: r.stdout.slice(0, cut) };
}

/** A refusal by the server: an S3 error document, not the object. */
function expectRefused(r: { status: number; body: string }, code: RegExp): void {
  expect(r.status, r.body).toBeGreaterThanOrEqual(400);
  expect(r.body).toMatch(code);
  expect(r.body).not.toContain(CONTENT.trim());
}

const lastCall = () => audit.events.filter((e) => e.method !== 'CONNECT').at(-1)!;

beforeAll(async () => {
  const moto = await run('bash', [path.join(repoRoot, 'scripts/moto.sh'), '--paths']).catch(
    (err: unknown) => {
      throw new Error(`boto3 (moto's venv) is not installed: run bash scripts/moto.sh (${String(err)})`, {
        cause: err,
      });
    },
  );
  python = /MOTO_PYTHON=(.*)/.exec(moto.stdout)![1]!.trim();
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-sigv4-presigned-'));
  const pki = await makeTestPki();
  writeFileSync(path.join(dir, 'upstream-ca.pem'), pki.caPem);
  plain = await startVersitygw();
  tls = await startVersitygw({ tls: await pki.issue('s3tls.test') });

  // The bucket and the object, created directly with the real key (boto3, header-signed).
  await s3(plain.url, realKey(plain), ['create-bucket', BUCKET]);
  await s3(plain.url, realKey(plain), ['put', BUCKET, OBJECT], CONTENT);

  const secrets = path.join(dir, 'secrets');
  mkdirSync(secrets, { mode: 0o700 });
  writeFileSync(path.join(secrets, 's3'), `${plain.accessKeyId}:${plain.secretAccessKey}\n`, { mode: 0o600 });
  writeFileSync(path.join(secrets, 's3tls'), `${tls.accessKeyId}:${tls.secretAccessKey}\n`, { mode: 0o600 });
  const policyDir = path.join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(
    path.join(policyDir, 'policy.csv'),
    [
      `p, agent, s3.test:${plain.port}, /*, *, allow`,
      `p, plain, s3.test:${plain.port}, /*, *, allow`,
      `p, agent, s3tls.test:${tls.port}, /*, *, allow`,
      `p, agent, s3tls.test:${tls.port}, /, CONNECT, allow`,
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
      `    bindings: [{ host: "s3.test:${plain.port}", path: /*, methods: ["*"] }]`,
      '    apply: { type: aws-sigv4, region: us-east-1 }',
      `    source: { file: ${path.join(secrets, 's3')} }`,
      '  - name: s3tls',
      '    roles: [agent]',
      `    bindings: [{ host: "s3tls.test:${tls.port}", path: /*, methods: ["*"] }]`,
      '    apply: { type: aws-sigv4, region: us-east-1 }',
      `    source: { file: ${path.join(secrets, 's3tls')} }`,
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
  proxyPort = (await gateway.listen(0, '127.0.0.1')).port;
  // The TLS server's bucket: created through the gateway (a header signature, verified by versitygw).
  const created = await via(AGENT, 'PUT', `https://s3tls.test:${tls.port}/${BUCKET}`);
  expect(created.status, created.body).toBe(200);
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  vault?.close();
  await policy?.close();
  await plain?.stop();
  await tls?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('presigned URLs re-signed by the gateway, verified by versitygw (issue 14 part B)', () => {
  it('negative controls: versitygw accepts a URL presigned with its key, refuses a wrong secret, an altered signature and the agent’s made-up key', async () => {
    const good = await presign(plain, 's3.test', realKey(plain), 'GET', OBJECT);
    expect(await direct(plain, 'GET', good)).toEqual({ status: 200, body: CONTENT });
    const wrongSecret = await presign(
      plain,
      's3.test',
      { id: plain.accessKeyId, secret: `${plain.secretAccessKey.slice(0, -4)}AAAA` },
      'GET',
      OBJECT,
    );
    expectRefused(await direct(plain, 'GET', wrongSecret), /SignatureDoesNotMatch/);
    const sig = /X-Amz-Signature=([0-9a-f]{64})/.exec(good)![1]!;
    const altered = good.replace(sig, `${sig.slice(0, -1)}${sig.endsWith('0') ? '1' : '0'}`);
    expectRefused(await direct(plain, 'GET', altered), /SignatureDoesNotMatch/);
    // The signed query covers the response overrides: changing one after signing is refused.
    const withParam = await presign(plain, 's3.test', realKey(plain), 'GET', OBJECT, {
      ResponseContentType: 'text/plain',
    });
    expect((await direct(plain, 'GET', withParam)).status).toBe(200);
    expectRefused(
      await direct(
        plain,
        'GET',
        withParam.replace('response-content-type=text%2Fplain', 'response-content-type=text%2Fhtml'),
      ),
      /SignatureDoesNotMatch/,
    );
    const agents = await presign(plain, 's3.test', AGENT_KEY, 'GET', OBJECT);
    expectRefused(await direct(plain, 'GET', agents), /<Error>/);
  });

  it("GET: the agent's presigned URL (made-up key) through the gateway is re-signed and accepted", async () => {
    const url = await presign(plain, 's3.test', AGENT_KEY, 'GET', OBJECT);
    const r = await via(AGENT, 'GET', url);
    expect(r, plain.log()).toEqual({ status: 200, body: CONTENT });
    expect(lastCall()).toMatchObject({
      sessionId: AGENT.id,
      decision: 'allow',
      status: 200,
      credential: { name: 's3' },
    });
  });

  it('GET with response overrides and reserved characters in the signed query: accepted, the overrides applied', async () => {
    const url = await presign(plain, 's3.test', AGENT_KEY, 'GET', OBJECT, {
      ResponseContentType: 'text/plain; charset=utf-8',
      ResponseContentDisposition: 'attachment; filename="report (1).txt"',
    });
    const r = await run('curl', [
      '-s',
      '-D',
      '-',
      '--proxy',
      `http://${AGENT.id}:${AGENT.cred}@127.0.0.1:${proxyPort}`,
      url,
    ]);
    expect(r.stdout).toMatch(/^HTTP\/1\.1 200/);
    expect(r.stdout).toMatch(/^content-disposition: attachment; filename="report \(1\)\.txt"\r$/im);
    expect(r.stdout).toMatch(/^content-type: text\/plain; charset=utf-8\r$/im);
    expect(r.stdout.endsWith(CONTENT)).toBe(true);
  });

  it("PUT: the agent's presigned upload goes through re-signed; the object reads back with the real key", async () => {
    const object = 'uploads/from agent.txt';
    const body = 'uploaded through a presigned URL\n';
    const url = await presign(plain, 's3.test', AGENT_KEY, 'PUT', object);
    const put = await via(AGENT, 'PUT', url, body);
    expect(put.status, put.body).toBe(200);
    expect(await s3(plain.url, realKey(plain), ['get', BUCKET, object])).toBe(body);
  });

  it("without the binding (another role, same rules) the agent's URL reaches versitygw as signed and is refused", async () => {
    const url = await presign(plain, 's3.test', AGENT_KEY, 'GET', OBJECT);
    const r = await via(PLAIN, 'GET', url);
    expectRefused(r, /<Error>/);
    expect(lastCall()).toMatchObject({ sessionId: PLAIN.id, decision: 'allow' });
    expect(lastCall().credential ?? null).toBeNull();
    // A presigned upload is refused the same way: nothing stored.
    const put = await via(
      PLAIN,
      'PUT',
      await presign(plain, 's3.test', AGENT_KEY, 'PUT', 'uploads/plain.txt'),
      'x',
    );
    expectRefused(put, /<Error>/);
    await expect(s3(plain.url, realKey(plain), ['get', BUCKET, 'uploads/plain.txt'])).rejects.toThrow(
      /NoSuchKey/,
    );
  });

  it('intercepted HTTPS: the agent presigns for the TLS endpoint, the gateway re-signs inside the tunnel, versitygw accepts', async () => {
    const object = 'tls/object.txt';
    const body = 'over TLS, presigned\n';
    const put = await via(AGENT, 'PUT', await presign(tls, 's3tls.test', AGENT_KEY, 'PUT', object), body);
    expect(put.status, put.body).toBe(200);
    expect(lastCall()).toMatchObject({ scheme: 'https', decision: 'allow', credential: { name: 's3tls' } });
    const get = await via(AGENT, 'GET', await presign(tls, 's3tls.test', AGENT_KEY, 'GET', object));
    expect(get).toEqual({ status: 200, body });
    // The agent's URL straight to the server: refused.
    expectRefused(
      await direct(tls, 'GET', await presign(tls, 's3tls.test', AGENT_KEY, 'GET', object)),
      /<Error>/,
    );
  });
});
