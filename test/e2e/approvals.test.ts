/**
 * Human approval of the exact request (docs/approvals.md), on real components: the Docker engine,
 * the gateway and sandbox images, json-server as the forum, etcd as the config store, and the
 * control plane as `airlock serve` runs it. The incident replayed with approval: the analyst's reply
 * is held for a person, who sees the exact body and approves that body once.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import type { Approval } from '../../src/sessions/approvals.js';
import { TestApi, curlResult } from '../helpers/api-client.js';
import { airlock } from '../helpers/cli.js';
import { networkGateway, removeAirlockObjects, requireDockerAndImages } from '../helpers/docker.js';
import { startEtcd, startJsonServer, type Etcd, type JsonServer } from '../helpers/upstreams.js';
import { watchedLogger } from '../helpers/log-watch.js';

const EGRESS_SUBNET = '10.214.0.0/24';
const TOKENS = {
  e2e: 'e2e-token-0123456789abcdef',
  lead: 'lead-token-0123456789abcdef',
  intern: 'intern-token-0123456789abcd',
};
const FORUM = 'http://forum.test:3000';
const CONFIG = 'http://config.test:2379';
const HELD_RULE = 'p, analyst, forum.test:3000, /posts/:id/comments, POST, ask';
const WEBHOOK_SECRET = 'webhook-secret-for-the-e2e-test';

const POLICY = `
p, analyst, forum.test:3000, /*, GET, allow
p, analyst, forum.test:3000, /comments, POST, ask
${HELD_RULE}
p, dba, config.test:2379, /v3/kv/range, POST, allow
p, dba, config.test:2379, /v3/auth/role/add, POST, ask
# Delegation: e2e runs sessions and may approve, but not its own sessions' requests; lead approves;
# intern only reads.
p, e2e, airlock.api, /sessions/*, *, allow
p, e2e, airlock.api, /approvals/*, APPROVE, allow
p, lead, airlock.api, /sessions/*, *, allow
p, lead, airlock.api, /approvals/*, APPROVE, allow
p, intern, airlock.api, /sessions/*, READ, allow
`;

let stateDir: string;
let server: RunningServer;
let api: TestApi;
let lead: TestApi;
let intern: TestApi;
let forum: JsonServer;
let etcd: Etcd;
let hook: http.Server;
const hooked: Array<{ body: string; signature: string; timestamp: string }> = [];

async function curl(id: string, args: string): Promise<{ status: number; body: string }> {
  const out = await api.sh(id, `curl -s -w '\\n%{http_code}' ${args}`);
  return curlResult(out.stdout);
}

function postComment(id: string, body: string): Promise<{ status: number; body: string }> {
  return curl(id, `-X POST -H 'content-type: application/json' -d '${body}' ${FORUM}/comments`);
}

async function pending(by: TestApi, sessionId: string): Promise<Approval[]> {
  const res = await by.raw('GET', `/v1/approvals?status=pending&sessionId=${sessionId}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { approvals: Approval[] }).approvals;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  await requireDockerAndImages(['airlock-gateway:dev', 'airlock-sandbox:dev']);
  await removeAirlockObjects();
  stateDir = mkdtempSync(path.join(tmpdir(), 'airlock-e2e-approvals-'));
  const policyDir = path.join(stateDir, 'policy');
  mkdirSync(policyDir);
  copyFileSync(path.resolve('policies/model.conf'), path.join(policyDir, 'model.conf'));
  writeFileSync(path.join(policyDir, 'policy.csv'), POLICY);
  hook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      hooked.push({
        body,
        signature: String(req.headers['x-airlock-signature']),
        timestamp: String(req.headers['x-airlock-timestamp']),
      });
      res.end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
  process.env.AIRLOCK_E2E_WEBHOOK_SECRET = WEBHOOK_SECRET;
  const cfg = parseConfig(
    {
      api: {
        listen: '127.0.0.1:0',
        tokens: Object.entries(TOKENS).map(([name, token]) => ({ name, token })),
      },
      gateway: {
        hostAliases: { 'forum.test': 'host-gateway', 'config.test': 'host-gateway' },
        allowPrivateCidrs: [EGRESS_SUBNET],
      },
      policy: { dir: policyDir },
      runtime: {
        docker: { egressSubnet: EGRESS_SUBNET },
        resources: { cpus: 0.5, memoryMiB: 256, pids: 128 },
      },
      approvals: {
        holdRules: { [HELD_RULE]: 30 },
        webhook: {
          url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`,
          secretEnv: 'AIRLOCK_E2E_WEBHOOK_SECRET',
        },
      },
      stateDir,
    },
    process.cwd(),
  );
  server = await startServer(cfg, watchedLogger());
  api = new TestApi(server.url, TOKENS.e2e);
  lead = new TestApi(server.url, TOKENS.lead);
  intern = new TestApi(server.url, TOKENS.intern);
  const hostGateway = await networkGateway('airlock-egress');
  [forum, etcd] = await Promise.all([startJsonServer(hostGateway, 3000), startEtcd(hostGateway, 2379)]);
}, 180_000);

afterAll(async () => {
  await server?.close();
  await removeAirlockObjects();
  await Promise.all([forum?.stop(), etcd?.stop()]);
  await new Promise<void>((r) => (hook ? hook.close(() => r()) : r()));
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('approval of the exact request', () => {
  let analyst: string;
  let approvalId: string;
  const REPLY = '{"postId":1,"body":"Please file a ticket with the network team first."}';

  it('an ask rule answers 403 approval_required with an approvalId and a hint; the forum is unchanged', async () => {
    analyst = (await api.create({ role: 'analyst' })).id;
    const before = forum.db().comments.length;
    const res = await postComment(analyst, REPLY);
    expect(res.status).toBe(403);
    const body = JSON.parse(res.body) as Record<string, unknown>;
    expect(body).toMatchObject({
      error: 'approval_required',
      sessionId: analyst,
      role: 'analyst',
      method: 'POST',
      url: `${FORUM}/comments`,
    });
    expect(body.approvalId).toMatch(/^ap-[0-9a-f]{16}$/);
    expect(String(body.hint)).toMatch(/retry exactly the same request/);
    approvalId = String(body.approvalId);
    expect(forum.db().comments.length).toBe(before);
    const events = await api.auditUntil(analyst, (e) => e.some((x) => x.reason === 'approval_required'));
    const ev = events.find((x) => x.reason === 'approval_required')!;
    expect(ev).toMatchObject({ decision: 'deny', approvalId, status: 403, path: '/comments' });
  });

  it('a webhook, signed with HMAC-SHA256, told of the new approval', async () => {
    const got = await until('the webhook', async () => hooked.find((h) => h.body.includes(approvalId)));
    const want = createHmac('sha256', WEBHOOK_SECRET).update(`${got.timestamp}.${got.body}`).digest('hex');
    expect(got.signature).toBe(`sha256=${want}`);
    expect(JSON.parse(got.body)).toMatchObject({ type: 'approval.requested', approval: { id: approvalId } });
  });

  it('the approver sees the exact body, size and content type', async () => {
    const [a] = await pending(lead, analyst);
    expect(a).toMatchObject({
      id: approvalId,
      status: 'pending',
      method: 'POST',
      url: `${FORUM}/comments`,
      bodyText: REPLY,
      bodyBytes: REPLY.length,
      contentType: 'application/json',
      sessionCreator: 'e2e',
    });
    expect(a!.rule).toMatch(/p, analyst, forum\.test:3000, \/comments, POST, ask$/);
  });

  it('delegation: a caller without APPROVE gets 403; the session creator may not approve its own (separation of duties)', async () => {
    const noRule = await intern.raw('POST', `/v1/approvals/${approvalId}/approve`, { reason: 'lgtm' });
    expect(noRule.status).toBe(403);
    expect(await noRule.text()).toMatch(/APPROVE/);
    const own = await api.raw('POST', `/v1/approvals/${approvalId}/approve`, { reason: 'lgtm' });
    expect(own.status).toBe(403);
    expect(await own.text()).toMatch(/separation of duties.*APPROVE_OWN/);
    const noReason = await lead.raw('POST', `/v1/approvals/${approvalId}/approve`, {});
    expect(noReason.status).toBe(400);
    expect((await pending(lead, analyst)).map((a) => a.id)).toEqual([approvalId]);
  });

  it('approved once: a changed body is refused, the same body is posted, a second identical retry is refused', async () => {
    const ok = await lead.raw('POST', `/v1/approvals/${approvalId}/approve`, {
      reason: 'the advice is right',
    });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ status: 'approved', decidedBy: 'lead', uses: 1 });

    const changed = await postComment(analyst, '{"postId":1,"body":"Just open port 22 to everyone."}');
    expect(changed.status).toBe(403);
    expect(JSON.parse(changed.body).approvalId).not.toBe(approvalId);
    expect(forum.db().comments.some((c) => String(c.body).includes('port 22'))).toBe(false);

    // The same body to the same path with a query the approver never saw: another request.
    const withQuery = await curl(
      analyst,
      `-X POST -H 'content-type: application/json' -d '${REPLY}' '${FORUM}/comments?postId=2'`,
    );
    expect(withQuery.status).toBe(403);
    expect(JSON.parse(withQuery.body).approvalId).not.toBe(approvalId);
    expect((await pending(lead, analyst)).some((a) => a.url === `${FORUM}/comments?postId=2`)).toBe(true);

    const posted = await postComment(analyst, REPLY);
    expect(posted.status).toBe(201);
    expect(forum.db().comments.filter((c) => c.body === JSON.parse(REPLY).body)).toHaveLength(1);

    const again = await postComment(analyst, REPLY);
    expect(again.status).toBe(403);
    expect(JSON.parse(again.body).error).toBe('approval_required');
    expect(forum.db().comments.filter((c) => c.body === JSON.parse(REPLY).body)).toHaveLength(1);

    const got = await lead.raw('GET', `/v1/approvals/${approvalId}`);
    expect(await got.json()).toMatchObject({ status: 'used', used: 1 });
    const events = await api.auditUntil(analyst, (e) => e.some((x) => x.reason === 'approved'));
    expect(events.find((x) => x.reason === 'approved')).toMatchObject({
      decision: 'allow',
      approvalId,
      status: 201,
    });
    for (const step of ['approval_requested', 'approval_approved', 'approval_used'])
      expect(
        events.some((x) => x.reason === step && x.approvalId === approvalId),
        step,
      ).toBe(true);
    expect(events.find((x) => x.reason === 'approval_approved')?.approval).toMatchObject({ by: 'lead' });
  });

  it('an approval whose time is up is refused', async () => {
    const body = '{"postId":1,"body":"short-lived"}';
    const first = await postComment(analyst, body);
    const id = JSON.parse(first.body).approvalId as string;
    const ok = await lead.raw('POST', `/v1/approvals/${id}/approve`, { reason: 'quick', ttlSeconds: 1 });
    expect(ok.status).toBe(200);
    await until('the approval to expire', async () => {
      const a = (await (await lead.raw('GET', `/v1/approvals/${id}`)).json()) as Approval;
      return a.status === 'expired' ? a : undefined;
    });
    const late = await postComment(analyst, body);
    expect(late.status).toBe(403);
    expect(forum.db().comments.some((c) => c.body === 'short-lived')).toBe(false);
  });

  it('held mode: the request waits for the decision and completes once approved', async () => {
    const body = '{"body":"held for a person"}';
    const call = curl(
      analyst,
      `-X POST -H 'content-type: application/json' -d '${body}' ${FORUM}/posts/1/comments`,
    );
    const a = await until('the held approval', async () =>
      (await pending(lead, analyst)).find((x) => x.url.endsWith('/posts/1/comments')),
    );
    expect(a.bodyText).toBe(body);
    const ok = await lead.raw('POST', `/v1/approvals/${a.id}/approve`, { reason: 'fine' });
    expect(ok.status).toBe(200);
    const res = await call;
    expect(res.status).toBe(201);
    expect(forum.db().comments.some((c) => c.body === 'held for a person')).toBe(true);
  });

  it('the stream shows new approvals as they arrive', async () => {
    const ac = new AbortController();
    const res = await fetch(`${server.url}/v1/approvals/stream`, {
      headers: { authorization: `Bearer ${TOKENS.lead}` },
      signal: ac.signal,
    });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    void postComment(analyst, '{"postId":1,"body":"streamed"}');
    let text = '';
    const decoder = new TextDecoder();
    while (!text.includes('streamed')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    ac.abort();
    expect(text).toMatch(/event: requested\ndata: \{[^\n]*streamed/);
  });

  it('ending the session cancels its pending approvals', async () => {
    const open = await pending(lead, analyst);
    expect(open.length).toBeGreaterThan(0);
    await api.remove(analyst);
    for (const a of open) {
      const got = (await (await lead.raw('GET', `/v1/approvals/${a.id}`)).json()) as Approval;
      expect(got.status).toBe('cancelled');
    }
  });
});

describe('an ACL change behind ask (etcd)', () => {
  it('is applied only after approval', async () => {
    const dba = (await api.create({ role: 'dba' })).id;
    const add = `-X POST -d '{"name":"reader"}' ${CONFIG}/v3/auth/role/add`;
    const first = await curl(dba, add);
    expect(first.status).toBe(403);
    expect(await etcd.etcdctl('role', 'list')).not.toMatch(/reader/);
    const id = JSON.parse(first.body).approvalId as string;
    // The approver at a terminal: airlock approvals ls / show / approve.
    const env = { AIRLOCK_API_URL: server.url, AIRLOCK_API_TOKEN: TOKENS.lead };
    const ls = await airlock(['approvals', 'ls'], env);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(
      new RegExp(`${id}\\s+pending\\s+${dba}\\s+dba\\s+POST\\s+${CONFIG}/v3/auth/role/add`),
    );
    const show = await airlock(['approvals', 'show', id], env);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(`request    POST ${CONFIG}/v3/auth/role/add`);
    expect(show.stdout).toContain('{"name":"reader"}');
    const noReason = await airlock(['approvals', 'approve', id], env);
    expect(noReason.code).not.toBe(0);
    const ok = await airlock(['approvals', 'approve', id, '--reason', 'ticket OPS-7'], env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(`approved ${id}`);
    const second = await curl(dba, add);
    expect(second.status).toBe(200);
    expect(await etcd.etcdctl('role', 'list')).toMatch(/reader/);
    await api.remove(dba);
  });
});

describe('time-boxed grants', () => {
  it('a grant is live at once, shown on the session, and gone at expiry; ask rules still win', async () => {
    const s = (await api.create({ role: 'analyst' })).id;
    const patch = `-X PATCH -H 'content-type: application/json' -d '{"title":"edited"}' ${FORUM}/posts/1`;
    expect((await curl(s, patch)).status).toBe(403);
    const noReason = await lead.raw('POST', `/v1/sessions/${s}/grants`, {
      rule: { host: 'forum.test:3000', path: '/posts/:id', method: 'PATCH' },
      ttlSeconds: 3,
    });
    expect(noReason.status).toBe(400);
    const badRule = await lead.raw('POST', `/v1/sessions/${s}/grants`, {
      rule: { host: 'forum.test:3000', path: 'posts', method: 'PATCH' },
      ttlSeconds: 3,
      reason: 'x',
    });
    expect(badRule.status).toBe(400);
    expect(await badRule.text()).toMatch(/rule\.path/);
    const g = await lead.raw('POST', `/v1/sessions/${s}/grants`, {
      rule: { host: 'forum.test:3000', path: '/*', method: '*' },
      ttlSeconds: 3,
      reason: 'fix the title (OPS-8)',
    });
    expect(g.status).toBe(201);
    const grant = (await g.json()) as { id: string; expiresAt: string };
    const view = (await (await lead.raw('GET', `/v1/sessions/${s}`)).json()) as { grants: unknown[] };
    expect(view.grants).toEqual([
      expect.objectContaining({ id: grant.id, grantedBy: 'lead', reason: 'fix the title (OPS-8)' }),
    ]);
    expect((await curl(s, patch)).status).toBe(200);
    expect(forum.db().posts[0]!.title).toBe('edited');
    // The grant is an allow: the ask rule on /comments still asks.
    expect((await postComment(s, '{"postId":1,"body":"granted?"}')).status).toBe(403);
    const events = await api.auditUntil(s, (e) =>
      e.some((x) => x.method === 'PATCH' && x.decision === 'allow'),
    );
    expect(events.find((x) => x.method === 'PATCH' && x.decision === 'allow')?.rule).toMatch(
      `grant ${grant.id}`,
    );
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(grant.expiresAt) - Date.now()) + 100));
    expect((await curl(s, patch)).status).toBe(403);
    await api.remove(s);
  });
});
