/**
 * PolicyStore without the watcher (explicit reloads): fail closed, keep the last good policy on a
 * bad edit, and never expose anything but a whole old or whole new snapshot to concurrent decisions.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import { PolicyStore } from '../../../src/policy/store.js';
import type { PolicyRequest, PolicySnapshot } from '../../../src/policy/types.js';

const fixtures = fileURLToPath(new URL('../../fixtures/policies/', import.meta.url));

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-store-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writePolicy(csv: string, tests?: string): Promise<void> {
  await writeFile(path.join(dir, 'model.conf'), CANONICAL_MODEL);
  await writeFile(path.join(dir, 'policy.csv'), csv);
  if (tests !== undefined) {
    await mkdir(path.join(dir, 'tests'), { recursive: true });
    await writeFile(path.join(dir, 'tests', 'cases.yaml'), tests);
  }
}

const GOOD = 'p, r, a.test, /*, GET, allow\n';
const get: PolicyRequest = { role: 'r', host: 'a.test', path: '/x', method: 'GET' };

function quietLogger() {
  const lines: { level: string; obj: object; msg?: string }[] = [];
  const log = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, msg });
  return { lines, info: log('info'), warn: log('warn'), error: log('error') };
}

describe('PolicyStore', () => {
  it('loads at open and reports no error', async () => {
    await writePolicy(GOOD);
    const store = await PolicyStore.open(dir, { watch: false, pollIntervalMs: 0 });
    expect(store.current()?.decide(get).allowed).toBe(true);
    expect(store.lastError()).toBeNull();
    await store.close();
  });

  it('fails closed when the first load fails: no snapshot, the error recorded', async () => {
    const logger = quietLogger();
    const store = await PolicyStore.open(`${fixtures}unknown-effect`, {
      watch: false,
      pollIntervalMs: 0,
      logger,
    });
    expect(store.current()).toBeNull();
    expect(store.lastError()).toMatch(/^policy\.csv:3: unknown effect "permit"/);
    expect(logger.lines.some((l) => l.level === 'error' && /every call is denied/.test(l.msg ?? ''))).toBe(
      true,
    );
    await store.close();
  });

  it('fails closed for a missing directory', async () => {
    const store = await PolicyStore.open(path.join(dir, 'nope'), { watch: false, pollIntervalMs: 0 });
    expect(store.current()).toBeNull();
    expect(store.lastError()).toMatch(/^model\.conf: file is missing/);
    await store.close();
  });

  it('fails closed when the policy’s own tests fail', async () => {
    const store = await PolicyStore.open(`${fixtures}failing-tests`, { watch: false, pollIntervalMs: 0 });
    expect(store.current()).toBeNull();
    expect(store.lastError()).toMatch(/1 of 2 policy test cases failed:\ntests\/reader\.yaml:7 case 1/);
    await store.close();
  });

  it('keeps the last good snapshot on an invalid edit, and recovers when it is fixed', async () => {
    await writePolicy(GOOD);
    const changes: [string, string | null][] = [];
    const store = await PolicyStore.open(dir, {
      watch: false,
      pollIntervalMs: 0,
      logger: quietLogger(),
      onChange: (next, prev) => changes.push([next.version, prev?.version ?? null]),
    });
    const good = store.current();
    expect(changes).toEqual([[good?.version, null]]);

    await writePolicy('p, r, a.test, /*, GET, permit\n');
    expect(await store.reload()).toEqual({
      changed: false,
      version: good?.version,
      error: store.lastError(),
    });
    expect(store.current()).toBe(good);
    expect(store.lastError()).toMatch(/policy\.csv:1: unknown effect/);

    await writePolicy(GOOD + 'p, r, a.test, /x, GET, deny\n');
    const r = await store.reload();
    expect(r.changed).toBe(true);
    expect(r.error).toBeNull();
    expect(store.lastError()).toBeNull();
    expect(store.current()?.decide(get).allowed).toBe(false);
    expect(changes).toHaveLength(2);
    expect(changes[1]?.[1]).toBe(good?.version);
    await store.close();
  });

  it('keeps the last good snapshot when an edit breaks the policy tests or the test files', async () => {
    const test = (expect: string) =>
      `cases:\n  - role: r\n    method: GET\n    url: https://a.test/x\n    expect: ${expect}\n`;
    await writePolicy(GOOD, test('allow'));
    const store = await PolicyStore.open(dir, { watch: false, pollIntervalMs: 0, logger: quietLogger() });
    const good = store.current();
    expect(good).not.toBeNull();

    await writePolicy('p, r, a.test, /y, GET, allow\n');
    await store.reload();
    expect(store.current()).toBe(good);
    expect(store.lastError()).toMatch(/policy test case failed/);

    await writePolicy(GOOD, 'cases:\n  - role: r\n');
    await store.reload();
    expect(store.current()).toBe(good);
    expect(store.lastError()).toMatch(/tests\/cases\.yaml:2: case 0/);
    await store.close();
  });

  it('reports a reload of identical files as unchanged', async () => {
    await writePolicy(GOOD);
    let calls = 0;
    const store = await PolicyStore.open(dir, { watch: false, pollIntervalMs: 0, onChange: () => calls++ });
    const r = await store.reload();
    expect(r).toEqual({ changed: false, version: store.current()?.version, error: null });
    expect(calls).toBe(1);
    await store.close();
  });

  it('concurrent decisions during 1,000 alternating reloads always see the old or the new policy', async () => {
    // Both versions deny /secret through an inherited deny (the role link matters: Casbin's in-place
    // loadPolicy could briefly hold rules without links and skip it). A allows /a only, B /b only.
    const base = 'g, r, base\np, base, a.test, /secret, *, deny\np, r, a.test, /secret, GET, allow\n';
    const A = base + 'p, r, a.test, /a, GET, allow\n';
    const B = base + 'p, r, a.test, /b, GET, allow\n';
    await writePolicy(A);
    const store = await PolicyStore.open(dir, { watch: false, pollIntervalMs: 0 });
    const mk = (p: string): PolicyRequest => ({ role: 'r', host: 'a.test', path: p, method: 'GET' });
    const secret = mk('/secret');
    const a = mk('/a');
    const b = mk('/b');

    let done = false;
    let decisions = 0;
    const seen = new Set<PolicySnapshot>();
    const problems: string[] = [];
    const decider = new Promise<void>((resolve) => {
      const tick = () => {
        for (let i = 0; i < 20; i++) {
          const s = store.current();
          if (s === null) {
            problems.push('no snapshot');
            continue;
          }
          seen.add(s);
          const ds = s.decide(secret);
          const da = s.decide(a);
          const db = s.decide(b);
          decisions++;
          if (ds.allowed || ds.reason !== 'rule_deny') problems.push(`secret: ${JSON.stringify(ds)}`);
          if (da.allowed === db.allowed) problems.push(`a=${da.allowed} b=${db.allowed}`);
        }
        if (done) resolve();
        else setImmediate(tick);
      };
      setImmediate(tick);
    });

    const versions = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      await writeFile(path.join(dir, 'policy.csv'), i % 2 ? A : B);
      const r = await store.reload();
      expect(r.error).toBeNull();
      versions.add(r.version as string);
    }
    done = true;
    await decider;
    await store.close();

    expect(versions.size).toBe(2);
    expect(problems.slice(0, 5)).toEqual([]);
    expect(decisions).toBeGreaterThan(1000);
    expect(seen.size).toBeGreaterThan(100);
  }, 60_000);
});
