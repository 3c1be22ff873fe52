import { ApiException, KubeConfig } from '@kubernetes/client-node';
import { RuntimeError, SandboxRejectedError } from '../errors.js';

/*
 * The Kubernetes client loader and API-error helpers, shared by the Kubernetes runtime
 * (src/runtime/kubernetes) and the gateway's Pod watch (src/gateway/session-sources/kubernetes-pods.ts).
 * A leaf part: it imports nothing of Airlock but src/errors.ts.
 */

/** Where to find the cluster: the `runtime.kubernetes` keys (or the gateway's `sessionSource`) that say so. */
export interface KubeConfigSource {
  /** kubeconfig file; unset: in-cluster ServiceAccount when in a Pod, else $KUBECONFIG / ~/.kube/config. */
  kubeconfig?: string | undefined;
  /** Context in the kubeconfig; unset: its current context. */
  context?: string | undefined;
}

/**
 * Loads a kubeconfig. In a Pod (`KUBERNETES_SERVICE_HOST` set, no file named) this is the mounted
 * ServiceAccount token, which is how the chart runs the control plane and the gateways.
 * @throws RuntimeError when the file cannot be read or the context does not exist.
 */
export function loadKubeConfig(src: KubeConfigSource): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (src.kubeconfig) kc.loadFromFile(src.kubeconfig);
    else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
    else kc.loadFromDefault();
    if (src.context) {
      if (!kc.getContextObject(src.context))
        throw new Error(`context "${src.context}" is not in the kubeconfig`);
      kc.setCurrentContext(src.context);
    }
  } catch (err) {
    throw new RuntimeError(`cannot load the Kubernetes client config: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!kc.getCurrentCluster()) throw new RuntimeError('the kubeconfig names no cluster');
  return kc;
}

/** What the API server said about a failed call. */
export interface KubeFailure {
  /** HTTP status (0 when the server was not reached). */
  status: number;
  /** `Status.reason` (`NotFound`, `Invalid`, `Forbidden`, `AlreadyExists`, …) when given. */
  reason: string;
  /** `Status.message`, or the transport error's message. */
  message: string;
}

/** Reads the Status object out of a client-node error (ApiException body, or a transport error). */
export function kubeFailure(err: unknown): KubeFailure {
  if (err instanceof ApiException) {
    let body: unknown = err.body;
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body);
      } catch {
        // not JSON: keep the text
      }
    }
    const st = (typeof body === 'object' && body !== null ? body : {}) as {
      reason?: string;
      message?: string;
    };
    return {
      status: err.code,
      reason: st.reason ?? '',
      message: st.message ?? (typeof body === 'string' && body ? body : err.message),
    };
  }
  return { status: 0, reason: '', message: (err as Error)?.message ?? String(err) };
}

export const isNotFound = (err: unknown): boolean => kubeFailure(err).status === 404;

/**
 * Wraps an API failure: a refusal of the object itself (422 Invalid, 400 BadRequest) becomes
 * SandboxRejectedError (API 422) carrying the server's reason; anything else RuntimeError.
 */
export function wrapKube(what: string, err: unknown): RuntimeError | SandboxRejectedError {
  const f = kubeFailure(err);
  if (f.status === 422 || f.status === 400) return new SandboxRejectedError(f.message, { cause: err });
  const status = f.status ? ` (HTTP ${f.status}${f.reason ? ` ${f.reason}` : ''})` : '';
  return new RuntimeError(`${what}: ${f.message}${status}`, { cause: err });
}
