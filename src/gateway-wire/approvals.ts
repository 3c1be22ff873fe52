/**
 * The approval claim: how a gateway asks the control plane about a call an `ask` rule matched
 * (docs/approvals.md). The control plane holds every approval; a gateway never decides one itself, so
 * a single-use approval is used exactly once whatever the number of gateway replicas or workers.
 *
 * `POST /internal/v1/approvals/claim` with a {@link ClaimRequest}, bearer = the gateway admin token
 * (Docker: over a unix socket mounted only into the gateway container; Kubernetes: the controller's
 * internal port). The answer is a {@link ClaimAnswer}.
 */
import { z } from 'zod';

/** Largest body preview a gateway sends with a claim, in bytes (the approver sees this much). */
export const APPROVAL_PREVIEW_BYTES = 4096;

/** The request an approval is bound to, as the gateway saw it, plus what the approver needs. */
export const claimRequestSchema = z.strictObject({
  sessionId: z.string().min(1),
  role: z.string().min(1),
  /** The session's creator (API caller), empty when none. */
  creator: z.string().default(''),
  /** The method the upstream executes (the method override when there is one), uppercase. */
  method: z.string().min(1),
  /** Canonical URL: scheme, policy host, normalised path, and the query as forwarded. */
  url: z.string().min(1),
  /** Lowercase hex SHA-256 of the request body (of the empty string when there is none). */
  bodySha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Body size in bytes. */
  bodyBytes: z.number().int().min(0),
  /** The request's Content-Type, or empty. */
  contentType: z.string().max(256).default(''),
  /** The first {@link APPROVAL_PREVIEW_BYTES} bytes of the body, base64. */
  preview: z.string().max(Math.ceil(APPROVAL_PREVIEW_BYTES / 3) * 4 + 4),
  /** The `ask` rule that matched (`policy.csv:12: p, analyst, ...`). */
  rule: z.string(),
  policyVersion: z.string(),
  /**
   * Hold mode: wait this long (ms) for a person's decision before answering `pending`; 0 answers
   * at once.
   */
  waitMs: z.number().int().min(0).max(600_000).default(0),
});
export type ClaimRequest = z.infer<typeof claimRequestSchema>;
export type ClaimRequestInput = z.input<typeof claimRequestSchema>;

/**
 * The control plane's answer:
 * - `approved`: an approval for exactly this request had a use left; one use is now spent, forward.
 * - `pending`: a person has not decided yet (a new approval was opened, or one is already open for
 *   exactly this request); refuse `approval_required` with `approvalId`.
 * - `denied`: a person denied exactly this request; refuse with their reason.
 * - `timeout`: hold mode only: no decision within `waitMs`.
 * - `refused`: the control plane cannot open an approval (unknown or ended session); refuse.
 */
export const claimAnswerSchema = z.strictObject({
  status: z.enum(['approved', 'pending', 'denied', 'timeout', 'refused']),
  approvalId: z.string(),
  /** Who decided and why (approved/denied), or why refused. */
  detail: z.string().default(''),
});
export type ClaimAnswer = z.infer<typeof claimAnswerSchema>;

/** A time-boxed grant as the gateway receives it with the session (docs/approvals.md "Grants"). */
export const sessionGrantSchema = z.strictObject({
  id: z.string().min(1),
  /** Rule fields with the policy's pattern syntax: host pattern, path pattern, method pattern. */
  host: z.string().min(1),
  path: z.string().min(1),
  method: z.string().min(1),
  /** Expiry, ms since the epoch; the gateway stops honouring the grant at this instant. */
  expiresAt: z.number().int(),
});
export type SessionGrant = z.infer<typeof sessionGrantSchema>;
