/**
 * MCP under policy on real components (issue 10): `@modelcontextprotocol/server-everything` (npm)
 * served over Streamable HTTP on this machine, the official `@modelcontextprotocol/sdk` client
 * running inside a Docker sandbox (test/fixtures/mcp/sandbox-client.mjs, bundled with esbuild and
 * copied into the container), the gateway container deciding each tool call, and the control plane
 * as `airlock serve` runs it. An allowed tool works end to end; a denied one answers a JSON-RPC error
 * naming the rule and never reaches the server (its request log); `tools/list` shows only what the
 * role may call; the kill switch ends the session's MCP traffic.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import { pino } from 'pino';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { sandboxContainerName } from '../../src/runtime/docker/labels.js';
import { TestApi } from '../helpers/api-client.js';
import { docker, networkGateway, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';

const EGRESS_SUBNET = '10.214.0.0/24';
const TOKEN = 'e2e-token-0123456789abcdef';
const PORT = 3401;
const HOST = `mcp.test:${PORT}`;
const URL_ = `http://${HOST}/mcp`;

let stateDir: string;
let server: RunningServer;
let api: TestApi;
let everything: ChildProcess;
let serverLog = '';
let bundle: string;

/** The requests the server logged (`Received MCP POST request` per POST). */
const posts = (): number => serverLog.split('Received MCP POST request').length - 1;

async function copyInto(sessionId: string, name: string, content: string): Promise<void> {
  const pack = tar.pack();
  pack.entry({ name, mode: 0o644 }, content);
  pack.finalize();
  await docker
    .getContainer(sandboxContainerName(sessionId))
    .putArchive(pack as unknown as NodeJS.ReadableStream, { path: '/tmp' });
}

interface Step {
  step: string;
  tools?: string[];
  name?: string;
  ok?: boolean;
  content?: unknown;
  code?: number | null;
  message?: string;
}

async function runClient(sessionId: string): Promise<Step[]> {
  const out = await api.exec(sessionId, ['node', '/tmp/mcp-client.mjs', URL_], 120);
  if (out.exitCode !== 0) {
    const trail = (await api.audit(sessionId)).map(
      (e) => `${e.method} ${e.path} ${e.decision} ${e.reason} ${e.status}`,
    );
    expect.fail(
      `client failed: ${out.stderr}\nstdout: ${out.stdout}\naudit: ${trail.join('\n')}\nserver: ${serverLog.slice(-2000)}`,
    );
  }
  return out.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Step);
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  stateDir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-mcp-'));
  const policyDir = path.join(stateDir, 'policy');
  mkdirSync(policyDir);
  copyFileSync(path.resolve('policies/model.conf'), path.join(policyDir, 'model.conf'));
  writeFileSync(
    path.join(policyDir, 'policy.csv'),
    [
      // The endpoint: POST (messages), GET (the server's stream), DELETE (end of session).
      `p, agent, ${HOST}, /mcp, *, allow`,
      `p, agent, ${HOST}, /mcp/tools/call/echo, MCP, allow`,
      `p, agent, ${HOST}, /mcp/tools/call/get-sum, MCP, deny`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    path.join(policyDir, 'mcp.yaml'),
    `version: 1\nendpoints:\n  - name: everything\n    host: ${HOST}\n    path: /mcp\n`,
  );
  // The client, bundled into one file the sandbox's node runs.
  const built = await build({
    entryPoints: [path.resolve('test/fixtures/mcp/sandbox-client.mjs')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    write: false,
    logLevel: 'silent',
    // undici is CommonJS: its require() calls need a require in the ES module bundle.
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
  });
  bundle = built.outputFiles[0]!.text;

  server = await startServer(
    parseConfig(
      {
        api: { listen: '127.0.0.1:0', tokens: [{ name: 'e2e', token: TOKEN }] },
        gateway: { hostAliases: { 'mcp.test': 'host-gateway' }, allowPrivateCidrs: [EGRESS_SUBNET] },
        policy: { dir: policyDir },
        runtime: {
          docker: { egressSubnet: EGRESS_SUBNET },
          resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
        },
        stateDir,
      },
      process.cwd(),
    ),
    pino({ level: 'warn' }),
  );
  api = new TestApi(server.url, TOKEN);
  await networkGateway('airlock-egress');
  // server-everything listens on PORT; the sandbox reaches it on the egress bridge's host address.
  const require = createRequire(import.meta.url);
  const main = path.join(
    path.dirname(require.resolve('@modelcontextprotocol/server-everything/package.json')),
    'dist/index.js',
  );
  everything = spawn(process.execPath, [main, 'streamableHttp'], {
    env: { ...process.env, PORT: String(PORT) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const listening = new Promise<void>((resolve, reject) => {
    everything.stderr!.on('data', (d: Buffer) => {
      serverLog += d.toString();
      if (serverLog.includes('listening on port')) resolve();
    });
    everything.once('exit', (code) => reject(new Error(`server-everything exited (${code}): ${serverLog}`)));
  });
  everything.stdout!.on('data', (d: Buffer) => (serverLog += d.toString()));
  await listening;
}, 180_000);

afterAll(async () => {
  everything?.kill('SIGTERM');
  await server?.close();
  await removeAirlockObjects();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('MCP tool calls decided one by one, the SDK client in a sandbox', () => {
  let session: string;
  let steps: Step[];

  it('runs the official client in the sandbox through the gateway', async () => {
    session = (await api.create({ role: 'agent' })).id;
    await copyInto(session, 'mcp-client.mjs', bundle);
    steps = await runClient(session);
    expect(steps.map((s) => s.step)).toEqual(['list', 'call', 'call']);
  });

  it('tools/list shows the allowed tool, not the denied one', () => {
    const list = steps.find((s) => s.step === 'list')!;
    expect(list.tools).toContain('echo');
    expect(list.tools).not.toContain('get-sum');
  });

  it('the allowed tool works end to end', () => {
    expect(steps.find((s) => s.name === 'echo')).toMatchObject({
      ok: true,
      content: [{ type: 'text', text: 'Echo: hello through airlock' }],
    });
  });

  it('the denied tool gets a JSON-RPC error naming the rule; the server never sees that call', async () => {
    const denied = steps.find((s) => s.name === 'get-sum')!;
    expect(denied.ok).toBe(false);
    expect(denied.code).toBe(-32010);
    expect(denied.message).toMatch(/get-sum/);
    expect(denied.message).toMatch(/\/mcp\/tools\/call\/get-sum, MCP, deny/);
    const events = await api.auditUntil(session, (e) =>
      e.some((x) => x.mcp?.messages.some((m) => m.name === 'get-sum') ?? false),
    );
    const ev = events.find((x) => x.mcp?.messages.some((m) => m.name === 'get-sum'))!;
    expect(ev).toMatchObject({ decision: 'deny', reason: 'rule_deny', status: 200, bytesOut: 0 });
    const allowed = events.find((x) => x.mcp?.messages.some((m) => m.name === 'echo'))!;
    expect(allowed).toMatchObject({ decision: 'allow', status: 200 });
    // Every POST the server logged was allowed by the gateway: the denied call is not among them.
    const forwardedPosts = events.filter((x) => x.method === 'POST' && x.decision === 'allow').length;
    expect(posts()).toBe(forwardedPosts);
  });

  it("Node's own fetch through the sandbox's env proxy (CONNECT, then plain HTTP) is decided per request", async () => {
    const s = (await api.create({ role: 'agent' })).id;
    const init = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: '2025-03-26',
        capabilities: {},
        clientInfo: { name: 'node-fetch', version: '1' },
      },
    });
    const r = await api.exec(s, [
      'node',
      '--input-type=module',
      '-e',
      `const r = await fetch('${URL_}', { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: ${JSON.stringify(init)} }); console.log(r.status);`,
    ]);
    expect(r.stdout.trim(), r.stderr).toBe('200');
    const events = await api.auditUntil(s, (e) => e.some((x) => x.method === 'POST' && x.scheme === 'http'));
    expect(events.some((x) => x.method === 'CONNECT' && x.reason === 'tls_handshake_failed')).toBe(false);
    expect(events.find((x) => x.method === 'POST')).toMatchObject({
      scheme: 'http',
      decision: 'allow',
      status: 200,
    });
    await api.remove(s);
  });

  it('after the kill switch the session is gone and its MCP traffic with it', async () => {
    const before = posts();
    await api.remove(session);
    const res = await api.raw('POST', `/v1/sessions/${session}/exec`, {
      command: ['node', '/tmp/mcp-client.mjs', URL_],
    });
    expect(res.status).toBe(404);
    expect(posts()).toBe(before);
  });
});
