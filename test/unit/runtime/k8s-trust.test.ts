/**
 * HTTPS interception on Kubernetes, the pure parts: the CA kept as name -> text (the CA Secret's keys),
 * created once, reused, rotated near expiry with overlap, never silently replaced when invalid; and the
 * sandbox Pod's trust bundle mount and variables (with and without interception). The API-server side
 * is test/integration/k8s-tls.test.ts.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import {
  CA_VALIDITY_MS,
  DEFAULT_OVERLAP_MS,
  ensureCaFiles,
  materialFromFiles,
  rotateCaFiles,
} from '../../../src/pki/ca.js';
import {
  sandboxPod,
  trustBundleConfigMap,
  type ManifestSettings,
} from '../../../src/runtime/kubernetes/manifests.js';
import type { SandboxSpec } from '../../../src/runtime/types.js';

const spec: SandboxSpec = {
  sessionId: 's-0000000000000001',
  role: 'reader',
  image: 'airlock-sandbox:dev',
  env: {},
  credential: 'c',
  credentialSha256: 'a'.repeat(64),
  createdAt: new Date(0),
  expiresAt: new Date(60_000),
  createdBy: 'tester',
  labels: {},
};

function settings(trustBundleConfigMap: string | null): ManifestSettings {
  const cfg = parseConfig({ runtime: { kind: 'kubernetes' } }, '/tmp');
  return {
    kubernetes: cfg.runtime.kubernetes,
    resources: cfg.runtime.resources,
    gatewayPort: 3128,
    trustBundleConfigMap,
  };
}

describe('the CA as Secret keys', () => {
  it('is created when there is none, then reused unchanged', async () => {
    const now = Date.now();
    const created = await ensureCaFiles({}, now);
    expect(created.changed).toBe(true);
    expect(Object.keys(created.files).sort()).toEqual(['ca.crt', 'ca.key']);
    const again = await ensureCaFiles(created.files, now + 1000);
    expect(again).toEqual({ files: created.files, changed: false });
  });

  it('is rotated with an overlap when less than a day is left; the bundle holds both until it ends', async () => {
    const t0 = Date.now();
    const { files } = await ensureCaFiles({}, t0);
    const late = t0 + CA_VALIDITY_MS - 3600_000;
    const rotated = await ensureCaFiles(files, late);
    expect(rotated.changed).toBe(true);
    expect(rotated.files['previous.crt']).toBe(files['ca.crt']);
    expect(Number(rotated.files['previous.expires'])).toBe(late + DEFAULT_OVERLAP_MS);
    expect(materialFromFiles(rotated.files, late).trustPem).toBe(rotated.files['ca.crt']! + files['ca.crt']!);
    expect(materialFromFiles(rotated.files, late + DEFAULT_OVERLAP_MS + 1).trustPem).toBe(
      rotated.files['ca.crt'],
    );
    const manual = await rotateCaFiles(rotated.files, 1000, late);
    expect(manual['previous.crt']).toBe(rotated.files['ca.crt']);
    expect(new X509Certificate(manual['ca.crt']!).ca).toBe(true);
  });

  it('refuses incomplete or foreign material instead of replacing it', async () => {
    const { files } = await ensureCaFiles({});
    const other = await ensureCaFiles({});
    await expect(ensureCaFiles({ 'ca.crt': files['ca.crt']! })).rejects.toThrow(/needs both/);
    await expect(
      ensureCaFiles({ 'ca.crt': files['ca.crt']!, 'ca.key': other.files['ca.key']! }),
    ).rejects.toThrow(/does not belong/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    await expect(ensureCaFiles({ 'ca.crt': files['ca.crt']!, 'ca.key': rsa })).rejects.toThrow(/P-256/);
  });
});

describe('sandbox Pod trust (manifests)', () => {
  it('with interception: the bundle ConfigMap read-only at /etc/airlock and the trust variables', () => {
    const pod = sandboxPod(spec, settings('airlock-ca-bundle'));
    const c = pod.spec!.containers[0]!;
    expect(c.volumeMounts).toContainEqual({
      name: 'airlock-trust',
      mountPath: '/etc/airlock',
      readOnly: true,
    });
    expect(pod.spec!.volumes).toContainEqual({
      name: 'airlock-trust',
      configMap: {
        name: 'airlock-ca-bundle',
        items: [{ key: 'ca-bundle.pem', path: 'ca-bundle.pem' }],
        defaultMode: 0o444,
      },
    });
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      SSL_CERT_FILE: '/etc/airlock/ca-bundle.pem',
      NODE_EXTRA_CA_CERTS: '/etc/airlock/ca-bundle.pem',
      REQUESTS_CA_BUNDLE: '/etc/airlock/ca-bundle.pem',
      CURL_CA_BUNDLE: '/etc/airlock/ca-bundle.pem',
      GIT_SSL_CAINFO: '/etc/airlock/ca-bundle.pem',
      NODE_USE_ENV_PROXY: '1',
    });
  });

  it('without interception: no bundle, no variables', () => {
    const pod = sandboxPod(spec, settings(null));
    expect(JSON.stringify(pod)).not.toMatch(/airlock-trust|SSL_CERT_FILE|NODE_USE_ENV_PROXY/);
  });

  it('the bundle ConfigMap carries certificates only, labelled for the installation', () => {
    const cm = trustBundleConfigMap('airlock-ca-bundle', settings('x'), 'PEM', 'f'.repeat(64));
    expect(cm.metadata).toMatchObject({
      namespace: 'airlock-sandboxes',
      labels: { 'app.kubernetes.io/component': 'ca-bundle', 'airlock.io/instance': 'airlock' },
      annotations: { 'airlock.io/ca-sha256': 'f'.repeat(64) },
    });
    expect(cm.data).toEqual({ 'ca-bundle.pem': 'PEM' });
  });
});
