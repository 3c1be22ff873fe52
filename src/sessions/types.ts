/** A session as the API returns it (DESIGN.md "API"). Times are ISO-8601 strings. */
export interface SessionView {
  id: string;
  role: string;
  status: 'running' | 'stopping' | 'stopped';
  image: string;
  createdAt: string;
  expiresAt: string;
  /** API caller (token name) that created the session. */
  createdBy: string;
  labels: Record<string, string>;
}

/** What the gateway needs to know about a session: no secret in clear, only its SHA-256. */
export interface GatewaySession {
  id: string;
  role: string;
  /** The sandbox's IP address on its session network; requests from any other address are refused. */
  address: string;
  /** Hex SHA-256 of the session credential sent in Proxy-Authorization. */
  credentialSha256: string;
  /** Expiry as epoch ms; the gateway refuses the session from this instant on its own. */
  expiresAtMs: number;
}
