/**
 * The Kubernetes gateways' Pod watch carries a session's creator (delegation), like the control
 * plane's pushes on Docker.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { K8S_ANNOTATION, K8S_LABEL } from '../../../../src/kube/labels.js';
import { podVerdict } from '../../../../src/gateway/session-sources/kubernetes-pods.js';

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
