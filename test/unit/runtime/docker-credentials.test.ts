/**
 * Credential values for the Docker runtime's gateway container (src/runtime/docker/credentials.ts,
 * `gatewayContainerSpec` in src/runtime/docker/runtime.ts): the container spec without an engine —
 * the read-only bind of `gateway.credentialsDir`, the variables of `gateway.credentialEnv`, the
 * gateway's read restrictions in AIRLOCK_GATEWAY_CONFIG, and a config hash that changes with them
 * but never holds a value. Plus the config keys, the host path mapping and the permission check.
 */
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { GATEWAY_CREDENTIALS_DIR, type Config } from '../../../src/config/schema.js';
import { ConfigError } from '../../../src/errors.js';
import { gatewayServiceSchema } from '../../../src/gateway-wire/config.js';
import { valueVersion } from '../../../src/policy/credentials.js';
import {
  credentialsDirWarnings,
  dockerCredentialVersions,
  gatewayCredentialMounts,
  hostCredentialPath,
} from '../../../src/runtime/docker/credentials.js';
import { gatewayContainerSpec } from '../../../src/runtime/docker/runtime.js';

const SECRET = 'search-key-0123456789abcdef';
let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'airlock-dcred-'));
});
afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

const config = (gateway: Record<string, unknown> = {}): Config =>
  parseConfig({ gateway, policy: { dir: 'policies' } }, tmp);

function spec(cfg: Config, env: NodeJS.ProcessEnv) {
  const creds = gatewayCredentialMounts(cfg, env);
  return gatewayContainerSpec({
    cfg,
    imageId: 'sha256:img',
    serviceConfig: { policyDir: '/etc/airlock/policies', auditFile: '/a/audit.jsonl', ...creds.service },
    token: 'admin-token-0123456789',
    user: '10002:10002',
    auditDir: path.join(tmp, 'audit'),
    caCert: null,
    credentials: creds,
  });
}

describe('gateway.credentialsDir and gateway.credentialEnv (config)', () => {
  it('resolves the directory against the config file and defaults the list to []', () => {
    const cfg = config({ credentialsDir: 'creds', credentialEnv: ['SEARCH_KEY'] });
    expect(cfg.gateway.credentialsDir).toBe(path.join(tmp, 'creds'));
    expect(cfg.gateway.credentialEnv).toEqual(['SEARCH_KEY']);
    expect(config().gateway.credentialEnv).toEqual([]);
    expect(config().gateway.credentialsDir).toBeUndefined();
  });

  it("refuses the gateway's own variables, bad names, duplicates, and directories a bind cannot name", () => {
    const bad = (gateway: Record<string, unknown>, field: RegExp): void => {
      let err: unknown;
      try {
        config(gateway);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(field);
    };
    bad({ credentialEnv: ['AIRLOCK_ADMIN_TOKEN'] }, /gateway\.credentialEnv\.0: .*gateway process's own/);
    bad({ credentialEnv: ['AIRLOCK_GATEWAY_CONFIG'] }, /gateway\.credentialEnv\.0/);
    bad({ credentialEnv: ['NODE_OPTIONS'] }, /gateway\.credentialEnv\.0/);
    bad({ credentialEnv: ['PATH'] }, /gateway\.credentialEnv\.0/);
    bad({ credentialEnv: ['A-B'] }, /expected an environment variable name/);
    bad({ credentialEnv: ['A', 'A'] }, /listed twice/);
    bad({ credentialsDir: '/srv/a:b' }, /gateway\.credentialsDir: .*":"/);
    bad({ credentialsDirs: '/x' }, /unknown key "gateway\.credentialsDirs"/);
  });
});

describe('the gateway container spec', () => {
  it('binds the directory read-only at the fixed path and passes the listed variables by name', () => {
    const cfg = config({ credentialsDir: '/srv/airlock-creds', credentialEnv: ['SEARCH_KEY', 'UNSET_KEY'] });
    const { options, hash } = spec(cfg, { SEARCH_KEY: SECRET, OTHER: 'not-passed' });
    expect(options.HostConfig?.Binds).toContain(`/srv/airlock-creds:${GATEWAY_CREDENTIALS_DIR}:ro`);
    expect(GATEWAY_CREDENTIALS_DIR).toBe('/run/airlock/credentials');
    expect(options.Env).toContain(`SEARCH_KEY=${SECRET}`);
    expect(options.Env?.some((e) => e.startsWith('OTHER=') || e.startsWith('UNSET_KEY='))).toBe(false);
    const wire = JSON.parse(
      (options.Env?.find((e) => e.startsWith('AIRLOCK_GATEWAY_CONFIG=')) as string).slice(
        'AIRLOCK_GATEWAY_CONFIG='.length,
      ),
    ) as unknown;
    const settings = gatewayServiceSchema.parse(wire);
    expect(settings.credentialFilesDir).toBe(GATEWAY_CREDENTIALS_DIR);
    expect(settings.credentialEnv).toEqual(['SEARCH_KEY']);
    // The value is in the container's environment only: not in labels, not in the hash input in clear.
    expect(JSON.stringify(options.Labels)).not.toContain(SECRET);
    expect(options.Labels?.['io.airlock.config-hash']).toBe(hash);
    expect(JSON.stringify(gatewayCredentialMounts(cfg, { SEARCH_KEY: SECRET }).fingerprint)).not.toContain(
      SECRET,
    );
    expect(gatewayCredentialMounts(cfg, { SEARCH_KEY: SECRET }).missing).toEqual(['UNSET_KEY']);
  });

  it('without the keys: no bind, no variable, and the gateway reads no file and no variable', () => {
    const { options } = spec(config(), { SEARCH_KEY: SECRET });
    expect(options.HostConfig?.Binds?.some((b) => b.includes(GATEWAY_CREDENTIALS_DIR))).toBe(false);
    expect(options.Env?.some((e) => e.includes(SECRET))).toBe(false);
    const mounts = gatewayCredentialMounts(config(), {});
    expect(mounts.service).toEqual({ credentialFilesDir: GATEWAY_CREDENTIALS_DIR, credentialEnv: [] });
  });

  it('changes the config hash (the gateway is re-created) when the directory, the list or a value changes', () => {
    const base = config({ credentialsDir: '/srv/c1', credentialEnv: ['SEARCH_KEY'] });
    const h = spec(base, { SEARCH_KEY: SECRET }).hash;
    expect(spec(base, { SEARCH_KEY: SECRET }).hash).toBe(h); // adopted when nothing changed
    expect(spec(base, { SEARCH_KEY: SECRET + 'x' }).hash).not.toBe(h); // rotated variable
    expect(spec(base, {}).hash).not.toBe(h); // variable unset
    expect(
      spec(config({ credentialsDir: '/srv/c2', credentialEnv: ['SEARCH_KEY'] }), { SEARCH_KEY: SECRET }).hash,
    ).not.toBe(h);
    expect(spec(config({ credentialsDir: '/srv/c1' }), { SEARCH_KEY: SECRET }).hash).not.toBe(h);
    expect(h).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe('file sources on the host', () => {
  it('maps paths under the fixed path into the directory and nothing else; links out are not followed', () => {
    const dir = path.join(tmp, 'creds');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'token'), `${SECRET}\n`);
    writeFileSync(path.join(tmp, 'outside'), 'x');
    symlinkSync(path.join(tmp, 'outside'), path.join(dir, 'link-out'));
    expect(hostCredentialPath(`${GATEWAY_CREDENTIALS_DIR}/token`, dir)).toBe(path.join(dir, 'token'));
    expect(hostCredentialPath(`${GATEWAY_CREDENTIALS_DIR}/../credentials/token`, dir)).toBe(
      path.join(dir, 'token'),
    );
    expect(hostCredentialPath(`${GATEWAY_CREDENTIALS_DIR}/../outside`, dir)).toBeNull();
    expect(hostCredentialPath('/etc/passwd', dir)).toBeNull();
    expect(hostCredentialPath(`${GATEWAY_CREDENTIALS_DIR}/link-out`, dir)).toBeNull();
    expect(hostCredentialPath(`${GATEWAY_CREDENTIALS_DIR}/missing`, dir)).toBeNull();
    expect(hostCredentialPath(`${GATEWAY_CREDENTIALS_DIR}/token`, undefined)).toBeNull();

    const cfg = config({ credentialsDir: dir, credentialEnv: ['SEARCH_KEY'] });
    const v = dockerCredentialVersions(cfg, { SEARCH_KEY: SECRET, OTHER: SECRET });
    expect(v.versionOf({ file: `${GATEWAY_CREDENTIALS_DIR}/token` })).toBe(valueVersion(SECRET));
    expect(v.versionOf({ file: `${GATEWAY_CREDENTIALS_DIR}/link-out` })).toBeNull();
    expect(v.versionOf({ env: 'SEARCH_KEY' })).toBe(valueVersion(SECRET));
    expect(v.versionOf({ env: 'OTHER' })).toBeNull(); // not passed to the gateway
  });

  it('reports a directory or files others may read, or owned by another uid, and changes nothing', () => {
    const dir = path.join(tmp, 'creds');
    mkdirSync(dir, { mode: 0o700 });
    chmodSync(dir, 0o700);
    writeFileSync(path.join(dir, 'ok'), 'v', { mode: 0o600 });
    const uid = process.getuid!();
    expect(credentialsDirWarnings(dir, uid)).toEqual([]);
    writeFileSync(path.join(dir, 'loose'), 'v', { mode: 0o644 });
    chmodSync(path.join(dir, 'loose'), 0o644);
    chmodSync(dir, 0o755);
    const w = credentialsDirWarnings(dir, uid);
    expect(w).toHaveLength(2);
    expect(w[0]).toMatch(/has mode 0755: others may read/);
    expect(w[1]).toMatch(/loose has mode 0644: expected 0600 or 0400/);
    expect(credentialsDirWarnings(dir, uid + 1).join('\n')).toMatch(/not the gateway's uid/);
    expect(() => credentialsDirWarnings(path.join(tmp, 'nope'), uid)).toThrow();
    expect(() => credentialsDirWarnings(path.join(dir, 'ok'), uid)).toThrow(/not a directory/);
  });
});
