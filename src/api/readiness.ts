import type { PolicySource } from '../policy/types.js';
import type { SessionService } from '../sessions/types.js';

/** What `/readyz` answers (200 when `ready`, else 503). */
export interface Readiness {
  ready: boolean;
  /** Why the service is not ready; empty when ready. */
  reasons: string[];
}

/**
 * Ready only when a valid policy is loaded (fail closed, DESIGN.md security property 3) and the
 * session service says it is ready. A throwing session service counts as not ready.
 */
export function readiness(policy: PolicySource, sessions: SessionService): Readiness {
  const reasons: string[] = [];
  if (!policy.current()) {
    const lastError = policy.lastError();
    reasons.push(lastError ? `no valid policy loaded: ${lastError}` : 'no valid policy loaded');
  }
  try {
    const r = sessions.readiness();
    if (!r.ready) reasons.push(...(r.reasons.length > 0 ? r.reasons : ['session service not ready']));
  } catch (err) {
    reasons.push(
      `session service readiness check failed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return { ready: reasons.length === 0, reasons };
}
