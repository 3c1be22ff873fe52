/**
 * Injection for the credential kinds computed per request (src/policy/credential-kinds.ts): AWS
 * SigV4 (sigv4.ts) signs the forwarded request with the held access key; OAuth2 (oauth2.ts) puts the
 * access token the gateway fetched into `Authorization: Bearer`. The vault (credentials.ts) holds the
 * values and calls {@link injectDynamic} after the allow decision (decide.ts step 7).
 */
import type { CredentialDefinition, CredentialSource } from '../policy/credentials.js';
import { sourcesOf, type OAuth2Apply } from '../policy/credential-kinds.js';
import type { InjectedCredential } from './credentials.js';
import type { OAuth2Tokens } from './oauth2.js';
import {
  parseAwsKeys,
  SIGV4_OWNED_HEADERS,
  SigV4RequestError,
  type AwsKeys,
  type SigV4Signers,
} from './sigv4.js';

/** The forwarded request, as the signature and the audit need it. */
export interface DynamicRequest {
  readonly method: string;
  /** The Host header sent upstream (`host` or `host:port`). */
  readonly authority: string;
  /** The normalised path as forwarded. */
  readonly path: string;
  /** `?query` as forwarded, or `''`. */
  readonly query: string;
  /** The sandbox's header list `[name, value, …]`. */
  readonly rawHeaders: readonly string[];
}

/** The part of an exchange {@link dynamicRequest} reads. */
interface ExchangeTargetView {
  readonly method: string;
  readonly scheme: 'http' | 'https';
  readonly host: string;
  readonly port: number;
  readonly path: string;
}

/**
 * The forwarded request of an exchange: its method, the authority sent upstream (the port only when
 * it is not the scheme's default, IPv6 in brackets, as target.ts writes it), path, and the query as
 * received (from the raw request target: forwarded unchanged, target.ts).
 */
export function dynamicRequest(
  x: ExchangeTargetView,
  req: { readonly url: string; readonly rawHeaders: readonly string[] },
): DynamicRequest {
  const q = req.url.indexOf('?');
  const query = q < 0 ? '' : req.url.slice(q);
  const host = x.host.includes(':') ? `[${x.host}]` : x.host;
  const authority = x.port === (x.scheme === 'https' ? 443 : 80) ? host : `${host}:${x.port}`;
  return { method: x.method, authority, path: x.path, query, rawHeaders: req.rawHeaders };
}

/** What {@link injectDynamic} gives the request. */
export type DynamicInjection =
  | { readonly kind: 'inject'; readonly credential: InjectedCredential }
  /** No value, or no token: 503 `credential_unavailable` with this reason; nothing is sent. */
  | { readonly kind: 'unavailable'; readonly reason: string }
  /** The request cannot be signed as sent (a SigV4 payload hash or presigned expiry it cannot sign): 400 `bad_request`. */
  | { readonly kind: 'bad_request'; readonly detail: string };

/** A held value and its version. */
interface Held {
  readonly value: string;
  readonly version: string;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Parsed access keys per held value (a value object lives as long as its version is held). */
const parsedKeys = new WeakMap<Held, AwsKeys | null>();

function keysOf(held: Held): AwsKeys | null {
  let k = parsedKeys.get(held);
  if (k === undefined) {
    k = parseAwsKeys(held.value);
    parsedKeys.set(held, k);
  }
  return k;
}

/**
 * Computes the headers for an allowed request bound to `def` (kind `aws-sigv4` or `oauth2-*`):
 * synchronously for SigV4 (the signature is computed here, no I/O), a promise for OAuth2 (the token
 * may have to be fetched).
 * @param valueOf the vault's value of a source (null: unavailable).
 */
export function injectDynamic(
  def: CredentialDefinition,
  req: DynamicRequest,
  valueOf: (s: CredentialSource) => Held | null,
  signers: SigV4Signers,
  oauth2: OAuth2Tokens | undefined,
): DynamicInjection | Promise<DynamicInjection> {
  const a = def.apply;
  const held = valueOf(def.source);
  if (!held) return { kind: 'unavailable', reason: 'its value is not available at the gateway' };
  if (a.type === 'aws-sigv4') {
    const keys = keysOf(held);
    if (!keys)
      return {
        kind: 'unavailable',
        reason: 'its value is not ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]',
      };
    try {
      const sig = signers.sign(req, keys, a);
      const credential: Mutable<InjectedCredential> = {
        name: def.name,
        version: held.version,
        header: sig.authorization === null ? null : 'authorization',
        query: null,
        value: sig.authorization ?? '',
        headers: sig.headers,
        dropHeaders: SIGV4_OWNED_HEADERS,
      };
      if (sig.query !== null) credential.replaceQuery = sig.query; // presigned: signed in the query
      if (sig.chunks !== null) credential.body = sig.chunks; // aws-chunked: chunk signatures replaced
      return { kind: 'inject', credential };
    } catch (err) {
      if (err instanceof SigV4RequestError) return { kind: 'bad_request', detail: err.message };
      throw err;
    }
  }
  if (a.type === 'oauth2-client-credentials' || a.type === 'oauth2-refresh-token')
    return injectOAuth2(def, a, held, valueOf, oauth2);
  return { kind: 'unavailable', reason: `apply type ${a.type} is not computed per request` };
}

async function injectOAuth2(
  def: CredentialDefinition,
  a: OAuth2Apply,
  held: Held,
  valueOf: (s: CredentialSource) => Held | null,
  oauth2: OAuth2Tokens | undefined,
): Promise<DynamicInjection> {
  if (!oauth2) return { kind: 'unavailable', reason: 'this gateway fetches no OAuth2 tokens' };
  let clientSecret: Held | null = null;
  if (a.type === 'oauth2-refresh-token' && a.clientSecret !== undefined) {
    clientSecret = valueOf(a.clientSecret);
    if (!clientSecret)
      return { kind: 'unavailable', reason: 'its client secret is not available at the gateway' };
  }
  const t = await oauth2.token({
    name: def.name,
    apply: a,
    secret: held.value,
    clientSecret: clientSecret?.value ?? null,
    version: clientSecret ? `${held.version}.${clientSecret.version}` : held.version,
  });
  if (!t.ok) return { kind: 'unavailable', reason: t.reason };
  return {
    kind: 'inject',
    credential: {
      name: def.name,
      version: held.version,
      header: 'authorization',
      query: null,
      value: `Bearer ${t.accessToken}`,
    },
  };
}

/**
 * Parts of a held value that are secrets on their own, searched for by the leak stop besides the
 * whole value: a SigV4 value's secret access key and session token.
 */
export function secretPartsOf(def: CredentialDefinition, value: string): string[] {
  if (def.apply.type !== 'aws-sigv4') return [];
  const keys = parseAwsKeys(value);
  if (!keys) return [];
  return keys.sessionToken !== undefined ? [keys.secretAccessKey, keys.sessionToken] : [keys.secretAccessKey];
}

/** Every source a definition reads (re-exported for the vault). */
export { sourcesOf };
