/**
 * What a gateway may read for credentials (src/gateway/credentials.ts `fileRoot` and `envNames`, set
 * by the Docker runtime from `gateway.credentialsDir`/`gateway.credentialEnv`): a policy naming the
 * gateway's own files or variables (its CA key, its admin token) gets nothing, with a warning.
 */
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CredentialVault } from '../../../src/gateway/credentials.js';
import { parseCredentials } from '../../../src/policy/credentials.js';

let tmp: string;
let vault: CredentialVault | undefined;
beforeEach(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'airlock-vscope-'));
});
afterEach(() => {
  vault?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const yaml = (sources: Record<string, string>): string =>
  'version: 1\ncredentials:\n' +
  Object.entries(sources)
    .map(
      ([name, src]) =>
        `  - name: ${name}\n    roles: [r]\n    bindings: [{ host: ${name}.test }]\n    apply: { type: bearer }\n    source: ${src}\n`,
    )
    .join('');

describe('CredentialVault fileRoot and envNames', () => {
  it('reads files under the root and listed variables only, warning once for the rest', async () => {
    const root = path.join(tmp, 'creds');
    mkdirSync(root);
    writeFileSync(path.join(root, 'in'), 'inside-value-0123\n');
    writeFileSync(path.join(tmp, 'ca.key'), 'private-key-0123');
    symlinkSync(path.join(tmp, 'ca.key'), path.join(root, 'link'));
    const warnings: Array<{ obj: object; msg?: string }> = [];
    vault = new CredentialVault({
      env: { PASSED: 'env-value-0123', AIRLOCK_ADMIN_TOKEN: 'admin-token-0123' },
      fileRoot: root,
      envNames: ['PASSED'],
      pollIntervalMs: 0,
      logger: { info: () => {}, warn: (obj, msg) => warnings.push({ obj, ...(msg ? { msg } : {}) }) },
    });
    const set = parseCredentials(
      yaml({
        inside: `{ file: ${root}/in }`,
        outside: `{ file: ${tmp}/ca.key }`,
        dotdot: `{ file: ${root}/../ca.key }`,
        link: `{ file: ${root}/link }`,
        passed: '{ env: PASSED }',
        admin: '{ env: AIRLOCK_ADMIN_TOKEN }',
      }),
    );
    await vault.sync(set);
    const version = (name: string): string | null =>
      vault!.versionOf(set.definitions.find((d) => d.name === name)!);
    expect(version('inside')).not.toBeNull();
    expect(version('passed')).not.toBeNull();
    for (const name of ['outside', 'dotdot', 'link', 'admin']) expect(version(name), name).toBeNull();
    expect(warnings.filter((w) => /outside the credentials directory/.test(w.msg ?? ''))).toHaveLength(3);
    expect(warnings.filter((w) => /not passed to this gateway/.test(w.msg ?? ''))).toHaveLength(1);
    await vault.refresh();
    expect(warnings).toHaveLength(4); // once per source
    expect(JSON.stringify(warnings)).not.toMatch(/private-key|admin-token/);
  });

  it('without them reads any file and variable (a gateway on the host)', async () => {
    writeFileSync(path.join(tmp, 'v'), 'anywhere-value-0123');
    vault = new CredentialVault({ env: { ANY: 'env-value-0123' }, pollIntervalMs: 0 });
    const set = parseCredentials(yaml({ f: `{ file: ${tmp}/v }`, e: '{ env: ANY }' }));
    await vault.sync(set);
    for (const d of set.definitions) expect(vault.versionOf(d)).not.toBeNull();
  });
});
