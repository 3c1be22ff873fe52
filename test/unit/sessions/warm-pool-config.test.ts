/** `sessions.warmPool` (docs/config.md): defaults, and bad values named by their path. */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/errors.js';
import { err } from '../../helpers/errors.js';

const pathOf = (warmPool: unknown): string | undefined =>
  err(() => parseConfig({ sessions: { warmPool } }, '/base'), ConfigError).path;

describe('sessions.warmPool', () => {
  it('is off by default: size 0, the sandbox image, one fill at a time', () => {
    expect(parseConfig({}, '/base').sessions.warmPool).toEqual({ size: 0, images: [], concurrency: 1 });
    expect(
      parseConfig({ sessions: { warmPool: { size: 3, images: ['a:1', 'b:2'] } } }, '/base').sessions.warmPool,
    ).toEqual({ size: 3, images: ['a:1', 'b:2'], concurrency: 1 });
  });
  it('names a bad value or an unknown key by its path', () => {
    expect(pathOf({ size: -1 })).toBe('sessions.warmPool.size');
    expect(pathOf({ size: 257 })).toBe('sessions.warmPool.size');
    expect(pathOf({ size: 1.5 })).toBe('sessions.warmPool.size');
    expect(pathOf({ concurrency: 0 })).toBe('sessions.warmPool.concurrency');
    expect(pathOf({ images: [''] })).toBe('sessions.warmPool.images.0');
    expect(pathOf({ sise: 2 })).toBe('sessions.warmPool.sise');
  });
});
