/**
 * The upstream's test PKI for bench/tls/run.mjs: a throwaway CA and one nginx server certificate
 * (ECDSA P-256, as Airlock's own CA) for `upstream.test` and `*.bench.test`, written as PEM files.
 * The gateway trusts the CA through `upstreamCaPem`; the direct HTTPS path through `ca`.
 */
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY = 24 * 3600 * 1000;

const keyPem = async (key) => {
  const b64 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key))
    .toString('base64')
    .replace(/(.{64})/g, '$1\n');
  return `-----BEGIN PRIVATE KEY-----\n${b64.trimEnd()}\n-----END PRIVATE KEY-----\n`;
};

/**
 * @param {string} dir where the files go
 * @param {string[]} names DNS names of the server certificate (wildcards allowed)
 * @returns {Promise<{caPem: string, caFile: string, certFile: string, keyFile: string}>}
 */
export async function makeUpstreamPki(dir, names) {
  const now = Date.now();
  const caKeys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=Airlock bench upstream CA',
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 7 * DAY),
    signingAlgorithm: ALG,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8)
      .toString('hex')
      .replace(/^[89a-f]/, '1'),
    subject: `CN=${names[0]}`,
    issuer: ca.subject,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 7 * DAY),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: 'dns', value }))),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    ],
  });
  const caPem = ca.toString('pem') + '\n';
  const files = {
    caFile: path.join(dir, 'upstream-ca.pem'),
    certFile: path.join(dir, 'upstream.crt'),
    keyFile: path.join(dir, 'upstream.key'),
  };
  writeFileSync(files.caFile, caPem);
  writeFileSync(files.certFile, cert.toString('pem') + '\n');
  writeFileSync(files.keyFile, await keyPem(keys.privateKey), { mode: 0o600 });
  return { caPem, ...files };
}
