/**
 * Audit sink failure (issue 15, docs/security.md "Audit sink failure"): the gateway process
 * (`startGatewayService`) writing its audit file on a real filesystem that fails — a 64 KiB tmpfs
 * filled up (ENOSPC), and the audit directory replaced by a read-only bind mount (EROFS) — with
 * the default `audit.onFailure: deny`: calls are refused 503 `audit_unavailable` before any upstream
 * is contacted, `/readyz` is not ready with the reason, the metrics and a log line say so; when the
 * fault is gone the buffered events are written in order and calls pass again. `allow`: calls pass
 * during the fault. Loopback only; needs root for `mount` (the test mounts and unmounts itself).
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningGateway, startGatewayService } from '../../src/gateway/service.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { proxyRequest } from '../helpers/proxy-client.js';

const TOKEN = 'admin-token-0123456789';
const S = { id: 's-audit', cred: 'cred-audit-0123456789', address: '127.0.0.5' };
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

let upstream: http.Server;
let upstreamPort: number;
let upstreamHits = 0;
let root: string;
let policyDir: string;
const mounts: string[] = [];

function mount(...args: string[]): void {
  execFileSync('mount', args, { stdio: 'pipe' });
}
function umount(dir: string): void {
  execFileSync('umount', [dir], { stdio: 'pipe' });
  mounts.splice(mounts.lastIndexOf(dir), 1);
}

interface Started {
  gw: RunningGateway;
  logs: Array<Record<string, unknown>>;
  call(n: number): Promise<{ status: number; decision: unknown; body: Record<string, unknown> }>;
  admin(p: string): Promise<{ status: number; body: string }>;
}

async function start(auditFile: string, onFailure?: 'deny' | 'allow'): Promise<Started> {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n'))
        if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const gw = await startGatewayService(
    {
      port: 0,
      adminPort: 0,
      listenHost: '127.0.0.1',
      policyDir,
      auditFile,
      auditStdout: false,
      ...(onFailure ? { auditOnFailure: onFailure } : {}),
      hostAliases: { 'up.test': '127.0.0.1' },
      allowPrivateCidrs: ['127.0.0.0/8'],
    },
    TOKEN,
    pino({ level: 'info' }, sink),
  );
  gw.sessions.upsert({
    id: S.id,
    role: 'worker',
    address: S.address,
    credentialSha256: sha(S.cred),
    expiresAtMs: Date.now() + 3_600_000,
  });
  const proxy = { host: '127.0.0.1', port: gw.proxyPort };
  return {
    gw,
    logs,
    async call(n) {
      const res = await proxyRequest(proxy, `http://up.test:${upstreamPort}/r/${n}`, {
        auth: `${S.id}:${S.cred}`,
        localAddress: S.address,
      });
      return { status: res.status, decision: res.headers['x-airlock-decision'], body: res.json() };
    },
    admin: (p) =>
      new Promise((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: gw.adminPort, path: p }, (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          })
          .once('error', reject);
      }),
  };
}

async function until(what: string, check: () => Promise<boolean>, ms = 8_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The `/r/N` numbers of the audit file's events, in file order (every line must be whole JSON). */
function auditedCalls(file: string): Array<{ n: number; decision: string; reason: string }> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { path: string; decision: string; reason: string })
    .filter((e) => e.path?.startsWith('/r/'))
    .map((e) => ({ n: Number(e.path.slice(3)), decision: e.decision, reason: e.reason }));
}

const metric = (text: string, name: string): number => {
  const m = new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
};

beforeAll(async () => {
  upstream = http.createServer((_req, res) => {
    upstreamHits++;
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamPort = (upstream.address() as AddressInfo).port;
  root = mkdtempSync(path.join(tmpdir(), 'airlock-audit-fault-'));
  policyDir = path.join(root, 'policy');
  mkdirSync(policyDir);
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(path.join(policyDir, 'policy.csv'), `p, worker, up.test:${upstreamPort}, /*, GET, allow\n`);
});

afterAll(async () => {
  for (const dir of [...mounts].reverse()) {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
    } catch {
      // already gone
    }
  }
  await new Promise<void>((r) => upstream.close(() => r()));
  rmSync(root, { recursive: true, force: true });
});

describe('audit sink failure, audit.onFailure: deny (the default)', () => {
  it('disk full (a 64 KiB tmpfs): refused 503 audit_unavailable, /readyz 503, metric, log; recovers in order', async () => {
    const mnt = path.join(root, 'full');
    mkdirSync(mnt);
    mount('-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt);
    mounts.push(mnt);
    const auditFile = path.join(mnt, 'audit.jsonl');
    const g = await start(auditFile);
    try {
      let n = 0;
      expect((await g.call(n++)).status).toBe(200);
      expect((await g.admin('/readyz')).status).toBe(200);
      // Fill the filesystem.
      const filler = path.join(mnt, 'filler');
      const fd = openSync(filler, 'w');
      const block = Buffer.alloc(4096, 'x');
      try {
        for (;;) writeSync(fd, block);
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
      } finally {
        closeSync(fd);
      }
      // Calls pass while the audit file's last page has room; the first write that fails turns the
      // sink unhealthy, and from then on every call is refused before it is decided.
      const results: number[] = [];
      for (let i = 0; i < 60 && !results.includes(503); i++) {
        results.push((await g.call(n++)).status);
        await new Promise((r) => setTimeout(r, 20)); // the write of that turn's event
      }
      expect(results).toContain(503);
      const allowedDuringFill = results.filter((s) => s === 200).length;
      const hitsBefore = upstreamHits;
      for (let i = 0; i < 5; i++) {
        const r = await g.call(n++);
        expect(r.status).toBe(503);
        expect(r.decision).toBe('deny');
        expect(r.body.error).toBe('audit_unavailable');
        expect(r.body.sessionId).toBe(S.id);
      }
      expect(upstreamHits).toBe(hitsBefore);
      const ready = await g.admin('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body).toContain('ENOSPC');
      const metrics = (await g.admin('/metrics')).body;
      expect(metric(metrics, 'airlock_gateway_audit_healthy')).toBe(0);
      expect(
        metric(metrics, 'airlock_gateway_audit_write_errors_total{code="ENOSPC"}'),
      ).toBeGreaterThanOrEqual(1);
      expect(metric(metrics, 'airlock_gateway_audit_dropped_events_total')).toBe(0);
      expect(metric(metrics, 'airlock_gateway_audit_buffered_bytes')).toBeGreaterThan(0);
      expect(
        metric(
          metrics,
          'airlock_gateway_decisions_total{decision="deny",reason="audit_unavailable",role="worker"}',
        ),
      ).toBeGreaterThanOrEqual(5);
      const failed = g.logs.filter((l) => String(l.msg).startsWith('audit file cannot be written'));
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({ level: 50, code: 'ENOSPC', onFailure: 'deny' });

      // Space returns: the sink's retry writes the buffer, the gateway is ready and allows again.
      unlinkSync(filler);
      await until('/readyz 200', async () => (await g.admin('/readyz')).status === 200);
      const back = await g.call(n++);
      expect(back.status).toBe(200);
      expect(
        g.logs.filter((l) => l.msg === 'audit file writable again: buffered events written'),
      ).toHaveLength(1);
      expect(metric((await g.admin('/metrics')).body, 'airlock_gateway_audit_healthy')).toBe(1);
      await until('the last event in the file', async () => auditedCalls(auditFile).length === n);
      // Every call is in the file, whole, once, in the order it was made.
      const audited = auditedCalls(auditFile);
      expect(audited.map((e) => e.n)).toEqual([...Array(n).keys()]);
      expect(audited.filter((e) => e.decision === 'allow')).toHaveLength(allowedDuringFill + 2);
      expect(audited.filter((e) => e.reason === 'audit_unavailable')).toHaveLength(n - allowedDuringFill - 2);
    } finally {
      await g.gw.close();
      umount(mnt);
    }
  });

  it('the audit directory replaced by a read-only mount (EROFS): refused until it is writable again', async () => {
    const dir = path.join(root, 'ro');
    const empty = path.join(root, 'ro-empty');
    mkdirSync(dir);
    mkdirSync(empty);
    const auditFile = path.join(dir, 'audit.jsonl');
    const g = await start(auditFile);
    try {
      let n = 0;
      expect((await g.call(n++)).status).toBe(200);
      // The path now names nothing writable; the open descriptor would still write into the hidden
      // file, so the sink notices the swap (its periodic check) and reopens — which fails.
      mount('--bind', empty, dir);
      mounts.push(dir);
      mount('-o', 'remount,bind,ro', dir);
      await until('/readyz 503', async () => (await g.admin('/readyz')).status === 503);
      expect((await g.admin('/readyz')).body).toContain('EROFS');
      const hits = upstreamHits;
      const r = await g.call(n++);
      expect(r).toMatchObject({ status: 503, decision: 'deny', body: { error: 'audit_unavailable' } });
      expect(upstreamHits).toBe(hits);
      umount(dir);
      await until('/readyz 200', async () => (await g.admin('/readyz')).status === 200);
      expect((await g.call(n++)).status).toBe(200);
      await until('the last event in the file', async () => auditedCalls(auditFile).length === n);
      expect(auditedCalls(auditFile)).toMatchObject([
        { n: 0, decision: 'allow' },
        { n: 1, decision: 'deny', reason: 'audit_unavailable' },
        { n: 2, decision: 'allow' },
      ]);
    } finally {
      await g.gw.close();
    }
  });
});

describe('audit.onFailure: allow', () => {
  it('calls pass while the disk is full, /readyz stays ready, the events are written when space returns', async () => {
    const mnt = path.join(root, 'full-allow');
    mkdirSync(mnt);
    mount('-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt);
    mounts.push(mnt);
    const auditFile = path.join(mnt, 'audit.jsonl');
    const g = await start(auditFile, 'allow');
    try {
      const filler = path.join(mnt, 'filler');
      const fd = openSync(filler, 'w');
      try {
        for (;;) writeSync(fd, Buffer.alloc(4096, 'x'));
      } catch {
        // ENOSPC
      } finally {
        closeSync(fd);
      }
      let n = 0;
      for (; n < 20; n++) {
        expect((await g.call(n)).status).toBe(200);
        await new Promise((r) => setTimeout(r, 10));
      }
      const metrics = (await g.admin('/metrics')).body;
      expect(metric(metrics, 'airlock_gateway_audit_healthy')).toBe(0);
      expect((await g.admin('/readyz')).status).toBe(200);
      expect(g.logs.some((l) => String(l.msg).includes('calls still allowed'))).toBe(true);
      unlinkSync(filler);
      await until('the buffered events in the file', async () => auditedCalls(auditFile).length === n);
      expect(auditedCalls(auditFile).map((e) => e.n)).toEqual([...Array(n).keys()]);
    } finally {
      await g.gw.close();
      umount(mnt);
    }
  });
});
