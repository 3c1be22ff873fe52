import fc from 'fast-check';
import client from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/event.js';
import {
  DECISION_DURATION_BUCKETS,
  DecisionMetricsSink,
  NO_ROLE,
} from '../../../src/telemetry/gateway-metrics.js';

/** The same two metrics kept the plain prom-client way: what DecisionMetricsSink must expose. */
function reference(registry: client.Registry): (e: AuditEvent) => void {
  const decisions = new client.Counter({
    name: 'airlock_gateway_decisions_total',
    help: 'Gateway decisions by outcome, reason and session role',
    labelNames: ['decision', 'reason', 'role'] as const,
    registers: [registry],
  });
  const duration = new client.Histogram({
    name: 'airlock_gateway_request_duration_seconds',
    help: 'Time from a call reaching the gateway to its exchange ending (decision + upstream), seconds',
    labelNames: ['decision', 'role'] as const,
    buckets: [...DECISION_DURATION_BUCKETS],
    registers: [registry],
  });
  return (e) => {
    const role = e.role ?? NO_ROLE;
    decisions.inc({ decision: e.decision, reason: e.reason, role });
    if (Number.isFinite(e.durationMs) && e.durationMs >= 0)
      duration.observe({ decision: e.decision, role }, e.durationMs / 1000);
  };
}

const eventArb = fc.record({
  decision: fc.constantFrom('allow', 'deny', 'would_deny'),
  reason: fc.constantFrom('rule_allow', 'no_matching_rule', 'rule_deny'),
  role: fc.constantFrom('reader', 'writer', null),
  // Bucket bounds themselves (le is inclusive), values between and beyond them, and bad values.
  durationMs: fc.oneof(
    fc.constantFrom(...DECISION_DURATION_BUCKETS.map((b) => b * 1000), 0, -1, Number.NaN, 1e9),
    fc.double({ min: 0, max: 400_000, noNaN: true }),
  ),
});

describe('DecisionMetricsSink', () => {
  it('exposes exactly what prom-client Counter + Histogram would, across scrapes (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(eventArb, { maxLength: 40 }), { minLength: 1, maxLength: 4 }),
        async (scrapes) => {
          const mine = new client.Registry();
          const theirs = new client.Registry();
          const sink = new DecisionMetricsSink(mine);
          const ref = reference(theirs);
          for (const batch of scrapes) {
            for (const e of batch) {
              sink.emit(e as unknown as AuditEvent);
              ref(e as unknown as AuditEvent);
            }
            expect(await mine.metrics()).toBe(await theirs.metrics());
          }
          // A multi-worker gateway's primary sums its workers' metrics (cluster.ts): same result.
          const agg = client.AggregatorRegistry.aggregate([
            await mine.getMetricsAsJSON(),
            await mine.getMetricsAsJSON(),
          ]);
          const aggRef = client.AggregatorRegistry.aggregate([
            await theirs.getMetricsAsJSON(),
            await theirs.getMetricsAsJSON(),
          ]);
          expect(await agg.metrics()).toBe(await aggRef.metrics());
        },
      ),
      { numRuns: 150 },
    );
  });
});
