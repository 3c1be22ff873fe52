/**
 * The audit event as an OCSF event of the HTTP Activity class (class_uid 4002, category Network
 * Activity), OCSF schema 1.3.0, so SIEMs that read OCSF need no parser. docs/telemetry.md has the
 * field-by-field table; fields Airlock has and OCSF does not go under `unmapped`.
 *
 * Source of the enumerations: the OCSF schema (schema.ocsf.io, 1.3.0): HTTP Activity `activity_id`,
 * base `severity_id`, `status_id`, and the security-control profile's `action_id`/`disposition_id`.
 */
import type { AuditEvent } from '../audit/event.js';

/** OCSF schema version the mapping follows. */
export const OCSF_VERSION = '1.3.0';
/** HTTP Activity. */
export const OCSF_HTTP_ACTIVITY_CLASS_UID = 4002;
/** Network Activity. */
export const OCSF_NETWORK_ACTIVITY_CATEGORY_UID = 4;

/** HTTP Activity `activity_id` by method (0 Unknown, 99 Other). */
export const OCSF_HTTP_ACTIVITY_IDS: Readonly<Record<string, number>> = {
  CONNECT: 1,
  DELETE: 2,
  GET: 3,
  HEAD: 4,
  OPTIONS: 5,
  POST: 6,
  PUT: 7,
  TRACE: 8,
  PATCH: 9,
};

/** An OCSF event as a plain JSON object (no null or undefined values). */
export type OcsfEvent = Record<string, unknown>;

/** Who made the events: `metadata.product`. */
export interface OcsfProduct {
  /** @default "Airlock" */
  name?: string;
  /** Airlock's version (package.json). */
  version: string;
}

/**
 * Maps one audit event (src/audit/event.ts) to OCSF HTTP Activity. Methods that are not HTTP methods
 * (`MCP`, `WEBSOCKET`) get activity 99 Other with `activity_name` set to the method. Query strings
 * are never in the audit event, so never in `url` either; `query` (audit.query: full) stays out of
 * the export too.
 */
export function toOcsfHttpActivity(e: AuditEvent, product: OcsfProduct): OcsfEvent {
  const method = e.method.toUpperCase();
  const activityId = OCSF_HTTP_ACTIVITY_IDS[method] ?? 99;
  const allowed = e.decision === 'allow';
  const timeMs = Date.parse(e.time);
  const defaultPort = e.scheme === 'https' ? 443 : 80;
  const authority = e.port === defaultPort ? e.host : `${e.host}:${e.port}`;
  const path = method === 'CONNECT' ? '' : e.path;
  const event: OcsfEvent = {
    class_uid: OCSF_HTTP_ACTIVITY_CLASS_UID,
    class_name: 'HTTP Activity',
    category_uid: OCSF_NETWORK_ACTIVITY_CATEGORY_UID,
    category_name: 'Network Activity',
    activity_id: activityId,
    activity_name: activityId === 99 ? method : titleCase(method),
    type_uid: OCSF_HTTP_ACTIVITY_CLASS_UID * 100 + activityId,
    type_name: `HTTP Activity: ${activityId === 99 ? method : titleCase(method)}`,
    time: timeMs,
    start_time: timeMs,
    end_time: timeMs + Math.round(e.durationMs),
    duration: Math.round(e.durationMs),
    // Informational for an allowed call, Medium for a denial (a policy said no: worth a look).
    severity_id: allowed ? 1 : 3,
    severity: allowed ? 'Informational' : 'Medium',
    status_id: allowed && e.status < 400 ? 1 : 2,
    status: allowed && e.status < 400 ? 'Success' : 'Failure',
    status_code: String(e.status),
    status_detail: e.reason,
    action_id: allowed ? 1 : 2,
    action: allowed ? 'Allowed' : 'Denied',
    disposition_id: allowed ? 1 : 2,
    disposition: allowed ? 'Allowed' : 'Blocked',
    message: `${e.decision} ${method} ${e.scheme}://${authority}${path} (${e.reason})`,
    metadata: {
      version: OCSF_VERSION,
      product: { name: product.name ?? 'Airlock', vendor_name: 'Airlock', version: product.version },
      log_name: 'audit',
      ...(e.policyVersion ? { labels: [`policyVersion:${e.policyVersion}`] } : {}),
    },
    http_request: {
      http_method: method,
      url: {
        scheme: e.scheme,
        hostname: e.host,
        port: e.port,
        ...(method === 'CONNECT' ? {} : { path: e.path }),
        url_string: `${e.scheme}://${authority}${path}`,
      },
      length: e.bytesOut + (e.headerBytes ?? 0),
    },
    http_response: { code: e.status, length: e.bytesIn },
    dst_endpoint: { hostname: e.host, port: e.port },
    src_endpoint: {
      ...(e.clientAddress ? { ip: e.clientAddress } : {}),
      ...(e.sessionId ? { uid: e.sessionId } : {}),
    },
    traffic: {
      bytes_out: e.bytesOut + (e.headerBytes ?? 0),
      bytes_in: e.bytesIn,
      bytes: e.bytesOut + (e.headerBytes ?? 0) + e.bytesIn,
    },
    actor: {
      ...(e.sessionId ? { session: { uid: e.sessionId } } : {}),
      ...(e.role
        ? {
            authorizations: [
              {
                decision: e.decision,
                policy: { name: e.role, ...(e.policyVersion ? { version: e.policyVersion } : {}) },
              },
            ],
          }
        : {}),
    },
    ...(e.rule
      ? {
          firewall_rule: {
            uid: e.rule,
            name: e.rule,
            ...(e.policyVersion ? { version: e.policyVersion } : {}),
          },
        }
      : {}),
    unmapped: {
      reason: e.reason,
      ...(e.role ? { role: e.role } : {}),
      ...(e.policyVersion ? { policy_version: e.policyVersion } : {}),
      ...(e.methodOverride ? { method_override: e.methodOverride } : {}),
      ...(e.requests !== undefined ? { tunnel_requests: e.requests } : {}),
      ...(e.queryBytes !== undefined ? { query_bytes: e.queryBytes } : {}),
      ...(e.querySha256 ? { query_sha256: e.querySha256 } : {}),
      ...(e.credential ? { credential: e.credential.name } : {}),
      ...(e.secretFoundIn ? { secret_found_in: e.secretFoundIn } : {}),
      ...(e.mcp ? { mcp: JSON.stringify(e.mcp) } : {}),
      ...(e.suppressed !== undefined ? { suppressed: e.suppressed } : {}),
      ...(e.worker !== undefined ? { worker: e.worker } : {}),
    },
  };
  return event;
}

function titleCase(method: string): string {
  return method.charAt(0) + method.slice(1).toLowerCase();
}
