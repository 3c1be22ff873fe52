/**
 * materializePolicy (src/policy/live-dir.ts), issue 15: the EEXIST race seen in
 * test/e2e/policy-git.test.ts (two materialisations of one version in the same millisecond) — many
 * materialisations back to back, each leaving one whole policy behind `..data`; and the clean-up
 * leaves another process's fresh snapshot alone.
 */
import {
  lstatSync,
  lutimesSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { materializePolicy, VERSION_FILE } from '../../../src/policy/live-dir.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';

let dir: string;
beforeEach(() => {
  dir = path.join(mkdtempSync(path.join(tmpdir(), 'airlock-live-')), 'policy-live');
});
afterEach(() => rmSync(path.dirname(dir), { recursive: true, force: true }));

const snapshot = (n: number, version: string) =>
  compilePolicy(CANONICAL_MODEL, `p, r, a.test, /v${n}, GET, allow\n`, { version });

describe('materializePolicy', () => {
  it('500 materialisations back to back (same version, same millisecond): each one whole, one left', () => {
    const snaps = [snapshot(1, 'abc'), snapshot(2, 'abc'), snapshot(3, 'def')];
    // Every materialisation in the same millisecond (the case that failed with EEXIST when snapshot
    // dirs were named by the time): the clock is held still, not hoped to be fast enough.
    const now = vi.spyOn(Date, 'now').mockReturnValue(Date.now());
    try {
      for (let i = 0; i < 500; i++) {
        const s = snaps[i % snaps.length]!;
        materializePolicy(dir, s);
        // What a reader (the gateway's PolicyStore) sees right after: exactly this snapshot.
        expect(readFileSync(path.join(dir, 'policy.csv'), 'utf8')).toBe(s.source.policyText);
        expect(readFileSync(path.join(dir, VERSION_FILE), 'utf8')).toBe(`${s.version}\n`);
      }
    } finally {
      now.mockRestore();
    }
    const left = readdirSync(dir).filter((e) => e.startsWith('..'));
    const live = readlinkSync(path.join(dir, '..data'));
    expect(left.sort()).toEqual(['..data', live].sort());
    expect(live).toMatch(/^\.\.abc-/);
    expect(lstatSync(path.join(dir, live)).mode & 0o777).toBe(0o755);
  });

  it("another process's fresh snapshot and swap link stay; its stale ones go", () => {
    materializePolicy(dir, snapshot(1, 'abc'));
    const fresh = path.join(dir, '..other-aaaaaa');
    const stale = path.join(dir, '..other-bbbbbb');
    const staleLink = path.join(dir, '..data_tmp-1-deadbeef');
    const freshLink = path.join(dir, '..data_tmp-2-cafebabe');
    for (const d of [fresh, stale]) {
      mkdirSync(d);
      writeFileSync(path.join(d, 'policy.csv'), 'x');
    }
    symlinkSync('..other-aaaaaa', freshLink);
    symlinkSync('..other-bbbbbb', staleLink);
    const old = new Date(Date.now() - 5 * 60_000);
    utimesSync(stale, old, old);
    lutimesSync(staleLink, old, old);
    materializePolicy(dir, snapshot(2, 'abc'));
    const left = readdirSync(dir);
    expect(left).toContain('..other-aaaaaa');
    expect(left).toContain('..data_tmp-2-cafebabe');
    expect(left).not.toContain('..other-bbbbbb');
    expect(left).not.toContain('..data_tmp-1-deadbeef');
    expect(readFileSync(path.join(dir, 'policy.csv'), 'utf8')).toBe('p, r, a.test, /v2, GET, allow\n');
  });
});
