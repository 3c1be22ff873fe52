/** `runtime.docker.spareNetworks` (docs/config.md): default, and bad values named by their path. */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';
import { err } from '../../helpers/errors.js';

const pathOf = (spareNetworks: unknown): string | undefined =>
  err(() => parseConfig({ runtime: { docker: { spareNetworks } } }, '/base'), ConfigError).path;

describe('runtime.docker.spareNetworks', () => {
  it('is off by default (0) and takes 0 to 64', () => {
    expect(parseConfig({}, '/base').runtime.docker.spareNetworks).toBe(0);
    expect(
      parseConfig({ runtime: { docker: { spareNetworks: 2 } } }, '/base').runtime.docker.spareNetworks,
    ).toBe(2);
    expect(
      parseConfig({ runtime: { docker: { spareNetworks: 64 } } }, '/base').runtime.docker.spareNetworks,
    ).toBe(64);
  });
  it('names a bad value by its path', () => {
    expect(pathOf(-1)).toBe('runtime.docker.spareNetworks');
    expect(pathOf(65)).toBe('runtime.docker.spareNetworks');
    expect(pathOf(1.5)).toBe('runtime.docker.spareNetworks');
    expect(pathOf('2')).toBe('runtime.docker.spareNetworks');
  });
});
