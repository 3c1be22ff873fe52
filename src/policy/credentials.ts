/**
 * Credential definitions of the policy (docs/credentials.md): an optional `credentials.yaml` beside
 * policy.csv, reviewed and versioned with it, loaded into the same snapshot (the version hash covers
 * it) and checked by `airlock policy check`. A definition says which roles' calls the gateway adds a
 * secret to, where (bindings: host, path and method patterns with the rules' semantics), how (a
 * header or a query parameter) and where the gateway reads the value (a file or an environment
 * variable of the gateway process). The file never holds a secret value.
 *
 * ```yaml
 * version: 1
 * credentials:
 *   - name: github                       # named in audit events and GET /v1/credentials
 *     roles: [analyst]                    # the session's own role (inherited roles do not count)
 *     bindings:                           # first matching binding of the first credential wins
 *       - host: api.github.com
 *         path: /repos/*                  # default /*
 *         methods: [GET, POST]            # default ["*"] (every method but CONNECT, WEBSOCKET and MCP)
 *     apply: { type: bearer }             # bearer | basic | header (name) | query (name)
 *     source: { file: /run/airlock/credentials/github-token }   # or { env: GITHUB_TOKEN }
 * ```
 *
 * This module only parses, validates and matches; the gateway reads the values, injects them and
 * stops known values from leaving anywhere else (src/gateway/credentials.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { PolicyError } from '../errors.js';
import { HOP_BY_HOP_HEADERS } from '../request/headers.js';
import { dottedPath } from '../validation.js';
import { parsePolicyYaml } from './yaml-file.js';
import { DYNAMIC_APPLY_SCHEMAS, secretRefSourceSchema, sourceKeyOf } from './credential-kinds.js';
import {
  matchHostPattern,
  matchMethodPattern,
  matchPathPattern,
  parseHostPattern,
  parseMethodPattern,
  parsePathPattern,
  PatternError,
  type HostPattern,
  type PathPattern,
} from './matchers.js';

/** The optional credentials file of a policy directory. */
export const CREDENTIALS_FILE = 'credentials.yaml';

/**
 * Headers a credential may not be applied as: framing, hop-by-hop and proxy headers, which the
 * gateway strips or owns (src/gateway/headers.ts), and its own `x-airlock-*`.
 */
const RESERVED_HEADERS: ReadonlySet<string> = new Set([...HOP_BY_HOP_HEADERS, 'content-length', 'cookie']);

const headerName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/, 'expected a header name of letters, digits and "-"')
  .transform((s) => s.toLowerCase())
  .refine((s) => !RESERVED_HEADERS.has(s) && !s.startsWith('x-airlock-'), {
    message: 'this header is owned by the gateway or by HTTP framing; name another header',
  });

const applySchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('bearer') }),
  z.strictObject({ type: z.literal('basic') }),
  z.strictObject({ type: z.literal('header'), name: headerName }),
  z.strictObject({
    type: z.literal('query'),
    name: z.string().regex(/^[A-Za-z0-9_.~-]{1,64}$/, 'expected a parameter name of [A-Za-z0-9_.~-]'),
  }),
  ...DYNAMIC_APPLY_SCHEMAS,
]);

const sourceSchema = z.union([
  z.strictObject({
    file: z
      .string()
      .min(2)
      .refine((s) => s.startsWith('/'), { message: 'expected an absolute path' }),
  }),
  z.strictObject({
    env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'expected an environment variable name'),
  }),
  secretRefSourceSchema,
]);

/**
 * Variables a placeholder may not be named after: the proxy settings and the trust variables the
 * runtime sets in every sandbox, and the dynamic linker's.
 */
const RESERVED_ENV =
  /^(https?_proxy|no_proxy|all_proxy|ssl_cert_file|ssl_cert_dir|node_extra_ca_certs|requests_ca_bundle|curl_ca_bundle|git_ssl_cainfo|home|path|ld_.*|airlock_.*)$/i;

const placeholderSchema = z.strictObject({
  env: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'expected an environment variable name')
    .refine((s) => !RESERVED_ENV.test(s), {
      message: 'this variable is set by the runtime in every sandbox; name another variable',
    }),
});

const bindingSchema = z.strictObject({
  host: z.string().min(1),
  path: z.string().min(1).default('/*'),
  methods: z.array(z.string().min(1)).min(1).default(['*']),
});

const credentialSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected a name of letters, digits, "_", "." or "-"'),
  roles: z.array(z.string().min(1)).min(1),
  bindings: z.array(bindingSchema).min(1),
  apply: applySchema,
  source: sourceSchema,
  placeholder: placeholderSchema.optional(),
});

const fileSchema = z
  .strictObject({
    version: z.literal(1),
    credentials: z.array(credentialSchema),
  })
  .superRefine((f, ctx) => {
    const seen = new Set<string>();
    f.credentials.forEach((c, i) => {
      if (seen.has(c.name))
        ctx.addIssue({
          code: 'custom',
          message: `duplicate credential name "${c.name}"`,
          path: ['credentials', i, 'name'],
        });
      seen.add(c.name);
    });
    const vars = new Set<string>();
    f.credentials.forEach((c, i) => {
      const v = c.placeholder?.env;
      if (v === undefined) return;
      if (vars.has(v))
        ctx.addIssue({
          code: 'custom',
          message: `placeholder variable "${v}" is already used by another credential`,
          path: ['credentials', i, 'placeholder', 'env'],
        });
      vars.add(v);
    });
  });

/** How a credential is applied to a request. */
export type CredentialApply = z.output<typeof applySchema>;
/** Where the gateway reads a credential's value: a file (watched) or its own environment. */
export type CredentialSource = z.output<typeof sourceSchema>;

/** One binding, parsed: the region of requests that get the credential. */
export interface CredentialBinding {
  /** The binding as written (`host`, `path`, `methods`). */
  readonly host: string;
  readonly path: string;
  readonly methods: readonly string[];
  readonly hostPattern: HostPattern;
  readonly pathPattern: PathPattern;
  /** 1-based line of the binding in credentials.yaml. */
  readonly line: number;
}

/** One credential definition, validated (never a value). */
export interface CredentialDefinition {
  readonly name: string;
  readonly roles: readonly string[];
  readonly bindings: readonly CredentialBinding[];
  readonly apply: CredentialApply;
  readonly source: CredentialSource;
  /**
   * The sandbox variable that carries a per-session placeholder for the credential (tools that
   * insist on a token get one; the gateway swaps it where a binding applies), or null.
   */
  readonly placeholder: { readonly env: string } | null;
  /** 1-based line of the definition in credentials.yaml. */
  readonly line: number;
}

/** A credential that applies to a request: the definition and the binding that matched. */
export interface CredentialMatch {
  readonly credential: CredentialDefinition;
  readonly binding: CredentialBinding;
}

/**
 * A credential's version: the first 12 hex digits of SHA-256 over a fixed prefix and the value. It
 * tells rotations apart in audit events and `GET /v1/credentials`; it is not the value (but, like any
 * hash, lets a guessed low-entropy value be confirmed: use generated tokens).
 */
export function valueVersion(value: string): string {
  return createHash('sha256').update('airlock-credential\0').update(value).digest('hex').slice(0, 12);
}

/**
 * A new placeholder for credential `name`: `airlock-ph-<name>-<32 hex>` (128 random bits), the
 * value a session's sandbox gets in the credential's `placeholder.env` variable.
 */
export function newPlaceholder(name: string): string {
  return `airlock-ph-${name}-${randomBytes(16).toString('hex')}`;
}

/** The source's key (`file:/path`, `env:NAME`): definitions with the same key share one value. */
export function sourceKey(s: CredentialSource): string {
  return sourceKeyOf(s);
}

/** Where the credential goes: the lowercase header name, or `?NAME` for a query parameter. */
export function appliedAs(a: CredentialApply): string {
  switch (a.type) {
    case 'bearer':
    case 'basic':
      return 'authorization';
    case 'header':
      return a.name;
    case 'query':
      return `?${a.name}`;
    default:
      return 'authorization'; // aws-sigv4, oauth2-*: credential-kinds.ts
  }
}

/** The credentials of one policy snapshot, indexed by role for the request path. */
export class CredentialSet {
  readonly definitions: readonly CredentialDefinition[];
  /** role → (credential, binding) in file order. */
  readonly #byRole: Map<string, CredentialMatch[]>;

  constructor(definitions: readonly CredentialDefinition[]) {
    this.definitions = Object.freeze([...definitions]);
    this.#byRole = new Map();
    for (const credential of definitions) {
      for (const role of new Set(credential.roles)) {
        const list = this.#byRole.get(role) ?? [];
        for (const binding of credential.bindings) list.push({ credential, binding });
        this.#byRole.set(role, list);
      }
    }
  }

  get size(): number {
    return this.definitions.length;
  }

  /**
   * The credential a call of `role` gets: the first binding, in file order, of a credential listing
   * the role whose host (policy host), path (normalised) and method patterns match; null otherwise.
   * Only the call's own role counts (no inheritance). Allocation-free.
   */
  match(role: string, host: string, path: string, method: string): CredentialMatch | null {
    const list = this.#byRole.get(role);
    if (!list) return null;
    for (const m of list) {
      const b = m.binding;
      if (!matchHostPattern(b.hostPattern, host)) continue;
      if (!matchPathPattern(b.pathPattern, path)) continue;
      let methodOk = false;
      for (const p of b.methods) {
        if (matchMethodPattern(p, method)) {
          methodOk = true;
          break;
        }
      }
      if (methodOk) return m;
    }
    return null;
  }
}

/** A policy without credentials.yaml. */
export const NO_CREDENTIALS = new CredentialSet([]);

/**
 * Parses and validates credentials.yaml.
 * @param roles the roles the policy defines: a credential naming another role is an error.
 * @throws PolicyError located at `credentials.yaml:LINE`, naming the field
 *   (`credentials.0.bindings.1.path: ...`).
 */
export function parseCredentials(text: string, roles?: ReadonlySet<string>): CredentialSet {
  const file = parsePolicyYaml(text, CREDENTIALS_FILE, fileSchema, '"version: 1" and a "credentials" list');
  const at = file.at;
  const definitions: CredentialDefinition[] = file.data.credentials.map((c, i) => {
    if (roles) {
      c.roles.forEach((role, k) => {
        if (!roles.has(role)) {
          throw new PolicyError(
            `${dottedPath(['credentials', i, 'roles', k])}: role "${role}" is not defined by policy.csv`,
            at(['credentials', i, 'roles', k]),
          );
        }
      });
    }
    const bindings = c.bindings.map((b, j): CredentialBinding => {
      const where = (field: string): readonly (string | number)[] => ['credentials', i, 'bindings', j, field];
      const parse = <T>(field: string, fn: () => T): T => {
        try {
          return fn();
        } catch (err) {
          if (!(err instanceof PatternError)) throw err;
          throw new PolicyError(`${dottedPath(where(field))}: ${err.message}`, at(where(field)));
        }
      };
      const hostPattern = parse('host', () => parseHostPattern(b.host));
      const pathPattern = parse('path', () => parsePathPattern(b.path));
      const methods = parse('methods', () => b.methods.map((m) => parseMethodPattern(m)));
      return {
        host: b.host,
        path: b.path,
        methods,
        hostPattern,
        pathPattern,
        line: file.line(['credentials', i, 'bindings', j]) ?? 1,
      };
    });
    return {
      name: c.name,
      roles: c.roles,
      bindings,
      apply: c.apply,
      source: c.source,
      placeholder: c.placeholder ?? null,
      line: file.line(['credentials', i]) ?? 1,
    };
  });
  return new CredentialSet(definitions);
}
