import { readFileSync } from 'node:fs';
import { z } from 'zod';
import {
  MAX_BODY_BYTES,
  auditListSchema,
  createSessionBody,
  execBody,
  execResultSchema,
  healthSchema,
  policyStatusSchema,
  problemSchema,
  readinessSchema,
  sessionIdParam,
  sessionListSchema,
  sessionSchema,
  auditEventSchema,
  credentialInfoSchema,
  credentialListSchema,
  sessionSummarySchema,
  streamEventSchema,
  approvalSchema,
  approvalListSchema,
  approveBody,
  denyBody,
  grantSchema,
  grantBody,
} from './schemas.js';

/**
 * The OpenAPI 3.1 document served at `/openapi.json`. Every schema in it is generated from the zod
 * schemas the handlers validate with (src/api/schemas.ts) by `z.toJSONSchema`, so it cannot drift
 * from the code; only the paths table below is written by hand.
 */

type Json = Record<string, unknown>;

const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });

/** Named component schemas, in the order they appear in the document. */
const components: ReadonlyArray<[string, z.ZodType]> = [
  ['CreateSessionRequest', createSessionBody],
  ['ExecRequest', execBody],
  ['Session', sessionSchema],
  ['SessionList', sessionListSchema],
  ['ExecResult', execResultSchema],
  ['AuditEvent', auditEventSchema],
  ['AuditEventList', auditListSchema],
  ['PolicyStatus', policyStatusSchema],
  ['CredentialInfo', credentialInfoSchema],
  ['CredentialList', credentialListSchema],
  ['SessionSummary', sessionSummarySchema],
  ['StreamEvent', streamEventSchema],
  ['Approval', approvalSchema],
  ['ApprovalList', approvalListSchema],
  ['ApproveRequest', approveBody],
  ['DenyRequest', denyBody],
  ['Grant', grantSchema],
  ['GrantRequest', grantBody],
  ['Health', healthSchema],
  ['Readiness', readinessSchema],
  ['Problem', problemSchema],
];

function componentSchemas(): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of components) registry.add(schema, { id });
  // io "input": request schemas show their defaults as optional fields (what a client may send);
  // response schemas have no defaults or transforms, so input and output agree for them.
  const { schemas } = z.toJSONSchema(registry, {
    io: 'input',
    uri: (id) => `#/components/schemas/${id}`,
  }) as { schemas: Record<string, Json> };
  for (const s of Object.values(schemas)) {
    delete s.$schema;
    delete s.$id;
  }
  return schemas;
}

interface ErrorResponse {
  status: number;
  description: string;
}

const errorResponses: Record<string, ErrorResponse> = {
  BadRequest: { status: 400, description: 'Invalid body or parameter; `field` names the offending path.' },
  Unauthorized: { status: 401, description: 'Missing or invalid bearer token.' },
  Forbidden: {
    status: 403,
    description:
      'The caller may not do this: the policy has management rules (airlock.api) and none allows this ' +
      'operation on sessions of this role; detail names the operation.',
  },
  NotFound: { status: 404, description: 'No such session.' },
  Conflict: { status: 409, description: 'The session is not in a state that allows this.' },
  PayloadTooLarge: { status: 413, description: `Body larger than ${MAX_BODY_BYTES} bytes.` },
  UnsupportedMediaType: { status: 415, description: 'Body is not application/json.' },
  UnknownRole: { status: 422, description: 'The role is not defined by the loaded policy.' },
  InternalError: { status: 500, description: 'Unexpected failure; see the server log under X-Request-Id.' },
  RuntimeFailed: {
    status: 502,
    description: "The container runtime failed; detail carries the runtime's message.",
  },
  GatewayUnavailable: {
    status: 503,
    description:
      'The egress gateway could not be reached or updated, or no valid policy is loaded (nothing can be authorized); ' +
      'on session create also AIRLOCK_ISOLATION_FAILED: the isolation self-test refused the new sandbox.',
  },
  ExecTimeout: { status: 504, description: 'The command did not finish within timeoutSeconds.' },
};

const problemContent = { 'application/problem+json': { schema: ref('Problem') } };

function errors(...names: Array<keyof typeof errorResponses>): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const name of [...names, 'InternalError']) {
    const r = errorResponses[name];
    if (r) out[String(r.status)] = { $ref: `#/components/responses/${name}` };
  }
  return out;
}

const json = (schema: string, description: string): Json => ({
  description,
  content: { 'application/json': { schema: ref(schema) } },
});

const body = (schema: string): Json => ({
  required: true,
  content: { 'application/json': { schema: ref(schema) } },
});

const bearer = [{ bearer: [] }];
const idParam = [{ $ref: '#/components/parameters/SessionId' }];
const approvalParam = {
  name: 'approvalId',
  in: 'path',
  required: true,
  description: 'An approval id: `ap-` and 16 hex digits.',
  schema: { type: 'string', pattern: '^ap-[0-9a-f]{16}$' },
};

function paths(): Json {
  return {
    '/v1/sessions': {
      post: {
        operationId: 'createSession',
        summary: 'Create a session (a sandbox whose only exit is the egress gateway).',
        tags: ['sessions'],
        security: bearer,
        requestBody: body('CreateSessionRequest'),
        responses: {
          '201': {
            ...json('Session', 'Created.'),
            headers: { Location: { description: 'URL of the new session.', schema: { type: 'string' } } },
          },
          ...errors(
            'BadRequest',
            'Unauthorized',
            'Forbidden',
            'PayloadTooLarge',
            'UnsupportedMediaType',
            'UnknownRole',
            'RuntimeFailed',
            'GatewayUnavailable',
          ),
        },
      },
      get: {
        operationId: 'listSessions',
        summary: 'List sessions.',
        tags: ['sessions'],
        security: bearer,
        responses: {
          '200': json('SessionList', 'The sessions the caller may read.'),
          ...errors('Unauthorized', 'GatewayUnavailable'),
        },
      },
    },
    '/v1/sessions/{id}': {
      parameters: idParam,
      get: {
        operationId: 'getSession',
        summary: 'Get one session.',
        tags: ['sessions'],
        security: bearer,
        responses: {
          '200': json('Session', 'The session.'),
          ...errors('BadRequest', 'Unauthorized', 'Forbidden', 'NotFound', 'GatewayUnavailable'),
        },
      },
      delete: {
        operationId: 'deleteSession',
        summary: "Kill switch: the gateway refuses the session's traffic, then the sandbox is removed.",
        tags: ['sessions'],
        security: bearer,
        responses: {
          '204': { description: 'Removed.' },
          ...errors(
            'BadRequest',
            'Unauthorized',
            'Forbidden',
            'NotFound',
            'RuntimeFailed',
            'GatewayUnavailable',
          ),
        },
      },
    },
    '/v1/sessions/{id}/exec': {
      parameters: idParam,
      post: {
        operationId: 'execInSession',
        summary: 'Run a command in the session and wait for it.',
        tags: ['sessions'],
        security: bearer,
        requestBody: body('ExecRequest'),
        responses: {
          '200': json('ExecResult', 'The command finished (any exit code).'),
          ...errors(
            'BadRequest',
            'Unauthorized',
            'Forbidden',
            'NotFound',
            'Conflict',
            'PayloadTooLarge',
            'UnsupportedMediaType',
            'RuntimeFailed',
            'GatewayUnavailable',
            'ExecTimeout',
          ),
        },
      },
    },
    '/v1/sessions/{id}/audit': {
      parameters: idParam,
      get: {
        operationId: 'getSessionAudit',
        summary: "The session's gateway decisions, oldest first.",
        tags: ['sessions'],
        security: bearer,
        responses: {
          '200': json('AuditEventList', 'The audit events.'),
          ...errors('BadRequest', 'Unauthorized', 'Forbidden', 'NotFound', 'GatewayUnavailable'),
        },
      },
    },
    '/v1/policy': {
      get: {
        operationId: 'getPolicy',
        summary: 'The policy in force (null fields while none is loaded).',
        tags: ['policy'],
        security: bearer,
        responses: { '200': json('PolicyStatus', 'The policy status.'), ...errors('Unauthorized') },
      },
    },
    '/v1/credentials': {
      get: {
        operationId: 'listCredentials',
        summary:
          "The policy's credentials: names, roles, bindings, how applied, source kind, value version; never a value. " +
          'Any authenticated caller (no delegation check).',
        tags: ['policy'],
        security: bearer,
        responses: { '200': json('CredentialList', 'The credentials.'), ...errors('Unauthorized') },
      },
    },
    '/v1/events': {
      get: {
        operationId: 'streamEvents',
        summary:
          'Live server-sent events (text/event-stream): sessions with allowed/denied counts, the policy status, ' +
          'and every gateway decision the caller may READ (delegation as for the audit route). Read it with a ' +
          'streaming fetch that sends the Authorization header (EventSource cannot); the web console does.',
        tags: ['sessions'],
        security: bearer,
        parameters: [
          {
            name: 'sessionId',
            in: 'query',
            required: false,
            description:
              'Only this session; 404/403 before the stream starts; event `end` when it has ended.',
            schema: { type: 'string' },
          },
        ],
        responses: {
          '200': {
            description:
              'The stream. Each frame is `event: <event>` and one `data:` line with `data` as JSON (StreamEvent); ' +
              'a `: keepalive` comment every 15 s. A client leaving more than 4 MiB unread is disconnected.',
            content: { 'text/event-stream': { schema: ref('StreamEvent') } },
          },
          ...errors('BadRequest', 'Unauthorized', 'Forbidden', 'NotFound', 'GatewayUnavailable'),
        },
      },
    },
    '/v1/sessions/{id}/grants': {
      parameters: idParam,
      post: {
        operationId: 'grantSession',
        summary:
          'Give the session an allow rule for ttlSeconds (docs/approvals.md "Grants"): live on every gateway replica ' +
          'when answered, gone at expiresAt; deny and ask rules still win. Needs GRANT under delegation.',
        tags: ['approvals'],
        security: bearer,
        requestBody: body('GrantRequest'),
        responses: {
          '201': json('Grant', 'The grant.'),
          ...errors('BadRequest', 'Unauthorized', 'Forbidden', 'NotFound', 'Conflict', 'GatewayUnavailable'),
        },
      },
    },
    '/v1/approvals': {
      get: {
        operationId: 'listApprovals',
        summary:
          'Calls an ask rule matched, bound to their exact request, newest first; only those the caller may READ or APPROVE.',
        tags: ['approvals'],
        security: bearer,
        parameters: [
          {
            name: 'status',
            in: 'query',
            required: false,
            schema: {
              type: 'string',
              enum: ['pending', 'approved', 'denied', 'expired', 'cancelled', 'used'],
            },
          },
          { name: 'sessionId', in: 'query', required: false, schema: { type: 'string' } },
        ],
        responses: { '200': json('ApprovalList', 'The approvals.'), ...errors('BadRequest', 'Unauthorized') },
      },
    },
    '/v1/approvals/stream': {
      get: {
        operationId: 'streamApprovals',
        summary:
          'Server-sent events: `requested` for each pending approval, then one event per change (requested, ' +
          'approved, denied, expired, cancelled, used) with the Approval as data.',
        tags: ['approvals'],
        security: bearer,
        responses: {
          '200': {
            description: 'The stream; `: keepalive` every 15 s.',
            content: { 'text/event-stream': { schema: ref('Approval') } },
          },
          ...errors('Unauthorized'),
        },
      },
    },
    '/v1/approvals/{approvalId}': {
      parameters: [approvalParam],
      get: {
        operationId: 'getApproval',
        summary: 'One approval: the exact request (method, URL, body preview and hash) and its state.',
        tags: ['approvals'],
        security: bearer,
        responses: {
          '200': json('Approval', 'The approval.'),
          ...errors('BadRequest', 'Unauthorized', 'Forbidden', 'NotFound'),
        },
      },
    },
    '/v1/approvals/{approvalId}/approve': {
      parameters: [approvalParam],
      post: {
        operationId: 'approve',
        summary:
          'Approve exactly this request (uses, ttlSeconds). Needs APPROVE on /approvals/ROLE under delegation, and ' +
          'APPROVE_OWN for a session the caller created (separation of duties). 409 when it is no longer pending.',
        tags: ['approvals'],
        security: bearer,
        requestBody: body('ApproveRequest'),
        responses: {
          '200': json('Approval', 'The approved approval.'),
          ...errors('BadRequest', 'Unauthorized', 'Forbidden', 'NotFound', 'Conflict'),
        },
      },
    },
    '/v1/approvals/{approvalId}/deny': {
      parameters: [approvalParam],
      post: {
        operationId: 'denyApproval',
        summary: 'Deny this request; the agent sees the reason. 409 when it is no longer pending.',
        tags: ['approvals'],
        security: bearer,
        requestBody: body('DenyRequest'),
        responses: {
          '200': json('Approval', 'The denied approval.'),
          ...errors('BadRequest', 'Unauthorized', 'Forbidden', 'NotFound', 'Conflict'),
        },
      },
    },
    '/healthz': {
      get: {
        operationId: 'health',
        summary: 'Liveness: 200 while the process serves.',
        tags: ['operations'],
        security: [],
        responses: { '200': json('Health', 'Alive.') },
      },
    },
    '/readyz': {
      get: {
        operationId: 'ready',
        summary: 'Readiness: 200 only with a valid policy loaded and the session service ready.',
        tags: ['operations'],
        security: [],
        responses: {
          '200': json('Readiness', 'Ready.'),
          '503': json('Readiness', 'Not ready; `reasons` says why.'),
        },
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        summary: 'Prometheus metrics (text exposition format).',
        tags: ['operations'],
        security: [],
        responses: {
          '200': { description: 'Metrics.', content: { 'text/plain': { schema: { type: 'string' } } } },
        },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'This document.',
        tags: ['operations'],
        security: [],
        responses: {
          '200': {
            description: 'OpenAPI 3.1 document.',
            content: { 'application/json': { schema: { type: 'object' } } },
          },
        },
      },
    },
  };
}

/**
 * The `version` of the package (package.json, one directory above src/ and dist/): the document's
 * `info.version`, which the SDKs' package versions follow (clients/python/pyproject.toml).
 */
function packageVersion(): string {
  return (
    JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  ).version;
}

/**
 * Builds the OpenAPI 3.1 document of the v1 API: every route, its request and response schemas
 * (generated from the zod schemas), the bearer security scheme and the problem+json error answers.
 * The result is a plain JSON-serialisable object; build it once and serve it.
 */
export function buildOpenApiDocument(): Record<string, unknown> {
  const { $schema: _dialect, ...idSchema } = z.toJSONSchema(sessionIdParam);
  const responses: Record<string, Json> = {};
  for (const [name, r] of Object.entries(errorResponses)) {
    responses[name] = { description: r.description, content: problemContent };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Airlock API',
      version: packageVersion(),
      description:
        'Sandbox sessions for AI agents whose only network exit is a policy-enforcing egress gateway. ' +
        'Errors are application/problem+json (RFC 9457) with a stable `code` (docs/errors.md).',
    },
    tags: [
      { name: 'sessions', description: 'Sandbox sessions.' },
      { name: 'policy', description: 'The egress policy in force.' },
      { name: 'operations', description: 'Health, readiness, metrics, this document; no token needed.' },
    ],
    security: bearer,
    paths: paths(),
    components: {
      schemas: componentSchemas(),
      parameters: {
        SessionId: {
          name: 'id',
          in: 'path',
          required: true,
          description: 'Session id.',
          schema: idSchema,
        },
      },
      responses,
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'An API token from config `api.tokens` or AIRLOCK_API_TOKEN.',
        },
      },
    },
  };
}
