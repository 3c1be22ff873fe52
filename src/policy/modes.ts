/**
 * modes.yaml: how the gateway enforces a role's decisions, declared in the policy repository and
 * reviewed like its rules (docs/policy.md "Learning a policy"). Absent file: every role is enforced.
 *
 * ```yaml
 * version: 1
 * complain: [learner]   # roles in complain mode
 * ```
 *
 * Complain mode changes enforcement only, never the decision: a call the role's rules deny whose
 * method is safe (GET, HEAD, OPTIONS — and the overriding method too when the request carries a
 * method override) is forwarded and audited with decision `would_deny` and the denial's rule and
 * reason; every other denied call is refused as usual (src/gateway/decide.ts step 4b). A role listed
 * here is a known role even before policy.csv names it, so a session can start learning from no rules.
 */
import { z } from 'zod';
import { PolicyError } from '../errors.js';
import { parsePolicyYaml } from './yaml-file.js';

/** File name of the modes in a policy directory. */
export const MODES_FILE = 'modes.yaml';

/** Methods complain mode forwards when the rules deny them (they do not change the upstream's state). */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/** A role name as policy.csv and the API allow it (the rule of src/policy/csv.ts and src/api/schemas.ts). */
const roleName = z
  .string()
  .regex(
    /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/,
    'must be a role name (letters, digits, "_", ".", ":", "-"; at most 128)',
  );

const modesSchema = z.strictObject({
  version: z.literal(1),
  complain: z.array(roleName).default([]),
});

/** The parsed modes.yaml. */
export interface PolicyModes {
  /** Roles in complain mode (denied safe calls forwarded and audited `would_deny`). */
  readonly complain: ReadonlySet<string>;
}

/** No modes.yaml: every role is enforced. */
export const NO_MODES: PolicyModes = Object.freeze({ complain: new Set<string>() });

/**
 * Parses modes.yaml.
 * @throws PolicyError at `modes.yaml:LINE` naming the field (`complain.1: must be a role name ...`),
 *   or for a role listed twice.
 */
export function parseModes(text: string): PolicyModes {
  const file = parsePolicyYaml(text, MODES_FILE, modesSchema, '"version: 1" and a "complain" list of roles');
  const complain = new Set<string>();
  file.data.complain.forEach((role, i) => {
    if (complain.has(role))
      throw new PolicyError(`complain.${i}: role "${role}" is listed twice`, file.at(['complain', i]));
    complain.add(role);
  });
  return { complain };
}
