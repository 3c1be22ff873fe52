/**
 * When each credential of credentials.yaml was last injected, as the control plane learns it from the
 * audit trail it already follows (AuditIndex): every event of a call the gateway forwarded with a
 * credential names it (`credential: {name, version}`, decision `allow`). The same on every runtime —
 * the Docker gateway container and the in-process gateway write the audit file, the Kubernetes audit
 * collector copies every replica's events into it — and after a control-plane restart (the index
 * reads the file from its start). Never a value: the events hold none.
 */
import type { AuditEvent } from './event.js';

export class CredentialLastUse {
  /** Credential name → ISO 8601 time of the latest call it was injected into. */
  readonly #last = new Map<string, string>();

  /** Takes one audit event (subscribe it to the AuditIndex before the index starts). */
  observe(e: AuditEvent): void {
    const c = e.credential;
    // Injected: an allowed call that carried the credential (a found value is a denial; a missing
    // one has no version).
    if (!c || c.version === null || e.decision !== 'allow') return;
    const before = this.#last.get(c.name);
    if (before === undefined || e.time > before) this.#last.set(c.name, e.time);
  }

  /** ISO 8601 time of the latest call `name` was injected into, or null when none is on record. */
  lastUsedAt(name: string): string | null {
    return this.#last.get(name) ?? null;
  }
}
