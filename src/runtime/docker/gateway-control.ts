import type Docker from 'dockerode';
import { GATEWAY_ADMIN_PORT } from '../../config/schema.js';
import { GatewayAdminClient } from '../../gateway-wire/admin-client.js';
import type { GatewayControl, GatewayStatus } from '../../gateway-wire/control.js';
import type { GatewaySession } from '../../gateway-wire/session.js';
import { GATEWAY_CONTAINER } from './labels.js';

/**
 * The Docker gateway's admin client, following its host port. The admin API is published on an
 * ephemeral loopback port, and Docker picks a new one each time the container starts again — after
 * a crash its restart policy (`unless-stopped`) restarts it, and the port the control plane knew is
 * gone (issue 15: after `kill -9` of the gateway the watchdog could never resync). So a call that
 * fails re-reads the published port from the container and, when it changed, is made once more there.
 */
export class DockerGatewayControl implements GatewayControl {
  private client: GatewayAdminClient;

  constructor(
    private readonly docker: Docker,
    private readonly token: string,
    private url: string,
  ) {
    this.client = new GatewayAdminClient({ adminUrl: url, adminToken: token });
  }

  /** The admin API's base URL in use (`http://127.0.0.1:PORT`). */
  adminUrl(): string {
    return this.url;
  }

  private async call<T>(fn: (c: GatewayAdminClient) => Promise<T>): Promise<T> {
    try {
      return await fn(this.client);
    } catch (err) {
      const url = await this.publishedUrl();
      if (url === null || url === this.url) throw err;
      this.url = url;
      this.client = new GatewayAdminClient({ adminUrl: url, adminToken: this.token });
      return fn(this.client);
    }
  }

  /** The admin URL the running container publishes now, or null (stopped, gone, engine down). */
  private async publishedUrl(): Promise<string | null> {
    try {
      const info = await this.docker.getContainer(GATEWAY_CONTAINER).inspect();
      const port = info.NetworkSettings.Ports?.[`${GATEWAY_ADMIN_PORT}/tcp`]?.[0]?.HostPort;
      return info.State.Running && port ? `http://127.0.0.1:${port}` : null;
    } catch {
      return null;
    }
  }

  status(): Promise<GatewayStatus> {
    return this.call((c) => c.status());
  }

  register(session: GatewaySession): Promise<void> {
    return this.call((c) => c.register(session));
  }

  revoke(id: string): Promise<number> {
    return this.call((c) => c.revoke(id));
  }

  sync(sessions: GatewaySession[]): Promise<void> {
    return this.call((c) => c.sync(sessions));
  }
}
