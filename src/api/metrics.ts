import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { PolicySource } from '../policy/types.js';
import type { SessionService } from '../sessions/types.js';
import { readiness } from './readiness.js';

/** Options of {@link ApiMetrics}. */
export interface ApiMetricsOptions {
  /**
   * Registry to register on; pass a shared one to serve gateway and API metrics from one `/metrics`.
   * @default a new Registry
   */
  registry?: Registry;
  /**
   * Whether to collect prom-client's default process metrics (CPU, memory, event-loop lag, GC).
   * Turn off when the registry already collects them.
   * @default true
   */
  defaultMetrics?: boolean;
}

/**
 * The API's Prometheus metrics, on a prom-client {@link Registry} (served by `GET /metrics`):
 * - `airlock_api_http_requests_total{method,route,status}` — counter of answered requests; `route` is
 *   the route pattern (`/v1/sessions/:id`) or `(unmatched)`, so ids never become label values.
 * - `airlock_api_http_request_duration_seconds{method,route,status}` — histogram, seconds.
 * - `airlock_api_auth_failures_total` — requests refused with 401.
 * - `airlock_api_sessions{status}` — sessions known to the session service, read at scrape time.
 * - `airlock_policy_loaded` (1/0), `airlock_policy_rules`, `airlock_policy_load_error` (1 while the
 *   last reload failed) — read at scrape time.
 * - `airlock_api_ready` (1/0) — what `/readyz` would answer.
 * plus prom-client's default process metrics unless disabled.
 */
export class ApiMetrics {
  readonly registry: Registry;
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly authFailures: Counter;
  #sessions: SessionService | undefined;
  #policy: PolicySource | undefined;

  constructor(opts: ApiMetricsOptions = {}) {
    this.registry = opts.registry ?? new Registry();
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.httpRequests = new Counter({
      name: 'airlock_api_http_requests_total',
      help: 'API requests answered, by method, route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'airlock_api_http_request_duration_seconds',
      help: 'API request duration in seconds, by method, route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.authFailures = new Counter({
      name: 'airlock_api_auth_failures_total',
      help: 'API requests refused for a missing or invalid bearer token.',
      registers,
    });
    // Scrape-time readers (collect() runs with `this` bound to the gauge).
    const sessionsNow = (): SessionService | undefined => this.#sessions;
    const policyNow = (): PolicySource | undefined => this.#policy;
    new Gauge({
      name: 'airlock_api_sessions',
      help: 'Sessions known to the session service, by status.',
      labelNames: ['status'],
      registers,
      collect() {
        this.reset();
        const counts: Record<string, number> = { running: 0, stopping: 0, stopped: 0 };
        try {
          for (const s of sessionsNow()?.list() ?? []) counts[s.status] = (counts[s.status] ?? 0) + 1;
        } catch {
          // A failing session service must not break the scrape; readiness reports it.
        }
        for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
      },
    });
    new Gauge({
      name: 'airlock_policy_loaded',
      help: '1 while a valid policy is loaded, else 0 (every call denied).',
      registers,
      collect() {
        this.set(policyNow()?.current() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'airlock_policy_rules',
      help: 'Number of p and g lines in the policy in force (0 when none).',
      registers,
      collect() {
        this.set(policyNow()?.current()?.rules ?? 0);
      },
    });
    new Gauge({
      name: 'airlock_policy_load_error',
      help: '1 while the last policy load or reload failed, else 0.',
      registers,
      collect() {
        this.set(policyNow()?.lastError() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'airlock_api_ready',
      help: '1 when /readyz answers 200, else 0.',
      registers,
      collect() {
        const policy = policyNow();
        const sessions = sessionsNow();
        this.set(policy && sessions && readiness(policy, sessions).ready ? 1 : 0);
      },
    });
  }

  /** Connects the scrape-time gauges to the services they read. Called by `createApiApp`. */
  bind(sessions: SessionService, policy: PolicySource): void {
    this.#sessions = sessions;
    this.#policy = policy;
  }

  /** Records one answered request; `durationSeconds` in seconds. */
  observe(method: string, route: string, status: number, durationSeconds: number): void {
    const labels = { method, route, status: String(status) };
    this.httpRequests.inc(labels);
    this.httpDuration.observe(labels, durationSeconds);
  }
}
