/**
 * The control plane's approval store (src/sessions/approvals.ts) on its own: binding, single use,
 * expiry on its clock, cancellation, the audit step of each change, and the metrics the issue names
 * (pending count, time to decision). The end-to-end behaviour is in test/e2e/approvals.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../../src/audit/file-sink.js';
import { claimRequestSchema, type ClaimRequestInput } from '../../../src/gateway-wire/approvals.js';
import { ApprovalService } from '../../../src/sessions/approvals.js';

const SETTINGS = { pendingSeconds: 60, defaultUses: 1, defaultTtlSeconds: 30, webhook: null };
const live = new Set(['s-1']);
const sessions = { lookup: (id: string) => (live.has(id) ? { role: 'analyst', creator: 'bot' } : null) };

const claim = (over: Partial<ClaimRequestInput> = {}) =>
  claimRequestSchema.parse({
    sessionId: 's-1',
    role: 'analyst',
    method: 'POST',
    url: 'http://forum.test:3000/comments',
    bodySha256: 'a'.repeat(64),
    bodyBytes: 2,
    preview: Buffer.from('{}').toString('base64'),
    rule: 'policy.csv:2: p, analyst, forum.test:3000, /comments, POST, ask',
    policyVersion: 'v1',
    ...over,
  });

let dir: string | null = null;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

describe('ApprovalService', () => {
  it('opens one approval per exact request, spends an approved one once, and audits each step', async () => {
    let now = Date.parse('2026-11-30T00:00:00Z');
    const audit = new MemoryAuditSink();
    const registry = new Registry();
    const s = new ApprovalService(SETTINGS, sessions, audit, { registry, now: () => now });
    const first = await s.claim(claim());
    expect(first.status).toBe('pending');
    expect((await s.claim(claim())).approvalId).toBe(first.approvalId); // same request, same approval
    const other = await s.claim(claim({ bodySha256: 'b'.repeat(64) }));
    expect(other.approvalId).not.toBe(first.approvalId); // another body, another approval
    expect(await registry.getSingleMetricAsString('airlock_approvals_pending')).toMatch(/ 2$/m);

    now += 5_000;
    s.approve(first.approvalId, 'lead', { reason: 'ok' });
    expect(await registry.getSingleMetricAsString('airlock_approval_decision_seconds')).toMatch(/_sum 5$/m);
    expect((await s.claim(claim())).status).toBe('approved');
    const again = await s.claim(claim());
    expect(again.status).toBe('pending'); // used up: a new approval is opened
    expect(again.approvalId).not.toBe(first.approvalId);
    expect(s.get(first.approvalId)).toMatchObject({ status: 'used', used: 1 });
    expect(audit.events.map((e) => e.reason)).toEqual([
      'approval_requested',
      'approval_requested',
      'approval_approved',
      'approval_used',
      'approval_requested',
    ]);
    expect(audit.events[2]!.approval).toMatchObject({ event: 'approved', by: 'lead', reason: 'ok' });
    s.close();
  });

  it('a pending approval nobody decides expires, an approved one expires unused, and session end cancels', async () => {
    let now = Date.parse('2026-11-30T00:00:00Z');
    const s = new ApprovalService(SETTINGS, sessions, new MemoryAuditSink(), { now: () => now });
    const a = await s.claim(claim());
    const b = await s.claim(claim({ bodySha256: 'b'.repeat(64) }));
    const c = await s.claim(claim({ bodySha256: 'c'.repeat(64) }));
    s.approve(b.approvalId, 'lead', { reason: 'ok', ttlSeconds: 10 });
    now += 11_000;
    s.sweep();
    expect(s.get(b.approvalId).status).toBe('expired');
    expect((await s.claim(claim({ bodySha256: 'b'.repeat(64) }))).status).toBe('pending');
    now += 50_000;
    s.sweep();
    expect(s.get(a.approvalId).status).toBe('expired');
    expect(s.cancelSession('s-1')).toBeGreaterThan(0);
    expect(s.get(c.approvalId).status).toBe('expired'); // already ended: not cancelled again
    expect(() => s.approve(a.approvalId, 'lead', { reason: 'late' })).toThrow(/not pending/);
    s.close();
  });

  it('refuses a claim of a session that is not running, and denies with the reason', async () => {
    const s = new ApprovalService(SETTINGS, sessions, new MemoryAuditSink());
    expect((await s.claim(claim({ sessionId: 's-gone' }))).status).toBe('refused');
    const a = await s.claim(claim());
    s.deny(a.approvalId, 'lead', 'wrong advice');
    expect(await s.claim(claim())).toMatchObject({ status: 'denied', detail: 'by lead: wrong advice' });
    s.close();
  });

  it('keeps pending and approved approvals across a restart (approvals.json)', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'airlock-approvals-'));
    const s1 = new ApprovalService(SETTINGS, sessions, new MemoryAuditSink(), { stateDir: dir });
    const a = await s1.claim(claim());
    s1.approve(a.approvalId, 'lead', { reason: 'ok' });
    s1.close();
    const s2 = new ApprovalService(SETTINGS, sessions, new MemoryAuditSink(), { stateDir: dir });
    expect(await s2.claim(claim())).toMatchObject({ status: 'approved', approvalId: a.approvalId });
    s2.close();
  });
});
