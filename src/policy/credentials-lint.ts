/**
 * `airlock policy check` findings for credentials.yaml (docs/credentials.md "Checking"): a binding is
 * checked against the allow rules of each role that may use the credential (its own and inherited
 * rules), with the same region algebra as the rule linter (./regions.ts).
 *
 * | severity | finding |
 * | --- | --- |
 * | error | a binding no request of the role can ever use: no allow rule of the role overlaps it |
 * | error | a binding broader than the role's allow rules: some request it names is not allowed (the witness is printed) — bind exactly what the rules allow |
 *
 * Unknown roles, bad patterns and unknown keys are load errors (./credentials.ts), not findings.
 * Whether a binding names a `gateway.tls.passthrough` host (where injection is impossible) is not
 * known from the policy directory: the gateway logs it at start (docs/credentials.md).
 */
import type { CompiledPolicy } from './compile.js';
import { CREDENTIALS_FILE, type CredentialBinding } from './credentials.js';
import { coverage, regionsOverlap, type Region } from './regions.js';

/** One finding about credentials.yaml. */
export interface CredentialFinding {
  readonly id: 'credential-binding';
  readonly severity: 'error' | 'warning';
  /** Always `credentials.yaml`. */
  readonly file: string;
  readonly line: number;
  readonly message: string;
}

function regionsOf(b: CredentialBinding): Region[] {
  return b.methods.map((method) => ({ host: b.hostPattern, path: b.pathPattern, method }));
}

/** Checks every binding of every credential against the allow rules of each of its roles. */
export function lintCredentials(policy: CompiledPolicy): CredentialFinding[] {
  const out: CredentialFinding[] = [];
  for (const c of policy.credentials.definitions) {
    for (const role of c.roles) {
      const chain = new Set([role, ...policy.inheritedRoles(role)]);
      const allows: Region[] = policy.policyRules
        .filter((r) => r.effect === 'allow' && chain.has(r.role))
        .map((r) => ({ host: r.hostPattern, path: r.pathPattern, method: r.method }));
      for (const b of c.bindings) {
        const where = `credential "${c.name}", binding ${b.host} ${b.path} [${b.methods.join(', ')}]`;
        const regions = regionsOf(b);
        if (!regions.some((reg) => allows.some((a) => regionsOverlap(reg, a)))) {
          out.push({
            id: 'credential-binding',
            severity: 'error',
            file: CREDENTIALS_FILE,
            line: b.line,
            message: `${where}: no allow rule of role "${role}" overlaps it; the credential can never be used there`,
          });
          continue;
        }
        for (const reg of regions) {
          const cover = coverage(reg, allows);
          if (cover.covered === true) continue;
          const w = cover.witness;
          out.push({
            id: 'credential-binding',
            severity: 'error',
            file: CREDENTIALS_FILE,
            line: b.line,
            message:
              `${where}: broader than the allow rules of role "${role}"` +
              (w ? ` (e.g. ${w.method} ${w.host}${w.path} is not allowed)` : ' (coverage undecided)') +
              '; bind only what the rules allow',
          });
          break;
        }
      }
    }
  }
  return out;
}
