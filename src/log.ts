/**
 * The one logger of every Airlock process (control plane, CLI, gateway): pino, one JSON object per
 * line on stderr, so stdout stays free for what a command prints (the API URL and ready line of
 * `airlock serve`, the gateway's audit events when `auditStdout` is on).
 *
 * Level: `opts.level`, else `AIRLOCK_LOG_LEVEL`, else `info` (pino's names: `trace`, `debug`,
 * `info`, `warn`, `error`, `fatal`, `silent`).
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/** Environment variable naming the log level. */
export const LOG_LEVEL_ENV = 'AIRLOCK_LOG_LEVEL';

/** Options of {@link createLogger}; all optional. */
export interface LoggerOptions {
  /** pino level name. @default process.env.AIRLOCK_LOG_LEVEL ?? "info" */
  level?: string;
  /** Which process part writes (`gateway`), added to every line as `component`. @default none */
  component?: string;
}

/**
 * A pino logger writing JSON lines to stderr (fd 2, synchronously, so lines written just before
 * `process.exit` are not lost).
 * @throws Error from pino when the level is not a level name (`default level:verbose must be included in custom levels`).
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? process.env[LOG_LEVEL_ENV] ?? 'info';
  return pino(
    { level, ...(opts.component ? { base: { component: opts.component } } : {}) },
    pino.destination({ dest: 2, sync: true }),
  );
}

/** A logger that writes nothing (the default where a caller may pass its own). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
