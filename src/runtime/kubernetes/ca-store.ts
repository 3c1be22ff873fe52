import { createHash, X509Certificate } from 'node:crypto';
import type { CoreV1Api, V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import {
  CA_FILE_NAMES,
  type CaFiles,
  type CaMaterial,
  ensureCaFiles,
  materialFromFiles,
  rotateCaFiles,
} from '../../pki/ca.js';
import { RuntimeError } from '../../errors.js';
import { isNotFound, kubeFailure } from '../../kube/client.js';
import { CA_FINGERPRINT_ANNOTATION, K8S_LABEL, MANAGED_BY, TRUST_BUNDLE_KEY } from '../../kube/labels.js';

/** Optimistic-concurrency retries when another writer updated the object between read and write. */
const WRITE_ATTEMPTS = 4;

/** A failed API call as RuntimeError (never a sandbox rejection: these are installation objects). */
function kubeError(what: string, err: unknown): RuntimeError {
  const f = kubeFailure(err);
  const status = f.status ? ` (HTTP ${f.status}${f.reason ? ` ${f.reason}` : ''})` : '';
  return new RuntimeError(`${what}: ${f.message}${status}`, { cause: err });
}

/** Hex SHA-256 of a PEM certificate's DER (what `openssl x509 -fingerprint -sha256` shows). */
export function caSha256(certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('hex');
}

/**
 * The installation CA kept in a Kubernetes Secret (docs/kubernetes.md, "HTTPS interception"): keys
 * `ca.crt`, `ca.key`, and after a rotation `previous.crt` / `previous.expires`, the same names as the
 * Docker mode's files, so the gateway Pods mount the Secret as their `caDir` unchanged.
 *
 * The chart creates the Secret empty (no key material in templates, and RBAC can then name it: the
 * control plane gets get/update on that one name, never create); the control plane generates the key
 * in-process on its first start and writes it with the read's resourceVersion, so two writers cannot
 * both win. Outside the chart, a missing Secret is created when the identity may do so.
 */
export class KubernetesCaStore {
  constructor(
    private readonly core: CoreV1Api,
    readonly namespace: string,
    readonly secretName: string,
  ) {}

  private get where(): string {
    return `Secret ${this.namespace}/${this.secretName}`;
  }

  /** The Secret, or null when it does not exist. @throws RuntimeError */
  private async readSecret(): Promise<V1Secret | null> {
    try {
      return await this.core.readNamespacedSecret({ name: this.secretName, namespace: this.namespace });
    } catch (err) {
      if (isNotFound(err)) return null;
      if (kubeFailure(err).status === 403)
        throw new RuntimeError(
          `this identity may not read the CA ${this.where} (${kubeFailure(err).message}). With the Helm chart ` +
            'the controller may get/update only the Secret its Role names: check runtime.kubernetes.ca.secretName ' +
            'and tls.existingCaSecret',
          { cause: err },
        );
      throw kubeError(`read the CA ${this.where}`, err);
    }
  }

  private static files(secret: V1Secret): CaFiles {
    const files: CaFiles = {};
    for (const name of CA_FILE_NAMES) {
      const b64 = secret.data?.[name];
      if (b64) files[name] = Buffer.from(b64, 'base64').toString('utf8');
    }
    return files;
  }

  /**
   * Writes `files` into the Secret read as `current` (null: create it). Keys of the Secret that are
   * not CA names are kept; CA names absent from `files` are removed.
   * @returns false on a conflict (someone else wrote first: read again).
   * @throws RuntimeError
   */
  private async write(current: V1Secret | null, files: CaFiles): Promise<boolean> {
    const data: Record<string, string> = {};
    for (const [k, v] of Object.entries(current?.data ?? {}))
      if (!(CA_FILE_NAMES as readonly string[]).includes(k)) data[k] = v;
    for (const name of CA_FILE_NAMES) {
      const v = files[name];
      if (v !== undefined) data[name] = Buffer.from(v, 'utf8').toString('base64');
    }
    const annotations = {
      ...(current?.metadata?.annotations ?? {}),
      [CA_FINGERPRINT_ANNOTATION]: caSha256(files['ca.crt']!),
    };
    try {
      if (current) {
        await this.core.replaceNamespacedSecret({
          name: this.secretName,
          namespace: this.namespace,
          body: { ...current, metadata: { ...current.metadata, annotations }, data },
        });
      } else {
        await this.core.createNamespacedSecret({
          namespace: this.namespace,
          body: {
            apiVersion: 'v1',
            kind: 'Secret',
            type: 'Opaque',
            metadata: {
              name: this.secretName,
              namespace: this.namespace,
              labels: { [K8S_LABEL.managedBy]: MANAGED_BY, [K8S_LABEL.component]: 'ca' },
              annotations,
            },
            data,
          },
        });
      }
      return true;
    } catch (err) {
      const f = kubeFailure(err);
      if (f.status === 409) return false;
      if (f.status === 403 && !current)
        throw new RuntimeError(
          `the CA ${this.where} does not exist and this identity may not create it (${f.message}). The Helm ` +
            'chart creates it empty; otherwise create an empty Opaque Secret of that name (the control plane ' +
            'fills it) or give the control plane create on secrets there',
          { cause: err },
        );
      throw kubeError(`write the CA ${this.where}`, err);
    }
  }

  /**
   * The CA, generated and stored on first use, rotated (with the default overlap) when it has less
   * than a day left, otherwise returned as stored. `changed` says whether this call wrote the Secret.
   * @throws RuntimeError when the Secret cannot be read or written, or holds an incomplete or
   * invalid CA (which is never replaced silently).
   */
  async ensure(now = Date.now()): Promise<{ material: CaMaterial; changed: boolean }> {
    for (let attempt = 1; ; attempt++) {
      const secret = await this.readSecret();
      const stored = secret ? KubernetesCaStore.files(secret) : {};
      let next: { files: CaFiles; changed: boolean };
      try {
        next = await ensureCaFiles(stored, now);
      } catch (err) {
        throw new RuntimeError(`the CA in ${this.where} is unusable: ${(err as Error).message}`, {
          cause: err,
        });
      }
      if (!next.changed) return { material: materialFromFiles(next.files, now), changed: false };
      if (await this.write(secret, next.files))
        return { material: materialFromFiles(next.files, now), changed: true };
      if (attempt >= WRITE_ATTEMPTS)
        throw new RuntimeError(`the CA ${this.where} kept changing while written`);
    }
  }

  /**
   * Replaces the CA now; the old certificate stays in the trust bundle for `overlapMs`.
   * @throws RuntimeError
   */
  async rotate(overlapMs: number, now = Date.now()): Promise<CaMaterial> {
    for (let attempt = 1; ; attempt++) {
      const secret = await this.readSecret();
      const files = await rotateCaFiles(secret ? KubernetesCaStore.files(secret) : {}, overlapMs, now);
      if (await this.write(secret, files)) return materialFromFiles(files, now);
      if (attempt >= WRITE_ATTEMPTS)
        throw new RuntimeError(`the CA ${this.where} kept changing while written`);
    }
  }
}

/**
 * Creates or updates the trust bundle ConfigMap `desired` (sandbox namespace) when its bundle differs.
 * @returns what was done.
 * @throws RuntimeError
 */
export async function syncTrustBundle(
  core: CoreV1Api,
  desired: V1ConfigMap,
): Promise<'created' | 'updated' | 'unchanged'> {
  const name = desired.metadata!.name!;
  const namespace = desired.metadata!.namespace!;
  for (let attempt = 1; ; attempt++) {
    let current: V1ConfigMap | null;
    try {
      current = await core.readNamespacedConfigMap({ name, namespace });
    } catch (err) {
      if (!isNotFound(err)) throw kubeError(`read the trust bundle ConfigMap ${namespace}/${name}`, err);
      current = null;
    }
    const want = desired.data?.[TRUST_BUNDLE_KEY];
    const fingerprint = desired.metadata?.annotations?.[CA_FINGERPRINT_ANNOTATION];
    if (
      current &&
      current.data?.[TRUST_BUNDLE_KEY] === want &&
      current.metadata?.annotations?.[CA_FINGERPRINT_ANNOTATION] === fingerprint
    )
      return 'unchanged';
    try {
      if (current) {
        await core.replaceNamespacedConfigMap({
          name,
          namespace,
          body: {
            ...current,
            metadata: {
              ...current.metadata,
              labels: { ...current.metadata?.labels, ...desired.metadata?.labels },
              annotations: { ...current.metadata?.annotations, ...desired.metadata?.annotations },
            },
            data: desired.data,
          },
        });
        return 'updated';
      }
      await core.createNamespacedConfigMap({ namespace, body: desired });
      return 'created';
    } catch (err) {
      if (kubeFailure(err).status !== 409 || attempt >= WRITE_ATTEMPTS)
        throw kubeError(`write the trust bundle ConfigMap ${namespace}/${name}`, err);
    }
  }
}
