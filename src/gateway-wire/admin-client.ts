import { request } from 'undici';
import { GatewayUnavailableError } from '../errors.js';
import type { GatewayControl, GatewayStatus } from './control.js';
import type { GatewaySession } from './session.js';

/** Where the control plane reaches one gateway's admin API. */
export interface GatewayEndpoint {
  /** Base URL of the admin API, e.g. `http://127.0.0.1:49153`. */
  adminUrl: string;
  /** Bearer token for the admin API. */
  adminToken: string;
}

/**
 * GatewayControl over one gateway's admin API (the server is src/gateway/admin.ts). Every call has a
 * deadline; failures (transport, timeout, any status >= 300) throw GatewayUnavailableError.
 */
export class GatewayAdminClient implements GatewayControl {
  constructor(
    private readonly endpoint: GatewayEndpoint,
    /** Per-call deadline, ms. */
    private readonly timeoutMs = 5_000,
  ) {}

  private async call(method: 'GET' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<unknown> {
    let res;
    try {
      res = await request(this.endpoint.adminUrl + path, {
        method,
        headers: {
          authorization: `Bearer ${this.endpoint.adminToken}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new GatewayUnavailableError(`gateway admin API ${method} ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const text = await res.body.text();
    if (res.statusCode >= 300) {
      throw new GatewayUnavailableError(
        `gateway admin API ${method} ${path} answered ${res.statusCode}: ${text}`,
      );
    }
    return text ? (JSON.parse(text) as unknown) : undefined;
  }

  /** `GET /admin/status`. */
  status(): Promise<GatewayStatus> {
    return this.call('GET', '/admin/status') as Promise<GatewayStatus>;
  }

  /** `PUT /admin/sessions/{id}`; the gateway serves the session from when this resolves. */
  async register(session: GatewaySession): Promise<void> {
    await this.call('PUT', `/admin/sessions/${encodeURIComponent(session.id)}`, session);
  }

  /** `DELETE /admin/sessions/{id}`: resolves once the gateway has forgotten the session and closed its sockets. */
  async revoke(id: string): Promise<number> {
    const r = (await this.call('DELETE', `/admin/sessions/${encodeURIComponent(id)}`)) as {
      closedSockets: number;
    };
    return r.closedSockets;
  }

  /** `PUT /admin/sessions`: replaces the gateway's whole session table (sessions not listed are revoked). */
  async sync(sessions: GatewaySession[]): Promise<void> {
    await this.call('PUT', '/admin/sessions', { sessions });
  }
}
