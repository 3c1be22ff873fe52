/**
 * The `policy` config section: `policy.dir` or `policy.git` (src/policy/config.ts via src/config/schema.ts).
 */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';
import { err } from '../../helpers/errors.js';

/** The ConfigError `parseConfig(raw)` throws. */
function configError(raw: unknown): ConfigError {
  return err(() => parseConfig(raw, '/base'), ConfigError);
}

describe('policy config', () => {
  it('defaults to the "policies" directory, resolved against the config file', () => {
    const c = parseConfig({}, '/base');
    expect(c.policy).toEqual({ dir: '/base/policies', git: undefined });
    expect(parseConfig({ policy: { dir: 'p' } }, '/base').policy.dir).toBe('/base/p');
  });

  it('policy.git gets defaults', () => {
    const c = parseConfig({ policy: { git: { url: 'file:///srv/policies.git' } } }, '/base');
    expect(c.policy.git).toEqual({
      url: 'file:///srv/policies.git',
      ref: 'main',
      pollIntervalMs: 2000,
      subdir: '.',
    });
    const d = parseConfig(
      {
        policy: {
          git: {
            url: 'git@github.example:org/p.git',
            ref: 'release/v2',
            pollIntervalMs: 500,
            subdir: 'prod/',
          },
        },
      },
      '/base',
    );
    expect(d.policy.git).toMatchObject({ ref: 'release/v2', pollIntervalMs: 500, subdir: 'prod' });
  });

  it('policy.dir and policy.git are mutually exclusive, and the error names policy.git', () => {
    const e = configError({ policy: { dir: 'p', git: { url: 'file:///r' } } });
    expect(e.path).toBe('policy.git');
    expect(e.message).toMatch(/^policy\.git: policy\.dir and policy\.git are mutually exclusive/);
  });

  it('refuses unsafe or unusable git settings, naming the key', () => {
    expect(configError({ policy: { git: {} } }).path).toBe('policy.git.url');
    for (const url of [
      '-uhttp://x',
      'ext::sh -c touch% /tmp/x',
      'relative/repo',
      'http://a b',
      'ftp://x/y',
    ]) {
      expect(configError({ policy: { git: { url } } }).path, url).toBe('policy.git.url');
    }
    for (const ref of ['-main', 'a..b', 'a/', 'x.lock', 'a b', '']) {
      expect(configError({ policy: { git: { url: 'file:///r', ref } } }).path, ref).toBe('policy.git.ref');
    }
    for (const subdir of ['../x', '/abs', 'a/../b', 'a//b', 'a\\b']) {
      expect(configError({ policy: { git: { url: 'file:///r', subdir } } }).path, subdir).toBe(
        'policy.git.subdir',
      );
    }
    expect(configError({ policy: { git: { url: 'file:///r', pollIntervalMs: 10 } } }).path).toBe(
      'policy.git.pollIntervalMs',
    );
    expect(configError({ policy: { git: { url: 'file:///r', branch: 'x' } } }).path).toBe(
      'policy.git.branch',
    );
  });
});
