/**
 * Credential placeholders as the runtimes keep them with a sandbox (a Docker label, a Kubernetes
 * annotation: JSON object credential name → placeholder), read back when a restarted control plane
 * rebuilds its sessions (docs/credentials.md "Placeholders").
 */
import { gatewaySessionSchema } from '../gateway-wire/session.js';

const placeholdersSchema = gatewaySessionSchema.shape.placeholders.unwrap();

/**
 * The placeholders of a label or annotation value.
 * @returns the map (empty for an absent, unparsable or invalid value: the session then has none, and
 *   a tool that sends its old placeholder is refused wherever it sends it — fail closed).
 */
export function parsePlaceholders(text: string | undefined): Record<string, string> {
  if (text === undefined || text === '') return {};
  try {
    const r = placeholdersSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : {};
  } catch {
    return {};
  }
}
