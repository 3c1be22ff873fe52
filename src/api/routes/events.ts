import type { Express, Request, Response } from 'express';
import type { z } from 'zod';
import type { AuditEvent } from '../../audit/event.js';
import { RequestValidationError } from '../../errors.js';
import type { SessionView } from '../../sessions/types.js';
import { firstIssue } from '../../validation.js';
import type { ApiContext } from '../context.js';
import { authorizeSessionOp, readableBy } from '../delegation.js';
import { methodNotAllowed, requireAuth } from '../middleware.js';
import { policyStatus } from './policy.js';
import { eventsQuery, type policyStatusSchema, type sessionSummarySchema } from '../schemas.js';

/** Where new audit events come from (the control plane's AuditIndex). */
export interface AuditFeed {
  /** Calls `fn` for each new event, in file order; returns the unsubscribe function. */
  subscribe(fn: (e: AuditEvent) => void): () => void;
}

/** Recent events kept for a new stream's backlog (all sessions). */
const RING_SIZE = 5_000;
/** How far back a new all-sessions stream's backlog reaches, in ms. */
const BACKLOG_MS = 5 * 60_000;
/** Events of one session sent first on a per-session stream (its most recent ones). */
const SESSION_BACKLOG = 1_000;
/** How often sessions and policy status are compared with what was sent, in ms. */
const TICK_MS = 1_000;
/** Keep-alive comment interval, in ms (proxies close idle connections). */
const KEEPALIVE_MS = 15_000;
/** Bytes a slow client may leave unread before its stream is closed (it may reconnect). */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

type SessionSummary = z.output<typeof sessionSummarySchema>;
type PolicyStatus = z.output<typeof policyStatusSchema>;

/** One open stream. */
interface Client {
  caller: string;
  /** null: every session the caller may read. */
  sessionId: string | null;
  send(event: string, data: unknown): void;
  /** Called with fresh state once per tick; sends what changed. */
  tick(sessions: readonly SessionSummary[], policy: PolicyStatus): void;
  decision(e: AuditEvent): void;
}

/**
 * Shared state of every stream: a ring of recent events (fed from app start, so a console opened
 * later still gets the last minutes), per-session decision counts, and one timer (only while a
 * stream is open) that reads sessions and policy status once per second for all streams.
 */
class EventHub {
  private readonly ring: AuditEvent[] = [];
  private readonly counts = new Map<string, { allowed: number; denied: number }>();
  private readonly counted = new Set<string>();
  /** Sessions whose trail is being read for their first counts: events that arrive meanwhile. */
  private readonly reading = new Map<string, AuditEvent[]>();
  private readonly clients = new Set<Client>();
  private timer: NodeJS.Timeout | null = null;
  private ticking = false;
  private soon: NodeJS.Timeout | null = null;

  constructor(
    private readonly ctx: ApiContext,
    feed: AuditFeed | undefined,
  ) {
    feed?.subscribe((e) => this.onEvent(e));
  }

  private onEvent(e: AuditEvent): void {
    this.ring.push(e);
    if (this.ring.length > RING_SIZE) this.ring.splice(0, this.ring.length - RING_SIZE);
    if (e.sessionId) this.reading.get(e.sessionId)?.push(e);
    if (e.sessionId && this.counted.has(e.sessionId)) {
      const c = this.counts.get(e.sessionId)!;
      if (e.decision === 'allow') c.allowed++;
      else c.denied++;
    }
    for (const c of this.clients) c.decision(e);
    // Counts changed: send them soon rather than at the next 1 s tick.
    if (this.clients.size > 0 && !this.soon) {
      this.soon = setTimeout(() => {
        this.soon = null;
        void this.tick();
      }, 100);
    }
  }

  /** Events of the last {@link BACKLOG_MS}, oldest first. */
  recent(): AuditEvent[] {
    const since = Date.now() - BACKLOG_MS;
    return this.ring.filter((e) => Date.parse(e.time) >= since);
  }

  add(c: Client): void {
    this.clients.add(c);
    this.timer ??= setInterval(() => void this.tick(), TICK_MS);
  }

  remove(c: Client): void {
    this.clients.delete(c);
    if (this.clients.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Sessions with their counts; a session's counts start from its full audit trail once. */
  async sessions(): Promise<SessionSummary[]> {
    const list: SessionView[] = this.ctx.sessions.list();
    for (const s of list) {
      if (this.counted.has(s.id) || this.reading.has(s.id)) continue;
      // Events that arrive while the trail is read are counted unless the trail holds them already
      // (the index hands the feed and the trail the same objects).
      const during: AuditEvent[] = [];
      this.reading.set(s.id, during);
      const events = await this.ctx.sessions.audit(s.id).catch(() => [] as AuditEvent[]);
      this.reading.delete(s.id);
      const inTrail = new Set(events);
      let allowed = 0;
      let denied = 0;
      for (const e of [...events, ...during.filter((x) => !inTrail.has(x))]) {
        if (e.decision === 'allow') allowed++;
        else denied++;
      }
      this.counts.set(s.id, { allowed, denied });
      this.counted.add(s.id);
    }
    const live = new Set(list.map((s) => s.id));
    for (const id of this.counted) {
      if (!live.has(id)) {
        this.counted.delete(id);
        this.counts.delete(id);
      }
    }
    return list.map((s) => ({ ...s, ...(this.counts.get(s.id) ?? { allowed: 0, denied: 0 }) }));
  }

  policy(): PolicyStatus {
    return policyStatus(this.ctx.policy);
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const sessions = await this.sessions();
      const policy = this.policy();
      for (const c of this.clients) c.tick(sessions, policy);
    } catch (err) {
      this.ctx.logger.warn({ err }, 'event stream: reading sessions failed');
    } finally {
      this.ticking = false;
    }
  }
}

/**
 * The `sessionId` query parameter, validated.
 * @throws RequestValidationError naming the parameter.
 */
function parseQuery(req: Request): string | null {
  const result = eventsQuery.safeParse(req.query);
  if (!result.success) {
    const issue = firstIssue(result.error);
    const field = issue?.field || '(query)';
    throw new RequestValidationError(`${field}: ${issue?.message ?? 'invalid query'}`, field);
  }
  return result.data.sessionId ?? null;
}

/**
 * Registers `GET /v1/events`: a server-sent event stream (text/event-stream) of the sessions, the
 * policy status and every gateway decision the caller may read (the same delegation rule as
 * `GET /v1/sessions` and `GET /v1/sessions/{id}/audit`: READ on the session's role), for the web
 * console and any client that reads a streamed response (the token goes in the `Authorization`
 * header, never in the URL). With `?sessionId=ID` only that session, answered 404/403 before the
 * stream starts; the stream ends with `end` when the session has ended. Frames: src/api/schemas.ts
 * `streamEventSchema`. A client that leaves more than 4 MiB unread is disconnected.
 *
 * @param feed new audit events; without one the stream carries sessions and policy only.
 */
export function registerEventRoutes(app: Express, ctx: ApiContext, feed?: AuditFeed): void {
  const hub = new EventHub(ctx, feed);

  app
    .route('/v1/events')
    .get(requireAuth(ctx), async (req: Request, res: Response) => {
      const caller = res.locals.caller as string;
      const only = parseQuery(req);
      if (only !== null) {
        // 404, then 403, before any streamed byte.
        authorizeSessionOp(ctx.policy, caller, 'READ', ctx.sessions.get(only).role);
      }
      // Fails with 503 while no policy is loaded (nothing can be authorized).
      readableBy(ctx.policy, caller);
      const mayRead = (r: string | null): boolean => {
        try {
          return readableBy(ctx.policy, caller)(r ?? '*');
        } catch {
          return false;
        }
      };

      res.status(200);
      res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
      res.setHeader('X-Accel-Buffering', 'no');
      res.flushHeaders();
      req.socket.setNoDelay(true);

      let closed = false;
      let lastSessions = '';
      let lastPolicy = '';
      let pending: AuditEvent[] | null = only !== null ? [] : null; // per-session: held until backlog sent
      const sentBacklog = new Set<AuditEvent>();
      const close = (): void => {
        if (closed) return;
        closed = true;
        hub.remove(client);
        clearInterval(keepalive);
        res.end();
      };
      const write = (text: string): void => {
        if (closed) return;
        res.write(text);
        if (res.writableLength > MAX_BUFFERED_BYTES) {
          ctx.logger.warn(
            { caller, requestId: res.locals.requestId },
            'event stream: client too slow, closed',
          );
          close();
        }
      };
      const client: Client = {
        caller,
        sessionId: only,
        send(event, data) {
          write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
        },
        tick(sessions, policy) {
          const mine = sessions.filter((s) => (only === null ? mayRead(s.role) : s.id === only));
          const s = JSON.stringify(mine);
          if (s !== lastSessions) {
            lastSessions = s;
            this.send('sessions', { sessions: mine });
          }
          const p = JSON.stringify(policy);
          if (p !== lastPolicy) {
            lastPolicy = p;
            this.send('policy', policy);
          }
          if (only !== null && !mine.some((x) => x.status !== 'stopped')) {
            this.send('end', { sessionId: only });
            close();
          }
        },
        decision(e) {
          if (only !== null) {
            if (e.sessionId !== only) return;
            if (pending) {
              pending.push(e);
              return;
            }
            if (sentBacklog.has(e)) return;
          } else if (!mayRead(e.role)) return;
          this.send('decision', e);
        },
      };
      const keepalive = setInterval(() => write(': keepalive\n\n'), KEEPALIVE_MS);
      req.on('close', close);
      res.on('error', close);

      client.send('hello', { caller, sessionId: only });
      hub.add(client);
      if (only === null) {
        for (const e of hub.recent()) if (mayRead(e.role)) client.send('decision', e);
      } else {
        const trail = await ctx.sessions.audit(only).catch(() => [] as AuditEvent[]);
        for (const e of trail.slice(-SESSION_BACKLOG)) {
          sentBacklog.add(e);
          client.send('decision', e);
        }
        const held = pending ?? [];
        pending = null;
        for (const e of held) client.decision(e);
      }
      client.tick(await hub.sessions(), hub.policy());
    })
    .all(methodNotAllowed(['GET']));
}
