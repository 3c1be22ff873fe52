import { request } from 'undici';
import { GatewayUnavailableError } from '../errors.js';
import type { GatewayEndpoint } from '../runtime/types.js';
import type { GatewaySession } from './types.js';

export interface GatewayStatus {
  instanceId: string;
  startedAt: string;
  policyVersion: string | null;
  policyError: string | null;
  sessions: number;
}

/**
 * The control plane's client for the gateway's admin API (src/gateway/admin.ts). Every call has a
 * deadline; failures throw GatewayUnavailableError.
 */
export class GatewayClient {
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

  status(): Promise<GatewayStatus> {
    return this.call('GET', '/admin/status') as Promise<GatewayStatus>;
  }

  /** Registers a session; the gateway serves it from when this resolves. */
  async register(session: GatewaySession): Promise<void> {
    await this.call('PUT', `/admin/sessions/${encodeURIComponent(session.id)}`, session);
  }

  /** Kill switch: resolves once the gateway has forgotten the session and closed its sockets. */
  async revoke(id: string): Promise<number> {
    const r = (await this.call('DELETE', `/admin/sessions/${encodeURIComponent(id)}`)) as {
      closedSockets: number;
    };
    return r.closedSockets;
  }

  /** Replaces the gateway's whole session table. */
  async sync(sessions: GatewaySession[]): Promise<void> {
    await this.call('PUT', '/admin/sessions', { sessions });
  }

  /** Polls /admin/status until it answers or `timeoutMs` passes. */
  async waitReady(timeoutMs = 30_000): Promise<GatewayStatus> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        return await this.status();
      } catch (err) {
        last = err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    throw new GatewayUnavailableError(`gateway did not come up within ${timeoutMs} ms: ${String(last)}`);
  }
}
