import { createHash, timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { BlockList, isIP, type AddressInfo } from 'node:net';
import { gatewaySessionSchema, gatewaySyncSchema } from '../gateway-wire/session.js';
import { auditPageJson, type AuditRing } from '../audit/ring-sink.js';
import type { PolicySource } from '../policy/types.js';
import type { GatewaySession } from '../gateway-wire/session.js';
import { normalizeRemoteAddress } from './sessions.js';

/**
 * What the admin API reads and changes: a SessionTable, or the primary of a multi-worker gateway
 * (src/gateway/cluster.ts), whose changes resolve once every worker has applied them.
 */
export interface AdminSessions {
  readonly size: number;
  atAddress(address: string): GatewaySession | null;
  upsert(session: GatewaySession): void | Promise<void>;
  replaceAll(sessions: readonly GatewaySession[]): void | Promise<void>;
  /** @returns the number of client sockets closed. */
  revoke(id: string): number | Promise<number>;
}

export interface AdminOptions {
  sessions: AdminSessions;
  policy: PolicySource;
  /** Bearer token the control plane presents. */
  token: string;
  /** Prometheus text exposition, when metrics are enabled. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** Identifies this gateway process, so the control plane notices a restart and resyncs. */
  instanceId: string;
  /** More fields for `GET /admin/status` (a multi-worker gateway's workers). */
  status?: () => Record<string, unknown>;
  /**
   * Why this gateway cannot serve calls besides the policy (the audit cannot be written with
   * `audit.onFailure: deny`), or null; a reason makes `/readyz` answer 503 with it.
   */
  notReady?: () => string | null;
  /** The recent audit events served by `GET /admin/audit` (absent: 404). */
  audit?: Pick<AuditRing, 'page'>;
  /**
   * Source ranges (CIDR) refused whatever the session table says: the sandboxes' networks (Docker:
   * `runtime.docker.subnetPool`). The table alone is not enough: a gateway that has just restarted
   * knows no session until the control plane resyncs it.
   */
  refuseSources?: readonly string[];
}

/**
 * A BlockList of CIDRs (`10.213.0.0/16`, `fd00::/8`); a bare address is a /32 (/128).
 * @throws Error naming the entry that is not a CIDR
 */
export function cidrBlockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr = '', bits] = c.split('/');
    const family = isIP(addr);
    const prefix = bits === undefined ? (family === 6 ? 128 : 32) : Number(bits);
    if (family === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 6 ? 128 : 32))
      throw new Error(`not a CIDR: "${c}"`);
    list.addSubnet(addr, prefix, family === 6 ? 'ipv6' : 'ipv4');
  }
  return list;
}

/** Most events one `GET /admin/audit` answers. */
export const AUDIT_PAGE_MAX = 5_000;

const MAX_BODY = 4 * 1024 * 1024;

function send(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  const text = JSON.stringify(body);
  res
    .writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    .end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new Error('body too large');
    chunks.push(chunk as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/**
 * The gateway's admin API, used only by the control plane (never reachable with a session's
 * identity): session registration and the kill switch, status, health and metrics.
 *
 * - `PUT /admin/sessions` `{sessions}`: replace the whole table (resync after a restart).
 * - `PUT /admin/sessions/{id}` GatewaySession (src/gateway-wire/session.ts): register or update one session.
 * - `DELETE /admin/sessions/{id}`: kill switch; answers after the session is forgotten and its
 *   sockets are destroyed: `{closedSockets}`.
 * - `GET /admin/audit?after=SEQ&limit=N`: the recent audit events with a sequence number above SEQ
 *   (at most N, up to 5000), `{instanceId, events: [{seq, event}], last, missed}`; SEQ acknowledges
 *   every event up to it (the control plane's collector, src/runtime/kubernetes/audit-collector.ts).
 * - `GET /admin/status`, `GET /healthz`, `GET /readyz` (503 without a valid policy, or while the audit
 *   cannot be written with `audit.onFailure: deny`), `GET /metrics`.
 */
export function createAdminServer(opts: AdminOptions): http.Server {
  const digest = createHash('sha256').update(opts.token).digest();
  const authorized = (req: IncomingMessage): boolean => {
    const h = req.headers.authorization;
    if (!h?.startsWith('Bearer ')) return false;
    const d = createHash('sha256').update(h.slice(7)).digest();
    return timingSafeEqual(d, digest);
  };
  const startedAt = new Date().toISOString();
  const refused = cidrBlockList(opts.refuseSources ?? []);
  const fromSandbox = (address: string): boolean => {
    if (opts.sessions.atAddress(address)) return true;
    const family = isIP(address);
    return family !== 0 && refused.check(address, family === 6 ? 'ipv6' : 'ipv4');
  };

  return http.createServer((req, res) => {
    void (async () => {
      const url = req.url ?? '/';
      // A sandbox must never drive the admin API, even holding a token.
      if (fromSandbox(normalizeRemoteAddress(req.socket.remoteAddress)))
        return send(res, 403, { error: 'forbidden' });
      if (url === '/healthz') return send(res, 200, { status: 'ok' });
      if (url === '/readyz') {
        const p = opts.policy.current();
        const notReady = opts.notReady?.() ?? null;
        if (p && notReady) return send(res, 503, { status: 'not_ready', reason: notReady });
        return p
          ? send(res, 200, { status: 'ready', policyVersion: p.version })
          : send(res, 503, {
              status: 'not_ready',
              reason: opts.policy.lastError() ?? 'no valid policy loaded',
            });
      }
      if (url === '/metrics' && opts.metrics) {
        const m = await opts.metrics();
        res.writeHead(200, { 'content-type': m.contentType }).end(m.body);
        return;
      }
      if (!authorized(req)) return send(res, 401, { error: 'unauthorized' });
      if (url === '/admin/status' && req.method === 'GET') {
        const p = opts.policy.current();
        return send(res, 200, {
          instanceId: opts.instanceId,
          startedAt,
          policyVersion: p?.version ?? null,
          policyError: opts.policy.lastError(),
          sessions: opts.sessions.size,
          ...opts.status?.(),
        });
      }
      if (opts.audit && req.method === 'GET' && (url === '/admin/audit' || url.startsWith('/admin/audit?'))) {
        const q = new URL(url, 'http://admin').searchParams;
        const after = Number(q.get('after') ?? '0');
        const limit = Number(q.get('limit') ?? String(AUDIT_PAGE_MAX));
        if (!Number.isSafeInteger(after) || after < 0 || !Number.isSafeInteger(limit) || limit < 1)
          return send(res, 400, {
            error: 'bad_request',
            detail: 'after must be an integer >= 0, limit >= 1',
          });
        const text = auditPageJson(opts.instanceId, opts.audit.page(after, Math.min(limit, AUDIT_PAGE_MAX)));
        res
          .writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
          .end(text);
        return;
      }
      if (url === '/admin/sessions' && req.method === 'PUT') {
        const parsed = gatewaySyncSchema.safeParse(await readJson(req));
        if (!parsed.success) return send(res, 400, { error: 'bad_request', detail: parsed.error.message });
        await opts.sessions.replaceAll(parsed.data.sessions);
        return send(res, 204);
      }
      const m = /^\/admin\/sessions\/([A-Za-z0-9_-]{1,64})$/.exec(url);
      if (m) {
        const id = m[1]!;
        if (req.method === 'PUT') {
          const parsed = gatewaySessionSchema.safeParse(await readJson(req));
          if (!parsed.success || parsed.data.id !== id) {
            return send(res, 400, { error: 'bad_request', detail: parsed.error?.message ?? 'id mismatch' });
          }
          await opts.sessions.upsert(parsed.data);
          return send(res, 204);
        }
        if (req.method === 'DELETE') return send(res, 200, { closedSockets: await opts.sessions.revoke(id) });
      }
      send(res, 404, { error: 'not_found' });
    })().catch((err: unknown) => send(res, 400, { error: 'bad_request', detail: String(err) }));
  });
}

/** Starts `server` on `port` (0 = ephemeral). */
export function listen(server: http.Server, port: number, host = '0.0.0.0'): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
