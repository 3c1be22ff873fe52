/**
 * charts/airlock with the real helm (built by scripts/k8s-tools.sh): lint and template every
 * ci/*-values.yaml scenario, validate every rendered object against the Kubernetes OpenAPI schemas
 * (kubernetes-models), check the secure defaults, and check that bad values fail on the chart's schema
 * naming the key path. No cluster needed (see k8s-cluster.test.ts for the install).
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { parseGatewayServiceConfig } from '../../src/gateway-wire/config.js';
import { helm, k8sTools, repoRoot, type K8sTools } from '../helpers/k8s.js';

const chart = path.join(repoRoot, 'charts/airlock');
const scenarios = readdirSync(path.join(chart, 'ci'))
  .filter((f) => f.endsWith('-values.yaml'))
  .sort();

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: Record<string, unknown>;
  [k: string]: unknown;
}

let tools: K8sTools;
let setupError: unknown = null;

beforeAll(() => {
  try {
    tools = k8sTools(); // throws with "run bash scripts/k8s-tools.sh" when the tools are missing
  } catch (err) {
    setupError = err;
  }
});

// Missing tools fail every test here (never a silent skip).
beforeEach(() => {
  if (setupError) throw setupError;
});

async function render(args: string[]): Promise<K8sObject[]> {
  const out = await helm(tools, ['template', 'airlock', chart, '--namespace', 'airlock', ...args]);
  return YAML.parseAllDocuments(out)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

/** Validates an object with kubernetes-models (the Kubernetes OpenAPI schema of its apiVersion/kind). */
async function validate(obj: K8sObject): Promise<void> {
  const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
  // The Prometheus Operator's CRDs (ServiceMonitor) have their models in a package of their own.
  const pkg =
    group === 'monitoring.coreos.com' ? '@kubernetes-models/prometheus-operator' : 'kubernetes-models';
  const mod = (await import(`${pkg}/${group ? `${group}/` : ''}${version}`)) as Record<
    string,
    new (o: unknown) => { validate(): void }
  >;
  const Model = mod[obj.kind];
  expect(Model, `kubernetes-models has ${obj.apiVersion} ${obj.kind}`).toBeDefined();
  new Model!(obj).validate();
}

const byKind = (objs: K8sObject[], kind: string): K8sObject[] => objs.filter((o) => o.kind === kind);
const one = (objs: K8sObject[], kind: string, name: string): K8sObject => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  expect(o, `${kind} ${name}`).toBeDefined();
  return o!;
};

describe('charts/airlock (helm, no cluster)', () => {
  it('has ci scenarios', () => {
    expect(scenarios.length).toBeGreaterThanOrEqual(4);
  });

  it.each(scenarios)('helm lint --strict passes with ci/%s', async (file) => {
    const out = await helm(tools, ['lint', '--strict', chart, '-f', path.join(chart, 'ci', file)]);
    expect(out).toContain('0 chart(s) failed');
  });

  it.each(scenarios)(
    'every object rendered with ci/%s is valid against the Kubernetes schemas',
    async (file) => {
      const objs = await render(['-f', path.join(chart, 'ci', file)]);
      expect(objs.length).toBeGreaterThan(10);
      for (const o of objs) {
        await validate(o);
        expect(o.metadata.name.length, `${o.kind} ${o.metadata.name}`).toBeLessThanOrEqual(63);
        expect(o.metadata.labels?.['app.kubernetes.io/managed-by'], `${o.kind} ${o.metadata.name}`).toBe(
          'Helm',
        );
        expect(o.metadata.labels?.['helm.sh/chart']).toMatch(/^airlock-/);
      }
      // Nothing cluster-wide except (optionally) the sandbox namespace.
      expect(objs.filter((o) => ['ClusterRole', 'ClusterRoleBinding'].includes(o.kind))).toEqual([]);
    },
  );

  it('validation catches a broken object (the validator is not a no-op)', async () => {
    await expect(
      validate({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'x' },
        spec: { replicas: 'two' },
      }),
    ).rejects.toThrow(/replicas/);
  });

  describe('defaults', () => {
    let objs: K8sObject[];
    beforeAll(async () => {
      if (!setupError) objs = await render([]);
    });

    it('runs every Pod hardened: non-root, seccomp, no privilege escalation, drop ALL, read-only root', () => {
      const pods = [
        ...byKind(objs, 'Deployment').map((d) => (d.spec as { template: { spec: PodSpec } }).template.spec),
        ...byKind(objs, 'Pod').map((p) => p.spec as unknown as PodSpec),
      ];
      expect(pods).toHaveLength(3);
      for (const p of pods) {
        expect(p.securityContext).toMatchObject({
          runAsNonRoot: true,
          seccompProfile: { type: 'RuntimeDefault' },
        });
        for (const c of [...(p.initContainers ?? []), ...p.containers]) {
          expect(c.securityContext, c.name).toMatchObject({
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            privileged: false,
            capabilities: { drop: ['ALL'] },
          });
        }
      }
    });

    it('gateway: 2 replicas, a PodDisruptionBudget, a headless admin Service for every replica', () => {
      const gw = one(objs, 'Deployment', 'airlock-gateway');
      expect((gw.spec as { replicas: number }).replicas).toBe(2);
      const pdb = one(objs, 'PodDisruptionBudget', 'airlock-gateway');
      expect(pdb.spec).toMatchObject({
        minAvailable: 1,
        selector: { matchLabels: { 'app.kubernetes.io/component': 'gateway' } },
      });
      const admin = one(objs, 'Service', 'airlock-gateway-admin');
      expect(admin.spec).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true });
      const cfg = JSON.parse(
        (gw.spec as { template: { spec: PodSpec } }).template.spec.containers[0]!.env!.find(
          (e) => e.name === 'AIRLOCK_GATEWAY_CONFIG',
        )!.value!,
      ) as { sessionSource: unknown };
      expect(cfg.sessionSource).toEqual({
        kind: 'kubernetes',
        namespace: 'airlock-sandboxes',
        instance: 'airlock',
      });
    });

    it('RBAC: Roles in the sandbox namespace, plus the CA Secret by name in the release namespace', () => {
      const roles = byKind(objs, 'Role');
      expect(roles.map((r) => `${r.metadata.namespace}/${r.metadata.name}`).sort()).toEqual([
        'airlock-sandboxes/airlock-controller',
        'airlock-sandboxes/airlock-gateway',
        'airlock/airlock-controller-ca',
      ]);
      const controller = one(objs, 'Role', 'airlock-controller') as unknown as { rules: Rule[] };
      expect(controller.rules).toEqual([
        { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'create', 'patch', 'delete'] },
        { apiGroups: [''], resources: ['pods/exec'], verbs: ['get', 'create'] },
        { apiGroups: [''], resources: ['secrets'], verbs: ['create', 'delete'] },
        { apiGroups: ['networking.k8s.io'], resources: ['networkpolicies'], verbs: ['create', 'delete'] },
        { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
        {
          apiGroups: [''],
          resources: ['configmaps'],
          resourceNames: ['airlock-ca-bundle'],
          verbs: ['get', 'update'],
        },
      ]);
      const ca = one(objs, 'Role', 'airlock-controller-ca') as unknown as { rules: Rule[] };
      expect(ca.rules).toEqual([
        { apiGroups: [''], resources: ['secrets'], resourceNames: ['airlock-ca'], verbs: ['get', 'update'] },
      ]);
      const gateway = one(objs, 'Role', 'airlock-gateway') as unknown as { rules: Rule[] };
      expect(gateway.rules).toEqual([
        { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
      ]);
      expect(
        byKind(objs, 'RoleBinding')
          .map((rb) => `${rb.metadata.namespace}/${rb.metadata.name}`)
          .sort(),
      ).toEqual([
        'airlock-sandboxes/airlock-controller',
        'airlock-sandboxes/airlock-gateway',
        'airlock/airlock-controller-ca',
      ]);
    });

    it('gateway Service: ClientIP session affinity, so one sandbox stays on one replica (MCP tool pins)', () => {
      const svc = one(objs, 'Service', 'airlock-gateway') as unknown as {
        spec: {
          sessionAffinity?: string;
          sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
        };
      };
      expect(svc.spec.sessionAffinity).toBe('ClientIP');
      expect(svc.spec.sessionAffinityConfig?.clientIP?.timeoutSeconds).toBe(86400);
    });

    it('sandbox namespace: Pod Security restricted and a default-deny NetworkPolicy', () => {
      const ns = one(objs, 'Namespace', 'airlock-sandboxes');
      expect(ns.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
      const np = one(objs, 'NetworkPolicy', 'airlock-sandbox-deny');
      expect(np.metadata.namespace).toBe('airlock-sandboxes');
      expect(np.spec).toEqual({ podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
      // Issue 16: kept on uninstall like the namespace, so no running sandbox loses its default deny.
      expect(np.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
    });

    // Issue 16: the controller never got Ready on a real cluster because these names lacked the
    // cluster domain and were resolved with resolve4 (no search list). Rendered fully qualified now.
    it('controller config: gateway Service names fully qualified with clusterDomain', async () => {
      const cfg = (o: K8sObject[]): string =>
        (one(o, 'ConfigMap', 'airlock-controller') as unknown as { data: Record<string, string> }).data[
          'config.yaml'
        ]!;
      expect(cfg(objs)).toContain('gatewayService: airlock-gateway.airlock.svc.cluster.local\n');
      expect(cfg(objs)).toContain('service: airlock-gateway-admin.airlock.svc.cluster.local\n');
      const custom = await render(['--set', 'clusterDomain=corp.internal']);
      expect(cfg(custom)).toContain('gatewayService: airlock-gateway.airlock.svc.corp.internal\n');
      await expect(render(['--set', 'clusterDomain=Bad_Domain'])).rejects.toThrow(/clusterDomain/);
    });

    it('policies: a ConfigMap built from policies/, tests/ mapped back into a directory', () => {
      const cm = one(objs, 'ConfigMap', 'airlock-policies') as unknown as { data: Record<string, string> };
      expect(Object.keys(cm.data).sort()).toEqual([
        'model.conf',
        'policy.csv',
        'tests__etcd.yaml',
        'tests__forum.yaml',
      ]);
      expect(cm.data['policy.csv']).toContain('g, analyst, base');
      const gw = one(objs, 'Deployment', 'airlock-gateway');
      const vol = (
        gw.spec as {
          template: { spec: { volumes: Array<{ name: string; configMap?: { items: unknown[] } }> } };
        }
      ).template.spec.volumes.find((v) => v.name === 'policies');
      expect(vol?.configMap?.items).toContainEqual({ key: 'tests__forum.yaml', path: 'tests/forum.yaml' });
    });

    it('the API token lives in a Secret, referenced by the controller', () => {
      const secret = one(objs, 'Secret', 'airlock-tokens') as unknown as { data: Record<string, string> };
      expect(Buffer.from(secret.data['api-token']!, 'base64').toString().length).toBeGreaterThanOrEqual(32);
      const ctl = one(objs, 'Deployment', 'airlock-controller');
      expect(JSON.stringify(ctl.spec)).toContain(
        '"secretKeyRef":{"name":"airlock-tokens","key":"api-token"}',
      );
    });

    it('has a helm test Pod', () => {
      const t = byKind(objs, 'Pod')[0]!;
      expect(t.metadata).toMatchObject({ annotations: { 'helm.sh/hook': 'test' } });
      // `helm test --logs` reads the log after the Pod ended: it must not be deleted on success.
      expect(t.metadata.annotations?.['helm.sh/hook-delete-policy']).toBe('before-hook-creation');
      const script = JSON.stringify(t.spec);
      expect(script).toContain('airlock-gateway-admin.airlock.svc.cluster.local');
      expect(script).not.toContain('resolve4');
    });
  });

  describe('HTTPS interception (tls.*)', () => {
    const gatewayPod = (objs: K8sObject[]): PodSpec =>
      (one(objs, 'Deployment', 'airlock-gateway').spec as { template: { spec: PodSpec } }).template.spec;
    const gatewayConfig = (objs: K8sObject[]): Record<string, unknown> =>
      JSON.parse(
        gatewayPod(objs).containers[0]!.env!.find((e) => e.name === 'AIRLOCK_GATEWAY_CONFIG')!.value!,
      ) as Record<string, unknown>;
    const controllerConfig = (objs: K8sObject[]): { gateway: unknown; runtime: { kubernetes: unknown } } =>
      YAML.parse(
        (one(objs, 'ConfigMap', 'airlock-controller') as unknown as { data: Record<string, string> }).data[
          'config.yaml'
        ]!,
      ) as { gateway: unknown; runtime: { kubernetes: unknown } };

    it('default: an empty CA Secret kept on uninstall, no key material anywhere in the chart', async () => {
      const objs = await render([]);
      const secret = one(objs, 'Secret', 'airlock-ca');
      expect(secret.metadata).toMatchObject({
        namespace: 'airlock',
        annotations: { 'helm.sh/resource-policy': 'keep' },
      });
      expect(secret.type).toBe('Opaque');
      expect(secret.data).toBeUndefined();
      expect(secret.stringData).toBeUndefined();
      const all = await helm(tools, ['template', 'airlock', chart, '--namespace', 'airlock']);
      expect(all).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
      // Nothing in the sandbox namespace refers to the CA Secret.
      for (const o of objs.filter((x) => x.metadata.namespace === 'airlock-sandboxes'))
        expect(JSON.stringify(o), `${o.kind} ${o.metadata.name}`).not.toContain('airlock-ca"');
    });

    it('default: the gateway container alone mounts the CA Secret read-only (0400) and gets caDir', async () => {
      const objs = await render(['-f', path.join(chart, 'ci/git-policies-values.yaml')]);
      const pod = gatewayPod(objs);
      const vol = pod.volumes?.find((v) => v.name === 'ca');
      expect(vol?.projected).toEqual({ defaultMode: 0o400, sources: [{ secret: { name: 'airlock-ca' } }] });
      expect(pod.securityContext).toMatchObject({ runAsUser: 10002, fsGroup: 10002 });
      const [gateway, ...others] = pod.containers;
      expect(gateway!.volumeMounts).toContainEqual({
        name: 'ca',
        mountPath: '/etc/airlock/ca',
        readOnly: true,
      });
      for (const c of [...others, ...(pod.initContainers ?? [])])
        expect(c.volumeMounts?.map((m) => m.name) ?? [], c.name).not.toContain('ca');
      expect(gatewayConfig(objs)).toMatchObject({
        caDir: '/etc/airlock/ca',
        caWaitSeconds: 280,
        caReloadSeconds: 30,
        passthrough: [],
        leafCacheSize: 1000,
      });
      expect(gatewayConfig(objs).upstreamCaFile).toBeUndefined();
      // A startup probe covers the wait for the CA on a fresh install.
      expect(gateway!.startupProbe).toMatchObject({ httpGet: { path: '/healthz', port: 'admin' } });
      expect(controllerConfig(objs)).toMatchObject({
        gateway: { tls: { intercept: true } },
        runtime: {
          kubernetes: {
            ca: { secretName: 'airlock-ca', bundleConfigMap: 'airlock-ca-bundle', resyncSeconds: 300 },
          },
        },
      });
    });

    it('hardened: upstream CAs from a Secret, passthrough hosts, cache size', async () => {
      const objs = await render(['-f', path.join(chart, 'ci/hardened-values.yaml')]);
      const pod = gatewayPod(objs);
      expect(pod.volumes?.find((v) => v.name === 'upstream-ca')?.secret).toEqual({
        secretName: 'corp-root-ca',
        defaultMode: 0o444,
        items: [{ key: 'root.pem', path: 'ca.pem' }],
      });
      expect(pod.containers[0]!.volumeMounts).toContainEqual({
        name: 'upstream-ca',
        mountPath: '/etc/airlock/upstream-ca',
        readOnly: true,
      });
      expect(gatewayConfig(objs)).toMatchObject({
        upstreamCaFile: '/etc/airlock/upstream-ca/ca.pem',
        passthrough: ['pinned.example.com', 'registry.internal:5000'],
        leafCacheSize: 5000,
        caReloadSeconds: 60,
      });
    });

    it('existing-objects: an operator-made CA Secret is named in RBAC and mounts, not created', async () => {
      const objs = await render(['-f', path.join(chart, 'ci/existing-objects-values.yaml')]);
      expect(byKind(objs, 'Secret')).toEqual([]);
      const ca = one(objs, 'Role', 'airlock-controller-ca') as unknown as { rules: Rule[] };
      expect(ca.rules[0]?.resourceNames).toEqual(['airlock-ca']);
      expect(JSON.stringify(gatewayPod(objs))).toContain('"secret":{"name":"airlock-ca"}');
    });

    it('no-intercept: no CA Secret, no caDir, no configmaps rights, nothing in the release namespace', async () => {
      const objs = await render(['-f', path.join(chart, 'ci/no-intercept-values.yaml')]);
      expect(objs.find((o) => o.kind === 'Secret' && o.metadata.name === 'airlock-ca')).toBeUndefined();
      expect(byKind(objs, 'Role').map((r) => r.metadata.namespace)).toEqual([
        'airlock-sandboxes',
        'airlock-sandboxes',
      ]);
      const controller = one(objs, 'Role', 'airlock-controller') as unknown as { rules: Rule[] };
      expect(controller.rules.flatMap((r) => r.resources)).not.toContain('configmaps');
      expect(gatewayConfig(objs).caDir).toBeUndefined();
      expect(JSON.stringify(gatewayPod(objs).volumes ?? [])).not.toContain('airlock-ca');
      expect(controllerConfig(objs)).toMatchObject({ gateway: { tls: { intercept: false } } });
    });
  });

  it('images: registry/repository:tag@digest', async () => {
    const objs = await render(['-f', path.join(chart, 'ci/hardened-values.yaml')]);
    const gw = one(objs, 'Deployment', 'airlock-gateway');
    expect((gw.spec as { template: { spec: PodSpec } }).template.spec.containers[0]!.image).toBe(
      'registry.example.com/platform/airlock-gateway:0.1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
    );
    const cm = one(objs, 'ConfigMap', 'airlock-controller') as unknown as { data: Record<string, string> };
    const cfg = YAML.parse(cm.data['config.yaml']!) as {
      runtime: { sandboxImage: string; kubernetes: Record<string, unknown> };
    };
    expect(cfg.runtime.sandboxImage).toMatch(
      /^registry\.example\.com\/platform\/airlock-sandbox:0\.1\.0@sha256:/,
    );
    expect(cfg.runtime.kubernetes).toMatchObject({ runtimeClassName: 'gvisor', dns: { enabled: true } });
  });

  it('names stay valid DNS labels for the longest release name helm allows (53 characters)', async () => {
    const release = 'a'.repeat(53);
    const out = await helm(tools, ['template', release, chart, '--namespace', 'airlock']);
    const objs = YAML.parseAllDocuments(out).map((d) => d.toJS() as K8sObject);
    for (const o of objs.filter(Boolean)) {
      expect(o.metadata.name.length, o.metadata.name).toBeLessThanOrEqual(63);
      expect(o.metadata.name).toMatch(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/);
    }
  });

  it('gateway.workers reaches the gateway config (default 1: one process per Pod)', async () => {
    const workersOf = (objs: K8sObject[]): unknown => {
      const spec = (one(objs, 'Deployment', 'airlock-gateway').spec as { template: { spec: PodSpec } })
        .template.spec;
      const env = spec.containers[0]!.env!.find((e) => e.name === 'AIRLOCK_GATEWAY_CONFIG')!.value!;
      return (JSON.parse(env) as { workers?: unknown }).workers;
    };
    expect(workersOf(await render([]))).toBe(1);
    expect(workersOf(await render(['--set', 'gateway.workers=4']))).toBe(4);
  });

  it('gateway.upstreams reaches the gateway config (pathCase per policy host)', async () => {
    const configOf = async (args: string[]): Promise<{ upstreams?: unknown }> => {
      const objs = await render(args);
      const spec = (one(objs, 'Deployment', 'airlock-gateway').spec as { template: { spec: PodSpec } })
        .template.spec;
      return JSON.parse(
        spec.containers[0]!.env!.find((e) => e.name === 'AIRLOCK_GATEWAY_CONFIG')!.value!,
      ) as {
        upstreams?: unknown;
      };
    };
    expect((await configOf([])).upstreams).toEqual({});
    const set = ['--set-json', 'gateway.upstreams={"json.test":{"pathCase":"insensitive"}}'];
    expect((await configOf(set)).upstreams).toEqual({ 'json.test': { pathCase: 'insensitive' } });
    await expect(
      render(['--set-json', 'gateway.upstreams={"json.test":{"pathCase":"loose"}}']),
    ).rejects.toThrow(/upstreams/);
  });

  it('gateway.credentialSecrets: a Role for exactly those Secrets (get/list/watch by name) and the gateway config; none by default', async () => {
    const configOf = (objs: K8sObject[]): { credentialSecrets?: unknown; oauth2RefreshSkewMs?: unknown } => {
      const spec = (one(objs, 'Deployment', 'airlock-gateway').spec as { template: { spec: PodSpec } })
        .template.spec;
      return JSON.parse(
        spec.containers[0]!.env!.find((e) => e.name === 'AIRLOCK_GATEWAY_CONFIG')!.value!,
      ) as {
        credentialSecrets?: unknown;
      };
    };
    const plain = await render([]);
    expect(byKind(plain, 'Role').map((r) => r.metadata.name)).not.toContain('airlock-gateway-credentials');
    expect(configOf(plain).credentialSecrets).toBeUndefined();
    expect(configOf(plain).oauth2RefreshSkewMs).toBe(30_000);
    const objs = await render([
      '--set',
      'gateway.credentialSecrets={airlock-github,airlock-s3}',
      '--set',
      'gateway.oauth2RefreshSkewSeconds=45',
    ]);
    const role = one(objs, 'Role', 'airlock-gateway-credentials') as unknown as {
      metadata: { namespace: string };
      rules: Rule[];
    };
    expect(role.metadata.namespace).toBe('airlock');
    expect(role.rules).toEqual([
      {
        apiGroups: [''],
        resources: ['secrets'],
        resourceNames: ['airlock-github', 'airlock-s3'],
        verbs: ['get', 'list', 'watch'],
      },
    ]);
    const binding = one(objs, 'RoleBinding', 'airlock-gateway-credentials') as unknown as {
      roleRef: { name: string };
      subjects: { name: string; namespace: string }[];
    };
    expect(binding.roleRef.name).toBe('airlock-gateway-credentials');
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'airlock-gateway', namespace: 'airlock' },
    ]);
    for (const o of objs) await validate(o);
    expect(configOf(objs)).toMatchObject({
      credentialSecrets: { namespace: 'airlock', names: ['airlock-github', 'airlock-s3'] },
      oauth2RefreshSkewMs: 45_000,
    });
    await expect(render(['--set', 'gateway.credentialSecrets[0]=Not_A_Name'])).rejects.toThrow(
      /\/gateway\/credentialSecrets\/0/,
    );
  });

  describe('approvals (issue 9): the gateways claim at the controller over its approvals port', () => {
    const gatewayConfig = (objs: K8sObject[]): ReturnType<typeof parseGatewayServiceConfig> => {
      const spec = (one(objs, 'Deployment', 'airlock-gateway').spec as { template: { spec: PodSpec } })
        .template.spec;
      // The gateway's own parser (src/gateway-wire/config.ts), as the gateway process runs it.
      return parseGatewayServiceConfig(
        JSON.parse(spec.containers[0]!.env!.find((e) => e.name === 'AIRLOCK_GATEWAY_CONFIG')!.value!),
        'admin-token-0123456789abcdef',
      );
    };
    const controllerConfig = (objs: K8sObject[]): ReturnType<typeof parseConfig> =>
      // The controller's own parser (src/config/load.ts), as `airlock serve --config` runs it.
      parseConfig(
        YAML.parse(
          (one(objs, 'ConfigMap', 'airlock-controller') as unknown as { data: Record<string, string> }).data[
            'config.yaml'
          ]!,
        ),
        '/etc/airlock/config',
      );
    const controllerPod = (objs: K8sObject[]): PodSpec =>
      (one(objs, 'Deployment', 'airlock-controller').spec as { template: { spec: PodSpec } }).template.spec;
    interface Policy {
      podSelector: { matchLabels: Record<string, string> };
      policyTypes: string[];
      ingress: Array<{
        from?: Array<{ podSelector?: { matchLabels: Record<string, string> } }>;
        ports: Array<{ protocol: string; port: number }>;
      }>;
    }

    it('default: a ClusterIP Service on the controller port, the gateways pointed at it, the same hold times on both sides', async () => {
      const objs = await render([]);
      const svc = one(objs, 'Service', 'airlock-approvals');
      expect(svc.spec).toEqual({
        type: 'ClusterIP',
        selector: {
          'app.kubernetes.io/name': 'airlock',
          'app.kubernetes.io/instance': 'airlock',
          'app.kubernetes.io/component': 'controller',
        },
        ports: [{ name: 'approvals', port: 8081, targetPort: 'approvals', protocol: 'TCP' }],
      });
      const ctr = controllerPod(objs).containers[0]! as Container & {
        ports: Array<{ name: string; containerPort: number }>;
      };
      expect(ctr.ports).toContainEqual({ name: 'approvals', containerPort: 8081, protocol: 'TCP' });
      // The controller reads the gateway admin token (the claims' bearer) from the mounted Secret key.
      expect(ctr.volumeMounts).toContainEqual({
        name: 'admin-token',
        mountPath: '/var/run/airlock',
        readOnly: true,
      });
      const tokenVolume = controllerPod(objs).volumes!.find((v) => v.name === 'admin-token');
      expect(tokenVolume?.secret).toMatchObject({
        secretName: 'airlock-tokens',
        items: [{ key: 'admin-token', path: 'admin-token' }],
      });
      const cc = controllerConfig(objs);
      expect(cc.runtime.kind === 'kubernetes' && cc.runtime.kubernetes.gatewayAdmin.tokenFile).toBe(
        '/var/run/airlock/admin-token',
      );
      expect(cc.approvals).toMatchObject({
        internalListen: '0.0.0.0:8081',
        holdSeconds: 0,
        holdRules: {},
        pendingSeconds: 3600,
        defaultUses: 1,
        defaultTtlSeconds: 600,
      });
      expect(cc.approvals.webhook).toBeUndefined();
      expect(gatewayConfig(objs).approvals).toEqual({
        url: 'http://airlock-approvals.airlock.svc.cluster.local:8081',
        holdSeconds: 0,
        holdRules: {},
      });
      // The controller's API Service does not carry the approvals port, whatever its type.
      const exposed = await render(['--set', 'controller.service.type=LoadBalancer']);
      expect(
        (one(exposed, 'Service', 'airlock-controller').spec as { ports: Array<{ port: number }> }).ports.map(
          (p) => p.port,
        ),
      ).toEqual([8080]);
      expect(one(exposed, 'Service', 'airlock-approvals').spec).toMatchObject({ type: 'ClusterIP' });
    });

    it('NetworkPolicy: the API port stays open, the approvals port admits the gateway Pods only', async () => {
      const objs = await render([]);
      const np = one(objs, 'NetworkPolicy', 'airlock-controller').spec as unknown as Policy;
      expect(np.podSelector.matchLabels).toMatchObject({ 'app.kubernetes.io/component': 'controller' });
      expect(np.policyTypes).toEqual(['Ingress']); // egress untouched (API server, gateways, webhook)
      expect(np.ingress).toEqual([
        { ports: [{ protocol: 'TCP', port: 8080 }] },
        {
          from: [
            {
              podSelector: {
                matchLabels: {
                  'app.kubernetes.io/name': 'airlock',
                  'app.kubernetes.io/instance': 'airlock',
                  'app.kubernetes.io/component': 'gateway',
                },
              },
            },
          ],
          ports: [{ protocol: 'TCP', port: 8081 }],
        },
      ]);
      // Nothing else new: the gateways' and the sandboxes' policies do not name the approvals port.
      for (const other of byKind(objs, 'NetworkPolicy').filter(
        (o) => o.metadata.name !== 'airlock-controller',
      ))
        expect(JSON.stringify(other.spec), other.metadata.name).not.toContain('8081');
      const off = await render(['--set', 'controller.networkPolicy.enabled=false']);
      expect(byKind(off, 'NetworkPolicy').map((o) => o.metadata.name)).not.toContain('airlock-controller');
    });

    it('ci/hardened: hold times, port and webhook reach both sides; the webhook secret comes from a Secret key', async () => {
      const objs = await render(['-f', path.join(chart, 'ci', 'hardened-values.yaml')]);
      const rule = 'p, analyst, forum.internal, /comments, POST, ask';
      expect(gatewayConfig(objs).approvals).toEqual({
        url: 'http://airlock-approvals.airlock.svc.cluster.local:9081',
        holdSeconds: 20,
        holdRules: { [rule]: 120 },
      });
      expect(controllerConfig(objs).approvals).toMatchObject({
        internalListen: '0.0.0.0:9081',
        holdSeconds: 20,
        holdRules: { [rule]: 120 },
        pendingSeconds: 1800,
        webhook: {
          url: 'https://chatops.example.com/airlock',
          secretEnv: 'AIRLOCK_APPROVALS_WEBHOOK_SECRET',
        },
      });
      expect(controllerPod(objs).containers[0]!.env).toContainEqual({
        name: 'AIRLOCK_APPROVALS_WEBHOOK_SECRET',
        valueFrom: { secretKeyRef: { name: 'airlock-approvals-webhook', key: 'secret' } },
      });
      expect(one(objs, 'Service', 'airlock-approvals').spec).toMatchObject({
        ports: [{ name: 'approvals', port: 9081, targetPort: 'approvals', protocol: 'TCP' }],
      });
      expect(
        (one(objs, 'NetworkPolicy', 'airlock-controller').spec as unknown as Policy).ingress[1]!.ports,
      ).toEqual([{ protocol: 'TCP', port: 9081 }]);
    });
  });

  describe('policies from Git: policies.git.syncer (airlock, the default, or git-sync)', () => {
    const pods = (objs: K8sObject[]): Array<[string, PodSpec]> =>
      ['airlock-gateway', 'airlock-controller'].map((name) => [
        name,
        (one(objs, 'Deployment', name).spec as { template: { spec: PodSpec } }).template.spec,
      ]);
    const syncArgs = (oneTime: boolean) => [
      '--repo=https://git.example.com/platform/airlock-policies.git',
      '--ref=main',
      '--root=/etc/airlock/policies',
      '--link=current',
      '--period=30s',
      '--depth=1',
      ...(oneTime ? ['--one-time'] : []),
    ];

    it('airlock (default): init container + sidecar run `airlock policy sync` from the Airlock image, hardened, git-sync arguments', async () => {
      const objs = await render(['-f', path.join(chart, 'ci/git-policies-values.yaml')]);
      for (const [name, pod] of pods(objs)) {
        const init = pod.initContainers?.find((c) => c.name === 'git-sync-init');
        const side = pod.containers.find((c) => c.name === 'git-sync');
        for (const [c, oneTime] of [
          [init, true],
          [side, false],
        ] as const) {
          expect(c, name).toMatchObject({
            image: 'airlock-gateway:0.1.0',
            imagePullPolicy: 'IfNotPresent',
            command: ['node', '/app/dist/cli/main.js', 'policy', 'sync'],
            args: syncArgs(oneTime),
            envFrom: [{ secretRef: { name: 'airlock-git-credentials' } }],
            securityContext: {
              allowPrivilegeEscalation: false,
              readOnlyRootFilesystem: true,
              privileged: false,
              capabilities: { drop: ['ALL'] },
            },
          });
          expect(c!.volumeMounts).toEqual([
            { name: 'policies', mountPath: '/etc/airlock/policies' },
            { name: 'tmp', mountPath: '/tmp' },
          ]);
          expect(c!.env, name).toBeUndefined();
        }
        // The main container reads the published checkout read-only.
        expect(pod.containers[0]!.volumeMounts).toContainEqual({
          name: 'policies',
          mountPath: '/etc/airlock/policies',
          readOnly: true,
        });
        expect(pod.volumes?.map((v) => v.name)).not.toContain('git-ca');
      }
      const gw = JSON.parse(
        pods(objs)[0]![1].containers[0]!.env!.find((e) => e.name === 'AIRLOCK_GATEWAY_CONFIG')!.value!,
      ) as { policyDir: string };
      expect(gw.policyDir).toBe('/etc/airlock/policies/current/policies');
      // The image follows image.* (registry, tag, pull policy), as the main containers do.
      const local = await render([
        '-f',
        path.join(chart, 'ci/git-policies-values.yaml'),
        '-f',
        path.join(chart, 'ci/local-images-values.yaml'),
      ]);
      for (const [name, pod] of pods(local)) {
        expect(pod.initContainers?.[0], name).toMatchObject({
          image: 'airlock-gateway:dev',
          imagePullPolicy: 'Never',
        });
      }
    });

    it('git-sync: the upstream image with the same arguments; caSecret mounted and named by GIT_SSL_CAINFO', async () => {
      const objs = await render(['-f', path.join(chart, 'ci/git-sync-image-values.yaml')]);
      for (const [name, pod] of pods(objs)) {
        for (const c of [pod.initContainers![0]!, pod.containers.find((x) => x.name === 'git-sync')!]) {
          expect(c.image, name).toBe('registry.k8s.io/git-sync/git-sync:v4.4.0');
          expect((c as { command?: unknown }).command).toBeUndefined();
          expect((c as { args?: string[] }).args).toEqual(
            expect.arrayContaining([
              '--repo=https://git.internal.example/platform/airlock-policies.git',
              '--ref=v3',
              '--period=10s',
            ]),
          );
          expect(c.env).toEqual([{ name: 'GIT_SSL_CAINFO', value: '/etc/airlock/git-ca/ca.pem' }]);
          expect(c.volumeMounts).toContainEqual({
            name: 'git-ca',
            mountPath: '/etc/airlock/git-ca',
            readOnly: true,
          });
        }
        expect(pod.volumes?.find((v) => v.name === 'git-ca')?.secret, name).toEqual({ secretName: 'git-ca' });
        // Only the sync containers see the CA bundle.
        expect(pod.containers[0]!.volumeMounts?.map((m) => m.name)).not.toContain('git-ca');
      }
    });
  });

  describe('bad values fail on the schema, naming the key path', () => {
    const cases: Array<[string, string[], RegExp]> = [
      ['wrong type', ['--set', 'gateway.replicas=two'], /\/gateway\/replicas.*got string, want integer/],
      ['unknown key', ['--set', 'gateway.replicaz=2'], /\/gateway.*replicaz/],
      ['unknown nested key', ['--set', 'sandbox.resources.gpus=1'], /\/sandbox\/resources.*gpus/],
      ['out of range', ['--set', 'sandbox.resources.memoryMiB=8'], /\/sandbox\/resources\/memoryMiB/],
      ['enum', ['--set', 'policies.source=s3'], /\/policies\/source/],
      ['more than one controller', ['--set', 'controller.replicas=2'], /\/controller\/replicas/],
      ['bad digest', ['--set', 'image.digest=latest'], /\/image\/digest/],
      ['git without a repository', ['--set', 'policies.source=git'], /\/policies\/git\/repository/],
      [
        'unknown git syncer',
        [
          '--set',
          'policies.source=git',
          '--set',
          'policies.git.repository=https://g/r.git',
          '--set',
          'policies.git.syncer=flux',
        ],
        /\/policies\/git\/syncer/,
      ],
      ['short API token', ['--set', 'tokens.apiToken=short'], /\/tokens\/apiToken/],
      [
        'tls.intercept not a boolean',
        ['--set', 'tls.intercept=yes'],
        /\/tls\/intercept.*got string, want boolean/,
      ],
      ['unknown tls key', ['--set', 'tls.caFile=x'], /\/tls.*caFile/],
      ['passthrough host', ['--set', 'tls.passthrough[0]=Bad_Host'], /\/tls\/passthrough\/0/],
      [
        'upstream CA Secret name',
        ['--set', 'tls.upstreamCaSecret.name=Not/AName'],
        /\/tls\/upstreamCaSecret\/name/,
      ],
      ['CA reload too often', ['--set', 'tls.caReloadSeconds=1'], /\/tls\/caReloadSeconds/],
      ['no gateway workers', ['--set', 'gateway.workers=0'], /\/gateway\/workers/],
      ['hold longer than 10 minutes', ['--set', 'approvals.holdSeconds=601'], /\/approvals\/holdSeconds/],
      [
        'approvals webhook without its Secret',
        ['--set', 'approvals.webhook.url=https://chatops.example.com/h'],
        /\/approvals\/webhook\/secretName/,
      ],
      [
        'approvals port on the API port',
        ['--set', 'approvals.internalPort=8080'],
        /\/approvals\/internalPort/,
      ],
      ['unknown approvals key', ['--set', 'approvals.listen=x'], /\/approvals.*listen/],
    ];
    it.each(cases)('%s', async (_name, args, expected) => {
      await expect(render(args)).rejects.toThrow(expected);
    });
  });
});

describe('charts/airlock metrics: ServiceMonitor and Grafana dashboard (docs/telemetry.md)', () => {
  const metricsValues = path.join(chart, 'ci', 'metrics-values.yaml');

  it('default: neither a ServiceMonitor nor a dashboard ConfigMap', async () => {
    const objs = await render([]);
    expect(byKind(objs, 'ServiceMonitor')).toEqual([]);
    expect(objs.filter((o) => o.metadata.name.endsWith('-dashboard'))).toEqual([]);
  });

  it('ci/metrics: the ServiceMonitor selects the controller Service on `http` and the headless admin Service on `admin`', async () => {
    const objs = await render(['-f', metricsValues]);
    const [sm] = byKind(objs, 'ServiceMonitor');
    expect(sm?.metadata.labels?.release).toBe('kube-prometheus-stack');
    const spec = sm!.spec as {
      selector: {
        matchLabels: Record<string, string>;
        matchExpressions: Array<{ key: string; values: string[] }>;
      };
      endpoints: Array<{ port: string; path: string; interval: string }>;
      namespaceSelector: { matchNames: string[] };
    };
    expect(spec.namespaceSelector.matchNames).toEqual(['airlock']);
    expect(spec.endpoints.map((e) => [e.port, e.path, e.interval])).toEqual([
      ['http', '/metrics', '15s'],
      ['admin', '/metrics', '15s'],
    ]);
    // What Prometheus would scrape: Services the selector matches, on the endpoint port names.
    const selected = byKind(objs, 'Service').filter((svc) => {
      const labels = svc.metadata.labels ?? {};
      return (
        Object.entries(spec.selector.matchLabels).every(([k, v]) => labels[k] === v) &&
        spec.selector.matchExpressions.every((m) => m.values.includes(labels[m.key] ?? ''))
      );
    });
    const scraped = selected.flatMap((svc) =>
      ((svc.spec as { ports: Array<{ name: string }> }).ports ?? [])
        .filter((p) => spec.endpoints.some((e) => e.port === p.name))
        .map((p) => `${svc.metadata.name}:${p.name}`),
    );
    expect(scraped.sort()).toEqual(['airlock-controller:http', 'airlock-gateway-admin:admin']);
  });

  it("ci/metrics: a NetworkPolicy lets the monitoring namespace reach the gateways' admin port, nothing else", async () => {
    const objs = await render(['-f', metricsValues]);
    const np = one(objs, 'NetworkPolicy', 'airlock-gateway-metrics');
    expect(np.spec).toMatchObject({
      policyTypes: ['Ingress'],
      ingress: [
        {
          from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
          ports: [{ protocol: 'TCP', port: 9090 }],
        },
      ],
    });
    const withoutPeers = await render([
      '-f',
      metricsValues,
      '--set',
      'metrics.serviceMonitor.scrapeFrom=null',
    ]);
    expect(withoutPeers.find((o) => o.metadata.name === 'airlock-gateway-metrics')).toBeUndefined();
  });

  it('ci/metrics: the dashboard ConfigMap carries valid JSON whose every metric exists in the code', async () => {
    const objs = await render(['-f', metricsValues]);
    const cm = one(objs, 'ConfigMap', 'airlock-dashboard');
    expect(cm.metadata.labels?.grafana_dashboard).toBe('1');
    expect(cm.metadata.annotations?.grafana_folder).toBe('Airlock');
    const dashboard = JSON.parse((cm.data as Record<string, string>)['airlock.json']!) as {
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    };
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(10);
    const names = new Set(
      dashboard.panels.flatMap((p) =>
        p.targets.flatMap((t) => [...t.expr.matchAll(/\bairlock_[a-z_]+/g)].map((m) => m[0])),
      ),
    );
    expect(names.size).toBeGreaterThanOrEqual(10);
    // Every series a panel queries is registered somewhere in src/ (histograms by their base name).
    const { execFileSync } = await import('node:child_process');
    for (const name of names) {
      const base = name.replace(/_(bucket|count|sum)$/, '');
      let found = '';
      try {
        found = execFileSync('grep', ['-rlF', `'${base}'`, path.join(repoRoot, 'src')], { encoding: 'utf8' });
      } catch {
        // grep exits 1 when nothing matches
      }
      expect(found, `${name} is not a metric of src/`).not.toBe('');
    }
  });

  it('telemetry.otlp reaches the controller config (parsed by the real config parser); none by default', async () => {
    const config = async (args: string[]): Promise<ReturnType<typeof parseConfig>> =>
      parseConfig(
        YAML.parse(
          (
            one(await render(args), 'ConfigMap', 'airlock-controller') as unknown as {
              data: Record<string, string>;
            }
          ).data['config.yaml']!,
        ),
        '/etc/airlock/config',
      );
    expect((await config([])).telemetry.otlp.endpoint).toBeUndefined();
    const set = await config([
      '--set',
      'telemetry.otlp.endpoint=http://otel-collector.monitoring:4318',
      '--set',
      'telemetry.otlp.traces=true',
    ]);
    expect(set.telemetry.otlp).toMatchObject({
      endpoint: 'http://otel-collector.monitoring:4318',
      serviceName: 'airlock',
      traces: true,
    });
    await expect(render(['--set', 'telemetry.otlp.endpoint=collector:4318'])).rejects.toThrow(/endpoint/);
  });

  it('bad metrics values fail on the chart schema naming the key', async () => {
    await expect(render(['--set', 'metrics.serviceMonitor.interval=soon'])).rejects.toThrow(/interval/);
    await expect(render(['--set', 'metrics.grafanaDashboard.colour=red'])).rejects.toThrow(
      /grafanaDashboard/,
    );
  });
});

interface Rule {
  apiGroups: string[];
  resources: string[];
  resourceNames?: string[];
  verbs: string[];
}

interface Container {
  name: string;
  image: string;
  env?: Array<{ name: string; value?: string; valueFrom?: unknown }>;
  securityContext?: Record<string, unknown>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  startupProbe?: Record<string, unknown>;
}

interface PodSpec {
  securityContext?: Record<string, unknown>;
  initContainers?: Container[];
  containers: Container[];
  volumes?: Array<{ name: string; projected?: unknown; secret?: unknown }>;
}
