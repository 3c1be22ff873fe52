/**
 * SessionManager's cold create order (issue 12 item 3; docs/architecture.md "Session create"): a
 * runtime double whose gateway registration and start are held open by the test, so the order is
 * shown without Docker — registration while the sandbox starts only where the runtime says so
 * (`registerWhileStarting`), no answer before both are done, a failure of either undone only after
 * both settled; and a spare network's id (`reserveSessionId`) names the session.
 */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { AuditIndex } from '../../../src/audit/index-reader.js';
import { parseConfig } from '../../../src/config/load.js';
import type { GatewayControl } from '../../../src/gateway-wire/control.js';
import type { PolicySource } from '../../../src/policy/types.js';
import type { ExecResult, SandboxInfo, SandboxRuntime, SandboxSpec } from '../../../src/runtime/types.js';
import { SessionManager } from '../../../src/sessions/manager.js';

/** A promise the test settles. */
function deferred(): { promise: Promise<void>; resolve(): void; reject(e: Error): void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

class HeldRuntime implements SandboxRuntime {
  readonly calls: string[] = [];
  readonly sandboxes = new Set<string>();
  register = deferred();
  startDone = deferred();
  reserved: string[] = [];
  constructor(readonly registerWhileStarting: boolean) {}
  async ensureGateway(): Promise<GatewayControl> {
    return {
      status: async () => ({
        instanceId: 'i1',
        startedAt: new Date(0).toISOString(),
        policyVersion: 'v',
        policyError: null,
        sessions: 0,
      }),
      register: async (s) => {
        this.calls.push(`register ${s.id}`);
        await this.register.promise;
        this.calls.push(`registered ${s.id}`);
      },
      revoke: async (id) => (this.calls.push(`revoke ${id}`), 0),
      sync: async () => undefined,
    };
  }
  reserveSessionId(): string | null {
    return this.reserved.shift() ?? null;
  }
  async prepare(spec: SandboxSpec): Promise<SandboxInfo> {
    this.sandboxes.add(spec.sessionId);
    const { credential: _c, env: _e, ...rest } = spec;
    return { ...rest, address: '10.213.0.3', running: false };
  }
  async start(id: string): Promise<void> {
    this.calls.push(`start ${id}`);
    await this.startDone.promise;
    this.calls.push(`started ${id}`);
  }
  async exec(): Promise<ExecResult> {
    throw new Error('no exec: runtime.selfTest is off here');
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

async function manager(rt: HeldRuntime): Promise<SessionManager> {
  const cfg = parseConfig({ runtime: { selfTest: false } }, process.cwd());
  const m = new SessionManager(cfg, rt, policy, {} as AuditIndex, undefined, { registry: new Registry() });
  await m.start();
  m.stop();
  return m;
}

describe('SessionManager: cold create order', () => {
  it('registers first, then starts, where the runtime does not allow both at once', async () => {
    const rt = new HeldRuntime(false);
    const m = await manager(rt);
    const created = m.create({ role: 'analyst' }, 'tester');
    await tick();
    expect(rt.calls.map((c) => c.split(' ')[0])).toEqual(['register']);
    rt.register.resolve();
    rt.startDone.resolve();
    const view = await created;
    expect(rt.calls).toEqual([
      `register ${view.id}`,
      `registered ${view.id}`,
      `start ${view.id}`,
      `started ${view.id}`,
    ]);
  });

  it('registers while the sandbox starts where allowed, and answers only when both are done', async () => {
    const rt = new HeldRuntime(true);
    const m = await manager(rt);
    let answered = false;
    const created = m.create({ role: 'analyst' }, 'tester').then((v) => ((answered = true), v));
    await tick();
    expect(rt.calls.map((c) => c.split(' ')[0])).toEqual(['register', 'start']);
    rt.startDone.resolve();
    await tick();
    expect(answered).toBe(false); // started, not yet registered: no answer, not listed
    expect(m.list()).toEqual([]);
    rt.register.resolve();
    const view = await created;
    expect(view.status).toBe('running');
    expect(m.list().map((s) => s.id)).toEqual([view.id]);
  });

  it('a failed registration is undone only after the start settled: revoked, removed, not listed', async () => {
    const rt = new HeldRuntime(true);
    const m = await manager(rt);
    const created = m.create({ role: 'analyst' }, 'tester').catch((e: unknown) => e);
    await tick();
    rt.register.reject(new Error('gateway down'));
    await tick();
    expect(rt.calls.some((c) => c.startsWith('remove'))).toBe(false); // start still running
    rt.startDone.resolve();
    expect(((await created) as Error).message).toBe('gateway down');
    const id = rt.calls[0]!.split(' ')[1]!;
    expect(rt.calls.slice(-3)).toEqual([`started ${id}`, `revoke ${id}`, `remove ${id}`]);
    expect(rt.sandboxes.size).toBe(0);
    expect(m.list()).toEqual([]);
  });

  it('a failed start is undone after the registration settled: revoked, removed, not listed', async () => {
    const rt = new HeldRuntime(true);
    const m = await manager(rt);
    const created = m.create({ role: 'analyst' }, 'tester').catch((e: unknown) => e);
    await tick();
    rt.startDone.reject(new Error('engine failed'));
    await tick();
    expect(rt.calls.some((c) => c.startsWith('revoke'))).toBe(false); // registration still running
    rt.register.resolve();
    expect(((await created) as Error).message).toBe('engine failed');
    const id = rt.calls[0]!.split(' ')[1]!;
    expect(rt.calls.slice(-2)).toEqual([`revoke ${id}`, `remove ${id}`]);
    expect(rt.sandboxes.size).toBe(0);
    expect(m.list()).toEqual([]);
  });

  it('a spare network’s id names the session; without one a new id is made', async () => {
    const rt = new HeldRuntime(true);
    rt.register.resolve();
    rt.startDone.resolve();
    rt.reserved = ['s-00000000000000aa'];
    const m = await manager(rt);
    expect((await m.create({ role: 'analyst' }, 'tester')).id).toBe('s-00000000000000aa');
    const other = await m.create({ role: 'analyst' }, 'tester');
    expect(other.id).toMatch(/^s-[0-9a-f]{16}$/);
    expect(other.id).not.toBe('s-00000000000000aa');
  });
});
