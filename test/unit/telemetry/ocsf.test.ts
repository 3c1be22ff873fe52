/** The audit event → OCSF HTTP Activity mapping (src/telemetry/ocsf.ts, docs/telemetry.md table). */
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/event.js';
import { parseConfig } from '../../../src/config/load.js';
import { OCSF_HTTP_ACTIVITY_IDS, toOcsfHttpActivity } from '../../../src/telemetry/ocsf.js';

const base: AuditEvent = {
  time: '2026-11-30T01:02:03.456Z',
  sessionId: 's-0123456789abcdef',
  role: 'analyst',
  method: 'GET',
  scheme: 'http',
  host: 'forum.test',
  port: 3000,
  path: '/posts/1',
  decision: 'allow',
  rule: 'policy.csv:26: p, analyst, forum.test:3000, /*, GET, allow',
  reason: 'rule_allow',
  status: 200,
  durationMs: 12.6,
  bytesOut: 10,
  bytesIn: 200,
  policyVersion: 'abc123',
  headerBytes: 90,
};
const product = { version: '1.2.3' };

describe('toOcsfHttpActivity', () => {
  it('maps an allowed GET', () => {
    expect(toOcsfHttpActivity(base, product)).toMatchObject({
      class_uid: 4002,
      category_uid: 4,
      activity_id: 3,
      activity_name: 'Get',
      type_uid: 400203,
      type_name: 'HTTP Activity: Get',
      time: Date.parse(base.time),
      end_time: Date.parse(base.time) + 13,
      duration: 13,
      action_id: 1,
      disposition_id: 1,
      severity_id: 1,
      status_id: 1,
      status_code: '200',
      status_detail: 'rule_allow',
      message: 'allow GET http://forum.test:3000/posts/1 (rule_allow)',
      http_request: {
        http_method: 'GET',
        url: {
          scheme: 'http',
          hostname: 'forum.test',
          port: 3000,
          path: '/posts/1',
          url_string: 'http://forum.test:3000/posts/1',
        },
        length: 100,
      },
      http_response: { code: 200, length: 200 },
      traffic: { bytes_out: 100, bytes_in: 200, bytes: 300 },
      actor: {
        session: { uid: base.sessionId },
        authorizations: [{ decision: 'allow', policy: { name: 'analyst', version: 'abc123' } }],
      },
      firewall_rule: { uid: base.rule, version: 'abc123' },
      metadata: { version: '1.3.0', product: { name: 'Airlock', vendor_name: 'Airlock', version: '1.2.3' } },
    });
  });

  it('maps a denial: Denied/Blocked, Medium, Failure; no rule → no firewall_rule', () => {
    const e = toOcsfHttpActivity(
      { ...base, method: 'DELETE', decision: 'deny', reason: 'no_match', rule: null, status: 403 },
      product,
    );
    expect(e).toMatchObject({
      activity_id: 2,
      action_id: 2,
      action: 'Denied',
      disposition_id: 2,
      disposition: 'Blocked',
      severity_id: 3,
      status_id: 2,
      status_code: '403',
    });
    expect(e).not.toHaveProperty('firewall_rule');
  });

  it('an allowed call the upstream failed is a Failure, still Allowed', () => {
    expect(toOcsfHttpActivity({ ...base, reason: 'upstream_error', status: 502 }, product)).toMatchObject({
      action_id: 1,
      status_id: 2,
    });
  });

  it('methods: every HTTP verb its id, MCP / WEBSOCKET / others 99 with the method as name; CONNECT has no path', () => {
    for (const [m, id] of Object.entries(OCSF_HTTP_ACTIVITY_IDS))
      expect(toOcsfHttpActivity({ ...base, method: m }, product)).toMatchObject({
        activity_id: id,
        type_uid: 400200 + id,
      });
    expect(toOcsfHttpActivity({ ...base, method: 'MCP' }, product)).toMatchObject({
      activity_id: 99,
      activity_name: 'MCP',
    });
    expect(toOcsfHttpActivity({ ...base, method: 'WEBSOCKET' }, product)).toMatchObject({ activity_id: 99 });
    const connect = toOcsfHttpActivity(
      { ...base, method: 'CONNECT', scheme: 'https', port: 443, path: '/' },
      product,
    );
    expect(connect.http_request).toEqual({
      http_method: 'CONNECT',
      url: { scheme: 'https', hostname: 'forum.test', port: 443, url_string: 'https://forum.test' },
      length: 100,
    });
  });

  it('an unidentified caller: no session, no role, no authorizations', () => {
    const e = toOcsfHttpActivity(
      {
        ...base,
        sessionId: null,
        role: null,
        decision: 'deny',
        reason: 'unknown_session',
        status: 407,
        clientAddress: '10.0.0.7',
      },
      product,
    );
    expect(e.actor).toEqual({});
    expect(e.src_endpoint).toEqual({ ip: '10.0.0.7' });
  });

  it('never carries the query text, even with audit.query: full; unmapped keeps the rest', () => {
    const e = toOcsfHttpActivity(
      {
        ...base,
        query: 'token=SECRET',
        queryBytes: 12,
        querySha256: 'aaaa',
        worker: 2,
        methodOverride: 'DELETE',
      },
      product,
    );
    expect(JSON.stringify(e)).not.toContain('SECRET');
    expect(e.unmapped).toMatchObject({
      query_bytes: 12,
      query_sha256: 'aaaa',
      worker: 2,
      method_override: 'DELETE',
      reason: 'rule_allow',
      role: 'analyst',
    });
  });

  it('no null or undefined values anywhere (OTLP AnyValue has no null)', () => {
    const e = toOcsfHttpActivity(
      { ...base, sessionId: null, role: null, rule: null, policyVersion: null },
      product,
    );
    const walk = (v: unknown): void => {
      expect(v).not.toBeNull();
      expect(v).not.toBeUndefined();
      if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
    };
    walk(e);
  });
});

describe('config telemetry.otlp', () => {
  it('defaults: no endpoint (no export)', () => {
    const cfg = parseConfig({}, '/');
    expect(cfg.telemetry.otlp).toEqual({
      headers: {},
      serviceName: 'airlock',
      timeoutMs: 10_000,
      exportIntervalMs: 1_000,
      maxQueueSize: 10_000,
      traces: false,
    });
  });
  it.each([
    [{ endpoint: 'ftp://collector:4318' }, /telemetry\.otlp\.endpoint/],
    [{ endpoint: 'not a url' }, /telemetry\.otlp\.endpoint/],
    [{ timeoutMs: 5 }, /telemetry\.otlp\.timeoutMs/],
    [{ headers: { 'bad header': 'x' } }, /telemetry\.otlp\.headers/],
    [{ endpoit: 'http://x' }, /telemetry\.otlp\.endpoit/],
  ])('%j is refused naming the key', (otlp, message) => {
    expect(() => parseConfig({ telemetry: { otlp } } as never, '/')).toThrow(message);
  });
});
