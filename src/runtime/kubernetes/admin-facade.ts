import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { z } from 'zod';
import { gatewaySessionSchema, listen } from '../../gateway/admin.js';
import type { GatewaySession } from '../../sessions/types.js';
import type { GatewayEndpoint } from '../types.js';
import type { GatewayReplicas } from './gateway-replicas.js';

const syncSchema = z.strictObject({ sessions: z.array(gatewaySessionSchema) });
const MAX_BODY = 4 * 1024 * 1024;

/** What the facade does beyond talking to the replicas. */
export interface FacadeHooks {
  /**
   * Called first on a kill switch: records the revocation on the platform (the Pod's `airlock.io/revoked`
   * label), so every replica's watch refuses the session, including replicas the fan-out cannot reach.
   */
  beforeRevoke(sessionId: string): Promise<void>;
}

/**
 * The gateway admin API as the SessionManager sees it, served on 127.0.0.1 inside the control plane
 * and translated for a set of gateway replicas that learn sessions from the Kubernetes API:
 *
 * - `GET /admin/status`: every replica's status folded into one (GatewayReplicas.status);
 * - `PUT /admin/sessions/{id}`: forwarded to every replica when the session has a Pod IP; before that
 *   (a prepared Pod has none) there is nothing to bind and the replicas' watch will see the IP;
 * - `PUT /admin/sessions` (resync): each session with a Pod IP is upserted on every replica; nothing is
 *   revoked by a resync here, since revocations travel through the Pod label and DELETE;
 * - `DELETE /admin/sessions/{id}`: the Pod is labelled revoked, then every replica revokes the session
 *   and answers after closing its sockets: the kill switch returns only when all replicas refuse.
 */
export class GatewayAdminFacade {
  private server: http.Server | null = null;
  private readonly token = randomBytes(32).toString('base64url');

  constructor(
    private readonly replicas: GatewayReplicas,
    private readonly hooks: FacadeHooks,
  ) {}

  /** Starts listening on 127.0.0.1 (ephemeral port) once; returns the endpoint for GatewayClient. */
  async start(): Promise<GatewayEndpoint> {
    if (!this.server) {
      this.server = http.createServer((req, res) => void this.handle(req, res));
      await listen(this.server, 0, '127.0.0.1');
    }
    const addr = this.server.address() as { port: number };
    return { adminUrl: `http://127.0.0.1:${addr.port}`, adminToken: this.token };
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    await new Promise<void>((r) => {
      s.close(() => r());
      s.closeAllConnections();
    });
  }

  private authorized(header: string | undefined): boolean {
    const digest = (v: string): Buffer => createHash('sha256').update(v).digest();
    return timingSafeEqual(digest(header ?? ''), digest(`Bearer ${this.token}`));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const send = (status: number, body?: unknown): void => {
      if (body === undefined) res.writeHead(status).end();
      else res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    try {
      if (!this.authorized(req.headers.authorization)) return send(401, { error: 'unauthorized' });
      const url = req.url ?? '/';
      if (url === '/admin/status' && req.method === 'GET') return send(200, await this.replicas.status());
      if (url === '/admin/sessions' && req.method === 'PUT') {
        const parsed = syncSchema.safeParse(await readJson(req));
        if (!parsed.success) return send(400, { error: 'bad_request', detail: parsed.error.message });
        for (const s of parsed.data.sessions.filter(hasPodIp)) await this.replicas.register(s);
        return send(204);
      }
      const m = /^\/admin\/sessions\/([A-Za-z0-9_-]{1,64})$/.exec(url);
      if (m?.[1] && req.method === 'PUT') {
        const parsed = gatewaySessionSchema.safeParse(await readJson(req));
        if (!parsed.success || parsed.data.id !== m[1])
          return send(400, { error: 'bad_request', detail: parsed.error?.message ?? 'id mismatch' });
        if (hasPodIp(parsed.data)) await this.replicas.register(parsed.data);
        return send(204);
      }
      if (m?.[1] && req.method === 'DELETE') {
        await this.hooks.beforeRevoke(m[1]);
        return send(200, { closedSockets: await this.replicas.revoke(m[1]) });
      }
      send(404, { error: 'not_found' });
    } catch (err) {
      send(503, { error: 'gateway_unavailable', detail: (err as Error).message });
    }
  }
}

const hasPodIp = (s: GatewaySession): boolean => isIP(s.address) !== 0;

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
