/**
 * The gateway's side of approvals (docs/approvals.md): a call an `ask` rule matched is bound to
 * exactly what would be forwarded — session, the method the upstream executes, the canonical URL and
 * the SHA-256 of the body — and the control plane, which holds every approval, is asked whether a
 * person approved exactly that (src/gateway-wire/approvals.ts). The gateway never decides an approval
 * itself, so "approved once" means once across all gateway replicas and workers.
 *
 * Fail closed: without a control plane to ask, or when it does not answer, the call is refused 503
 * `approval_unavailable` and nothing is forwarded.
 */
import { createHash } from 'node:crypto';
import { Agent, request } from 'undici';
import {
  APPROVAL_PREVIEW_BYTES,
  claimAnswerSchema,
  type ClaimAnswer,
  type ClaimRequestInput,
} from '../gateway-wire/approvals.js';
import type { GatewaySession } from '../gateway-wire/session.js';
import type { PolicyDecision } from '../policy/types.js';
import type { Exchange, Refusal } from './exchange.js';

/** Where the control plane's approvals endpoint is (gateway config `approvals`). */
export interface ApprovalClientOptions {
  /** Base URL, e.g. `http://airlock-controller:8081` or `http://localhost` with `socketPath`. */
  url: string;
  /** A unix socket to reach `url` through (Docker: mounted into the gateway container only). */
  socketPath?: string;
  /** Bearer token (the gateway admin token, which the control plane shares). */
  token: string;
}

/** Asks the control plane about one request; see {@link ApprovalClient.claim}. */
export class ApprovalClient {
  readonly #url: string;
  readonly #token: string;
  readonly #agent: Agent;

  constructor(opts: ApprovalClientOptions) {
    this.#url = `${opts.url.replace(/\/+$/, '')}/internal/v1/approvals/claim`;
    this.#token = opts.token;
    this.#agent = new Agent({
      connections: 16,
      ...(opts.socketPath ? { connect: { socketPath: opts.socketPath } } : {}),
    });
  }

  /**
   * `POST /internal/v1/approvals/claim`.
   * @param timeoutMs how long to wait for the answer in all (hold time + a margin).
   * @throws Error when the control plane cannot be reached, times out, or answers other than 200
   *   with a valid {@link ClaimAnswer}.
   */
  async claim(body: ClaimRequestInput, timeoutMs: number): Promise<ClaimAnswer> {
    const res = await request(this.#url, {
      method: 'POST',
      dispatcher: this.#agent,
      headers: { authorization: `Bearer ${this.#token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200)
      throw new Error(`control plane answered ${res.statusCode}: ${text.slice(0, 200)}`);
    return claimAnswerSchema.parse(JSON.parse(text));
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

/** How long the gateway holds calls for a decision (`approvals.holdSeconds`, docs/approvals.md). */
export interface HoldSettings {
  /** Default for every ask rule, seconds; 0: answer `approval_required` at once. */
  holdSeconds: number;
  /** Per ask rule, by its text without location (`p, analyst, forum.test, /comments, POST, ask`). */
  holdRules: Readonly<Record<string, number>>;
}

/** Extra time allowed beyond the hold for the control plane's answer, ms. */
const ANSWER_MARGIN_MS = 5_000;

/** The rule's text without its `policy.csv:12: ` location. */
function ruleText(rule: string | null): string {
  if (rule === null) return '';
  const i = rule.indexOf(': ');
  return i === -1 ? rule : rule.slice(i + 2);
}

/** What {@link ApprovalGate.settle} needs of the request. */
export interface AskedRequest {
  x: Exchange;
  session: GatewaySession;
  decision: PolicyDecision;
  /** The method the upstream executes. */
  method: string;
  /** Version of the policy that decided. */
  policyVersion: string;
  body: Buffer;
  contentType: string;
  /**
   * What the approval is bound to instead of the body's SHA-256 (MCP: the decided messages without
   * their JSON-RPC ids, mcp.ts `mcpApprovalBinding`); absent: the body's hash.
   */
  bindingSha256?: string;
}

/** Settles calls that `ask` rules matched, one control-plane claim each. */
export class ApprovalGate {
  constructor(
    private readonly client: ApprovalClient | null,
    private readonly hold: HoldSettings,
  ) {}

  /** The hold time for an ask rule, ms. */
  holdMs(rule: string | null): number {
    const perRule = this.hold.holdRules[ruleText(rule)];
    return Math.round((perRule ?? this.hold.holdSeconds) * 1000);
  }

  /**
   * Binds the request, asks the control plane, maps its answer.
   * @returns approved (one use spent), or the refusal to answer; never throws.
   */
  async settle(a: AskedRequest): Promise<{ kind: 'approved'; approvalId: string } | Refusal> {
    const { x, session, decision } = a;
    const version = a.policyVersion;
    const base = {
      sessionId: session.id,
      role: session.role,
      method: a.method,
      url: x.urlWithQuery,
      policyVersion: version,
      rule: decision.rule,
    };
    const unavailable = (why: string): Refusal => ({
      kind: 'refuse',
      reason: 'approval_unavailable',
      rule: decision.rule,
      policyVersion: version,
      body: {
        error: 'approval_unavailable',
        detail: `this call needs a person's approval (${ruleText(decision.rule)}), and the control plane that holds approvals cannot be asked (${why}); nothing was sent`,
        sessionId: session.id,
      },
    });
    if (this.client === null) return unavailable('no control plane is configured for this gateway');
    const waitMs = this.holdMs(decision.rule);
    let answer: ClaimAnswer;
    try {
      answer = await this.client.claim(
        {
          sessionId: session.id,
          role: session.role,
          creator: session.creator ?? '',
          method: a.method,
          url: x.urlWithQuery,
          bodySha256: a.bindingSha256 ?? createHash('sha256').update(a.body).digest('hex'),
          bodyBytes: a.body.length,
          contentType: a.contentType.slice(0, 256),
          preview: a.body.subarray(0, APPROVAL_PREVIEW_BYTES).toString('base64'),
          rule: decision.rule ?? '',
          policyVersion: version,
          waitMs,
        },
        waitMs + ANSWER_MARGIN_MS,
      );
    } catch (err) {
      return unavailable(err instanceof Error ? err.message : String(err));
    }
    x.approvalId = answer.approvalId || null;
    if (answer.status === 'approved') return { kind: 'approved', approvalId: answer.approvalId };
    const timeout = answer.status === 'timeout';
    const hint =
      answer.status === 'pending'
        ? `This call needs a person's approval (${ruleText(decision.rule)}). Approval ${answer.approvalId} ` +
          'is pending: wait until it is approved, then retry exactly the same request (same method, URL ' +
          'and body); it will be forwarded. A different body needs a new approval. This is a policy ' +
          'decision, not a network fault.'
        : answer.status === 'timeout'
          ? `No one approved ${answer.approvalId} within ${waitMs / 1000} s. It stays pending; retry the same request later.`
          : answer.status === 'denied'
            ? `A person denied this exact request (${answer.detail}). Do not retry it; a changed request needs its own approval.`
            : `This call cannot be approved: ${answer.detail}`;
    return {
      kind: 'refuse',
      reason: timeout ? 'approval_timeout' : 'approval_required',
      rule: decision.rule,
      policyVersion: version,
      body: {
        error: timeout ? 'approval_timeout' : 'approval_required',
        ...base,
        approvalId: answer.approvalId || null,
        hint,
      },
    };
  }

  async close(): Promise<void> {
    await this.client?.close();
  }
}
