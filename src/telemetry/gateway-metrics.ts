/**
 * The gateway's Prometheus metrics about decisions, sessions and policy reloads (docs/telemetry.md),
 * on the gateway's prom-client registry (served by the admin API's `GET /metrics`; a multi-worker
 * gateway's primary aggregates its workers').
 */
import client from 'prom-client';
import type { AuditEvent, AuditSink } from '../audit/event.js';

/**
 * Buckets of `airlock_gateway_request_duration_seconds`, in seconds: from 1 ms (a denial answered by
 * the gateway itself) to 5 minutes (a long upstream exchange or tunnel).
 */
export const DECISION_DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
] as const;

/** Label value for an event without a role (the caller could not be identified). */
export const NO_ROLE = '(none)';

/**
 * Counts every audited decision, as one audit sink among the gateway's (no work on the request path
 * beyond two label lookups):
 * - `airlock_gateway_decisions_total{decision,reason,role}` — counter; `role` is the session's role
 *   (policy-defined, so bounded), `(none)` when the caller could not be identified.
 * - `airlock_gateway_request_duration_seconds{decision,role}` — histogram of the event's `durationMs`
 *   (decision + upstream exchange), in seconds.
 */
export class DecisionMetricsSink implements AuditSink {
  readonly decisions: client.Counter<'decision' | 'reason' | 'role'>;
  readonly duration: client.Histogram<'decision' | 'role'>;

  constructor(registry: client.Registry) {
    this.decisions = new client.Counter({
      name: 'airlock_gateway_decisions_total',
      help: 'Gateway decisions by outcome, reason and session role',
      labelNames: ['decision', 'reason', 'role'] as const,
      registers: [registry],
    });
    this.duration = new client.Histogram({
      name: 'airlock_gateway_request_duration_seconds',
      help: 'Time from a call reaching the gateway to its exchange ending (decision + upstream), seconds',
      labelNames: ['decision', 'role'] as const,
      buckets: [...DECISION_DURATION_BUCKETS],
      registers: [registry],
    });
  }

  emit(e: AuditEvent): void {
    const role = e.role ?? NO_ROLE;
    this.decisions.inc({ decision: e.decision, reason: e.reason, role });
    if (Number.isFinite(e.durationMs) && e.durationMs >= 0)
      this.duration.observe({ decision: e.decision, role }, e.durationMs / 1000);
  }
}

/**
 * `airlock_gateway_sessions` — gauge read at scrape time: sessions in this gateway's table. Every
 * worker of a multi-worker gateway holds the whole table, so the primary reports the largest.
 */
export function registerGatewaySessionsMetric(registry: client.Registry, sessionCount: () => number): void {
  new client.Gauge({
    name: 'airlock_gateway_sessions',
    help: "Sessions in this gateway's table",
    registers: [registry],
    aggregator: 'max',
    collect() {
      this.set(sessionCount());
    },
  });
}

/**
 * Policy reload metrics, on a gateway's registry and on the API's (the control plane's policy source):
 * - `airlock_policy_reloads_total{result}` — counter of load/reload attempts that read changed input,
 *   `result` = `success` | `failure` (a failure keeps the last good policy).
 * - `airlock_policy_last_reload_success_timestamp_seconds` — gauge, Unix time of the last successful
 *   load or reload (0 before the first).
 * @returns `{ onReload }`, the listener to pass to the policy store or source.
 */
export function registerPolicyReloadMetrics(registry: client.Registry): {
  onReload: (r: { error: string | null }) => void;
} {
  const reloads = new client.Counter({
    name: 'airlock_policy_reloads_total',
    help: 'Policy reload attempts on changed input, by result (success, failure: the last good policy stays)',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  reloads.inc({ result: 'success' }, 0);
  reloads.inc({ result: 'failure' }, 0);
  const lastSuccess = new client.Gauge({
    name: 'airlock_policy_last_reload_success_timestamp_seconds',
    help: 'Unix time of the last successful policy load or reload (0 before the first)',
    registers: [registry],
    aggregator: 'max',
  });
  return {
    onReload(r) {
      reloads.inc({ result: r.error === null ? 'success' : 'failure' });
      if (r.error === null) lastSuccess.set(Date.now() / 1000);
    },
  };
}
