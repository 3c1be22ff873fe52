import { describe, expect, it } from 'vitest';
import { GatewayReplicas } from '../../../src/runtime/kubernetes/gateway-replicas.js';

// Issue 16: the controller resolved the headless admin Service with dns.resolve4/resolve6, which
// query DNS servers directly and ignore resolv.conf's search list and /etc/hosts; inside a Pod a
// namespace-qualified name (`x.ns.svc`) then failed with ESERVFAIL. Discovery must resolve names the
// way every other client does (getaddrinfo). `localhost` comes from /etc/hosts only: resolve4 fails
// on it, lookup answers.
describe('GatewayReplicas.endpoints (issue 16)', () => {
  it('resolves the Service name through the system resolver (hosts file, search list)', async () => {
    const r = new GatewayReplicas({ service: 'localhost', port: 9090, token: 't' });
    const urls = await r.endpoints();
    expect(urls).toContain('http://127.0.0.1:9090');
    expect(new Set(urls).size).toBe(urls.length);
  });

  it('reports a name that resolves to nothing', async () => {
    const r = new GatewayReplicas({ service: 'no-such-name.invalid', port: 9090, token: 't' });
    await expect(r.endpoints()).rejects.toThrow(/resolves to no address/);
  });
});
