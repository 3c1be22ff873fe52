/**
 * The SigV4 signing of src/gateway/sigv4.ts against the worked examples of the Amazon S3 API
 * reference ("Signature Calculations for the Authorization Header: Transferring Payload in a Single
 * Chunk", examples GET Bucket Lifecycle and Get Bucket (List Objects); "Authenticating Requests: Using
 * Query Parameters", example GET object; "Transferring Payload in Multiple Chunks", example PUT
 * object): the same request, key and time must give AWS's published signatures. Then a differential
 * test (fast-check) against `@smithy/signature-v4`, the AWS SDK for JavaScript's signer, which the
 * gateway used before: for generated methods, paths (S3 and other services' encoding), queries,
 * headers, session tokens and payload hashes, both must give the same Authorization (and the same
 * presigned query signature). Also the value shape, the payload-hash rules and the chunk framing.
 */
import { createHash, createHmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  canonicalQuery,
  isPresigned,
  parseAwsKeys,
  payloadHash,
  PRESIGN_MAX_EXPIRES_S,
  SigV4RequestError,
  SigV4Signers,
  type AwsKeys,
  type SigV4Request,
} from '../../../src/gateway/sigv4.js';

const KEYS = {
  accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
};
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const AT = new Date('2013-05-24T00:00:00Z');
const scope = { region: 'us-east-1', service: 's3' };

describe('SigV4Signers: the S3 API reference examples', () => {
  it.each([
    [
      'GET Bucket Lifecycle',
      '?lifecycle',
      'fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543',
    ],
    [
      'Get Bucket (List Objects)',
      '?max-keys=2&prefix=J',
      '34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7',
    ],
  ])('%s', (_name, query, signature) => {
    const sig = new SigV4Signers().sign(
      {
        method: 'GET',
        authority: 'examplebucket.s3.amazonaws.com',
        path: '/',
        query,
        rawHeaders: ['x-amz-content-sha256', EMPTY_SHA256],
      },
      KEYS,
      scope,
      AT,
    );
    expect(sig.authorization).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, ' +
        `SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=${signature}`,
    );
    expect(sig.headers).toEqual(['x-amz-date', '20130524T000000Z', 'x-amz-content-sha256', EMPTY_SHA256]);
  });

  it("the sandbox's own authorization, date and token are not signed; a session token is set by the gateway", () => {
    const base = {
      method: 'GET',
      authority: 'examplebucket.s3.amazonaws.com',
      path: '/',
      query: '?lifecycle',
    };
    const signers = new SigV4Signers();
    const clean = signers.sign(
      { ...base, rawHeaders: ['x-amz-content-sha256', EMPTY_SHA256] },
      KEYS,
      scope,
      AT,
    );
    const noisy = signers.sign(
      {
        ...base,
        rawHeaders: [
          'Authorization',
          'AWS4-HMAC-SHA256 Credential=AKIAAGENT/…',
          'X-Amz-Date',
          '20200101T000000Z',
          'x-amz-security-token',
          'agent-token',
          'x-amz-content-sha256',
          EMPTY_SHA256,
          'user-agent',
          'agent/1.0',
        ],
      },
      KEYS,
      scope,
      AT,
    );
    expect(noisy.authorization).toBe(clean.authorization);
    const withToken = signers.sign(
      { ...base, rawHeaders: [] },
      { ...KEYS, sessionToken: 'FwoGZXIvYXdzEXAMPLE' },
      scope,
      AT,
    );
    expect(withToken.authorization).toMatch(
      /SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,/,
    );
    expect(withToken.headers).toEqual([
      'x-amz-date',
      '20130524T000000Z',
      'x-amz-content-sha256',
      'UNSIGNED-PAYLOAD',
      'x-amz-security-token',
      'FwoGZXIvYXdzEXAMPLE',
    ]);
  });
});

describe('payload hash and value shape', () => {
  it('absent → UNSIGNED-PAYLOAD; a hex SHA-256 or an unsigned marker is kept', () => {
    expect(payloadHash([])).toBe('UNSIGNED-PAYLOAD');
    expect(payloadHash(['X-Amz-Content-Sha256', EMPTY_SHA256])).toBe(EMPTY_SHA256);
    expect(payloadHash(['x-amz-content-sha256', 'STREAMING-UNSIGNED-PAYLOAD-TRAILER'])).toBe(
      'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
    );
    expect(payloadHash(['x-amz-content-sha256', 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD'])).toBe(
      'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
    );
  });

  it.each([
    [
      'the trailer variant',
      ['x-amz-content-sha256', 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER'],
      /TRAILER/,
    ],
    ['ECDSA chunks', ['x-amz-content-sha256', 'STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD'], /ECDSA/],
    ['uppercase hex', ['x-amz-content-sha256', EMPTY_SHA256.toUpperCase()], /64 lowercase hex/],
    ['twice', ['x-amz-content-sha256', EMPTY_SHA256, 'x-amz-content-sha256', EMPTY_SHA256], /more than one/],
  ])('refuses %s', (_n, raw, re) => {
    expect(() => payloadHash(raw)).toThrow(SigV4RequestError);
    expect(() => payloadHash(raw)).toThrow(re);
  });

  it('reads ID:SECRET and ID:SECRET:TOKEN, nothing else', () => {
    expect(parseAwsKeys(`${KEYS.accessKeyId}:${KEYS.secretAccessKey}`)).toEqual(KEYS);
    expect(parseAwsKeys(`${KEYS.accessKeyId}:${KEYS.secretAccessKey}:tok`)).toEqual({
      ...KEYS,
      sessionToken: 'tok',
    });
    for (const bad of [
      '',
      'AKIAIOSFODNN7EXAMPLE',
      'a:b:c:d',
      ':secret',
      'AKIA IOSF:secret',
      'AKIAIOSFODNN7EXAMPLE::',
    ])
      expect(parseAwsKeys(bad)).toBeNull();
  });
});

describe('server-side copy is not signed', () => {
  it('x-amz-copy-source (any case) is refused, header-signed or presigned', () => {
    const s = new SigV4Signers();
    const base = { method: 'PUT', authority: 'b.s3.test', path: '/allowed-bucket/copy', query: '' };
    for (const name of ['x-amz-copy-source', 'X-Amz-Copy-Source']) {
      const rawHeaders = [name, '/secret-bucket/key'];
      expect(() => s.sign({ ...base, rawHeaders }, KEYS, scope, AT)).toThrow(/x-amz-copy-source/);
      expect(() => s.sign({ ...base, query: '?X-Amz-Signature=0', rawHeaders }, KEYS, scope, AT)).toThrow(
        SigV4RequestError,
      );
    }
  });
});

describe('presigned requests: signed in the query', () => {
  it('the S3 API reference example (GET object, 86400 s) gives its published signature', () => {
    const q = new SigV4Signers().presign(
      {
        method: 'GET',
        authority: 'examplebucket.s3.amazonaws.com',
        path: '/test.txt',
        // The agent's own presigned query (made-up key): its auth parameters are replaced.
        query:
          '?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAAGENT%2Fx&X-Amz-Date=20200101T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=00',
        rawHeaders: ['Authorization', 'AWS4-HMAC-SHA256 bogus', 'x-amz-content-sha256', EMPTY_SHA256],
      },
      KEYS,
      scope,
      AT,
      604_800,
    );
    expect(q.authorization).toBeNull();
    expect(q.headers).toEqual([]);
    expect(q.query).toBe(
      '?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request' +
        '&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host' +
        '&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404',
    );
  });

  it('sign() presigns when the query carries X-Amz-Algorithm or X-Amz-Signature; X-Amz-Expires is capped', () => {
    const base = { method: 'GET', authority: 'b.s3.test', path: '/k', rawHeaders: [] };
    const s = new SigV4Signers();
    const q = s.sign(
      { ...base, query: '?x-id=GetObject&X-Amz-Signature=00&X-Amz-Expires=604800' },
      KEYS,
      scope,
      AT,
    );
    expect(q.authorization).toBeNull();
    expect(q.query).toMatch(/^\?x-id=GetObject&X-Amz-Algorithm=AWS4-HMAC-SHA256&/);
    expect(q.query).toContain(`&X-Amz-Expires=${PRESIGN_MAX_EXPIRES_S}&`);
    expect(
      s.sign({ ...base, query: '?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=60' }, KEYS, scope, AT).query,
    ).toContain('&X-Amz-Expires=60&');
    expect(isPresigned('?x-amz-signature=1')).toBe(true);
    expect(isPresigned('?X-Amz-Signaturex=1&a=X-Amz-Signature')).toBe(false);
    for (const bad of ['0', '604801', 'abc', ''])
      expect(() =>
        s.sign({ ...base, query: `?X-Amz-Signature=0&X-Amz-Expires=${bad}` }, KEYS, scope, AT),
      ).toThrow(/X-Amz-Expires/);
    expect(() =>
      s.sign({ ...base, query: '?X-Amz-Signature=0' }, KEYS, { region: 'us-east-1', service: 'sqs' }, AT),
    ).toThrow(/s3 only/);
    const tok = s.sign(
      { ...base, query: '?X-Amz-Signature=0' },
      { ...KEYS, sessionToken: 'tok/+=' },
      scope,
      AT,
    );
    expect(tok.query).toContain('&X-Amz-Security-Token=tok%2F%2B%3D&');
  });
});

describe('aws-chunked bodies: chunk signatures replaced', () => {
  // S3 API Reference, "Transferring Payload in Multiple Chunks": PUT of 66560 bytes of 'a' in chunks of
  // 65536 and 1024 bytes, then the final chunk; seed = that request's header signature.
  const SEED = '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9';
  const PUBLISHED = [
    'ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648',
    '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497',
    'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9',
  ];
  const frame = (sizes: number[], sig = 'f'.repeat(64)): Buffer =>
    Buffer.concat(
      sizes.map((n) =>
        Buffer.concat([
          Buffer.from(`${n.toString(16)};chunk-signature=${sig}\r\n`),
          Buffer.alloc(n, 'a'),
          Buffer.from('\r\n'),
        ]),
      ),
    );
  const signaturesOf = (body: Buffer): string[] =>
    [...body.toString('latin1').matchAll(/chunk-signature=([0-9a-f]{64})/g)].map((m) => m[1]!);
  const resigner = () => new SigV4Signers().chunkResigner(KEYS, scope, AT, SEED);

  it('gives the published chunk signatures, the body keeping its length and data', () => {
    const body = frame([65536, 1024, 0]);
    const out = resigner().whole(body);
    expect(signaturesOf(out)).toEqual(PUBLISHED);
    expect(out.length).toBe(body.length);
    expect(out.toString('latin1').replace(/chunk-signature=[0-9a-f]{64}/g, '')).toBe(
      body.toString('latin1').replace(/chunk-signature=[0-9a-f]{64}/g, ''),
    );
  });

  it('the same when the body arrives in pieces of any size (streamed)', async () => {
    const body = frame([65536, 1024, 0]);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 8 }),
        async (cuts) => {
          const pieces: Buffer[] = [];
          let at = 0;
          for (const c of cuts) {
            if (at >= body.length) break;
            pieces.push(body.subarray(at, at + c));
            at += c;
          }
          if (at < body.length) pieces.push(body.subarray(at));
          const got: Buffer[] = [];
          for await (const b of resigner().stream(
            (async function* () {
              yield* pieces;
            })(),
          ))
            got.push(b);
          expect(signaturesOf(Buffer.concat(got))).toEqual(PUBLISHED);
        },
      ),
      { numRuns: 40 },
    );
  });

  it.each([
    ['a header without its signature', Buffer.from('5\r\nhello\r\n0\r\n\r\n'), /malformed chunk header/],
    [
      'a short signature',
      Buffer.from(`5;chunk-signature=${'0'.repeat(63)}\r\nhello\r\n`),
      /malformed chunk header/,
    ],
    [
      'data longer than its size',
      Buffer.from(`3;chunk-signature=${'0'.repeat(64)}\r\nhello\r\n`),
      /not followed by CRLF/,
    ],
    ['no final chunk', frame([5]), /ended before its final zero-size chunk/],
    ['bytes after the final chunk', Buffer.concat([frame([5, 0]), Buffer.from('x')]), /after the final/],
    ['a bare LF', Buffer.from(`5;chunk-signature=${'0'.repeat(64)}\nhello\r\n`), /not ended by CRLF/],
    ['a chunk over the limit', Buffer.from(`1000001;chunk-signature=${'0'.repeat(64)}\r\n`), /exceeds/],
    ['an endless header line', Buffer.alloc(200, '1'), /too long/],
    ['an empty body', Buffer.alloc(0), /ended before/],
  ])('refuses %s (nothing of the body returned)', (_n, body, re) => {
    expect(() => resigner().whole(body)).toThrow(SigV4RequestError);
    expect(() => resigner().whole(body)).toThrow(re);
  });

  it('streamed: the chunks before a malformed one are handed on, nothing of the bad one', async () => {
    const good = frame([4]);
    const bad = Buffer.from('zz;chunk-signature=0\r\n');
    const got: Buffer[] = [];
    const run = async (): Promise<void> => {
      for await (const b of resigner().stream(
        (async function* () {
          yield Buffer.concat([good, bad]);
        })(),
      ))
        got.push(b);
    };
    await expect(run()).rejects.toThrow(/malformed chunk header/);
    expect(Buffer.concat(got).length).toBe(good.length);
  });

  it('sign() of a chunk-signed request returns a resigner seeded with its own signature', () => {
    const sig = new SigV4Signers().sign(
      {
        method: 'PUT',
        authority: 'b.s3.test',
        path: '/k',
        query: '',
        rawHeaders: [
          'x-amz-content-sha256',
          'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
          'x-amz-decoded-content-length',
          '5',
        ],
      },
      KEYS,
      scope,
      AT,
    );
    const seed = /Signature=([0-9a-f]{64})$/.exec(sig.authorization!)![1]!;
    expect(sig.chunks).not.toBeNull();
    const body = frame([5, 0]);
    expect(sig.chunks!.whole(body)).toEqual(
      new SigV4Signers().chunkResigner(KEYS, scope, AT, seed).whole(body),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Differential: @smithy/signature-v4 (the reference) and the gateway's signer agree.

/** SHA-256 / HMAC for smithy on node:crypto (its `Checksum` shape). */
class NodeSha256 {
  readonly #secret: Buffer | null;
  #h: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.#secret =
      secret === undefined
        ? null
        : typeof secret === 'string'
          ? Buffer.from(secret)
          : ArrayBuffer.isView(secret)
            ? Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength)
            : Buffer.from(secret);
    this.#h = this.#fresh();
  }
  #fresh() {
    return this.#secret ? createHmac('sha256', this.#secret) : createHash('sha256');
  }
  update(d: string | ArrayBuffer | ArrayBufferView): void {
    this.#h.update(
      typeof d === 'string'
        ? Buffer.from(d)
        : ArrayBuffer.isView(d)
          ? Buffer.from(d.buffer, d.byteOffset, d.byteLength)
          : Buffer.from(d),
    );
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.#h.digest());
  }
  reset(): void {
    this.#h = this.#fresh();
  }
}

/** `?a=1&b&a=2` → smithy's query object, each part percent-decoded (kept as is when not decodable). */
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

const OWNED = new Set(['authorization', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256']);

/** The headers the gateway signs (module comment of sigv4.ts), as smithy takes them. */
function smithyHeaders(req: SigV4Request): Record<string, string> {
  const headers: Record<string, string> = { host: req.authority };
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    if (OWNED.has(name) || name === 'host') continue;
    if (name !== 'content-type' && name !== 'content-md5' && !name.startsWith('x-amz-')) continue;
    const value = req.rawHeaders[i + 1]!;
    headers[name] = name in headers ? `${headers[name]},${value}` : value;
  }
  return headers;
}

function smithy(keys: AwsKeys, region: string, service: string): SignatureV4 {
  return new SignatureV4({
    credentials: keys,
    region,
    service,
    sha256: NodeSha256,
    uriEscapePath: service !== 's3',
    applyChecksum: true,
  });
}

async function referenceAuthorization(
  req: SigV4Request,
  keys: AwsKeys,
  region: string,
  service: string,
  now: Date,
): Promise<string> {
  const headers = smithyHeaders(req);
  headers['x-amz-content-sha256'] = payloadHash(req.rawHeaders);
  const signed = await smithy(keys, region, service).sign(
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
  return signed.headers['authorization'] as string;
}

async function referencePresign(
  req: SigV4Request,
  keys: AwsKeys,
  region: string,
  kept: string,
  expiresIn: number,
  now: Date,
): Promise<Record<string, string | string[] | null>> {
  const headers = smithyHeaders(req);
  headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  const xAmz = new Set(Object.keys(headers).filter((h) => h.startsWith('x-amz-')));
  const r = await smithy(keys, region, 's3').presign(
    {
      method: req.method,
      protocol: 'https:',
      hostname: req.authority,
      path: req.path,
      query: queryObject(kept),
      headers,
    },
    {
      signingDate: now,
      expiresIn,
      unhoistableHeaders: xAmz,
      unsignableHeaders: new Set(['x-amz-content-sha256']),
    },
  );
  return r.query ?? {};
}

// Generators: the characters that occur in forwarded request targets, encoded and not.
const UNRES = 'abcXYZ019-._~';
const pathChar = fc.constantFrom(
  ...UNRES.split(''),
  '%20',
  '%2B',
  '%C3%A9',
  '%25',
  '!',
  '*',
  "'",
  '(',
  ')',
  '+',
  '=',
  '@',
  ':',
  '$',
  ',',
  ';',
);
const segment = fc.oneof(
  { weight: 8, arbitrary: fc.array(pathChar, { minLength: 1, maxLength: 6 }).map((a) => a.join('')) },
  { weight: 1, arbitrary: fc.constantFrom('.', '..', '') },
);
const pathArb = fc
  .tuple(fc.array(segment, { maxLength: 5 }), fc.boolean())
  .map(([segs, slash]) => `/${segs.join('/')}${slash && segs.length > 0 ? '/' : ''}`);
const qChar = fc.constantFrom(
  ...UNRES.split(''),
  '%20',
  '%2F',
  '%2f',
  '+',
  '%',
  '%zz',
  '%C3%A9',
  '!',
  '*',
  "'",
  '(',
  ')',
  ':',
  '/',
  '?',
  ',',
  ';',
  '@',
  '$',
  '%3D',
  '%26',
  // Escapes of unreserved characters (canonically written plain) and of other ASCII ones.
  '%41',
  '%7E',
  '%2D',
  '%2C',
  '=',
);
const qWord = fc.array(qChar, { maxLength: 5 }).map((a) => a.join(''));
const qName = fc.oneof(
  fc.constantFrom('prefix', 'list-type', 'a', 'A', 'a-b', 'a.b', 'x-id', 'versionId', 'uploads'),
  qWord.filter((w) => w !== ''),
);
const qParam = fc
  .tuple(
    qName,
    fc.option(
      fc.oneof(
        qWord,
        qWord.map((w) => `${w}=${w}`),
      ),
      { nil: undefined },
    ),
  )
  .map(([k, v]) => (v === undefined ? k : `${k}=${v}`));
const queryArb = fc
  .array(fc.oneof({ weight: 9, arbitrary: qParam }, { weight: 1, arbitrary: fc.constant('') }), {
    maxLength: 7,
  })
  .map((ps) => (ps.length === 0 ? '' : `?${ps.join('&')}`))
  .filter((q) => !isPresigned(q));
const headerValue = fc.oneof(
  fc.constantFrom(
    'text/plain',
    'application/xml; charset=utf-8',
    'REDUCED_REDUNDANCY',
    'public-read',
    '1B2M2Y8AsgTpgAmY7PhCfg==',
  ),
  fc
    .array(fc.constantFrom('a', 'Z', '0', ' ', '  ', '\t', ',', '=', ';', '/', '"'), { maxLength: 8 })
    .map((a) => a.join('')),
);
const headerName = fc.constantFrom(
  'Content-Type',
  'content-md5',
  'X-Amz-Meta-Owner',
  'x-amz-meta-owner',
  'x-amz-acl',
  'X-Amz-User-Agent',
  'x-amz-storage-class',
  'x-amz-decoded-content-length',
  'User-Agent',
  'Accept',
  'Cache-Control',
  'Authorization',
  'X-Amz-Date',
  'x-amz-security-token',
  'Content-Length',
  'Expect',
);
const hashArb = fc.constantFrom<string | null>(
  null,
  EMPTY_SHA256,
  'UNSIGNED-PAYLOAD',
  'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
  'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
);
const requestArb = fc
  .record({
    method: fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'HEAD', 'PATCH'),
    authority: fc.constantFrom(
      's3.test',
      'bucket.s3.eu-west-1.amazonaws.com',
      '127.0.0.1:9000',
      's3tls.test:8443',
      '[::1]:9000',
    ),
    path: pathArb,
    query: queryArb,
    headers: fc.array(fc.tuple(headerName, headerValue), { maxLength: 8 }),
    hash: hashArb,
  })
  .map((r): SigV4Request => ({
    method: r.method,
    authority: r.authority,
    path: r.path,
    query: r.query,
    rawHeaders: [...r.headers.flat(), ...(r.hash === null ? [] : ['X-Amz-Content-Sha256', r.hash])],
  }));
const keysArb = fc.record(
  {
    accessKeyId: fc.stringMatching(/^[A-Z0-9]{16,20}$/),
    secretAccessKey: fc.stringMatching(/^[A-Za-z0-9/+]{40}$/),
    sessionToken: fc.stringMatching(/^[A-Za-z0-9/+=]{20,60}$/),
  },
  { requiredKeys: ['accessKeyId', 'secretAccessKey'] },
);
const dateArb = fc.date({
  min: new Date('2000-01-01T00:00:00Z'),
  max: new Date('2099-12-31T23:59:59Z'),
  noInvalidDate: true,
});
const regionArb = fc.constantFrom('us-east-1', 'eu-west-1', 'ap-southeast-2');

describe('differential: the same signatures as @smithy/signature-v4 (fast-check)', () => {
  it('header signatures: S3 and other services, any query, headers, token and payload hash', async () => {
    const signers = new SigV4Signers();
    await fc.assert(
      fc.asyncProperty(
        requestArb,
        keysArb,
        regionArb,
        fc.constantFrom('s3', 's3', 'execute-api', 'sqs'),
        dateArb,
        async (req, keys, region, service, now) => {
          const mine = signers.sign(req, keys, { region, service }, now);
          expect(mine.authorization).toBe(await referenceAuthorization(req, keys, region, service, now));
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('presigned requests: the same query signature as smithy.presign for the kept query', async () => {
    const signers = new SigV4Signers();
    await fc.assert(
      fc.asyncProperty(
        requestArb,
        keysArb,
        regionArb,
        dateArb,
        fc.integer({ min: 1, max: 604_800 }),
        async (req, keys, region, now, expires) => {
          const agent = {
            ...req,
            query: `${req.query === '' ? '?' : `${req.query}&`}X-Amz-Signature=00&X-Amz-Expires=${expires}`,
          };
          const mine = signers.presign(agent, keys, { region, service: 's3' }, now);
          const got = Object.fromEntries(new URLSearchParams(mine.query!.slice(1)));
          const ref = await referencePresign(
            agent,
            keys,
            region,
            req.query,
            Math.min(expires, PRESIGN_MAX_EXPIRES_S),
            now,
          );
          expect(got['X-Amz-Signature']).toBe(ref['X-Amz-Signature']);
          expect(got['X-Amz-SignedHeaders']).toBe(ref['X-Amz-SignedHeaders']);
          expect(got['X-Amz-Credential']).toBe(ref['X-Amz-Credential']);
          expect(got['X-Amz-Expires']).toBe(String(Math.min(expires, PRESIGN_MAX_EXPIRES_S)));
          // The agent's other parameters are forwarded as sent, first.
          const kept = req.query.slice(1).split('&').filter(Boolean).join('&');
          expect(
            mine.query!.startsWith(kept === '' ? '?X-Amz-Algorithm=' : `?${kept}&X-Amz-Algorithm=`),
          ).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('canonicalQuery sorts by encoded name, then repeated names by pair, and drops X-Amz-Signature', () => {
    expect(canonicalQuery('?b=2&a-b=1&a=3&a=1&X-Amz-Signature=zz&c')).toBe('a=1&a=3&a-b=1&b=2&c=');
    expect(canonicalQuery('?p=%2f%zz+')).toBe('p=%252f%25zz%2B');
  });
});
