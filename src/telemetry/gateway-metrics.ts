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

/** Decisions of one label set since the metrics were last read (see {@link DecisionMetricsSink}). */
interface DecisionTally {
  decision: string;
  reason: string;
  role: string;
  /** Decisions counted and not yet added to the counter. */
  count: number;
}

/** The duration histogram of one (decision, role): cumulative since start, like any histogram. */
interface DurationSeries {
  labels: { decision: string; role: string };
  /** Observations per bucket of {@link DECISION_DURATION_BUCKETS} (not cumulative), then above the last. */
  buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * Counts every audited decision, as one audit sink among the gateway's:
 * - `airlock_gateway_decisions_total{decision,reason,role}` — counter; `role` is the session's role
 *   (policy-defined, so bounded), `(none)` when the caller could not be identified.
 * - `airlock_gateway_request_duration_seconds{decision,role}` — histogram of the event's `durationMs`
 *   (decision + upstream exchange), in seconds.
 *
 * On the request path it only bumps numbers in a map keyed by the label values (~0.1 µs; prom-client's
 * `inc()` + `observe()` with label objects took ~0.6 µs per call, measured in bench/README.md): the
 * counter takes the tallies in its `collect()` when the registry is read, and the histogram is a
 * metric of its own on the registry in prom-client's histogram format (`_bucket{le}`, `_sum`,
 * `_count`, aggregated across workers by summing like prom-client's).
 */
export class DecisionMetricsSink implements AuditSink {
  readonly decisions: client.Counter<'decision' | 'reason' | 'role'>;
  /** decision → reason → role → tally; {@link order}: the tallies in the order they appeared. */
  private readonly tallies = new Map<string, Map<string, Map<string, DecisionTally>>>();
  private readonly order: DecisionTally[] = [];
  /** decision → role → series; {@link seriesOrder}: in the order they appeared. */
  private readonly series = new Map<string, Map<string, DurationSeries>>();
  private readonly seriesOrder: DurationSeries[] = [];

  constructor(registry: client.Registry) {
    const tallies = this.order;
    this.decisions = new client.Counter({
      name: 'airlock_gateway_decisions_total',
      help: 'Gateway decisions by outcome, reason and session role',
      labelNames: ['decision', 'reason', 'role'] as const,
      registers: [registry],
      collect() {
        for (const t of tallies) {
          if (t.count === 0) continue;
          this.inc({ decision: t.decision, reason: t.reason, role: t.role }, t.count);
          t.count = 0;
        }
      },
    });
    registry.registerMetric(
      new DurationHistogram(this.seriesOrder, () => this.series.clear()) as unknown as client.Metric,
    );
  }

  emit(e: AuditEvent): void {
    const role = e.role ?? NO_ROLE;
    // Nested maps keyed by the label values (interned strings): no key string built per call.
    let byReason = this.tallies.get(e.decision);
    if (!byReason) this.tallies.set(e.decision, (byReason = new Map()));
    let byRole = byReason.get(e.reason);
    if (!byRole) byReason.set(e.reason, (byRole = new Map()));
    let t = byRole.get(role);
    if (!t) {
      t = { decision: e.decision, reason: e.reason, role, count: 0 };
      byRole.set(role, t);
      this.order.push(t);
    }
    t.count++;
    if (!(Number.isFinite(e.durationMs) && e.durationMs >= 0)) return;
    let seriesByRole = this.series.get(e.decision);
    if (!seriesByRole) this.series.set(e.decision, (seriesByRole = new Map()));
    let s = seriesByRole.get(role);
    if (!s) {
      s = {
        labels: { decision: e.decision, role },
        buckets: new Float64Array(DECISION_DURATION_BUCKETS.length + 1),
        sum: 0,
        count: 0,
      };
      seriesByRole.set(role, s);
      this.seriesOrder.push(s);
    }
    const v = e.durationMs / 1000;
    let i = 0;
    while (i < DECISION_DURATION_BUCKETS.length && v > DECISION_DURATION_BUCKETS[i]!) i++;
    s.buckets[i]! += 1;
    s.sum += v;
    s.count += 1;
  }
}

/** `airlock_gateway_request_duration_seconds` as a registry metric (what prom-client's `get()` gives). */
class DurationHistogram {
  readonly name = 'airlock_gateway_request_duration_seconds';
  readonly help =
    'Time from a call reaching the gateway to its exchange ending (decision + upstream), seconds';
  readonly type = 'histogram';
  readonly aggregator = 'sum';

  constructor(
    private readonly series: DurationSeries[],
    private readonly cleared: () => void,
  ) {}

  get(): {
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: { labels: Record<string, string | number>; value: number; metricName: string }[];
  } {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const s of this.series) {
      let acc = 0;
      DECISION_DURATION_BUCKETS.forEach((le, i) => {
        acc += s.buckets[i]!;
        values.push({ labels: { le, ...s.labels }, value: acc, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** `Registry.resetMetrics()`: starts again from zero. */
  reset(): void {
    this.series.length = 0;
    this.cleared();
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
