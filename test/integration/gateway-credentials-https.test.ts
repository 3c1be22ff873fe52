/**
 * Issue 14 on the intercepted-HTTPS path: the gateway (in-process) opens CONNECT tunnels with a leaf
 * of its CA, and every request inside gets the same credential treatment as plain HTTP — injection
 * where bound, placeholders swapped only there, the leak stop on the URL, headers and the body. The
 * upstream is nginx over TLS (test CA) in front of json-server, on loopback.
 */
import 'reflect-metadata';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditSink } from '../../src/audit/file-sink.js';
import { DestinationPolicy } from '../../src/gateway/address.js';
import { CredentialVault } from '../../src/gateway/credentials.js';
import { EgressGateway, withGatewayDefaults } from '../../src/gateway/proxy.js';
import { UpstreamResolver } from '../../src/gateway/resolve.js';
import { SessionTable } from '../../src/gateway/sessions.js';
import { LeafCache } from '../../src/gateway/tls/leaf-cache.js';
import { loadOrCreateCa } from '../../src/pki/ca.js';
import { newPlaceholder, valueVersion } from '../../src/policy/credentials.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { PolicyStore } from '../../src/policy/store.js';
import { startTlsUpstreams, type TlsUpstreams } from '../helpers/tls-upstream.js';
import { startJsonServer, type JsonServer } from '../helpers/upstreams.js';

const run = promisify(execFile);
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const TOKEN = 'tlsTok-5e4d3c2b1a0f9e8d7c6b5a49';
const S = { id: 's-tls', cred: 'cred-tls-0123456789ab', address: '127.0.0.1' };
const PH = newPlaceholder('forum');

let forum: JsonServer;
let up: TlsUpstreams;
let dir: string;
let caFile: string;
let policy: PolicyStore;
let vault: CredentialVault;
let gateway: EgressGateway;
let audit: MemoryAuditSink;
let port: number;
const exfiltrations: string[] = [];

beforeAll(async () => {
  forum = await startJsonServer();
  up = await startTlsUpstreams('127.0.0.1', forum.url);
  dir = mkdtempSync(path.join(tmpdir(), 'airlock-creds-tls-'));
  const ca = await loadOrCreateCa(path.join(dir, 'ca'));
  caFile = path.join(dir, 'airlock-ca.pem');
  writeFileSync(caFile, ca.trustPem);
  const s = up.ports.secure;
  writeFileSync(path.join(dir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(
    path.join(dir, 'policy.csv'),
    [
      `p, agent, secure.test:${s}, /posts/*, GET, allow`,
      `p, agent, secure.test:${s}, /posts, POST, allow`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    path.join(dir, 'credentials.yaml'),
    [
      'version: 1',
      'credentials:',
      '  - name: forum',
      '    roles: [agent]',
      `    bindings: [{ host: "secure.test:${s}", path: /posts/*, methods: [GET] }]`,
      '    apply: { type: bearer }',
      '    source: { env: FORUM_TOKEN }',
      '    placeholder: { env: FORUM_TOKEN }',
      '',
    ].join('\n'),
  );
  policy = await PolicyStore.open(dir, { watch: false });
  expect(policy.current(), policy.lastError() ?? '').not.toBeNull();
  vault = new CredentialVault({ env: { FORUM_TOKEN: TOKEN }, pollIntervalMs: 0 });
  const sessions = new SessionTable();
  sessions.upsert({
    id: S.id,
    role: 'agent',
    address: S.address,
    credentialSha256: sha(S.cred),
    expiresAtMs: Date.now() + 3_600_000,
    placeholders: { forum: PH },
  });
  audit = new MemoryAuditSink();
  gateway = new EgressGateway(
    withGatewayDefaults({
      policy,
      sessions,
      audit,
      credentials: vault,
      onExfiltration: (n) => exfiltrations.push(n),
      resolver: new UpstreamResolver(
        new DestinationPolicy(['127.0.0.0/8']),
        new Map([['secure.test', '127.0.0.1']]),
      ),
      upstreamCaPem: up.caPem,
      intercept: { leaves: new LeafCache(ca), passthrough: [] },
    }),
  );
  port = (await gateway.listen(0, '127.0.0.1')).port;
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  vault?.close();
  await policy?.close();
  await up?.stop();
  await forum?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const url = (p: string): string => `https://secure.test:${up.ports.secure}${p}`;
const last = () => audit.events.filter((e) => e.method !== 'CONNECT').at(-1)!;

async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const { stdout } = await run('curl', [
    '-s',
    '--cacert',
    caFile,
    '-x',
    `http://${S.id}:${S.cred}@127.0.0.1:${port}`,
    '-w',
    '\n%{http_code}',
    ...args,
  ]);
  const i = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
}

describe('credentials inside intercepted HTTPS tunnels (issue 14)', () => {
  it('injects where bound; the placeholder there is swapped (audited with the version)', async () => {
    const r = await curl(['-H', `authorization: Bearer ${PH}`, url('/posts/1')]);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ id: 1 });
    expect(last()).toMatchObject({
      scheme: 'https',
      decision: 'allow',
      credential: { name: 'forum', version: valueVersion(TOKEN) },
    });
  });

  it.each([
    [
      'the placeholder in a JSON body',
      ['-H', 'content-type: application/json', '-d', JSON.stringify({ title: PH })],
      'body:placeholder',
    ],
    [
      'the real value base64 in a body',
      ['--data-binary', Buffer.from(`x:${TOKEN}`).toString('base64')],
      'body',
    ],
    [
      'the placeholder in a header of an unbound call',
      ['-H', `x-note: ${PH}`, '-d', '{}'],
      'header:x-note:placeholder',
    ],
  ])('%s -> 403 credential_not_bound, nothing created upstream', async (_n, args, where) => {
    const before = ((await (await fetch(`${forum.url}/posts`)).json()) as unknown[]).length;
    const r = await curl([...args, url('/posts')]);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'credential_not_bound', sessionId: S.id });
    expect(last()).toMatchObject({ scheme: 'https', reason: 'exfiltration_attempt', secretFoundIn: where });
    expect(((await (await fetch(`${forum.url}/posts`)).json()) as unknown[]).length).toBe(before);
    expect(exfiltrations.at(-1)).toBe('forum');
  });

  it('a clean body is buffered, scanned and forwarded as sent', async () => {
    const r = await curl([
      '-H',
      'content-type: application/json',
      '-d',
      '{"title":"clean","views":0}',
      url('/posts'),
    ]);
    expect(r.status).toBe(201);
    expect(JSON.parse(r.body)).toMatchObject({ title: 'clean', views: 0 });
    expect(JSON.stringify(audit.events)).not.toContain(TOKEN);
  });
});
