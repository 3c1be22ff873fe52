/**
 * MCP endpoints of the policy (docs/mcp.md): an optional `mcp.yaml` beside policy.csv, reviewed and
 * versioned with it, loaded into the same snapshot (the version hash covers it). It names the
 * endpoints where the gateway reads the JSON-RPC messages of the Model Context Protocol (Streamable
 * HTTP transport) and decides each call on its own; the rules stay Casbin RBAC on
 * (role, host, path, method):
 *
 * ```yaml
 * version: 1
 * endpoints:
 *   - name: github            # named in denials and audit events
 *     host: gh.example.com    # a policy host (name, or name:port for a port not the scheme's default)
 *     path: /mcp              # the endpoint's exact normalised path
 *     toolsList: filter       # default: tools/list answers without the tools the session may not call
 *     transport: streamable-http  # default; `sse` for the older HTTP+SSE transport (its POST path)
 * ```
 *
 * A `tools/call`, `resources/read` or `prompts/get` message to that endpoint is decided as method
 * {@link MCP_METHOD} on a virtual path under the endpoint ({@link mcpVirtualPath}):
 *
 * ```csv
 * p, analyst, gh.example.com, /mcp, POST, allow                           # the endpoint itself
 * p, analyst, gh.example.com, /mcp/tools/call/search_issues, MCP, allow
 * p, analyst, gh.example.com, /mcp/tools/call/create_issue, MCP, deny     # deny wins over any allow
 * ```
 *
 * Every other message (`initialize`, `ping`, `tools/list`, notifications, responses) needs only the
 * endpoint's own HTTP rule. `MCP` is a named-only method (matchers.ts): `*` never grants it.
 *
 * This module only parses and maps; the gateway reads the messages (src/gateway/mcp.ts).
 */
import { z } from 'zod';
import { isNormalizedPath } from '../request/normalize.js';
import { parsePolicyYaml } from './yaml-file.js';

/** The optional MCP endpoints file of a policy directory. */
export const MCP_FILE = 'mcp.yaml';

/** The method an MCP call is decided as (`p, role, host, /mcp/tools/call/NAME, MCP, allow`). */
export const MCP_METHOD = 'MCP';

/** The JSON-RPC methods decided one by one, and the virtual path segment of each. */
export const MCP_DECIDED_METHODS = {
  'tools/call': 'tools/call',
  'resources/read': 'resources/read',
  'prompts/get': 'prompts/get',
} as const satisfies Record<string, string>;

/** A JSON-RPC method decided on its own virtual path ({@link MCP_DECIDED_METHODS}). */
export type McpDecidedMethod = keyof typeof MCP_DECIDED_METHODS;

const endpointSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected a name of letters, digits, "_", "." or "-"'),
  host: z.string().regex(/^[a-z0-9.-]+(:\d{1,5})?$/, 'expected a lowercase policy host (name or name:port)'),
  path: z
    .string()
    .refine((p) => isNormalizedPath(p), 'expected a normalised absolute path such as /mcp')
    .refine((p) => p === '/' || !p.endsWith('/'), 'expected a path without a trailing slash'),
  /**
   * `filter` (default): `tools/list` answers reach the agent without the tools its session may not
   * call; `pass`: unchanged (calls are decided either way).
   */
  toolsList: z.enum(['filter', 'pass']).default('filter'),
  /**
   * `streamable-http` (default): answers come in the POST's response, so a denial is a JSON-RPC error
   * there (HTTP 200). `sse`: the older HTTP+SSE transport, whose answers travel on a separate SSE
   * stream and whose POSTs are answered 202: a denial is then HTTP 403 `egress_denied` (the SDK's
   * client rejects the call with it); `tools/list` answers are filtered and pinned on the stream
   * when `ssePath` names it.
   */
  transport: z.enum(['streamable-http', 'sse']).default('streamable-http'),
  /**
   * `transport: sse` only: the path of the server's SSE stream (`GET /sse`), on the same host. The
   * gateway reads the `tools/list` answers that travel on it (filtered and pinned like Streamable
   * HTTP answers). Unset: the stream is relayed as it is (calls are still decided on the POSTs).
   */
  ssePath: z
    .string()
    .refine((p) => isNormalizedPath(p), 'expected a normalised absolute path such as /sse')
    .optional(),
});

const fileSchema = z
  .strictObject({
    version: z.literal(1),
    endpoints: z.array(endpointSchema),
  })
  .superRefine((f, ctx) => {
    const names = new Set<string>();
    const places = new Set<string>();
    f.endpoints.forEach((e, i) => {
      if (names.has(e.name))
        ctx.addIssue({
          code: 'custom',
          message: `duplicate endpoint name "${e.name}"`,
          path: ['endpoints', i, 'name'],
        });
      const place = `${e.host} ${e.path}`;
      if (places.has(place))
        ctx.addIssue({
          code: 'custom',
          message: `endpoint ${e.host}${e.path} is declared twice`,
          path: ['endpoints', i, 'path'],
        });
      names.add(e.name);
      places.add(place);
      if (e.ssePath !== undefined && e.transport !== 'sse')
        ctx.addIssue({
          code: 'custom',
          message: 'ssePath is for transport: sse only (Streamable HTTP answers travel on the POST)',
          path: ['endpoints', i, 'ssePath'],
        });
    });
  });

/** One declared MCP endpoint. */
export type McpEndpoint = Readonly<z.output<typeof endpointSchema>>;

/** The MCP endpoints of one policy snapshot, indexed by policy host and path. */
export class McpEndpointSet {
  readonly endpoints: readonly McpEndpoint[];
  readonly #byPlace: ReadonlyMap<string, McpEndpoint>;

  readonly #byStream: ReadonlyMap<string, McpEndpoint>;

  constructor(endpoints: readonly McpEndpoint[]) {
    this.endpoints = Object.freeze([...endpoints]);
    this.#byPlace = new Map(endpoints.map((e) => [`${e.host} ${e.path}`, e]));
    this.#byStream = new Map(
      endpoints.filter((e) => e.ssePath !== undefined).map((e) => [`${e.host} ${e.ssePath}`, e]),
    );
  }

  /** The `transport: sse` endpoint whose SSE stream (`ssePath`) is at this host and path, or null. */
  matchStream(host: string, path: string): McpEndpoint | null {
    if (this.#byStream.size === 0) return null;
    return this.#byStream.get(`${host} ${path}`) ?? null;
  }

  get size(): number {
    return this.endpoints.length;
  }

  /** The endpoint declared at this policy host and exact normalised path, or null. */
  match(host: string, path: string): McpEndpoint | null {
    if (this.endpoints.length === 0) return null;
    return this.#byPlace.get(`${host} ${path}`) ?? null;
  }
}

/** A policy without mcp.yaml: no endpoint is read as MCP. */
export const NO_MCP = new McpEndpointSet([]);

/**
 * Parses and validates mcp.yaml.
 * @throws PolicyError located at `mcp.yaml:LINE`, naming the field (`endpoints.0.path`).
 */
export function parseMcp(text: string): McpEndpointSet {
  const file = parsePolicyYaml(text, MCP_FILE, fileSchema, '"version: 1" and an "endpoints" list');
  return new McpEndpointSet(file.data.endpoints);
}

/** Bytes kept as they are in a segment: ALPHA DIGIT `-` `.` `_` `~` (RFC 3986 unreserved). */
function isUnreservedByte(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) ||
    (b >= 0x61 && b <= 0x7a) ||
    (b >= 0x30 && b <= 0x39) ||
    b === 0x2d ||
    b === 0x2e ||
    b === 0x5f ||
    b === 0x7e
  );
}

const HEX = '0123456789ABCDEF';

/**
 * Encodes a tool name, prompt name or resource URI as ONE normalised path segment, injectively:
 * unreserved bytes (`A-Z a-z 0-9 - . _ ~`) stay as they are, `/` becomes `!` (a normalised path may
 * not carry `%2F`), and every other UTF-8 byte — `!` itself included — is percent-encoded with
 * uppercase hex. `search_issues` → `search_issues`; `repo://acme/app/README.md` →
 * `repo%3A!!acme!app!README.md`.
 * @returns the segment, or null when the name cannot be one: empty, only dots (`.`, `..`), or not
 *   well-formed Unicode (a lone surrogate would encode like U+FFFD: two names, one segment).
 */
export function mcpSegment(name: string): string | null {
  if (name.length === 0 || /^\.+$/.test(name) || /\p{Surrogate}/u.test(name)) return null;
  let out = '';
  for (const b of Buffer.from(name, 'utf8')) {
    if (isUnreservedByte(b)) out += String.fromCharCode(b);
    else if (b === 0x2f) out += '!';
    else out += `%${HEX[b >> 4]}${HEX[b & 15]}`;
  }
  return out;
}

/**
 * The virtual path an MCP call is decided on: the endpoint's path, the JSON-RPC method's path, and
 * the tool/prompt name or resource URI as one segment ({@link mcpSegment}):
 * `mcpVirtualPath('/mcp', 'tools/call', 'create_issue')` → `/mcp/tools/call/create_issue`.
 * @returns the path, or null when the name cannot be a segment or the path would be too long.
 */
export function mcpVirtualPath(endpointPath: string, method: McpDecidedMethod, name: string): string | null {
  const seg = mcpSegment(name);
  if (seg === null) return null;
  const base = endpointPath === '/' ? '' : endpointPath;
  const p = `${base}/${MCP_DECIDED_METHODS[method]}/${seg}`;
  return isNormalizedPath(p) ? p : null;
}
