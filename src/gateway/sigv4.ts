/**
 * AWS Signature Version 4 for credentials of `apply: { type: aws-sigv4 }` (docs/credentials.md "S3
 * and other SigV4 APIs"): the gateway signs the request it forwards, after the allow decision, with
 * the access key it holds. The algorithm is AWS's ("Signature Version 4 signing process", AWS
 * General Reference; "Authenticating Requests: Using Query Parameters" and "Transferring Payload in
 * Multiple Chunks", Amazon S3 API Reference), written here for the gateway's one case on
 * `node:crypto`: the signing key is derived once per key, day, region and service and held as a
 * KeyObject, the canonical request is built in one pass over the header list, and the request costs
 * one SHA-256 and one HMAC (bench/credentials-dynamic.mjs). `@smithy/signature-v4`, the AWS SDK for
 * JavaScript's signer, is the reference: test/unit/gateway/sigv4.test.ts checks that both give the
 * same signature for generated requests.
 *
 * What is signed: the method, the path as forwarded (S3: as sent, already encoded; other services:
 * dot segments removed and encoded once more, as the SDKs do), the query as forwarded, and the
 * headers `host` (the authority sent upstream), `content-type`, `content-md5` and every `x-amz-*`
 * header the sandbox sent, except the ones the gateway owns: `authorization`, `x-amz-date`,
 * `x-amz-security-token`, `x-amz-content-sha256` are the gateway's (what the sandbox sent under those
 * names is dropped).
 *
 * The payload hash (`x-amz-content-sha256`): the gateway does not hash bodies, so
 * - absent → `UNSIGNED-PAYLOAD`;
 * - 64 hex digits, `UNSIGNED-PAYLOAD` or `STREAMING-UNSIGNED-PAYLOAD-TRAILER` → kept and signed
 *   (the server checks the body against a hash the sandbox claims: a wrong one is the server's 400,
 *   not a way around the signature);
 * - `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (an aws-chunked body whose every chunk is signed with the
 *   sender's key) → kept and signed; every chunk signature is then replaced by the gateway's own as
 *   the body is forwarded ({@link ChunkResigner});
 * - the trailer and ECDSA chunked variants, anything else → refused ({@link SigV4RequestError}).
 *
 * A request with `x-amz-copy-source` (S3 server-side copy) is refused: the object it reads is not the
 * one its path names, so the credential's binding would not cover it.
 *
 * Presigned URLs: a request whose query carries `X-Amz-Algorithm` or `X-Amz-Signature` (the agent
 * presigned it with a made-up key) is signed in the query instead ({@link SigV4Signers.presign}).
 */
import { createHmac, createSecretKey, hash as digest, type KeyObject } from 'node:crypto';

/** An access key as held by the gateway. */
export interface AwsKeys {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

/** Where a signature is valid: the region and service of the credential scope. */
export interface SigV4Scope {
  readonly region: string;
  readonly service: string;
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

/** The longest validity the gateway gives a presigned request (`X-Amz-Expires` is capped to it), s. */
export const PRESIGN_MAX_EXPIRES_S = 3600;

/** The largest chunk of an aws-chunked body the gateway re-signs (a chunk is held whole), bytes. */
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024;

/** The payload hash of a chunk-signed (aws-chunked) body. */
export const STREAMING_PAYLOAD = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD';

/** What the forwarded request gets. */
export interface SigV4Signature {
  /** The `authorization` header value, or null for a presigned request (signed in the query). */
  readonly authorization: string | null;
  /** `[name, value, …]`: x-amz-date, x-amz-content-sha256 and, with a session token, x-amz-security-token. */
  readonly headers: readonly string[];
  /** The query sent upstream instead of the sandbox's (`?…`: presigned requests), or null. */
  readonly query: string | null;
  /** The body's chunk signatures are to be replaced (aws-chunked), or null. */
  readonly chunks: ChunkResigner | null;
}

/** A request the gateway will not sign, or a chunked body it cannot re-sign (a client error: 400 `bad_request`). */
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
const KEPT_HASHES = new Set(['UNSIGNED-PAYLOAD', 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', STREAMING_PAYLOAD]);
/** SHA-256 of the empty string (a chunk's "headers" hash in the chunk string to sign). */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/**
 * The payload hash to sign (see the module comment).
 * @throws SigV4RequestError for a payload hash the gateway cannot sign, or more than one.
 */
export function payloadHash(rawHeaders: readonly string[]): string {
  let sent: string | null = null;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 20 && name.toLowerCase() === 'x-amz-content-sha256') {
      if (sent !== null) throw new SigV4RequestError('more than one x-amz-content-sha256 header');
      sent = (rawHeaders[i + 1] as string).trim();
    }
  }
  if (sent === null) return 'UNSIGNED-PAYLOAD';
  if (KEPT_HASHES.has(sent) || HEX64.test(sent)) return sent;
  if (sent.startsWith('STREAMING-'))
    throw new SigV4RequestError(
      `x-amz-content-sha256 "${sent}": the gateway re-signs ${STREAMING_PAYLOAD} bodies only (not the trailer or ECDSA variants); send that, an unsigned payload (UNSIGNED-PAYLOAD or STREAMING-UNSIGNED-PAYLOAD-TRAILER) or the body's SHA-256`,
    );
  throw new SigV4RequestError(
    `x-amz-content-sha256 must be 64 lowercase hex digits, UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER or ${STREAMING_PAYLOAD}`,
  );
}

// --- encoding (RFC 3986 unreserved characters kept, as the SDKs' `escapeUri`) ---

const UNRESERVED = /^[A-Za-z0-9\-._~]*$/;
const hexEncode = (c: string): string => `%${c.charCodeAt(0).toString(16).toUpperCase()}`;

/** Percent-encodes everything but the unreserved characters (AWS's `UriEncode`). */
function escapeUri(s: string): string {
  return UNRESERVED.test(s) ? s : encodeURIComponent(s).replace(/[!'()*]/g, hexEncode);
}

/** Unreserved characters and uppercase escapes of ASCII characters: canonical already, unless … */
const ASCII_ESCAPED = /^(?:[A-Za-z0-9\-._~]|%[0-7][0-9A-F])*$/;
/** … an escape is of an unreserved character (decoded, it is written plain). */
const UNRESERVED_ESCAPE = /%(?:2[DE]|3[0-9]|4[1-9A-F]|5[0-9AF]|6[1-9A-F]|7[0-9AE])/;

/** A query of unreserved characters, `=`, `&` and uppercase escapes of ASCII characters only. */
const SAFE_QUERY = /^\?(?:[A-Za-z0-9\-._~=&]|%[0-7][0-9A-F])*$/;

/** A query part as the canonical query has it: decoded once (kept as is when not decodable), encoded again. */
function canonicalPart(raw: string): string {
  if (UNRESERVED.test(raw)) return raw;
  // Percent-encoded ASCII decodes and encodes back to itself (no decoding needed).
  if (ASCII_ESCAPED.test(raw) && !UNRESERVED_ESCAPE.test(raw)) return raw;
  let decoded = raw;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    // not percent-decodable: encoded as it stands
  }
  return escapeUri(decoded);
}

/**
 * The canonical query string of `?a=1&b&a=2`: each name and value decoded and re-encoded, sorted by
 * name, a repeated name's pairs sorted among themselves, `X-Amz-Signature` left out.
 * @param query `?…` or `''`.
 */
export function canonicalQuery(query: string): string {
  if (query.length <= 1) return '';
  // Only unreserved characters, `=`, `&` and uppercase escapes of other ASCII characters: every name
  // and value is canonical as sent (one regex over the query instead of some per part).
  const safe = SAFE_QUERY.test(query) && !UNRESERVED_ESCAPE.test(query);
  const names: string[] = [];
  const pairs: string[] = [];
  let start = 1;
  while (start <= query.length) {
    let end = query.indexOf('&', start);
    if (end < 0) end = query.length;
    if (end > start) {
      const part = query.slice(start, end);
      const eq = part.indexOf('=');
      const rawName = eq < 0 ? part : part.slice(0, eq);
      const name = safe ? rawName : canonicalPart(rawName);
      if (name.length !== 15 || name.toLowerCase() !== 'x-amz-signature') {
        names.push(name);
        if (eq < 0) pairs.push(`${name}=`);
        // Canonical as sent (a second `=` is part of the value, encoded as %3D).
        else if (safe && part.indexOf('=', eq + 1) < 0) pairs.push(part);
        else pairs.push(`${name}=${canonicalPart(part.slice(eq + 1))}`);
      }
    }
    start = end + 1;
  }
  if (pairs.length <= 1) return pairs.length === 0 ? '' : (pairs[0] as string);
  // By name, then (a repeated name) by the whole pair: insertion sort, the lists are short.
  for (let i = 1; i < pairs.length; i++) {
    const n = names[i] as string;
    const p = pairs[i] as string;
    let j = i - 1;
    while (j >= 0) {
      const m = names[j] as string;
      if (m < n || (m === n && (pairs[j] as string) <= p)) break;
      names[j + 1] = m;
      pairs[j + 1] = pairs[j] as string;
      j--;
    }
    names[j + 1] = n;
    pairs[j + 1] = p;
  }
  return pairs.join('&');
}

/** The canonical URI: S3's path as sent; other services' with dot segments removed, encoded once more. */
function canonicalPath(path: string, service: string): string {
  if (service === 's3') return path;
  if (UNRESERVED.test(path.replaceAll('/', '')) && !path.includes('//') && !/(^|\/)\.\.?(\/|$)/.test(path))
    return path;
  const segments: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') segments.pop();
    else segments.push(seg);
  }
  const normal = `${path.startsWith('/') ? '/' : ''}${segments.join('/')}${segments.length > 0 && path.endsWith('/') ? '/' : ''}`;
  return escapeUri(normal).replace(/%2F/g, '/');
}

const NEEDS_TRIM = /[\t\r\n]| {2}|^ | $/;

/** A header value as signed: line breaks and runs of blanks made one space, one outer space trimmed. */
function canonicalValue(v: string): string {
  if (!NEEDS_TRIM.test(v)) return v;
  return v
    .replace(/[\r\n]/g, ' ')
    .replace(/[ \t]+/g, ' ')
    .replace(/^ | $/g, '');
}

const COPY_REFUSED =
  'x-amz-copy-source: a server-side copy reads an object the request path does not name, which the ' +
  "credential's binding would not cover; the gateway does not sign copies (GET the object, then PUT it)";

/** The signed headers of a request, as the canonical request has them. */
interface CanonicalHeaders {
  /** `name:value\n` per header, sorted by name (lowercase names, canonical values). */
  readonly block: string;
  /** The `SignedHeaders` list: the names, sorted, `;`-separated. */
  readonly signed: string;
}

/**
 * The request's signed headers (lowercase name, canonical value), sorted by name.
 * @param extra the gateway's own headers `[name, value, …]` (lowercase names).
 * @throws SigV4RequestError for `x-amz-copy-source` (see {@link SigV4Signers.sign}).
 */
function signedHeaders(req: SigV4Request, extra: readonly string[]): CanonicalHeaders {
  const names: string[] = ['host'];
  const values: string[] = [req.authority];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const rawName = raw[i] as string;
    // content-type, content-md5, x-amz-*: anything else is not signed (cheap tests first).
    const c = rawName.charCodeAt(0) | 0x20;
    if (c === 0x63) {
      if (rawName.length !== 12 && rawName.length !== 11) continue;
    } else if (c !== 0x78 || rawName.length < 7 || (rawName.charCodeAt(2) | 0x20) !== 0x61) continue;
    const name = rawName.toLowerCase();
    if (name.startsWith('x-amz-')) {
      // SIGV4_OWNED_HEADERS' x-amz-* names (compared directly: a Set lookup hashes the new string).
      if (name === 'x-amz-date' || name === 'x-amz-content-sha256' || name === 'x-amz-security-token')
        continue;
      if (name === 'x-amz-copy-source') throw new SigV4RequestError(COPY_REFUSED);
    } else if (name !== 'content-type' && name !== 'content-md5') continue;
    const value = raw[i + 1] as string;
    const at = names.indexOf(name);
    if (at >= 0) values[at] = `${values[at]},${value}`;
    else {
      names.push(name);
      values.push(value);
    }
  }
  for (let i = 0; i < extra.length; i += 2) {
    names.push(extra[i] as string);
    values.push(extra[i + 1] as string);
  }
  for (let i = 1; i < names.length; i++) {
    const n = names[i] as string;
    const v = values[i] as string;
    let j = i - 1;
    while (j >= 0 && (names[j] as string) > n) {
      names[j + 1] = names[j] as string;
      values[j + 1] = values[j] as string;
      j--;
    }
    names[j + 1] = n;
    values[j + 1] = v;
  }
  let block = '';
  let signed = '';
  for (let i = 0; i < names.length; i++) {
    const n = names[i] as string;
    block += `${n}:${canonicalValue(values[i] as string)}\n`;
    signed = i === 0 ? n : `${signed};${n}`;
  }
  return { block, signed };
}

function canonicalRequest(
  method: string,
  path: string,
  query: string,
  h: CanonicalHeaders,
  hash: string,
): string {
  return `${method}\n${path}\n${query}\n${h.block}\n${h.signed}\n${hash}`;
}

/** A derived signing key (HMAC chain over the day, region, service) and its credential scope. */
interface SigningKey {
  readonly key: KeyObject;
  /** `YYYYMMDD/region/service/aws4_request`. */
  readonly scope: string;
  /** `YYYYMMDD`, region and service, to tell whether the key still fits. */
  readonly day: string;
  readonly region: string;
  readonly service: string;
  /** HMAC's inner block (key XOR ipad) followed by room for the message ({@link hmacHex}). */
  readonly inner: Buffer;
  /** HMAC's outer block (key XOR opad) followed by room for the inner digest. */
  readonly outer: Buffer;
  /**
   * The `x-amz-date` whose string-to-sign prefix (`AWS4-HMAC-SHA256\n<date>\n<scope>\n`) stands in
   * `inner` after the key block, ending at {@link stsEnd}; `''` when `inner` holds something else.
   */
  stsDate: string;
  stsEnd: number;
}

/** Room for a string to sign after HMAC's inner block (a request's is about 150 bytes), bytes. */
const HMAC_ROOM = 448;

/**
 * HMAC-SHA256 (RFC 2104) of an ASCII message with a 32-byte key whose padded blocks are prepared in
 * `sk`: two one-shot SHA-256 over preallocated buffers, cheaper than a `createHmac` per call (bench).
 * A message longer than the room goes through `createHmac`.
 */
function hmacHex(sk: SigningKey, message: string): string {
  if (message.length > HMAC_ROOM) return createHmac('sha256', sk.key).update(message).digest('hex');
  sk.stsDate = '';
  return hmacInner(sk, 64 + sk.inner.write(message, 64, 'latin1'));
}

/**
 * HMAC of the message already written in `sk.inner` after the key block (`end`: where it ends),
 * hex. The inner digest goes out as hex and is written back as bytes: a one-shot `'buffer'` digest
 * allocates a Buffer, which costs more than the hex round trip (bench/credentials-dynamic.mjs).
 */
function hmacInner(sk: SigningKey, end: number): string {
  sk.outer.write(digest('sha256', sk.inner.subarray(0, end), 'hex'), 64, 'hex');
  return digest('sha256', sk.outer, 'hex');
}

function signingKeyOf(key: Buffer, day: string, scope: SigV4Scope): SigningKey {
  const inner = Buffer.alloc(64 + HMAC_ROOM);
  const outer = Buffer.alloc(96);
  for (let i = 0; i < 64; i++) {
    inner[i] = (key[i] ?? 0) ^ 0x36;
    outer[i] = (key[i] ?? 0) ^ 0x5c;
  }
  return {
    key: createSecretKey(key),
    scope: `${day}/${scope.region}/${scope.service}/aws4_request`,
    day,
    region: scope.region,
    service: scope.service,
    inner,
    outer,
    stsDate: '',
    stsEnd: 0,
  };
}

/** `YYYYMMDDTHHMMSSZ` of a time (seconds). */
function longDateOf(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2026-01-01T00:00:00.000Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
}

/**
 * Signs requests with held access keys (see the module comment). Keeps the derived signing keys
 * (one per key, day, region and service; at most 64, then it starts afresh).
 */
export class SigV4Signers {
  readonly #keys = new Map<string, SigningKey>();
  /** The last signing key used with a keys object (the vault hands the same object per value version). */
  readonly #last = new WeakMap<AwsKeys, SigningKey>();
  #dateSecond = -1;
  #longDate = '';

  /**
   * Signs `req` as forwarded: with the `authorization` header, or — when its query carries
   * `X-Amz-Algorithm` or `X-Amz-Signature` — in the query ({@link presign}).
   * @param now the signing time. @default new Date()
   * @throws SigV4RequestError when the request's payload hash cannot be signed, a presigned
   *   request's `X-Amz-Expires` is not a number of seconds from 1 to 604800, or the request carries
   *   `x-amz-copy-source` (S3 server-side copy: the object it reads is named in that header, not in
   *   the path the binding matched, so signing it would let a binding limited to one bucket or
   *   prefix copy any object the key can read into it).
   */
  sign(req: SigV4Request, keys: AwsKeys, scope: SigV4Scope, now: Date = new Date()): SigV4Signature {
    if (isPresigned(req.query)) return this.presign(req, keys, scope, now);
    const hash = payloadHash(req.rawHeaders);
    const longDate = this.#dateOf(now);
    const sk = this.#signingKey(keys, scope, longDate);
    const extra =
      keys.sessionToken === undefined
        ? ['x-amz-content-sha256', hash, 'x-amz-date', longDate]
        : ['x-amz-content-sha256', hash, 'x-amz-date', longDate, 'x-amz-security-token', keys.sessionToken];
    const h = signedHeaders(req, extra);
    const cr = canonicalRequest(
      req.method,
      canonicalPath(req.path, scope.service),
      canonicalQuery(req.query),
      h,
      hash,
    );
    const signature = this.#signature(sk, longDate, cr);
    const out = ['x-amz-date', longDate, 'x-amz-content-sha256', hash];
    if (keys.sessionToken !== undefined) out.push('x-amz-security-token', keys.sessionToken);
    return {
      authorization: `AWS4-HMAC-SHA256 Credential=${keys.accessKeyId}/${sk.scope}, SignedHeaders=${h.signed}, Signature=${signature}`,
      headers: out,
      query: null,
      chunks: hash === STREAMING_PAYLOAD ? new ChunkResigner(sk, longDate, signature) : null,
    };
  }

  /**
   * Signs `req` in its query (AWS "Authenticating Requests: Using Query Parameters"): the sandbox's
   * `X-Amz-Algorithm`, `-Credential`, `-Date`, `-Expires`, `-SignedHeaders`, `-Security-Token` and
   * `-Signature` parameters are removed and the gateway's appended, with the sandbox's
   * `X-Amz-Expires` capped to {@link PRESIGN_MAX_EXPIRES_S} (absent: the cap). The payload is
   * `UNSIGNED-PAYLOAD` (S3's rule for presigned requests; other services are refused). The signed
   * headers are the ones a header signature covers, minus the gateway's own.
   * @param maxExpiresS the cap of `X-Amz-Expires`, s. @default PRESIGN_MAX_EXPIRES_S
   * @throws SigV4RequestError for a service other than `s3`, or an invalid `X-Amz-Expires`.
   */
  presign(
    req: SigV4Request,
    keys: AwsKeys,
    scope: SigV4Scope,
    now: Date = new Date(),
    maxExpiresS: number = PRESIGN_MAX_EXPIRES_S,
  ): SigV4Signature {
    if (scope.service !== 's3')
      throw new SigV4RequestError(
        `presigned URLs (X-Amz-Signature in the query) are re-signed for service s3 only, not ${scope.service}; sign with headers`,
      );
    const { kept, expires } = withoutAuthParams(req.query);
    const longDate = this.#dateOf(now);
    const sk = this.#signingKey(keys, scope, longDate);
    const h = signedHeaders(req, []);
    let q =
      `${kept.length > 0 ? `?${kept.join('&')}&` : '?'}X-Amz-Algorithm=AWS4-HMAC-SHA256` +
      `&X-Amz-Credential=${escapeUri(`${keys.accessKeyId}/${sk.scope}`)}&X-Amz-Date=${longDate}` +
      `&X-Amz-Expires=${Math.min(expires ?? maxExpiresS, maxExpiresS)}` +
      `&X-Amz-SignedHeaders=${escapeUri(h.signed)}`;
    if (keys.sessionToken !== undefined) q += `&X-Amz-Security-Token=${escapeUri(keys.sessionToken)}`;
    const cr = canonicalRequest(req.method, req.path, canonicalQuery(q), h, 'UNSIGNED-PAYLOAD');
    return {
      authorization: null,
      headers: [],
      query: `${q}&X-Amz-Signature=${this.#signature(sk, longDate, cr)}`,
      chunks: null,
    };
  }

  /**
   * A resigner for an aws-chunked body whose request was signed with `seed` at `now` (the
   * {@link sign} of a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` request returns one already).
   */
  chunkResigner(keys: AwsKeys, scope: SigV4Scope, now: Date, seed: string): ChunkResigner {
    const longDate = this.#dateOf(now);
    return new ChunkResigner(this.#signingKey(keys, scope, longDate), longDate, seed);
  }

  /**
   * The signature of a canonical request: HMAC of the string to sign, whose prefix (algorithm, date,
   * scope) is written once per key and second, then only the canonical request's hash after it.
   */
  #signature(sk: SigningKey, longDate: string, cr: string): string {
    if (sk.stsDate !== longDate) {
      const prefix = `AWS4-HMAC-SHA256\n${longDate}\n${sk.scope}\n`;
      if (prefix.length + 64 > HMAC_ROOM) return hmacHex(sk, `${prefix}${digest('sha256', cr)}`);
      sk.stsEnd = 64 + sk.inner.write(prefix, 64, 'latin1');
      sk.stsDate = longDate;
    }
    return hmacInner(sk, sk.stsEnd + sk.inner.write(digest('sha256', cr), sk.stsEnd, 'latin1'));
  }

  #dateOf(now: Date): string {
    const second = Math.floor(now.getTime() / 1000);
    if (second !== this.#dateSecond) {
      this.#longDate = longDateOf(second * 1000);
      this.#dateSecond = second;
    }
    return this.#longDate;
  }

  #signingKey(keys: AwsKeys, scope: SigV4Scope, longDate: string): SigningKey {
    const last = this.#last.get(keys);
    if (
      last !== undefined &&
      last.region === scope.region &&
      last.service === scope.service &&
      longDate.startsWith(last.day)
    )
      return last;
    const day = longDate.slice(0, 8);
    const id = `${day}\0${scope.region}\0${scope.service}\0${keys.secretAccessKey}`;
    let k = this.#keys.get(id);
    if (!k) {
      if (this.#keys.size >= 64) this.#keys.clear();
      let key: Buffer = Buffer.from(`AWS4${keys.secretAccessKey}`, 'utf8');
      for (const part of [day, scope.region, scope.service, 'aws4_request'])
        key = createHmac('sha256', key).update(part).digest();
      k = signingKeyOf(key, day, scope);
      this.#keys.set(id, k);
    }
    this.#last.set(keys, k);
    return k;
  }
}

/** The query parameters of a SigV4 query signature (lowercase). */
const AUTH_PARAMS = new Set([
  'x-amz-algorithm',
  'x-amz-credential',
  'x-amz-date',
  'x-amz-expires',
  'x-amz-signedheaders',
  'x-amz-security-token',
  'x-amz-signature',
]);

/** Whether a query carries a SigV4 query signature (`X-Amz-Algorithm` or `X-Amz-Signature`, any case). */
export function isPresigned(query: string): boolean {
  return query.length >= 16 && PRESIGNED.test(query);
}
const PRESIGNED = /[?&]x-amz-(?:algorithm|signature)(?:[=&]|$)/i;

/**
 * The query's parameters other than the SigV4 query-signature ones, as sent, and the sandbox's
 * `X-Amz-Expires`. @throws SigV4RequestError for an `X-Amz-Expires` that is not 1..604800 seconds.
 */
function withoutAuthParams(query: string): { kept: string[]; expires: number | null } {
  const kept: string[] = [];
  let expires: number | null = null;
  for (const part of query.slice(1).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).toLowerCase();
    if (!AUTH_PARAMS.has(name)) {
      kept.push(part);
      continue;
    }
    if (name === 'x-amz-expires') {
      const v = eq < 0 ? '' : part.slice(eq + 1);
      const n = /^[0-9]{1,6}$/.test(v) ? Number(v) : NaN;
      if (!(n >= 1 && n <= 604_800))
        throw new SigV4RequestError(`X-Amz-Expires "${v}" must be a number of seconds from 1 to 604800`);
      expires = n;
    }
  }
  return { kept, expires };
}

/** `hex-size;chunk-signature=` + 64 hex: the only chunk header form re-signed. */
const CHUNK_HEADER = /^([0-9a-fA-F]{1,8});chunk-signature=[0-9a-f]{64}$/;
/** Longest chunk header line read (the form above is at most 89 bytes). */
const MAX_CHUNK_HEADER = 128;

/**
 * Replaces the chunk signatures of an aws-chunked body (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, S3 API
 * Reference "Transferring Payload in Multiple Chunks") with the gateway's, chained from the request's
 * header signature: each chunk `hex-size;chunk-signature=SIG\r\nDATA\r\n` becomes the same bytes with
 * SIG = HMAC(signing key, "AWS4-HMAC-SHA256-PAYLOAD\n" date "\n" scope "\n" previous signature "\n"
 * SHA-256("") "\n" SHA-256(DATA)), so the body keeps its length. A chunk is handed on only once it
 * arrived whole and well-framed (held meanwhile: memory is bounded by {@link MAX_CHUNK_BYTES}); after
 * the final zero-size chunk and its CRLF nothing more may follow. Trailing headers (the `-TRAILER`
 * variant) are not supported (refused before, by {@link payloadHash}).
 *
 * Use: {@link push} every piece as it arrives, then {@link end}; or {@link whole} for a body read
 * whole. One resigner per request.
 */
export class ChunkResigner {
  readonly #key: KeyObject;
  readonly #prefix: string;
  #previous: string;
  /** Bytes of the chunk header or chunk being read. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** The header line of the chunk being read (its size known), or null while reading a header. */
  #size = -1;
  #sizeHex = '';
  #done = false;

  /** @param seed the request's header signature (the first chunk's previous signature). */
  constructor(sk: SigningKey, longDate: string, seed: string) {
    this.#key = sk.key;
    this.#prefix = `AWS4-HMAC-SHA256-PAYLOAD\n${longDate}\n${sk.scope}\n`;
    this.#previous = seed;
  }

  /**
   * Takes the next bytes of the body. @returns `out` with the re-signed chunks completed by them
   * appended (possibly none).
   * @throws SigV4RequestError at the first malformed byte (the chunk being read is not appended;
   *   the ones completed before it are, in `out`).
   */
  push(data: Buffer, out: Buffer[] = []): Buffer[] {
    let at = 0;
    while (at < data.length) {
      if (this.#done) throw new SigV4RequestError('aws-chunked body: bytes after the final zero-size chunk');
      if (this.#size < 0) {
        // Reading a header line up to CRLF.
        const nl = data.indexOf(0x0a, at);
        const end = nl < 0 ? data.length : nl + 1;
        this.#hold(data.subarray(at, end));
        if (this.#pendingBytes > MAX_CHUNK_HEADER)
          throw new SigV4RequestError('aws-chunked body: chunk header line too long');
        at = end;
        if (nl < 0) break;
        const line = Buffer.concat(this.#pending).toString('latin1');
        this.#pending = [];
        this.#pendingBytes = 0;
        if (!line.endsWith('\r\n'))
          throw new SigV4RequestError('aws-chunked body: chunk header line not ended by CRLF');
        const m = CHUNK_HEADER.exec(line.slice(0, -2));
        if (!m)
          throw new SigV4RequestError(
            'aws-chunked body: malformed chunk header (expected hex-size;chunk-signature=64 hex digits)',
          );
        this.#sizeHex = m[1] as string;
        this.#size = parseInt(this.#sizeHex, 16);
        if (this.#size > MAX_CHUNK_BYTES)
          throw new SigV4RequestError(
            `aws-chunked body: chunk of ${this.#size} bytes exceeds the gateway's ${MAX_CHUNK_BYTES}`,
          );
        continue;
      }
      // Reading the chunk's data and its CRLF.
      const need = this.#size + 2 - this.#pendingBytes;
      const take = Math.min(need, data.length - at);
      this.#hold(data.subarray(at, at + take));
      at += take;
      if (take < need) break;
      const chunk = Buffer.concat(this.#pending);
      this.#pending = [];
      this.#pendingBytes = 0;
      if (chunk[this.#size] !== 0x0d || chunk[this.#size + 1] !== 0x0a)
        throw new SigV4RequestError('aws-chunked body: chunk data not followed by CRLF');
      const payload = chunk.subarray(0, this.#size);
      const sig = createHmac('sha256', this.#key)
        .update(`${this.#prefix}${this.#previous}\n${EMPTY_SHA256}\n${digest('sha256', payload)}`)
        .digest('hex');
      this.#previous = sig;
      out.push(Buffer.from(`${this.#sizeHex};chunk-signature=${sig}\r\n`, 'latin1'), chunk);
      if (this.#size === 0) this.#done = true;
      this.#size = -1;
    }
    return out;
  }

  /** The body ended. @throws SigV4RequestError when it ended before its final zero-size chunk. */
  end(): void {
    if (!this.#done) throw new SigV4RequestError('aws-chunked body: ended before its final zero-size chunk');
  }

  /** A whole body, re-signed. @throws SigV4RequestError when it is malformed (nothing of it is returned). */
  whole(body: Buffer): Buffer {
    const out = this.push(body);
    this.end();
    return Buffer.concat(out);
  }

  /**
   * A streamed body, re-signed as it flows: each chunk is yielded once it arrived whole.
   * @throws SigV4RequestError (from the iteration) at the first malformed byte.
   */
  async *stream(body: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const piece of body) {
      const out: Buffer[] = [];
      let bad: unknown = null;
      try {
        this.push(piece, out);
      } catch (err) {
        bad = err;
      }
      for (const b of out) yield b; // the chunks completed before a malformed byte go on
      if (bad !== null) throw bad;
    }
    this.end();
  }

  #hold(b: Buffer): void {
    if (b.length === 0) return;
    this.#pending.push(b);
    this.#pendingBytes += b.length;
  }
}
