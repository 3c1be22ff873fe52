import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE, postJson, readProblem, startApi, type TestApi } from './helpers.js';

let api: TestApi;
let sessionId: string;
beforeAll(async () => {
  api = await startApi();
  const res = await postJson(`${api.url}/v1/sessions`, { role: 'analyst' });
  sessionId = ((await res.json()) as { id: string }).id;
});
afterAll(async () => {
  await api.close();
});

/** Named malformed bodies and the field path the 400 must name. */
const createCases: Array<{ name: string; body: unknown; field: string }> = [
  { name: 'missing role', body: {}, field: 'role' },
  { name: 'empty role', body: { role: '' }, field: 'role' },
  { name: 'role with a comma (not a policy.csv token)', body: { role: 'a,b' }, field: 'role' },
  { name: 'role not a string', body: { role: 7 }, field: 'role' },
  { name: 'unknown field', body: { role: 'analyst', privileged: true }, field: 'privileged' },
  {
    name: 'env overriding HTTP_PROXY',
    body: { role: 'analyst', env: { HTTP_PROXY: 'http://evil' } },
    field: 'env.HTTP_PROXY',
  },
  {
    name: 'env overriding https_proxy',
    body: { role: 'analyst', env: { https_proxy: 'x' } },
    field: 'env.https_proxy',
  },
  {
    name: 'env overriding NO_PROXY',
    body: { role: 'analyst', env: { NO_PROXY: '*' } },
    field: 'env.NO_PROXY',
  },
  {
    name: 'env overriding no_proxy',
    body: { role: 'analyst', env: { no_proxy: '*' } },
    field: 'env.no_proxy',
  },
  { name: 'env name not a variable name', body: { role: 'analyst', env: { '1X': 'a' } }, field: 'env.1X' },
  { name: 'env value not a string', body: { role: 'analyst', env: { A: 1 } }, field: 'env.A' },
  { name: 'ttlSeconds not an integer', body: { role: 'analyst', ttlSeconds: 1.5 }, field: 'ttlSeconds' },
  { name: 'ttlSeconds zero', body: { role: 'analyst', ttlSeconds: 0 }, field: 'ttlSeconds' },
  { name: 'image like an option', body: { role: 'analyst', image: '--privileged' }, field: 'image' },
  {
    name: 'label value too long',
    body: { role: 'analyst', labels: { a: 'x'.repeat(257) } },
    field: 'labels.a',
  },
  {
    name: 'too many labels',
    body: {
      role: 'analyst',
      labels: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])),
    },
    field: 'labels',
  },
  { name: 'body is an array', body: [], field: '(body)' },
];

describe('POST /v1/sessions rejects malformed bodies with 400 naming the field', () => {
  for (const c of createCases) {
    it(c.name, async () => {
      const res = await postJson(`${api.url}/v1/sessions`, c.body);
      expect(res.status).toBe(400);
      const p = await readProblem(res);
      expect(p).toMatchObject({ status: 400, code: 'AIRLOCK_REQUEST_INVALID', field: c.field });
      expect(p.detail).toContain(c.field === '(body)' ? 'JSON object' : c.field);
    });
  }

  it('does not call the service for an invalid body', async () => {
    const before = api.sessions.calls.length;
    await postJson(`${api.url}/v1/sessions`, { role: 'analyst', env: { HTTP_PROXY: 'x' } });
    expect(api.sessions.calls.length).toBe(before);
  });
});

const execCases: Array<{ name: string; body: unknown; field: string }> = [
  { name: 'command not an array', body: { command: 'ls -l' }, field: 'command' },
  { name: 'command missing', body: {}, field: 'command' },
  { name: 'command empty', body: { command: [] }, field: 'command' },
  { name: 'argument not a string', body: { command: [42] }, field: 'command.0' },
  { name: 'later argument not a string', body: { command: ['ls', null] }, field: 'command.1' },
  { name: 'empty program name', body: { command: [''] }, field: 'command.0' },
  { name: 'NUL in an argument', body: { command: ['echo', 'a\u0000b'] }, field: 'command.1' },
  {
    name: 'timeoutSeconds above 3600',
    body: { command: ['ls'], timeoutSeconds: 3601 },
    field: 'timeoutSeconds',
  },
  { name: 'timeoutSeconds below 1', body: { command: ['ls'], timeoutSeconds: 0 }, field: 'timeoutSeconds' },
  {
    name: 'timeoutSeconds a string',
    body: { command: ['ls'], timeoutSeconds: '5' },
    field: 'timeoutSeconds',
  },
  { name: 'unknown field', body: { command: ['ls'], shell: true }, field: 'shell' },
];

describe('POST /v1/sessions/:id/exec rejects malformed bodies with 400 naming the field', () => {
  for (const c of execCases) {
    it(c.name, async () => {
      const res = await postJson(`${api.url}/v1/sessions/${sessionId}/exec`, c.body);
      expect(res.status).toBe(400);
      expect(await readProblem(res)).toMatchObject({ code: 'AIRLOCK_REQUEST_INVALID', field: c.field });
    });
  }
});

describe('body framing', () => {
  it('answers 400 with field "(body)" for malformed JSON', async () => {
    const res = await postJson(`${api.url}/v1/sessions`, '{"role": "analyst",');
    expect(res.status).toBe(400);
    const p = await readProblem(res);
    expect(p).toMatchObject({ code: 'AIRLOCK_REQUEST_INVALID', field: '(body)' });
    expect(p.detail).toMatch(/not valid JSON/);
  });

  it('answers 400 with field "(body)" when no body is sent', async () => {
    const res = await fetch(`${api.url}/v1/sessions`, { method: 'POST', headers: ALICE });
    expect(res.status).toBe(400);
    expect(await readProblem(res)).toMatchObject({ field: '(body)' });
  });

  it('answers 415 for a body that is not application/json', async () => {
    const res = await fetch(`${api.url}/v1/sessions`, {
      method: 'POST',
      headers: { ...ALICE, 'content-type': 'text/plain' },
      body: '{"role":"analyst"}',
    });
    expect(res.status).toBe(415);
    expect(await readProblem(res)).toMatchObject({ status: 415, code: 'AIRLOCK_REQUEST_INVALID' });
  });

  it('answers 415 for a form-encoded body', async () => {
    const res = await fetch(`${api.url}/v1/sessions`, {
      method: 'POST',
      headers: ALICE,
      body: new URLSearchParams({ role: 'analyst' }),
    });
    expect(res.status).toBe(415);
  });

  it('answers 413 for a body over 1 MiB', async () => {
    const res = await postJson(`${api.url}/v1/sessions/${sessionId}/exec`, {
      command: ['echo', 'x'.repeat(1024 * 1024)],
    });
    expect(res.status).toBe(413);
    expect(await readProblem(res)).toMatchObject({ status: 413, code: 'AIRLOCK_REQUEST_INVALID' });
  });

  it('accepts application/json with a charset parameter', async () => {
    const res = await fetch(`${api.url}/v1/sessions`, {
      method: 'POST',
      headers: { ...ALICE, 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify({ role: 'analyst' }),
    });
    expect(res.status).toBe(201);
  });

  it('checks the token before reading the body', async () => {
    const res = await postJson(`${api.url}/v1/sessions`, '{not json', {});
    expect(res.status).toBe(401);
  });
});

describe('messages', () => {
  it('says "required" for an absent field', async () => {
    const res = await postJson(`${api.url}/v1/sessions`, {});
    expect((await readProblem(res)).detail).toBe('role: required');
  });
});
