import type { BudgetSet } from './budgets.js';
import type { CredentialSet } from './credentials.js';
import type { McpEndpointSet } from './mcp.js';

/**
 * What the gateway asks the policy and what it gets back. The request tuple is the model's
 * `r = sub, host, path, method`; every field is already normalised (see src/request/normalize.ts).
 */
export interface PolicyRequest {
  /** The session's role (Casbin subject). */
  role: string;
  /**
   * Lowercase host, no trailing dot, IDN as punycode; `:port` appended only when the port is not the
   * scheme's default (80 for http, 443 for https), e.g. `forum.test` or `cfg.test:2379`.
   */
  host: string;
  /** Normalised absolute path without query (`/posts/1`). */
  path: string;
  /** Uppercase method (`GET`). */
  method: string;
}

/**
 * The answer: data, not a boolean. `allowed` is true only for `rule_allow`: an `ask` decision is not
 * an allow (a consumer that does not know approvals refuses it, failing closed).
 */
export interface PolicyDecision {
  allowed: boolean;
  /**
   * `rule_allow`, `rule_deny`, `rule_ask` (an `ask` rule matched and no deny did: the call needs a
   * person's approval, docs/approvals.md) or `no_match`.
   */
  reason: 'rule_allow' | 'rule_deny' | 'rule_ask' | 'no_match';
  /** The deciding rule as `file:line: text`, or null for `no_match`. */
  rule: string | null;
}

/** One loaded, validated, immutable policy. Safe to use from any number of concurrent requests. */
export interface PolicySnapshot {
  /** Content hash (sha256, first 12 hex) of model.conf + policy.csv, or a git SHA. */
  readonly version: string;
  readonly loadedAt: Date;
  /** Number of `p` and `g` lines. */
  readonly rules: number;
  /** Roles named by any `p` or `g` line. */
  readonly roles: ReadonlySet<string>;
  /** Decides synchronously; never throws for a well-formed request. */
  decide(req: PolicyRequest): PolicyDecision;
  /** Whether any allow rule of the role names the policy host (any path, any method). */
  mayReachHost(role: string, host: string): boolean;
  /** The policy's budgets (budgets.yaml); absent or empty: none. */
  readonly budgets?: BudgetSet;
  /** The policy's credential definitions (credentials.yaml); absent or empty: none. */
  readonly credentials?: CredentialSet;
  /** The policy's MCP endpoints (mcp.yaml, docs/mcp.md); absent or empty: none. */
  readonly mcp?: McpEndpointSet;
  /**
   * Roles in complain mode (modes.yaml, src/policy/modes.ts): a denied call with a safe method is
   * forwarded and audited `would_deny`. Absent or empty: every role is enforced.
   */
  readonly complainRoles?: ReadonlySet<string>;
}

/** Read side of the policy store, as the gateway and API see it. */
export interface PolicySource {
  /** The policy in force, or null when none valid has been loaded (fail closed). */
  current(): PolicySnapshot | null;
  /** The last load/reload error, or null after a successful load. */
  lastError(): string | null;
}
