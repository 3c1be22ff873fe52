/**
 * Labels and annotations: the only state the Kubernetes runtime keeps, read back by the control plane
 * on restart (recovery by label) and by every gateway replica's Pod watch
 * (src/gateway/session-sources/kubernetes-pods.ts): the contract between the two, hence a leaf part.
 * Labels are for selection; data that breaks label syntax (hashes longer than 63 characters,
 * timestamps with colons, caller names) goes into annotations.
 */
export const K8S_LABEL = {
  /** `airlock` on everything the runtime creates. */
  managedBy: 'app.kubernetes.io/managed-by',
  /** `sandbox` on sandbox Pods and their Secrets and NetworkPolicies. */
  component: 'app.kubernetes.io/component',
  /** The installation (`runtime.kubernetes.instance`). */
  instance: 'airlock.io/instance',
  /** The session id, `s-` + 16 hex. */
  session: 'airlock.io/session',
  /**
   * Present (value `true`) once the session is revoked: every gateway replica refuses the session from
   * the moment its watch sees this, before the Pod is deleted.
   */
  revoked: 'airlock.io/revoked',
  /** Prefix of user labels given at session creation (`label.airlock.io/ticket: OPS-42`). */
  userPrefix: 'label.airlock.io/',
} as const;

export const K8S_ANNOTATION = {
  role: 'airlock.io/role',
  /** Hex SHA-256 of the session credential: what the gateways compare against. */
  credentialSha256: 'airlock.io/credential-sha256',
  createdAt: 'airlock.io/created-at',
  expiresAt: 'airlock.io/expires-at',
  createdBy: 'airlock.io/created-by',
  /** JSON object credential name → placeholder (docs/credentials.md "Placeholders"). */
  placeholders: 'airlock.io/placeholders',
} as const;

export const MANAGED_BY = 'airlock';
export const SANDBOX_COMPONENT = 'sandbox';
/** Name of the sandbox container in every session Pod. */
export const SANDBOX_CONTAINER = 'sandbox';
/** Scheduling gate that holds a prepared Pod until `start()` (Pods are gated, never half-started). */
export const START_GATE = 'airlock.io/start';
/** Key of the proxy URL (with the session credential) in the session Secret. */
export const SECRET_PROXY_URL_KEY = 'proxy-url';

/** `app.kubernetes.io/component` of the trust bundle ConfigMap. */
export const TRUST_COMPONENT = 'ca-bundle';
/** Where sandbox Pods see the trust bundle ConfigMap (read-only), and the bundle's key/file name. */
export const SANDBOX_TRUST_DIR = '/etc/airlock';
export const TRUST_BUNDLE_KEY = 'ca-bundle.pem';
export const SANDBOX_BUNDLE = `${SANDBOX_TRUST_DIR}/${TRUST_BUNDLE_KEY}`;
/** Annotation on the CA Secret and the bundle ConfigMap: SHA-256 fingerprint of the current CA. */
export const CA_FINGERPRINT_ANNOTATION = 'airlock.io/ca-sha256';

/** Pod, Secret and NetworkPolicy of a session share one name. */
export const sandboxObjectName = (sessionId: string): string => `airlock-${sessionId}`;

/** Label selector (string form) for every sandbox Pod of an installation. */
export function sandboxSelector(instance: string): string {
  return [
    `${K8S_LABEL.managedBy}=${MANAGED_BY}`,
    `${K8S_LABEL.component}=${SANDBOX_COMPONENT}`,
    `${K8S_LABEL.instance}=${instance}`,
  ].join(',');
}
