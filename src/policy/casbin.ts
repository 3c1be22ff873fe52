/**
 * A real Casbin enforcer on the same model and policy, with Airlock's safe matchers registered. Used
 * to cross-check the compiled index (differential tests, `airlock policy explain --casbin`); never on
 * the request path (Casbin scans every line per decision).
 */
import { newEnforcer, newModelFromString, StringAdapter, type Enforcer } from 'casbin';
import { hostMatch, methodMatch, pathMatch } from './matchers.js';

/**
 * Builds a Casbin enforcer from model.conf and policy.csv text and registers `hostMatch`,
 * `pathMatch` and `methodMatch`. The policy text is passed as is except that `\r` is dropped; an
 * empty policy is allowed.
 * @throws whatever Casbin throws for text it cannot parse.
 */
export async function newCasbinEnforcer(modelText: string, policyText: string): Promise<Enforcer> {
  const model = newModelFromString(modelText);
  const text = policyText.replace(/\r/g, '');
  // StringAdapter refuses an empty document; a lone comment line is the same empty policy.
  const enforcer = await newEnforcer(model, new StringAdapter(text.trim() === '' ? '# empty' : text));
  enforcer.addFunction('hostMatch', (a: string, b: string) => hostMatch(a, b));
  enforcer.addFunction('pathMatch', (a: string, b: string) => pathMatch(a, b));
  enforcer.addFunction('methodMatch', (a: string, b: string) => methodMatch(a, b));
  return enforcer;
}
