/**
 * PolicyStore watching a real directory: in-place writes, editors' rename-writes, Kubernetes
 * ConfigMap-style `..data` symlink swaps, tests/ edits, and the polling fallback. No fixed sleeps:
 * every wait polls a condition with a deadline.
 */
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore, type ReloadResult } from '../../src/policy/store.js';
import type { PolicyRequest } from '../../src/policy/types.js';

let dir: string;
let store: PolicyStore | undefined;
let attempts: ReloadResult[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-watch-'));
  attempts = [];
});
afterEach(async () => {
  await store?.close();
  store = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const req = (p: string): PolicyRequest => ({ role: 'r', host: 'a.test', path: p, method: 'GET' });
const allows = (p: string): boolean => store?.current()?.decide(req(p)).allowed ?? false;
const csv = (...paths: string[]) => paths.map((p) => `p, r, a.test, ${p}, GET, allow`).join('\n') + '\n';
const testFile = (p: string, expect: 'allow' | 'deny') =>
  `cases:\n  - role: r\n    method: GET\n    url: https://a.test${p}\n    expect: ${expect}\n`;

const quiet = { info() {}, warn() {}, error() {} };

describe('PolicyStore watching a plain directory', () => {
  beforeEach(async () => {
    await writeFile(path.join(dir, 'model.conf'), CANONICAL_MODEL);
    await writeFile(path.join(dir, 'policy.csv'), csv('/one'));
    store = await PolicyStore.open(dir, {
      debounceMs: 30,
      pollIntervalMs: 0,
      logger: quiet,
      onReload: (r) => attempts.push(r),
    });
    expect(allows('/one')).toBe(true);
  });

  it('reloads after an in-place write', async () => {
    await writeFile(path.join(dir, 'policy.csv'), csv('/two'));
    await until('the new policy', () => allows('/two'));
    expect(allows('/one')).toBe(false);
  });

  it('reloads after an editor-style rename-write (write temp file, rename over)', async () => {
    const tmp = path.join(dir, '.policy.csv.swp');
    await writeFile(tmp, csv('/three'));
    await rename(tmp, path.join(dir, 'policy.csv'));
    await until('the renamed policy', () => allows('/three'));
    // And again: the watcher survives the replaced inode.
    await writeFile(tmp, csv('/four'));
    await rename(tmp, path.join(dir, 'policy.csv'));
    await until('the second renamed policy', () => allows('/four'));
  });

  it('keeps the last good policy on a broken edit and reports it, then recovers', async () => {
    const before = store?.current();
    await writeFile(path.join(dir, 'policy.csv'), 'p, r, a.test, /x, GET, permit\n');
    await until('the error', () => /unknown effect/.test(store?.lastError() ?? ''));
    expect(store?.current()).toBe(before);
    await writeFile(path.join(dir, 'policy.csv'), csv('/fixed'));
    await until('recovery', () => allows('/fixed') && store?.lastError() === null);
  });

  it('runs tests/ on reload and notices edits inside tests/', async () => {
    await mkdir(path.join(dir, 'tests'));
    await writeFile(path.join(dir, 'tests', 'a.yaml'), testFile('/one', 'allow'));
    await until('a reload that sees tests/', () => attempts.length >= 2); // the first was open()'s
    // A failing test edited into tests/ (the directory itself does not change) is noticed...
    await writeFile(path.join(dir, 'tests', 'a.yaml'), testFile('/one', 'deny'));
    await until('the test failure', () => /policy test case failed/.test(store?.lastError() ?? ''));
    // ...and a policy change that the tests reject is not applied.
    const n = attempts.length;
    await writeFile(path.join(dir, 'policy.csv'), csv('/one', '/extra'));
    await until('a reload attempt', () => attempts.length > n);
    expect(store?.lastError()).toMatch(/policy test case failed/);
    expect(allows('/extra')).toBe(false);
    await writeFile(path.join(dir, 'tests', 'a.yaml'), testFile('/one', 'allow'));
    await until('recovery', () => allows('/extra') && store?.lastError() === null);
  });
});

describe('PolicyStore watching a ConfigMap-style directory', () => {
  /** Writes a new timestamped data dir and swaps `..data` to it atomically, as the kubelet does. */
  async function publish(n: number, files: Record<string, string>): Promise<void> {
    const data = path.join(dir, `..2026_01_01_00_00_0${n}`);
    await mkdir(path.join(data, 'tests'), { recursive: true });
    for (const [name, text] of Object.entries(files)) await writeFile(path.join(data, name), text);
    await symlink(path.basename(data), path.join(dir, '..data_tmp'));
    await rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  }

  beforeEach(async () => {
    await publish(1, {
      'model.conf': CANONICAL_MODEL,
      'policy.csv': csv('/v1'),
      'tests/a.yaml': testFile('/v1', 'allow'),
    });
    for (const name of ['model.conf', 'policy.csv', 'tests']) {
      await symlink(path.join('..data', name), path.join(dir, name));
    }
    store = await PolicyStore.open(dir, { debounceMs: 30, pollIntervalMs: 0, logger: quiet });
    expect(allows('/v1')).toBe(true);
  });

  it('reloads when ..data is swapped, and keeps following later swaps', async () => {
    await publish(2, {
      'model.conf': CANONICAL_MODEL,
      'policy.csv': csv('/v2'),
      'tests/a.yaml': testFile('/v2', 'allow'),
    });
    await until('the swapped policy', () => allows('/v2'));
    expect(allows('/v1')).toBe(false);
    await rm(path.join(dir, '..2026_01_01_00_00_01'), { recursive: true });

    // A swap whose tests reject its policy keeps v2 in force.
    await publish(3, {
      'model.conf': CANONICAL_MODEL,
      'policy.csv': csv('/v3'),
      'tests/a.yaml': testFile('/v3', 'deny'),
    });
    await until('the rejection', () => /policy test case failed/.test(store?.lastError() ?? ''));
    expect(allows('/v2')).toBe(true);

    await publish(4, {
      'model.conf': CANONICAL_MODEL,
      'policy.csv': csv('/v4'),
      'tests/a.yaml': testFile('/v4', 'allow'),
    });
    await until('the next swap', () => allows('/v4') && store?.lastError() === null);
  });
});

describe('PolicyStore polling fallback', () => {
  it('picks up changes without fs.watch', async () => {
    await writeFile(path.join(dir, 'model.conf'), CANONICAL_MODEL);
    await writeFile(path.join(dir, 'policy.csv'), csv('/one'));
    store = await PolicyStore.open(dir, { watch: false, pollIntervalMs: 50, logger: quiet });
    await writeFile(path.join(dir, 'policy.csv'), csv('/polled'));
    await until('the polled policy', () => allows('/polled'));
  });

  it('starts denying-everything on a missing directory and loads it once it appears', async () => {
    const later = path.join(dir, 'later');
    store = await PolicyStore.open(later, { pollIntervalMs: 50, debounceMs: 30, logger: quiet });
    expect(store.current()).toBeNull();
    await mkdir(later);
    await writeFile(path.join(later, 'model.conf'), CANONICAL_MODEL);
    await writeFile(path.join(later, 'policy.csv'), csv('/late'));
    await until('the late policy', () => allows('/late') && store?.lastError() === null);
  });
});
