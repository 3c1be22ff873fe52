import { createHash } from 'node:crypto';
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { normalizeRemoteAddress, SessionTable } from '../../../src/gateway/sessions.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const session = (id: string, address: string, expiresAtMs = Date.now() + 60_000) => ({
  id,
  role: 'analyst',
  address,
  credentialSha256: sha(`cred-${id}`),
  expiresAtMs,
});

describe('SessionTable (property 2)', () => {
  it('needs both the address and the credential of the same session', () => {
    const t = new SessionTable();
    t.upsert(session('a', '10.0.0.3'));
    t.upsert(session('b', '10.0.0.11'));
    expect(t.identify('10.0.0.3', 'a', 'cred-a').ok).toBe(true);
    expect(t.identify('10.0.0.3', 'b', 'cred-b')).toMatchObject({ ok: false, reason: 'address_mismatch' });
    expect(t.identify('10.0.0.3', 'a', 'cred-b')).toMatchObject({ ok: false, reason: 'bad_credential' });
    expect(t.identify('10.0.0.3', null, null)).toMatchObject({ ok: false, reason: 'bad_credential' });
    expect(t.identify('10.0.0.99', 'a', 'cred-a')).toMatchObject({ ok: false, reason: 'unknown_session' });
  });
  it('expires sessions on its own clock', () => {
    let now = 1_000;
    const t = new SessionTable(() => now);
    t.upsert(session('a', '10.0.0.3', 2_000));
    expect(t.identify('10.0.0.3', 'a', 'cred-a').ok).toBe(true);
    now = 2_000;
    expect(t.identify('10.0.0.3', 'a', 'cred-a')).toMatchObject({ ok: false, reason: 'session_expired' });
    expect(t.size).toBe(0);
  });
  it('sweepExpired revokes expired sessions and closes their sockets', () => {
    let now = 1_000;
    const t = new SessionTable(() => now);
    t.upsert(session('a', '10.0.0.3', 2_000));
    t.upsert(session('b', '10.0.0.11', 9_000));
    const s = new Socket();
    t.attachSocket('a', s);
    expect(t.sweepExpired()).toBe(0);
    now = 2_000;
    expect(t.sweepExpired()).toBe(1);
    expect(s.destroyed).toBe(true);
    expect(t.list().map((x) => x.id)).toEqual(['b']);
  });

  it('revoke destroys tracked sockets; replaceAll revokes sessions not listed', () => {
    const t = new SessionTable();
    t.upsert(session('a', '10.0.0.3'));
    t.upsert(session('b', '10.0.0.11'));
    const s = new Socket();
    t.attachSocket('a', s);
    expect(t.revoke('a')).toBe(1);
    expect(s.destroyed).toBe(true);
    expect(t.revoke('a')).toBe(0);
    t.replaceAll([session('c', '10.0.0.19')]);
    expect(t.list().map((x) => x.id)).toEqual(['c']);
  });
  it('a new session at an address replaces the old one there', () => {
    const t = new SessionTable();
    t.upsert(session('a', '10.0.0.3'));
    t.upsert(session('b', '10.0.0.3'));
    expect(t.identify('10.0.0.3', 'a', 'cred-a').ok).toBe(false);
    expect(t.identify('10.0.0.3', 'b', 'cred-b').ok).toBe(true);
  });
  it('strips the IPv4-mapped prefix', () => {
    expect(normalizeRemoteAddress('::ffff:10.0.0.3')).toBe('10.0.0.3');
    expect(normalizeRemoteAddress('fd00::3')).toBe('fd00::3');
  });
});
