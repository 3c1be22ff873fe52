/**
 * The shapes the console reads from the API (src/api/schemas.ts: sessionSummarySchema,
 * policyStatusSchema, auditEventSchema; only the fields the console uses).
 */
export interface SessionSummary {
  id: string;
  role: string;
  status: 'running' | 'stopping' | 'stopped';
  image: string;
  createdAt: string;
  expiresAt: string;
  createdBy: string;
  labels: Record<string, string>;
  allowed: number;
  denied: number;
}

export interface PolicyStatus {
  version: string | null;
  loadedAt: string | null;
  rules: number | null;
  lastError: string | null;
}

export interface Decision {
  time: string;
  sessionId: string | null;
  role: string | null;
  method: string;
  scheme: 'http' | 'https';
  host: string;
  port: number;
  path: string;
  /** `would_deny`: denied by the rules, forwarded in complain mode. */
  decision: 'allow' | 'deny' | 'would_deny';
  rule: string | null;
  reason: string;
  status: number;
  durationMs: number;
}

/** One frame of `GET /v1/events`. */
export type StreamEvent =
  | { event: 'hello'; data: { caller: string; sessionId: string | null } }
  | { event: 'sessions'; data: { sessions: SessionSummary[] } }
  | { event: 'policy'; data: PolicyStatus }
  | { event: 'decision'; data: Decision }
  | { event: 'end'; data: { sessionId: string } };

/** A call an ask rule matched, waiting for a person (src/api/schemas.ts approvalSchema). */
export interface Approval {
  id: string;
  status: 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'used';
  sessionId: string;
  role: string;
  sessionCreator: string;
  method: string;
  url: string;
  bodySha256: string;
  bodyBytes: number;
  contentType: string;
  bodyText: string | null;
  rule: string;
  requestedAt: string;
  pendingUntil: string;
  decidedBy: string | null;
  reason: string | null;
}

/** One frame of `GET /v1/approvals/stream`: the change's type and the approval as it is now. */
export interface ApprovalEvent {
  event: Approval['status'] | 'requested';
  data: Approval;
}
