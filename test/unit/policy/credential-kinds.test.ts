/**
 * Issue 14 part B: the credential kinds computed per request (aws-sigv4, oauth2-*), the Kubernetes
 * Secret source, and the `airlock policy check` findings that need the deployment (passthrough hosts,
 * sources the gateway cannot read).
 */
import { describe, expect, it } from 'vitest';
import { PolicyError } from '../../../src/errors.js';
import { secretNamesOf, sourcesOf } from '../../../src/policy/credential-kinds.js';
import { lintCredentials } from '../../../src/policy/credentials-lint.js';
import { appliedAs, parseCredentials, sourceKey } from '../../../src/policy/credentials.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';

const POLICY = [
  'p, bot, s3.example.com, /*, *, allow',
  'p, bot, api.example.com, /v1/*, GET, allow',
  '',
].join('\n');

const KINDS = `version: 1
credentials:
  - name: s3
    roles: [bot]
    bindings: [{ host: s3.example.com }]
    apply: { type: aws-sigv4, region: eu-west-1 }
    source: { secretRef: { name: airlock-s3, key: keys } }
  - name: api-cc
    roles: [bot]
    bindings: [{ host: api.example.com, path: /v1/*, methods: [GET] }]
    apply: { type: oauth2-client-credentials, tokenUrl: "https://idp.example.com/token", clientId: bot, scope: "read write" }
    source: { file: /run/airlock/credentials/cc-secret }
  - name: api-rt
    roles: [bot]
    bindings: [{ host: api.example.com, path: /v1/*, methods: [GET] }]
    apply:
      type: oauth2-refresh-token
      tokenUrl: "https://idp.example.com/token"
      clientId: bot
      clientSecret: { secretRef: { name: airlock-idp, key: client-secret } }
      clientAuth: post
    source: { env: AIRLOCK_RT }
`;

function errorOf(text: string): PolicyError {
  try {
    parseCredentials(text);
  } catch (err) {
    if (err instanceof PolicyError) return err;
    throw err;
  }
  throw new Error('expected a PolicyError');
}

const one = (apply: string, source = '{ env: X_VALUE }'): string =>
  `version: 1\ncredentials:\n  - name: c\n    roles: [bot]\n    bindings: [{ host: s3.example.com }]\n    apply: ${apply}\n    source: ${source}\n`;

describe('credential kinds (credentials.yaml)', () => {
  it('parses SigV4 and both OAuth2 grants with their defaults, and secretRef sources', () => {
    const [s3, cc, rt] = parseCredentials(KINDS).definitions;
    expect(s3!.apply).toEqual({ type: 'aws-sigv4', region: 'eu-west-1', service: 's3' });
    expect(cc!.apply).toEqual({
      type: 'oauth2-client-credentials',
      tokenUrl: 'https://idp.example.com/token',
      clientId: 'bot',
      scope: 'read write',
      clientAuth: 'basic',
    });
    expect(rt!.apply).toMatchObject({ type: 'oauth2-refresh-token', clientAuth: 'post' });
    for (const d of [s3!, cc!, rt!]) expect(appliedAs(d.apply)).toBe('authorization');
    expect(sourceKey(s3!.source)).toBe('secret:airlock-s3/keys');
    expect(sourcesOf(rt!).map(sourceKey)).toEqual(['env:AIRLOCK_RT', 'secret:airlock-idp/client-secret']);
    expect(secretNamesOf(parseCredentials(KINDS).definitions)).toEqual(['airlock-idp', 'airlock-s3']);
  });

  it.each([
    ['a region with capitals', one('{ type: aws-sigv4, region: EU }'), /credentials\.0\.apply\.region/],
    ['SigV4 without a region', one('{ type: aws-sigv4 }'), /credentials\.0\.apply\.region/],
    [
      'a token URL with userinfo',
      one('{ type: oauth2-client-credentials, tokenUrl: "https://u:p@idp.test/t", clientId: a }'),
      /credentials\.0\.apply\.tokenUrl: expected an absolute http/,
    ],
    [
      'a token URL that is not http(s)',
      one('{ type: oauth2-client-credentials, tokenUrl: "file:///etc/passwd", clientId: a }'),
      /apply\.tokenUrl/,
    ],
    [
      'a scope with a quote',
      one('{ type: oauth2-client-credentials, tokenUrl: "https://idp.test/t", clientId: a, scope: \'a"b\' }'),
      /apply\.scope/,
    ],
    [
      'an unknown client authentication',
      one(
        '{ type: oauth2-client-credentials, tokenUrl: "https://idp.test/t", clientId: a, clientAuth: jwt }',
      ),
      /apply\.clientAuth/,
    ],
    [
      'an unknown key in apply',
      one('{ type: oauth2-refresh-token, tokenUrl: "https://idp.test/t", clientId: a, secret: x }'),
      /apply/,
    ],
    [
      'a Secret name with capitals',
      one('{ type: bearer }', '{ secretRef: { name: Airlock, key: k } }'),
      /source/,
    ],
    [
      'a Secret key with a slash',
      one('{ type: bearer }', '{ secretRef: { name: a, key: "a/b" } }'),
      /source/,
    ],
  ])('refuses %s, naming the field', (_name, text, re) => {
    const err = errorOf(text);
    expect(err.message).toMatch(re);
    expect(err.message).toMatch(/^credentials\.yaml:\d+: |credentials\.0/);
  });
});

describe('airlock policy check: what the deployment allows', () => {
  const policy = compilePolicy(CANONICAL_MODEL, POLICY, { files: { 'credentials.yaml': KINDS } });

  it('no deployment given: only the rule checks (all bindings are within the rules)', () => {
    expect(lintCredentials(policy)).toEqual([]);
  });

  it('a Secret not in the gateways list is an error; listed ones are fine', () => {
    const f = lintCredentials(policy, { secretNames: ['airlock-s3'] });
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({
      id: 'credential-source',
      severity: 'error',
      file: 'credentials.yaml',
      line: 13,
    });
    expect(f[0]!.message).toMatch(
      /credential "api-rt": Secret "airlock-idp" is not one the gateways may read/,
    );
    expect(lintCredentials(policy, { secretNames: ['airlock-s3', 'airlock-idp'] })).toEqual([]);
  });

  it('a binding to a passthrough host is an error (the gateway cannot inject there)', () => {
    const f = lintCredentials(policy, { passthrough: ['s3.example.com'] });
    expect(f).toEqual([
      expect.objectContaining({ id: 'credential-passthrough', severity: 'error', line: 5 }),
    ]);
    expect(f[0]!.message).toMatch(/s3\.example\.com is in gateway\.tls\.passthrough/);
    // Another port of the same name is another host.
    expect(lintCredentials(policy, { passthrough: ['s3.example.com:8443'] })).toEqual([]);
  });

  it('Docker: a secretRef, an env not passed and a file outside the mount are errors', () => {
    const f = lintCredentials(policy, { docker: { fileRoot: '/run/airlock/credentials', envNames: [] } });
    expect(f.map((x) => x.message)).toEqual([
      expect.stringMatching(
        /"s3": Secret "airlock-s3" \(secretRef\): the Docker runtime's gateway reads no Kubernetes Secret/,
      ),
      expect.stringMatching(/"api-rt": variable AIRLOCK_RT is not passed to the gateway container/),
      expect.stringMatching(/"api-rt": Secret "airlock-idp"/),
    ]);
    const noDir = lintCredentials(policy, { docker: { fileRoot: null, envNames: ['AIRLOCK_RT'] } });
    expect(noDir.map((x) => x.message)).toContainEqual(
      expect.stringMatching(
        /"api-cc": file \/run\/airlock\/credentials\/cc-secret: no gateway\.credentialsDir is mounted/,
      ),
    );
    const elsewhere = compilePolicy(CANONICAL_MODEL, POLICY, {
      files: {
        'credentials.yaml': one('{ type: bearer }', '{ file: /var/lib/airlock/ca/ca.key }').replace(
          's3.example.com',
          'api.example.com, path: /v1/*, methods: [GET]',
        ),
      },
    });
    expect(
      lintCredentials(elsewhere, { docker: { fileRoot: '/run/airlock/credentials', envNames: [] } }).map(
        (x) => x.message,
      ),
    ).toEqual([
      expect.stringMatching(/file \/var\/lib\/airlock\/ca\/ca\.key is outside \/run\/airlock\/credentials/),
    ]);
  });
});

describe('airlock policy check --config / --secrets (the CLI)', () => {
  it('reads passthrough hosts and the Docker mounts from the config, and --secrets for Kubernetes', async () => {
    const { mkdtempSync, rmSync, writeFileSync, mkdirSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const path = await import('node:path');
    const { policyCheck } = await import('../../../src/cli/policy.js');
    const dir = mkdtempSync(path.join(tmpdir(), 'airlock-check-kinds-'));
    try {
      const pol = path.join(dir, 'policy');
      mkdirSync(pol);
      writeFileSync(path.join(pol, 'model.conf'), CANONICAL_MODEL);
      // GET only: the rule linter warns about "*" on "/*" (dangerous-allow), which is not this test's.
      writeFileSync(path.join(pol, 'policy.csv'), POLICY.replace('/*, *, allow', '/*, GET, allow'));
      writeFileSync(
        path.join(pol, 'credentials.yaml'),
        KINDS.replace(
          'bindings: [{ host: s3.example.com }]',
          'bindings: [{ host: s3.example.com, methods: [GET] }]',
        ),
      );
      const cfg = path.join(dir, 'airlock.yaml');
      writeFileSync(
        cfg,
        'gateway:\n  tls:\n    passthrough: [s3.example.com]\n  credentialEnv: [AIRLOCK_RT]\n',
      );
      const out: string[] = [];
      const io = { out: (t: string) => void out.push(t), err: (t: string) => void out.push(t) };
      expect(await policyCheck(pol, {}, io), out.join('')).toBe(0);
      out.length = 0;
      expect(await policyCheck(pol, { config: cfg }, io)).toBe(1);
      const text = out.join('');
      expect(text).toMatch(/credentials\.yaml:5: error: .*passthrough/);
      expect(text).toMatch(
        /credentials\.yaml:\d+: error: credential "s3": Secret "airlock-s3" \(secretRef\)/,
      );
      expect(text).toMatch(/credential "api-cc": file .* no gateway\.credentialsDir is mounted/);
      out.length = 0;
      expect(await policyCheck(pol, { secrets: ['airlock-s3'] }, io)).toBe(1);
      expect(out.join('')).toMatch(/Secret "airlock-idp" is not one the gateways may read/);
      expect(await policyCheck(pol, { secrets: ['airlock-s3', 'airlock-idp'] }, io)).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
