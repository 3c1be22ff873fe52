import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { firstIssue } from '../validation.js';
import { configSchema, type Config } from './schema.js';

/**
 * The first zod issue as a ConfigError naming its dotted key path (`gateway.hostAliases.forum`;
 * `(root)` for the document as a whole).
 */
function configIssue(error: z.ZodError): ConfigError {
  const f = firstIssue(error);
  if (!f) return new ConfigError('invalid config', '(root)');
  if (f.unknownKeys) return new ConfigError(`unknown key "${f.field}"`, f.field);
  const at = f.field || '(root)';
  return new ConfigError(`${at}: ${f.message}`, at);
}

/**
 * Validates a parsed config object, applies defaults and resolves relative paths against `baseDir`.
 * @throws ConfigError naming the first offending key path.
 */
export function parseConfig(raw: unknown, baseDir: string): Config {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) throw configIssue(result.error);
  const cfg = result.data;
  cfg.policy.dir = path.resolve(baseDir, cfg.policy.dir);
  if (cfg.gateway.tls.upstreamCaFile)
    cfg.gateway.tls.upstreamCaFile = path.resolve(baseDir, cfg.gateway.tls.upstreamCaFile);
  if (cfg.gateway.credentialsDir)
    cfg.gateway.credentialsDir = path.resolve(baseDir, cfg.gateway.credentialsDir);
  cfg.stateDir = path.resolve(baseDir, cfg.stateDir);
  cfg.audit.file = path.resolve(cfg.stateDir, cfg.audit.file);
  if (cfg.sessions.defaultTtlSeconds > cfg.sessions.maxTtlSeconds) {
    throw new ConfigError(
      'sessions.defaultTtlSeconds cannot be greater than sessions.maxTtlSeconds',
      'sessions.defaultTtlSeconds',
    );
  }
  return cfg;
}

/**
 * Reads a YAML config file. With no file, returns the defaults (relative to the working directory).
 * @throws ConfigError for unreadable files, YAML syntax errors and invalid keys.
 */
export function loadConfig(file?: string): Config {
  if (!file) return parseConfig({}, process.cwd());
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`, '(file)');
  }
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: YAML syntax error: ${(err as Error).message}`, '(file)');
  }
  return parseConfig(raw, path.dirname(path.resolve(file)));
}
