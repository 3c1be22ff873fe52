/**
 * The SDKs on real components (issue 11 part 2): `airlock serve` as the control plane on the real
 * Docker engine with the gateway and sandbox images, json-server as the forum.
 *
 * - the TypeScript SDK (src/sdk) in-process: create, exec (whole and streamed), decisions, kill,
 *   `await using`, typed errors with the API's codes;
 * - the README's TypeScript and Python snippets, extracted from README.md and run as written;
 * - the Python SDK's pytest suite (clients/python/tests) in the venv of scripts/python-venv.sh;
 * - the examples (examples/): a sandbox as an agent loop's tool backend, in both languages;
 * - the Python package's version equals the served `/openapi.json` `info.version`;
 * - `airlock serve` with `telemetry.otlp` exports the session's decisions into a real OpenTelemetry
 *   Collector (test/helpers/otel-collector.ts) as OCSF HTTP Activity records.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { parseConfig } from '../../src/config/load.js';
import {
  AirlockApiError,
  InvalidRequestError,
  Sandbox,
  SessionNotFoundError,
  UnauthorizedError,
  UnknownRoleError,
  type DecisionEvent,
  type ExecChunk,
} from '../../src/sdk/index.js';
import { ensureBuilt } from '../helpers/cli.js';
import { startCollector, type Collector } from '../helpers/otel-collector.js';
import { curlResult } from '../helpers/api-client.js';
import { networkGateway, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';
import { startJsonServer, type JsonServer } from '../helpers/upstreams.js';
import { watchedLogger } from '../helpers/log-watch.js';

const EGRESS_SUBNET = '10.214.0.0/24';
const TOKEN = 'sdk-test-token-0123456789abcdef';
const FORUM = 'http://forum.test:3000';
const REPO = path.resolve('.');

let stateDir: string;
let server: RunningServer;
let forum: JsonServer;
let python: string;
let collector: Collector;

/** What the SDKs read (AIRLOCK_API_URL, AIRLOCK_API_TOKEN), for child processes. */
function sdkEnv(): NodeJS.ProcessEnv {
  return { ...process.env, AIRLOCK_API_URL: server.url, AIRLOCK_API_TOKEN: TOKEN, AIRLOCK_TEST_FORUM: FORUM };
}

function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { cwd: opts.cwd ?? REPO, env: opts.env ?? sdkEnv(), timeout: 200_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) || 1 : 0, stdout, stderr }),
    );
  });
}

/** The body of the first ```LANG block after the `## SDKs` heading of README.md. */
function readmeSnippet(lang: 'ts' | 'python'): string {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## SDKs\n'));
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(section);
  if (!m?.[1]) throw new Error(`README.md has no \`\`\`${lang} block under "## SDKs"`);
  return m[1];
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  ensureBuilt();
  python = /PYTHON=(.+)/.exec(
    execFileSync('bash', ['scripts/python-venv.sh'], { encoding: 'utf8', timeout: 240_000 }),
  )![1]!;
  collector = await startCollector();
  stateDir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-sdk-'));
  const cfg = parseConfig(
    {
      api: { listen: '127.0.0.1:0', tokens: [{ name: 'sdk', token: TOKEN }] },
      gateway: { hostAliases: { 'forum.test': 'host-gateway' }, allowPrivateCidrs: [EGRESS_SUBNET] },
      policy: { dir: path.resolve('policies') },
      runtime: {
        docker: { egressSubnet: EGRESS_SUBNET },
        resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
      },
      telemetry: { otlp: { endpoint: collector.endpoint, exportIntervalMs: 100 } },
      stateDir,
    },
    process.cwd(),
  );
  server = await startServer(cfg, watchedLogger());
  forum = await startJsonServer(await networkGateway('airlock-egress'), 3000);
});

afterAll(async () => {
  await server?.close();
  await removeAirlockObjects();
  await forum?.stop();
  await collector?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('TypeScript SDK', () => {
  const opts = (): { apiUrl: string; token: string } => ({ apiUrl: server.url, token: TOKEN });

  it('create, exec, streamed exec, live decisions, and kill through `await using`', async () => {
    let id: string;
    {
      await using sandbox = await Sandbox.create({ ...opts(), role: 'analyst', ttlSeconds: 600 });
      id = sandbox.id;
      expect(sandbox.role).toBe('analyst');
      expect(sandbox.info.status).toBe('running');

      const decisions: DecisionEvent[] = [];
      const following = (async () => {
        for await (const e of sandbox.decisions({ pollMs: 100 })) {
          decisions.push(e);
          if (decisions.length === 2) return;
        }
      })();

      const read = await sandbox.exec(['curl', '-s', '-w', '\\n%{http_code}', `${FORUM}/posts/1`]);
      expect(read.exitCode).toBe(0);
      expect(curlResult(read.stdout).status).toBe(200);
      const post = await sandbox.exec([
        'curl',
        '-s',
        '-w',
        '\\n%{http_code}',
        '-X',
        'POST',
        '-H',
        'content-type: application/json',
        '-d',
        '{"body":"x"}',
        `${FORUM}/comments`,
      ]);
      const denied = curlResult(post.stdout);
      expect(denied.status).toBe(403);
      expect(JSON.parse(denied.body)).toMatchObject({
        error: 'egress_denied',
        sessionId: id,
        method: 'POST',
      });

      await following;
      expect(decisions.map((e) => [e.method, e.path, e.decision, e.reason])).toEqual([
        ['GET', '/posts/1', 'allow', 'rule_allow'],
        ['POST', '/comments', 'deny', expect.stringMatching(/^(rule_deny|no_match)$/)],
      ]);

      const chunks: ExecChunk[] = [];
      for await (const c of sandbox.execStream(['sh', '-c', 'echo out; echo err >&2; exit 3']))
        chunks.push(c);
      expect(chunks).toContainEqual({ stream: 'stdout', data: 'out\n' });
      expect(chunks).toContainEqual({ stream: 'stderr', data: 'err\n' });
      expect(chunks.at(-1)).toEqual({ exitCode: 3 });
    }
    // The scope ended: the session was killed.
    const after = await Sandbox.connect(id, opts()).then(
      (s) => s.info.status,
      (err: unknown) => err,
    );
    if (after instanceof Error) expect(after).toBeInstanceOf(SessionNotFoundError);
    else expect(after).not.toBe('running');
  });

  it('airlock serve exported those decisions over OTLP (OCSF HTTP Activity records)', async () => {
    const logs = await collector.until(
      (l) => l.filter((r) => r.body?.class_uid === 4002).length >= 2,
      20_000,
    );
    const ocsf = logs.map((r) => r.body!).filter((b) => b.class_uid === 4002);
    expect(ocsf).toContainEqual(
      expect.objectContaining({
        activity_id: 3,
        disposition: 'Allowed',
        http_request: expect.objectContaining({ url: expect.objectContaining({ path: '/posts/1' }) }),
      }),
    );
    expect(ocsf).toContainEqual(
      expect.objectContaining({
        activity_id: 6,
        disposition: 'Blocked',
        http_request: expect.objectContaining({ url: expect.objectContaining({ path: '/comments' }) }),
      }),
    );
  });

  it("airlock serve's /metrics: the policy's first load and the OTLP export counted", async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const value = (series: string): number =>
      Number(
        text
          .split('\n')
          .find((l) => l.startsWith(series + ' '))
          ?.slice(series.length + 1) ?? NaN,
      );
    expect(value('airlock_policy_reloads_total{result="success"}')).toBeGreaterThanOrEqual(1);
    expect(value('airlock_policy_reloads_total{result="failure"}')).toBe(0);
    expect(value('airlock_otlp_exported_records_total')).toBeGreaterThanOrEqual(2);
    expect(value('airlock_otlp_export_failed_records_total')).toBe(0);
  });

  it('decisions() ends by itself once the session is killed, with its last events', async () => {
    const sandbox = await Sandbox.create({ ...opts(), role: 'analyst' });
    await sandbox.exec(['curl', '-s', `${FORUM}/posts/2`]);
    await sandbox.kill();
    const events: DecisionEvent[] = [];
    for await (const e of sandbox.decisions({ pollMs: 100 })) events.push(e);
    expect(events.map((e) => e.path)).toEqual(['/posts/2']);
    await sandbox.kill(); // idempotent: already gone
  });

  it('errors are classes carrying the API codes', async () => {
    const unknown = await Sandbox.create({ ...opts(), role: 'no-such-role' }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(UnknownRoleError);
    expect(unknown).toMatchObject({ status: 422, code: 'AIRLOCK_UNKNOWN_ROLE' });
    const invalid = await Sandbox.create({ ...opts(), role: 'analyst', ttlSeconds: 0 }).catch(
      (e: unknown) => e,
    );
    expect(invalid).toBeInstanceOf(InvalidRequestError);
    expect(invalid).toMatchObject({ status: 400, code: 'AIRLOCK_REQUEST_INVALID', field: 'ttlSeconds' });
    const unauthorized = await Sandbox.create({ apiUrl: server.url, token: 'wrong', role: 'analyst' }).catch(
      (e: unknown) => e,
    );
    expect(unauthorized).toBeInstanceOf(UnauthorizedError);
    const missing = await Sandbox.connect('s-doesnotexist', opts()).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(SessionNotFoundError);
    expect(missing).toBeInstanceOf(AirlockApiError);
    expect((missing as AirlockApiError).requestId).toBeTruthy();
  });

  it("the README's TypeScript snippet runs as written", async () => {
    // Inside the repository so that `import … from 'airlock'` resolves to this package (self-reference).
    const file = path.join(REPO, `.readme-snippet-${process.pid}.mjs`);
    writeFileSync(file, readmeSnippet('ts'));
    try {
      const r = await run(process.execPath, [file]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^0 \{/);
      expect(r.stdout).toContain('"id": 1');
      expect(r.stdout).toContain('allow GET forum.test/posts/1');
    } finally {
      rmSync(file, { force: true });
    }
  });
});

describe('Python SDK', () => {
  const pyEnv = (): NodeJS.ProcessEnv => ({ ...sdkEnv(), PYTHONPATH: path.join(REPO, 'clients/python/src') });

  it('pytest: clients/python/tests against this server', async () => {
    const r = await run(python, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'clients/python/tests'], {
      env: pyEnv(),
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\b6 passed\b/);
  });

  it("the README's Python snippet runs as written", async () => {
    const r = await run(python, ['-c', readmeSnippet('python')], { env: pyEnv() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^0 \{/);
    expect(r.stdout).toContain('"id": 1');
  });

  it('the package version is the served OpenAPI info.version', async () => {
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as { info: { version: string } };
    const pyproject = readFileSync(path.join(REPO, 'clients/python/pyproject.toml'), 'utf8');
    expect(/^version = "(.+)"$/m.exec(pyproject)?.[1]).toBe(doc.info.version);
  });
});

describe('examples: a sandbox as the tool backend of an agent loop', () => {
  it('TypeScript (examples/agent-loop.mjs)', async () => {
    const r = await run(process.execPath, ['examples/agent-loop.mjs']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('tool http_get http://forum.test:3000/posts/1 -> 200');
    expect(r.stdout).toContain('tool http_post http://forum.test:3000/comments -> 403 egress_denied');
    expect(r.stdout).toMatch(/decisions: 1 allowed, 1 denied/);
  });

  it('Python (examples/agent_loop.py)', async () => {
    const r = await run(python, ['examples/agent_loop.py'], {
      env: { ...sdkEnv(), PYTHONPATH: path.join(REPO, 'clients/python/src') },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('tool http_get http://forum.test:3000/posts/1 -> 200');
    expect(r.stdout).toContain('tool http_post http://forum.test:3000/comments -> 403 egress_denied');
    expect(r.stdout).toMatch(/decisions: 1 allowed, 1 denied/);
  });
});
