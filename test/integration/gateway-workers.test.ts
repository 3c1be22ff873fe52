/**
 * The multi-worker gateway (`gateway.workers: 2`, src/gateway/cluster.ts) as the gateway container
 * runs it: `node dist/cli/main.js gateway` with AIRLOCK_GATEWAY_CONFIG and AIRLOCK_ADMIN_TOKEN, a real
 * upstream and a real policy dir on loopback. Sessions are told apart by source address (127.0.0.x);
 * the admin API is called from 127.0.0.1, which no session uses. Needs `npm run build` (built when
 * dist/ lacks the worker entry point).
 *
 * The primary hands every connection of one source address (one session) to the same worker
 * (cluster.ts `pickWorker`), so the tests that need both workers use sessions whose addresses map to
 * different workers; per-session limits and budgets are checked to hold for the whole gateway.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { pickWorker } from '../../src/gateway/cluster.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { MemoryAuditSink } from '../../src/audit/file-sink.js';
import { ApprovalService } from '../../src/sessions/approvals.js';
import { startApprovalsServer } from '../../src/sessions/approvals-server.js';

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
let approvals: ApprovalService;
let approvalsServer: http.Server;

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
/** The worker (1 or 2) the primary hands the connections of `s` to while both run. */
const workerOf = (s: Session): number => pickWorker(s.address, [1, 2])!;
/** The first `count` sessions from number `from` on whose connections go to worker `w`. */
function sessionsOn(w: number, count: number, from: number): Session[] {
  const out: Session[] = [];
  for (let n = from; out.length < count && n < 255; n++) if (workerOf(session(n)) === w) out.push(session(n));
  return out;
}
/** Sessions served by worker 1 and by worker 2. */
const ON1 = sessionsOn(1, 1, 2)[0]!;
const ON2 = sessionsOn(2, 1, 2)[0]!;

/** A GET in absolute form with the session's credential. */
const getRequest = (s: Session): string =>
  `GET http://up.test:${upstreamPort}/ok HTTP/1.1\r\nHost: up.test:${upstreamPort}\r\n` +
  `Proxy-Authorization: Basic ${Buffer.from(`${s.id}:${s.cred}`).toString('base64')}\r\n\r\n`;

/** Sends `text` on a new connection from the session's address; everything the gateway answers until it closes. */
function rawExchange(s: Session, text: string): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port: proxyPort, localAddress: s.address });
    let got = '';
    c.on('data', (d: Buffer) => (got += d.toString('latin1')));
    c.on('error', () => undefined);
    c.on('close', () => resolve(got));
    c.setTimeout(10_000, () => c.destroy()); // bounded: a gateway that never answers fails the test
    c.write(text);
  });
}

/** Per-session limits of the gateway under test (gateway.limits). */
// connections: above any other test's peak from one session (16 fresh connections a batch, plus the
// previous batch's not yet seen closed), so only the limit test reaches it.
const LIMITS = { connections: 40, tunnels: 3 };

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
function call(
  s: Session,
  agent: http.Agent | false = false,
  opts: { host?: string; method?: string; body?: string } = {},
): Promise<number> {
  const host = `${opts.host ?? 'up.test'}:${upstreamPort}`;
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: proxyPort,
        localAddress: s.address,
        method: opts.method ?? 'GET',
        path: `http://${host}/ok`,
        headers: {
          host,
          'proxy-authorization': `Basic ${Buffer.from(`${s.id}:${s.cred}`).toString('base64')}`,
          ...(opts.body !== undefined ? { 'content-length': String(Buffer.byteLength(opts.body)) } : {}),
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
    req.end(opts.body);
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
  writeFileSync(
    path.join(policyDir, 'policy.csv'),
    [
      `p, worker, up.test:${upstreamPort}, /*, GET, allow`,
      `p, worker, up.test:${upstreamPort}, /, CONNECT, allow`,
      `p, worker, metered.test:${upstreamPort}, /*, GET, allow`,
      `p, worker, metered.test:${upstreamPort}, /*, POST, allow`,
      // Approvals (docs/approvals.md): claimed by the worker that serves the call.
      `p, worker, asked.test:${upstreamPort}, /*, GET, ask`,
      '',
    ].join('\n'),
  );
  // Budgets per role: shared by sessions served by different workers.
  writeFileSync(
    path.join(policyDir, 'budgets.yaml'),
    [
      'version: 1',
      'budgets:',
      '  - name: role-calls',
      '    role: worker',
      `    host: metered.test:${upstreamPort}`,
      '    methods: [GET]',
      '    per: role',
      '    requestsPerMinute: 6',
      '  - name: role-bytes',
      '    role: worker',
      `    host: metered.test:${upstreamPort}`,
      '    methods: [POST]',
      '    per: role',
      '    bytesOutPerHour: 100',
      '',
    ].join('\n'),
  );
  auditFile = path.join(dir, 'audit', 'audit.jsonl');
  const config = {
    port: 0,
    adminPort: 0,
    listenHost: '127.0.0.1',
    policyDir,
    auditFile,
    auditStdout: false,
    allowPrivateCidrs: ['127.0.0.0/8'],
    hostAliases: { 'up.test': '127.0.0.1', 'metered.test': '127.0.0.1', 'asked.test': '127.0.0.1' },
    workers: 2,
    limits: LIMITS,
    approvals: { url: 'http://airlock-control', socketPath: path.join(dir, 'control.sock') },
  };
  // The control plane's side of approvals, on the socket the workers claim through.
  approvals = new ApprovalService(
    { pendingSeconds: 600, defaultUses: 1, defaultTtlSeconds: 600, webhook: null },
    { lookup: () => ({ role: 'worker', creator: '' }) },
    new MemoryAuditSink(),
  );
  approvalsServer = await startApprovalsServer(approvals, TOKEN, {
    socketPath: path.join(dir, 'control.sock'),
  });
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
  approvals?.close();
  await new Promise<void>((r) => (approvalsServer ? approvalsServer.close(() => r()) : r()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('gateway with 2 workers', () => {
  it('starts two workers behind one proxy port and one admin API', async () => {
    const ws = await workers();
    expect(ws.map((w) => w.id)).toEqual([1, 2]);
    expect(ws.every((w) => w.ready && w.pid !== null)).toBe(true);
    expect(new Set(ws.map((w) => w.pid)).size).toBe(2);
  });

  it('decides requests in both workers, every call of one session in the same one (audit names the worker)', async () => {
    for (const s of [ON1, ON2]) {
      await register(s);
      const statuses = await calls(s, 50);
      expect(statuses.every((x) => x === 200)).toBe(true);
      const events = await eventsOf(s.id, 50);
      expect(events).toHaveLength(50);
      // 50 fresh connections, all handed to the session's worker.
      expect(new Set(events.map((e) => e.worker))).toEqual(new Set([workerOf(s)]));
      expect(events.every((e) => e.decision === 'allow' && e.policyVersion)).toBe(true);
    }
    expect(workerOf(ON1)).toBe(1);
    expect(workerOf(ON2)).toBe(2);
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
    for (const s of fresh) {
      const mine = await eventsOf(s.id, 6);
      expect(new Set(mine.map((e) => e.worker))).toEqual(new Set([workerOf(s)]));
      for (const e of mine) deciders.add(e.worker);
    }
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
    // The session's worker refused it afterwards (every worker was told before DELETE answered).
    const refused = (await eventsOf(s.id, 1)).filter((e) => e.reason === 'session_expired');
    expect(refused.length).toBeGreaterThan(0);
    expect(new Set(refused.map((e) => e.worker))).toEqual(new Set([workerOf(s)]));
  });

  it('a killed worker is restarted and knows every session (and not the revoked one)', async () => {
    const kept = sessionsOn(1, 1, 60)[0]!;
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
    for (const s of [ON1, kept]) expect((await calls(s, 20)).every((x) => x === 200)).toBe(true);
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
    expect(byRestarted.some((e) => e.sessionId === ON1.id && e.decision === 'allow')).toBe(true);
  });

  it('the per-session connection limit holds for the whole gateway, not per worker', async () => {
    const s = session(80);
    await register(s);
    // As many keep-alive connections as the limit allows, each used once and kept open.
    const agents = Array.from(
      { length: LIMITS.connections },
      () => new http.Agent({ keepAlive: true, maxSockets: 1 }),
    );
    expect(await Promise.all(agents.map((a) => call(s, a)))).toEqual(Array(LIMITS.connections).fill(200));
    // One more: refused, although split over two workers each would hold only half the limit.
    const over = await rawExchange(s, getRequest(s));
    expect(over).toMatch(/^HTTP\/1\.1 429 /);
    expect(over).toContain('"limit":"connections"');
    for (const a of agents) a.destroy();
    expect(new Set((await eventsOf(s.id, LIMITS.connections + 1)).map((e) => e.worker))).toEqual(
      new Set([workerOf(s)]),
    );
  });

  it('the per-session tunnel limit holds for the whole gateway, not per worker', async () => {
    const s = session(81);
    await register(s);
    const connect =
      `CONNECT up.test:${upstreamPort} HTTP/1.1\r\nHost: up.test:${upstreamPort}\r\n` +
      `Proxy-Authorization: Basic ${Buffer.from(`${s.id}:${s.cred}`).toString('base64')}\r\n\r\n`;
    const open: net.Socket[] = [];
    for (let i = 0; i < LIMITS.tunnels; i++) {
      const t = net.connect({ host: '127.0.0.1', port: proxyPort, localAddress: s.address });
      t.on('error', () => undefined);
      t.write(connect);
      const [data] = (await once(t, 'data')) as [Buffer];
      expect(data.toString()).toMatch(/^HTTP\/1\.1 200 /);
      open.push(t);
    }
    const over = await rawExchange(s, connect);
    expect(over).toMatch(/^HTTP\/1\.1 429 /);
    expect(over).toContain('"limit":"tunnels"');
    for (const t of open) t.destroy();
  });

  it("a role's request budget is counted once for all workers (sessions on different workers share it)", async () => {
    const [x] = sessionsOn(1, 1, 90);
    const [y] = sessionsOn(2, 1, 90);
    await register(x!);
    await register(y!);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      for (const s of [x!, y!]) statuses.push(await call(s, false, { host: 'metered.test' }));
    }
    // role-calls: 6 GET per minute for role worker, whichever worker served them.
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 429]);
    const over = (await eventsOf(y!.id, 4)).filter((e) => e.reason === 'budget_exceeded');
    expect(over).toHaveLength(1);
    expect((await eventsOf(x!.id, 4)).every((e) => e.worker === 1)).toBe(true);
    expect((await eventsOf(y!.id, 4)).every((e) => e.worker === 2)).toBe(true);
  });

  it("a role's bytes budget is counted once for all workers", async () => {
    const [x] = sessionsOn(1, 1, 100);
    const [y] = sessionsOn(2, 1, 100);
    await register(x!);
    await register(y!);
    const body = 'b'.repeat(60);
    // role-bytes: 100 request-body bytes per hour; 60 counted on worker 1, then 60 declared on worker 2.
    expect(await call(x!, false, { host: 'metered.test', method: 'POST', body })).toBe(200);
    expect(await call(y!, false, { host: 'metered.test', method: 'POST', body })).toBe(429);
    const [e] = (await eventsOf(y!.id, 1)).filter((ev) => ev.reason === 'budget_exceeded');
    expect(e).toMatchObject({ worker: 2, status: 429, method: 'POST' });
  });

  it('each worker claims approvals from the control plane with the shared token (ask rules)', async () => {
    for (const s of [ON1, ON2]) {
      await register(s);
      // Not 503 approval_unavailable: the worker reached the control plane and opened an approval.
      expect(await call(s, false, { host: 'asked.test' })).toBe(403);
      const [pending] = approvals.list({ status: 'pending', sessionId: s.id });
      expect(pending).toBeDefined();
      approvals.approve(pending!.id, 'lead', { reason: 'ok' });
      expect(await call(s, false, { host: 'asked.test' })).toBe(200);
      expect(await call(s, false, { host: 'asked.test' })).toBe(403); // used once
    }
  });

  it('both workers append whole lines to the one audit file under concurrent load', async () => {
    // Two sessions, one on each worker, 16 keep-alive connections each.
    const both = [sessionsOn(1, 1, 70)[0]!, sessionsOn(2, 1, 70)[0]!];
    for (const s of both) await register(s);
    const agents = Array.from({ length: 32 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    await Promise.all(
      agents.map(async (a, i) => {
        for (let n = 0; n < 60; n++) expect(await call(both[i % 2]!, a)).toBe(200);
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
    const mine = events.filter((e) => both.some((s) => s.id === e.sessionId));
    expect(mine).toHaveLength(32 * 60);
    expect(new Set(mine.map((e) => e.worker))).toEqual(new Set([1, 2]));
  });
});
