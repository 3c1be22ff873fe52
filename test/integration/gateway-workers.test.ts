/**
 * The multi-worker gateway (`gateway.workers: 2`, src/gateway/cluster.ts) as the gateway container
 * runs it: `node dist/cli/main.js gateway` with AIRLOCK_GATEWAY_CONFIG and AIRLOCK_ADMIN_TOKEN, a real
 * upstream and a real policy dir on loopback. Sessions are told apart by source address (127.0.0.x);
 * the admin API is called from 127.0.0.1, which no session uses. Needs `npm run build` (built when
 * dist/ lacks the worker entry point).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';

const MAIN = path.resolve('dist/cli/main.js');
const TOKEN = 'workers-admin-token-0123456789';
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

let dir: string;
let upstream: http.Server;
let upstreamPort: number;
let child: ChildProcess;
let stderr = '';
let proxyPort: number;
let adminPort: number;
let auditFile: string;

interface Session {
  id: string;
  cred: string;
  address: string;
}
const session = (n: number): Session => ({
  id: `s-w${n}`,
  cred: `cred-workers-${n}-0123456789`,
  address: `127.0.0.${n}`,
});

async function admin(
  method: string,
  url: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`http://127.0.0.1:${adminPort}${url}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as unknown) : null };
}

async function register(s: Session): Promise<void> {
  const r = await admin('PUT', `/admin/sessions/${s.id}`, {
    id: s.id,
    role: 'worker',
    address: s.address,
    credentialSha256: sha(s.cred),
    expiresAtMs: Date.now() + 3_600_000,
  });
  expect(r.status).toBe(204);
}

interface WorkerStatus {
  id: number;
  pid: number | null;
  ready: boolean;
  restarts: number;
}
async function workers(): Promise<WorkerStatus[]> {
  const r = await admin('GET', '/admin/status');
  return (r.json as { workers: WorkerStatus[] }).workers;
}

/** One proxied GET from the session's address: the status, or 0 when the connection failed. */
function call(s: Session, agent: http.Agent | false = false): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: proxyPort,
        localAddress: s.address,
        path: `http://up.test:${upstreamPort}/ok`,
        headers: {
          host: `up.test:${upstreamPort}`,
          'proxy-authorization': `Basic ${Buffer.from(`${s.id}:${s.cred}`).toString('base64')}`,
        },
        agent,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', () => resolve(0));
      },
    );
    req.setTimeout(10_000, () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** `n` calls, `concurrency` at a time, each on a fresh connection. */
async function calls(s: Session, n: number, concurrency = 16): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i += concurrency) {
    const batch = Array.from({ length: Math.min(concurrency, n - i) }, () => call(s));
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

function auditEvents(): AuditEvent[] {
  if (!existsSync(auditFile)) return [];
  return readFileSync(auditFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditEvent);
}

/** Waits (bounded) until the audit file holds at least `n` events of `id`; returns them. */
async function eventsOf(id: string, n: number): Promise<AuditEvent[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const mine = auditEvents().filter((e) => e.sessionId === id);
    if (mine.length >= n || Date.now() > deadline) return mine;
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  if (!existsSync(path.resolve('dist/gateway/cluster-worker.js'))) {
    const r = spawnSync('npm', ['run', 'build'], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error('npm run build failed');
  }
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-workers-'));
  upstream = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamPort = (upstream.address() as AddressInfo).port;
  const policyDir = path.join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(path.join(policyDir, 'policy.csv'), `p, worker, up.test:${upstreamPort}, /*, GET, allow\n`);
  auditFile = path.join(dir, 'audit', 'audit.jsonl');
  const config = {
    port: 0,
    adminPort: 0,
    listenHost: '127.0.0.1',
    policyDir,
    auditFile,
    auditStdout: false,
    allowPrivateCidrs: ['127.0.0.0/8'],
    hostAliases: { 'up.test': '127.0.0.1' },
    workers: 2,
  };
  child = spawn(process.execPath, [MAIN, 'gateway'], {
    env: {
      ...process.env,
      AIRLOCK_GATEWAY_CONFIG: JSON.stringify(config),
      AIRLOCK_ADMIN_TOKEN: TOKEN,
      NODE_CLUSTER_SCHED_POLICY: 'rr',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const ready = await new Promise<{ proxyPort: number; adminPort: number }>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const line = stderr.split('\n').find((l) => l.includes('"gateway listening"'));
      if (line) resolve(JSON.parse(line) as { proxyPort: number; adminPort: number });
    });
    child.once('exit', (code) => reject(new Error(`gateway exited (${code}): ${stderr}`)));
  });
  proxyPort = ready.proxyPort;
  adminPort = ready.adminPort;
});

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await new Promise<void>((r) => upstream?.close(() => r()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('gateway with 2 workers', () => {
  it('starts two workers behind one proxy port and one admin API', async () => {
    const ws = await workers();
    expect(ws.map((w) => w.id)).toEqual([1, 2]);
    expect(ws.every((w) => w.ready && w.pid !== null)).toBe(true);
    expect(new Set(ws.map((w) => w.pid)).size).toBe(2);
  });

  it('decides requests in both workers (audit names the worker)', async () => {
    const s = session(2);
    await register(s);
    const statuses = await calls(s, 100);
    expect(statuses.every((x) => x === 200)).toBe(true);
    const events = await eventsOf(s.id, 100);
    expect(events).toHaveLength(100);
    expect(new Set(events.map((e) => e.worker))).toEqual(new Set([1, 2]));
    expect(events.every((e) => e.decision === 'allow' && e.policyVersion)).toBe(true);
  });

  it('a session registered through the admin API is allowed at once on every worker', async () => {
    const fresh = Array.from({ length: 20 }, (_, i) => session(20 + i));
    for (const s of fresh) {
      await register(s);
      // Right after the PUT answered: fresh connections, spread over both workers.
      const statuses = await Promise.all(Array.from({ length: 6 }, () => call(s)));
      expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
    }
    const deciders = new Set<number | undefined>();
    for (const s of fresh) for (const e of await eventsOf(s.id, 6)) deciders.add(e.worker);
    expect(deciders).toEqual(new Set([1, 2]));
  });

  it('after DELETE returns, no call of the session is allowed by any worker (kill switch)', async () => {
    const s = session(50);
    await register(s);
    const agents = Array.from({ length: 8 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    let deletedAt = Infinity;
    let stop = false;
    const results: { startedAt: number; status: number }[] = [];
    // 8 keep-alive connections and 8 loops of fresh connections, calling until told to stop.
    const loop = async (agent: http.Agent | false): Promise<void> => {
      for (let i = 0; i < 2_000 && !stop; i++) {
        const startedAt = performance.now();
        results.push({ startedAt, status: await call(s, agent) });
      }
    };
    const loops = [...agents.map((a) => loop(a)), ...agents.map(() => loop(false))];
    const deadline = Date.now() + 20_000;
    while (results.filter((r) => r.status === 200).length < 100 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    const del = await admin('DELETE', `/admin/sessions/${s.id}`);
    deletedAt = performance.now();
    expect(del.status).toBe(200);
    const afterCount = (): number => results.filter((r) => r.startedAt > deletedAt).length;
    while (afterCount() < 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    stop = true;
    await Promise.all(loops);
    for (const a of agents) a.destroy();

    const before = results.filter((r) => r.startedAt < deletedAt);
    const after = results.filter((r) => r.startedAt > deletedAt);
    expect(before.filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(100);
    expect(after.length).toBeGreaterThanOrEqual(200);
    expect(after.filter((r) => r.status === 200)).toEqual([]);
    expect(after.every((r) => r.status === 403 || r.status === 0)).toBe(true);
    // Both workers refused the session afterwards.
    const refused = (await eventsOf(s.id, 1)).filter((e) => e.reason === 'session_expired');
    expect(new Set(refused.map((e) => e.worker))).toEqual(new Set([1, 2]));
  });

  it('a killed worker is restarted and knows every session (and not the revoked one)', async () => {
    const kept = session(60);
    await register(kept);
    const [w1] = await workers();
    process.kill(w1!.pid!, 'SIGKILL');
    const deadline = Date.now() + 30_000;
    let back: WorkerStatus | undefined;
    while (Date.now() < deadline) {
      back = (await workers()).find((w) => w.id === 1 && w.ready && w.pid !== w1!.pid);
      if (back) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(back?.restarts).toBe(1);
    const seen = auditEvents().length;
    for (const s of [session(2), kept]) expect((await calls(s, 20)).every((x) => x === 200)).toBe(true);
    expect((await calls(session(50), 10)).some((x) => x === 200)).toBe(false);
    const deadline2 = Date.now() + 10_000;
    let later: AuditEvent[] = [];
    while (later.length < 50 && Date.now() < deadline2) {
      later = auditEvents().slice(seen);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(later).toHaveLength(50);
    const byRestarted = later.filter((e) => e.worker === 1);
    expect(byRestarted.some((e) => e.sessionId === kept.id && e.decision === 'allow')).toBe(true);
    expect(byRestarted.some((e) => e.sessionId === 's-w2' && e.decision === 'allow')).toBe(true);
  });

  it('both workers append whole lines to the one audit file under concurrent load', async () => {
    const s = session(70);
    await register(s);
    const agents = Array.from({ length: 32 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    await Promise.all(
      agents.map(async (a) => {
        for (let i = 0; i < 60; i++) expect(await call(s, a)).toBe(200);
      }),
    );
    for (const a of agents) a.destroy();
    // Stopping the gateway flushes every worker's audit file.
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const lines = readFileSync(auditFile, 'utf8').split('\n');
    expect(lines.pop()).toBe('');
    const events = lines.map((l) => JSON.parse(l) as AuditEvent);
    expect(events.every((e) => typeof e.time === 'string' && (e.worker === 1 || e.worker === 2))).toBe(true);
    const mine = events.filter((e) => e.sessionId === s.id);
    expect(mine).toHaveLength(32 * 60);
    expect(new Set(mine.map((e) => e.worker))).toEqual(new Set([1, 2]));
  });
});
