import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';
import { err } from '../../helpers/errors.js';

/** The ConfigError `parseConfig(raw)` throws. */
function configError(raw: unknown): ConfigError {
  return err(() => parseConfig(raw, '/base'), ConfigError);
}

describe('config', () => {
  it('applies defaults and resolves paths', () => {
    const c = parseConfig({}, '/base');
    expect(c.gateway.port).toBe(3128);
    expect(c.api.listen).toBe('127.0.0.1:8080');
    expect(c.policy.dir).toBe('/base/policies');
    expect(c.audit.file).toBe('/base/.airlock/audit.jsonl');
    expect(c.runtime.resources).toEqual({ cpus: 1, memoryMiB: 512, pids: 256 });
    expect(c.gateway.upstreams).toEqual({});
    expect(c.audit.query).toBe('digest');
    expect(parseConfig({ gateway: { upstreams: { 'json.test': {} } } }, '/base').gateway.upstreams).toEqual({
      'json.test': { pathCase: 'exact' },
    });
  });
  it('names an unknown key by its path', () => {
    expect(configError({ gateway: { prot: 1 } }).path).toBe('gateway.prot');
    expect(configError({ gateway: { prot: 1 } }).message).toMatch(/unknown key "gateway.prot"/);
    expect(configError({ bogus: true }).path).toBe('bogus');
  });
  it('names a wrong value by its path', () => {
    expect(configError({ gateway: { port: 'x' } }).path).toBe('gateway.port');
    expect(configError({ gateway: { allowPrivateCidrs: ['10.0.0.0/33'] } }).path).toBe(
      'gateway.allowPrivateCidrs.0',
    );
    expect(configError({ gateway: { hostAliases: { 'forum.test': 'nowhere' } } }).path).toBe(
      'gateway.hostAliases.forum.test',
    );
    expect(configError({ runtime: { kind: 'podman' } }).path).toBe('runtime.kind');
    expect(configError({ audit: { query: 'raw' } }).path).toBe('audit.query');
    expect(configError({ gateway: { upstreams: { 'json.test': { pathCase: 'loose' } } } }).path).toBe(
      'gateway.upstreams.json.test.pathCase',
    );
    expect(configError({ gateway: { upstreams: { 'JSON.test': {} } } }).path).toMatch(/^gateway\.upstreams/);
    expect(configError({ sessions: { defaultTtlSeconds: 10, maxTtlSeconds: 5 } }).path).toBe(
      'sessions.defaultTtlSeconds',
    );
  });
  it('reports YAML syntax errors and unreadable files', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'airlock-cfg-'));
    const f = path.join(dir, 'bad.yaml');
    writeFileSync(f, 'gateway: [unclosed');
    expect(() => loadConfig(f)).toThrow(/YAML syntax error/);
    expect(() => loadConfig(path.join(dir, 'missing.yaml'))).toThrow(/cannot read config file/);
    rmSync(dir, { recursive: true, force: true });
  });
});
