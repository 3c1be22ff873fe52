/** `airlock policy check` validates budgets.yaml with the rest of the policy directory (issue 13). */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { policyCheck } from '../../../src/cli/policy.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';

describe('airlock policy check with budgets.yaml', () => {
  let dir = '';
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('passes a valid budgets.yaml and fails an invalid one, naming file, line and field', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'airlock-budgets-check-'));
    writeFileSync(path.join(dir, 'model.conf'), CANONICAL_MODEL);
    writeFileSync(path.join(dir, 'policy.csv'), 'p, analyst, forum.test, /posts/*, GET, allow\n');
    const budgets = (rpm: number): string =>
      `version: 1\nbudgets:\n  - name: reads\n    role: analyst\n    host: forum.test\n    requestsPerMinute: ${rpm}\n`;
    writeFileSync(path.join(dir, 'budgets.yaml'), budgets(10));
    const out: string[] = [];
    const io = { out: (t: string) => void out.push(t), err: (t: string) => void out.push(t) };
    expect(await policyCheck(dir, {}, io)).toBe(0);
    writeFileSync(path.join(dir, 'budgets.yaml'), budgets(0));
    out.length = 0;
    expect(await policyCheck(dir, {}, io)).toBe(1);
    expect(out.join('')).toMatch(/budgets\.yaml:6.*budgets\.0\.requestsPerMinute/);
  });
});
