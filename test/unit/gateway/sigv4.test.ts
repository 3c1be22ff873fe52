/**
 * The SigV4 signing of src/gateway/sigv4.ts against the worked examples of the Amazon S3 API
 * reference ("Signature Calculations for the Authorization Header: Transferring Payload in a Single
 * Chunk", examples GET Bucket Lifecycle and Get Bucket (List Objects)): the same request, key and time
 * must give AWS's published signature. Also the value shape and the payload-hash rules.
 */
import { describe, expect, it } from 'vitest';
import { parseAwsKeys, payloadHash, SigV4RequestError, SigV4Signers } from '../../../src/gateway/sigv4.js';

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
  ])('%s', async (_name, query, signature) => {
    const sig = await new SigV4Signers().sign(
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

  it("the sandbox's own authorization, date and token are not signed; a session token is set by the gateway", async () => {
    const base = {
      method: 'GET',
      authority: 'examplebucket.s3.amazonaws.com',
      path: '/',
      query: '?lifecycle',
    };
    const signers = new SigV4Signers();
    const clean = await signers.sign(
      { ...base, rawHeaders: ['x-amz-content-sha256', EMPTY_SHA256] },
      KEYS,
      scope,
      AT,
    );
    const noisy = await signers.sign(
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
    const withToken = await signers.sign(
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
  });

  it.each([
    ['chunk-signed', ['x-amz-content-sha256', 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD'], /chunk-signed/],
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
