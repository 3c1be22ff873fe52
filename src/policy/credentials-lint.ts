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
 * With what the deployment says ({@link CredentialDeployment}: `airlock policy check --config FILE`,
 * `--secrets NAMES`), also:
 *
 * | severity | id | finding |
 * | --- | --- | --- |
 * | error | `credential-passthrough` | a binding names a `gateway.tls.passthrough` host: the gateway never opens those tunnels, so it can neither inject the credential nor scan for it there |
 * | error | `credential-source` | a `secretRef` (value or OAuth2 `clientSecret`) names a Secret the gateways may not read (not in `--secrets`, the chart's `gateway.credentialSecrets`); on the Docker runtime: any `secretRef`, a `file` outside the mounted `gateway.credentialsDir`, an `env` not in `gateway.credentialEnv` |
 *
 * Unknown roles, bad patterns and unknown keys are load errors (./credentials.ts), not findings.
 */
import type { CompiledPolicy } from './compile.js';
import { CREDENTIALS_FILE, type CredentialBinding } from './credentials.js';
import { sourcesOf, type ValueSource } from './credential-kinds.js';
import { matchHostPattern } from './matchers.js';
import { coverage, regionsOverlap, type Region } from './regions.js';

/**
 * What the deployment says about where credentials can work; each field unset: not checked.
 */
export interface CredentialDeployment {
  /** `gateway.tls.passthrough` (policy host form): hosts whose tunnels the gateway never opens. */
  readonly passthrough?: readonly string[];
  /** The Secrets the gateways may read (the chart's `gateway.credentialSecrets`). */
  readonly secretNames?: readonly string[];
  /**
   * Docker runtime: the gateway container reads files under this directory only (the mount of
   * `gateway.credentialsDir`; null: none mounted), the listed variables only, and no Secret.
   */
  readonly docker?: { readonly fileRoot: string | null; readonly envNames: readonly string[] };
}

/** One finding about credentials.yaml. */
export interface CredentialFinding {
  readonly id: 'credential-binding' | 'credential-passthrough' | 'credential-source';
  readonly severity: 'error' | 'warning';
  /** Always `credentials.yaml`. */
  readonly file: string;
  readonly line: number;
  readonly message: string;
}

function regionsOf(b: CredentialBinding): Region[] {
  return b.methods.map((method) => ({ host: b.hostPattern, path: b.pathPattern, method }));
}

/** Why the deployment cannot give the gateway a source's value, or null. */
function sourceProblem(s: ValueSource, d: CredentialDeployment): string | null {
  if (d.docker) {
    if ('secretRef' in s)
      return `Secret "${s.secretRef.name}" (secretRef): the Docker runtime's gateway reads no Kubernetes Secret; use a file under gateway.credentialsDir or a variable of gateway.credentialEnv`;
    if ('env' in s && !d.docker.envNames.includes(s.env))
      return `variable ${s.env} is not passed to the gateway container: list it in gateway.credentialEnv`;
    if ('file' in s) {
      const root = d.docker.fileRoot;
      if (root === null)
        return `file ${s.file}: no gateway.credentialsDir is mounted, so the gateway reads no file`;
      if (!s.file.startsWith(root.endsWith('/') ? root : `${root}/`))
        return `file ${s.file} is outside ${root} (where gateway.credentialsDir is mounted): the gateway does not read it`;
    }
    return null;
  }
  if ('secretRef' in s && d.secretNames && !d.secretNames.includes(s.secretRef.name))
    return `Secret "${s.secretRef.name}" is not one the gateways may read: add it to the chart's gateway.credentialSecrets (the Role names exactly those)`;
  return null;
}

/**
 * Checks every binding of every credential against the allow rules of each of its roles and, with
 * `deployment`, against what the deployment lets the gateway do (see the module comment).
 */
export function lintCredentials(
  policy: CompiledPolicy,
  deployment: CredentialDeployment = {},
): CredentialFinding[] {
  const out: CredentialFinding[] = [];
  for (const c of policy.credentials.definitions) {
    for (const s of sourcesOf(c)) {
      const problem = sourceProblem(s, deployment);
      if (problem)
        out.push({
          id: 'credential-source',
          severity: 'error',
          file: CREDENTIALS_FILE,
          line: c.line,
          message: `credential "${c.name}": ${problem}; calls bound to it would be answered 503 credential_unavailable`,
        });
    }
    for (const b of c.bindings) {
      for (const h of deployment.passthrough ?? []) {
        if (!matchHostPattern(b.hostPattern, h.toLowerCase())) continue;
        out.push({
          id: 'credential-passthrough',
          severity: 'error',
          file: CREDENTIALS_FILE,
          line: b.line,
          message: `credential "${c.name}", binding ${b.host} ${b.path}: ${h} is in gateway.tls.passthrough, whose tunnels the gateway never opens; it cannot inject the credential (or stop its leak) there. Remove the host from passthrough or the binding`,
        });
      }
    }
  }
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
