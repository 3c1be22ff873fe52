/**
 * Identification and the per-source authentication backoff (src/gateway/identify.ts): a real
 * SessionTable, real sockets are not needed (the per-connection memo is keyed by any object).
 */
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  AUTH_BACKOFF_MS,
  AUTH_FAILURES_ALLOWED,
  identityRefusal,
  Identifier,
} from '../../../src/gateway/identify.js';
import { SessionTable } from '../../../src/gateway/sessions.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const basic = (user: string, pass: string): string =>
  `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
const socket = (): Socket => ({}) as Socket;

describe('authentication backoff per source address', () => {
  let sessions: SessionTable;
  let summaries: Array<{ address: string; sessionId: string | null; suppressed: number }>;
  let id: Identifier;

  beforeEach(() => {
    vi.useFakeTimers();
    sessions = new SessionTable();
    sessions.upsert({
      id: 's-1',
      role: 'analyst',
      address: '10.0.0.3',
      credentialSha256: sha('right'),
      expiresAtMs: Date.now() + 3_600_000,
    });
    summaries = [];
    id = new Identifier(sessions, (address, session, suppressed) =>
      summaries.push({ address, sessionId: session?.id ?? null, suppressed }),
    );
  });
  afterEach(() => vi.useRealTimers());

  it(`refuses an address with 429 after ${AUTH_FAILURES_ALLOWED} failures, audits the first refusal, summarises the rest`, () => {
    for (let i = 0; i < AUTH_FAILURES_ALLOWED; i++) {
      expect(id.identify('10.0.0.3', basic('s-1', `wrong-${i}`), socket())).toMatchObject({
        ok: false,
        reason: 'bad_credential',
      });
    }
    const first = id.identify('10.0.0.3', basic('s-1', 'wrong-x'), socket());
    expect(first).toMatchObject({ ok: false, reason: 'auth_backoff', first: true });
    if (first.ok) throw new Error('unreachable');
    const r = identityRefusal(first, 'v1');
    expect(r).toMatchObject({
      reason: 'auth_backoff',
      audit: true,
      body: { error: 'too_many_auth_failures', sessionId: 's-1' },
      headers: { 'retry-after': String(AUTH_BACKOFF_MS / 1000) },
    });
    // Inside the backoff even the right credential is not checked; refusals are not audited one by one.
    for (let i = 0; i < 279; i++) {
      const later = id.identify('10.0.0.3', basic('s-1', i === 5 ? 'right' : 'guess'), socket());
      expect(later).toMatchObject({ ok: false, reason: 'auth_backoff', first: false });
      if (!later.ok) expect(identityRefusal(later, 'v1').audit).toBe(false);
    }
    expect(summaries).toEqual([]);
    vi.advanceTimersByTime(AUTH_BACKOFF_MS);
    expect(summaries).toEqual([{ address: '10.0.0.3', sessionId: 's-1', suppressed: 279 }]);
    // After the backoff the right credential works again.
    expect(id.identify('10.0.0.3', basic('s-1', 'right'), socket())).toMatchObject({ ok: true });
  });

  it('another address is not affected, and requests without credentials do not count', () => {
    for (let i = 0; i <= AUTH_FAILURES_ALLOWED; i++) id.identify('10.9.9.9', basic('x', 'y'), socket());
    expect(id.identify('10.9.9.9', basic('x', 'y'), socket())).toMatchObject({ reason: 'auth_backoff' });
    for (let i = 0; i < 3 * AUTH_FAILURES_ALLOWED; i++) {
      expect(id.identify('10.0.0.3', undefined, socket())).toMatchObject({ reason: 'bad_credential' });
    }
    expect(id.identify('10.0.0.3', basic('s-1', 'right'), socket())).toMatchObject({ ok: true });
  });
});
