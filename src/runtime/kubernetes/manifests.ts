import type {
  V1ConfigMap,
  V1EnvVar,
  V1NetworkPolicy,
  V1OwnerReference,
  V1Pod,
  V1Secret,
} from '@kubernetes/client-node';
import type { Config } from '../../config/schema.js';
import type { SandboxSpec } from '../types.js';
import {
  CA_FINGERPRINT_ANNOTATION,
  K8S_ANNOTATION,
  K8S_LABEL,
  MANAGED_BY,
  SANDBOX_BUNDLE,
  SANDBOX_COMPONENT,
  SANDBOX_CONTAINER,
  SANDBOX_TRUST_DIR,
  SECRET_PROXY_URL_KEY,
  START_GATE,
  TRUST_BUNDLE_KEY,
  TRUST_COMPONENT,
  sandboxObjectName,
} from '../../kube/labels.js';

/** The slice of the config the manifests depend on. */
export interface ManifestSettings {
  kubernetes: Config['runtime']['kubernetes'];
  resources: Config['runtime']['resources'];
  /** Gateway proxy port (`gateway.port`). */
  gatewayPort: number;
  /**
   * HTTPS interception (`gateway.tls.intercept`): the trust bundle ConfigMap every sandbox Pod mounts at
   * /etc/airlock. Null: no interception, no bundle.
   */
  trustBundleConfigMap: string | null;
}

/**
 * What points clients at the trust bundle (the same as the Docker runtime's): OpenSSL (curl, git,
 * Python's ssl), requests, Node, and `NODE_USE_ENV_PROXY` so Node's fetch uses the proxy variables.
 */
export function trustEnv(): V1EnvVar[] {
  return [
    { name: 'SSL_CERT_FILE', value: SANDBOX_BUNDLE },
    { name: 'NODE_EXTRA_CA_CERTS', value: SANDBOX_BUNDLE },
    { name: 'REQUESTS_CA_BUNDLE', value: SANDBOX_BUNDLE },
    { name: 'CURL_CA_BUNDLE', value: SANDBOX_BUNDLE },
    { name: 'GIT_SSL_CAINFO', value: SANDBOX_BUNDLE },
    { name: 'NODE_USE_ENV_PROXY', value: '1' },
  ];
}

/** Labels every object of a session carries (selection; see labels.ts). */
export function sessionLabels(
  spec: Pick<SandboxSpec, 'sessionId'>,
  instance: string,
): Record<string, string> {
  return {
    [K8S_LABEL.managedBy]: MANAGED_BY,
    [K8S_LABEL.component]: SANDBOX_COMPONENT,
    [K8S_LABEL.instance]: instance,
    [K8S_LABEL.session]: spec.sessionId,
  };
}

/**
 * The proxy URL a sandbox uses: `http://<session-id>:<credential>@<gatewayHost>:<port>`. `gatewayHost` is
 * an address (the control plane resolves the gateway Service name), so the sandbox needs no DNS.
 */
export function proxyUrl(sessionId: string, credential: string, gatewayHost: string, port: number): string {
  const host = gatewayHost.includes(':') ? `[${gatewayHost}]` : gatewayHost;
  return `http://${encodeURIComponent(sessionId)}:${encodeURIComponent(credential)}@${host}:${port}`;
}

/** CPU cores as a Kubernetes quantity in millicores (`1.5` → `1500m`). */
export function cpuQuantity(cores: number): string {
  return `${Math.max(1, Math.round(cores * 1000))}m`;
}

/**
 * The session Pod: created gated (`schedulingGates`), so nothing runs before `start()` removes the gate
 * and the Secret and NetworkPolicy exist. Hardening (DESIGN.md property 8, docs/kubernetes.md):
 * non-root uid, no privilege escalation, every capability dropped, seccomp RuntimeDefault, read-only
 * root filesystem with emptyDirs for /tmp and the workdir, no ServiceAccount token, no Service
 * environment variables, no host namespaces. The proxy variables come from the session Secret. With
 * interception, the trust bundle ConfigMap is mounted read-only at /etc/airlock and named by the
 * variables of trustEnv (the image's system store cannot be replaced under a read-only root).
 */
export function sandboxPod(spec: SandboxSpec, s: ManifestSettings): V1Pod {
  const k = s.kubernetes;
  const name = sandboxObjectName(spec.sessionId);
  const labels: Record<string, string> = { ...sessionLabels(spec, k.instance) };
  for (const [key, value] of Object.entries(spec.labels)) labels[K8S_LABEL.userPrefix + key] = value;
  const fromSecret = (envName: string) => ({
    name: envName,
    valueFrom: { secretKeyRef: { name, key: SECRET_PROXY_URL_KEY } },
  });
  const limits = { cpu: cpuQuantity(s.resources.cpus), memory: `${s.resources.memoryMiB}Mi` };
  const trust = s.trustBundleConfigMap;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: k.sandboxNamespace,
      labels,
      annotations: {
        [K8S_ANNOTATION.role]: spec.role,
        [K8S_ANNOTATION.credentialSha256]: spec.credentialSha256,
        [K8S_ANNOTATION.createdAt]: spec.createdAt.toISOString(),
        [K8S_ANNOTATION.expiresAt]: spec.expiresAt.toISOString(),
        [K8S_ANNOTATION.createdBy]: spec.createdBy,
        ...(spec.placeholders && Object.keys(spec.placeholders).length > 0
          ? { [K8S_ANNOTATION.placeholders]: JSON.stringify(spec.placeholders) }
          : {}),
      },
    },
    spec: {
      schedulingGates: [{ name: START_GATE }],
      restartPolicy: 'Never',
      serviceAccountName: k.serviceAccountName,
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      hostNetwork: false,
      hostPID: false,
      hostIPC: false,
      terminationGracePeriodSeconds: 5,
      ...(k.runtimeClassName ? { runtimeClassName: k.runtimeClassName } : {}),
      securityContext: {
        runAsNonRoot: true,
        runAsUser: k.runAsUser,
        runAsGroup: k.runAsGroup,
        fsGroup: k.runAsGroup,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containers: [
        {
          name: SANDBOX_CONTAINER,
          image: spec.image,
          imagePullPolicy: 'IfNotPresent',
          workingDir: k.workdir,
          env: [
            ...Object.entries(spec.env).map(([n, value]) => ({ name: n, value })),
            fromSecret('HTTP_PROXY'),
            fromSecret('HTTPS_PROXY'),
            fromSecret('http_proxy'),
            fromSecret('https_proxy'),
            { name: 'NO_PROXY', value: '' },
            { name: 'no_proxy', value: '' },
            ...(trust ? trustEnv() : []),
            { name: 'AIRLOCK_SESSION_ID', value: spec.sessionId },
          ],
          resources: { limits, requests: limits },
          securityContext: {
            runAsNonRoot: true,
            allowPrivilegeEscalation: false,
            privileged: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
            seccompProfile: { type: 'RuntimeDefault' },
          },
          volumeMounts: [
            { name: 'tmp', mountPath: '/tmp' },
            { name: 'work', mountPath: k.workdir },
            ...(trust ? [{ name: 'airlock-trust', mountPath: SANDBOX_TRUST_DIR, readOnly: true }] : []),
          ],
        },
      ],
      volumes: [
        { name: 'tmp', emptyDir: { sizeLimit: `${k.scratchMiB}Mi` } },
        { name: 'work', emptyDir: { sizeLimit: `${k.scratchMiB}Mi` } },
        ...(trust
          ? [
              {
                name: 'airlock-trust',
                configMap: {
                  name: trust,
                  items: [{ key: TRUST_BUNDLE_KEY, path: TRUST_BUNDLE_KEY }],
                  defaultMode: 0o444,
                },
              },
            ]
          : []),
      ],
    },
  };
}

/** Owner reference to the session Pod: the Secret and NetworkPolicy are garbage-collected with it. */
export function podOwner(pod: V1Pod): V1OwnerReference {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    name: pod.metadata?.name ?? '',
    uid: pod.metadata?.uid ?? '',
    controller: false,
    blockOwnerDeletion: false,
  };
}

/** The session Secret: the proxy URL with the credential, read by the Pod's env (secretKeyRef). */
export function sandboxSecret(
  spec: SandboxSpec,
  s: ManifestSettings,
  gatewayHost: string,
  owner: V1OwnerReference,
): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    immutable: true,
    metadata: {
      name: sandboxObjectName(spec.sessionId),
      namespace: s.kubernetes.sandboxNamespace,
      labels: sessionLabels(spec, s.kubernetes.instance),
      ownerReferences: [owner],
    },
    stringData: {
      [SECRET_PROXY_URL_KEY]: proxyUrl(spec.sessionId, spec.credential, gatewayHost, s.gatewayPort),
    },
  };
}

/**
 * The session NetworkPolicy: egress from this Pod only to the gateway Pods' proxy port (and to the
 * cluster DNS when `dns.enabled`), no ingress. With the namespace's default-deny policy (the chart's)
 * this is the Pod's only way out. Only enforced when the cluster's network plugin enforces
 * NetworkPolicy (docs/kubernetes.md).
 */
export function sandboxNetworkPolicy(
  spec: SandboxSpec,
  s: ManifestSettings,
  owner: V1OwnerReference,
): V1NetworkPolicy {
  const k = s.kubernetes;
  const egress: NonNullable<V1NetworkPolicy['spec']>['egress'] = [
    {
      to: [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': k.gatewayNamespace } },
          podSelector: { matchLabels: { ...k.gatewayPodLabels } },
        },
      ],
      ports: [{ protocol: 'TCP', port: s.gatewayPort }],
    },
  ];
  if (k.dns.enabled) {
    egress.push({
      to: [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': k.dns.namespace } },
          podSelector: { matchLabels: { ...k.dns.podLabels } },
        },
      ],
      ports: [
        { protocol: 'UDP', port: 53 },
        { protocol: 'TCP', port: 53 },
      ],
    });
  }
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: {
      name: sandboxObjectName(spec.sessionId),
      namespace: k.sandboxNamespace,
      labels: sessionLabels(spec, k.instance),
      ownerReferences: [owner],
    },
    spec: {
      podSelector: { matchLabels: { [K8S_LABEL.session]: spec.sessionId, [K8S_LABEL.instance]: k.instance } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [],
      egress,
    },
  };
}

/**
 * The sandbox namespace's trust bundle: certificates only (system roots + the Airlock CA, plus the
 * previous CA during a rotation overlap). The CA's private key never leaves the release namespace.
 */
export function trustBundleConfigMap(
  name: string,
  s: Pick<ManifestSettings, 'kubernetes'>,
  bundlePem: string,
  caSha256: string,
): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name,
      namespace: s.kubernetes.sandboxNamespace,
      labels: {
        [K8S_LABEL.managedBy]: MANAGED_BY,
        [K8S_LABEL.component]: TRUST_COMPONENT,
        [K8S_LABEL.instance]: s.kubernetes.instance,
      },
      annotations: { [CA_FINGERPRINT_ANNOTATION]: caSha256 },
    },
    data: { [TRUST_BUNDLE_KEY]: bundlePem },
  };
}
