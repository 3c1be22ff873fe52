import { z } from 'zod';
import { DecisionReasons, type AuditEvent } from '../audit/event.js';
import type { CreateSessionRequest, ExecOutput, SessionView } from '../sessions/types.js';
import type { Readiness } from './readiness.js';
import type { Approval } from '../sessions/approvals.js';

/**
 * The API's wire shapes, as zod schemas. Request schemas validate bodies (strict: an unknown field is
 * a 400 naming it); response schemas document what the handlers send and feed `/openapi.json`
 * (src/api/openapi.ts converts them with `z.toJSONSchema`, so the document cannot drift from the code).
 * Compile-time checks at the bottom keep the response schemas equal to the TypeScript types they mirror.
 */

/**
 * Environment variables a create request may not set (compared case-insensitively): the sandbox's
 * proxy settings point at the gateway and carry the session's credential (DESIGN.md "Inside a
 * sandbox"), so overriding them could only break the session's egress or confuse its audit trail.
 */
export const RESERVED_ENV_NAMES: readonly string[] = ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY'];
const reservedEnv = new Set(RESERVED_ENV_NAMES.map((n) => n.toLowerCase()));

/** Largest request body accepted, in bytes (1 MiB); bigger bodies get 413. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** Bounds on create-request maps and strings. */
export const LIMITS = {
  envEntries: 128,
  envNameChars: 256,
  envValueChars: 32 * 1024,
  labelEntries: 32,
  labelKeyChars: 63,
  labelValueChars: 256,
  roleChars: 128,
  imageChars: 256,
  commandArgs: 4096,
} as const;

const noNul = /^[^\0]*$/;

/** A role name as policy.csv writes it: letters, digits, `_ . : -`, starting with a letter, digit or `_`. */
const role = z
  .string()
  .min(1, 'role must not be empty')
  .max(LIMITS.roleChars)
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/, 'expected a role name (letters, digits, "_", ".", ":", "-")')
  .describe('Role whose policy rules apply to every outbound call of the session.')
  .meta({ examples: ['analyst'] });

const image = z
  .string()
  .min(1)
  .max(LIMITS.imageChars)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/, 'expected an image reference such as airlock-sandbox:dev')
  .describe('Sandbox image; the configured `runtime.sandboxImage` when absent.')
  .meta({ examples: ['airlock-sandbox:dev'] });

const envName = z
  .string()
  .max(LIMITS.envNameChars)
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)')
  .refine((k) => !reservedEnv.has(k.toLowerCase()), {
    message: `proxy variables (${RESERVED_ENV_NAMES.join(', ')}, any case) are set by Airlock and cannot be overridden`,
  });

const env = z
  .record(
    envName,
    z.string().max(LIMITS.envValueChars).regex(noNul, 'environment values cannot contain NUL characters'),
  )
  .refine((o) => Object.keys(o).length <= LIMITS.envEntries, {
    message: `at most ${LIMITS.envEntries} environment variables`,
  })
  .describe(
    `Extra environment variables for commands run in the sandbox. Names must match [A-Za-z_][A-Za-z0-9_]*; ` +
      `${RESERVED_ENV_NAMES.join(', ')} (any case) are rejected.`,
  )
  .meta({ maxProperties: LIMITS.envEntries, examples: [{ TASK: 'summarise' }] });

const labelKey = z
  .string()
  .max(LIMITS.labelKeyChars)
  .regex(
    /^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$/,
    'expected a label key (letters, digits, ".", "_", "/", "-"; starting and ending with a letter or digit)',
  );

const labels = z
  .record(
    labelKey,
    z
      .string()
      .max(LIMITS.labelValueChars)
      // eslint-disable-next-line no-control-regex -- the point is to reject control characters
      .regex(/^[^\0-\x1f\x7f]*$/, 'label values cannot contain control characters'),
  )
  .refine((o) => Object.keys(o).length <= LIMITS.labelEntries, {
    message: `at most ${LIMITS.labelEntries} labels`,
  })
  .describe('Free-form labels kept with the session (for example a ticket or agent name).')
  .meta({ maxProperties: LIMITS.labelEntries, examples: [{ ticket: 'OPS-42' }] });

/** Body of `POST /v1/sessions`. */
export const createSessionBody = z
  .strictObject({
    role,
    image: image.optional(),
    env: env.optional(),
    ttlSeconds: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        'Lifetime in seconds; the configured `sessions.defaultTtlSeconds` when absent, at most `sessions.maxTtlSeconds`.',
      ),
    labels: labels.optional(),
  })
  .describe('Request to create a session.');

/** Default exec timeout, in seconds. */
export const DEFAULT_EXEC_TIMEOUT_SECONDS = 60;
/** Largest exec timeout, in seconds. */
export const MAX_EXEC_TIMEOUT_SECONDS = 3600;

/** Body of `POST /v1/sessions/{id}/exec`. */
export const execBody = z
  .strictObject({
    command: z
      .array(
        z.string().max(MAX_BODY_BYTES).regex(noNul, 'arguments cannot contain NUL characters'),
        'command must be an array of strings (argv; no shell is involved)',
      )
      .min(1, 'command must name a program')
      .max(LIMITS.commandArgs)
      .refine((argv) => argv[0] !== '', {
        message: 'the program name (command.0) must not be empty',
        path: [0],
      })
      .describe('argv of the command, run directly (no shell).')
      .meta({ examples: [['curl', '-sS', 'https://forum.test/posts']] }),
    timeoutSeconds: z
      .number()
      .int()
      .min(1)
      .max(MAX_EXEC_TIMEOUT_SECONDS)
      .default(DEFAULT_EXEC_TIMEOUT_SECONDS)
      .describe('Time limit in seconds; 504 when exceeded.'),
    stream: z
      .boolean()
      .default(false)
      .describe(
        'Stream output as application/x-ndjson lines {stream: "stdout"|"stderr", data} while the command ' +
          'runs, ending with {exitCode} (or {error} with a problem code). Used by `airlock run`.',
      ),
  })
  .describe('Command to run inside the session.');

/** Path parameter `{id}`: bounded so it can be logged and passed on safely. */
export const sessionIdParam = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'expected a session id (letters, digits, "_", ".", "-")');

const isoTime = z.iso.datetime({ offset: true });

/** A session as the API returns it. */
export const sessionSchema = z
  .object({
    id: z.string(),
    role: z.string(),
    status: z.enum(['running', 'stopping', 'stopped']),
    image: z.string(),
    createdAt: isoTime,
    expiresAt: isoTime.describe('After this instant the gateway refuses the session and it is removed.'),
    createdBy: z.string().describe('Name of the API token that created the session.'),
    labels: z.record(z.string(), z.string()),
    grants: z
      .array(z.lazy(() => grantSchema))
      .optional()
      .describe('Time-boxed grants in force (docs/approvals.md "Grants").'),
  })
  .describe('A session: one sandbox whose only network exit is the egress gateway.');

/** A time-boxed grant of a session (docs/approvals.md "Grants"). */
export const grantSchema = z
  .object({
    id: z.string(),
    host: z.string(),
    path: z.string(),
    method: z.string(),
    reason: z.string(),
    grantedBy: z.string(),
    grantedAt: isoTime,
    expiresAt: isoTime.describe('The gateways stop honouring the grant at this instant.'),
  })
  .describe('An allow rule a person gave one session for a limited time; deny and ask rules still win.');

/** Body of `POST /v1/sessions/{id}/grants`. */
export const grantBody = z
  .strictObject({
    rule: z
      .strictObject({
        host: z
          .string()
          .min(1)
          .max(256)
          .describe('Host pattern, as in policy.csv (`forum.test`, `*.forum.test`).'),
        path: z
          .string()
          .min(1)
          .max(1024)
          .describe('Path pattern, as in policy.csv (`/comments`, `/posts/:id`, `/a/*`).'),
        method: z.string().min(1).max(32).describe('Method or `*`, as in policy.csv.'),
      })
      .describe("The rule granted, with the policy's pattern syntax."),
    ttlSeconds: z.number().int().min(1).max(86_400).describe('How long the grant lasts, seconds.'),
    reason: z.string().min(1, 'a reason is required').max(1000).describe('Why (recorded).'),
  })
  .describe('Grant a session an allow rule for a limited time.');

/** An approval (docs/approvals.md). */
export const approvalSchema = z
  .object({
    id: z.string(),
    status: z.enum(['pending', 'approved', 'denied', 'expired', 'cancelled', 'used']),
    sessionId: z.string(),
    role: z.string(),
    sessionCreator: z.string().describe('The API caller that created the session.'),
    method: z.string().describe('The method the upstream would execute.'),
    url: z.string().describe('The canonical URL, as the gateway would forward it.'),
    bodySha256: z.string().describe('SHA-256 (hex) of the body the approval is bound to.'),
    bodyBytes: z.number().int(),
    contentType: z.string(),
    bodyPreview: z.string().describe('The first 4 KiB of the body, base64.'),
    bodyText: z.string().nullable().describe('The preview as text when it reads as text, else null.'),
    rule: z.string().describe('The ask rule that matched.'),
    policyVersion: z.string(),
    requestedAt: isoTime,
    pendingUntil: isoTime.describe('A pending approval expires at this instant.'),
    decidedBy: z.string().nullable(),
    decidedAt: isoTime.nullable(),
    reason: z.string().nullable(),
    uses: z.number().int().describe('Uses granted (approved).'),
    used: z.number().int().describe('Uses spent.'),
    usableUntil: isoTime.nullable().describe('An approved approval may be used until this instant.'),
  })
  .describe('A call an ask rule matched, bound to its exact request, and what a person decided.');

/** Answer of `GET /v1/approvals`. */
export const approvalListSchema = z.object({ approvals: z.array(approvalSchema) });

/** Body of `POST /v1/approvals/{id}/approve`. */
export const approveBody = z
  .strictObject({
    reason: z.string().min(1, 'a reason is required').max(1000),
    uses: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .optional()
      .describe('Times the exact request may be forwarded (default approvals.defaultUses).'),
    ttlSeconds: z
      .number()
      .int()
      .min(1)
      .max(7 * 86_400)
      .optional()
      .describe('How long it may be used, seconds (default approvals.defaultTtlSeconds).'),
  })
  .describe('Approve exactly the request of a pending approval.');

/** Body of `POST /v1/approvals/{id}/deny`. */
export const denyBody = z
  .strictObject({ reason: z.string().min(1, 'a reason is required').max(1000) })
  .describe('Deny the request of a pending approval.');

/** Path parameter `{id}` of an approval. */
export const approvalIdParam = z
  .string()
  .regex(/^ap-[0-9a-f]{16}$/, 'expected an approval id (ap- and 16 hex digits)');

/** Answer of `GET /v1/sessions`. */
export const sessionListSchema = z.object({ sessions: z.array(sessionSchema) });

/** Answer of `POST /v1/sessions/{id}/exec`. A non-zero exit code is still a 200. */
export const execResultSchema = z
  .object({
    exitCode: z.number().int(),
    stdout: z.string(),
    stderr: z.string(),
  })
  .describe('Outcome of a command; a non-zero exitCode is still HTTP 200.');

/** One gateway decision (DESIGN.md "Audit event"). */
export const auditEventSchema = z
  .object({
    time: isoTime,
    sessionId: z.string().nullable(),
    role: z.string().nullable(),
    method: z.string(),
    scheme: z.enum(['http', 'https']),
    host: z.string(),
    port: z.number().int(),
    path: z.string().describe('Normalised path without its query string.'),
    decision: z
      .enum(['allow', 'deny', 'would_deny'])
      .describe('`would_deny`: denied by the rules, forwarded in complain mode (safe methods only).'),
    rule: z.string().nullable().describe('The deciding rule as `file:line: text`, or null.'),
    reason: z.enum(DecisionReasons),
    status: z.number().int().describe('HTTP status the sandbox received.'),
    durationMs: z.number().describe('Decision plus upstream time, in ms.'),
    bytesOut: z.number().int().describe('Request body bytes sent upstream.'),
    bytesIn: z.number().int().describe('Response body bytes returned to the sandbox.'),
    policyVersion: z.string().nullable(),
    methodOverride: z
      .string()
      .optional()
      .describe(
        'Method the upstream executes when a method override differs from `method`; both were decided.',
      ),
    requests: z
      .number()
      .int()
      .optional()
      .describe('Intercepted CONNECT only: requests decided inside the tunnel (audited when it closes).'),
    headerBytes: z.number().int().optional().describe('Bytes of the request line and headers as received.'),
    queryBytes: z.number().int().optional().describe('Bytes of the query string (never recorded itself).'),
    query: z.string().optional().describe('The query string itself, only with `audit.query: full`.'),
    querySha256: z.string().optional().describe('First 16 hex digits of the SHA-256 of the query string.'),
    credential: z
      .object({ name: z.string(), version: z.string().nullable() })
      .optional()
      .describe(
        'The credential (credentials.yaml) injected into the call, found in it (exfiltration_attempt) or missing (credential_unavailable): name and value version (a hash prefix), never the value.',
      ),
    secretFoundIn: z
      .string()
      .optional()
      .describe('exfiltration_attempt only: where the value was found (`url` or `header:NAME`).'),
    mcp: z
      .object({
        endpoint: z.string(),
        batch: z.boolean(),
        messages: z.array(
          z.object({
            method: z.string().optional(),
            id: z.union([z.string(), z.number()]).optional(),
            name: z.string().optional(),
            path: z.string().optional(),
            decision: z.enum(['allow', 'deny']).optional(),
            rule: z.string().nullable().optional(),
          }),
        ),
        hiddenTools: z.array(z.string()).optional(),
        changedTools: z.array(z.string()).optional(),
      })
      .optional()
      .describe(
        'A POST to an MCP endpoint (mcp.yaml): the endpoint and each JSON-RPC message (method, id, tool/prompt name or resource URI, virtual path, decision, rule); hiddenTools: tools removed from tools/list answers; changedTools: tools whose description changed mid-session (pinning).',
      ),
    suppressed: z
      .number()
      .int()
      .optional()
      .describe('Authentication backoff summary: refusals not audited one by one (reason auth_backoff).'),
    clientAddress: z
      .string()
      .optional()
      .describe("Authentication backoff summary: the caller's source address."),
    worker: z
      .number()
      .int()
      .optional()
      .describe('The gateway worker (1..N) that decided, when the gateway runs several.'),
    approvalId: z
      .string()
      .optional()
      .describe('A call an ask rule matched: the approval it opened or used (docs/approvals.md).'),
    approval: z
      .object({
        event: z.enum(['requested', 'approved', 'denied', 'expired', 'cancelled', 'used']),
        by: z.string().nullable(),
        reason: z.string().nullable(),
        uses: z.number().int(),
        used: z.number().int(),
        bodySha256: z.string(),
      })
      .optional()
      .describe(
        "A step in an approval's life (reasons approval_*), written by the control plane: who approved or denied, why, uses granted and spent, the body hash it is bound to.",
      ),
    chain: z
      .object({ stream: z.string(), seq: z.number().int(), prev: z.string().nullable() })
      .optional()
      .describe(
        "The event's link in its writer's hash chain (tamper-evident audit): stream id, seq (1, 2, ...), SHA-256 hex of the stream's previous line (null for seq 1).",
      ),
  })
  .describe('One gateway decision.');

/** Answer of `GET /v1/sessions/{id}/audit`: events oldest first. */
export const auditListSchema = z.object({ events: z.array(auditEventSchema) });

/** Answer of `GET /v1/policy`; every field is null while no valid policy is loaded. */
export const policyStatusSchema = z
  .object({
    version: z.string().nullable().describe('Content hash or git SHA of the policy in force.'),
    loadedAt: isoTime.nullable(),
    rules: z.number().int().nullable().describe('Number of `p` and `g` lines.'),
    lastError: z.string().nullable().describe('Last load error; the previous good policy stays in force.'),
    modes: z
      .record(z.string(), z.enum(['enforce', 'complain']))
      .nullable()
      .describe(
        'Enforcement mode of every role the policy knows: `complain` (modes.yaml) forwards the calls its rules ' +
          'deny for GET, HEAD and OPTIONS and audits them `would_deny`; `enforce` otherwise.',
      ),
  })
  .describe('The policy in force.');

/** One credential of credentials.yaml as `GET /v1/credentials` shows it (never its value). */
export const credentialInfoSchema = z
  .object({
    name: z.string(),
    roles: z.array(z.string()).describe("The sessions' own roles whose allowed calls get it."),
    bindings: z
      .array(
        z.object({
          host: z.string(),
          path: z.string(),
          methods: z.array(z.string()),
        }),
      )
      .describe('Where it is injected (patterns as in rules); the first matching binding decides.'),
    apply: z
      .object({
        type: z.enum([
          'bearer',
          'basic',
          'header',
          'query',
          'aws-sigv4',
          'oauth2-client-credentials',
          'oauth2-refresh-token',
        ]),
        name: z.string().optional().describe('The header or query parameter (types header and query).'),
      })
      .describe('How it is applied.'),
    source: z
      .object({
        kind: z.enum(['file', 'env', 'secret']),
        ref: z
          .string()
          .describe(
            'The file path, the variable name, or the Kubernetes Secret as NAME/KEY the gateway reads.',
          ),
      })
      .describe('Where the gateway reads the value (never the value).'),
    valueVersion: z
      .string()
      .nullable()
      .describe(
        'First 12 hex digits of SHA-256 over a fixed prefix and the value, as the control plane reads ' +
          'the source through the mapping the gateway sees (Docker: gateway.credentialsDir, ' +
          'gateway.credentialEnv); null when it is not available there, or not readable by the control plane.',
      ),
    placeholder: z
      .object({ env: z.string() })
      .nullable()
      .describe(
        "The sandbox variable carrying each session's placeholder for it (docs/credentials.md); null: none.",
      ),
    lastUsedAt: z
      .string()
      .nullable()
      .describe(
        'ISO 8601 time of the latest call the gateway injected it into, from the audit trail; null: none on record.',
      ),
  })
  .describe('A credential definition of the policy in force.');

/** Answer of `GET /v1/credentials`. */
export const credentialListSchema = z
  .object({
    policyVersion: z
      .string()
      .nullable()
      .describe('Version of the policy in force; null while none is loaded.'),
    credentials: z.array(credentialInfoSchema),
  })
  .describe("The policy's credentials (credentials.yaml), in file order; never a value.");

/** Answer of `GET /healthz`. */
export const healthSchema = z.object({ status: z.literal('ok') });

/** Answer of `GET /readyz` (200 when ready, 503 otherwise). */
export const readinessSchema = z.object({
  ready: z.boolean(),
  reasons: z.array(z.string()).describe('Why the service is not ready; empty when ready.'),
});

/** An error answer: RFC 9457 problem details plus Airlock's stable `code`. */
export const problemSchema = z
  .object({
    type: z.string().describe('`urn:airlock:error:<code>`; see docs/errors.md.'),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().describe('Stable error code (docs/errors.md).'),
    field: z
      .string()
      .optional()
      .describe('For 400: the offending field path (`command.0`, `env.HTTP_PROXY`, `(body)`).'),
  })
  .describe('RFC 9457 problem details, served as application/problem+json.');

/** Query of `GET /v1/events`: without `sessionId`, every session the caller may read. */
export const eventsQuery = z
  .object({
    sessionId: sessionIdParam
      .optional()
      .describe("Only this session's decisions and state; the stream ends (event `end`) when it does."),
  })
  .strict();

/** A session with its decision counts, as the event stream sends it. */
export const sessionSummarySchema = sessionSchema
  .extend({
    allowed: z.number().int().describe('Calls allowed so far (audit events with decision allow).'),
    denied: z.number().int().describe('Calls denied so far.'),
  })
  .describe('A session and its allowed/denied counts.');

/**
 * The frames of `GET /v1/events` (text/event-stream): each is `event: <event>` and one `data:` line
 * holding `data` as JSON.
 */
export const streamEventSchema = z
  .discriminatedUnion('event', [
    z.object({
      event: z.literal('hello'),
      data: z.object({ caller: z.string(), sessionId: z.string().nullable() }),
    }),
    z.object({
      event: z.literal('sessions'),
      data: z.object({ sessions: z.array(sessionSummarySchema) }),
    }),
    z.object({ event: z.literal('policy'), data: policyStatusSchema }),
    z.object({ event: z.literal('decision'), data: auditEventSchema }),
    z.object({ event: z.literal('end'), data: z.object({ sessionId: z.string() }) }),
  ])
  .describe(
    'One server-sent event: `hello` first; `policy` and `sessions` at the start and whenever they change ' +
      '(checked every second); `decision` for each gateway decision the caller may read (the last 5 minutes ' +
      'first, or for one session its whole recent trail); `end` when the watched session has ended. ' +
      'A comment line `: keepalive` every 15 s.',
  );

// Compile-time drift checks: the response schemas must describe exactly the types the service returns.
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const _sessionMatches: Equals<z.output<typeof sessionSchema>, SessionView> = true;
const _readinessMatches: Equals<z.output<typeof readinessSchema>, Readiness> = true;
const _execMatches: Equals<z.output<typeof execResultSchema>, ExecOutput> = true;
const _auditMatches: Equals<z.output<typeof auditEventSchema>, AuditEvent> = true;
const _approvalMatches: Equals<z.output<typeof approvalSchema>, Approval> = true;
const _createAssignable: CreateSessionRequest = {} as z.output<typeof createSessionBody>;
void [_approvalMatches, _sessionMatches, _readinessMatches, _execMatches, _auditMatches, _createAssignable];
