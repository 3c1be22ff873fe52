import type { Command } from 'commander';

/** `airlock policy ...` subcommands; filled in with the policy tooling (docs/policy.md). */
export function registerPolicyCommands(program: Command): void {
  program.command('policy').description('check, test and explain policy directories');
}
