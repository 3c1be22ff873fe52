/**
 * Options of {@link EgressGateway} (src/gateway/proxy.ts), in the Temporal SDK's three steps:
 * {@link GatewayOptionsInput} (durations optional, documented) → {@link withGatewayDefaults} →
 * {@link GatewayOptions} (everything set). Defaults come from the config schema (one place:
 * src/config/schema.ts); the gateway itself never defaults anything.
 */
import type { ApprovalGate } from './approvals.js';
import type { AuditSink } from '../audit/event.js';
import {
  gatewayLimitsSchema,
  upstreamTimeoutsSchema,
  type GatewayLimits,
  type GatewayLimitsInput,
  type UpstreamTimeouts,
  type UpstreamSemantics,
  type AuditQueryMode,
} from '../config/schema.js';
import type { PolicySource } from '../policy/types.js';
import type { BudgetAuthority } from './budgets.js';
import type { CredentialVault } from './credentials.js';
import type { UpstreamResolver } from './resolve.js';
import type { SessionTable } from './sessions.js';
import type { LeafCache } from './tls/leaf-cache.js';

/** HTTPS interception settings (docs/tls.md). */
export interface InterceptOptions {
  /** Mints leaf certificates signed by the installation CA. */
  leaves: LeafCache;
  /** Hosts (policy host form: `name` or `name:port`) tunnelled unopened where a rule grants CONNECT. */
  passthrough?: readonly string[];
}

/** Idle keep-alive time of sandbox connections, ms (Node's default of 5 s makes clients reconnect). */
export const CLIENT_KEEP_ALIVE_MS = 60_000;

/** Options as a caller gives them. Durations in ms. */
export interface GatewayOptionsInput extends Partial<UpstreamTimeouts> {
  policy: PolicySource;
  sessions: SessionTable;
  audit: AuditSink;
  resolver: UpstreamResolver;
  /** Idle keep-alive time for sandbox connections, ms. @default CLIENT_KEEP_ALIVE_MS (60000) */
  clientKeepAliveMs?: number;
  /** Extra CA certificates (PEM) trusted for upstream TLS besides the system roots. */
  upstreamCaPem?: string;
  /** HTTPS interception. Without it, CONNECT is only ever a passthrough tunnel granted by a rule. */
  intercept?: InterceptOptions;
  /**
   * How upstreams read paths, by policy host (`gateway.upstreams`): hosts declared
   * `pathCase: insensitive` have their path lowercased before the decision and forwarded so.
   */
  upstreams?: Readonly<Record<string, UpstreamSemantics>>;
  /** How audit events record a request's query (`audit.query`). @default "digest" */
  auditQuery?: AuditQueryMode;
  /**
   * Per-session limits and client timeouts (`gateway.limits.*`, docs/config.md); each key optional,
   * defaults from the config schema's `gatewayLimitsSchema`.
   */
  limits?: GatewayLimitsInput;
  /**
   * Credential values for credentials.yaml (docs/credentials.md): injection into allowed calls and
   * the known-secret leak stop. Absent: credentials.yaml is ignored. The caller owns it (closes it).
   */
  credentials?: CredentialVault;
  /** Called with the credential's name on every exfiltration attempt refused (a metric). */
  onExfiltration?: (credential: string) => void;
  /**
   * `audit.onFailure: deny`: returns false while the audit sink cannot write, and every new call is
   * then refused `audit_unavailable` before it is decided (decide.ts step 0). Absent: never refused so.
   */
  auditAvailable?: () => boolean;
  /**
   * Where budgets.yaml's counters live: a worker of a multi-worker gateway passes the primary's
   * (budgets.ts `SharedBudgets`). @default a `BudgetCounters` of this gateway
   */
  budgets?: BudgetAuthority;
  /**
   * Settles calls that `ask` rules match, by asking the control plane (approvals.ts,
   * docs/approvals.md). @default none: such calls are refused 503 `approval_unavailable`.
   */
  approvals?: ApprovalGate;
}

/** Options with every default applied: what `EgressGateway` takes. */
export type GatewayOptions = Omit<
  GatewayOptionsInput,
  keyof UpstreamTimeouts | 'clientKeepAliveMs' | 'limits'
> &
  UpstreamTimeouts & { clientKeepAliveMs: number; limits: GatewayLimits };

/**
 * Applies the defaults. @throws ZodError when a duration is not a positive integer (ms) or a limit
 * is out of range (its path names the key inside `limits`, e.g. `clientRequestTimeoutMs`).
 */
export function withGatewayDefaults(input: GatewayOptionsInput): GatewayOptions {
  const timeouts = upstreamTimeoutsSchema.parse({
    connectTimeoutMs: input.connectTimeoutMs,
    headersTimeoutMs: input.headersTimeoutMs,
    bodyTimeoutMs: input.bodyTimeoutMs,
  });
  return {
    ...input,
    ...timeouts,
    clientKeepAliveMs: input.clientKeepAliveMs ?? CLIENT_KEEP_ALIVE_MS,
    limits: gatewayLimitsSchema.parse(input.limits ?? {}),
  };
}
