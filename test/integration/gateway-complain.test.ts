/**
 * Complain mode in the real gateway service (`startGatewayService`, the process a gateway container
 * runs) in front of json-server on loopback: a denied GET of a role of modes.yaml reaches json-server
 * and is audited `would_deny`; a POST and a DELETE are refused and json-server is unchanged; `/metrics`
 * counts the would-deny decisions; editing modes.yaml (enforce) is picked up by the gateway's own
 * policy watcher, after which the same GET is refused.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { type RunningGateway, startGatewayService } from '../../src/gateway/service.js';
import { CANONICAL_MODEL } from '../../src/policy/model.js';
import { proxyRequest } from '../helpers/proxy-client.js';
import { startJsonServer, type JsonServer } from '../helpers/upstreams.js';

const TOKEN = 'admin-token-0123456789';
const S = { id: 's-complain', cred: 'cred-complain-0123456789', address: '127.0.0.7' };
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

let root: string;
let policyDir: string;
let auditFile: string;
let forum: JsonServer;
let gw: RunningGateway;

function call(method: string, p: string, headers: Record<string, string> = {}): Promise<{ status: number }> {
  return proxyRequest({ host: '127.0.0.1', port: gw.proxyPort }, `http://forum.test:${forum.port}${p}`, {
    method,
    auth: `${S.id}:${S.cred}`,
    localAddress: S.address,
    ...(method === 'POST'
      ? { body: '{"title":"x"}', headers: { 'content-type': 'application/json', ...headers } }
      : { headers }),
  });
}

function metricsText(): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: gw.adminPort, path: '/metrics' }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      })
      .once('error', reject);
  });
}

function auditEvents(): AuditEvent[] {
  return readFileSync(auditFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditEvent);
}

/** Waits (bounded) until `ok` holds for the audit file's events. */
async function auditUntil(ok: (e: AuditEvent[]) => boolean): Promise<AuditEvent[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const events = auditEvents();
    if (ok(events)) return events;
    if (Date.now() > deadline) throw new Error(`audit not as expected: ${JSON.stringify(events.slice(-3))}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'airlock-complain-'));
  policyDir = path.join(root, 'policy');
  mkdirSync(policyDir);
  forum = await startJsonServer('127.0.0.1');
  writeFileSync(path.join(policyDir, 'model.conf'), CANONICAL_MODEL);
  writeFileSync(
    path.join(policyDir, 'policy.csv'),
    `p, learner, forum.test:${forum.port}, /health, GET, allow\n`,
  );
  writeFileSync(path.join(policyDir, 'modes.yaml'), 'version: 1\ncomplain: [learner]\n');
  auditFile = path.join(root, 'audit.jsonl');
  gw = await startGatewayService(
    {
      port: 0,
      adminPort: 0,
      listenHost: '127.0.0.1',
      policyDir,
      auditFile,
      auditStdout: false,
      hostAliases: { 'forum.test': '127.0.0.1' },
      allowPrivateCidrs: ['127.0.0.0/8'],
    },
    TOKEN,
    pino({ level: 'silent' }),
  );
  gw.sessions.upsert({
    id: S.id,
    role: 'learner',
    address: S.address,
    credentialSha256: sha(S.cred),
    expiresAtMs: Date.now() + 3_600_000,
  });
});

afterAll(async () => {
  await gw?.close();
  await forum?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('complain mode in the gateway service', () => {
  it('forwards denied GETs as would_deny, refuses mutations, counts would_deny in /metrics', async () => {
    expect((await call('GET', '/posts/1')).status).toBe(200);
    expect((await call('GET', '/comments/1')).status).toBe(200);
    expect((await call('POST', '/posts')).status).toBe(403);
    expect((await call('DELETE', '/posts/1')).status).toBe(403);
    expect((await call('GET', '/posts/1', { 'x-http-method-override': 'DELETE' })).status).not.toBe(200);
    const events = await auditUntil((e) => e.length >= 5);
    expect(events.map((e) => [e.method, e.path, e.decision, e.reason])).toEqual([
      ['GET', '/posts/1', 'would_deny', 'no_match'],
      ['GET', '/comments/1', 'would_deny', 'no_match'],
      ['POST', '/posts', 'deny', 'no_match'],
      ['DELETE', '/posts/1', 'deny', 'no_match'],
      ['GET', '/posts/1', 'deny', events[4]!.reason],
    ]);
    expect(forum.db().posts.map((p) => p.id)).toEqual([1]);
    const text = await metricsText();
    expect(text).toMatch(
      /^airlock_gateway_decisions_total\{decision="would_deny",reason="no_match"(,role="learner")?\} 2$/m,
    );
  });

  it('enforces the role once modes.yaml no longer lists it (the gateway reloads it like any policy file)', async () => {
    writeFileSync(path.join(policyDir, 'modes.yaml'), 'version: 1\ncomplain: []\n');
    const deadline = Date.now() + 15_000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await call('GET', '/posts/1')).status;
      if (status === 403) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(status).toBe(403);
    const last = (await auditUntil((e) => e.at(-1)?.decision === 'deny')).at(-1)!;
    expect(last).toMatchObject({ method: 'GET', path: '/posts/1', decision: 'deny', reason: 'no_match' });
  });
});
