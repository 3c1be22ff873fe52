/**
 * Issue 14 part B on real Docker: `airlock serve` as it runs, the gateway container signing S3 calls
 * (aws-sigv4) and fetching OAuth2 access tokens (client credentials) for a sandbox that holds
 * neither. Upstreams nobody here wrote, listening on the egress bridge: moto's S3 server (PyPI,
 * scripts/moto.sh) checking every signature, and oidc-provider (npm) issuing 6-second tokens to the
 * gateway, with a resource server that accepts a call only when the provider's introspection says
 * its token is active.
 *
 * The key, the client secret and the access tokens appear nowhere in the sandbox's output, the audit
 * file, the gateway container's log or the control plane's log.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Provider from 'oidc-provider';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { parseConfig } from '../../src/config/load.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { TestApi, curlResult } from '../helpers/api-client.js';
import { docker, networkGateway, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const EGRESS_SUBNET = '10.214.0.0/24';
const TOKEN = 'e2e-token-0123456789abcdef';
const PORTS = { s3: 18091, idp: 18092, api: 18093 };
const GATEWAY_UID = 10002;
const CC_SECRET = 'ccS3cr3tQ1w2E3r4T5y6U7i8O9p0';
const RS_SECRET = 'rsS3cr3tZ9x8C7v6B5n4M3l2K1j0';

let dir: string;
let credsDir: string;
let server: RunningServer;
let api: TestApi;
let host: string;
let moto: ChildProcess;
let motoPython: string;
let keys: { accessKeyId: string; secretAccessKey: string };
let idp: http.Server;
let rs: http.Server;
/** Tokens the resource server saw, in order (null: none). */
const seenTokens: (string | null)[] = [];
let controlPlaneLog = '';
let sandboxOutput = '';

function stop(p: ChildProcess | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!p || p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  });
}

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

function writeCredential(name: string, value: string): void {
  const file = path.join(credsDir, name);
  writeFileSync(file, `${value}\n`, { mode: 0o600 });
  chownSync(file, GATEWAY_UID, GATEWAY_UID);
}

async function startUpstreams(): Promise<void> {
  const paths = await run('bash', [path.join(repoRoot, 'scripts/moto.sh'), '--paths']);
  motoPython = /MOTO_PYTHON=(.*)/.exec(paths.stdout)![1]!.trim();
  moto = spawn(motoPython, ['-m', 'moto.server', '-H', host, '-p', String(PORTS.s3)], {
    env: { ...process.env, INITIAL_NO_AUTH_ACTION_COUNT: '3', S3_IGNORE_SUBDOMAIN_BUCKETNAME: 'true' },
    stdio: 'ignore',
  });
  await waitFor('moto', () =>
    run('curl', ['-sf', '-o', '/dev/null', `http://${host}:${PORTS.s3}/moto-api/`]),
  );
  const setup = await run(motoPython, [
    path.join(repoRoot, 'test/fixtures/sigv4/moto-iam-setup.py'),
    `http://${host}:${PORTS.s3}`,
  ]);
  keys = JSON.parse(setup.stdout) as typeof keys;

  idp = http.createServer();
  await new Promise<void>((r) => idp.listen(PORTS.idp, host, r));
  const provider = new Provider(`http://${host}:${PORTS.idp}`, {
    clients: [
      {
        client_id: 'cc',
        client_secret: CC_SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'api:read',
      },
      { client_id: 'rs', client_secret: RS_SECRET, grant_types: [], response_types: [], redirect_uris: [] },
    ],
    scopes: ['api:read'],
    features: { clientCredentials: { enabled: true }, introspection: { enabled: true } },
    ttl: { ClientCredentials: 6 },
  });
  idp.on('request', provider.callback());
  rs = http.createServer((req, res) => {
    void (async () => {
      const h = req.headers.authorization ?? '';
      const token = h.startsWith('Bearer ') ? h.slice(7) : null;
      seenTokens.push(token);
      let active = false;
      if (token) {
        const r = await fetch(`http://${host}:${PORTS.idp}/token/introspection`, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            authorization: `Basic ${Buffer.from(`rs:${RS_SECRET}`).toString('base64')}`,
          },
          body: new URLSearchParams({ token }).toString(),
        });
        active = ((await r.json()) as { active: boolean }).active;
      }
      res.writeHead(active ? 200 : 401);
      res.end(active ? 'active' : 'inactive');
    })();
  });
  await new Promise<void>((r) => rs.listen(PORTS.api, host, r));
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-creds-dyn-'));
  const policyDir = path.join(dir, 'policy');
  credsDir = path.join(dir, 'credentials');
  mkdirSync(policyDir, { mode: 0o755 });
  mkdirSync(credsDir, { mode: 0o700 });
  chownSync(credsDir, GATEWAY_UID, GATEWAY_UID);
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(
    path.join(policyDir, 'policy.csv'),
    [
      `p, dev, s3.test:${PORTS.s3}, /*, GET, allow`,
      `p, dev, s3.test:${PORTS.s3}, /*, PUT, allow`,
      `p, dev, api.test:${PORTS.api}, /*, GET, allow`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    path.join(policyDir, 'credentials.yaml'),
    [
      'version: 1',
      'credentials:',
      '  - name: s3',
      '    roles: [dev]',
      `    bindings: [{ host: "s3.test:${PORTS.s3}", path: /*, methods: [GET, PUT] }]`,
      '    apply: { type: aws-sigv4, region: us-east-1 }',
      '    source: { file: /run/airlock/credentials/s3-keys }',
      '  - name: api',
      '    roles: [dev]',
      `    bindings: [{ host: "api.test:${PORTS.api}", path: /*, methods: [GET] }]`,
      `    apply: { type: oauth2-client-credentials, tokenUrl: "http://idp.test:${PORTS.idp}/token", clientId: cc, scope: "api:read" }`,
      '    source: { file: /run/airlock/credentials/cc-secret }',
      '',
    ].join('\n'),
  );
  const cfg = parseConfig(
    {
      api: { listen: '127.0.0.1:0', tokens: [{ name: 'e2e', token: TOKEN }] },
      gateway: {
        hostAliases: { 's3.test': 'host-gateway', 'idp.test': 'host-gateway', 'api.test': 'host-gateway' },
        allowPrivateCidrs: [EGRESS_SUBNET],
        credentialsDir: credsDir,
        oauth2RefreshSkewSeconds: 2,
      },
      policy: { dir: policyDir },
      runtime: { docker: { egressSubnet: EGRESS_SUBNET } },
      stateDir: path.join(dir, 'state'),
    },
    dir,
  );
  // The upstreams listen on the egress bridge, which exists once the control plane made it.
  const logger = pino({ level: 'debug' }, { write: (s: string) => void (controlPlaneLog += s) });
  server = await startServer(cfg, logger);
  host = await networkGateway('airlock-egress');
  await startUpstreams();
  writeCredential('s3-keys', `${keys.accessKeyId}:${keys.secretAccessKey}`);
  writeCredential('cc-secret', CC_SECRET);
  api = new TestApi(server.url, TOKEN);
}, 180_000);

afterAll(async () => {
  await server?.close();
  await removeAirlockObjects();
  await stop(moto);
  await new Promise((r) => rs?.close(r));
  idp?.closeAllConnections();
  await new Promise((r) => idp?.close(r));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function sh(id: string, script: string, timeoutSeconds = 120): Promise<string> {
  const out = await api.sh(id, script, timeoutSeconds);
  sandboxOutput += out.stdout + out.stderr;
  expect(out.exitCode, out.stderr).toBe(0);
  return out.stdout;
}

describe('SigV4 and OAuth2 credentials on Docker (issue 14 part B)', () => {
  let dev: string;

  it('S3 from the sandbox: bucket, PUT, GET and list, signed by the gateway container', async () => {
    dev = (await api.create({ role: 'dev' })).id;
    const s3 = `http://s3.test:${PORTS.s3}`;
    const c = (args: string): string => `curl -s -w '\\n%{http_code}' ${args}; echo`;
    const out = await sh(
      dev,
      [
        c(`-X PUT ${s3}/e2e-bucket`),
        c(`-X PUT --data-binary 'from the sandbox' -H 'Content-Type: text/plain' ${s3}/e2e-bucket/a.txt`),
        c(`${s3}/e2e-bucket/a.txt`),
        c(`'${s3}/e2e-bucket?list-type=2'`),
        // The agent's own made-up signature is replaced by the gateway's.
        c(
          `-H 'Authorization: AWS4-HMAC-SHA256 Credential=AKIAAGENTMADEUP0000/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00' ${s3}/e2e-bucket/a.txt`,
        ),
      ].join('; '),
    );
    const blocks = out.split('\n').filter((l) => l !== '');
    const statuses = blocks.filter((l) => /^\d{3}$/.test(l)).map(Number);
    expect(statuses).toEqual([200, 200, 200, 200, 200]);
    expect(out).toContain('from the sandbox');
    expect(out).toContain('<Key>a.txt</Key>');
    const events = await api.auditUntil(
      dev,
      (es) => es.filter((e) => e.credential?.name === 's3').length >= 5,
    );
    expect(events.filter((e) => e.credential?.name === 's3').every((e) => e.decision === 'allow')).toBe(true);
  });

  it('OAuth2 from the sandbox: the gateway fetches and refreshes the token; two tokens seen, no failed call', async () => {
    const out = await sh(
      dev,
      `for i in $(seq 1 60); do curl -s -o /dev/null -w '%{http_code}\\n' http://api.test:${PORTS.api}/items/$i; sleep 0.25; done`,
      120,
    );
    const statuses = out.trim().split('\n').map(Number);
    expect(statuses.every((s) => s === 200)).toBe(true);
    const tokens = new Set(seenTokens.filter((t) => t !== null));
    expect(tokens.size).toBeGreaterThanOrEqual(2);
    expect(seenTokens.every((t) => t !== null)).toBe(true);
    const direct = curlResult(
      await sh(
        dev,
        `curl -s -w '\\n%{http_code}' http://api.test:${PORTS.api}/x -H 'Authorization: Bearer made-up'`,
      ),
    );
    expect(direct.status).toBe(200); // the gateway replaced the agent's header
  }, 180_000);

  it('no key, client secret or access token in the sandbox, the audit, the gateway or control plane log', async () => {
    sandboxOutput += await sh(
      dev,
      'env; cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n"; ls -la /run 2>&1',
    );
    const audit = readFileSync(path.join(dir, 'state', 'audit.jsonl'), 'utf8');
    const events = audit
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditEvent);
    expect(events.some((e) => e.credential?.name === 'api')).toBe(true);
    const gatewayLog = (
      await docker.getContainer('airlock-gateway').logs({ stdout: true, stderr: true })
    ).toString('latin1');
    const forbidden = [
      keys.secretAccessKey,
      CC_SECRET,
      ...new Set(seenTokens.filter((t): t is string => t !== null)),
    ];
    for (const [what, text] of [
      ['sandbox output', sandboxOutput],
      ['audit', audit],
      ['gateway log', gatewayLog],
      ['control plane log', controlPlaneLog],
    ] as const) {
      for (const secret of forbidden) expect(text.includes(secret), `${what} holds a secret`).toBe(false);
    }
  });
});
