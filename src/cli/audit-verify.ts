/**
 * `airlock audit verify [FILE|SESSION]` and `airlock audit rotate-key` (tamper-evident audit,
 * src/audit/chain.ts, docs/security.md). Exit codes like the other commands: 0 the trail verifies,
 * 1 a broken link (printed as FILE:LINE: what is wrong), 2 usage or I/O error.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import type { Command } from 'commander';
import { loadAuditPublicKeys, rotateAuditKey, verifyAudit, type AuditVerification } from '../audit/chain.js';
import { loadConfig } from '../config/load.js';
import { CliError } from './client.js';

/** Where the command writes (tests pass their own). */
export interface AuditVerifyOutput {
  out(text: string): void;
}

/** The resolved inputs of a verification. */
export interface AuditVerifyInput {
  file: string;
  signatureFile: string;
  keysDir: string;
  sessionId?: string;
  maxUnsignedAgeMs: number;
}

/** The signing keys' directory of an installation. */
export function auditKeysDir(stateDir: string): string {
  return path.join(stateDir, 'audit-keys');
}

/**
 * Reads the files and verifies. @throws CliError (exit 2) when the audit file, the signature file
 * (other than missing) or the keys cannot be read.
 */
export function runAuditVerify(input: AuditVerifyInput): AuditVerification {
  let text: string;
  try {
    text = readFileSync(input.file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read audit file ${input.file}: ${(err as Error).message}`, 2);
  }
  let signatures: string | null = null;
  try {
    signatures = readFileSync(input.signatureFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new CliError(`cannot read signature file ${input.signatureFile}: ${(err as Error).message}`, 2);
  }
  let keys = new Map<string, KeyObject>();
  if (existsSync(input.keysDir)) {
    try {
      keys = loadAuditPublicKeys(input.keysDir);
    } catch (err) {
      throw new CliError(`cannot read audit keys in ${input.keysDir}: ${(err as Error).message}`, 2);
    }
  }
  return verifyAudit(text, {
    file: input.file,
    signatures,
    signatureFile: input.signatureFile,
    keys,
    maxUnsignedAgeMs: input.maxUnsignedAgeMs,
    ...(input.sessionId !== undefined ? { sessionId: input.sessionId } : {}),
  });
}

/** One-paragraph human report of a verification. */
export function formatAuditVerification(r: AuditVerification): string {
  const counts =
    `${r.events} event(s), ${r.streams} stream(s), ${r.signaturesVerified} signature(s) verified, ` +
    `${r.unsigned} event(s) not yet signed` +
    (r.sessionEvents !== undefined ? `, ${r.sessionEvents} event(s) of the session` : '');
  if (r.firstBreak)
    return `${r.firstBreak.file}:${r.firstBreak.line}: ${r.firstBreak.message}\nBROKEN (${counts} before the break)\n`;
  return `OK: ${counts}\n`;
}

interface VerifyOpts {
  config?: string;
  keys?: string;
  signatures?: string;
  maxUnsignedAge: string;
  json?: boolean;
}

/** Adds `verify` and `rotate-key` under the `audit` command. */
export function registerAuditCommands(
  audit: Command,
  output: AuditVerifyOutput = { out: (t) => void process.stdout.write(t) },
): void {
  const out = (t: string): void => output.out(t);
  audit
    .command('verify')
    .description(
      'verify the audit trail: every hash-chain link and every signature; prints the first broken link ' +
        'as FILE:LINE (exit 1), exit 2 on usage or I/O errors',
    )
    .argument('[target]', 'an audit file, or a session id (the configured audit.file; default: audit.file)')
    .option('-c, --config <file>', 'YAML config file (audit.file, stateDir)')
    .option('--keys <dir>', 'public keys directory (default <stateDir>/audit-keys)')
    .option('--signatures <file>', 'signature records (default <audit file>.sig)')
    .option(
      '--max-unsigned-age <seconds>',
      'events older than this and not covered by a signature are a break ("inf" allows any)',
      '120',
    )
    .option('--json', 'print the result as JSON')
    .action((target: string | undefined, opts: VerifyOpts) => {
      const age = opts.maxUnsignedAge === 'inf' ? Infinity : Number(opts.maxUnsignedAge);
      if (!(age >= 0)) throw new CliError('--max-unsigned-age must be a number of seconds >= 0 or "inf"', 2);
      const needConfig = target === undefined || !existsSync(target) || opts.keys === undefined;
      const cfg = needConfig ? loadConfig(opts.config) : null;
      let file: string;
      let sessionId: string | undefined;
      if (target !== undefined && existsSync(target)) file = target;
      else {
        file = cfg!.audit.file;
        if (target !== undefined) {
          if (!/^[A-Za-z0-9_-]+$/.test(target))
            throw new CliError(`${target}: no such audit file, and not a session id`, 2);
          sessionId = target;
        }
      }
      const result = runAuditVerify({
        file,
        signatureFile: opts.signatures ?? `${file}.sig`,
        keysDir: opts.keys ?? auditKeysDir(cfg!.stateDir),
        maxUnsignedAgeMs: age * 1000,
        ...(sessionId !== undefined ? { sessionId } : {}),
      });
      if (sessionId !== undefined && result.sessionEvents === 0 && result.ok)
        throw new CliError(`session ${sessionId} has no event in ${file}`, 2);
      out(opts.json ? JSON.stringify(result) + '\n' : formatAuditVerification(result));
      if (!result.ok) process.exitCode = 1;
    });
  audit
    .command('rotate-key')
    .description(
      'create a new audit signing key (Ed25519) and make it current; earlier public keys stay, so ' +
        'earlier signatures still verify. The running control plane signs with it from its next round.',
    )
    .option('-c, --config <file>', 'YAML config file (stateDir)')
    .option('--keys <dir>', 'keys directory (default <stateDir>/audit-keys)')
    .action((opts: { config?: string; keys?: string }) => {
      const dir = opts.keys ?? auditKeysDir(loadConfig(opts.config).stateDir);
      const key = rotateAuditKey(dir);
      out(`new audit signing key ${key.keyId} in ${dir}\n`);
    });
}
