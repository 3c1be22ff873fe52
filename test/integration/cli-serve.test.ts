/** `airlock serve` refuses bad config before touching anything, naming the key and exiting non-zero. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { airlock } from '../helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'airlock-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function config(name: string, text: string): string {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
}

describe('airlock serve with invalid config', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['unknown key', 'gateway:\n  prot: 3128\n', /unknown key "gateway\.prot"/],
    ['wrong type', 'gateway:\n  port: high\n', /gateway\.port/],
    ['bad CIDR', 'gateway:\n  allowPrivateCidrs: ["10.0.0.0/99"]\n', /gateway\.allowPrivateCidrs\.0/],
    ['bad runtime kind', 'runtime:\n  kind: podman\n', /runtime\.kind/],
    ['YAML syntax', 'gateway: [\n', /YAML syntax error/],
  ];
  for (const [name, text, message] of cases) {
    it(`${name}: exit 2 naming the key`, async () => {
      const r = await airlock(['serve', '--config', config(`${name.replace(/\W/g, '-')}.yaml`, text)]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/config error/);
      expect(r.stderr).toMatch(message);
    });
  }
  it('a missing config file: exit 2', async () => {
    const r = await airlock(['serve', '--config', path.join(dir, 'nope.yaml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read config file/);
  });
  it('client commands without a token say how to get one', async () => {
    const r = await airlock(['sessions', 'ls', '--api', 'http://127.0.0.1:9'], { AIRLOCK_API_TOKEN: '' });
    expect(r.code).not.toBe(0);
  });
});
