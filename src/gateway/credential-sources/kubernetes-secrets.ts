/**
 * Kubernetes Secrets as the value source of credentials.yaml (`source: { secretRef: { name, key } }`,
 * docs/credentials.md "On Kubernetes"): a gateway reads only the Secrets named in its settings
 * (`credentialSecrets.names`, the chart's `gateway.credentialSecrets`), in its own namespace, and
 * watches each by name, so a changed Secret is used from the next request on without a restart.
 *
 * One list + watch per name with the field selector `metadata.name=NAME`: that is what
 * RBAC rules limited by `resourceNames` authorise for list and watch, so the gateway's Role names
 * exactly these Secrets (charts/airlock/templates/rbac.yaml) and can read no other. A Secret that is
 * missing, or a key it lacks, is unavailable (calls bound to it are answered 503
 * `credential_unavailable`) until it appears. A failed watch is restarted after 1 s, 2 s … 30 s;
 * meanwhile the last values are kept.
 */
import { CoreV1Api, type KubeConfig, type V1Secret, Watch } from '@kubernetes/client-node';

/** What the credential vault asks of a Secret source. */
export interface SecretValueReader {
  /** The decoded value of `key` in Secret `name`, or null (missing Secret, key, or a name not listed). */
  get(name: string, key: string): string | null;
  /** Whether this gateway may read Secret `name` (it is listed). */
  permits(name: string): boolean;
}

/** The subset of a pino logger used here. */
interface SourceLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/** Options of {@link KubernetesSecretValues}. */
export interface KubernetesSecretValuesOptions {
  kc: KubeConfig;
  /** Namespace of the Secrets (the gateway's own). */
  namespace: string;
  /** The Secrets this gateway reads; any other name is never asked for. */
  names: readonly string[];
  /** Called after a Secret was added, changed or deleted (the vault re-reads its sources). */
  onChange?: () => void;
  logger?: SourceLogger;
}

/** Watches the named Secrets of one namespace and serves their decoded values. */
export class KubernetesSecretValues implements SecretValueReader {
  readonly #opts: KubernetesSecretValuesOptions;
  readonly #names: ReadonlySet<string>;
  /** name → key → decoded value. */
  readonly #data = new Map<string, Map<string, string>>();
  readonly #aborts = new Set<AbortController>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #stopped = false;

  constructor(opts: KubernetesSecretValuesOptions) {
    this.#opts = opts;
    this.#names = new Set(opts.names);
    for (const n of opts.names) {
      if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(n))
        throw new RangeError(`credentialSecrets.names: "${n}" is not a Secret name`);
    }
  }

  permits(name: string): boolean {
    return this.#names.has(name);
  }

  get(name: string, key: string): string | null {
    if (!this.#names.has(name)) return null;
    return this.#data.get(name)?.get(key) ?? null;
  }

  /**
   * Lists and starts watching every named Secret. Resolves when each has been listed once (a Secret
   * that cannot be listed — forbidden, API server unreachable — is logged and retried in the
   * background; its values are unavailable meanwhile).
   */
  async start(): Promise<void> {
    await Promise.all([...this.#names].map((n) => this.#watch(n)));
  }

  /** Stops every watch. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const a of this.#aborts) a.abort();
    this.#aborts.clear();
  }

  /** Lists Secret `name` (field selector), then watches from that version; relists after a failure. */
  async #watch(name: string): Promise<void> {
    const { kc, namespace } = this.#opts;
    const core = kc.makeApiClient(CoreV1Api);
    const fieldSelector = `metadata.name=${name}`;
    let backoff = 1_000;
    const apply = (s: V1Secret): void => {
      const values = new Map<string, string>();
      for (const [k, v] of Object.entries(s.data ?? {}))
        values.set(k, Buffer.from(v, 'base64').toString('utf8'));
      this.#data.set(name, values);
      this.#changed();
    };
    const forget = (): void => {
      if (this.#data.delete(name)) this.#changed();
    };
    const retry = (err: unknown): void => {
      if (this.#stopped) return;
      this.#opts.logger?.warn(
        { secret: name, namespace, error: (err as Error)?.message ?? String(err), retryMs: backoff },
        'credential Secret watch failed; retrying (the last values are kept)',
      );
      const t = setTimeout(() => {
        this.#timers.delete(t);
        void cycle();
      }, backoff);
      t.unref();
      this.#timers.add(t);
      backoff = Math.min(backoff * 2, 30_000);
    };
    const cycle = async (): Promise<void> => {
      if (this.#stopped) return;
      let resourceVersion: string | undefined;
      try {
        const list = await core.listNamespacedSecret({ namespace, fieldSelector });
        const s = list.items.find((i) => i.metadata?.name === name);
        if (s) apply(s);
        else forget();
        resourceVersion = list.metadata?.resourceVersion;
      } catch (err) {
        retry(err);
        return;
      }
      try {
        const ctl = await new Watch(kc).watch(
          `/api/v1/namespaces/${namespace}/secrets`,
          { fieldSelector, resourceVersion, allowWatchBookmarks: true },
          (phase: string, obj: V1Secret) => {
            backoff = 1_000;
            if (obj?.metadata?.name !== name) return;
            if (phase === 'ADDED' || phase === 'MODIFIED') apply(obj);
            else if (phase === 'DELETED') forget();
          },
          (err: unknown) => {
            this.#aborts.delete(ctl);
            if (this.#stopped) return;
            // A watch ends normally after the server's timeout: relist at once; a failure waits.
            if (err) retry(err);
            else void cycle();
          },
        );
        if (this.#stopped) ctl.abort();
        else this.#aborts.add(ctl);
      } catch (err) {
        retry(err);
      }
    };
    await cycle();
  }

  #changed(): void {
    try {
      this.#opts.onChange?.();
    } catch {
      // the listener's failure is not the source's
    }
  }
}
