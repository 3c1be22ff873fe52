/** Container and network labels: the only state the Docker runtime keeps, read back on restart. */
export const LABEL = {
  managed: 'io.airlock.managed',
  kind: 'io.airlock.kind',
  session: 'io.airlock.session',
  role: 'io.airlock.role',
  credentialSha256: 'io.airlock.credential-sha256',
  createdAt: 'io.airlock.created-at',
  expiresAt: 'io.airlock.expires-at',
  createdBy: 'io.airlock.created-by',
  configHash: 'io.airlock.config-hash',
  /** JSON object credential name → placeholder (docs/credentials.md "Placeholders"). */
  placeholders: 'io.airlock.placeholders',
  /**
   * `true` on a warm-pool sandbox (docs/architecture.md "Warm pools"): created before its session,
   * so its session labels (role, credential, expiry) are absent; the claim record under
   * `<stateDir>/claims` holds them once it is claimed.
   */
  pooled: 'io.airlock.pooled',
  /**
   * `true` on a per-session network made ahead of its session (`runtime.docker.spareNetworks`):
   * one with no sandbox container is a spare, removed by the next control plane that starts.
   */
  spare: 'io.airlock.spare',
  /**
   * The image a sandbox was asked for (its container may run a derived image with the trust bundle
   * baked in, `airlock-trust:<key>`).
   */
  image: 'io.airlock.image',
  /** The sandbox's address on its /29, for a sandbox in its network holder's namespace. */
  address: 'io.airlock.address',
  /** Prefix for user labels given at session creation. */
  userPrefix: 'io.airlock.label.',
} as const;

export const GATEWAY_CONTAINER = 'airlock-gateway';
export const EGRESS_NETWORK = 'airlock-egress';
export const sessionNetworkName = (sessionId: string): string => `airlock-net-${sessionId}`;
export const sandboxContainerName = (sessionId: string): string => `airlock-${sessionId}`;
/**
 * The network holder of a spare network (`runtime.docker.spareNetworks`): a container on the /29 at
 * .3 that holds the network namespace the session's sandbox then joins.
 */
export const netnsHolderName = (sessionId: string): string => `airlock-netns-${sessionId}`;
