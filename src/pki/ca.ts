// @peculiar/x509 resolves its ASN.1 schema providers through tsyringe, which needs this polyfill.
import 'reflect-metadata';
import { createPrivateKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';

/**
 * The installation's certificate authority for HTTPS interception (docs/tls.md).
 *
 * Library: @peculiar/x509 on Node's WebCrypto. It does ECDSA P-256 (node-forge does not), is typed,
 * maintained, and keeps all key material in Node's crypto. Algorithm choices: ECDSA P-256 with
 * SHA-256 (CA/Browser Forum Baseline Requirements 6.1.5), CA valid 1 year, leaves 24 hours.
 *
 * Files in `dir` (the control plane's state dir; the gateway mounts it read-only; it never enters a
 * sandbox): `ca.key` (PKCS#8 PEM, 0600), `ca.crt` (PEM), and after a rotation `previous.crt`, which
 * stays in the trust bundle until `previous.expires` (epoch ms) so sandboxes holding leaves of the
 * old CA keep working through the overlap. On Kubernetes the same four names are the keys of a Secret
 * (src/runtime/kubernetes/ca-store.ts), projected into the gateway Pods as that directory; the
 * `*Files` functions below work on such a name -> text map.
 */
x509.cryptoProvider.set(webcrypto as never);

export const EC_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
/** CA validity: 365 days, in ms. */
export const CA_VALIDITY_MS = 365 * 24 * 3600 * 1000;
/** Default rotation overlap: 7 days, in ms. */
export const DEFAULT_OVERLAP_MS = 7 * 24 * 3600 * 1000;
/** A CA with less validity left than this is replaced (with overlap) when loaded by the control plane. */
export const ROTATE_BEFORE_MS = 24 * 3600 * 1000;

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64.trimEnd()}\n-----END ${label}-----\n`;
}

function unpem(text: string): Buffer {
  return Buffer.from(text.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive INTEGER
  return b.toString('hex');
}

export interface CaMaterial {
  /** CA certificate, PEM. */
  certPem: string;
  /** CA private key, PKCS#8 PEM. */
  keyPem: string;
  /** Certificates sandboxes must trust: current CA, plus the previous one during an overlap. */
  trustPem: string;
}

async function createCa(now = Date.now()): Promise<{ certPem: string; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(EC_ALGORITHM, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=Airlock egress CA ${new Date(now).toISOString().slice(0, 10)}, O=Airlock`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + CA_VALIDITY_MS),
    signingAlgorithm: EC_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem') + '\n', keyPem: pem('PRIVATE KEY', pkcs8) };
}

function writeSecret(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

function readMaterial(dir: string, now: number): CaMaterial {
  const files: CaFiles = {};
  for (const name of CA_FILE_NAMES) {
    const file = path.join(dir, name);
    if (existsSync(file)) files[name] = readFileSync(file, 'utf8');
  }
  return materialFromFiles(files, now);
}

/** The names the CA is stored under: files in a directory, or keys of a Kubernetes Secret. */
export const CA_FILE_NAMES = ['ca.crt', 'ca.key', 'previous.crt', 'previous.expires'] as const;
/** The CA as name -> text (a directory's files, or a Secret's decoded data). */
export type CaFiles = Partial<Record<(typeof CA_FILE_NAMES)[number], string>>;

/**
 * The material in `files`; the previous certificate joins the trust bundle while `previous.expires`
 * (epoch ms) is in the future.
 * @throws Error when ca.crt or ca.key is missing.
 */
export function materialFromFiles(files: CaFiles, now = Date.now()): CaMaterial {
  const certPem = files['ca.crt'];
  const keyPem = files['ca.key'];
  if (!certPem || !keyPem) throw new Error('the CA needs both ca.crt and ca.key');
  let trustPem = certPem;
  const prev = files['previous.crt'];
  if (prev && Number(files['previous.expires'] ?? 0) > now) trustPem += prev;
  return { certPem, keyPem, trustPem };
}

/**
 * Checks stored CA files before use: the certificate is a CA, the key is an ECDSA P-256 PKCS#8 key
 * (what leaves are signed with) and belongs to the certificate.
 * @throws Error saying what is wrong.
 */
export function checkCaFiles(files: CaFiles): void {
  const m = materialFromFiles(files);
  const cert = new X509Certificate(m.certPem);
  if (!cert.ca) throw new Error('ca.crt is not a CA certificate (basicConstraints CA:TRUE)');
  const key = createPrivateKey(m.keyPem);
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new Error('ca.key must be an ECDSA P-256 key (PKCS#8 PEM)');
  if (!cert.checkPrivateKey(key)) throw new Error('ca.key does not belong to ca.crt');
}

/** A new CA replacing the one in `files` (kept trusted as previous.* for `overlapMs`). */
export async function rotateCaFiles(
  files: CaFiles,
  overlapMs = DEFAULT_OVERLAP_MS,
  now = Date.now(),
): Promise<CaFiles> {
  const { certPem, keyPem } = await createCa(now);
  const next: CaFiles = { 'ca.crt': certPem, 'ca.key': keyPem };
  if (files['ca.crt']) {
    next['previous.crt'] = files['ca.crt'];
    next['previous.expires'] = String(now + overlapMs);
  }
  return next;
}

/**
 * What the control plane stores: `files` unchanged when they hold a CA with more than a day left; a
 * new CA when they hold none; a rotation (with the default overlap) when the CA is about to expire.
 * @throws Error when the stored files are incomplete or invalid (never silently replaced).
 */
export async function ensureCaFiles(
  files: CaFiles,
  now = Date.now(),
): Promise<{ files: CaFiles; changed: boolean }> {
  if (!files['ca.crt'] && !files['ca.key']) {
    const { certPem, keyPem } = await createCa(now);
    return { files: { 'ca.crt': certPem, 'ca.key': keyPem }, changed: true };
  }
  checkCaFiles(files);
  const cert = new X509Certificate(files['ca.crt']!);
  if (Date.parse(cert.validTo) > now + ROTATE_BEFORE_MS) return { files, changed: false };
  return { files: await rotateCaFiles(files, DEFAULT_OVERLAP_MS, now), changed: true };
}

/**
 * Reads an existing CA (the gateway's side: it never creates one).
 * @throws Error naming the missing file.
 */
export function loadCa(dir: string, now = Date.now()): CaMaterial {
  for (const f of ['ca.crt', 'ca.key']) {
    if (!existsSync(path.join(dir, f))) throw new Error(`CA file ${path.join(dir, f)} is missing`);
  }
  return readMaterial(dir, now);
}

/**
 * Loads the CA from `dir`, creating it on first use (and again when it has expired).
 * @throws Error when the files exist but cannot be read.
 */
export async function loadOrCreateCa(dir: string, now = Date.now()): Promise<CaMaterial> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certFile = path.join(dir, 'ca.crt');
  if (existsSync(certFile) && existsSync(path.join(dir, 'ca.key'))) {
    const cert = new X509Certificate(readFileSync(certFile));
    if (Date.parse(cert.validTo) > now + ROTATE_BEFORE_MS) return readMaterial(dir, now);
    return rotateCa(dir, DEFAULT_OVERLAP_MS, now);
  }
  const { certPem, keyPem } = await createCa(now);
  writeSecret(path.join(dir, 'ca.key'), keyPem);
  writeFileSync(certFile, certPem, { mode: 0o644 });
  return readMaterial(dir, now);
}

/**
 * Rotation with overlap: a new CA signs leaves from now on; the old certificate stays trusted for
 * `overlapMs` (so bundles already inside sandboxes, and leaves already issued, keep working).
 */
export async function rotateCa(
  dir: string,
  overlapMs = DEFAULT_OVERLAP_MS,
  now = Date.now(),
): Promise<CaMaterial> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certFile = path.join(dir, 'ca.crt');
  if (existsSync(certFile)) {
    writeFileSync(path.join(dir, 'previous.crt'), readFileSync(certFile));
    writeFileSync(path.join(dir, 'previous.expires'), String(now + overlapMs));
  }
  const { certPem, keyPem } = await createCa(now);
  writeSecret(path.join(dir, 'ca.key'), keyPem);
  writeFileSync(certFile, certPem, { mode: 0o644 });
  return readMaterial(dir, now);
}

/** The system trust store on Debian-like systems (the images' too). */
export const SYSTEM_ROOTS_FILE = '/etc/ssl/certs/ca-certificates.crt';

/**
 * The bundle sandboxes trust: the system roots (this machine's store, else Node's bundled Mozilla
 * roots) followed by `trustPem` (the Airlock CA, plus the previous one during an overlap).
 */
export function sandboxTrustBundle(trustPem: string, rootsFile = SYSTEM_ROOTS_FILE): string {
  const roots = existsSync(rootsFile) ? readFileSync(rootsFile, 'utf8') : tls.rootCertificates.join('\n');
  return `${roots.trimEnd()}\n${trustPem}`;
}

/** Imports the CA key and certificate for signing leaves. */
export async function caSigner(
  material: CaMaterial,
): Promise<{ cert: x509.X509Certificate; key: webcrypto.CryptoKey }> {
  const key = await webcrypto.subtle.importKey('pkcs8', unpem(material.keyPem), EC_ALGORITHM, false, [
    'sign',
  ]);
  return { cert: new x509.X509Certificate(material.certPem), key: key as webcrypto.CryptoKey };
}
