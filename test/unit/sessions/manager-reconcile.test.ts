/**
 * SessionManager against what the runtime says (issue 15, dockerd restart): a sandbox that stopped
 * behind the control plane's back makes its session `stopped` and revoked at the gateway, and a
 * gateway resync in the middle of a create keeps the session being created. A runtime double stands
 * in for the engine (the e2e in test/e2e/faults.test.ts restarts the real one).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AuditIndex } from '../../../src/audit/index-reader.js';
import { parseConfig } from '../../../src/config/load.js';
import { SessionConflictError } from '../../../src/errors.js';
import type { GatewayControl } from '../../../src/gateway-wire/control.js';
import type { GatewaySession } from '../../../src/gateway-wire/session.js';
import type { PolicySource } from '../../../src/policy/types.js';
import type { ExecResult, SandboxInfo, SandboxRuntime, SandboxSpec } from '../../../src/runtime/types.js';
import { SessionManager } from '../../../src/sessions/manager.js';

class Runtime implements SandboxRuntime {
  readonly sandboxes = new Map<string, SandboxInfo>();
  readonly calls: string[] = [];
  readonly syncs: string[][] = [];
  instance = 'gw-1';
  listFails = false;
  /** Resolves `start` (set by a test that holds a create in the middle). */
  hold: Promise<void> | null = null;
  async ensureGateway(): Promise<GatewayControl> {
    return {
      status: async () => ({
        instanceId: this.instance,
        startedAt: new Date(0).toISOString(),
        policyVersion: 'v',
        policyError: null,
        sessions: 0,
      }),
      register: async (s: GatewaySession) => void this.calls.push(`register ${s.id}`),
      revoke: async (id: string) => (this.calls.push(`revoke ${id}`), 0),
      sync: async (all: readonly GatewaySession[]) => void this.syncs.push(all.map((s) => s.id)),
    };
  }
  async prepare(spec: SandboxSpec): Promise<SandboxInfo> {
    const { credential: _c, env: _e, ...rest } = spec;
    const info = { ...rest, address: `10.213.0.${3 + this.sandboxes.size * 8}`, running: false };
    this.sandboxes.set(spec.sessionId, info);
    return info;
  }
  async start(id: string): Promise<void> {
    if (this.hold) await this.hold;
    this.sandboxes.get(id)!.running = true;
  }
  async exec(): Promise<ExecResult> {
    return { exitCode: 0, stdout: '', stderr: '' };
  }
  async remove(id: string): Promise<void> {
    this.calls.push(`remove ${id}`);
    this.sandboxes.delete(id);
  }
  async list(): Promise<SandboxInfo[]> {
    if (this.listFails) throw new Error('connect ENOENT /var/run/docker.sock');
    return [...this.sandboxes.values()].map((s) => ({ ...s }));
  }
  async close(): Promise<void> {}
}

const policy = {
  current: () => ({ roles: new Set(['analyst']) }),
  lastError: () => null,
} as unknown as PolicySource;

async function manager(rt: Runtime): Promise<SessionManager> {
  const m = new SessionManager(
    parseConfig({ runtime: { selfTest: false } }, process.cwd()),
    rt,
    policy,
    {} as AuditIndex,
  );
  await m.start();
  return m;
}

describe('SessionManager: reconciled with the runtime', () => {
  beforeEach(
    () => void vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'] }),
  );
  afterEach(() => void vi.useRealTimers());

  it('a session whose sandbox stopped is listed `stopped`, revoked at the gateway, left out of resyncs', async () => {
    const rt = new Runtime();
    const m = await manager(rt);
    const a = (await m.create({ role: 'analyst' }, 't')).id;
    const b = (await m.create({ role: 'analyst' }, 't')).id;
    rt.sandboxes.get(a)!.running = false; // the engine restarted; the container did not come back
    await m.reconcile();
    expect(m.get(a).status).toBe('stopped');
    expect(m.get(b).status).toBe('running');
    expect(rt.calls).toContain(`revoke ${a}`);
    expect(rt.calls).not.toContain(`revoke ${b}`);
    await expect(m.exec(a, ['true'], 1000)).rejects.toBeInstanceOf(SessionConflictError);
    // The gateway restarts: the resync carries the running session only.
    rt.instance = 'gw-2';
    await vi.advanceTimersByTimeAsync(2_100);
    expect(rt.syncs.at(-1)).toEqual([b]);
    // DELETE still removes it.
    await m.remove(a);
    expect(m.list().map((s) => s.id)).toEqual([b]);
    m.stop();
  });

  it('a sandbox removed by hand counts as stopped; the watchdog finds it within 10 s', async () => {
    const rt = new Runtime();
    const m = await manager(rt);
    const a = (await m.create({ role: 'analyst' }, 't')).id;
    rt.sandboxes.delete(a);
    await vi.advanceTimersByTimeAsync(10_100);
    expect(m.get(a).status).toBe('stopped');
    m.stop();
  });

  it('while the runtime cannot list (engine down) nothing changes', async () => {
    const rt = new Runtime();
    const m = await manager(rt);
    const a = (await m.create({ role: 'analyst' }, 't')).id;
    rt.listFails = true;
    await m.reconcile();
    expect(m.get(a).status).toBe('running');
    expect(rt.calls).not.toContain(`revoke ${a}`);
    m.stop();
  });

  it('a gateway resync during a create keeps the session being created', async () => {
    const rt = new Runtime();
    const m = await manager(rt);
    let release!: () => void;
    rt.hold = new Promise<void>((r) => (release = r));
    const creating = m.create({ role: 'analyst' }, 't');
    await vi.advanceTimersByTimeAsync(0);
    const id = rt.calls.find((c) => c.startsWith('register '))!.slice('register '.length);
    rt.instance = 'gw-2'; // the gateway restarted while the sandbox was starting
    await vi.advanceTimersByTimeAsync(2_100);
    expect(rt.syncs.at(-1)).toEqual([id]);
    release();
    expect((await creating).status).toBe('running');
    // A reconcile that listed the sandbox before it started does not take it for stopped.
    await m.reconcile();
    expect(m.get(id).status).toBe('running');
    m.stop();
  });
});
