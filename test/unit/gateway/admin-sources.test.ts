/**
 * The admin API refuses sandboxes by address range as well as by the session table: a gateway that
 * has just restarted knows no session until the control plane resyncs it (issue 15 finding). A real
 * admin server on loopback; the refused range here is loopback itself.
 */
import type http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { cidrBlockList, createAdminServer, listen } from '../../../src/gateway/admin.js';
import { parseGatewayServiceConfig } from '../../../src/gateway-wire/config.js';
import { SessionTable } from '../../../src/gateway/sessions.js';
import type { PolicySource } from '../../../src/policy/types.js';

const token = 'admin-token-0123456789';
const policy = { current: () => null, lastError: () => null } as unknown as PolicySource;
let server: http.Server | null = null;

afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

async function healthz(refuseSources?: string[]): Promise<number> {
  server = createAdminServer({
    sessions: new SessionTable(),
    policy,
    token,
    instanceId: 'gw',
    ...(refuseSources ? { refuseSources } : {}),
  });
  const { port } = await listen(server, 0, '127.0.0.1');
  const res = await fetch(`http://127.0.0.1:${port}/admin/status`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return res.status;
}

describe('admin API: refused source ranges', () => {
  it('answers a caller outside the ranges, refuses one inside with 403 even holding the token', async () => {
    expect(await healthz()).toBe(200);
    expect(await healthz(['10.213.0.0/16'])).toBe(200);
    expect(await healthz(['127.0.0.0/8'])).toBe(403);
  });

  it('parses CIDRs of both families and rejects what is not one, naming it', () => {
    const l = cidrBlockList(['10.213.0.0/16', 'fd00::/8', '192.0.2.7']);
    expect(l.check('10.213.4.9', 'ipv4')).toBe(true);
    expect(l.check('10.214.0.1', 'ipv4')).toBe(false);
    expect(l.check('fd12::1', 'ipv6')).toBe(true);
    expect(l.check('192.0.2.7', 'ipv4')).toBe(true);
    expect(() => cidrBlockList(['10.213.0.0/33'])).toThrow('not a CIDR: "10.213.0.0/33"');
    expect(() => cidrBlockList(['sandbox-net'])).toThrow('not a CIDR');
  });

  it('the gateway config refuses a bad range by its path', () => {
    const base = { policyDir: '/p', auditFile: '/a' };
    expect(
      parseGatewayServiceConfig({ ...base, adminRefuseSources: ['10.213.0.0/16'] }, token).adminRefuseSources,
    ).toEqual(['10.213.0.0/16']);
    expect(() => parseGatewayServiceConfig({ ...base, adminRefuseSources: ['x'] }, token)).toThrow(
      /adminRefuseSources/,
    );
  });
});
