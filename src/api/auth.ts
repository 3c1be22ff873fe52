import { createHash, timingSafeEqual } from 'node:crypto';
import { ConfigError } from '../errors.js';

/** One accepted API bearer token and the caller name it stands for. */
export interface ApiToken {
  /** Caller name: recorded as the session's `createdBy` and in logs. */
  name: string;
  /** The secret sent as `Authorization: Bearer <token>`. */
  token: string;
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * Checks bearer tokens in constant time. Only SHA-256 digests of the tokens are kept; a presented
 * token is hashed and compared with every known digest using `crypto.timingSafeEqual` (digests have
 * equal length, so neither the token's length nor the position of the first differing byte leaks
 * through timing), and the loop never exits early.
 */
export class TokenVerifier {
  readonly #entries: ReadonlyArray<{ name: string; digest: Buffer }>;

  /**
   * @throws ConfigError (`api.tokens.N.name` / `api.tokens.N.token`) for an empty name or token, or a
   *   token listed twice (its caller would be ambiguous).
   */
  constructor(tokens: readonly ApiToken[]) {
    const seen = new Set<string>();
    this.#entries = tokens.map(({ name, token }, i) => {
      if (!name) throw new ConfigError(`api.tokens.${i}.name must not be empty`, `api.tokens.${i}.name`);
      if (!token) throw new ConfigError(`api.tokens.${i}.token must not be empty`, `api.tokens.${i}.token`);
      const digest = sha256(token);
      const hex = digest.toString('hex');
      if (seen.has(hex)) {
        throw new ConfigError(`api.tokens.${i}.token repeats an earlier token`, `api.tokens.${i}.token`);
      }
      seen.add(hex);
      return { name, digest };
    });
  }

  /** The caller name of `token`, or null when it matches no configured token. */
  verify(token: string): string | null {
    const digest = sha256(token);
    let caller: string | null = null;
    for (const entry of this.#entries) {
      if (timingSafeEqual(digest, entry.digest)) caller = entry.name;
    }
    return caller;
  }
}

/**
 * Extracts the token from an `Authorization` header value (`Bearer <token>`, scheme case-insensitive,
 * RFC 6750 §2.1). Returns null when the header is absent or uses another scheme.
 */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
  return m?.[1] ?? null;
}
