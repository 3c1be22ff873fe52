import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  auditListSchema,
  execResultSchema,
  problemSchema,
  sessionListSchema,
  sessionSchema,
} from '../../../src/api/schemas.js';
import type { AuditEvent } from '../../../src/audit/event.js';
import { ALICE, postJson, readProblem, startApi, TOKENS, type TestApi } from './helpers.js';

let api: TestApi;
beforeEach(async () => {
  api = await startApi();
});
afterEach(async () => {
  await api.close();
});

async function createSession(body: Record<string, unknown> = { role: 'analyst' }): Promise<string> {
  const res = await postJson(`${api.url}/v1/sessions`, body);
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

describe('POST /v1/sessions', () => {
  it('creates a session as the token holder and answers 201 with Location', async () => {
    const res = await postJson(`${api.url}/v1/sessions`, {
      role: 'analyst',
      image: 'airlock-sandbox:dev',
      env: { TASK: 'summarise' },
      ttlSeconds: 600,
      labels: { ticket: 'OPS-42' },
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = sessionSchema.parse(await res.json());
    expect(body).toMatchObject({ id: 's-1', role: 'analyst', status: 'running', createdBy: 'alice' });
    expect(body.labels).toEqual({ ticket: 'OPS-42' });
    expect(res.headers.get('location')).toBe('/v1/sessions/s-1');
    expect(api.sessions.calls[0]).toEqual({
      op: 'create',
      args: [
        {
          role: 'analyst',
          image: 'airlock-sandbox:dev',
          env: { TASK: 'summarise' },
          ttlSeconds: 600,
          labels: { ticket: 'OPS-42' },
        },
        'alice',
      ],
    });
  });

  it('passes the matching token name as the caller', async () => {
    const res = await postJson(
      `${api.url}/v1/sessions`,
      { role: 'poster' },
      { authorization: `Bearer ${TOKENS[1]!.token}` },
    );
    expect(res.status).toBe(201);
    expect(api.sessions.calls[0]?.args[1]).toBe('bob');
  });

  it('answers 422 AIRLOCK_UNKNOWN_ROLE when the service does not know the role', async () => {
    const res = await postJson(`${api.url}/v1/sessions`, { role: 'admin' });
    expect(res.status).toBe(422);
    const p = problemSchema.parse(await readProblem(res));
    expect(p).toMatchObject({
      status: 422,
      code: 'AIRLOCK_UNKNOWN_ROLE',
      type: 'urn:airlock:error:AIRLOCK_UNKNOWN_ROLE',
      title: 'Unknown role',
    });
    expect(p.detail).toContain('"admin"');
  });

  it('answers 403 when the service refuses the caller', async () => {
    const res = await postJson(`${api.url}/v1/sessions`, { role: 'forbidden' });
    expect(res.status).toBe(403);
    expect(await readProblem(res)).toMatchObject({ code: 'AIRLOCK_FORBIDDEN' });
  });

  it('answers 503 when the gateway is unavailable', async () => {
    const res = await postJson(`${api.url}/v1/sessions`, { role: 'analyst', image: 'gateway-down' });
    expect(res.status).toBe(503);
    expect(await readProblem(res)).toMatchObject({ code: 'AIRLOCK_GATEWAY_UNAVAILABLE' });
  });
});

describe('GET /v1/sessions and /v1/sessions/:id', () => {
  it('lists sessions', async () => {
    await createSession();
    await createSession({ role: 'poster' });
    const res = await fetch(`${api.url}/v1/sessions`, { headers: ALICE });
    expect(res.status).toBe(200);
    const body = sessionListSchema.parse(await res.json());
    expect(body.sessions.map((s) => s.id)).toEqual(['s-1', 's-2']);
  });

  it('lists nothing as an empty array', async () => {
    const res = await fetch(`${api.url}/v1/sessions`, { headers: ALICE });
    expect(await res.json()).toEqual({ sessions: [] });
  });

  it('gets one session', async () => {
    const id = await createSession();
    const res = await fetch(`${api.url}/v1/sessions/${id}`, { headers: ALICE });
    expect(res.status).toBe(200);
    expect(sessionSchema.parse(await res.json()).id).toBe(id);
  });

  it('answers 404 AIRLOCK_SESSION_NOT_FOUND for an unknown id', async () => {
    const res = await fetch(`${api.url}/v1/sessions/nope`, { headers: ALICE });
    expect(res.status).toBe(404);
    expect(await readProblem(res)).toMatchObject({ status: 404, code: 'AIRLOCK_SESSION_NOT_FOUND' });
  });

  it('answers 400 naming `id` for an id that cannot exist', async () => {
    const res = await fetch(`${api.url}/v1/sessions/${encodeURIComponent('a b\n')}`, { headers: ALICE });
    expect(res.status).toBe(400);
    expect(await readProblem(res)).toMatchObject({ code: 'AIRLOCK_REQUEST_INVALID', field: 'id' });
  });
});

describe('POST /v1/sessions/:id/exec', () => {
  it('runs the command with the default 60 s timeout and answers 200', async () => {
    const id = await createSession();
    const res = await postJson(`${api.url}/v1/sessions/${id}/exec`, { command: ['echo', 'hi'] });
    expect(res.status).toBe(200);
    expect(execResultSchema.parse(await res.json())).toEqual({ exitCode: 0, stdout: 'echo hi', stderr: '' });
    expect(api.sessions.calls.at(-1)).toEqual({ op: 'exec', args: [id, ['echo', 'hi'], 60_000] });
  });

  it('streams output as NDJSON lines ending with the exit code when stream is true', async () => {
    const id = await createSession();
    const res = await postJson(`${api.url}/v1/sessions/${id}/exec`, {
      command: ['false', 'x'],
      stream: true,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/application\/x-ndjson/);
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([
      { stream: 'stdout', data: 'false x' },
      { stream: 'stderr', data: 'warn' },
      { exitCode: 1 },
    ]);
  });

  it('ends a stream with the error code when the command cannot run', async () => {
    const id = await createSession();
    const res = await postJson(`${api.url}/v1/sessions/${id}/exec`, { command: ['slow'], stream: true });
    const last = JSON.parse((await res.text()).trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(last.error).toBe('AIRLOCK_EXEC_TIMEOUT');
  });

  it('never streams the text of an unexpected error: AIRLOCK_INTERNAL naming the request id', async () => {
    const id = await createSession();
    const res = await postJson(`${api.url}/v1/sessions/${id}/exec`, { command: ['boom'], stream: true });
    const text = await res.text();
    expect(text).not.toContain('secret internal detail');
    const last = JSON.parse(text.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(last.error).toBe('AIRLOCK_INTERNAL');
    expect(String(last.detail)).toContain(res.headers.get('x-request-id')!);
  });

  it('converts timeoutSeconds to ms and reports a non-zero exit code as 200', async () => {
    const id = await createSession();
    const res = await postJson(`${api.url}/v1/sessions/${id}/exec`, {
      command: ['false'],
      timeoutSeconds: 5,
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { exitCode: number }).exitCode).toBe(1);
    expect(api.sessions.calls.at(-1)?.args[2]).toBe(5_000);
  });

  it('answers 404 for an unknown session', async () => {
    const res = await postJson(`${api.url}/v1/sessions/s-99/exec`, { command: ['true'] });
    expect(res.status).toBe(404);
    expect(await readProblem(res)).toMatchObject({ code: 'AIRLOCK_SESSION_NOT_FOUND' });
  });

  it('answers 409 when the session is not running', async () => {
    const id = await createSession();
    api.sessions.sessions.get(id)!.status = 'stopping';
    const res = await postJson(`${api.url}/v1/sessions/${id}/exec`, { command: ['true'] });
    expect(res.status).toBe(409);
    expect(await readProblem(res)).toMatchObject({ code: 'AIRLOCK_SESSION_CONFLICT' });
  });

  it('answers 504 when the command times out', async () => {
    const id = await createSession();
    const res = await postJson(`${api.url}/v1/sessions/${id}/exec`, { command: ['slow'], timeoutSeconds: 2 });
    expect(res.status).toBe(504);
    const p = await readProblem(res);
    expect(p).toMatchObject({ code: 'AIRLOCK_EXEC_TIMEOUT' });
    expect(p.detail).toContain('2000 ms');
  });

  it("answers 502 with the runtime's own message", async () => {
    const id = await createSession();
    const res = await postJson(`${api.url}/v1/sessions/${id}/exec`, { command: ['runtime-fail'] });
    expect(res.status).toBe(502);
    const p = await readProblem(res);
    expect(p).toMatchObject({ code: 'AIRLOCK_RUNTIME_FAILED' });
    expect(p.detail).toBe('exec failed: container 1234 is not running');
  });

  it('answers 500 with a generic detail for unexpected errors, never their text', async () => {
    const id = await createSession();
    const res = await postJson(`${api.url}/v1/sessions/${id}/exec`, { command: ['boom'] });
    expect(res.status).toBe(500);
    const p = await readProblem(res);
    expect(p).toMatchObject({ code: 'AIRLOCK_INTERNAL', status: 500 });
    expect(JSON.stringify(p)).not.toContain('secret');
    expect(p.detail).toContain(res.headers.get('x-request-id'));
  });
});

describe('GET /v1/sessions/:id/audit', () => {
  it("returns the session's events", async () => {
    const id = await createSession();
    const event: AuditEvent = {
      time: '2026-01-01T00:00:01.000Z',
      sessionId: id,
      role: 'analyst',
      method: 'GET',
      scheme: 'https',
      host: 'forum.test',
      port: 443,
      path: '/posts',
      decision: 'allow',
      rule: 'policy.csv:3: p, analyst, forum.test, /posts, GET, allow',
      reason: 'rule_allow',
      status: 200,
      durationMs: 12.5,
      bytesOut: 0,
      bytesIn: 321,
      policyVersion: 'abc123def456',
    };
    api.sessions.events.set(id, [event]);
    const res = await fetch(`${api.url}/v1/sessions/${id}/audit`, { headers: ALICE });
    expect(res.status).toBe(200);
    expect(auditListSchema.parse(await res.json())).toEqual({ events: [event] });
  });

  it('answers 404 for an unknown session', async () => {
    const res = await fetch(`${api.url}/v1/sessions/s-7/audit`, { headers: ALICE });
    expect(res.status).toBe(404);
  });
});

describe('DELETE /v1/sessions/:id', () => {
  it('removes the session and answers 204 with no body', async () => {
    const id = await createSession();
    const res = await fetch(`${api.url}/v1/sessions/${id}`, { method: 'DELETE', headers: ALICE });
    expect(res.status).toBe(204);
    expect(await res.text()).toBe('');
    expect(api.sessions.sessions.has(id)).toBe(false);
    const again = await fetch(`${api.url}/v1/sessions/${id}`, { method: 'DELETE', headers: ALICE });
    expect(again.status).toBe(404);
  });
});
