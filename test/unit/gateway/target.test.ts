import { describe, expect, it } from 'vitest';
import { RequestValidationError } from '../../../src/errors.js';
import { parseAbsoluteTarget, parseConnectTarget } from '../../../src/gateway/target.js';

describe('parseAbsoluteTarget', () => {
  it('normalises host and path; keeps the query for upstream only', () => {
    const t = parseAbsoluteTarget('http://Forum.TEST./a/./b/../c//d?x=1');
    expect(t).toMatchObject({
      scheme: 'http',
      host: 'forum.test',
      port: 80,
      path: '/a/c/d',
      query: '?x=1',
      policyHost: 'forum.test',
      authority: 'forum.test',
    });
  });
  it('keeps a non-default port in the policy host', () => {
    const t = parseAbsoluteTarget('http://cfg.test:2379/v3/kv/range');
    expect(t.policyHost).toBe('cfg.test:2379');
    expect(t.authority).toBe('cfg.test:2379');
  });
  it('drops the default port', () => {
    expect(parseAbsoluteTarget('http://forum.test:80/').policyHost).toBe('forum.test');
  });
  it('handles IPv6 literals', () => {
    const t = parseAbsoluteTarget('http://[::1]:8080/x');
    expect(t.host).toBe('::1');
    expect(t.authority).toBe('[::1]:8080');
    expect(parseAbsoluteTarget('http://[0:0::1]/').host).toBe('::1');
  });
  it('converts IDN to punycode', () => {
    expect(parseAbsoluteTarget('http://bücher.example/').host).toBe('xn--bcher-kva.example');
  });
  const refused = [
    '/origin-form',
    'https://tls.test/',
    'http://user:pw@forum.test/',
    'http://forum.test/a%2Fb',
    'http://forum.test/a%5Cb',
    'http://forum.test/a%00b',
    'http://forum.test\\@evil.test/',
    'http://forum.test:99999/',
    'http://forum.test:x/',
    'http://forum.test/#frag',
    'http:///nohost',
  ];
  for (const url of refused) {
    it(`refuses ${JSON.stringify(url)}`, () =>
      expect(() => parseAbsoluteTarget(url)).toThrow(RequestValidationError));
  }
});

describe('parseConnectTarget', () => {
  it('needs a port; 443 is the default-port policy host', () => {
    expect(parseConnectTarget('api.test:443').policyHost).toBe('api.test');
    expect(parseConnectTarget('api.test:8443').policyHost).toBe('api.test:8443');
    expect(() => parseConnectTarget('api.test')).toThrow(RequestValidationError);
  });
});
