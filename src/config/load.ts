import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { configSchema, type Config } from './schema.js';

/** Formats a zod issue path as a dotted key path (`gateway.hostAliases.forum`). */
function keyPath(issuePath: readonly PropertyKey[]): string {
  return issuePath.map(String).join('.') || '(root)';
}

function firstIssue(error: z.ZodError): ConfigError {
  const issue = error.issues[0];
  if (!issue) return new ConfigError('invalid config', '(root)');
  if (issue.code === 'unrecognized_keys') {
    const key = [...issue.path, issue.keys[0] ?? ''].map(String).join('.');
    return new ConfigError(`unknown key "${key}"`, key);
  }
  const at = keyPath(issue.path);
  return new ConfigError(`${at}: ${issue.message}`, at);
}

/**
 * Validates a parsed config object, applies defaults and resolves relative paths against `baseDir`.
 * @throws ConfigError naming the first offending key path.
 */
export function parseConfig(raw: unknown, baseDir: string): Config {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) throw firstIssue(result.error);
  const cfg = result.data;
  cfg.policy.dir = path.resolve(baseDir, cfg.policy.dir);
  if (cfg.gateway.tls.upstreamCaFile)
    cfg.gateway.tls.upstreamCaFile = path.resolve(baseDir, cfg.gateway.tls.upstreamCaFile);
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
