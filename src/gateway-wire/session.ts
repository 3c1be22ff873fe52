/**
 * The gateway's session wire schema: what the control plane registers with a gateway (admin API body,
 * GatewayControl calls) and what a gateway session source puts in its table. One zod schema; the type
 * is inferred from it.
 */
import { z } from 'zod';
import { sessionGrantSchema } from './approvals.js';

/** What the gateway needs to know about a session: no secret in clear, only its SHA-256. */
export const gatewaySessionSchema = z.strictObject({
  /** Session id (`s-` + 16 hex for sessions the control plane creates; at most 64 of `[A-Za-z0-9_-]`). */
  id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  /** Policy role the session's calls are decided as. */
  role: z.string().min(1).max(128),
  /** The sandbox's IP address on its session network; requests from any other address are refused. */
  address: z.string().min(2).max(45),
  /** Hex SHA-256 of the session credential sent in Proxy-Authorization. */
  credentialSha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Expiry as epoch ms; the gateway refuses the session from this instant on its own. */
  expiresAtMs: z.number().int().positive(),
  /**
   * The API caller (token name) that created the session. When the policy gives this caller egress
   * rules of its own, the session's calls must be allowed by them too (docs/policy.md "Delegation").
   * Absent (older control planes, sessions without a recorded creator): no creator limit.
   */
  creator: z.string().min(1).max(256).optional(),
  /**
   * Credential placeholders of the session (docs/credentials.md "Placeholders"): credential name →
   * the per-session random value set in the sandbox's environment. Not secrets (worthless outside
   * the session's bindings); the gateway swaps one for the real value only where a binding of the
   * session applies, and refuses it anywhere else. Absent: none.
   */
  placeholders: z
    .record(
      z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/),
      z.string().regex(/^airlock-ph-[A-Za-z0-9_.-]{1,64}-[0-9a-f]{32}$/),
    )
    .optional(),
  /**
   * Time-boxed grants of the session (docs/approvals.md "Grants"): extra allow rules a person gave
   * it, each until `expiresAt`. Deny and ask rules still win. Absent: none.
   */
  grants: z.array(sessionGrantSchema).max(256).optional(),
});

/** A session as the gateway holds it (see `gatewaySessionSchema` for each field). */
export type GatewaySession = z.infer<typeof gatewaySessionSchema>;

/** Body of the admin API's resync call (`PUT /admin/sessions`): the whole table. */
export const gatewaySyncSchema = z.strictObject({ sessions: z.array(gatewaySessionSchema) });
