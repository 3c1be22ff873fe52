/** src/log.ts: the one logger (pino, JSON lines on stderr, level from AIRLOCK_LOG_LEVEL). */
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, LOG_LEVEL_ENV, silentLogger } from '../../src/log.js';

describe('createLogger', () => {
  const saved = process.env[LOG_LEVEL_ENV];
  afterEach(() => {
    if (saved === undefined) delete process.env[LOG_LEVEL_ENV];
    else process.env[LOG_LEVEL_ENV] = saved;
  });

  it('defaults to info, takes AIRLOCK_LOG_LEVEL, and an explicit level over both', () => {
    delete process.env[LOG_LEVEL_ENV];
    expect(createLogger().level).toBe('info');
    process.env[LOG_LEVEL_ENV] = 'warn';
    expect(createLogger().level).toBe('warn');
    expect(createLogger({ level: 'debug' }).level).toBe('debug');
  });

  it('names the component on every line when given', () => {
    expect(createLogger({ level: 'silent', component: 'gateway' }).bindings()).toEqual({
      component: 'gateway',
    });
  });

  it('refuses an unknown level name', () => {
    expect(() => createLogger({ level: 'verbose' })).toThrow(/level:verbose/);
  });

  it('silentLogger writes nothing', () => {
    expect(silentLogger().level).toBe('silent');
  });
});
