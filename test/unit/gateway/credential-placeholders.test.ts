/**
 * Credential placeholders (issue 14, docs/credentials.md "Placeholders"): credentials.yaml's
 * `placeholder`, what the SessionManager gives a new session (its sandbox env and the record the
 * gateway receives), how runtimes read them back, the vault's placeholder scan, and the last-use
 * times the control plane derives from the audit trail.
 */
import { describe, expect, it } from 'vitest';
import type { AuditIndex } from '../../../src/audit/index-reader.js';
import { CredentialLastUse } from '../../../src/audit/credential-use.js';
import type { AuditEvent } from '../../../src/audit/event.js';
import { parseConfig } from '../../../src/config/load.js';
import { PolicyError, RequestValidationError } from '../../../src/errors.js';
import { CredentialVault } from '../../../src/gateway/credentials.js';
import type { GatewayControl } from '../../../src/gateway-wire/control.js';
import { gatewaySessionSchema, type GatewaySession } from '../../../src/gateway-wire/session.js';
import { newPlaceholder, parseCredentials } from '../../../src/policy/credentials.js';
import type { PolicySource } from '../../../src/policy/types.js';
import { parsePlaceholders } from '../../../src/runtime/placeholders.js';
import { sandboxPod } from '../../../src/runtime/kubernetes/manifests.js';
import { K8S_ANNOTATION } from '../../../src/kube/labels.js';
import type { ExecResult, SandboxInfo, SandboxRuntime, SandboxSpec } from '../../../src/runtime/types.js';
import { SessionManager } from '../../../src/sessions/manager.js';

const YAML = `version: 1
credentials:
  - name: github
    roles: [analyst]
    bindings: [{ host: api.github.test, path: /repos/*, methods: [GET] }]
    apply: { type: bearer }
    source: { env: GH }
    placeholder: { env: GITHUB_TOKEN }
  - name: vendor
    roles: [analyst, other]
    bindings: [{ host: vendor.test }]
    apply: { type: header, name: X-Api-Key }
    source: { env: VENDOR }
  - name: search
    roles: [other]
    bindings: [{ host: search.test }]
    apply: { type: query, name: key }
    source: { env: SEARCH }
    placeholder: { env: SEARCH_KEY }
`;

const PH = /^airlock-ph-github-[0-9a-f]{32}$/;

class FakeRuntime implements SandboxRuntime {
  readonly specs: SandboxSpec[] = [];
  readonly registered: GatewaySession[] = [];
  async ensureGateway(): Promise<GatewayControl> {
    const registered = this.registered;
    return {
      status: async () => ({
        instanceId: 'i1',
        startedAt: new Date(0).toISOString(),
        policyVersion: 'v',
        policyError: null,
        sessions: 0,
      }),
      register: async (s) => void registered.push(gatewaySessionSchema.parse(s)),
      revoke: async () => 0,
      sync: async () => undefined,
    };
  }
  async prepare(spec: SandboxSpec): Promise<SandboxInfo> {
    this.specs.push(spec);
    const { credential: _c, env: _e, ...rest } = spec;
    return { ...rest, address: '10.213.0.3', running: false };
  }
  async start(): Promise<void> {}
  async exec(): Promise<ExecResult> {
    return { exitCode: 0, stdout: '', stderr: '' };
  }
  async remove(): Promise<void> {}
  async list(): Promise<SandboxInfo[]> {
    return [];
  }
  async close(): Promise<void> {}
}

async function manager(): Promise<{ m: SessionManager; rt: FakeRuntime }> {
  const credentials = parseCredentials(YAML);
  const policy = {
    current: () => ({ roles: new Set(['analyst', 'other', 'plain']), credentials, version: 'v1' }),
    lastError: () => null,
  } as unknown as PolicySource;
  const rt = new FakeRuntime();
  const cfg = parseConfig({ runtime: { selfTest: false } }, process.cwd());
  const m = new SessionManager(cfg, rt, policy, {} as AuditIndex, undefined);
  await m.start();
  m.stop();
  return { m, rt };
}

describe('credentials.yaml placeholder', () => {
  it('parses; absent is null', () => {
    const set = parseCredentials(YAML);
    expect(set.definitions.map((d) => d.placeholder)).toEqual([
      { env: 'GITHUB_TOKEN' },
      null,
      { env: 'SEARCH_KEY' },
    ]);
  });

  it.each([
    ['HTTP_PROXY', 'set by the runtime'],
    ['https_proxy', 'set by the runtime'],
    ['LD_PRELOAD', 'set by the runtime'],
    ['1BAD', 'expected an environment variable name'],
  ])('refuses placeholder variable %s', (name, msg) => {
    const text = YAML.replace('placeholder: { env: GITHUB_TOKEN }', `placeholder: { env: ${name} }`);
    expect(() => parseCredentials(text)).toThrow(PolicyError);
    expect(() => parseCredentials(text)).toThrow(msg);
  });

  it('refuses the same variable for two credentials, naming the field', () => {
    const text = YAML.replace('placeholder: { env: SEARCH_KEY }', 'placeholder: { env: GITHUB_TOKEN }');
    expect(() => parseCredentials(text)).toThrow(
      /credentials\.2\.placeholder\.env: placeholder variable "GITHUB_TOKEN"/,
    );
  });

  it('newPlaceholder: airlock-ph-<name>-<128 random bits>, valid on the wire', () => {
    const a = newPlaceholder('github');
    expect(a).toMatch(PH);
    expect(newPlaceholder('github')).not.toBe(a);
    expect(gatewaySessionSchema.shape.placeholders.parse({ github: a })).toEqual({ github: a });
    expect(() => gatewaySessionSchema.shape.placeholders.parse({ github: 'ghp_real' })).toThrow();
  });
});

describe('SessionManager gives placeholders', () => {
  it("sets each of the role's placeholder variables, registers the same values, new ones per session", async () => {
    const { m, rt } = await manager();
    const a = await m.create({ role: 'analyst', env: { FOO: 'bar' } }, 'tester');
    const b = await m.create({ role: 'analyst' }, 'tester');
    const [sa, sb] = rt.specs;
    expect(sa!.env.FOO).toBe('bar');
    expect(sa!.env.GITHUB_TOKEN).toMatch(PH);
    expect(sa!.env.SEARCH_KEY).toBeUndefined(); // search is for role other
    expect(sa!.placeholders).toEqual({ github: sa!.env.GITHUB_TOKEN });
    expect(sb!.env.GITHUB_TOKEN).toMatch(PH);
    expect(sb!.env.GITHUB_TOKEN).not.toBe(sa!.env.GITHUB_TOKEN);
    const ra = rt.registered.find((s) => s.id === a.id)!;
    expect(ra.placeholders).toEqual({ github: sa!.env.GITHUB_TOKEN });
    expect(rt.registered.find((s) => s.id === b.id)!.placeholders).toEqual({ github: sb!.env.GITHUB_TOKEN });
  });

  it('a role without placeholder credentials gets none (and no placeholders field)', async () => {
    const { m, rt } = await manager();
    const s = await m.create({ role: 'plain' }, 'tester');
    expect(rt.specs[0]!.placeholders).toEqual({});
    expect(rt.registered.find((r) => r.id === s.id)!.placeholders).toBeUndefined();
  });

  it('refuses env that sets a placeholder variable itself (nothing created)', async () => {
    const { m, rt } = await manager();
    const p = m.create({ role: 'analyst', env: { GITHUB_TOKEN: 'ghp_real_token_value' } }, 'tester');
    await expect(p).rejects.toThrow(RequestValidationError);
    await expect(m.create({ role: 'analyst', env: { GITHUB_TOKEN: 'x' } }, 't')).rejects.toThrow(
      'env.GITHUB_TOKEN is the placeholder variable of credential "github"',
    );
    expect(rt.specs).toHaveLength(0);
  });
});

describe('Kubernetes sandbox Pod', () => {
  it('carries the placeholder in the env and the annotation read back on restart', () => {
    const ph = newPlaceholder('github');
    const cfg = parseConfig({ runtime: { kind: 'kubernetes' } }, '/tmp');
    const pod = sandboxPod(
      {
        sessionId: 's-0000000000000001',
        role: 'analyst',
        image: 'airlock-sandbox:dev',
        env: { GITHUB_TOKEN: ph },
        placeholders: { github: ph },
        credential: 'c',
        credentialSha256: 'a'.repeat(64),
        createdAt: new Date(0),
        expiresAt: new Date(60_000),
        createdBy: 'tester',
        labels: {},
      },
      {
        kubernetes: cfg.runtime.kubernetes,
        resources: cfg.runtime.resources,
        gatewayPort: 3128,
        trustBundleConfigMap: null,
      },
    );
    expect(pod.spec!.containers[0]!.env).toContainEqual({ name: 'GITHUB_TOKEN', value: ph });
    expect(parsePlaceholders(pod.metadata!.annotations![K8S_ANNOTATION.placeholders])).toEqual({
      github: ph,
    });
  });
});

describe('parsePlaceholders (labels and annotations read back)', () => {
  it('round-trips and refuses anything else (empty: fail closed)', () => {
    const p = { github: newPlaceholder('github') };
    expect(parsePlaceholders(JSON.stringify(p))).toEqual(p);
    expect(parsePlaceholders(undefined)).toEqual({});
    expect(parsePlaceholders('not json')).toEqual({});
    expect(parsePlaceholders(JSON.stringify({ github: 'real-token-value' }))).toEqual({});
  });
});

describe('CredentialVault: placeholders', () => {
  const vault = new CredentialVault({ env: {}, pollIntervalMs: 0 });
  const ph = newPlaceholder('github');
  const session = { placeholders: { github: ph } };
  const req = (url: string, headers: string[] = []) => ({ url, rawHeaders: headers });

  it('scans a session with placeholders even while no value is held', () => {
    expect(vault.scanning).toBe(false);
    expect(vault.scans(session)).toBe(true);
    expect(vault.scans({})).toBe(false);
  });

  it('finds them in the URL, headers and body; the exempt header is not searched', () => {
    expect(vault.findLeak(req(`/x?t=${ph}`), null, session)).toEqual({
      credential: 'github',
      where: 'url',
      placeholder: true,
    });
    expect(vault.findLeak(req('/x', ['Authorization', `Bearer ${ph}`]), null, session)?.where).toBe(
      'header:authorization',
    );
    expect(vault.findLeak(req('/x', ['Authorization', `Bearer ${ph}`]), 'authorization', session)).toBeNull();
    expect(vault.findLeak(req('/x', ['Proxy-Authorization', ph]), null, session)).toBeNull();
    expect(vault.findLeakInBody(Buffer.from(JSON.stringify({ t: ph })), session)?.where).toBe('body');
    expect(vault.findLeakInBody(Buffer.from(Buffer.from(ph).toString('base64url')), session)).not.toBeNull();
    expect(vault.findLeakInBody(Buffer.from(ph), {})).toBeNull();
    expect(vault.findLeakInBody(Buffer.alloc(0), session)).toBeNull();
  });

  it('finds a non-ASCII held value in a body by its UTF-8 bytes', async () => {
    const v = new CredentialVault({ env: { K: 'clé-secrète-0123456789' }, pollIntervalMs: 0 });
    await v.sync(parseCredentials(YAML.replace('source: { env: GH }', 'source: { env: K }')));
    expect(v.findLeakInBody(Buffer.from('{"k":"clé-secrète-0123456789"}', 'utf8'))?.credential).toBe(
      'github',
    );
    v.close();
  });
});

describe('CredentialLastUse (from the audit trail)', () => {
  const ev = (over: Partial<AuditEvent>): AuditEvent =>
    ({ time: '2026-01-01T00:00:00.000Z', decision: 'allow', reason: 'rule_allow', ...over }) as AuditEvent;

  it('keeps the latest injection per credential; refusals and missing values do not count', () => {
    const u = new CredentialLastUse();
    u.observe(ev({ time: '2026-01-01T00:00:02.000Z', credential: { name: 'github', version: 'abc' } }));
    u.observe(ev({ time: '2026-01-01T00:00:01.000Z', credential: { name: 'github', version: 'abc' } }));
    u.observe(
      ev({
        time: '2026-01-01T00:00:09.000Z',
        decision: 'deny',
        reason: 'exfiltration_attempt',
        credential: { name: 'github', version: 'abc' },
      }),
    );
    u.observe(
      ev({
        time: '2026-01-01T00:00:09.000Z',
        decision: 'deny',
        credential: { name: 'vendor', version: null },
      }),
    );
    u.observe(ev({ time: '2026-01-01T00:00:09.000Z' }));
    expect(u.lastUsedAt('github')).toBe('2026-01-01T00:00:02.000Z');
    expect(u.lastUsedAt('vendor')).toBeNull();
  });
});
