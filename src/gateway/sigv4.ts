/**
 * AWS Signature Version 4 for credentials of `apply: { type: aws-sigv4 }` (docs/credentials.md "S3
 * and other SigV4 APIs"): the gateway signs the request it forwards, after the allow decision, with
 * the access key it holds. The signing itself is `@smithy/signature-v4` (the AWS SDK for
 * JavaScript v3's signer) over Node's SHA-256 and HMAC ({@link Sha256}); this module only says what
 * is signed.
 *
 * What is signed: the method, the path as forwarded (normalised, not re-encoded: S3 rules), the query
 * as forwarded, and the headers `host` (the authority sent upstream), `content-type`, `content-md5`
 * and every `x-amz-*` header the sandbox sent, except the ones the gateway owns: `authorization`,
 * `x-amz-date`, `x-amz-security-token`, `x-amz-content-sha256` are the gateway's (what the sandbox
 * sent under those names is dropped).
 *
 * The payload hash (`x-amz-content-sha256`): the body is streamed, never buffered for a hash, so
 * - absent → `UNSIGNED-PAYLOAD`;
 * - 64 hex digits, `UNSIGNED-PAYLOAD` or `STREAMING-UNSIGNED-PAYLOAD-TRAILER` → kept and signed
 *   (the server checks the body against a hash the sandbox claims: a wrong one is the server's 400,
 *   not a way around the signature);
 * - `STREAMING-AWS4-HMAC-SHA256-PAYLOAD…` / `STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD…` (aws-chunked
 *   bodies whose every chunk is signed with the sender's key) → refused: the gateway would have to
 *   re-sign each chunk of the body; clients can send unsigned payloads instead;
 * - anything else → refused.
 */
import {
  createHash,
  createHmac,
  createSecretKey,
  type Hash as NodeHash,
  type Hmac,
  type KeyObject,
} from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';

/**
 * SHA-256 / HMAC-SHA256 for the signer (the `Checksum` shape of `@smithy/hash-node`'s `Hash`), with
 * each HMAC key turned into a KeyObject once: Node 24 prepares a Buffer key on every `createHmac`
 * (~13 us), a KeyObject in ~3 us (bench/credentials-dynamic.mjs). The keys are the signer's own (the
 * secret access key, the derived daily signing key), held here as long as the signer is.
 */
/** What the signer hashes: a string (UTF-8) or bytes (smithy's `SourceData`). */
type SourceData = string | ArrayBuffer | ArrayBufferView;

function bytesOf(d: SourceData): Buffer {
  if (typeof d === 'string') return Buffer.from(d, 'utf8');
  if (ArrayBuffer.isView(d)) return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  return Buffer.from(d);
}

class Sha256 {
  static readonly #keys = new Map<string, KeyObject>();
  readonly #secret: KeyObject | null;
  #hash: NodeHash | Hmac;

  constructor(secret?: SourceData) {
    this.#secret = secret === undefined ? null : Sha256.#key(secret);
    this.#hash = this.#fresh();
  }

  static #key(secret: SourceData): KeyObject {
    const bytes = bytesOf(secret);
    const id = bytes.toString('base64');
    let k = Sha256.#keys.get(id);
    if (!k) {
      if (Sha256.#keys.size >= 256) Sha256.#keys.clear();
      k = createSecretKey(bytes);
      Sha256.#keys.set(id, k);
    }
    return k;
  }

  #fresh(): NodeHash | Hmac {
    return this.#secret ? createHmac('sha256', this.#secret) : createHash('sha256');
  }

  update(data: SourceData): void {
    this.#hash.update(bytesOf(data));
  }

  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.#hash.digest());
  }

  reset(): void {
    this.#hash = this.#fresh();
  }
}

/** An access key as held by the gateway. */
export interface AwsKeys {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

/** The forwarded request, as far as the signature covers it. */
export interface SigV4Request {
  readonly method: string;
  /** The Host header sent upstream (`host` or `host:port`). */
  readonly authority: string;
  /** The normalised path as forwarded (already percent-encoded). */
  readonly path: string;
  /** `?query` as forwarded, or `''`. */
  readonly query: string;
  /** The sandbox's header list `[name, value, …]`. */
  readonly rawHeaders: readonly string[];
}

/** Headers the gateway sets for a signed request; the sandbox's of these names are dropped. */
export const SIGV4_OWNED_HEADERS: ReadonlySet<string> = new Set([
  'authorization',
  'x-amz-date',
  'x-amz-security-token',
  'x-amz-content-sha256',
]);

/** What the forwarded request gets: the `authorization` value and the other headers, flat. */
export interface SigV4Signature {
  readonly authorization: string;
  /** `[name, value, …]`: x-amz-date, x-amz-content-sha256 and, with a session token, x-amz-security-token. */
  readonly headers: readonly string[];
}

/** A request the gateway will not sign (a client error: 400 `bad_request`). */
export class SigV4RequestError extends Error {
  override readonly name = 'SigV4RequestError';
}

/**
 * Reads an access key from a credential value: `ACCESS_KEY_ID:SECRET_ACCESS_KEY` or
 * `ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN` (surrounding whitespace of each part ignored).
 * @returns null when the value has another shape (the credential is then unavailable).
 */
export function parseAwsKeys(value: string): AwsKeys | null {
  const parts = value.split(':').map((p) => p.trim());
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) return null;
  const [accessKeyId, secretAccessKey, sessionToken] = parts as [string, string, string | undefined];
  if (!/^[A-Za-z0-9]{8,128}$/.test(accessKeyId)) return null;
  return sessionToken === undefined
    ? { accessKeyId, secretAccessKey }
    : { accessKeyId, secretAccessKey, sessionToken };
}

const HEX64 = /^[0-9a-f]{64}$/;
const UNSIGNED = new Set(['UNSIGNED-PAYLOAD', 'STREAMING-UNSIGNED-PAYLOAD-TRAILER']);

/**
 * The payload hash to sign (see the module comment).
 * @throws SigV4RequestError for a chunk-signed (aws-chunked) payload or an unknown value.
 */
export function payloadHash(rawHeaders: readonly string[]): string {
  let sent: string | null = null;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).toLowerCase() === 'x-amz-content-sha256') {
      if (sent !== null) throw new SigV4RequestError('more than one x-amz-content-sha256 header');
      sent = (rawHeaders[i + 1] as string).trim();
    }
  }
  if (sent === null) return 'UNSIGNED-PAYLOAD';
  if (HEX64.test(sent) || UNSIGNED.has(sent)) return sent;
  if (sent.startsWith('STREAMING-AWS4-'))
    throw new SigV4RequestError(
      `x-amz-content-sha256 "${sent}": chunk-signed bodies cannot be re-signed by the gateway; send an unsigned payload (UNSIGNED-PAYLOAD or STREAMING-UNSIGNED-PAYLOAD-TRAILER) or the body's SHA-256`,
    );
  throw new SigV4RequestError(
    'x-amz-content-sha256 must be 64 lowercase hex digits, UNSIGNED-PAYLOAD or STREAMING-UNSIGNED-PAYLOAD-TRAILER',
  );
}

/** `?a=1&b&a=2` → `{a: ['1', '2'], b: ''}`, percent-decoded (the signer encodes again, RFC 3986). */
function queryObject(query: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  if (query.length <= 1) return out;
  const decode = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  for (const part of query.slice(1).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const k = decode(eq < 0 ? part : part.slice(0, eq));
    const v = eq < 0 ? '' : decode(part.slice(eq + 1));
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

/**
 * Signers by key, region and service: `@smithy/signature-v4` caches the derived signing key per
 * day inside one signer, so one is kept per value version (bounded: the vault holds few keys).
 */
export class SigV4Signers {
  readonly #signers = new Map<string, SignatureV4>();

  /**
   * Signs `req` as forwarded (see the module comment for what is covered).
   * @param now the signing time. @default new Date()
   * @throws SigV4RequestError when the request's payload hash cannot be signed.
   */
  async sign(
    req: SigV4Request,
    keys: AwsKeys,
    scope: { region: string; service: string },
    now: Date = new Date(),
  ): Promise<SigV4Signature> {
    const hash = payloadHash(req.rawHeaders);
    const headers: Record<string, string> = { host: req.authority };
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      if (SIGV4_OWNED_HEADERS.has(name) || name === 'host') continue;
      if (name !== 'content-type' && name !== 'content-md5' && !name.startsWith('x-amz-')) continue;
      const value = raw[i + 1] as string;
      headers[name] = name in headers ? `${headers[name]},${value}` : value;
    }
    headers['x-amz-content-sha256'] = hash;
    const signed = await this.#signer(keys, scope).sign(
      {
        method: req.method,
        protocol: 'https:',
        hostname: req.authority,
        path: req.path,
        query: queryObject(req.query),
        headers,
      },
      { signingDate: now },
    );
    const out = ['x-amz-date', signed.headers['x-amz-date'] as string, 'x-amz-content-sha256', hash];
    if (keys.sessionToken !== undefined) out.push('x-amz-security-token', keys.sessionToken);
    return { authorization: signed.headers['authorization'] as string, headers: out };
  }

  #signer(keys: AwsKeys, scope: { region: string; service: string }): SignatureV4 {
    const id = `${keys.accessKeyId}\0${keys.secretAccessKey}\0${keys.sessionToken ?? ''}\0${scope.region}\0${scope.service}`;
    let s = this.#signers.get(id);
    if (!s) {
      if (this.#signers.size >= 64) this.#signers.clear();
      s = new SignatureV4({
        credentials: keys,
        region: scope.region,
        service: scope.service,
        sha256: Sha256,
        // S3 signs the path as sent (no second encoding); the path is already normalised.
        uriEscapePath: scope.service !== 's3' ? true : false,
        applyChecksum: true,
      });
      this.#signers.set(id, s);
    }
    return s;
  }
}
