/**
 * `GET /v1/events` (src/api/routes/events.ts) on the real Express app with a compiled policy: the
 * frames, live decisions, counts, the per-session stream and its end, and delegation — a caller sees
 * only sessions and decisions of roles it may READ, the same rule as the audit route.
 */
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createApiApp } from '../../../src/api/app.js';
import { buildOpenApiDocument } from '../../../src/api/openapi.js';
import { streamEventSchema } from '../../../src/api/schemas.js';
import type { AuditEvent } from '../../../src/audit/event.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import { ALICE, FakeSessions, FixedPolicy, TOKENS } from './helpers.js';

const BOB = { authorization: `Bearer ${TOKENS[1]!.token}` };
const POLICY = compilePolicy(
  CANONICAL_MODEL,
  [
    'p, analyst, forum.test:3000, /*, GET, allow',
    'g, poster, analyst',
    'p, alice, airlock.api, /sessions/*, *, allow',
    'p, bob, airlock.api, /sessions/analyst, READ, allow',
    'p, bob, airlock.api, /sessions/analyst, CREATE, allow',
  ].join('\n') + '\n',
);

class Feed {
  readonly fns = new Set<(e: AuditEvent) => void>();
  subscribe(fn: (e: AuditEvent) => void): () => void {
    this.fns.add(fn);
    return () => this.fns.delete(fn);
  }
  emit(e: AuditEvent): void {
    for (const f of this.fns) f(e);
  }
}

function event(sessionId: string, role: string, path: string, decision: 'allow' | 'deny'): AuditEvent {
  return {
    time: new Date().toISOString(),
    sessionId,
    role,
    method: 'GET',
    scheme: 'http',
    host: 'forum.test',
    port: 3000,
    path,
    decision,
    rule: null,
    reason: decision === 'allow' ? 'rule_allow' : 'no_match',
    status: decision === 'allow' ? 200 : 403,
    durationMs: 1.5,
    bytesOut: 0,
    bytesIn: 0,
    policyVersion: POLICY.version,
  };
}

let server: Server | null = null;
afterEach(async () => {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((r) => server!.close(() => r()));
  server = null;
});

async function start(): Promise<{ url: string; sessions: FakeSessions; feed: Feed }> {
  const sessions = new FakeSessions();
  const feed = new Feed();
  const app = createApiApp({ sessions, policy: new FixedPolicy(POLICY), tokens: TOKENS, auditFeed: feed });
  server = createServer(app);
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, sessions, feed };
}

/** An open stream: frames as they arrive, validated against the documented schema. */
async function open(url: string, headers: Record<string, string>) {
  const ctl = new AbortController();
  const res = await fetch(url, { headers, signal: ctl.signal });
  const frames: Array<{ event: string; data: unknown }> = [];
  let ended = false;
  const reading = (async () => {
    if (!res.ok || !res.body) return;
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body) {
        buf += dec.decode(chunk as Uint8Array, { stream: true });
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const ev = /^event: (.*)$/m.exec(frame)?.[1];
          const data = /^data: (.*)$/m.exec(frame)?.[1];
          if (ev && data) frames.push(streamEventSchema.parse({ event: ev, data: JSON.parse(data) }));
        }
      }
    } catch {
      // aborted
    }
    ended = true;
  })();
  const until = async (pred: () => boolean, what: string): Promise<void> => {
    for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 25));
    if (!pred()) throw new Error(`stream never showed ${what}: ${JSON.stringify(frames)}`);
  };
  return {
    res,
    frames,
    until,
    ended: () => ended,
    of: (name: string) => frames.filter((f) => f.event === name).map((f) => f.data),
    close: async () => {
      ctl.abort();
      await reading;
    },
  };
}

describe('GET /v1/events', () => {
  it('401 without a token, 400/404/403 for a bad, unknown or unreadable session, before streaming', async () => {
    const { url, sessions } = await start();
    expect((await fetch(`${url}/v1/events`)).status).toBe(401);
    expect((await fetch(`${url}/v1/events?sessionId=..%2Fx`, { headers: ALICE })).status).toBe(400);
    expect((await fetch(`${url}/v1/events?other=1`, { headers: ALICE })).status).toBe(400);
    expect((await fetch(`${url}/v1/events?sessionId=s-404`, { headers: ALICE })).status).toBe(404);
    const poster = await sessions.create({ role: 'poster' }, 'alice');
    const res = await fetch(`${url}/v1/events?sessionId=${poster.id}`, { headers: BOB });
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });

  it('streams hello, policy, sessions with counts and live decisions; delegation filters what bob sees', async () => {
    const { url, sessions, feed } = await start();
    const analyst = await sessions.create({ role: 'analyst' }, 'alice');
    const poster = await sessions.create({ role: 'poster' }, 'alice');
    sessions.events.set(analyst.id, [event(analyst.id, 'analyst', '/old', 'deny')]);
    const alice = await open(`${url}/v1/events`, ALICE);
    const bob = await open(`${url}/v1/events`, BOB);
    expect(alice.res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    await alice.until(() => alice.of('sessions').length > 0, 'sessions');
    await bob.until(() => bob.of('sessions').length > 0, 'sessions');
    expect(alice.frames[0]).toEqual({ event: 'hello', data: { caller: 'alice', sessionId: null } });
    expect(alice.of('policy')[0]).toMatchObject({ version: POLICY.version, lastError: null });
    const aliceSessions = (alice.of('sessions').at(-1) as { sessions: Array<{ id: string; denied: number }> })
      .sessions;
    expect(aliceSessions.map((s) => s.id).sort()).toEqual([analyst.id, poster.id].sort());
    expect(aliceSessions.find((s) => s.id === analyst.id)?.denied).toBe(1); // from the audit trail
    const bobSessions = (bob.of('sessions').at(-1) as { sessions: Array<{ id: string }> }).sessions;
    expect(bobSessions.map((s) => s.id)).toEqual([analyst.id]);

    feed.emit(event(poster.id, 'poster', '/poster-secret', 'deny'));
    feed.emit(event(analyst.id, 'analyst', '/posts/1', 'allow'));
    await alice.until(() => alice.of('decision').length === 2, 'two decisions');
    await bob.until(() => bob.of('decision').length === 1, 'one decision');
    expect((bob.of('decision')[0] as AuditEvent).path).toBe('/posts/1');
    // Counts follow the feed (checked every second).
    await alice.until(
      () =>
        (
          alice.of('sessions').at(-1) as { sessions: Array<{ id: string; allowed: number; denied: number }> }
        ).sessions.some((s) => s.id === analyst.id && s.allowed === 1 && s.denied === 1),
      'updated counts',
    );
    // A stream opened later gets the recent decisions first (bob: still only analyst's).
    const late = await open(`${url}/v1/events`, BOB);
    await late.until(() => late.of('sessions').length > 0, 'sessions');
    expect(late.of('decision').map((d) => (d as AuditEvent).path)).toEqual(['/posts/1']);
    await Promise.all([alice.close(), bob.close(), late.close()]);
  });

  it('a per-session stream sends its trail, then live decisions, and ends with `end` when the session is gone', async () => {
    const { url, sessions, feed } = await start();
    const a = await sessions.create({ role: 'analyst' }, 'alice');
    const other = await sessions.create({ role: 'analyst' }, 'alice');
    sessions.events.set(a.id, [event(a.id, 'analyst', '/first', 'allow')]);
    const s = await open(`${url}/v1/events?sessionId=${a.id}`, BOB);
    await s.until(() => s.of('sessions').length > 0, 'sessions');
    expect(s.of('decision').map((d) => (d as AuditEvent).path)).toEqual(['/first']);
    feed.emit(event(other.id, 'analyst', '/not-mine', 'allow'));
    feed.emit(event(a.id, 'analyst', '/<img src=x onerror=alert(1)>', 'deny'));
    await s.until(() => s.of('decision').length === 2, 'the live decision');
    expect((s.of('decision')[1] as AuditEvent).path).toBe('/<img src=x onerror=alert(1)>');
    await sessions.remove(a.id);
    await s.until(() => s.ended(), 'the end of the stream');
    expect(s.frames.at(-1)).toEqual({ event: 'end', data: { sessionId: a.id } });
    await s.close();
  });

  it('is in the OpenAPI document as text/event-stream with the StreamEvent schema', () => {
    const doc = buildOpenApiDocument() as {
      paths: Record<string, { get: { responses: Record<string, { content?: Record<string, unknown> }> } }>;
      components: { schemas: Record<string, unknown> };
    };
    expect(doc.paths['/v1/events']?.get.responses['200']?.content).toEqual({
      'text/event-stream': { schema: { $ref: '#/components/schemas/StreamEvent' } },
    });
    expect(doc.components.schemas.StreamEvent).toBeDefined();
    expect(doc.components.schemas.SessionSummary).toBeDefined();
  });
});

describe('GET /ui/', () => {
  it('serves the console with a strict CSP and no inline script', async () => {
    const { url } = await start();
    const res = await fetch(`${url}/ui/`);
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get('content-security-policy')).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    const html = await res.text();
    expect(html).toContain('<script type="module" src="./app.js"></script>');
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // every script is a file
    expect(html).not.toMatch(/\sstyle=|<style/);
    expect(html).not.toMatch(/https?:\/\//); // nothing from another origin
    const js = await fetch(`${url}/ui/app.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toContain('javascript');
    expect((await fetch(`${url}/ui`, { redirect: 'manual' })).headers.get('location')).toBe('/ui/');
  });
});
