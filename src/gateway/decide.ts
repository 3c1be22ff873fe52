/**
 * Steps 3 and 4 of the gateway's request path, the same for plain HTTP, HTTP inside an intercepted
 * tunnel and CONNECT: {@link decide} turns an identified {@link Exchange} into an {@link Outcome}.
 * It writes nothing to any socket and does not audit; the caller answers the outcome and finishes
 * the exchange. In this order (the first that applies wins):
 *
 * 0. the audit sink cannot write (disk full, file unwritable) and `audit.onFailure` is `deny` (the
 *    default; {@link DecideContext.auditAvailable}) → refuse `audit_unavailable` (503, reason
 *    `audit_unavailable`; fail closed like auditd's `disk_full_action`), before anything is asked;
 * 1. `airlock.api`, the pseudo-host of management rules, is never a destination, whatever a rule
 *    says → refuse `destination_refused` (reason `destination_refused`);
 * 2. no valid policy is loaded → refuse `egress_denied` (reason `no_policy`; fail closed);
 *    2b. known secrets (credentials.yaml, credentials.ts; HTTP requests only): the request's URL or a
 *    header carries the value of a credential the gateway holds, or one of the session's
 *    placeholders, other than in the header (or query parameter) the binding of this call would set
 *    → refuse `credential_not_bound` (reason `exfiltration_attempt`), before any rule is asked, so
 *    even a call the rules deny is recorded as the attempt it is;
 * 3. `intercept` mode (a CONNECT the gateway will open): the session's role — and its creator, when
 *    the creator has egress rules — must have an allow rule naming this host (and port) → refuse
 *    `egress_denied` (`no_match`) or outcome `intercept` (every request inside is decided on its own);
 * 4. the policy decides (role, host, path, method) with deny-override, and (creator, host, path,
 *    method) when the creator has egress rules (policy/delegation.ts); a CONNECT is decided with
 *    path `/` → refuse `egress_denied` (`rule_deny` / `no_match`, the creator's hint when the creator
 *    denied);
 *    — and the overriding method as well when the request carries a method override (ambiguity.ts);
 *    4a. complain mode (modes.yaml, {@link complainsAbout}): a denial of an HTTP request whose
 *    methods are all safe (GET, HEAD, OPTIONS), for a role in complain mode and no creator limit, is
 *    not enforced: the call goes on through steps 5-7 (budgets, address checks) without any
 *    credential, audited `would_deny` with the denial's reason and rule (`x.wouldDeny`); in step 3
 *    such a role's tunnel opens (audited `would_deny`, `no_match`) so the requests inside are decided;
 * 5. the policy's budgets (budgets.yaml; counters in budgets.ts): a call over a budget of its role
 *    and host → refuse `budget_exceeded` (429, `Retry-After`, reason `budget_exceeded`); otherwise
 *    the call is counted (requests now, body bytes as they flow: the outcome's `meter`);
 * 6. the host is resolved once and every address checked (resolve.ts, DESIGN.md property 6) →
 *    refuse `destination_refused`, or `upstream_unreachable` when it does not resolve (a failure of
 *    an allowed call, audited as allow with reason `upstream_error`);
 * 7. outcome `allow` with the checked address to dial, and the credential to inject: the first
 *    binding of credentials.yaml for the session's role matching the call (host, path, the method
 *    the upstream executes) — only ever for an allowed call, so a deny rule still wins — or refuse
 *    `credential_unavailable` (503) when the bound credential has no value;
 * 7b. (proxy.ts, after buffering the body of an allowed call, {@link decideBody}) the body carries a
 *    held value or a placeholder → refuse `credential_not_bound` as in 2b.
 *
 * Per-session limits (limits.ts: requests in flight, connections, tunnels) are checked by the caller
 * before step 1, right after identification.
 */
import { API_HOST, decideEgress, delegationOf, sessionMayReachHost } from '../policy/delegation.js';
import { SAFE_METHODS } from '../policy/modes.js';
import type { PolicyDecision, PolicySnapshot, PolicySource } from '../policy/types.js';
import { grantMatcher } from '../policy/grants.js';
import type { GatewaySession } from '../gateway-wire/session.js';
import { appliedAs, type CredentialMatch } from '../policy/credentials.js';
import { isDynamicApply } from '../policy/credential-kinds.js';
import { dynamicRequest } from './credential-dynamic.js';
import type { BudgetAuthority, BudgetExceeded, BudgetMeter } from './budgets.js';
import type { CredentialVault, InjectedCredential, LeakFinding, ScannedRequest } from './credentials.js';
import type { Exchange, Refusal } from './exchange.js';
import type { UpstreamResolver } from './resolve.js';
import {
  AUDIT_UNAVAILABLE_DETAIL,
  creatorDenyHint,
  denyHint,
  NO_POLICY_HINT,
  RESERVED_HOST_DETAIL,
} from './responses.js';

/** What the gateway does with an identified call. */
export type Outcome =
  /**
   * Forward to (or tunnel to) `address`, the resolved and checked upstream address; `meter` counts
   * the call's body bytes against its budgets (null: no bytes budget applies).
   */
  | {
      kind: 'allow';
      rule: string | null;
      policyVersion: string;
      /** The snapshot that decided: later steps (MCP messages) decide against the same one. */
      policy: PolicySnapshot;
      address: string;
      meter: BudgetMeter | null;
      /** The credential the gateway sets on the forwarded request (credentials.yaml), or null. */
      credential: InjectedCredential | null;
    }
  /** Open the CONNECT tunnel and decide every request inside on its own. */
  | { kind: 'intercept'; policyVersion: string }
  | Refusal;

/** How the call will be carried: forwarded/relayed (`forward`) or opened by the gateway (`intercept`). */
export type DecideMode = 'forward' | 'intercept';

/** What {@link decide} consults. */
export interface DecideContext {
  policy: PolicySource;
  resolver: UpstreamResolver;
  /** The budget counters (step 5): this process's, or the primary's; absent: not enforced (unit tests). */
  budgets?: BudgetAuthority;
  /** Credential values (step 2b and 7); absent: credentials.yaml is ignored. */
  credentials?: CredentialVault;
  /** Called with the credential's name on each exfiltration attempt (a metric). */
  onExfiltration?: (credential: string) => void;
  /** Step 0: false while the audit cannot be written (`audit.onFailure: deny`); absent: not checked. */
  auditAvailable?: () => boolean;
}

function egressDenied(
  x: Exchange,
  session: GatewaySession,
  reason: Refusal['reason'],
  rule: string | null,
  policyVersion: string | null,
  hint: string,
): Refusal {
  return {
    kind: 'refuse',
    reason,
    rule,
    policyVersion,
    body: {
      error: 'egress_denied',
      sessionId: session.id,
      role: session.role,
      method: x.method,
      url: x.url,
      policyVersion,
      hint,
    },
  };
}

/** The 429 of a call over a budget (step 5): the deny body's fields plus the budget. */
function budgetExceeded(
  x: Exchange,
  session: GatewaySession,
  over: BudgetExceeded,
  rule: string | null,
  policyVersion: string,
): Refusal {
  const b = over.budget;
  const figure =
    over.what === 'requestsPerMinute'
      ? `${b.requestsPerMinute} requests per minute`
      : `${b.bytesOutPerHour} request-body bytes per hour`;
  return {
    kind: 'refuse',
    reason: 'budget_exceeded',
    rule,
    policyVersion,
    body: {
      error: 'budget_exceeded',
      sessionId: session.id,
      role: session.role,
      method: x.method,
      url: x.url,
      policyVersion,
      budget: b.name,
      retryAfterSeconds: over.retryAfterSeconds,
      hint:
        `Airlock egress policy allows this call, but budget "${b.name}" (${figure} for role ` +
        `"${b.role}" on ${b.host === '*' ? 'every host' : b.host}, per ${b.per}) is used up. Retry ` +
        `after ${over.retryAfterSeconds} s; a larger budget is a change to budgets.yaml in the policy repository.`,
    },
    headers: { 'retry-after': String(over.retryAfterSeconds) },
  };
}

/** Where a leak was found, for the refusal's sentence. */
function leakPlace(where: string): string {
  if (where === 'url') return 'in its URL';
  if (where === 'body') return 'in its body';
  return `in its ${where.slice(7)} header`;
}

/**
 * The refusal of a request carrying a held value or a placeholder outside its binding (step 2b, and
 * the body scan of an allowed call, {@link decideBody}): 403 `credential_not_bound`, reason
 * `exfiltration_attempt`, the credential's name and version (never the value) on the exchange, and
 * the exfiltration metric counted.
 */
export function leakRefusal(
  x: Exchange,
  session: GatewaySession,
  leak: LeakFinding,
  policy: PolicySnapshot,
  ctx: DecideContext,
): Refusal {
  ctx.onExfiltration?.(leak.credential);
  x.secretFoundIn = leak.placeholder ? `${leak.where}:placeholder` : leak.where;
  const def = policy.credentials?.definitions.find((d) => d.name === leak.credential);
  x.credential = {
    name: leak.credential,
    version: def && ctx.credentials ? ctx.credentials.versionOf(def) : null,
  };
  const what = leak.placeholder
    ? `the placeholder of credential "${leak.credential}"`
    : `the value of credential "${leak.credential}"`;
  return {
    kind: 'refuse',
    reason: 'exfiltration_attempt',
    rule: null,
    policyVersion: policy.version,
    body: {
      error: 'credential_not_bound',
      detail:
        `the request carries ${what} (${leakPlace(leak.where)}), where no binding of your role puts it. ` +
        'The gateway adds credentials itself where the policy binds them; a request that carries one elsewhere is refused and recorded.',
      sessionId: session.id,
    },
  };
}

/**
 * Step 7b, for an allowed HTTP call whose body the gateway buffered (proxy.ts): the body must carry
 * no held value and none of the session's placeholders, in any searched form.
 * @returns the refusal ({@link leakRefusal}) or null.
 */
export function decideBody(
  x: Exchange,
  session: GatewaySession,
  body: Buffer,
  policy: PolicySnapshot,
  ctx: DecideContext,
): Refusal | null {
  const leak = ctx.credentials?.findLeakInBody(body, session) ?? null;
  return leak ? leakRefusal(x, session, leak, policy, ctx) : null;
}

/**
 * Settles an `ask` decision of an HTTP request (docs/approvals.md; built by proxy.ts per request): reads
 * and hashes the body, asks the control plane for an approval of exactly this request.
 * @param decision the `rule_ask` decision; @param method the method the upstream executes;
 * @param policyVersion the version of the policy that decided.
 * @returns `approved` (one use spent) or the refusal (`approval_required`, `approval_timeout`,
 *   `approval_unavailable`, `body_too_large`, `client_timeout`).
 */
export type AskHandler = (
  decision: PolicyDecision,
  method: string,
  policyVersion: string,
) => Promise<{ kind: 'approved'; approvalId: string } | Refusal>;

/**
 * Complain mode (modes.yaml, src/policy/modes.ts) applies to the session: its role is listed there,
 * and no creator limits it (a creator's egress rules are enforced whatever the role's mode, so
 * complain mode never widens what a creator hands on).
 */
function inComplainMode(policy: PolicySnapshot, session: GatewaySession): boolean {
  if (!policy.complainRoles?.has(session.role)) return false;
  return !session.creator || !delegationOf(policy).hasEgressRules(session.creator);
}

/**
 * Whether a denial of this call is only recorded (step 4a): complain mode applies to the session,
 * the call is an HTTP request (`request` present: plain or inside an intercepted tunnel — never a
 * relayed CONNECT or a WebSocket channel, which carry anything) and every method the upstream may
 * execute is safe: the wire method and, when the request carries one, the overriding method.
 */
function complainsAbout(
  policy: PolicySnapshot,
  session: GatewaySession,
  x: Exchange,
  request: ScannedRequest | undefined,
): boolean {
  if (request === undefined || !SAFE_METHODS.has(x.method)) return false;
  if (x.methodOverride !== null && !SAFE_METHODS.has(x.methodOverride)) return false;
  return inComplainMode(policy, session);
}

/**
 * Decides an identified call (see the module comment for the order of steps).
 * @param x the exchange, with its target set and `session` the identified session.
 * @param mode `intercept` only for a CONNECT the gateway will terminate itself.
 * @param contentLength the request's declared body size (null: none declared), for bytes budgets.
 * @param request the raw request target and headers of an HTTP request (plain or intercepted), for
 *   the known-secret scan and credential injection; of a WebSocket handshake, for the scan only (no
 *   credential is injected into it); absent (CONNECT): neither happens.
 * @param ask settles a call an `ask` rule matched (step 4b); absent (CONNECT, WebSocket): such a
 *   call is refused `approval_required`.
 * @returns the outcome; never throws for a policy or DNS answer.
 */
export async function decide(
  x: Exchange,
  session: GatewaySession,
  mode: DecideMode,
  ctx: DecideContext,
  contentLength: number | null = null,
  request?: ScannedRequest,
  ask?: AskHandler,
): Promise<Outcome> {
  const policy = ctx.policy.current();
  const version = policy?.version ?? null;
  if (ctx.auditAvailable && !ctx.auditAvailable()) {
    return {
      kind: 'refuse',
      reason: 'audit_unavailable',
      rule: null,
      policyVersion: version,
      body: { error: 'audit_unavailable', detail: AUDIT_UNAVAILABLE_DETAIL, sessionId: session.id },
    };
  }
  if (x.host === API_HOST) {
    return {
      kind: 'refuse',
      reason: 'destination_refused',
      rule: null,
      policyVersion: version,
      body: { error: 'destination_refused', detail: RESERVED_HOST_DETAIL, sessionId: session.id },
    };
  }
  if (!policy) return egressDenied(x, session, 'no_policy', null, null, NO_POLICY_HINT);

  // Step 2b: known secrets and the session's placeholders. Only with credentials.yaml (the feature
  // is off without one), or for a session given placeholders by an earlier policy.
  const vault = ctx.credentials;
  const creds = policy.credentials;
  let binding: CredentialMatch | null = null;
  if (vault && request && mode === 'forward') {
    // A WebSocket handshake is scanned but never gets a credential (nothing is exempt either).
    if (creds && creds.size > 0 && x.method !== 'WEBSOCKET') {
      if (!vault.isSynced(creds)) await vault.sync(creds);
      binding = creds.match(session.role, x.policyHost, x.path, x.methodOverride ?? x.method);
    }
    const leak = vault.findLeak(request, binding ? appliedAs(binding.credential.apply) : null, session);
    if (leak) return leakRefusal(x, session, leak, policy, ctx);
  }

  if (mode === 'intercept') {
    if (!policy.mayReachHost(session.role, x.policyHost)) {
      if (!inComplainMode(policy, session))
        return egressDenied(x, session, 'no_match', null, version, denyHint(session.role, x.method, x.url));
      // Step 4a for the tunnel (no creator limits this session): complain mode opens it, and each
      // request inside is decided on its own.
      x.wouldDeny = { reason: 'no_match', rule: null };
      return { kind: 'intercept', policyVersion: policy.version };
    }
    if (!sessionMayReachHost(policy, session.role, session.creator, x.policyHost)) {
      const hint = creatorDenyHint(session.role, session.creator ?? '', x.method, x.url);
      return egressDenied(x, session, 'no_match', null, version, hint);
    }
    return { kind: 'intercept', policyVersion: policy.version };
  }

  const grant = grantMatcher(session.grants, Date.now());
  const egress = decideEgress(
    policy,
    {
      role: session.role,
      host: x.policyHost,
      path: x.method === 'CONNECT' ? '/' : x.path,
      method: x.method,
    },
    session.creator,
    grant,
  );
  const by = egress.by;
  let decision = egress.decision;
  // Step 4b, `ask` rules (docs/approvals.md): deny > ask > allow, over the wire method and the
  // overriding method alike; the call goes on only with a person's approval of exactly this request.
  let asked: PolicyDecision | null = decision.reason === 'rule_ask' ? decision : null;
  // Step 4a, complain mode: the first denial (wire method, then overriding method) is recorded, not enforced.
  const complain = complainsAbout(policy, session, x, request);
  let wouldDeny: PolicyDecision | null = null;
  if (!decision.allowed && asked === null) {
    const hint =
      by === 'creator'
        ? creatorDenyHint(session.role, session.creator ?? '', x.method, x.url)
        : denyHint(session.role, x.method, x.url);
    const reason = decision.reason as Refusal['reason'];
    if (!complain) return egressDenied(x, session, reason, decision.rule, policy.version, hint);
    wouldDeny = decision;
  }
  if (x.methodOverride !== null) {
    // The upstream will execute the overriding method (ambiguity.ts): it must be allowed too.
    const over = decideEgress(
      policy,
      { role: session.role, host: x.policyHost, path: x.path, method: x.methodOverride },
      session.creator,
      grant,
    );
    if (over.decision.reason === 'rule_ask') asked ??= over.decision;
    else if (!over.decision.allowed) {
      const method = `${x.methodOverride} (a method override on ${x.method})`;
      const hint =
        over.by === 'creator'
          ? creatorDenyHint(session.role, session.creator ?? '', method, x.url)
          : denyHint(session.role, method, x.url);
      if (!complain)
        return egressDenied(x, session, over.decision.reason, over.decision.rule, policy.version, hint);
      wouldDeny ??= over.decision;
    }
  }
  if (wouldDeny !== null) {
    // Step 4a: audited `would_deny` with the denial's reason and rule; never a credential for it.
    x.wouldDeny = { reason: wouldDeny.reason as Refusal['reason'], rule: wouldDeny.rule };
    binding = null;
  }
  if (asked !== null) {
    if (!ask) {
      // A CONNECT relayed unopened or a WebSocket handshake: no request body a person could approve.
      return {
        kind: 'refuse',
        reason: 'approval_required',
        rule: asked.rule,
        policyVersion: policy.version,
        body: {
          error: 'approval_required',
          sessionId: session.id,
          role: session.role,
          method: x.method,
          url: x.url,
          policyVersion: policy.version,
          approvalId: null,
          rule: asked.rule,
          hint:
            `${x.method} ${x.url} matches an ask rule (${asked.rule ?? ''}), and only HTTP requests ` +
            'can be approved, not a tunnel or a WebSocket channel: this call cannot be made.',
        },
      };
    }
    const verdict = await ask(asked, x.methodOverride ?? x.method, policy.version);
    if (verdict.kind === 'refuse') return verdict;
    x.approvalId = verdict.approvalId;
    decision = { allowed: true, reason: 'rule_allow', rule: asked.rule };
  }

  let meter: BudgetMeter | null = null;
  if (ctx.budgets && policy.budgets && policy.budgets.size > 0) {
    const method = x.methodOverride ?? x.method;
    const b = await ctx.budgets.admit(policy.budgets, session, x.policyHost, method, contentLength);
    if (!b.ok) return budgetExceeded(x, session, b, decision.rule, policy.version);
    meter = b.meter;
  }

  const resolution = await ctx.resolver.resolve(x.host);
  if (!resolution.ok) {
    if (resolution.reason === 'refused') {
      return {
        kind: 'refuse',
        reason: 'destination_refused',
        rule: decision.rule,
        policyVersion: policy.version,
        body: {
          error: 'destination_refused',
          detail: `${x.host} resolves to a ${resolution.addressClass} address, which the gateway does not dial`,
          sessionId: session.id,
        },
      };
    }
    return {
      kind: 'refuse',
      reason: 'upstream_error',
      rule: decision.rule,
      policyVersion: policy.version,
      body: {
        error: 'upstream_unreachable',
        detail: `cannot resolve ${x.host} (${resolution.detail})`,
        sessionId: session.id,
      },
    };
  }
  let credential: InjectedCredential | null = null;
  if (binding && vault) {
    // Read after DNS: a rotation during the lookup is used at once.
    let unavailable = 'has no value at the gateway';
    if (isDynamicApply(binding.credential.apply) && request) {
      // SigV4 and OAuth2 (credential-dynamic.ts): signed or fetched for this very request.
      const got = await vault.injectDynamic(binding, dynamicRequest(x, request));
      if (got.kind === 'bad_request') {
        x.credential = { name: binding.credential.name, version: vault.versionOf(binding.credential) };
        return {
          kind: 'refuse',
          reason: 'bad_request',
          rule: decision.rule,
          policyVersion: policy.version,
          body: { error: 'bad_request', detail: got.detail, sessionId: session.id },
        };
      }
      if (got.kind === 'inject') credential = got.credential;
      else unavailable = `is unavailable: ${got.reason}`;
    } else credential = vault.inject(binding);
    if (!credential) {
      x.credential = { name: binding.credential.name, version: null };
      return {
        kind: 'refuse',
        reason: 'credential_unavailable',
        rule: decision.rule,
        policyVersion: policy.version,
        body: {
          error: 'credential_unavailable',
          detail: `credential "${binding.credential.name}" bound to this call ${unavailable}; nothing was sent`,
          sessionId: session.id,
        },
      };
    }
  }
  return {
    kind: 'allow',
    rule: decision.rule,
    policyVersion: policy.version,
    policy,
    address: resolution.address,
    meter,
    credential,
  };
}
