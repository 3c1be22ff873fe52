/**
 * Complain mode (modes.yaml; decide.ts step 4a) on a real compiled policy and the real resolver (host
 * aliases only): a denied call of a role in complain mode goes on only when every method the upstream
 * may execute is safe, is audited `would_deny` with the denial's reason and rule, never gets a
 * credential, and still meets budgets, address checks and a creator's limits. Thinking as the agent:
 * every way to smuggle a mutation through complain mode is tried here.
 */
import { describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../../src/audit/file-sink.js';
import { DestinationPolicy } from '../../../src/gateway/address.js';
import { BudgetCounters } from '../../../src/gateway/budgets.js';
import { decide, type Outcome } from '../../../src/gateway/decide.js';
import { Exchange } from '../../../src/gateway/exchange.js';
import { UpstreamResolver } from '../../../src/gateway/resolve.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import type { GatewaySession } from '../../../src/sessions/types.js';

const CSV = [
  'p, learner, forum.test, /posts/secret, GET, deny',
  'p, learner, forum.test, /health, GET, allow',
  'p, boss, forum.test, /posts/*, GET, allow',
  'p, boss, airlock.api, /sessions/learner, CREATE, allow',
  'p, enforced, forum.test, /health, GET, allow',
  '',
].join('\n');
const MODES = 'version: 1\ncomplain: [learner]\n';
const BUDGETS = `version: 1
budgets:
  - name: learner-reads
    role: learner
    host: forum.test
    requestsPerMinute: 2
`;
const compiled = compilePolicy(CANONICAL_MODEL, CSV, { files: { 'modes.yaml': MODES } });
const withBudgets = compilePolicy(CANONICAL_MODEL, CSV, {
  files: { 'modes.yaml': MODES, 'budgets.yaml': BUDGETS },
});
const resolver = new UpstreamResolver(
  new DestinationPolicy(['192.0.2.0/24']),
  new Map([
    ['forum.test', '192.0.2.10'],
    ['meta.test', '169.254.169.254'],
  ]),
);

function session(role: string, creator?: string): GatewaySession {
  return {
    id: `s-${role}`,
    role,
    address: '10.0.0.3',
    credentialSha256: '00',
    expiresAtMs: Date.now() + 60_000,
    ...(creator ? { creator } : {}),
  };
}

interface Run {
  outcome: Outcome;
  x: Exchange;
  sink: MemoryAuditSink;
}

async function run(
  method: string,
  url: string,
  opts: {
    role?: string;
    creator?: string;
    override?: string;
    mode?: 'forward' | 'intercept';
    http?: boolean;
    snapshot?: typeof compiled;
    budgets?: BudgetCounters;
  } = {},
): Promise<Run> {
  const u = /^(https?):\/\/([^/:]+)(?::(\d+))?(\/.*)?$/.exec(url)!;
  const scheme = u[1] as 'http' | 'https';
  const sink = new MemoryAuditSink();
  const s = session(opts.role ?? 'learner', opts.creator);
  const x = new Exchange(sink, method, scheme, s, null);
  const port = u[3] ? Number(u[3]) : scheme === 'http' ? 80 : 443;
  x.setTarget({ host: u[2]!, port, path: u[4] ?? '', policyHost: u[2]!, url });
  if (opts.override) x.methodOverride = opts.override;
  const snapshot = opts.snapshot ?? compiled;
  const outcome = await decide(
    x,
    s,
    opts.mode ?? 'forward',
    {
      policy: { current: () => snapshot, lastError: () => null },
      resolver,
      ...(opts.budgets ? { budgets: opts.budgets } : {}),
    },
    null,
    // An HTTP request (plain or intercepted) carries its target and headers; CONNECT/WebSocket do not.
    opts.http === false ? undefined : { url: u[4] ?? '/', rawHeaders: ['host', u[2]!] },
  );
  return { outcome, x, sink };
}

/** Records the outcome on the exchange the way proxy.ts does, and returns the one audit event. */
function audit(r: Run): { decision: string; reason: string; rule: string | null } {
  if (r.outcome.kind === 'refuse') r.x.refuse(r.outcome);
  else r.x.allow(r.outcome.kind === 'allow' ? r.outcome.rule : null, r.outcome.policyVersion);
  r.x.finish();
  const [e] = r.sink.events;
  return { decision: e!.decision, reason: e!.reason, rule: e!.rule };
}

describe('complain mode (decide step 4a)', () => {
  it('forwards a GET no rule allows, audited would_deny with reason no_match', async () => {
    const r = await run('GET', 'http://forum.test/posts/1');
    expect(r.outcome).toMatchObject({ kind: 'allow', address: '192.0.2.10', credential: null });
    expect(audit(r)).toEqual({ decision: 'would_deny', reason: 'no_match', rule: null });
  });

  it('forwards a GET a deny rule matches, audited would_deny with that rule', async () => {
    const r = await run('GET', 'http://forum.test/posts/secret');
    expect(r.outcome.kind).toBe('allow');
    const e = audit(r);
    expect(e).toMatchObject({ decision: 'would_deny', reason: 'rule_deny' });
    expect(e.rule).toMatch(/^policy\.csv:1: .*\/posts\/secret, GET, deny$/);
  });

  it('forwards HEAD and OPTIONS too', async () => {
    for (const m of ['HEAD', 'OPTIONS']) {
      const r = await run(m, 'http://forum.test/posts/1');
      expect(audit(r)).toMatchObject({ decision: 'would_deny', reason: 'no_match' });
    }
  });

  it('an allowed call stays allow (complain mode changes nothing the rules allow)', async () => {
    const r = await run('GET', 'http://forum.test/health');
    expect(audit(r)).toMatchObject({ decision: 'allow', reason: 'rule_allow' });
  });

  it('refuses every mutation, whatever the case of the method', async () => {
    for (const m of ['POST', 'PUT', 'PATCH', 'DELETE', 'PROPFIND', 'get', 'MCP']) {
      const r = await run(m, 'http://forum.test/posts/1');
      expect(r.outcome.kind, m).toBe('refuse');
      expect(audit(r), m).toMatchObject({ decision: 'deny', reason: 'no_match' });
    }
  });

  it('refuses a GET whose method override makes the upstream execute a mutation', async () => {
    for (const over of ['DELETE', 'POST', 'PUT']) {
      const r = await run('GET', 'http://forum.test/posts/1', { override: over });
      expect(r.outcome.kind, over).toBe('refuse');
      expect(audit(r).decision).toBe('deny');
    }
    // ... and a POST overridden to GET: the upstream may execute either, so both must be safe.
    const post = await run('POST', 'http://forum.test/posts/1', { override: 'GET' });
    expect(post.outcome.kind).toBe('refuse');
  });

  it('refuses an allowed GET whose overriding method the rules deny and is unsafe', async () => {
    const r = await run('GET', 'http://forum.test/health', { override: 'DELETE' });
    expect(r.outcome.kind).toBe('refuse');
    expect(audit(r)).toMatchObject({ decision: 'deny', reason: 'no_match' });
  });

  it('forwards an allowed GET whose safe overriding method the rules deny, as would_deny', async () => {
    const r = await run('GET', 'http://forum.test/health', { override: 'HEAD' });
    expect(audit(r)).toMatchObject({ decision: 'would_deny', reason: 'no_match' });
  });

  it('never applies to a relayed CONNECT or a WebSocket handshake (no HTTP request to trust)', async () => {
    const connect = await run('CONNECT', 'https://forum.test:443', { http: false });
    expect(audit(connect)).toMatchObject({ decision: 'deny', reason: 'no_match' });
    const ws = await run('WEBSOCKET', 'http://forum.test/posts/live', { http: false });
    expect(audit(ws)).toMatchObject({ decision: 'deny', reason: 'no_match' });
    // A GET without its request (as a WebSocket's decision is made) is not forwarded either.
    const bare = await run('GET', 'http://forum.test/posts/1', { http: false });
    expect(bare.outcome.kind).toBe('refuse');
  });

  it('opens an intercepted tunnel to a host no rule names, audited would_deny', async () => {
    const r = await run('CONNECT', 'https://other.test:443', { mode: 'intercept', http: false });
    expect(r.outcome.kind).toBe('intercept');
    expect(audit(r)).toEqual({ decision: 'would_deny', reason: 'no_match', rule: null });
    const enforced = await run('CONNECT', 'https://other.test:443', {
      mode: 'intercept',
      http: false,
      role: 'enforced',
    });
    expect(audit(enforced).decision).toBe('deny');
  });

  it('does not apply to a role that is not listed', async () => {
    const r = await run('GET', 'http://forum.test/posts/1', { role: 'enforced' });
    expect(audit(r)).toMatchObject({ decision: 'deny', reason: 'no_match' });
  });

  it("never widens a creator's limit: a delegated session is enforced when its creator has egress rules", async () => {
    const r = await run('GET', 'http://other.test/x', { creator: 'boss' });
    expect(r.outcome.kind).toBe('refuse');
    const inside = await run('GET', 'http://forum.test/posts/1', { creator: 'boss' });
    expect(inside.outcome.kind).toBe('refuse');
    const tunnel = await run('CONNECT', 'https://other.test:443', {
      mode: 'intercept',
      http: false,
      creator: 'boss',
    });
    expect(tunnel.outcome.kind).toBe('refuse');
  });

  it('still refuses a destination in a refused address class', async () => {
    const r = await run('GET', 'http://meta.test/latest/meta-data');
    expect(r.outcome.kind === 'refuse' && r.outcome.body.error).toBe('destination_refused');
    expect(audit(r).decision).toBe('deny');
  });

  it('still counts and enforces budgets', async () => {
    const budgets = new BudgetCounters();
    const a = await run('GET', 'http://forum.test/a', { snapshot: withBudgets, budgets });
    const b = await run('GET', 'http://forum.test/b', { snapshot: withBudgets, budgets });
    const c = await run('GET', 'http://forum.test/c', { snapshot: withBudgets, budgets });
    expect([a.outcome.kind, b.outcome.kind, c.outcome.kind]).toEqual(['allow', 'allow', 'refuse']);
    expect(c.outcome.kind === 'refuse' && c.outcome.body.error).toBe('budget_exceeded');
  });

  it('an upstream failure of a would-deny call stays would_deny (reason upstream_error)', () => {
    const sink = new MemoryAuditSink();
    const x = new Exchange(sink, 'GET', 'http', session('learner'), 'v1');
    x.wouldDeny = { reason: 'no_match', rule: null };
    x.allow(null, 'v1');
    x.refuse({
      kind: 'refuse',
      reason: 'upstream_error',
      rule: null,
      policyVersion: 'v1',
      body: { error: 'upstream_unreachable', detail: 'x' },
    });
    x.finish();
    expect(sink.events.map((e) => [e.decision, e.reason, e.status])).toEqual([
      ['would_deny', 'upstream_error', 502],
    ]);
  });
});
