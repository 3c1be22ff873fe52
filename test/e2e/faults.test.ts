/**
 * Faults survived (issue 15 section 1), on the real Docker engine with the gateway and sandbox images,
 * json-server as the upstream and `airlock serve` as a separate process (so it can be killed -9).
 * Each fault happens while a bounded loop of calls runs inside a sandbox (started with `docker exec`,
 * so it needs no control plane); the counts per answer are printed as JSON and asserted:
 * - kill -9 of the gateway process: no call is answered 200 without an allow event in the audit
 *   trail, calls in the gap fail (connection refused) or are refused — never forwarded undecided —,
 *   the container's restart policy brings the gateway back, the control plane's watchdog resyncs its
 *   sessions, and calls succeed again (time measured); the audit trail still verifies (hash chain);
 * - kill -9 of the control plane: sessions keep working through the gateway, TTL still enforced by it
 *   (a short-lived session's calls are refused once it expires), and on restart every live session is
 *   recovered once, the expired one removed;
 * - a restart of dockerd (last: it stops every container of the engine): the API answers problem
 *   codes meanwhile, the gateway comes back and new sessions work; the sandboxes stopped with the
 *   engine (no restart policy; unless the engine has live-restore) and their sessions do not survive.
 * Error-level lines of the serve process fail the test unless listed in EXPECTED_ERRORS with why.
 *
 * Run alone, under the Docker lock: `flock /tmp/airlock-e2e.lock npx vitest run --project e2e test/e2e/faults.test.ts`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAudit, loadAuditPublicKeys } from '../../src/audit/chain.js';
import type { AuditEvent } from '../../src/audit/event.js';
import { GATEWAY_ADMIN_PORT } from '../../src/config/schema.js';
import {
  GATEWAY_CONTAINER,
  sandboxContainerName,
  sessionNetworkName,
} from '../../src/runtime/docker/labels.js';
import { TestApi } from '../helpers/api-client.js';
import { ensureBuilt } from '../helpers/cli.js';
import { docker, networkGateway, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';
import { startJsonServer, type JsonServer } from '../helpers/upstreams.js';

const EGRESS_SUBNET = '10.214.0.0/24';
const TOKEN = 'e2e-faults-token-0123456789abcdef';
const FORUM = 'http://forum.test:3000';
/** The CLI run as `airlock serve` (the repo's build; AIRLOCK_CLI_MAIN: another build of it). */
const MAIN = process.env.AIRLOCK_CLI_MAIN ?? path.resolve('dist/cli/main.js');

/**
 * Error-level log lines of `airlock serve` a fault is expected to cause, each with why. Any other
 * error line fails the file (afterAll).
 */
const EXPECTED_ERRORS: { msg: RegExp; why: string }[] = [];

let stateDir: string;
let configFile: string;
let forum: JsonServer;
let serve: ServeProcess | null = null;
const logLines: { level: number; msg: string; line: string }[] = [];

interface ServeProcess {
  child: ChildProcess;
  url: string;
  api: TestApi;
  exited: Promise<number | null>;
}

/** Starts `airlock serve` (the built CLI) and resolves once it printed its API URL. */
async function startServe(): Promise<ServeProcess> {
  ensureBuilt();
  const child = spawn(process.execPath, [MAIN, 'serve', '--config', configFile], {
    env: { ...process.env, AIRLOCK_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let partial = '';
  child.stderr!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      try {
        const o = JSON.parse(line) as { level: number; msg: string };
        logLines.push({ level: o.level, msg: o.msg, line });
      } catch {
        logLines.push({ level: 0, msg: line, line });
      }
    }
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${out}`)), 180_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /Airlock API listening on (http:\/\/\S+)/.exec(out);
      if (m && /\nready: /.test(out)) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) =>
      reject(
        new Error(
          `serve exited (${code}): ${out}\n${logLines
            .slice(-5)
            .map((l) => l.line)
            .join('\n')}`,
        ),
      ),
    );
  });
  return { child, url, api: new TestApi(url, TOKEN), exited };
}

/** One call of a loop: its number, curl's status (0: no HTTP answer) and when it started (epoch ms). */
interface Call {
  i: number;
  code: number;
  t: number;
}

/**
 * Runs `n` calls (`GET /posts/1?call=I`, 100 ms apart) inside a sandbox with `docker exec` and
 * streams their results into `calls` as they happen. @returns when the loop ends.
 */
/**
 * Runs `n` calls inside the session's sandbox, 100 ms apart (`pauseS`), pushing each call's index,
 * HTTP status (0: no answer) and time. Default: GET the forum through the gateway (the sandbox's
 * proxy settings); `direct`: that URL without any proxy.
 */
async function loop(
  sessionId: string,
  n: number,
  calls: Call[],
  opts: { direct?: string; pauseS?: number } = {},
): Promise<void> {
  const curl = opts.direct
    ? `curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 1 '${opts.direct}'`
    : `curl -s -o /dev/null -w '%{http_code}' --max-time 3 '${FORUM}/posts/1?call='$i`;
  const script =
    `i=0; while [ $i -lt ${n} ]; do i=$((i+1)); t=$(date +%s%3N); ` +
    `c=$(${curl}); echo "$i $c $t"; sleep ${opts.pauseS ?? 0.1}; done`;
  const exec = await docker.getContainer(sandboxContainerName(sessionId)).exec({
    Cmd: ['sh', '-c', script],
    AttachStdout: true,
    AttachStderr: true,
  });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out = new PassThrough();
  docker.modem.demuxStream(stream, out, new PassThrough());
  let partial = '';
  out.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      const [i, code, t] = l.trim().split(' ').map(Number);
      if (i !== undefined && code !== undefined && t !== undefined) calls.push({ i, code, t });
    }
  });
  await new Promise<void>((resolve) => stream.on('end', () => resolve()));
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const querySha = (i: number): string => createHash('sha256').update(`call=${i}`).digest('hex').slice(0, 16);

const countBy = (calls: Call[]): Record<string, number> =>
  calls.reduce<Record<string, number>>((acc, c) => ((acc[c.code] = (acc[c.code] ?? 0) + 1), acc), {});

const run = promisify(execFile);

interface Answer {
  status: number;
  type: string | null;
  body: string;
}

/**
 * Stops the Docker engine the way it is managed here (systemd's docker.service, or the dockerd
 * scripts/setup.sh started with nohup), runs `whileDown`, starts it again and waits until it
 * answers (120 s). @returns what `whileDown` returned.
 */
async function restartDockerd<T>(whileDown: () => Promise<T>): Promise<T> {
  const systemd = await run('systemctl', ['is-active', '--quiet', 'docker']).then(
    () => true,
    () => false,
  );
  if (systemd) await run('systemctl', ['stop', 'docker.socket', 'docker']);
  else {
    const pids = (await run('pidof', ['dockerd'])).stdout.trim().split(/\s+/).map(Number);
    for (const pid of pids) process.kill(pid, 'SIGTERM');
    await until(() => pids.every((pid) => !alive(pid)), 120_000, 'dockerd to stop');
  }
  let result: T;
  try {
    result = await whileDown();
  } finally {
    if (systemd) await run('systemctl', ['start', 'docker']);
    else {
      const out = openSync('/var/log/airlock-dockerd.log', 'a');
      // Detached (its own session), and holding none of this process's descriptors but its log:
      // an inherited one (a lock file of the test runner's) would stay held by the daemon.
      const closeFds = 'for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done';
      spawn('bash', ['-c', `${closeFds}; exec dockerd`], {
        detached: true,
        stdio: ['ignore', out, out],
      }).unref();
    }
    await until(
      () =>
        docker.ping().then(
          () => true,
          () => false,
        ),
      120_000,
      'the Docker engine to answer again',
    );
  }
  return result;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  stateDir = mkdtempSync(path.join(tmpdir(), 'airlock-faults-'));
  configFile = path.join(stateDir, 'airlock.yaml');
  writeFileSync(
    configFile,
    JSON.stringify({
      api: { listen: '127.0.0.1:0', tokens: [{ name: 'e2e', token: TOKEN }] },
      gateway: { hostAliases: { 'forum.test': 'host-gateway' }, allowPrivateCidrs: [EGRESS_SUBNET] },
      policy: { dir: path.resolve('policies') },
      runtime: {
        docker: { egressSubnet: EGRESS_SUBNET },
        resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
      },
      stateDir: path.join(stateDir, 'state'),
    }),
  );
  serve = await startServe();
  forum = await startJsonServer(await networkGateway('airlock-egress'), 3000);
});

afterAll(async () => {
  if (serve) {
    serve.child.kill('SIGTERM');
    await serve.exited;
  }
  await removeAirlockObjects();
  await forum?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  // An error-level line nobody expected is a finding (issue 15): fail with the lines.
  const unexpected = logLines.filter((l) => l.level >= 50 && !EXPECTED_ERRORS.some((e) => e.msg.test(l.msg)));
  expect(unexpected.map((l) => l.line)).toEqual([]);
});

describe('faults', () => {
  let a: string;

  it('kill -9 of the gateway mid-traffic: nothing forwarded undecided, no allow unaudited, back by itself', async () => {
    const api = serve!.api;
    a = (await api.create({ role: 'analyst' })).id;
    const calls: Call[] = [];
    const done = loop(a, 150, calls);
    await until(() => calls.length >= 20, 60_000, '20 calls before the fault');
    const gw = await docker.getContainer(GATEWAY_CONTAINER).inspect();
    const restartsBefore = gw.RestartCount;
    // Meanwhile the sandbox also tries the admin API on the gateway's address on its network: a
    // restarted gateway knows no session until the control plane resyncs it, and must still refuse.
    const gwIp = gw.NetworkSettings.Networks[sessionNetworkName(a)]?.IPAddress;
    expect(gwIp).toMatch(/^10\.213\./);
    const adminProbes: Call[] = [];
    const probing = loop(a, 200, adminProbes, {
      direct: `http://${gwIp}:${GATEWAY_ADMIN_PORT}/healthz`,
      pauseS: 0.05,
    });
    const tKill = Date.now();
    process.kill(gw.State.Pid, 'SIGKILL'); // the gateway process (the container's init) dies at once
    await done;
    await probing;
    console.log(JSON.stringify({ fault: 'gateway kill -9', adminProbesFromSandbox: countBy(adminProbes) }));
    // Refused (403) or not connected (0, while it is down) — never answered as to the control plane.
    expect(adminProbes).toHaveLength(200);
    for (const c of adminProbes) expect([0, 403]).toContain(c.code);
    expect(adminProbes.some((c) => c.code === 403 && c.t > tKill)).toBe(true);
    const after = calls.filter((c) => c.t >= tKill);
    const firstFailure = after.find((c) => c.code !== 200);
    const recovered = firstFailure ? after.find((c) => c.t > firstFailure.t && c.code === 200) : undefined;
    const report = {
      fault: 'gateway kill -9',
      calls: calls.length,
      byStatus: countBy(calls),
      afterKill: countBy(after),
      recoveryMs: recovered ? recovered.t - tKill : null,
    };
    console.log(JSON.stringify(report));
    expect(calls).toHaveLength(150);
    expect(firstFailure).toBeDefined(); // the fault was felt inside the sandbox
    // In the gap: no HTTP answer (000, the port is closed) or a refusal by the restarted gateway
    // before its sessions were resynced (407 unknown session; 429 once 20 of those made it back off
    // the address) — never an upstream's answer to an unidentified caller.
    for (const c of after) expect([0, 200, 407, 429]).toContain(c.code);
    // Back by itself: the restart policy restarted it, the watchdog resynced, the last calls pass.
    expect(recovered).toBeDefined();
    expect(calls.slice(-10).map((c) => c.code)).toEqual(Array(10).fill(200));
    const gwAfter = await docker.getContainer(GATEWAY_CONTAINER).inspect();
    expect(gwAfter.State.Running).toBe(true);
    expect(gwAfter.RestartCount).toBeGreaterThan(restartsBefore);
    // Every call answered 200 is in the audit trail as an allow (matched by its query's hash).
    const ok = calls.filter((c) => c.code === 200);
    const events = await api.auditUntil(
      a,
      (ev) => ok.every((c) => ev.some((e) => e.querySha256 === querySha(c.i) && e.decision === 'allow')),
      15_000,
    );
    // And nothing was allowed that the sandbox did not see answered (or cut by the kill).
    const allowed = events.filter((e: AuditEvent) => e.decision === 'allow' && e.status === 200);
    for (const e of allowed) expect(calls.some((c) => querySha(c.i) === e.querySha256)).toBe(true);
    // The trail of both gateway processes (two chain streams) still verifies.
    const auditFile = path.join(stateDir, 'state', 'audit.jsonl');
    const text = readFileSync(auditFile, 'utf8');
    const v = verifyAudit(text, {
      file: auditFile,
      signatures: null,
      signatureFile: `${auditFile}.sig`,
      keys: new Map(),
      maxUnsignedAgeMs: Infinity,
    });
    expect(v.firstBreak).toBeNull();
    expect(v.streams).toBeGreaterThanOrEqual(2);
  });

  it('kill -9 of the control plane: sessions keep working, TTL still enforced, all recovered once', async () => {
    const api = serve!.api;
    const b = (await api.create({ role: 'analyst' })).id;
    const short = await api.create({ role: 'analyst', ttlSeconds: 20 });
    const expiresAt = Date.parse(short.expiresAt);
    const bCalls: Call[] = [];
    const sCalls: Call[] = [];
    const bDone = loop(b, 120, bCalls);
    const sDone = loop(short.id, 220, sCalls);
    await until(() => bCalls.length >= 10 && sCalls.length >= 10, 60_000, 'calls before the fault');
    const tKill = Date.now();
    serve!.child.kill('SIGKILL');
    await serve!.exited;
    serve = null;
    await Promise.all([bDone, sDone]);
    const report = {
      fault: 'control plane kill -9',
      session: countBy(bCalls),
      shortSession: {
        beforeExpiry: countBy(sCalls.filter((c) => c.t < expiresAt - 1000)),
        afterExpiry: countBy(sCalls.filter((c) => c.t > expiresAt + 1000)),
      },
    };
    console.log(JSON.stringify(report));
    // The gateway decides without the control plane: every call of the live session passes.
    expect(bCalls.filter((c) => c.t >= tKill).length).toBeGreaterThan(50);
    expect(bCalls.every((c) => c.code === 200)).toBe(true);
    // TTL on the gateway's clock: refused once expired (sweep every 500 ms), though nobody told it.
    const late = sCalls.filter((c) => c.t > expiresAt + 1000);
    expect(late.length).toBeGreaterThan(10);
    expect(late.every((c) => c.code === 403)).toBe(true);
    expect(sCalls.filter((c) => c.t < expiresAt - 1000).every((c) => c.code === 200)).toBe(true);

    // Restart: every live session recovered once, the expired one removed.
    serve = await startServe();
    const listed = (await (await serve.api.raw('GET', '/v1/sessions')).json()) as {
      sessions: { id: string }[];
    };
    const ids = listed.sessions.map((s) => s.id).sort();
    expect(ids).toEqual([a, b].sort());
    const sandboxes = await docker.listContainers({ all: true, filters: { name: ['airlock-s-'] } });
    expect(sandboxes.map((c) => c.Names[0]!.slice(1)).sort()).toEqual(
      [sandboxContainerName(a), sandboxContainerName(b)].sort(),
    );
    // The audit of the outage is there (the gateway kept writing; the new control plane reads it all).
    await serve.api.auditUntil(
      b,
      (ev) => bCalls.every((c) => ev.some((e) => e.querySha256 === querySha(c.i))),
      15_000,
    );
    const again: Call[] = [];
    await loop(b, 3, again);
    expect(again.map((c) => c.code)).toEqual([200, 200, 200]);
  });

  it('airlock audit verify accepts the whole trail, signatures included', async () => {
    // The control plane signs on close and every 10 s: stop it to get the final signatures.
    serve!.child.kill('SIGTERM');
    await serve!.exited;
    serve = null;
    const auditFile = path.join(stateDir, 'state', 'audit.jsonl');
    const keys = loadAuditPublicKeys(path.join(stateDir, 'state', 'audit-keys'));
    expect(keys.size).toBe(1);
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const c = spawn(process.execPath, [MAIN, 'audit', 'verify', '-c', configFile]);
      let stdout = '';
      let stderr = '';
      c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      c.once('exit', (code) => resolve({ code, stdout, stderr }));
    });
    expect(r.stdout + r.stderr).toMatch(/^OK: \d+ event\(s\), \d+ stream\(s\), \d+ signature\(s\) verified/);
    expect(r.code).toBe(0);
    expect(readFileSync(`${auditFile}.sig`, 'utf8').length).toBeGreaterThan(0);
  });

  // Last: it restarts the whole engine (every container of the machine stops with it).
  it('dockerd restart: the API answers problem codes meanwhile, the gateway comes back, new sessions work', async () => {
    serve = await startServe();
    const api = serve.api;
    const old = (await api.create({ role: 'analyst' })).id;
    const down = await restartDockerd(async () => {
      // While the engine is down: answers with a stable code, never a 500 with a stack.
      const create = await api.raw('POST', '/v1/sessions', { role: 'analyst' });
      const list = await api.raw('GET', '/v1/sessions');
      const exec = await api.raw('POST', `/v1/sessions/${old}/exec`, { command: ['true'] });
      return Promise.all(
        [create, list, exec].map(async (r) => ({
          status: r.status,
          type: r.headers.get('content-type'),
          body: await r.text(),
        })),
      );
    });
    console.log(
      JSON.stringify({
        fault: 'dockerd restart',
        whileDown: down.map((d) => ({ status: d.status, body: d.body.slice(0, 200) })),
      }),
    );
    const [create, list, exec] = down as [Answer, Answer, Answer];
    expect(list.status).toBe(200); // the control plane's own view
    for (const a of [create, exec]) {
      // 503 with a reason code while the engine is away (issue 15), never a 500 or a stack.
      expect(a.status).toBe(503);
      expect(a.type).toMatch(/^application\/problem\+json/);
      const body = JSON.parse(a.body) as { code: string; detail?: string };
      expect(body.code).toMatch(/^AIRLOCK_(RUNTIME_UNAVAILABLE|GATEWAY_UNAVAILABLE)$/);
      expect(body.detail ?? '').not.toMatch(/\n\s+at /); // no stack trace
    }
    // Back: the restart policy starts the gateway, the control plane follows its new port and
    // resyncs; a new session works end to end.
    let fresh: string | null = null;
    await until(
      async () => {
        const r = await api.raw('POST', '/v1/sessions', { role: 'analyst' });
        if (r.status === 201) fresh = ((await r.json()) as { id: string }).id;
        return fresh !== null;
      },
      120_000,
      'a session to be created after the engine restart',
    );
    const calls: Call[] = [];
    await loop(fresh!, 3, calls);
    expect(calls.map((c) => c.code)).toEqual([200, 200, 200]);
    // What does not survive: the old session's sandbox stopped with the engine (sandboxes have no
    // restart policy: a restarted agent process would have lost its state). Its calls cannot
    // happen; exec answers a problem code, and removing it works.
    // (With the engine's live-restore on, containers keep running through a daemon restart.)
    const liveRestore =
      ((await docker.info()) as { LiveRestoreEnabled?: boolean }).LiveRestoreEnabled === true;
    const sandbox = await docker.getContainer(sandboxContainerName(old)).inspect();
    expect(sandbox.State.Running).toBe(liveRestore);
    // The control plane says so: the session is listed `stopped` (reconciled with the engine).
    await until(
      async () => {
        const r = await api.raw('GET', `/v1/sessions/${old}`);
        return ((await r.json()) as { status: string }).status === (liveRestore ? 'running' : 'stopped');
      },
      30_000,
      'the old session to be listed as its sandbox is',
    );
    const oldExec = await api.raw('POST', `/v1/sessions/${old}/exec`, { command: ['true'] });
    console.log(JSON.stringify({ fault: 'dockerd restart', liveRestore, oldSessionExec: oldExec.status }));
    if (liveRestore) expect(oldExec.status).toBe(200);
    else {
      expect(oldExec.status).not.toBe(500);
      expect(oldExec.status).toBeGreaterThanOrEqual(400);
      expect(oldExec.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    }
    await api.remove(old);
  });
});
