/**
 * `GET /v1/credentials` (src/api/routes/credentials.ts) and `airlock credentials ls`
 * (src/cli/credentials.ts): the real Express app with a compiled policy holding credentials.yaml,
 * and the CLI's command function talking to it through its API client. Never a value in an answer.
 */
import type { AuditEvent } from '../../../src/audit/event.js';
import { CredentialLastUse } from '../../../src/audit/credential-use.js';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createApiApp } from '../../../src/api/app.js';
import type { CredentialVersions } from '../../../src/api/context.js';
import { ApiMetrics } from '../../../src/api/metrics.js';
import { credentialListSchema } from '../../../src/api/schemas.js';
import { ApiClient, CliError } from '../../../src/cli/client.js';
import { credentialsLs, formatCredentialTable } from '../../../src/cli/credentials.js';
import { valueVersion } from '../../../src/policy/credentials.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import type { PolicySnapshot } from '../../../src/policy/types.js';
import { ALICE, FakeSessions, FixedPolicy, readProblem, SNAPSHOT, TOKENS } from './helpers.js';

const CSV = [
  'p, analyst, api.github.test, /repos/*, GET, allow',
  'p, analyst, api.github.test, /repos/:o/:r/issues, POST, allow',
  'p, poster, search.test, /q, GET, allow',
  '',
].join('\n');

const CREDENTIALS = `version: 1
credentials:
  - name: github
    roles: [analyst]
    bindings:
      - host: api.github.test
        path: /repos/*
        methods: [GET]
      - host: api.github.test
        path: /repos/:o/:r/issues
        methods: [POST]
    apply: { type: bearer }
    source: { file: /run/airlock/credentials/github-token }
    placeholder: { env: GITHUB_TOKEN }
  - name: search
    roles: [poster, analyst]
    bindings:
      - { host: search.test, path: /q }
    apply: { type: query, name: api_key }
    source: { env: SEARCH_KEY }
`;

const SECRET = 'ghp_supersecretvalue0123456789';
const VERSIONS: CredentialVersions = {
  versionOf: (s) => ('file' in s ? valueVersion(SECRET) : null),
};

const policy = (): PolicySnapshot =>
  compilePolicy(CANONICAL_MODEL, CSV, { version: 'pv1', files: { 'credentials.yaml': CREDENTIALS } });

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** Last use as the control plane derives it from the audit trail (src/audit/credential-use.ts). */
const USE = new CredentialLastUse();
USE.observe({
  time: '2026-11-30T01:02:03.456Z',
  decision: 'allow',
  reason: 'rule_allow',
  credential: { name: 'github', version: valueVersion(SECRET) },
} as AuditEvent);

async function start(snapshot: PolicySnapshot | null, versions?: CredentialVersions): Promise<string> {
  const app = createApiApp({
    sessions: new FakeSessions(),
    policy: new FixedPolicy(snapshot),
    tokens: TOKENS,
    metrics: new ApiMetrics({ defaultMetrics: false }),
    ...(versions ? { credentialVersions: versions, credentialUse: USE } : {}),
  });
  server = createServer(app);
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('GET /v1/credentials', () => {
  it('lists names, roles, bindings, apply, source kind and value version, in file order; never a value', async () => {
    const url = await start(policy(), VERSIONS);
    const res = await fetch(`${url}/v1/credentials`, { headers: ALICE });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain(SECRET);
    const body = credentialListSchema.parse(JSON.parse(text));
    expect(body).toEqual({
      policyVersion: 'pv1',
      credentials: [
        {
          name: 'github',
          roles: ['analyst'],
          bindings: [
            { host: 'api.github.test', path: '/repos/*', methods: ['GET'] },
            { host: 'api.github.test', path: '/repos/:o/:r/issues', methods: ['POST'] },
          ],
          apply: { type: 'bearer' },
          source: { kind: 'file', ref: '/run/airlock/credentials/github-token' },
          valueVersion: valueVersion(SECRET),
          placeholder: { env: 'GITHUB_TOKEN' },
          lastUsedAt: '2026-11-30T01:02:03.456Z',
        },
        {
          name: 'search',
          roles: ['poster', 'analyst'],
          bindings: [{ host: 'search.test', path: '/q', methods: ['*'] }],
          apply: { type: 'query', name: 'api_key' },
          source: { kind: 'env', ref: 'SEARCH_KEY' },
          valueVersion: null,
          placeholder: null,
          lastUsedAt: null,
        },
      ],
    });
    expect(body.credentials[0]!.valueVersion).toMatch(/^[0-9a-f]{12}$/);
  });

  it('answers null versions without a version source (Kubernetes, tests)', async () => {
    const url = await start(policy());
    const body = credentialListSchema.parse(
      await (await fetch(`${url}/v1/credentials`, { headers: ALICE })).json(),
    );
    expect(body.credentials.map((c) => c.valueVersion)).toEqual([null, null]);
  });

  it('answers an empty list for a policy without credentials.yaml, and while no policy is loaded', async () => {
    let url = await start(SNAPSHOT);
    expect(await (await fetch(`${url}/v1/credentials`, { headers: ALICE })).json()).toEqual({
      policyVersion: SNAPSHOT.version,
      credentials: [],
    });
    server!.closeAllConnections();
    await new Promise<void>((r) => server!.close(() => r()));
    url = await start(null);
    expect(await (await fetch(`${url}/v1/credentials`, { headers: ALICE })).json()).toEqual({
      policyVersion: null,
      credentials: [],
    });
  });

  it('needs a token (any authenticated caller, no delegation check) and only answers GET', async () => {
    const url = await start(policy(), VERSIONS);
    const anon = await fetch(`${url}/v1/credentials`);
    expect(anon.status).toBe(401);
    expect((await readProblem(anon)).code).toBe('AIRLOCK_UNAUTHORIZED');
    const bob = await fetch(`${url}/v1/credentials`, {
      headers: { authorization: `Bearer ${TOKENS[1]!.token}` },
    });
    expect(bob.status).toBe(200);
    const post = await fetch(`${url}/v1/credentials`, { method: 'POST', headers: ALICE });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');
  });
});

describe('airlock credentials ls', () => {
  it('prints one table line per binding, a credential named on its first', async () => {
    const url = await start(policy(), VERSIONS);
    let out = '';
    await credentialsLs(new ApiClient(url, TOKENS[0]!.token), {}, { out: (t) => (out += t) });
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(
      /^NAME\s+ROLES\s+HOST\s+PATH\s+METHODS\s+APPLY\s+SOURCE\s+VERSION\s+PLACEHOLDER\s+LAST USED$/,
    );
    expect(lines[1]).toMatch(
      new RegExp(
        `^github\\s+analyst\\s+api\\.github\\.test\\s+/repos/\\*\\s+GET\\s+bearer\\s+file:/run/airlock/credentials/github-token\\s+${valueVersion(SECRET)}\\s+env:GITHUB_TOKEN\\s+2026-11-30T01:02:03\\.456Z$`,
      ),
    );
    expect(lines[2]).toMatch(/^\s+api\.github\.test\s+\/repos\/:o\/:r\/issues\s+POST$/);
    expect(lines[3]).toMatch(
      /^search\s+poster,analyst\s+search\.test\s+\/q\s+\*\s+query:api_key\s+env:SEARCH_KEY\s+-\s+-\s+-$/,
    );
    expect(lines).toHaveLength(4);
    expect(out).not.toContain(SECRET);
  });

  it('--json prints the API answer', async () => {
    const url = await start(policy(), VERSIONS);
    let out = '';
    await credentialsLs(new ApiClient(url, TOKENS[0]!.token), { json: true }, { out: (t) => (out += t) });
    const body = credentialListSchema.parse(JSON.parse(out));
    expect(body.credentials.map((c) => c.name)).toEqual(['github', 'search']);
  });

  it('says so when there is nothing to list, and fails with the API error on a bad token', async () => {
    expect(formatCredentialTable({ policyVersion: null, credentials: [] })).toBe('no policy loaded\n');
    expect(formatCredentialTable({ policyVersion: 'v9', credentials: [] })).toBe(
      'no credentials in policy v9\n',
    );
    const url = await start(policy());
    await expect(
      credentialsLs(new ApiClient(url, 'wrong-token-0123456789'), {}, { out: () => {} }),
    ).rejects.toThrow(CliError);
  });
});
