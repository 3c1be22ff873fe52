/**
 * Telemetry on real components (issue 11 part 3, docs/telemetry.md): the gateway process
 * (`startGatewayService`) in front of json-server, its `/metrics` (decisions by role/decision/reason,
 * the latency histogram, sessions, policy reloads), and the audit export over OTLP into a real
 * OpenTelemetry Collector (scripts/otel-collector.sh) whose debug exporter output is read back:
 * each decision one log record whose body is an OCSF HTTP Activity event. Loopback only.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import client from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditIndex } from '../../src/audit/index-reader.js';
import type { AuditEvent } from '../../src/audit/event.js';
import { type RunningGateway, startGatewayService } from '../../src/gateway/service.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { OtlpAuditExporter } from '../../src/telemetry/otlp.js';
import { startCollector, type Collector, type CollectedLog } from '../helpers/otel-collector.js';
import { proxyRequest } from '../helpers/proxy-client.js';
import { freePort, startJsonServer, type JsonServer } from '../helpers/upstreams.js';

const TOKEN = 'admin-token-0123456789';
const S = { id: 's-telemetry', cred: 'cred-telemetry-0123456789', address: '127.0.0.6' };
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

let root: string;
let policyDir: string;
let auditFile: string;
let forum: JsonServer;
let gw: RunningGateway;
let collector: Collector;
let index: AuditIndex;
let exporter: OtlpAuditExporter;

function policyCsv(port: number): string {
  return [
    `p, analyst, forum.test:${port}, /*, GET, allow`,
    `p, analyst, forum.test:${port}, /comments, POST, deny`,
    '',
  ].join('\n');
}

function call(
  method: string,
  pathAndQuery: string,
  auth: string | null = `${S.id}:${S.cred}`,
  from = S.address,
): Promise<{ status: number }> {
  return proxyRequest(
    { host: '127.0.0.1', port: gw.proxyPort },
    `http://forum.test:${forum.port}${pathAndQuery}`,
    {
      method,
      ...(auth ? { auth } : {}),
      localAddress: from,
      ...(method === 'POST'
        ? { body: '{"postId":1,"body":"x"}', headers: { 'content-type': 'application/json' } }
        : {}),
    },
  );
}

function metricsText(): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: gw.adminPort, path: '/metrics' }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      })
      .once('error', reject);
  });
}

/** The value of one exposition line (`name{labels}`), or NaN. */
function metric(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

async function until<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > deadline) {
      const shown = typeof v === 'string' ? v.split('\n').filter((l) => l.startsWith('airlock_')) : v;
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(shown).slice(0, 3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function auditEvents(): AuditEvent[] {
  return readFileSync(auditFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditEvent);
}

beforeAll(async () => {
  collector = await startCollector();
  root = mkdtempSync(path.join(tmpdir(), 'airlock-telemetry-'));
  policyDir = path.join(root, 'policy');
  mkdirSync(policyDir);
  forum = await startJsonServer('127.0.0.1');
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(path.join(policyDir, 'policy.csv'), policyCsv(forum.port));
  auditFile = path.join(root, 'audit.jsonl');
  gw = await startGatewayService(
    {
      port: 0,
      adminPort: 0,
      listenHost: '127.0.0.1',
      policyDir,
      auditFile,
      auditStdout: false,
      hostAliases: { 'forum.test': '127.0.0.1' },
      allowPrivateCidrs: ['127.0.0.0/8'],
    },
    TOKEN,
    pino({ level: 'silent' }),
  );
  gw.sessions.upsert({
    id: S.id,
    role: 'analyst',
    address: S.address,
    credentialSha256: sha(S.cred),
    expiresAtMs: Date.now() + 3_600_000,
  });
  // The control plane's wiring (src/cli/serve.ts): the audit file's index feeds the exporter.
  index = new AuditIndex(auditFile, 50);
  await index.start();
  exporter = new OtlpAuditExporter({
    endpoint: collector.endpoint,
    version: '9.9.9',
    exportIntervalMs: 50,
    traces: true,
  });
  index.subscribe((e) => exporter.emit(e));
}, 900_000);

afterAll(async () => {
  index?.close();
  await exporter?.shutdown();
  await gw?.close();
  await collector?.stop();
  await forum?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('audit export over OTLP into a real OpenTelemetry Collector', () => {
  let allowed: CollectedLog;
  let denied: CollectedLog;

  beforeAll(async () => {
    expect((await call('GET', '/posts/1?token=QUERYSECRET123')).status).toBe(200);
    expect((await call('POST', '/comments')).status).toBe(403);
    const logs = await collector.until(
      (l) => l.filter((r) => r.attributes['airlock.session.id'] === `Str(${S.id})`).length >= 2,
    );
    const mine = logs.filter((r) => r.attributes['airlock.session.id'] === `Str(${S.id})`);
    allowed = mine.find((r) => r.body?.activity_id === 3)!;
    denied = mine.find((r) => r.body?.activity_id === 6)!;
    expect(allowed, JSON.stringify(mine)).toBeDefined();
    expect(denied, JSON.stringify(mine)).toBeDefined();
  });

  it('one record per decision, body an OCSF HTTP Activity (4002) event', () => {
    const [getEvent, postEvent] = auditEvents();
    expect(allowed.eventName).toBe('airlock.decision');
    expect(allowed.resource).toMatchObject({ 'service.name': 'airlock', 'service.version': '9.9.9' });
    expect(allowed.body).toMatchObject({
      class_uid: 4002,
      class_name: 'HTTP Activity',
      category_uid: 4,
      activity_id: 3,
      activity_name: 'Get',
      type_uid: 400203,
      time: Date.parse(getEvent!.time),
      severity_id: 1,
      status_id: 1,
      status_code: '200',
      status_detail: 'rule_allow',
      action_id: 1,
      disposition_id: 1,
      metadata: { version: '1.3.0', product: { name: 'Airlock', vendor_name: 'Airlock', version: '9.9.9' } },
      http_request: {
        http_method: 'GET',
        url: { scheme: 'http', hostname: 'forum.test', port: forum.port, path: '/posts/1' },
      },
      http_response: { code: 200, length: getEvent!.bytesIn },
      dst_endpoint: { hostname: 'forum.test', port: forum.port },
      actor: {
        session: { uid: S.id },
        authorizations: [
          { decision: 'allow', policy: { name: 'analyst', version: getEvent!.policyVersion } },
        ],
      },
      firewall_rule: { uid: getEvent!.rule },
    });
    expect(allowed.severityText).toBe('INFO');
    expect(denied.severityText).toBe('WARN');
    expect(denied.body).toMatchObject({
      activity_id: 6,
      type_uid: 400206,
      severity_id: 3,
      status_id: 2,
      status_code: '403',
      status_detail: postEvent!.reason,
      action_id: 2,
      action: 'Denied',
      disposition_id: 2,
      disposition: 'Blocked',
      http_request: { http_method: 'POST', url: { path: '/comments' } },
      http_response: { code: 403 },
    });
    expect(allowed.attributes).toMatchObject({
      'ocsf.class_uid': 'Int(4002)',
      'airlock.decision': 'Str(allow)',
      'http.request.method': 'Str(GET)',
      'url.path': 'Str(/posts/1)',
      'http.response.status_code': 'Int(200)',
      'airlock.role': 'Str(analyst)',
    });
  });

  it('with traces: one span per decision, its start and duration, status error for a denial', async () => {
    const [getEvent, postEvent] = auditEvents();
    const mine = async () =>
      collector.spans().filter((sp) => sp.attributes['airlock.session.id'] === `Str(${S.id})`);
    const deadline = Date.now() + 15_000;
    while ((await mine()).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const spans = await mine();
    expect(
      spans.map((sp) => [sp.name, sp.kind]),
      JSON.stringify(collector.spans()),
    ).toEqual([
      ['airlock.decision GET', 'Client'],
      ['airlock.decision POST', 'Client'],
    ]);
    expect(spans[0]!.statusCode).toBe('Unset');
    expect([spans[1]!.statusCode, spans[1]!.statusMessage]).toEqual(['Error', postEvent!.reason]);
    expect(spans[0]!.attributes).toMatchObject({
      'airlock.decision': 'Str(allow)',
      'url.path': 'Str(/posts/1)',
    });
    // Start time is the decision time, to the millisecond. The debug exporter prints Go's default
    // format, UTC with trailing zeros of the fraction trimmed: 2026-11-30 01:02:03.45 +0000 UTC.
    const [day, clock] = spans[0]!.startTime.split(' ');
    const startMs = Math.floor(Date.parse(`${day}T${clock}Z`));
    expect(startMs, `${spans[0]!.startTime} vs ${getEvent!.time}`).toBe(Date.parse(getEvent!.time));
  });

  it('never carries the query string or the session credential', () => {
    const all = JSON.stringify([collector.logs(), collector.spans()]);
    expect(all).not.toContain('QUERYSECRET123');
    expect(all).not.toContain(S.cred);
    expect(allowed.body?.http_request).toMatchObject({
      url: { url_string: `http://forum.test:${forum.port}/posts/1` },
    });
  });

  it('a collector that is down costs exported records (counted), never an exception or the audit file', async () => {
    const registry = new client.Registry();
    const down = new OtlpAuditExporter({
      endpoint: `http://127.0.0.1:${await freePort()}`,
      version: '9.9.9',
      timeoutMs: 500,
      exportIntervalMs: 20,
      registry,
    });
    const before = auditEvents().length;
    expect((await call('GET', '/posts/1')).status).toBe(200);
    const event = (
      await until(
        'the audit event',
        async () => auditEvents(),
        (e) => e.length > before,
      )
    ).at(-1)!;
    expect(() => down.emit(event)).not.toThrow();
    await until(
      'a failed export',
      async () => registry.getSingleMetricAsString('airlock_otlp_export_failed_records_total'),
      (t) => / [1-9]\d*$/m.test(t),
      15_000,
    );
    await down.shutdown();
  });
});

describe('gateway /metrics', () => {
  it('decisions by role, decision and reason; unidentified callers as role "(none)"', async () => {
    expect([403, 407]).toContain(
      (await call('GET', '/posts/1', 's-nope:not-a-credential-000', '127.0.0.9')).status,
    );
    const text = await until(
      'decision counters',
      metricsText,
      (t) =>
        metric(
          t,
          'airlock_gateway_decisions_total{decision="deny",reason="unknown_session",role="(none)"}',
        ) >= 1,
    );
    expect(
      metric(text, 'airlock_gateway_decisions_total{decision="allow",reason="rule_allow",role="analyst"}'),
    ).toBeGreaterThanOrEqual(2);
    expect(
      metric(text, 'airlock_gateway_decisions_total{decision="deny",reason="rule_deny",role="analyst"}'),
    ).toBeGreaterThanOrEqual(1);
  });

  it('a latency histogram per decision and role, and the sessions in the table', async () => {
    const text = await metricsText();
    const allowedCount = metric(
      text,
      'airlock_gateway_request_duration_seconds_count{decision="allow",role="analyst"}',
    );
    expect(allowedCount).toBeGreaterThanOrEqual(2);
    expect(
      metric(
        text,
        'airlock_gateway_request_duration_seconds_bucket{le="+Inf",decision="allow",role="analyst"}',
      ),
    ).toBe(allowedCount);
    expect(
      metric(text, 'airlock_gateway_request_duration_seconds_sum{decision="allow",role="analyst"}'),
    ).toBeGreaterThan(0);
    expect(metric(text, 'airlock_gateway_sessions')).toBe(1);
  });

  it('policy reloads by result, and the time of the last good one', async () => {
    const before = await metricsText();
    const ok0 = metric(before, 'airlock_policy_reloads_total{result="success"}');
    const failed0 = metric(before, 'airlock_policy_reloads_total{result="failure"}');
    expect(ok0).toBeGreaterThanOrEqual(1); // the first load
    expect(metric(before, 'airlock_policy_last_reload_success_timestamp_seconds')).toBeGreaterThan(0);
    writeFileSync(path.join(policyDir, 'policy.csv'), 'p, analyst, forum.test, /*, GET\n'); // broken: 4 fields
    await until(
      'a failed reload',
      metricsText,
      (t) => metric(t, 'airlock_policy_reloads_total{result="failure"}') > failed0,
    );
    writeFileSync(
      path.join(policyDir, 'policy.csv'),
      policyCsv(forum.port) + `p, analyst, forum.test:${forum.port}, /x, HEAD, allow\n`,
    );
    await until(
      'a good reload',
      metricsText,
      (t) => metric(t, 'airlock_policy_reloads_total{result="success"}') > ok0,
    );
  });
});
