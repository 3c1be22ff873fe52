/**
 * `airlock credentials ls [--json]`: the credentials of the policy in force, from
 * `GET /v1/credentials` (docs/credentials.md). Never a value: names, roles, bindings, how applied,
 * source, value version, placeholder variable and last-use time.
 */
import type { Command } from 'commander';
import type { z } from 'zod';
import type { credentialListSchema } from '../api/schemas.js';
import { ApiClient, apiToken, apiUrl } from './client.js';

export type CredentialList = z.output<typeof credentialListSchema>;

/** Where the command writes (tests pass their own). */
export interface CredentialsOutput {
  out(text: string): void;
}

const COLUMNS = [
  'NAME',
  'ROLES',
  'HOST',
  'PATH',
  'METHODS',
  'APPLY',
  'SOURCE',
  'VERSION',
  'PLACEHOLDER',
  'LAST USED',
] as const;

/**
 * The list as a table: one line per binding (a credential's name, roles, apply, source, version,
 * placeholder variable and last-use time on its first line only), columns padded with spaces; `-`
 * for an unavailable version, no placeholder, no use on record.
 */
export function formatCredentialTable(list: CredentialList): string {
  if (list.credentials.length === 0)
    return list.policyVersion === null
      ? 'no policy loaded\n'
      : `no credentials in policy ${list.policyVersion}\n`;
  const rows: string[][] = [];
  for (const c of list.credentials) {
    c.bindings.forEach((b, i) => {
      const first = i === 0;
      rows.push([
        first ? c.name : '',
        first ? c.roles.join(',') : '',
        b.host,
        b.path,
        b.methods.join(','),
        first ? (c.apply.name ? `${c.apply.type}:${c.apply.name}` : c.apply.type) : '',
        first ? `${c.source.kind}:${c.source.ref}` : '',
        first ? (c.valueVersion ?? '-') : '',
        first ? (c.placeholder ? `env:${c.placeholder.env}` : '-') : '',
        first ? (c.lastUsedAt ?? '-') : '',
      ]);
    });
  }
  const widths = COLUMNS.map((h, k) => Math.max(h.length, ...rows.map((r) => (r[k] as string).length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, k) => (k === cells.length - 1 ? c : c.padEnd(widths[k] as number)))
      .join('  ')
      .trimEnd() + '\n';
  return line(COLUMNS) + rows.map(line).join('');
}

/** Fetches `GET /v1/credentials` and prints it (a table, or the JSON answer with `json`). */
export async function credentialsLs(
  api: ApiClient,
  opts: { json?: boolean },
  io: CredentialsOutput = { out: (t) => process.stdout.write(t) },
): Promise<void> {
  const list = await api.call<CredentialList>('GET', '/v1/credentials');
  io.out(opts.json ? JSON.stringify(list, null, 2) + '\n' : formatCredentialTable(list));
}

/** Registers `airlock credentials ls`. */
export function registerCredentialsCommands(program: Command): void {
  const credentials = program
    .command('credentials')
    .description(
      'the credentials the gateway injects (credentials.yaml of the policy in force; never values)',
    );
  credentials
    .command('ls')
    .description('list credentials: name, roles, bindings, how applied, source, value version')
    .option('--api <url>')
    .option('--json', 'print the API answer as JSON')
    .action(async (opts: { api?: string; json?: boolean }) => {
      await credentialsLs(new ApiClient(apiUrl(opts.api), apiToken()), opts);
    });
}
