/**
 * SessionManager with the isolation self-test (runtime.selfTest): a runtime double whose exec answers
 * the probe script, so the manager's handling of pass, fail and error is shown without Docker.
 */
import { Registry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import type { AuditIndex } from '../../../src/audit/index-reader.js';
import { parseConfig } from '../../../src/config/load.js';
import { IsolationFailedError } from '../../../src/errors.js';
import type { GatewayControl } from '../../../src/gateway-wire/control.js';
import type { PolicySource } from '../../../src/policy/types.js';
import type {
  ExecResult,
  IsolationTargets,
  SandboxInfo,
  SandboxRuntime,
  SandboxSpec,
} from '../../../src/runtime/types.js';
import { SessionManager } from '../../../src/sessions/manager.js';

/** Which probe kinds "connect" inside the fake sandbox. */
type Reach = (host: string, port: number) => boolean;

class FakeRuntime implements SandboxRuntime {
  readonly calls: string[] = [];
  readonly sandboxes = new Set<string>();
  execs = 0;
  constructor(
    private readonly reach: Reach,
    readonly withTargets = true,
  ) {
    if (!withTargets) (this as { isolationTargets?: unknown }).isolationTargets = undefined;
  }
  async ensureGateway(): Promise<GatewayControl> {
    const calls = this.calls;
    return {
      status: async () => ({
        instanceId: 'i1',
        startedAt: new Date(0).toISOString(),
        policyVersion: 'v',
        policyError: null,
        sessions: 0,
      }),
      register: async (s) => void calls.push(`register ${s.id}`),
      revoke: async (id) => (calls.push(`revoke ${id}`), 0),
      sync: async () => undefined,
    };
  }
  async prepare(spec: SandboxSpec): Promise<SandboxInfo> {
    this.sandboxes.add(spec.sessionId);
    const { credential: _c, env: _e, ...rest } = spec;
    return { ...rest, address: '10.213.0.3', running: false };
  }
  async start(id: string): Promise<void> {
    this.calls.push(`start ${id}`);
  }
  async exec(_id: string, command: string[]): Promise<ExecResult> {
    this.execs++;
    const lines: string[] = [];
    for (const m of (command[2] ?? '').matchAll(/^probe (p\d+) (\S+) (\d+) (\S+)/gm)) {
      const open = this.reach(m[2]!, Number(m[3]));
      lines.push(`${m[1]} ${open ? 'open' : 'closed'}`);
      if (open && m[4] === 'http') lines.push(`${m[1]} answer HTTP/1.1 403 Forbidden`);
    }
    return { exitCode: 0, stdout: [...lines, 'done', ''].join('\n'), stderr: '' };
  }
  async isolationTargets(): Promise<IsolationTargets> {
    return {
      gateway: { host: '10.213.0.2', port: 3128 },
      admin: [{ host: '10.213.0.2', port: 9090 }],
      otherNetworks: [{ name: 'gateway on airlock-egress', host: '10.214.0.2', port: 3128 }],
    };
  }
  async remove(id: string): Promise<void> {
    this.calls.push(`remove ${id}`);
    this.sandboxes.delete(id);
  }
  async list(): Promise<SandboxInfo[]> {
    return [];
  }
  async close(): Promise<void> {}
}

const policy = {
  current: () => ({ roles: new Set(['analyst']) }),
  lastError: () => null,
} as unknown as PolicySource;
const auditIndex = {} as AuditIndex;

async function manager(
  runtime: FakeRuntime,
  selfTest = true,
): Promise<{ m: SessionManager; registry: Registry }> {
  const cfg = parseConfig({ runtime: { selfTest } }, process.cwd());
  const registry = new Registry();
  const m = new SessionManager(cfg, runtime, policy, auditIndex, undefined, { registry });
  await m.start();
  m.stop();
  return { m, registry };
}

const gatewayOnly: Reach = (host) => host === '10.213.0.2';

describe('SessionManager: isolation self-test', () => {
  it('is on by default (runtime.selfTest: true)', () => {
    expect(parseConfig({}, process.cwd()).runtime.selfTest).toBe(true);
  });

  it('runs after start and before the session is reported running; a pass is counted', async () => {
    const rt = new FakeRuntime(gatewayOnly);
    const { m, registry } = await manager(rt);
    const view = await m.create({ role: 'analyst' }, 'tester');
    expect(view.status).toBe('running');
    expect(rt.execs).toBe(1);
    expect(rt.calls).toEqual([`register ${view.id}`, `start ${view.id}`]);
    expect(await registry.metrics()).toContain('airlock_isolation_selftest_total{result="pass"} 1');
  });

  it('refuses the session when a forbidden target connects: revoked, removed, not listed, counted', async () => {
    const rt = new FakeRuntime((host) => host === '10.213.0.2' || host === '10.214.0.2');
    const { m, registry } = await manager(rt);
    const err = await m.create({ role: 'analyst' }, 'tester').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IsolationFailedError);
    const e = err as IsolationFailedError;
    expect(e.code).toBe('AIRLOCK_ISOLATION_FAILED');
    expect(e.findings).toEqual(['gateway on airlock-egress 10.214.0.2:3128 reachable from the sandbox']);
    expect(e.message).toMatch(
      /^isolation self-test failed for session s-[0-9a-f]{16}, which was not started/,
    );
    expect(rt.calls).toEqual([
      `register ${e.sessionId}`,
      `start ${e.sessionId}`,
      `revoke ${e.sessionId}`,
      `remove ${e.sessionId}`,
    ]);
    expect(rt.sandboxes.size).toBe(0);
    expect(m.list()).toEqual([]);
    const text = await registry.metrics();
    expect(text).toContain('airlock_isolation_selftest_total{result="fail"} 1');
    expect(text).toContain('airlock_isolation_selftest_total{result="pass"} 0');
  });

  it('refuses the session when isolation cannot be shown (gateway not reachable from the sandbox)', async () => {
    const rt = new FakeRuntime(() => false);
    const { m, registry } = await manager(rt);
    await expect(m.create({ role: 'analyst' }, 'tester')).rejects.toThrow(
      /gateway proxy 10\.213\.0\.2:3128 not reachable/,
    );
    expect(rt.sandboxes.size).toBe(0);
    expect(await registry.metrics()).toContain('airlock_isolation_selftest_total{result="error"} 1');
  });

  it('does not run with runtime.selfTest: false', async () => {
    const rt = new FakeRuntime(() => true);
    const { m } = await manager(rt, false);
    expect((await m.create({ role: 'analyst' }, 'tester')).status).toBe('running');
    expect(rt.execs).toBe(0);
  });

  it('starts sessions untested on a runtime that cannot self-test', async () => {
    const rt = new FakeRuntime(() => true, false);
    expect(rt.isolationTargets).toBeUndefined();
    const { m } = await manager(rt);
    expect((await m.create({ role: 'analyst' }, 'tester')).status).toBe('running');
    expect(rt.execs).toBe(0);
  });
});

describe('SessionManager: TTL on a monotonic clock', () => {
  it('removes an expired sandbox on time even when the wall clock is set back (or forward)', async () => {
    vi.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'],
    });
    try {
      for (const jumpMs of [-3_600_000, 3_600_000]) {
        const rt = new FakeRuntime(gatewayOnly);
        const { m } = await manager(rt, false);
        const view = await m.create({ role: 'analyst', ttlSeconds: 10 }, 'tester');
        vi.setSystemTime(Date.now() + jumpMs); // someone sets the clock back (or forward) an hour
        await vi.advanceTimersByTimeAsync(9_000);
        expect(rt.calls).not.toContain(`remove ${view.id}`); // not early
        await vi.advanceTimersByTimeAsync(1_100);
        expect(rt.calls, `jump ${jumpMs} ms`).toContain(`remove ${view.id}`); // and not late
        m.stop();
      }
    } finally {
      vi.useRealTimers();
    }
  });
});
