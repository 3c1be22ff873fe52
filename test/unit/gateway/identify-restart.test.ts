/**
 * A restarted gateway and the authentication backoff (issue 15, found by test/e2e/faults.test.ts):
 * after `kill -9` the gateway comes back with an empty session table, and a sandbox calling before
 * the control plane resyncs it fails as `unknown_session` — 20 of those put its address in the 429
 * backoff, which then outlived the resync by up to 10 s. A window made only of failures from when no
 * session was registered at the address ends once one is; credential guessing at a registered
 * session's address still backs off.
 */
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { AUTH_FAILURES_ALLOWED, Identifier } from '../../../src/gateway/identify.js';
import { SessionTable } from '../../../src/gateway/sessions.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const basic = (user: string, pass: string): string =>
  `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
const socket = (): Socket => ({}) as Socket;
const session = {
  id: 's-1',
  role: 'analyst',
  address: '10.0.0.3',
  credentialSha256: sha('right'),
  expiresAtMs: Date.now() + 3_600_000,
};

describe('backoff after a gateway restart', () => {
  it('failures before the resync (unknown session) do not outlive it', () => {
    const sessions = new SessionTable();
    const summaries: number[] = [];
    const id = new Identifier(sessions, (_a, _s, n) => summaries.push(n));
    for (let i = 0; i <= AUTH_FAILURES_ALLOWED; i++) id.identify('10.0.0.3', basic('s-1', 'right'), socket());
    expect(id.identify('10.0.0.3', basic('s-1', 'right'), socket())).toMatchObject({
      ok: false,
      reason: 'auth_backoff',
    });
    sessions.replaceAll([session]); // the control plane's resync
    expect(id.identify('10.0.0.3', basic('s-1', 'right'), socket())).toMatchObject({ ok: true });
    expect(summaries).toEqual([1]); // the refusal inside the backoff is still audited (summary)
  });

  it('guessing a registered session’s credential still backs off after any registration', () => {
    const sessions = new SessionTable();
    sessions.upsert(session);
    const id = new Identifier(sessions);
    for (let i = 0; i <= AUTH_FAILURES_ALLOWED; i++)
      id.identify('10.0.0.3', basic('s-1', `wrong-${i}`), socket());
    sessions.upsert({ ...session }); // re-registered: the window had failures with a session, it stays
    expect(id.identify('10.0.0.3', basic('s-1', 'right'), socket())).toMatchObject({
      ok: false,
      reason: 'auth_backoff',
    });
  });

  it('an address without a session stays in backoff while none is registered', () => {
    const sessions = new SessionTable();
    const id = new Identifier(sessions);
    for (let i = 0; i <= AUTH_FAILURES_ALLOWED; i++) id.identify('10.0.0.9', basic('s-x', 'guess'), socket());
    expect(id.identify('10.0.0.9', basic('s-x', 'guess'), socket())).toMatchObject({
      ok: false,
      reason: 'auth_backoff',
    });
  });
});
