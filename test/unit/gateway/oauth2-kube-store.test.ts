/**
 * The replicas' shared OAuth2 refresh state (src/gateway/oauth2-kube-store.ts): what is refused before
 * any API call (bad names and durations, with the key named), the settings key, and how a stored value
 * is read back (anything else is treated as absent, so the next writer re-seeds it). The CAS, lease and
 * faults run on a real API server: test/integration/k8s-oauth2-state.test.ts.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { parseGatewayServiceConfig } from '../../../src/gateway-wire/config.js';
import {
  KubeRefreshState,
  kubeRefreshStateFrom,
  parseState,
  seedOf,
} from '../../../src/gateway/oauth2-kube-store.js';

const ADMIN = 'admin-token-0123456789';
const base = {
  port: 0,
  adminPort: 0,
  policyDir: '/p',
  auditFile: '/a',
  sessionSource: { kind: 'admin' },
};
const kc = (): KubeConfig => {
  const k = new KubeConfig();
  k.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return k;
};

describe('KubeRefreshState: refused before any API call', () => {
  it('a Secret name that is not one', () => {
    expect(
      () =>
        new KubeRefreshState({ kc: kc(), namespace: 'airlock', secretName: 'Not_A_Name', refreshSkewMs: 0 }),
    ).toThrow(/^oauth2RefreshState\.secretName: "Not_A_Name" is not a Secret name$/);
  });

  it.each([
    ['leaseMs', { leaseMs: 0 }],
    ['pollMs', { pollMs: -1 }],
    ['askTimeoutMs', { askTimeoutMs: 1.5 }],
  ])('%s not a positive integer', (key, extra) => {
    expect(
      () =>
        new KubeRefreshState({
          kc: kc(),
          namespace: 'airlock',
          secretName: 'state',
          refreshSkewMs: 0,
          ...extra,
        }),
    ).toThrow(new RegExp(`^oauth2RefreshState\\.${key} must be a positive integer$`));
  });
});

describe('gateway settings oauth2RefreshState', () => {
  it('unset: no shared state (one replica keeps its own)', () => {
    expect(kubeRefreshStateFrom(parseGatewayServiceConfig(base, ADMIN))).toBeNull();
  });

  it('kubernetes: the store for that Secret, lease 15 s by default', () => {
    const cfg = parseGatewayServiceConfig(
      {
        ...base,
        oauth2RefreshState: {
          kind: 'kubernetes',
          namespace: 'airlock',
          secretName: 'airlock-gateway-oauth2-state',
        },
      },
      ADMIN,
    );
    expect(cfg.oauth2RefreshState).toEqual({
      kind: 'kubernetes',
      namespace: 'airlock',
      secretName: 'airlock-gateway-oauth2-state',
      leaseMs: 15_000,
    });
  });

  it.each([
    [{ kind: 'redis', namespace: 'a', secretName: 's' }, 'oauth2RefreshState.kind'],
    [{ kind: 'kubernetes', namespace: 'a', secretName: 'Bad/Name' }, 'oauth2RefreshState.secretName'],
    [{ kind: 'kubernetes', namespace: 'a', secretName: 's', leaseMs: 10 }, 'oauth2RefreshState.leaseMs'],
    [{ kind: 'kubernetes', namespace: 'a', secretName: 's', extra: 1 }, 'oauth2RefreshState'],
  ])('%j is refused naming %s', (value, at) => {
    expect(() => parseGatewayServiceConfig({ ...base, oauth2RefreshState: value }, ADMIN)).toThrow(
      expect.objectContaining({ message: expect.stringContaining(`gateway config ${at}`) }),
    );
  });
});

describe('parseState', () => {
  it('reads a stored state back as written', () => {
    const s = {
      seed: 'v1',
      retired: ['v0'],
      refreshToken: 'rt',
      accessToken: 'at',
      expiresAtMs: 5,
      lease: { holder: 'gw-1/7', id: 'abc', untilMs: 9 },
      lost: null,
      failure: { reason: 'r', untilMs: 3 },
    };
    expect(parseState(JSON.stringify(s))).toEqual(s);
  });

  it('fills what an older or partial value lacks; a broken lease or failure is none', () => {
    expect(
      parseState(JSON.stringify({ seed: 'v', retired: ['a', 3], refreshToken: 'rt', lease: { holder: 1 } })),
    ).toEqual({
      seed: 'v',
      retired: ['a'],
      refreshToken: 'rt',
      accessToken: null,
      expiresAtMs: 0,
      lease: null,
      lost: null,
      failure: null,
    });
  });

  it.each(['', 'not json', 'null', '[]', '{"seed":"v","retired":[]}', '{"refreshToken":"x","retired":[]}'])(
    '%j is no state (the next writer re-seeds)',
    (text) => expect(parseState(text)).toBeNull(),
  );
});

describe('seedOf', () => {
  it('names a refresh token by 16 hex digits of its SHA-256, never the token', () => {
    expect(seedOf('abc')).toBe('ba7816bf8f01cfea');
    expect(seedOf('abc')).not.toContain('abc');
    expect(seedOf('abd')).not.toBe(seedOf('abc'));
  });
});
