/**
 * The credential kinds whose header the gateway computes per request, rather than copying a stored
 * value (docs/credentials.md "S3 and other SigV4 APIs", "OAuth2"), and the Kubernetes Secret value
 * source. credentials.ts adds these schemas to credentials.yaml's `apply` and `source` unions.
 *
 * | `apply.type` | the value (from `source`) | the gateway sets |
 * | --- | --- | --- |
 * | `aws-sigv4` | `ACCESS_KEY_ID:SECRET_ACCESS_KEY` or `ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN` | `Authorization: AWS4-HMAC-SHA256 …`, `x-amz-date`, `x-amz-content-sha256` (and `x-amz-security-token`) over the forwarded request |
 * | `oauth2-client-credentials` | the client secret | `Authorization: Bearer <access token>` fetched from `tokenUrl` |
 * | `oauth2-refresh-token` | the refresh token (`clientSecret` names a second source for a confidential client) | `Authorization: Bearer <access token>` fetched from `tokenUrl` |
 */
import { z } from 'zod';

/** A Kubernetes Secret in the gateway's namespace, by name and key (a DNS-1123 subdomain; a data key). */
export const secretRefSourceSchema = z.strictObject({
  secretRef: z.strictObject({
    name: z
      .string()
      .regex(
        /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/,
        'expected a Secret name (lowercase letters, digits, "-" and ".")',
      ),
    key: z.string().regex(/^[-._a-zA-Z0-9]{1,253}$/, 'expected a Secret data key of [-._a-zA-Z0-9]'),
  }),
});

/** The same value sources as `source` (file, env, secretRef), for a second secret of a definition. */
const secondSourceSchema = z.union([
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

const awsName = z.string().regex(/^[a-z0-9-]{1,32}$/, 'expected lowercase letters, digits and "-"');

/** An absolute http(s) URL without userinfo or fragment: the token endpoint the gateway calls. */
const tokenUrl = z.string().refine(
  (s) => {
    try {
      const u = new URL(s);
      return (
        (u.protocol === 'https:' || u.protocol === 'http:') &&
        u.username === '' &&
        u.password === '' &&
        u.hash === '' &&
        !s.includes('#')
      );
    } catch {
      return false;
    }
  },
  { message: 'expected an absolute http:// or https:// URL without userinfo or fragment' },
);

/** OAuth2 scope: space-separated tokens of visible ASCII but `"` and `\` (RFC 6749 3.3). */
const scope = z
  .string()
  .regex(/^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$/, 'expected space-separated scope tokens');

/** How the client authenticates at the token endpoint (RFC 6749 2.3.1): HTTP Basic, or in the form. */
const clientAuth = z.enum(['basic', 'post']).default('basic');

/** `apply` kinds computed per request by the gateway (src/gateway/sigv4.ts, src/gateway/oauth2.ts). */
export const DYNAMIC_APPLY_SCHEMAS = [
  z.strictObject({
    type: z.literal('aws-sigv4'),
    /** Signing region, e.g. `us-east-1`. */
    region: awsName,
    /** Signing service name. @default "s3" */
    service: awsName.default('s3'),
  }),
  z.strictObject({
    type: z.literal('oauth2-client-credentials'),
    tokenUrl,
    clientId: z.string().min(1).max(256),
    scope: scope.optional(),
    /** RFC 8707 resource indicator sent with the grant. */
    resource: z.string().min(1).max(2048).optional(),
    clientAuth,
  }),
  z.strictObject({
    type: z.literal('oauth2-refresh-token'),
    tokenUrl,
    clientId: z.string().min(1).max(256),
    scope: scope.optional(),
    resource: z.string().min(1).max(2048).optional(),
    /** Absent: a public client (only `client_id` is sent). */
    clientSecret: secondSourceSchema.optional(),
    clientAuth,
  }),
] as const;

type Dynamic = z.output<(typeof DYNAMIC_APPLY_SCHEMAS)[number]>;
/** `apply` of a SigV4 credential. */
export type SigV4Apply = Extract<Dynamic, { type: 'aws-sigv4' }>;
/** `apply` of an OAuth2 credential (either grant). */
export type OAuth2Apply = Extract<Dynamic, { type: 'oauth2-client-credentials' | 'oauth2-refresh-token' }>;
/** A value source (`source`, `clientSecret`). */
export type ValueSource = z.output<typeof secondSourceSchema>;

/** Whether an `apply` is computed per request (SigV4, OAuth2) rather than copied from the value. */
export function isDynamicApply(a: { type: string }): a is Dynamic {
  return (
    a.type === 'aws-sigv4' || a.type === 'oauth2-client-credentials' || a.type === 'oauth2-refresh-token'
  );
}

/** The source's key (`file:/path`, `env:NAME`, `secret:NAME/KEY`): equal keys share one value. */
export function sourceKeyOf(s: ValueSource): string {
  if ('file' in s) return `file:${s.file}`;
  if ('env' in s) return `env:${s.env}`;
  return `secret:${s.secretRef.name}/${s.secretRef.key}`;
}

/** Every value source a definition reads: its `source`, and an OAuth2 client's `clientSecret`. */
export function sourcesOf(def: { source: ValueSource; apply: { type: string } }): ValueSource[] {
  const a = def.apply as Partial<{ clientSecret: ValueSource }>;
  return a.clientSecret !== undefined ? [def.source, a.clientSecret] : [def.source];
}

/** The Secret names a set of definitions reads (the chart's RBAC must list exactly these). */
export function secretNamesOf(defs: readonly { source: ValueSource; apply: { type: string } }[]): string[] {
  const names = new Set<string>();
  for (const d of defs) for (const s of sourcesOf(d)) if ('secretRef' in s) names.add(s.secretRef.name);
  return [...names].sort();
}
