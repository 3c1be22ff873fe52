import type { AuditEvent } from '../audit/event.js';

/** A session as the API returns it (DESIGN.md "API"). Times are ISO-8601 strings. */
export interface SessionView {
  id: string;
  role: string;
  status: 'running' | 'stopping' | 'stopped';
  image: string;
  createdAt: string;
  expiresAt: string;
  /** API caller (token name) that created the session. */
  createdBy: string;
  labels: Record<string, string>;
  /** Time-boxed grants in force (docs/approvals.md "Grants"); expired ones are not shown. */
  grants?: SessionGrantView[];
}

/** A time-boxed grant of a session as the API shows it. */
export interface SessionGrantView {
  id: string;
  /** Rule fields, the policy's pattern syntax. */
  host: string;
  path: string;
  method: string;
  /** Why (required when granting). */
  reason: string;
  /** The API caller that granted it. */
  grantedBy: string;
  /** ISO-8601. */
  grantedAt: string;
  /** ISO-8601; the gateways stop honouring it at this instant. */
  expiresAt: string;
}

/** What the gateway needs to know about a session (defined with the gateway's wire schema). */
export type { GatewaySession } from '../gateway-wire/session.js';

/** Body of `POST /v1/sessions` after validation. */
export interface CreateSessionRequest {
  role: string;
  image?: string;
  env?: Record<string, string>;
  ttlSeconds?: number;
  labels?: Record<string, string>;
}

/** Result of `POST /v1/sessions/{id}/exec`. */
export interface ExecOutput {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * What the API needs from the session layer (implemented by SessionManager in ./manager.ts).
 * Errors are the classes of src/errors.ts; the API maps their `code` to HTTP statuses.
 */
export interface SessionService {
  /** @throws UnknownRoleError (422), RequestValidationError (400), RuntimeError, GatewayUnavailableError */
  create(req: CreateSessionRequest, caller: string): Promise<SessionView>;
  list(): SessionView[];
  /** @throws SessionNotFoundError */
  get(id: string): SessionView;
  /**
   * Runs a command in the sandbox. `onOutput`, when given, receives output chunks (UTF-8 text) as
   * they arrive; the result still carries the (capped) full output.
   * @throws SessionNotFoundError, SessionConflictError (not running), ExecTimeoutError, RuntimeError
   */
  exec(
    id: string,
    command: string[],
    timeoutMs: number,
    onOutput?: (stream: 'stdout' | 'stderr', data: string) => void,
  ): Promise<ExecOutput>;
  /**
   * Audit events of a session, live or ended, oldest first, including everything the gateway has
   * written so far. @throws SessionNotFoundError when no such session ever had events or exists.
   */
  audit(id: string): Promise<AuditEvent[]>;
  /** Kill switch: the gateway refuses the session before the sandbox is removed. @throws SessionNotFoundError */
  remove(id: string): Promise<void>;
  /** Whether the service can take new sessions; `reasons` says why not. */
  readiness(): { ready: boolean; reasons: string[] };
}
