import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { ApiMetrics } from '../../../src/api/metrics.js';
import { createApiApp } from '../../../src/api/app.js';
import type { AuditEvent } from '../../../src/audit/event.js';
import {
  ExecTimeoutError,
  ForbiddenError,
  GatewayUnavailableError,
  RuntimeError,
  SessionConflictError,
  SessionNotFoundError,
  UnknownRoleError,
} from '../../../src/errors.js';
import type { PolicySnapshot, PolicySource } from '../../../src/policy/types.js';
import type {
  CreateSessionRequest,
  ExecOutput,
  SessionService,
  SessionView,
} from '../../../src/sessions/types.js';

/** Tokens every test server accepts. */
export const TOKENS = [
  { name: 'alice', token: 'alice-token-0123456789' },
  { name: 'bob', token: 'bob-token-0123456789abcdef' },
];
export const ALICE = { authorization: `Bearer ${TOKENS[0]!.token}` };

/**
 * In-memory SessionService double. Behaviour is steered by the request: roles outside `roles` throw
 * UnknownRoleError; role `forbidden` throws ForbiddenError; image `gateway-down` throws
 * GatewayUnavailableError; exec programs `runtime-fail`, `slow`, `boom` throw RuntimeError (with a
 * cause), ExecTimeoutError and a plain Error; any other command echoes its argv.
 */
export class FakeSessions implements SessionService {
  readonly roles = new Set(['analyst', 'poster']);
  readonly sessions = new Map<string, SessionView>();
  readonly events = new Map<string, AuditEvent[]>();
  readonly calls: Array<{ op: string; args: unknown[] }> = [];
  ready = { ready: true, reasons: [] as string[] };
  #next = 1;

  async create(req: CreateSessionRequest, caller: string): Promise<SessionView> {
    this.calls.push({ op: 'create', args: [req, caller] });
    if (req.role === 'forbidden')
      throw new ForbiddenError(`caller ${caller} may not create forbidden sessions`);
    if (!this.roles.has(req.role)) throw new UnknownRoleError(req.role);
    if (req.image === 'gateway-down')
      throw new GatewayUnavailableError('gateway did not acknowledge the session');
    const now = new Date('2026-01-01T00:00:00.000Z');
    const view: SessionView = {
      id: `s-${this.#next++}`,
      role: req.role,
      status: 'running',
      image: req.image ?? 'airlock-sandbox:dev',
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + (req.ttlSeconds ?? 3600) * 1000).toISOString(),
      createdBy: caller,
      labels: req.labels ?? {},
    };
    this.sessions.set(view.id, view);
    this.events.set(view.id, []);
    return view;
  }

  list(): SessionView[] {
    return [...this.sessions.values()];
  }

  get(id: string): SessionView {
    const s = this.sessions.get(id);
    if (!s) throw new SessionNotFoundError(id);
    return s;
  }

  async exec(
    id: string,
    command: string[],
    timeoutMs: number,
    onOutput?: (stream: 'stdout' | 'stderr', data: string) => void,
  ): Promise<ExecOutput> {
    this.calls.push({ op: 'exec', args: [id, command, timeoutMs] });
    const s = this.get(id);
    if (s.status !== 'running') throw new SessionConflictError(id, `session ${id} is ${s.status}`);
    switch (command[0]) {
      case 'runtime-fail':
        throw new RuntimeError('exec failed', { cause: new Error('container 1234 is not running') });
      case 'slow':
        throw new ExecTimeoutError(timeoutMs);
      case 'boom':
        throw new Error('secret internal detail');
      default:
        onOutput?.('stdout', command.join(' '));
        onOutput?.('stderr', 'warn');
        return { exitCode: command[0] === 'false' ? 1 : 0, stdout: command.join(' '), stderr: '' };
    }
  }

  async audit(id: string): Promise<AuditEvent[]> {
    this.get(id);
    return this.events.get(id) ?? [];
  }

  async remove(id: string): Promise<void> {
    this.calls.push({ op: 'remove', args: [id] });
    this.get(id);
    this.sessions.delete(id);
  }

  readiness(): { ready: boolean; reasons: string[] } {
    return this.ready;
  }
}

/** A PolicySource whose answer the test sets. */
export class FixedPolicy implements PolicySource {
  constructor(
    public snapshot: PolicySnapshot | null,
    public error: string | null = null,
  ) {}
  current(): PolicySnapshot | null {
    return this.snapshot;
  }
  lastError(): string | null {
    return this.error;
  }
}

export const SNAPSHOT: PolicySnapshot = {
  version: 'abc123def456',
  loadedAt: new Date('2026-01-01T00:00:00.000Z'),
  rules: 7,
  roles: new Set(['analyst', 'poster']),
  decide: () => ({ allowed: false, reason: 'no_match', rule: null }),
  mayReachHost: () => false,
};

export interface TestApi {
  url: string;
  sessions: FakeSessions;
  policy: FixedPolicy;
  metrics: ApiMetrics;
  close(): Promise<void>;
}

/** Starts the real app on 127.0.0.1, port 0, with fresh doubles. */
export async function startApi(policy = new FixedPolicy(SNAPSHOT)): Promise<TestApi> {
  const sessions = new FakeSessions();
  const metrics = new ApiMetrics({ defaultMetrics: true });
  const app = createApiApp({ sessions, policy, tokens: TOKENS, metrics });
  const server: Server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    sessions,
    policy,
    metrics,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

/** POSTs `body` as JSON (a string is sent as-is) with Alice's token unless `headers` say otherwise. */
export function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = ALICE,
): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Reads a problem+json answer, asserting its media type. */
export async function readProblem(res: Response): Promise<Record<string, unknown>> {
  const type = res.headers.get('content-type') ?? '';
  if (!type.startsWith('application/problem+json')) {
    throw new Error(`expected application/problem+json, got ${type}: ${await res.text()}`);
  }
  return (await res.json()) as Record<string, unknown>;
}
