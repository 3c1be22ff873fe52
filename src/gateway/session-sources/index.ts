import type { SessionSourceConfig } from '../../gateway-wire/config.js';
import { AdminSessionSource } from './admin.js';
import type { SessionSource } from './types.js';

export type { SessionSource } from './types.js';

/**
 * The session source a gateway's `sessionSource` setting names, not started yet. The Kubernetes source
 * (and @kubernetes/client-node with it) is loaded only when asked for, so a Docker gateway never loads it.
 * @throws RuntimeError when the kubeconfig cannot be loaded (`kubernetes`).
 */
export async function createSessionSource(cfg: SessionSourceConfig): Promise<SessionSource> {
  if (cfg.kind === 'admin') return new AdminSessionSource();
  const [{ PodSessionSource, WatchedSessionTable }, { loadKubeConfig }] = await Promise.all([
    import('./kubernetes-pods.js'),
    import('../../kube/client.js'),
  ]);
  return new PodSessionSource(new WatchedSessionTable(), {
    kubeConfig: loadKubeConfig(cfg),
    namespace: cfg.namespace,
    instance: cfg.instance,
  });
}
