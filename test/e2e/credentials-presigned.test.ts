/**
 * Issue 14 part B on real Docker: presigned S3 URLs fetched from a sandbox, re-signed by the gateway
 * container with the key it holds, verified by versitygw (an S3 server nobody here wrote, built by
 * scripts/versitygw.sh; it checks every query signature) on the egress bridge. The agent's URLs are
 * presigned with boto3 and a made-up key, as a tool would before handing them to curl; the sandbox
 * holds no key. The same URLs sent straight to versitygw (not through the gateway) are refused.
 * The key appears nowhere in the sandbox's output, the audit file, the gateway container's log or
 * the control plane's log.
 */
import { execFile } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { parseConfig } from '../../src/config/load.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { TestApi, curlResult } from '../helpers/api-client.js';
import { docker, networkGateway, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';
import { startVersitygw, type Versitygw } from '../helpers/upstreams.js';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const client = path.join(repoRoot, 'test/fixtures/sigv4/boto3-s3.py');
const EGRESS_SUBNET = '10.214.0.0/24';
const TOKEN = 'e2e-token-0123456789abcdef';
const S3_PORT = 18094;
const GATEWAY_UID = 10002;
const BUCKET = 'e2e-presigned';
const CONTENT = 'presigned from the sandbox\n';
/** The key an agent makes up (it never has the real one). */
const AGENT_KEY = { id: 'AKIAAGENTMADETHISUP0', secret: 'agent-made-this-secret-up-too-0000000000' };

let dir: string;
let server: RunningServer;
let api: TestApi;
let host: string;
let python: string;
let s3: Versitygw;
let controlPlaneLog = '';
let sandboxOutput = '';

/** boto3 against `endpoint` with `key` (the secret in the environment, never in argv). */
async function boto3(
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

const realKey = (): { id: string; secret: string } => ({ id: s3.accessKeyId, secret: s3.secretAccessKey });

/** The agent's presigned URL (made-up key) for the name the sandbox uses, s3.test. */
async function agentUrl(method: 'GET' | 'PUT', object: string): Promise<string> {
  return (
    await boto3(`http://s3.test:${S3_PORT}`, AGENT_KEY, ['presign', BUCKET, object, method, '7200'])
  ).trim();
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  const moto = await run('bash', [path.join(repoRoot, 'scripts/moto.sh'), '--paths']).catch(
    (err: unknown) => {
      throw new Error(`boto3 (moto's venv) is not installed: run bash scripts/moto.sh (${String(err)})`, {
        cause: err,
      });
    },
  );
  python = /MOTO_PYTHON=(.*)/.exec(moto.stdout)![1]!.trim();
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-creds-presigned-'));
  const policyDir = path.join(dir, 'policy');
  const credsDir = path.join(dir, 'credentials');
  mkdirSync(policyDir, { mode: 0o755 });
  mkdirSync(credsDir, { mode: 0o700 });
  chownSync(credsDir, GATEWAY_UID, GATEWAY_UID);
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(
    path.join(policyDir, 'policy.csv'),
    [`p, dev, s3.test:${S3_PORT}, /*, GET, allow`, `p, dev, s3.test:${S3_PORT}, /*, PUT, allow`, ''].join(
      '\n',
    ),
  );
  writeFileSync(
    path.join(policyDir, 'credentials.yaml'),
    [
      'version: 1',
      'credentials:',
      '  - name: s3',
      '    roles: [dev]',
      `    bindings: [{ host: "s3.test:${S3_PORT}", path: /*, methods: [GET, PUT] }]`,
      '    apply: { type: aws-sigv4, region: us-east-1 }',
      '    source: { file: /run/airlock/credentials/s3-keys }',
      '',
    ].join('\n'),
  );
  const cfg = parseConfig(
    {
      api: { listen: '127.0.0.1:0', tokens: [{ name: 'e2e', token: TOKEN }] },
      gateway: {
        hostAliases: { 's3.test': 'host-gateway' },
        allowPrivateCidrs: [EGRESS_SUBNET],
        credentialsDir: credsDir,
      },
      policy: { dir: policyDir },
      runtime: { docker: { egressSubnet: EGRESS_SUBNET } },
      stateDir: path.join(dir, 'state'),
    },
    dir,
  );
  // versitygw listens on the egress bridge, which exists once the control plane made it.
  const logger = pino({ level: 'debug' }, { write: (s: string) => void (controlPlaneLog += s) });
  server = await startServer(cfg, logger);
  host = await networkGateway('airlock-egress');
  s3 = await startVersitygw({ host, port: S3_PORT });
  await boto3(s3.url, realKey(), ['create-bucket', BUCKET]);
  await boto3(s3.url, realKey(), ['put', BUCKET, 'shared/report.txt'], CONTENT);
  const keyFile = path.join(credsDir, 's3-keys');
  writeFileSync(keyFile, `${s3.accessKeyId}:${s3.secretAccessKey}\n`, { mode: 0o600 });
  chownSync(keyFile, GATEWAY_UID, GATEWAY_UID);
  api = new TestApi(server.url, TOKEN);
}, 180_000);

afterAll(async () => {
  await server?.close();
  await removeAirlockObjects();
  await s3?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function sh(id: string, script: string): Promise<string> {
  const out = await api.sh(id, script, 120);
  sandboxOutput += out.stdout + out.stderr;
  expect(out.exitCode, out.stderr).toBe(0);
  return out.stdout;
}

describe('presigned S3 URLs from a Docker sandbox, verified by versitygw (issue 14 part B)', () => {
  let dev: string;

  it("the agent's presigned URLs (made-up key) are refused by versitygw when sent straight to it", async () => {
    const url = new URL(await agentUrl('GET', 'shared/report.txt'));
    const r = curlResult(
      (
        await run('curl', [
          '-s',
          '-w',
          '\n%{http_code}',
          '--resolve',
          `s3.test:${S3_PORT}:${host}`,
          url.toString(),
        ])
      ).stdout,
    );
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.body).toContain('<Error>');
    expect(r.body).not.toContain(CONTENT.trim());
  });

  it('from the sandbox through the gateway container: a presigned GET reads the object, a presigned PUT stores one', async () => {
    dev = (await api.create({ role: 'dev' })).id;
    const get = curlResult(
      await sh(dev, `curl -s -w '\\n%{http_code}' '${await agentUrl('GET', 'shared/report.txt')}'`),
    );
    expect(get).toEqual({ status: 200, body: CONTENT });
    const put = curlResult(
      await sh(
        dev,
        `curl -s -w '\\n%{http_code}' -X PUT --data-binary 'uploaded by the sandbox' '${await agentUrl('PUT', 'in/upload.txt')}'`,
      ),
    );
    expect(put.status, put.body).toBe(200);
    expect(await boto3(s3.url, realKey(), ['get', BUCKET, 'in/upload.txt'])).toBe('uploaded by the sandbox');
    const events = await api.auditUntil(
      dev,
      (es) => es.filter((e) => e.credential?.name === 's3').length >= 2,
    );
    expect(
      events.filter((e) => e.credential?.name === 's3').map((e) => [e.method, e.decision, e.status]),
    ).toEqual([
      ['GET', 'allow', 200],
      ['PUT', 'allow', 200],
    ]);
  });

  it('the secret key is nowhere in the sandbox, the audit, the gateway or control plane log', async () => {
    await sh(dev, 'env; cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n"; ls -la /run 2>&1');
    const audit = readFileSync(path.join(dir, 'state', 'audit.jsonl'), 'utf8');
    expect(
      audit
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as AuditEvent)
        .some((e) => e.credential?.name === 's3'),
    ).toBe(true);
    const gatewayLog = (
      await docker.getContainer('airlock-gateway').logs({ stdout: true, stderr: true })
    ).toString('latin1');
    for (const [what, text] of [
      ['sandbox output', sandboxOutput],
      ['audit', audit],
      ['gateway log', gatewayLog],
      ['control plane log', controlPlaneLog],
    ] as const) {
      expect(text.includes(s3.secretAccessKey), `${what} holds the secret key`).toBe(false);
    }
  });
});
