/**
 * The Kubernetes gateways' Pod watch carries a session's creator (delegation) and placeholders, like
 * the control plane's pushes on Docker; a Pod event keeps the time-boxed grants the control plane
 * pushed through the admin API (docs/approvals.md "Grants"), through a real WatchedSessionTable.
 */
import { KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { SessionGrant } from '../../../../src/gateway-wire/approvals.js';
import type { GatewaySession } from '../../../../src/gateway-wire/session.js';
import { K8S_ANNOTATION, K8S_LABEL } from '../../../../src/kube/labels.js';
import {
  PodSessionSource,
  WatchedSessionTable,
  podVerdict,
} from '../../../../src/gateway/session-sources/kubernetes-pods.js';

function pod(annotations: Record<string, string>): V1Pod {
  return {
    metadata: {
      labels: { [K8S_LABEL.session]: 's-0123456789abcdef' },
      annotations: {
        [K8S_ANNOTATION.role]: 'responder',
        [K8S_ANNOTATION.credentialSha256]: 'a'.repeat(64),
        [K8S_ANNOTATION.expiresAt]: '2030-01-01T00:00:00.000Z',
        ...annotations,
      },
    },
    status: { podIP: '10.1.2.3', phase: 'Running' },
    spec: { containers: [] },
  };
}

describe('podVerdict', () => {
  it('serves the session with the created-by annotation as its creator', () => {
    const v = podVerdict(pod({ [K8S_ANNOTATION.createdBy]: 'bob' }), Date.parse('2026-01-01'));
    expect(v).toEqual({
      kind: 'serve',
      session: {
        id: 's-0123456789abcdef',
        role: 'responder',
        address: '10.1.2.3',
        credentialSha256: 'a'.repeat(64),
        expiresAtMs: Date.parse('2030-01-01T00:00:00.000Z'),
        creator: 'bob',
      },
    });
  });

  it('serves without a creator limit when the annotation is missing or empty', () => {
    for (const extra of [{}, { [K8S_ANNOTATION.createdBy]: '' }] as Array<Record<string, string>>) {
      const v = podVerdict(pod(extra), Date.parse('2026-01-01'));
      expect(v.kind).toBe('serve');
      expect(v.kind === 'serve' && 'creator' in v.session).toBe(false);
    }
  });
});

describe('podVerdict: placeholders', () => {
  const ph = { 'github-token': `airlock-ph-github-token-${'0'.repeat(32)}` };

  it('serves the placeholders annotation as the session placeholders', () => {
    const v = podVerdict(
      pod({ [K8S_ANNOTATION.placeholders]: JSON.stringify(ph) }),
      Date.parse('2026-01-01'),
    );
    expect(v.kind === 'serve' && v.session.placeholders).toEqual(ph);
  });

  it('waits on a placeholders annotation that is not a valid object (never serves it without them)', () => {
    for (const bad of [
      '{',
      '[]',
      '{"github-token":"not-a-placeholder"}',
      '{"../x":"airlock-ph-x-' + '0'.repeat(32) + '"}',
    ])
      expect(podVerdict(pod({ [K8S_ANNOTATION.placeholders]: bad }), Date.parse('2026-01-01'))).toEqual({
        kind: 'wait',
        id: 's-0123456789abcdef',
      });
  });
});

describe('grants pushed by the control plane survive Pod events', () => {
  const ID = 's-0123456789abcdef';
  const grant = (id: string): SessionGrant => ({
    id,
    host: 'config.test:2379',
    path: '/v3/kv/put',
    method: 'POST',
    expiresAt: Date.parse('2030-01-01'),
  });
  /** What the control plane registers: the Pod's session plus grants (src/sessions/manager.ts). */
  const pushed = (
    grants: SessionGrant[] | undefined,
    extra: Partial<GatewaySession> = {},
  ): GatewaySession => {
    const v = podVerdict(pod({}), Date.parse('2026-01-01'));
    if (v.kind !== 'serve') throw new Error('pod not served');
    return { ...v.session, ...(grants ? { grants } : {}), ...extra };
  };
  const setup = (): { table: WatchedSessionTable; source: PodSessionSource } => {
    const table = new WatchedSessionTable();
    const source = new PodSessionSource(table, {
      kubeConfig: new KubeConfig(),
      namespace: 'airlock-sandboxes',
      instance: 'airlock',
    });
    return { table, source };
  };
  const grantsAt = (table: WatchedSessionTable): SessionGrant[] | undefined =>
    table.atAddress('10.1.2.3')?.grants;

  it('a Pod update after a register keeps the grants; a register without grants clears them for good', () => {
    const { table, source } = setup();
    source.apply(pod({}));
    expect(grantsAt(table)).toBeUndefined();
    table.upsert(pushed([grant('g-1')]));
    expect(grantsAt(table)).toEqual([grant('g-1')]);
    // The Pod changes (an annotation, its status): the watch re-applies it.
    source.apply(pod({ 'example.com/touched': '1' }));
    source.apply(pod({ 'example.com/touched': '2' }));
    expect(grantsAt(table)).toEqual([grant('g-1')]);
    expect(table.atAddress('10.1.2.3')).toMatchObject({ id: ID, role: 'responder' });
    // A second grant, then the first one's expiry: the control plane pushes the list each time.
    table.upsert(pushed([grant('g-1'), grant('g-2')]));
    source.apply(pod({}));
    expect(grantsAt(table)?.map((g) => g.id)).toEqual(['g-1', 'g-2']);
    table.upsert(pushed(undefined));
    source.apply(pod({}));
    expect(grantsAt(table)).toBeUndefined();
  });

  it('the Pod decides identity and expiry; the grants stay bound to the session id', () => {
    const { table, source } = setup();
    table.upsert(pushed([grant('g-1')], { expiresAtMs: Date.parse('2031-01-01') }));
    source.apply(pod({ [K8S_ANNOTATION.expiresAt]: '2030-06-01T00:00:00.000Z' }));
    expect(table.atAddress('10.1.2.3')).toMatchObject({
      expiresAtMs: Date.parse('2030-06-01T00:00:00.000Z'),
      grants: [grant('g-1')],
    });
    // Another session's Pod never inherits them.
    const other = pod({});
    other.metadata!.labels![K8S_LABEL.session] = 's-fedcba9876543210';
    other.status!.podIP = '10.1.2.4';
    source.apply(other);
    expect(table.atAddress('10.1.2.4')?.grants).toBeUndefined();
  });

  it('a revoked session drops its grants: neither a late Pod event nor a late register brings them back', () => {
    const { table, source } = setup();
    table.upsert(pushed([grant('g-1')]));
    table.revoke(ID);
    source.apply(pod({}));
    table.upsert(pushed([grant('g-1')]));
    expect(table.atAddress('10.1.2.3')).toBeNull();
    // The Pod deleted and the id seen again (after the tombstone is gone): no grants carried over.
    table.forget(ID);
    source.apply(pod({}));
    expect(table.atAddress('10.1.2.3')).not.toBeNull();
    expect(grantsAt(table)).toBeUndefined();
  });

  it('a restarted replica (a new table) learns the grants again from the resync register, then keeps them', () => {
    const { table, source } = setup();
    source.apply(pod({})); // the initial list
    expect(grantsAt(table)).toBeUndefined();
    table.upsert(pushed([grant('g-1')])); // KubernetesGatewayControl.sync: register on every replica
    source.apply(pod({ 'example.com/touched': '3' }));
    expect(grantsAt(table)).toEqual([grant('g-1')]);
  });
});
