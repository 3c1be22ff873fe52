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
  const mod = (await import(`kubernetes-models/${group ? `${group}/` : ''}${version}`)) as Record<
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
    ];
    it.each(cases)('%s', async (_name, args, expected) => {
      await expect(render(args)).rejects.toThrow(expected);
    });
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
  env?: Array<{ name: string; value?: string }>;
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
