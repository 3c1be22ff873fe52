/** A small client for the sandbox API in e2e tests. */
import type { AuditEvent } from '../../src/audit/event.js';
import type { ExecOutput, SessionView } from '../../src/sessions/types.js';

export class TestApi {
  constructor(
    readonly base: string,
    private readonly token: string,
  ) {}

  async raw(
    method: string,
    path: string,
    body?: unknown,
    token: string | null = this.token,
  ): Promise<Response> {
    return fetch(this.base + path, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  }

  private async ok<T>(res: Response): Promise<T> {
    const text = await res.text();
    if (!res.ok) throw new Error(`${res.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  create(body: Record<string, unknown>): Promise<SessionView> {
    return this.raw('POST', '/v1/sessions', body).then((r) => this.ok<SessionView>(r));
  }

  exec(id: string, command: string[], timeoutSeconds = 60): Promise<ExecOutput> {
    return this.raw('POST', `/v1/sessions/${id}/exec`, { command, timeoutSeconds }).then((r) =>
      this.ok<ExecOutput>(r),
    );
  }

  /** Runs a shell snippet in the sandbox. */
  sh(id: string, script: string, timeoutSeconds = 60): Promise<ExecOutput> {
    return this.exec(id, ['sh', '-c', script], timeoutSeconds);
  }

  async audit(id: string): Promise<AuditEvent[]> {
    return (
      await this.raw('GET', `/v1/sessions/${id}/audit`).then((r) => this.ok<{ events: AuditEvent[] }>(r))
    ).events;
  }

  /**
   * The session's audit once `ready(events)` holds: the gateway writes an event as the exchange
   * ends, which may be just after the sandbox got its answer, and the API reads the file from there.
   * Waits on the condition (bounded), never on a fixed delay. @throws with the last events on timeout.
   */
  async auditUntil(
    id: string,
    ready: (events: AuditEvent[]) => boolean,
    timeoutMs = 5_000,
  ): Promise<AuditEvent[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const events = await this.audit(id);
      if (ready(events)) return events;
      if (Date.now() >= deadline) {
        throw new Error(
          `audit of ${id} not as expected within ${timeoutMs} ms: ${JSON.stringify(events.slice(-3))}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async remove(id: string): Promise<void> {
    const res = await this.raw('DELETE', `/v1/sessions/${id}`);
    if (res.status !== 204) throw new Error(`DELETE ${id}: ${res.status} ${await res.text()}`);
  }
}

/** Parses `curl -s -w '\n%{http_code}'` output into status and body. */
export function curlResult(stdout: string): { status: number; body: string } {
  const i = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(i + 1).trim()), body: stdout.slice(0, i) };
}
