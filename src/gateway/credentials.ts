/**
 * The gateway's side of credentials (docs/credentials.md): the values of the credentials the policy
 * defines (credentials.yaml, src/policy/credentials.ts), read from files (watched: a changed file is
 * used from the next request on) or from the gateway's own environment; what a request gets injected
 * once the policy allowed it; and the known-secret scanner that refuses requests carrying a value
 * anywhere else.
 *
 * A value never leaves this module except as the header or query parameter of an allowed request
 * whose binding matched; logs and audit events name the credential and its version (a hash prefix,
 * {@link valueVersion}) only.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import {
  appliedAs,
  sourceKey,
  valueVersion,
  type CredentialDefinition,
  type CredentialMatch,
  type CredentialSet,
  type CredentialSource,
} from '../policy/credentials.js';
import { EMPTY_SCANNER, SecretScanner } from './secret-scan.js';
import { isDynamicApply, sourcesOf } from '../policy/credential-kinds.js';
import type { SecretValueReader } from './credential-sources/kubernetes-secrets.js';
import {
  injectDynamic,
  secretPartsOf,
  type DynamicInjection,
  type DynamicRequest,
} from './credential-dynamic.js';
import type { OAuth2Tokens } from './oauth2.js';
import { SigV4Signers } from './sigv4.js';

/** The subset of a pino logger the vault uses. */
interface VaultLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/** A credential's version (defined with the policy, where `GET /v1/credentials` also computes it). */
export { valueVersion };

/** What an allowed request gets: the header (or query parameter) the gateway sets. */
export interface InjectedCredential {
  readonly name: string;
  readonly version: string;
  /** Lowercase header name the gateway sets (replacing the sandbox's), or null for a query parameter. */
  readonly header: string | null;
  /** Query parameter name the gateway sets (replacing the sandbox's), or null for a header. */
  readonly query: string | null;
  /** The header value (`Bearer …`, `Basic …`, the raw value) or the URL-encoded query value. */
  readonly value: string;
  /** More headers the gateway sets (`[name, value, …]`, lowercase names; SigV4's x-amz-date …). */
  readonly headers?: readonly string[];
  /** Lowercase names of the sandbox's headers dropped besides `header` (SigV4's x-amz-security-token …). */
  readonly dropHeaders?: ReadonlySet<string>;
  /** The query sent upstream instead of the sandbox's (`?…`: a SigV4 presigned request, sigv4.ts). */
  readonly replaceQuery?: string;
  /** Rewrites the request body on its way upstream (SigV4 chunk signatures, sigv4.ts ChunkResigner). */
  readonly body?: BodyRewriter;
}

/**
 * A request body rewrite the credential needs (forward.ts applies it). A malformed body throws
 * sigv4.ts `SigV4RequestError` (400 `bad_request`): from {@link whole} before anything is sent, from
 * {@link stream}'s iteration at the first bad byte (what came before it was sent).
 */
export interface BodyRewriter {
  /** A body read whole: the bytes to send instead. */
  whole(body: Buffer): Buffer;
  /** A streamed body, rewritten as it flows. */
  stream(body: AsyncIterable<Buffer>): AsyncGenerator<Buffer>;
}

/** A value as read from its source. */
interface LoadedValue {
  readonly value: string;
  readonly version: string;
}

/**
 * The refusal data of a request that carries a known value — or one of its session's placeholders —
 * where no binding of its role allows it.
 */
export interface LeakFinding {
  /** The credential whose value (or placeholder) was found. */
  readonly credential: string;
  /** `url`, `header:NAME` (lowercase) or `body`. */
  readonly where: string;
  /** true: the session's placeholder for the credential was found, not its real value. */
  readonly placeholder: boolean;
}

/** The part of a session the leak scan needs: its placeholders (credential name → value). */
export interface PlaceholderHolder {
  readonly placeholders?: Readonly<Record<string, string>> | undefined;
}

/** A request as the leak scan sees it: the raw request target and the raw header list. */
export interface ScannedRequest {
  readonly url: string;
  readonly rawHeaders: readonly string[];
}

/** Options of {@link CredentialVault}. */
export interface CredentialVaultOptions {
  /** Where `env` sources are read. @default process.env */
  env?: NodeJS.ProcessEnv;
  logger?: VaultLogger;
  /**
   * Re-reads every file source this often, ms, besides watching their directories (a fallback for
   * filesystems without change events). 0: never. @default 5000
   */
  pollIntervalMs?: number;
  /** Called after a value changed (rotation), with the credential names using the source. */
  onRotate?: (names: readonly string[], version: string | null) => void;
  /**
   * Only files under this directory (after resolving symbolic links) are read; a `file` source
   * elsewhere is unavailable, with a warning. The Docker runtime sets it to the mounted credentials
   * directory, so a policy cannot name the gateway's own files (its CA key, its policy). Unset: any.
   */
  fileRoot?: string;
  /**
   * Only these variables are read for `env` sources; another is unavailable, with a warning (so a
   * policy cannot name the gateway's admin token). Unset: any variable of the process.
   */
  envNames?: readonly string[];
  /**
   * Where `secretRef` sources are read (Kubernetes Secrets of the gateway namespace, watched:
   * credential-sources/kubernetes-secrets.ts); it calls {@link CredentialVault.refresh} on a change.
   * Unset: a `secretRef` source is unavailable, with a warning.
   */
  secrets?: SecretValueReader;
  /** Fetches and caches OAuth2 access tokens (oauth2.ts). Unset: OAuth2 credentials are unavailable. */
  oauth2?: OAuth2Tokens;
}

function stripNewline(s: string): string {
  if (s.endsWith('\r\n')) return s.slice(0, -2);
  if (s.endsWith('\n')) return s.slice(0, -1);
  return s;
}

/** The header or query value a definition's `apply` produces from `value`. */
function appliedValue(def: CredentialDefinition, value: string): string {
  switch (def.apply.type) {
    case 'bearer':
      return `Bearer ${value}`;
    case 'basic':
      return `Basic ${Buffer.from(value, 'utf8').toString('base64')}`;
    case 'header':
      return value;
    case 'query':
      return encodeURIComponent(value);
    default:
      return value; // aws-sigv4, oauth2-*: computed per request (injectDynamic)
  }
}

/**
 * Holds the values of the credentials of the policy in force. {@link sync} is called with each new
 * snapshot's {@link CredentialSet} (decide.ts does it on the first request that sees the snapshot);
 * the sources it no longer names are dropped, and their watchers closed.
 */
export class CredentialVault {
  readonly #env: NodeJS.ProcessEnv;
  readonly #logger: VaultLogger | undefined;
  readonly #onRotate: CredentialVaultOptions['onRotate'];
  readonly #fileRoot: string | undefined;
  readonly #envNames: ReadonlySet<string> | undefined;
  readonly #secrets: SecretValueReader | undefined;
  readonly #oauth2: OAuth2Tokens | undefined;
  readonly #signers = new SigV4Signers();
  readonly #unsubscribe: (() => void) | null;
  /** source key → the source (a definition may read two: `source` and an OAuth2 `clientSecret`). */
  #sources = new Map<string, CredentialSource>();
  /** Source keys refused by `fileRoot`/`envNames`, warned about once. */
  readonly #refused = new Set<string>();
  /** source key → value (absent: not readable). */
  readonly #values = new Map<string, LoadedValue>();
  /** source key → the definitions of the synced set using it. */
  #users = new Map<string, CredentialDefinition[]>();
  #synced: CredentialSet | null = null;
  #syncing: Promise<void> | null = null;
  #scanner: SecretScanner = EMPTY_SCANNER;
  /** A session's placeholder scanner, built at its first scanned request (sessions are immutable). */
  readonly #placeholderScanners = new WeakMap<PlaceholderHolder, SecretScanner>();
  readonly #watchers = new Map<string, FSWatcher>();
  readonly #poll: NodeJS.Timeout | null;
  /** Credential name → epoch ms of the last request it was injected into. */
  readonly lastUsed = new Map<string, number>();
  #closed = false;

  constructor(opts: CredentialVaultOptions = {}) {
    this.#env = opts.env ?? process.env;
    this.#logger = opts.logger;
    this.#onRotate = opts.onRotate;
    this.#fileRoot = opts.fileRoot === undefined ? undefined : path.resolve(opts.fileRoot);
    this.#envNames = opts.envNames === undefined ? undefined : new Set(opts.envNames);
    this.#secrets = opts.secrets;
    this.#oauth2 = opts.oauth2;
    // Access tokens the gateway fetched are known secrets too (the leak stop).
    this.#unsubscribe = opts.oauth2?.onChange(() => this.#rebuildScanner()) ?? null;
    const every = opts.pollIntervalMs ?? 5_000;
    this.#poll = every > 0 ? setInterval(() => void this.refresh(), every) : null;
    this.#poll?.unref();
  }

  /** Whether `set` is the one the values were last synced to (then {@link sync} has nothing to do). */
  isSynced(set: CredentialSet): boolean {
    return this.#synced === set;
  }

  /**
   * Makes the vault hold the values `set` needs: reads new sources, watches the directories of file
   * sources, drops sources no longer named. Concurrent calls for the same set share one read.
   */
  sync(set: CredentialSet): Promise<void> {
    if (this.#synced === set) return Promise.resolve();
    const run = (this.#syncing ?? Promise.resolve()).then(async () => {
      if (this.#synced === set || this.#closed) return;
      const users = new Map<string, CredentialDefinition[]>();
      const sources = new Map<string, CredentialSource>();
      for (const def of set.definitions) {
        for (const source of sourcesOf(def)) {
          const key = sourceKey(source);
          const list = users.get(key) ?? [];
          list.push(def);
          users.set(key, list);
          sources.set(key, source);
        }
      }
      for (const key of [...this.#values.keys()]) if (!users.has(key)) this.#values.delete(key);
      this.#users = users;
      this.#sources = sources;
      this.#oauth2?.retain(new Set(set.definitions.map((d) => d.name)));
      await Promise.all([...sources.entries()].map(([key, source]) => this.#read(key, source)));
      this.#watchDirectories();
      this.#synced = set;
      this.#rebuildScanner();
    });
    this.#syncing = run.finally(() => {
      if (this.#syncing === run) this.#syncing = null;
    });
    return run;
  }

  /** Re-reads every source now (the watchers and the poll call this). Resolves when done. */
  async refresh(): Promise<void> {
    if (this.#closed) return;
    const changed = await Promise.all(
      [...this.#sources.entries()].map(([key, source]) => this.#read(key, source)),
    );
    if (changed.some(Boolean)) this.#rebuildScanner();
  }

  /**
   * The header or query parameter an allowed request gets for `match`, or null when its value is not
   * available (file missing or unreadable, variable unset). Records the last use.
   */
  inject(match: CredentialMatch): InjectedCredential | null {
    const def = match.credential;
    const loaded = this.#values.get(sourceKey(def.source));
    if (!loaded) return null;
    const as = appliedAs(def.apply);
    this.lastUsed.set(def.name, Date.now());
    return {
      name: def.name,
      version: loaded.version,
      header: def.apply.type === 'query' ? null : as,
      query: def.apply.type === 'query' ? def.apply.name : null,
      value: appliedValue(def, loaded.value),
    };
  }

  /**
   * What an allowed request bound to an `aws-sigv4` or `oauth2-*` credential gets (credential-dynamic.ts):
   * the signed headers, or the bearer access token; or why not (the gateway answers 503
   * `credential_unavailable`, or 400 `bad_request` for a request SigV4 cannot sign). Records the last use.
   * A SigV4 answer is returned as is, an OAuth2 one as a promise.
   */
  injectDynamic(match: CredentialMatch, req: DynamicRequest): DynamicInjection | Promise<DynamicInjection> {
    const def = match.credential;
    const got = injectDynamic(def, req, this.#valueOf, this.#signers, this.#oauth2);
    // SigV4 answers at once (no promise on the signing path); OAuth2 may wait for a token.
    if (got instanceof Promise) return got.then((g) => this.#used(def.name, g));
    return this.#used(def.name, got);
  }

  readonly #valueOf = (s: CredentialSource): LoadedValue | null => this.#values.get(sourceKey(s)) ?? null;

  #used(name: string, got: DynamicInjection): DynamicInjection {
    if (got.kind === 'inject') this.lastUsed.set(name, Date.now());
    return got;
  }

  /** Whether a definition's value is computed per request ({@link injectDynamic}) rather than copied. */
  static isDynamic(def: CredentialDefinition): boolean {
    return isDynamicApply(def.apply);
  }

  /** The version of a definition's value, or null when it is not available. */
  versionOf(def: CredentialDefinition): string | null {
    return this.#values.get(sourceKey(def.source))?.version ?? null;
  }

  /**
   * Looks for a known value in the request target and headers. `exempt` is the header (lowercase) or
   * query parameter (`?name`) the gateway will set for this request: what the sandbox sent there is
   * replaced, never forwarded, so it is not searched. `proxy-authorization` is never forwarded either.
   */
  findLeak(req: ScannedRequest, exempt: string | null, session?: PlaceholderHolder): LeakFinding | null {
    const values = this.#scanner;
    const placeholders = session ? this.#placeholdersOf(session) : EMPTY_SCANNER;
    if (values.empty && placeholders.empty) return null;
    const url = exempt !== null && exempt.startsWith('?') ? withoutParam(req.url, exempt.slice(1)) : req.url;
    let hit = findIn(values, placeholders, url, 'url');
    if (hit !== null) return hit;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      if (name === exempt || name === 'proxy-authorization') continue;
      hit = findIn(values, placeholders, raw[i + 1] as string, `header:${name}`);
      if (hit !== null) return hit;
    }
    return null;
  }

  /**
   * Looks for a known value or one of `session`'s placeholders in a request body (no part of a body
   * is ever exempt: the gateway injects into headers and queries only). The bytes are searched as
   * Latin-1 text, so any byte sequence is searchable and a UTF-8 value matches its own bytes.
   */
  findLeakInBody(body: Buffer, session?: PlaceholderHolder): LeakFinding | null {
    if (body.length === 0) return null;
    const placeholders = session ? this.#placeholdersOf(session) : EMPTY_SCANNER;
    if (this.#scanner.empty && placeholders.empty) return null;
    return findIn(this.#scanner, placeholders, body.toString('latin1'), 'body');
  }

  /** Whether any value is held (the leak scan has something to look for). */
  get scanning(): boolean {
    return !this.#scanner.empty;
  }

  /** Whether a request of `session` is scanned: a value is held, or the session has placeholders. */
  scans(session: PlaceholderHolder): boolean {
    return !this.#scanner.empty || !this.#placeholdersOf(session).empty;
  }

  #placeholdersOf(session: PlaceholderHolder): SecretScanner {
    const p = session.placeholders;
    if (p === undefined) return EMPTY_SCANNER;
    let s = this.#placeholderScanners.get(session);
    if (s === undefined) {
      s = new SecretScanner(new Map(Object.entries(p)));
      this.#placeholderScanners.set(session, s);
    }
    return s;
  }

  /** Stops watching and polling. */
  close(): void {
    this.#closed = true;
    this.#unsubscribe?.();
    if (this.#poll) clearInterval(this.#poll);
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
  }

  /** Reads one source; @returns whether its value (or availability) changed. */
  async #read(key: string, source: CredentialSource): Promise<boolean> {
    let value: string | null;
    if ('env' in source) {
      value =
        this.#envNames && !this.#envNames.has(source.env)
          ? this.#refuse(key)
          : (this.#env[source.env] ?? null);
    } else if ('secretRef' in source) {
      value = this.#secrets
        ? (this.#secrets.get(source.secretRef.name, source.secretRef.key) ?? this.#refuseSecret(key, source))
        : this.#refuse(key);
    } else {
      const file = await this.#allowedFile(source.file);
      value = file === null ? this.#refuse(key) : await readFile(file, 'utf8').then(stripNewline, () => null);
    }
    if (value === '') value = null;
    const before = this.#values.get(key);
    if (value === null) {
      if (!before) return false;
      this.#values.delete(key);
      this.#announce(key, null);
      return true;
    }
    if (before?.value === value) return false;
    const loaded = { value, version: valueVersion(value) };
    this.#values.set(key, loaded);
    if (before) this.#announce(key, loaded.version);
    return true;
  }

  /**
   * The file to read for a `file` source: its real path when it lies under `fileRoot` (or any path
   * without one); null when it is elsewhere. A missing file is returned as is (read fails: unavailable).
   */
  async #allowedFile(file: string): Promise<string | null> {
    const root = this.#fileRoot;
    if (root === undefined) return file;
    const under = (p: string, r: string): boolean => p.startsWith(r.endsWith(path.sep) ? r : r + path.sep);
    if (!under(path.resolve(file), root)) return null;
    const realRoot = await realpath(root).catch(() => null);
    const real = await realpath(file).catch(() => undefined);
    if (real === undefined) return file; // missing: the read fails, the value is unavailable
    return realRoot !== null && under(real, realRoot) ? real : null;
  }

  /** A Secret this gateway may not read (not in its list) is warned about once; a missing key is just null. */
  #refuseSecret(key: string, source: { secretRef: { name: string } }): null {
    return this.#secrets?.permits(source.secretRef.name) === false ? this.#refuse(key) : null;
  }

  /** Warns once that a source is outside what this gateway may read; @returns null (unavailable). */
  #refuse(key: string): null {
    if (!this.#refused.has(key)) {
      this.#refused.add(key);
      const names = (this.#users.get(key) ?? []).map((d) => d.name);
      this.#logger?.warn(
        { credentials: names, source: key },
        key.startsWith('env:')
          ? 'credential variable not passed to this gateway (gateway.credentialEnv): not read'
          : key.startsWith('secret:')
            ? 'credential Secret not listed for this gateway (gateway.credentialSecrets): not read'
            : 'credential file outside the credentials directory (gateway.credentialsDir): not read',
      );
    }
    return null;
  }

  #announce(key: string, version: string | null): void {
    const names = (this.#users.get(key) ?? []).map((d) => d.name);
    this.#logger?.info(
      { credentials: names, version },
      version === null ? 'credential value unavailable' : 'credential value rotated',
    );
    try {
      this.#onRotate?.(names, version);
    } catch {
      // a listener's failure is not the vault's
    }
  }

  #rebuildScanner(): void {
    const values: [string, string][] = [];
    for (const [key, defs] of this.#users) {
      const v = this.#values.get(key);
      if (!v) continue;
      const def = defs[0] as CredentialDefinition;
      values.push([def.name, v.value]);
      // A SigV4 value's secret key is searched for on its own too (credential-dynamic.ts).
      for (const part of secretPartsOf(def, v.value)) values.push([def.name, part]);
    }
    if (this.#synced !== null) for (const t of this.#oauth2?.tokens() ?? []) values.push(t);
    this.#scanner = new SecretScanner(values);
  }

  /** Watches the directory of every file source (a rename-over or a `..data` swap is seen there). */
  #watchDirectories(): void {
    const dirs = new Set<string>();
    for (const s of this.#sources.values()) if ('file' in s) dirs.add(path.dirname(s.file));
    for (const [dir, w] of this.#watchers) {
      if (!dirs.has(dir)) {
        w.close();
        this.#watchers.delete(dir);
      }
    }
    for (const dir of dirs) {
      if (this.#watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, () => void this.refresh());
        w.on('error', () => {
          w.close();
          this.#watchers.delete(dir);
        });
        this.#watchers.set(dir, w);
      } catch (err) {
        this.#logger?.warn(
          { dir, error: (err as Error).message },
          'cannot watch a credential directory; polling only',
        );
      }
    }
  }
}

/** A held value (first) or a placeholder in `text`. */
function findIn(
  values: SecretScanner,
  placeholders: SecretScanner,
  text: string,
  where: string,
): LeakFinding | null {
  const v = values.find(text);
  if (v !== null) return { credential: v, where, placeholder: false };
  const p = placeholders.find(text);
  if (p !== null) return { credential: p, where, placeholder: true };
  return null;
}

/** `url` without the query parameters named `name` (the one the gateway sets). */
function withoutParam(url: string, name: string): string {
  const q = url.indexOf('?');
  if (q === -1) return url;
  const kept = url
    .slice(q + 1)
    .split('&')
    .filter((p) => p.split('=', 1)[0] !== name);
  return url.slice(0, q) + (kept.length > 0 ? `?${kept.join('&')}` : '');
}

/**
 * The query string sent upstream with the credential's parameter: the sandbox's parameters of that
 * name removed, the gateway's appended. @param query `?…` or `''`.
 */
export function queryWithCredential(query: string, name: string, encodedValue: string): string {
  const kept =
    query === ''
      ? []
      : query
          .slice(1)
          .split('&')
          .filter((p) => p !== '' && p.split('=', 1)[0] !== name);
  kept.push(`${name}=${encodedValue}`);
  return `?${kept.join('&')}`;
}
