/**
 * Audit export over OTLP (docs/telemetry.md): every audit event becomes one OpenTelemetry log record
 * whose body is the OCSF HTTP Activity event (./ocsf.ts), and with `traces` also one span (the
 * decision's start and duration), sent in batches over OTLP/HTTP (JSON) with the official
 * `@opentelemetry/*` SDK. The control plane feeds it from the audit file it follows, so the
 * file stays the record: a collector that is down costs exported records (counted), never audit.
 */
import { SeverityNumber, SpanKind, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchLogRecordProcessor,
  LoggerProvider,
  type LogRecordExporter,
  type ReadableLogRecord,
} from '@opentelemetry/sdk-logs';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import client from 'prom-client';
import type { AuditEvent } from '../audit/event.js';
import { toOcsfHttpActivity, type OcsfEvent } from './ocsf.js';

/** Settings of {@link OtlpAuditExporter} (config `telemetry.otlp`, docs/config.md). */
export interface OtlpAuditExporterOptions {
  /** Collector base URL (`http://127.0.0.1:4318`); records go to `<endpoint>/v1/logs`. */
  endpoint: string;
  /** Extra headers on each export request. @default {} */
  headers?: Record<string, string>;
  /** `service.name` of the resource. @default "airlock" */
  serviceName?: string;
  /** Airlock's version: `service.version` and OCSF `metadata.product.version`. */
  version: string;
  /** Time limit of one export request, ms. @default 10000 */
  timeoutMs?: number;
  /** Longest wait before a batch is sent, ms. @default 1000 */
  exportIntervalMs?: number;
  /** Records waiting at most; beyond, new ones are dropped. @default 10000 */
  maxQueueSize?: number;
  /** Registry for `airlock_otlp_*` metrics (the API's, so `/metrics` shows them). */
  registry?: client.Registry;
  /**
   * Also send one span per decision to `<endpoint>/v1/traces` (name `airlock.decision METHOD`, kind
   * client, the decision's start and duration, the record's attributes, status error for a denial).
   * @default false
   */
  traces?: boolean;
}

/** Attributes every record carries next to its OCSF body, in OpenTelemetry semantic-convention names. */
function attributesOf(e: AuditEvent): Record<string, string | number> {
  const a: Record<string, string | number> = {
    'ocsf.class_uid': 4002,
    'airlock.decision': e.decision,
    'airlock.reason': e.reason,
    'http.request.method': e.method,
    'url.scheme': e.scheme,
    'server.address': e.host,
    'server.port': e.port,
    'url.path': e.path,
    'http.response.status_code': e.status,
  };
  if (e.sessionId) a['airlock.session.id'] = e.sessionId;
  if (e.role) a['airlock.role'] = e.role;
  if (e.rule) a['airlock.rule'] = e.rule;
  if (e.policyVersion) a['airlock.policy.version'] = e.policyVersion;
  return a;
}

/** Counts what the OTLP exporter did, then passes the result on. */
class CountingExporter implements LogRecordExporter {
  constructor(
    private readonly inner: LogRecordExporter,
    private readonly exported: client.Counter,
    private readonly failed: client.Counter,
  ) {}
  export(logs: ReadableLogRecord[], done: (r: { code: number; error?: Error }) => void): void {
    this.inner.export(logs, (r) => {
      if (r.code === 0) this.exported.inc(logs.length);
      else this.failed.inc(logs.length);
      done(r);
    });
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/**
 * Sends audit events as OTLP log records. `emit` never throws and never waits: records are queued
 * and sent in batches; failures are counted in `airlock_otlp_export_failed_records_total`.
 */
export class OtlpAuditExporter {
  readonly #provider: LoggerProvider;
  readonly #logger: ReturnType<LoggerProvider['getLogger']>;
  readonly #version: string;
  readonly #queued: client.Counter;
  readonly #tracerProvider: TracerProvider | null;
  readonly #tracer: Tracer | null;

  /** @throws Error when `endpoint` is not an http(s) URL. */
  constructor(opts: OtlpAuditExporterOptions) {
    const base = new URL(opts.endpoint);
    if (base.protocol !== 'http:' && base.protocol !== 'https:')
      throw new Error(`telemetry.otlp.endpoint must be an http(s) URL, got ${opts.endpoint}`);
    const url = `${opts.endpoint.replace(/\/+$/, '')}/v1/logs`;
    const registers = opts.registry ? [opts.registry] : [];
    const exported = new client.Counter({
      name: 'airlock_otlp_exported_records_total',
      help: 'Audit events the OTLP collector accepted',
      registers,
    });
    const failed = new client.Counter({
      name: 'airlock_otlp_export_failed_records_total',
      help: 'Audit events whose OTLP export failed (collector down, refused, timed out); still in the audit file',
      registers,
    });
    this.#queued = new client.Counter({
      name: 'airlock_otlp_queued_records_total',
      help: 'Audit events handed to the OTLP exporter',
      registers,
    });
    const exporter = new CountingExporter(
      new OTLPLogExporter({ url, headers: opts.headers ?? {}, timeoutMillis: opts.timeoutMs ?? 10_000 }),
      exported,
      failed,
    );
    const resource = resourceFromAttributes({
      'service.name': opts.serviceName ?? 'airlock',
      'service.version': opts.version,
    });
    this.#provider = new LoggerProvider({
      resource,
      processors: [
        new BatchLogRecordProcessor({
          exporter,
          maxQueueSize: opts.maxQueueSize ?? 10_000,
          maxExportBatchSize: Math.min(512, opts.maxQueueSize ?? 10_000),
          scheduledDelayMillis: opts.exportIntervalMs ?? 1_000,
          exportTimeoutMillis: opts.timeoutMs ?? 10_000,
        }),
      ],
    });
    this.#logger = this.#provider.getLogger('airlock.audit', opts.version);
    this.#version = opts.version;
    this.#tracerProvider = opts.traces
      ? new TracerProvider({
          resource,
          spanProcessors: [
            new BatchSpanProcessor({
              exporter: new OTLPTraceExporter({
                url: `${opts.endpoint.replace(/\/+$/, '')}/v1/traces`,
                headers: opts.headers ?? {},
                timeoutMillis: opts.timeoutMs ?? 10_000,
              }),
              maxQueueSize: opts.maxQueueSize ?? 10_000,
              maxExportBatchSize: Math.min(512, opts.maxQueueSize ?? 10_000),
              scheduledDelayMillis: opts.exportIntervalMs ?? 1_000,
              exportTimeoutMillis: opts.timeoutMs ?? 10_000,
            }),
          ],
        })
      : null;
    this.#tracer = this.#tracerProvider?.getTracer('airlock.audit', opts.version) ?? null;
  }

  /** Queues one audit event. */
  emit(e: AuditEvent): void {
    this.#queued.inc();
    const allowed = e.decision === 'allow';
    this.#logger.emit({
      timestamp: new Date(e.time),
      severityNumber: allowed ? SeverityNumber.INFO : SeverityNumber.WARN,
      severityText: allowed ? 'INFO' : 'WARN',
      eventName: 'airlock.decision',
      body: toOcsfHttpActivity(e, { version: this.#version }) as OcsfEvent as never,
      attributes: attributesOf(e),
    });
    if (this.#tracer) {
      const start = Date.parse(e.time);
      const span = this.#tracer.startSpan(`airlock.decision ${e.method}`, {
        kind: SpanKind.CLIENT,
        startTime: start,
        attributes: attributesOf(e),
      });
      if (!allowed) span.setStatus({ code: SpanStatusCode.ERROR, message: e.reason });
      span.end(start + Math.max(0, e.durationMs));
    }
  }

  /** Sends what is queued now; resolves when the export finished (or failed). */
  async flush(): Promise<void> {
    await Promise.all([this.#provider.forceFlush(), this.#tracerProvider?.forceFlush()]);
  }

  /** Sends what is queued, then stops. */
  async shutdown(): Promise<void> {
    await Promise.all([this.#provider.shutdown(), this.#tracerProvider?.shutdown()]);
  }
}
