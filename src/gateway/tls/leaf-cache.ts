import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { caSigner, EC_ALGORITHM, type CaMaterial } from '../../pki/ca.js';

/** Leaf validity: 24 h, in ms. Reissued when less than an hour is left. */
export const LEAF_VALIDITY_MS = 24 * 3600 * 1000;
const RENEW_BEFORE_MS = 3600 * 1000;

interface Entry {
  context: tls.SecureContext;
  notAfter: number;
}

/**
 * Mints leaf certificates for intercepted hosts, signed by the installation CA, and caches the TLS
 * secure contexts in a bounded LRU (Map insertion order; `maxEntries` hosts). All leaves share one
 * ECDSA P-256 key generated per gateway process (the key never leaves the gateway; minting then costs
 * one signature). Concurrent requests for the same host share one minting.
 */
export class LeafCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<tls.SecureContext>>();
  private signer: Promise<{ cert: x509.X509Certificate; key: webcrypto.CryptoKey }>;
  private leafKeys: Promise<{ pair: webcrypto.CryptoKeyPair; pem: string }>;
  /** Leaves minted so far (metrics, tests). */
  minted = 0;

  /** Bumped by useCa: a minting begun under an older CA is not cached. */
  private generation = 0;

  constructor(
    private ca: CaMaterial,
    private readonly maxEntries = 1_000,
    private readonly now: () => number = Date.now,
  ) {
    this.signer = caSigner(ca);
    this.leafKeys = (async () => {
      const pair = (await webcrypto.subtle.generateKey(EC_ALGORITHM, true, [
        'sign',
        'verify',
      ])) as webcrypto.CryptoKeyPair;
      const der = await webcrypto.subtle.exportKey('pkcs8', pair.privateKey);
      const b64 = Buffer.from(der)
        .toString('base64')
        .replace(/(.{64})/g, '$1\n');
      return { pair, pem: `-----BEGIN PRIVATE KEY-----\n${b64.trimEnd()}\n-----END PRIVATE KEY-----\n` };
    })();
  }

  /** The secure context for `host` (a normalised DNS name or IP literal). */
  get(host: string): Promise<tls.SecureContext> {
    const hit = this.entries.get(host);
    if (hit && hit.notAfter - this.now() > RENEW_BEFORE_MS) {
      this.entries.delete(host);
      this.entries.set(host, hit); // most recently used last
      return Promise.resolve(hit.context);
    }
    let p = this.inflight.get(host);
    if (!p) {
      p = this.mint(host).finally(() => this.inflight.delete(host));
      this.inflight.set(host, p);
    }
    return p;
  }

  /**
   * Switches to another CA (a rotation picked up by the gateway without a restart): leaves are minted
   * by `ca` from now on and the cache is emptied. Connections already open keep their leaf.
   * @throws Error when the key cannot be imported (the old CA stays in use).
   */
  async useCa(ca: CaMaterial): Promise<void> {
    const signer = caSigner(ca);
    await signer;
    this.ca = ca;
    this.signer = signer;
    this.generation++;
    this.entries.clear();
    this.inflight.clear();
  }

  get size(): number {
    return this.entries.size;
  }

  private async mint(host: string): Promise<tls.SecureContext> {
    const generation = this.generation;
    const ca = this.ca;
    const { cert: caCert, key: caKey } = await this.signer;
    const { pair, pem } = await this.leafKeys;
    const now = this.now();
    const notAfter = Math.min(now + LEAF_VALIDITY_MS, caCert.notAfter.getTime());
    const san =
      isIP(host) !== 0 ? { type: 'ip' as const, value: host } : { type: 'dns' as const, value: host };
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: randomBytes(16)
        .toString('hex')
        .replace(/^[89a-f]/, '1'),
      subject: `CN=${host}`,
      issuer: caCert.subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(notAfter),
      signingAlgorithm: EC_ALGORITHM,
      publicKey: pair.publicKey,
      signingKey: caKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([san]),
        await x509.AuthorityKeyIdentifierExtension.create(caCert),
      ],
    });
    const context = tls.createSecureContext({
      key: pem,
      cert: leaf.toString('pem') + '\n' + ca.certPem,
      minVersion: 'TLSv1.2',
    });
    this.minted++;
    if (generation !== this.generation) return context; // the CA changed meanwhile: do not cache
    this.entries.set(host, { context, notAfter });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    return context;
  }
}
