import { requestFromUrl } from '../../../src/request/normalize.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import type { CompiledPolicy } from '../../../src/policy/compile.js';
import type { PolicyDecision, PolicyRequest } from '../../../src/policy/types.js';

/** Compiles policy.csv lines (joined with newlines) with the canonical model. */
export function policy(...lines: string[]): CompiledPolicy {
  return compilePolicy(CANONICAL_MODEL, lines.join('\n') + '\n');
}

/** A normalised policy request from a role, a method and an absolute URL. */
export function req(role: string, method: string, url: string): PolicyRequest {
  const r = requestFromUrl(url, method);
  return { role, host: r.policyHost, path: r.path, method: r.method };
}

/** `allow`/`deny` for role+method+url. */
export function verdict(p: CompiledPolicy, role: string, method: string, url: string): 'allow' | 'deny' {
  return p.decide(req(role, method, url)).allowed ? 'allow' : 'deny';
}

export function decision(p: CompiledPolicy, role: string, method: string, url: string): PolicyDecision {
  return p.decide(req(role, method, url));
}
