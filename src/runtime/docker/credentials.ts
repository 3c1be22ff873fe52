/**
 * Credential values for the Docker runtime's gateway container (docs/credentials.md "On Docker"):
 * `gateway.credentialsDir`, a host directory bind-mounted read-only at
 * {@link GATEWAY_CREDENTIALS_DIR}, and `gateway.credentialEnv`, variables of `airlock serve` passed
 * into the container by name. The gateway reads `file:` sources only under that path and `env:`
 * sources only among those names (src/gateway/credentials.ts, `fileRoot`/`envNames`).
 *
 * Values never go into labels or logs: the container's config hash covers each variable's
 * {@link valueVersion}, so a changed value re-creates the gateway; files are re-read by the gateway
 * itself (watched) and need no re-creation.
 */
import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { GATEWAY_CREDENTIALS_DIR, type Config } from '../../config/schema.js';
import { valueVersion, type CredentialSource } from '../../policy/credentials.js';

export { GATEWAY_CREDENTIALS_DIR };

/** What the gateway container gets for credentials. */
export interface GatewayCredentialMounts {
  /** Docker `Binds` entries (the credentials directory, read-only), possibly none. */
  readonly binds: string[];
  /** `NAME=value` entries for the container's `Env`. */
  readonly env: string[];
  /** Settings of the gateway process restricting what it reads (`AIRLOCK_GATEWAY_CONFIG`). */
  readonly service: { credentialFilesDir: string; credentialEnv: string[] };
  /** For the container's config hash: each passed variable's value version, never the value. */
  readonly fingerprint: { dir: string | null; env: Array<[string, string | null]> };
  /** `gateway.credentialEnv` names unset in `env`: not passed (the gateway answers 503 where bound). */
  readonly missing: string[];
}

/**
 * The bind, variables and gateway settings for `cfg.gateway.credentialsDir`/`credentialEnv`.
 * @param env the environment of `airlock serve`.
 */
export function gatewayCredentialMounts(
  cfg: Config,
  env: NodeJS.ProcessEnv = process.env,
): GatewayCredentialMounts {
  const dir = cfg.gateway.credentialsDir ?? null;
  const names = cfg.gateway.credentialEnv;
  const passed = names.filter((n) => env[n] !== undefined && env[n] !== '');
  return {
    binds: dir ? [`${dir}:${GATEWAY_CREDENTIALS_DIR}:ro`] : [],
    env: passed.map((n) => `${n}=${env[n] as string}`),
    service: { credentialFilesDir: GATEWAY_CREDENTIALS_DIR, credentialEnv: passed },
    fingerprint: {
      dir,
      env: names.map((n): [string, string | null] => [n, env[n] ? valueVersion(env[n]) : null]),
    },
    missing: names.filter((n) => !passed.includes(n)),
  };
}

/**
 * Where a `file:` source is on the host: `<credentialsDir>/<rest>` for a path under
 * {@link GATEWAY_CREDENTIALS_DIR}; null for any other path (the gateway container does not read it),
 * a missing file, or one whose real path leaves the directory.
 */
export function hostCredentialPath(file: string, credentialsDir: string | undefined): string | null {
  if (!credentialsDir) return null;
  const normal = path.posix.resolve('/', file);
  if (!normal.startsWith(GATEWAY_CREDENTIALS_DIR + '/')) return null;
  const host = path.join(credentialsDir, normal.slice(GATEWAY_CREDENTIALS_DIR.length + 1));
  try {
    // Like the gateway: a link out of the directory is not followed.
    const root = realpathSync(credentialsDir);
    return realpathSync(host).startsWith(root + path.sep) ? host : null;
  } catch {
    return null;
  }
}

/**
 * What is wrong with the credentials directory's ownership and modes for a gateway running as
 * `gatewayUid` (docs/credentials.md "On Docker": the directory owned by that uid, 0700; files owned by
 * it, 0600 or 0400). Nothing is changed: the caller warns.
 * @throws Error when the directory does not exist or is not a directory.
 */
export function credentialsDirWarnings(dir: string, gatewayUid: number): string[] {
  const st = statSync(dir);
  if (!st.isDirectory()) throw new Error(`gateway.credentialsDir ${dir} is not a directory`);
  const out: string[] = [];
  const fix = `chown -R ${gatewayUid} ${dir} && chmod 0700 ${dir} && chmod 0600 ${dir}/*`;
  if (st.uid !== gatewayUid)
    out.push(
      `${dir} is owned by uid ${st.uid}, not the gateway's uid ${gatewayUid}: it may not read it (${fix})`,
    );
  if ((st.mode & 0o077) !== 0)
    out.push(`${dir} has mode 0${(st.mode & 0o777).toString(8)}: others may read credential values (${fix})`);
  for (const name of readdirSync(dir)) {
    if (name.startsWith('..')) continue; // Kubernetes-style ..data links
    const f = path.join(dir, name);
    let fst;
    try {
      fst = statSync(f);
    } catch {
      continue;
    }
    if (!fst.isFile()) continue;
    if (fst.uid !== gatewayUid)
      out.push(`${f} is owned by uid ${fst.uid}, not the gateway's uid ${gatewayUid} (${fix})`);
    if ((fst.mode & 0o077) !== 0)
      out.push(`${f} has mode 0${(fst.mode & 0o777).toString(8)}: expected 0600 or 0400 (${fix})`);
  }
  return out;
}

/**
 * The value versions `GET /v1/credentials` shows on the Docker runtime, read by the control plane
 * through the same mapping the gateway container sees: files under `gateway.credentialsDir`,
 * variables of `gateway.credentialEnv` (null: not available to the gateway either).
 */
export function dockerCredentialVersions(
  cfg: Config,
  env: NodeJS.ProcessEnv = process.env,
): { versionOf(source: CredentialSource): string | null } {
  const names = new Set(cfg.gateway.credentialEnv);
  return {
    versionOf(source) {
      if ('env' in source) {
        const v = names.has(source.env) ? env[source.env] : undefined;
        return v ? valueVersion(v) : null;
      }
      if (!('file' in source)) return null; // secretRef: Kubernetes only
      const host = hostCredentialPath(source.file, cfg.gateway.credentialsDir);
      if (host === null) return null;
      try {
        let v = readFileSync(host, 'utf8');
        if (v.endsWith('\r\n')) v = v.slice(0, -2);
        else if (v.endsWith('\n')) v = v.slice(0, -1);
        return v ? valueVersion(v) : null;
      } catch {
        return null;
      }
    },
  };
}
