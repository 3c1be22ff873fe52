/**
 * Wire types of the Airlock API, generated from its OpenAPI document (`GET /openapi.json`,
 * src/api/openapi.ts) by openapi-typescript. Do not edit: run `npm run sdk:types`.
 * test/unit/sdk/openapi-types.test.ts fails when this file is stale.
 */

export interface paths {
  '/v1/sessions': {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** List sessions. */
    get: operations['listSessions'];
    put?: never;
    /** Create a session (a sandbox whose only exit is the egress gateway). */
    post: operations['createSession'];
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/v1/sessions/{id}': {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description Session id. */
        id: components['parameters']['SessionId'];
      };
      cookie?: never;
    };
    /** Get one session. */
    get: operations['getSession'];
    put?: never;
    post?: never;
    /** Kill switch: the gateway refuses the session's traffic, then the sandbox is removed. */
    delete: operations['deleteSession'];
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/v1/sessions/{id}/exec': {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description Session id. */
        id: components['parameters']['SessionId'];
      };
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Run a command in the session and wait for it. */
    post: operations['execInSession'];
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/v1/sessions/{id}/audit': {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description Session id. */
        id: components['parameters']['SessionId'];
      };
      cookie?: never;
    };
    /** The session's gateway decisions, oldest first. */
    get: operations['getSessionAudit'];
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/v1/policy': {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** The policy in force (null fields while none is loaded). */
    get: operations['getPolicy'];
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/v1/credentials': {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** The policy's credentials: names, roles, bindings, how applied, source kind, value version; never a value. Any authenticated caller (no delegation check). */
    get: operations['listCredentials'];
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/v1/events': {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** Live server-sent events (text/event-stream): sessions with allowed/denied counts, the policy status, and every gateway decision the caller may READ (delegation as for the audit route). Read it with a streaming fetch that sends the Authorization header (EventSource cannot); the web console does. */
    get: operations['streamEvents'];
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/v1/sessions/{id}/grants': {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description Session id. */
        id: components['parameters']['SessionId'];
      };
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Give the session an allow rule for ttlSeconds (docs/approvals.md "Grants"): live on every gateway replica when answered, gone at expiresAt; deny and ask rules still win. Needs GRANT under delegation. */
    post: operations['grantSession'];
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/v1/approvals': {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** Calls an ask rule matched, bound to their exact request, newest first; only those the caller may READ or APPROVE. */
    get: operations['listApprovals'];
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/v1/approvals/stream': {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** Server-sent events: `requested` for each pending approval, then one event per change (requested, approved, denied, expired, cancelled, used) with the Approval as data. */
    get: operations['streamApprovals'];
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/v1/approvals/{approvalId}': {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description An approval id: `ap-` and 16 hex digits. */
        approvalId: string;
      };
      cookie?: never;
    };
    /** One approval: the exact request (method, URL, body preview and hash) and its state. */
    get: operations['getApproval'];
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/v1/approvals/{approvalId}/approve': {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description An approval id: `ap-` and 16 hex digits. */
        approvalId: string;
      };
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Approve exactly this request (uses, ttlSeconds). Needs APPROVE on /approvals/ROLE under delegation, and APPROVE_OWN for a session the caller created (separation of duties). 409 when it is no longer pending. */
    post: operations['approve'];
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/v1/approvals/{approvalId}/deny': {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description An approval id: `ap-` and 16 hex digits. */
        approvalId: string;
      };
      cookie?: never;
    };
    get?: never;
    put?: never;
    /** Deny this request; the agent sees the reason. 409 when it is no longer pending. */
    post: operations['denyApproval'];
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/healthz': {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** Liveness: 200 while the process serves. */
    get: operations['health'];
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/readyz': {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** Readiness: 200 only with a valid policy loaded and the session service ready. */
    get: operations['ready'];
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/metrics': {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** Prometheus metrics (text exposition format). */
    get: operations['metrics'];
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
  '/openapi.json': {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    /** This document. */
    get: operations['openapi'];
    put?: never;
    post?: never;
    delete?: never;
    options?: never;
    head?: never;
    patch?: never;
    trace?: never;
  };
}
export type webhooks = Record<string, never>;
export interface components {
  schemas: {
    /** @description Request to create a session. */
    CreateSessionRequest: {
      /**
       * @description Role whose policy rules apply to every outbound call of the session.
       * @example analyst
       */
      role: string;
      /**
       * @description Sandbox image; the configured `runtime.sandboxImage` when absent.
       * @example airlock-sandbox:dev
       */
      image?: string;
      /**
       * @description Extra environment variables for commands run in the sandbox. Names must match [A-Za-z_][A-Za-z0-9_]*; HTTP_PROXY, HTTPS_PROXY, NO_PROXY, ALL_PROXY (any case) are rejected.
       * @example {
       *       "TASK": "summarise"
       *     }
       */
      env?: {
        [key: string]: string;
      };
      /** @description Lifetime in seconds; the configured `sessions.defaultTtlSeconds` when absent, at most `sessions.maxTtlSeconds`. */
      ttlSeconds?: number;
      /**
       * @description Free-form labels kept with the session (for example a ticket or agent name).
       * @example {
       *       "ticket": "OPS-42"
       *     }
       */
      labels?: {
        [key: string]: string;
      };
    };
    /** @description Command to run inside the session. */
    ExecRequest: {
      /**
       * @description argv of the command, run directly (no shell).
       * @example [
       *       "curl",
       *       "-sS",
       *       "https://forum.test/posts"
       *     ]
       */
      command: string[];
      /**
       * @description Time limit in seconds; 504 when exceeded.
       * @default 60
       */
      timeoutSeconds?: number;
      /**
       * @description Stream output as application/x-ndjson lines {stream: "stdout"|"stderr", data} while the command runs, ending with {exitCode} (or {error} with a problem code). Used by `airlock run`.
       * @default false
       */
      stream?: boolean;
    };
    /** @description A session: one sandbox whose only network exit is the egress gateway. */
    Session: {
      id: string;
      role: string;
      /** @enum {string} */
      status: 'running' | 'stopping' | 'stopped';
      image: string;
      /** Format: date-time */
      createdAt: string;
      /**
       * Format: date-time
       * @description After this instant the gateway refuses the session and it is removed.
       */
      expiresAt: string;
      /** @description Name of the API token that created the session. */
      createdBy: string;
      labels: {
        [key: string]: string;
      };
      /** @description Time-boxed grants in force (docs/approvals.md "Grants"). */
      grants?: components['schemas']['Grant'][];
    };
    SessionList: {
      sessions: components['schemas']['Session'][];
    };
    /** @description Outcome of a command; a non-zero exitCode is still HTTP 200. */
    ExecResult: {
      exitCode: number;
      stdout: string;
      stderr: string;
    };
    /** @description One gateway decision. */
    AuditEvent: {
      /** Format: date-time */
      time: string;
      sessionId: string | null;
      role: string | null;
      method: string;
      /** @enum {string} */
      scheme: 'http' | 'https';
      host: string;
      port: number;
      /** @description Normalised path without its query string. */
      path: string;
      /**
       * @description `would_deny`: denied by the rules, forwarded in complain mode (safe methods only).
       * @enum {string}
       */
      decision: 'allow' | 'deny' | 'would_deny';
      /** @description The deciding rule as `file:line: text`, or null. */
      rule: string | null;
      /** @enum {string} */
      reason:
        | 'rule_allow'
        | 'rule_deny'
        | 'no_match'
        | 'no_policy'
        | 'unknown_session'
        | 'bad_credential'
        | 'address_mismatch'
        | 'session_expired'
        | 'destination_refused'
        | 'bad_request'
        | 'ambiguous_request'
        | 'limit_exceeded'
        | 'budget_exceeded'
        | 'client_timeout'
        | 'tls_handshake_failed'
        | 'auth_backoff'
        | 'exfiltration_attempt'
        | 'credential_unavailable'
        | 'body_too_large'
        | 'tool_changed'
        | 'audit_unavailable'
        | 'approval_required'
        | 'approval_timeout'
        | 'approval_unavailable'
        | 'approved'
        | 'approval_requested'
        | 'approval_approved'
        | 'approval_denied'
        | 'approval_expired'
        | 'approval_cancelled'
        | 'approval_used'
        | 'upstream_error'
        | 'upstream_tls_error';
      /** @description HTTP status the sandbox received. */
      status: number;
      /** @description Decision plus upstream time, in ms. */
      durationMs: number;
      /** @description Request body bytes sent upstream. */
      bytesOut: number;
      /** @description Response body bytes returned to the sandbox. */
      bytesIn: number;
      policyVersion: string | null;
      /** @description Method the upstream executes when a method override differs from `method`; both were decided. */
      methodOverride?: string;
      /** @description Intercepted CONNECT only: requests decided inside the tunnel (audited when it closes). */
      requests?: number;
      /** @description Bytes of the request line and headers as received. */
      headerBytes?: number;
      /** @description Bytes of the query string (never recorded itself). */
      queryBytes?: number;
      /** @description The query string itself, only with `audit.query: full`. */
      query?: string;
      /** @description First 16 hex digits of the SHA-256 of the query string. */
      querySha256?: string;
      /** @description The credential (credentials.yaml) injected into the call, found in it (exfiltration_attempt) or missing (credential_unavailable): name and value version (a hash prefix), never the value. */
      credential?: {
        name: string;
        version: string | null;
      };
      /** @description exfiltration_attempt only: where the value was found (`url` or `header:NAME`). */
      secretFoundIn?: string;
      /** @description A POST to an MCP endpoint (mcp.yaml): the endpoint and each JSON-RPC message (method, id, tool/prompt name or resource URI, virtual path, decision, rule); hiddenTools: tools removed from tools/list answers; changedTools: tools whose description changed mid-session (pinning). */
      mcp?: {
        endpoint: string;
        batch: boolean;
        messages: {
          method?: string;
          id?: string | number;
          name?: string;
          path?: string;
          /** @enum {string} */
          decision?: 'allow' | 'deny';
          rule?: string | null;
        }[];
        hiddenTools?: string[];
        changedTools?: string[];
      };
      /** @description Authentication backoff summary: refusals not audited one by one (reason auth_backoff). */
      suppressed?: number;
      /** @description Authentication backoff summary: the caller's source address. */
      clientAddress?: string;
      /** @description The gateway worker (1..N) that decided, when the gateway runs several. */
      worker?: number;
      /** @description A call an ask rule matched: the approval it opened or used (docs/approvals.md). */
      approvalId?: string;
      /** @description A step in an approval's life (reasons approval_*), written by the control plane: who approved or denied, why, uses granted and spent, the body hash it is bound to. */
      approval?: {
        /** @enum {string} */
        event: 'requested' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'used';
        by: string | null;
        reason: string | null;
        uses: number;
        used: number;
        bodySha256: string;
      };
      /** @description The event's link in its writer's hash chain (tamper-evident audit): stream id, seq (1, 2, ...), SHA-256 hex of the stream's previous line (null for seq 1). */
      chain?: {
        stream: string;
        seq: number;
        prev: string | null;
      };
    };
    AuditEventList: {
      events: components['schemas']['AuditEvent'][];
    };
    /** @description The policy in force. */
    PolicyStatus: {
      /** @description Content hash or git SHA of the policy in force. */
      version: string | null;
      loadedAt: string | null;
      /** @description Number of `p` and `g` lines. */
      rules: number | null;
      /** @description Last load error; the previous good policy stays in force. */
      lastError: string | null;
      /** @description Enforcement mode of every role the policy knows: `complain` (modes.yaml) forwards the calls its rules deny for GET, HEAD and OPTIONS and audits them `would_deny`; `enforce` otherwise. */
      modes: {
        [key: string]: 'enforce' | 'complain';
      } | null;
    };
    /** @description A credential definition of the policy in force. */
    CredentialInfo: {
      name: string;
      /** @description The sessions' own roles whose allowed calls get it. */
      roles: string[];
      /** @description Where it is injected (patterns as in rules); the first matching binding decides. */
      bindings: {
        host: string;
        path: string;
        methods: string[];
      }[];
      /** @description How it is applied. */
      apply: {
        /** @enum {string} */
        type:
          | 'bearer'
          | 'basic'
          | 'header'
          | 'query'
          | 'aws-sigv4'
          | 'oauth2-client-credentials'
          | 'oauth2-refresh-token';
        /** @description The header or query parameter (types header and query). */
        name?: string;
      };
      /** @description Where the gateway reads the value (never the value). */
      source: {
        /** @enum {string} */
        kind: 'file' | 'env' | 'secret';
        /** @description The file path, the variable name, or the Kubernetes Secret as NAME/KEY the gateway reads. */
        ref: string;
      };
      /** @description First 12 hex digits of SHA-256 over a fixed prefix and the value, as the control plane reads the source through the mapping the gateway sees (Docker: gateway.credentialsDir, gateway.credentialEnv); null when it is not available there, or not readable by the control plane. */
      valueVersion: string | null;
      /** @description The sandbox variable carrying each session's placeholder for it (docs/credentials.md); null: none. */
      placeholder: {
        env: string;
      } | null;
      /** @description ISO 8601 time of the latest call the gateway injected it into, from the audit trail; null: none on record. */
      lastUsedAt: string | null;
    };
    /** @description The policy's credentials (credentials.yaml), in file order; never a value. */
    CredentialList: {
      /** @description Version of the policy in force; null while none is loaded. */
      policyVersion: string | null;
      credentials: components['schemas']['CredentialInfo'][];
    };
    /** @description A session and its allowed/denied counts. */
    SessionSummary: {
      id: string;
      role: string;
      /** @enum {string} */
      status: 'running' | 'stopping' | 'stopped';
      image: string;
      /** Format: date-time */
      createdAt: string;
      /**
       * Format: date-time
       * @description After this instant the gateway refuses the session and it is removed.
       */
      expiresAt: string;
      /** @description Name of the API token that created the session. */
      createdBy: string;
      labels: {
        [key: string]: string;
      };
      /** @description Time-boxed grants in force (docs/approvals.md "Grants"). */
      grants?: components['schemas']['Grant'][];
      /** @description Calls allowed so far (audit events with decision allow). */
      allowed: number;
      /** @description Calls denied so far. */
      denied: number;
    };
    /** @description One server-sent event: `hello` first; `policy` and `sessions` at the start and whenever they change (checked every second); `decision` for each gateway decision the caller may read (the last 5 minutes first, or for one session its whole recent trail); `end` when the watched session has ended. A comment line `: keepalive` every 15 s. */
    StreamEvent:
      | {
          /** @constant */
          event: 'hello';
          data: {
            caller: string;
            sessionId: string | null;
          };
        }
      | {
          /** @constant */
          event: 'sessions';
          data: {
            sessions: components['schemas']['SessionSummary'][];
          };
        }
      | {
          /** @constant */
          event: 'policy';
          data: components['schemas']['PolicyStatus'];
        }
      | {
          /** @constant */
          event: 'decision';
          data: components['schemas']['AuditEvent'];
        }
      | {
          /** @constant */
          event: 'end';
          data: {
            sessionId: string;
          };
        };
    /** @description A call an ask rule matched, bound to its exact request, and what a person decided. */
    Approval: {
      id: string;
      /** @enum {string} */
      status: 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'used';
      sessionId: string;
      role: string;
      /** @description The API caller that created the session. */
      sessionCreator: string;
      /** @description The method the upstream would execute. */
      method: string;
      /** @description The canonical URL, as the gateway would forward it. */
      url: string;
      /** @description SHA-256 (hex) of the body the approval is bound to. */
      bodySha256: string;
      bodyBytes: number;
      contentType: string;
      /** @description The first 4 KiB of the body, base64. */
      bodyPreview: string;
      /** @description The preview as text when it reads as text, else null. */
      bodyText: string | null;
      /** @description The ask rule that matched. */
      rule: string;
      policyVersion: string;
      /** Format: date-time */
      requestedAt: string;
      /**
       * Format: date-time
       * @description A pending approval expires at this instant.
       */
      pendingUntil: string;
      decidedBy: string | null;
      decidedAt: string | null;
      reason: string | null;
      /** @description Uses granted (approved). */
      uses: number;
      /** @description Uses spent. */
      used: number;
      /** @description An approved approval may be used until this instant. */
      usableUntil: string | null;
    };
    ApprovalList: {
      approvals: components['schemas']['Approval'][];
    };
    /** @description Approve exactly the request of a pending approval. */
    ApproveRequest: {
      reason: string;
      /** @description Times the exact request may be forwarded (default approvals.defaultUses). */
      uses?: number;
      /** @description How long it may be used, seconds (default approvals.defaultTtlSeconds). */
      ttlSeconds?: number;
    };
    /** @description Deny the request of a pending approval. */
    DenyRequest: {
      reason: string;
    };
    /** @description An allow rule a person gave one session for a limited time; deny and ask rules still win. */
    Grant: {
      id: string;
      host: string;
      path: string;
      method: string;
      reason: string;
      grantedBy: string;
      /** Format: date-time */
      grantedAt: string;
      /**
       * Format: date-time
       * @description The gateways stop honouring the grant at this instant.
       */
      expiresAt: string;
    };
    /** @description Grant a session an allow rule for a limited time. */
    GrantRequest: {
      /** @description The rule granted, with the policy's pattern syntax. */
      rule: {
        /** @description Host pattern, as in policy.csv (`forum.test`, `*.forum.test`). */
        host: string;
        /** @description Path pattern, as in policy.csv (`/comments`, `/posts/:id`, `/a/*`). */
        path: string;
        /** @description Method or `*`, as in policy.csv. */
        method: string;
      };
      /** @description How long the grant lasts, seconds. */
      ttlSeconds: number;
      /** @description Why (recorded). */
      reason: string;
    };
    Health: {
      /** @constant */
      status: 'ok';
    };
    Readiness: {
      ready: boolean;
      /** @description Why the service is not ready; empty when ready. */
      reasons: string[];
    };
    /** @description RFC 9457 problem details, served as application/problem+json. */
    Problem: {
      /** @description `urn:airlock:error:<code>`; see docs/errors.md. */
      type: string;
      title: string;
      status: number;
      detail: string;
      /** @description Stable error code (docs/errors.md). */
      code: string;
      /** @description For 400: the offending field path (`command.0`, `env.HTTP_PROXY`, `(body)`). */
      field?: string;
    };
  };
  responses: {
    /** @description Invalid body or parameter; `field` names the offending path. */
    BadRequest: {
      headers: {
        [name: string]: unknown;
      };
      content: {
        'application/problem+json': components['schemas']['Problem'];
      };
    };
    /** @description Missing or invalid bearer token. */
    Unauthorized: {
      headers: {
        [name: string]: unknown;
      };
      content: {
        'application/problem+json': components['schemas']['Problem'];
      };
    };
    /** @description The caller may not do this: the policy has management rules (airlock.api) and none allows this operation on sessions of this role; detail names the operation. */
    Forbidden: {
      headers: {
        [name: string]: unknown;
      };
      content: {
        'application/problem+json': components['schemas']['Problem'];
      };
    };
    /** @description No such session. */
    NotFound: {
      headers: {
        [name: string]: unknown;
      };
      content: {
        'application/problem+json': components['schemas']['Problem'];
      };
    };
    /** @description The session is not in a state that allows this. */
    Conflict: {
      headers: {
        [name: string]: unknown;
      };
      content: {
        'application/problem+json': components['schemas']['Problem'];
      };
    };
    /** @description Body larger than 1048576 bytes. */
    PayloadTooLarge: {
      headers: {
        [name: string]: unknown;
      };
      content: {
        'application/problem+json': components['schemas']['Problem'];
      };
    };
    /** @description Body is not application/json. */
    UnsupportedMediaType: {
      headers: {
        [name: string]: unknown;
      };
      content: {
        'application/problem+json': components['schemas']['Problem'];
      };
    };
    /** @description The role is not defined by the loaded policy. */
    UnknownRole: {
      headers: {
        [name: string]: unknown;
      };
      content: {
        'application/problem+json': components['schemas']['Problem'];
      };
    };
    /** @description Unexpected failure; see the server log under X-Request-Id. */
    InternalError: {
      headers: {
        [name: string]: unknown;
      };
      content: {
        'application/problem+json': components['schemas']['Problem'];
      };
    };
    /** @description The container runtime failed; detail carries the runtime's message. */
    RuntimeFailed: {
      headers: {
        [name: string]: unknown;
      };
      content: {
        'application/problem+json': components['schemas']['Problem'];
      };
    };
    /** @description The egress gateway could not be reached or updated, or no valid policy is loaded (nothing can be authorized); on session create also AIRLOCK_ISOLATION_FAILED: the isolation self-test refused the new sandbox. */
    GatewayUnavailable: {
      headers: {
        [name: string]: unknown;
      };
      content: {
        'application/problem+json': components['schemas']['Problem'];
      };
    };
    /** @description The command did not finish within timeoutSeconds. */
    ExecTimeout: {
      headers: {
        [name: string]: unknown;
      };
      content: {
        'application/problem+json': components['schemas']['Problem'];
      };
    };
  };
  parameters: {
    /** @description Session id. */
    SessionId: string;
  };
  requestBodies: never;
  headers: never;
  pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
  listSessions: {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description The sessions the caller may read. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['SessionList'];
        };
      };
      401: components['responses']['Unauthorized'];
      500: components['responses']['InternalError'];
      503: components['responses']['GatewayUnavailable'];
    };
  };
  createSession: {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    requestBody: {
      content: {
        'application/json': components['schemas']['CreateSessionRequest'];
      };
    };
    responses: {
      /** @description Created. */
      201: {
        headers: {
          /** @description URL of the new session. */
          Location?: string;
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['Session'];
        };
      };
      400: components['responses']['BadRequest'];
      401: components['responses']['Unauthorized'];
      403: components['responses']['Forbidden'];
      413: components['responses']['PayloadTooLarge'];
      415: components['responses']['UnsupportedMediaType'];
      422: components['responses']['UnknownRole'];
      500: components['responses']['InternalError'];
      502: components['responses']['RuntimeFailed'];
      503: components['responses']['GatewayUnavailable'];
    };
  };
  getSession: {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description Session id. */
        id: components['parameters']['SessionId'];
      };
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description The session. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['Session'];
        };
      };
      400: components['responses']['BadRequest'];
      401: components['responses']['Unauthorized'];
      403: components['responses']['Forbidden'];
      404: components['responses']['NotFound'];
      500: components['responses']['InternalError'];
      503: components['responses']['GatewayUnavailable'];
    };
  };
  deleteSession: {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description Session id. */
        id: components['parameters']['SessionId'];
      };
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description Removed. */
      204: {
        headers: {
          [name: string]: unknown;
        };
        content?: never;
      };
      400: components['responses']['BadRequest'];
      401: components['responses']['Unauthorized'];
      403: components['responses']['Forbidden'];
      404: components['responses']['NotFound'];
      500: components['responses']['InternalError'];
      502: components['responses']['RuntimeFailed'];
      503: components['responses']['GatewayUnavailable'];
    };
  };
  execInSession: {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description Session id. */
        id: components['parameters']['SessionId'];
      };
      cookie?: never;
    };
    requestBody: {
      content: {
        'application/json': components['schemas']['ExecRequest'];
      };
    };
    responses: {
      /** @description The command finished (any exit code). */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['ExecResult'];
        };
      };
      400: components['responses']['BadRequest'];
      401: components['responses']['Unauthorized'];
      403: components['responses']['Forbidden'];
      404: components['responses']['NotFound'];
      409: components['responses']['Conflict'];
      413: components['responses']['PayloadTooLarge'];
      415: components['responses']['UnsupportedMediaType'];
      500: components['responses']['InternalError'];
      502: components['responses']['RuntimeFailed'];
      503: components['responses']['GatewayUnavailable'];
      504: components['responses']['ExecTimeout'];
    };
  };
  getSessionAudit: {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description Session id. */
        id: components['parameters']['SessionId'];
      };
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description The audit events. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['AuditEventList'];
        };
      };
      400: components['responses']['BadRequest'];
      401: components['responses']['Unauthorized'];
      403: components['responses']['Forbidden'];
      404: components['responses']['NotFound'];
      500: components['responses']['InternalError'];
      503: components['responses']['GatewayUnavailable'];
    };
  };
  getPolicy: {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description The policy status. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['PolicyStatus'];
        };
      };
      401: components['responses']['Unauthorized'];
      500: components['responses']['InternalError'];
    };
  };
  listCredentials: {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description The credentials. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['CredentialList'];
        };
      };
      401: components['responses']['Unauthorized'];
      500: components['responses']['InternalError'];
    };
  };
  streamEvents: {
    parameters: {
      query?: {
        /** @description Only this session; 404/403 before the stream starts; event `end` when it has ended. */
        sessionId?: string;
      };
      header?: never;
      path?: never;
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description The stream. Each frame is `event: <event>` and one `data:` line with `data` as JSON (StreamEvent); a `: keepalive` comment every 15 s. A client leaving more than 4 MiB unread is disconnected. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'text/event-stream': components['schemas']['StreamEvent'];
        };
      };
      400: components['responses']['BadRequest'];
      401: components['responses']['Unauthorized'];
      403: components['responses']['Forbidden'];
      404: components['responses']['NotFound'];
      500: components['responses']['InternalError'];
      503: components['responses']['GatewayUnavailable'];
    };
  };
  grantSession: {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description Session id. */
        id: components['parameters']['SessionId'];
      };
      cookie?: never;
    };
    requestBody: {
      content: {
        'application/json': components['schemas']['GrantRequest'];
      };
    };
    responses: {
      /** @description The grant. */
      201: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['Grant'];
        };
      };
      400: components['responses']['BadRequest'];
      401: components['responses']['Unauthorized'];
      403: components['responses']['Forbidden'];
      404: components['responses']['NotFound'];
      409: components['responses']['Conflict'];
      500: components['responses']['InternalError'];
      503: components['responses']['GatewayUnavailable'];
    };
  };
  listApprovals: {
    parameters: {
      query?: {
        status?: 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'used';
        sessionId?: string;
      };
      header?: never;
      path?: never;
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description The approvals. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['ApprovalList'];
        };
      };
      400: components['responses']['BadRequest'];
      401: components['responses']['Unauthorized'];
      500: components['responses']['InternalError'];
    };
  };
  streamApprovals: {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description The stream; `: keepalive` every 15 s. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'text/event-stream': components['schemas']['Approval'];
        };
      };
      401: components['responses']['Unauthorized'];
      500: components['responses']['InternalError'];
    };
  };
  getApproval: {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description An approval id: `ap-` and 16 hex digits. */
        approvalId: string;
      };
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description The approval. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['Approval'];
        };
      };
      400: components['responses']['BadRequest'];
      401: components['responses']['Unauthorized'];
      403: components['responses']['Forbidden'];
      404: components['responses']['NotFound'];
      500: components['responses']['InternalError'];
    };
  };
  approve: {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description An approval id: `ap-` and 16 hex digits. */
        approvalId: string;
      };
      cookie?: never;
    };
    requestBody: {
      content: {
        'application/json': components['schemas']['ApproveRequest'];
      };
    };
    responses: {
      /** @description The approved approval. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['Approval'];
        };
      };
      400: components['responses']['BadRequest'];
      401: components['responses']['Unauthorized'];
      403: components['responses']['Forbidden'];
      404: components['responses']['NotFound'];
      409: components['responses']['Conflict'];
      500: components['responses']['InternalError'];
    };
  };
  denyApproval: {
    parameters: {
      query?: never;
      header?: never;
      path: {
        /** @description An approval id: `ap-` and 16 hex digits. */
        approvalId: string;
      };
      cookie?: never;
    };
    requestBody: {
      content: {
        'application/json': components['schemas']['DenyRequest'];
      };
    };
    responses: {
      /** @description The denied approval. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['Approval'];
        };
      };
      400: components['responses']['BadRequest'];
      401: components['responses']['Unauthorized'];
      403: components['responses']['Forbidden'];
      404: components['responses']['NotFound'];
      409: components['responses']['Conflict'];
      500: components['responses']['InternalError'];
    };
  };
  health: {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description Alive. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['Health'];
        };
      };
    };
  };
  ready: {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description Ready. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['Readiness'];
        };
      };
      /** @description Not ready; `reasons` says why. */
      503: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': components['schemas']['Readiness'];
        };
      };
    };
  };
  metrics: {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description Metrics. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'text/plain': string;
        };
      };
    };
  };
  openapi: {
    parameters: {
      query?: never;
      header?: never;
      path?: never;
      cookie?: never;
    };
    requestBody?: never;
    responses: {
      /** @description OpenAPI 3.1 document. */
      200: {
        headers: {
          [name: string]: unknown;
        };
        content: {
          'application/json': Record<string, never>;
        };
      };
    };
  };
}
