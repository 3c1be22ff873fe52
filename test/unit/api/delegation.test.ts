/**
 * Delegation in the API (src/api/delegation.ts): the real Express app with a compiled policy. Callers
 * are the test tokens' names, alice and bob; roles are the session double's, analyst and poster.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { problemSchema, sessionListSchema } from '../../../src/api/schemas.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';
import { ALICE, FixedPolicy, postJson, readProblem, startApi, TOKENS, type TestApi } from './helpers.js';

const BOB = { authorization: `Bearer ${TOKENS[1]!.token}` };

const ROLES = [
  'p, analyst, forum.test:3000, /*, GET, allow',
  'g, poster, analyst',
  'p, poster, forum.test:3000, /comments, POST, allow',
];

/** alice: everything on analyst and poster; bob: create and read analyst sessions only. */
const DELEGATION = [
  ...ROLES,
  'p, alice, airlock.api, /sessions/*, *, allow',
  'p, bob, airlock.api, /sessions/analyst, CREATE, allow',
  'p, bob, airlock.api, /sessions/analyst, READ, allow',
];

const compiled = (lines: string[]) => compilePolicy(CANONICAL_MODEL, lines.join('\n') + '\n');

let api: TestApi;
afterEach(async () => {
  await api?.close();
});

async function create(role: string, headers: Record<string, string>): Promise<Response> {
  return postJson(`${api.url}/v1/sessions`, { role }, headers);
}

async function expectForbidden(res: Response, ...mentions: RegExp[]): Promise<void> {
  expect(res.status).toBe(403);
  const p = problemSchema.parse(await readProblem(res));
  expect(p).toMatchObject({ status: 403, code: 'AIRLOCK_FORBIDDEN' });
  for (const m of mentions) expect(p.detail).toMatch(m);
}

describe('with delegation on (the policy has airlock.api rules)', () => {
  it('403 naming the operation when the caller may not create sessions of the role; nothing created', async () => {
    api = await startApi(new FixedPolicy(compiled(DELEGATION)));
    await expectForbidden(await create('poster', BOB), /"bob"/, /operation CREATE/, /role "poster"/);
    expect(api.sessions.calls.filter((c) => c.op === 'create')).toEqual([]);
    expect((await create('analyst', BOB)).status).toBe(201);
    expect((await create('poster', ALICE)).status).toBe(201);
  });

  it('checks CREATE before the role is known (no role enumeration), then 422 for allowed callers', async () => {
    api = await startApi(new FixedPolicy(compiled(DELEGATION)));
    await expectForbidden(await create('admin', BOB), /operation CREATE/);
    expect((await create('admin', ALICE)).status).toBe(422);
  });

  it('lists only sessions the caller may READ; GET, exec, audit and DELETE need READ, EXEC, READ, DELETE', async () => {
    api = await startApi(new FixedPolicy(compiled(DELEGATION)));
    const mine = ((await (await create('analyst', BOB)).json()) as { id: string }).id;
    const theirs = ((await (await create('poster', ALICE)).json()) as { id: string }).id;

    const list = async (h: Record<string, string>) =>
      sessionListSchema
        .parse(await (await fetch(`${api.url}/v1/sessions`, { headers: h })).json())
        .sessions.map((s) => s.id);
    expect(await list(ALICE)).toEqual([mine, theirs]);
    expect(await list(BOB)).toEqual([mine]);

    expect((await fetch(`${api.url}/v1/sessions/${mine}`, { headers: BOB })).status).toBe(200);
    await expectForbidden(
      await fetch(`${api.url}/v1/sessions/${theirs}`, { headers: BOB }),
      /operation READ/,
      /role "poster"/,
    );
    await expectForbidden(
      await fetch(`${api.url}/v1/sessions/${theirs}/audit`, { headers: BOB }),
      /operation READ/,
    );
    expect((await fetch(`${api.url}/v1/sessions/${mine}/audit`, { headers: BOB })).status).toBe(200);
    await expectForbidden(
      await postJson(`${api.url}/v1/sessions/${mine}/exec`, { command: ['echo', 'hi'] }, BOB),
      /operation EXEC/,
      /role "analyst"/,
    );
    // Streaming exec is refused before any byte is streamed.
    await expectForbidden(
      await postJson(`${api.url}/v1/sessions/${mine}/exec`, { command: ['echo'], stream: true }, BOB),
      /operation EXEC/,
    );
    await expectForbidden(
      await fetch(`${api.url}/v1/sessions/${mine}`, { method: 'DELETE', headers: BOB }),
      /operation DELETE/,
    );
    expect(api.sessions.calls.filter((c) => c.op === 'exec' || c.op === 'remove')).toEqual([]);

    // 404 stays 404: the lookup comes first.
    expect((await fetch(`${api.url}/v1/sessions/s-999`, { headers: BOB })).status).toBe(404);
    expect((await postJson(`${api.url}/v1/sessions/${mine}/exec`, { command: ['x'] })).status).toBe(200);
    expect((await fetch(`${api.url}/v1/sessions/${mine}`, { method: 'DELETE', headers: ALICE })).status).toBe(
      204,
    );
  });

  it("authorizes an ended session's audit trail by the role its events name", async () => {
    api = await startApi(new FixedPolicy(compiled(DELEGATION)));
    const event = {
      time: '2026-01-01T00:00:00.000Z',
      sessionId: 's-ended',
      method: 'GET',
      scheme: 'http' as const,
      host: 'forum.test',
      port: 3000,
      path: '/posts/1',
      decision: 'allow' as const,
      rule: null,
      reason: 'rule_allow' as const,
      status: 200,
      durationMs: 1,
      bytesOut: 0,
      bytesIn: 2,
      policyVersion: 'v',
    };
    // The double's audit() needs a live session; make it answer for ended ones like the real one.
    api.sessions.events.set('s-ended', [{ ...event, role: 'poster' }]);
    api.sessions.events.set('s-ended2', [{ ...event, sessionId: 's-ended2', role: 'analyst' }]);
    api.sessions.audit = async (id: string) => {
      const e = api.sessions.events.get(id);
      if (!e) throw new Error('unexpected');
      return e;
    };
    await expectForbidden(await fetch(`${api.url}/v1/sessions/s-ended/audit`, { headers: BOB }), /"poster"/);
    expect((await fetch(`${api.url}/v1/sessions/s-ended2/audit`, { headers: BOB })).status).toBe(200);
    expect((await fetch(`${api.url}/v1/sessions/s-ended/audit`, { headers: ALICE })).status).toBe(200);
  });

  it('names a deciding deny rule', async () => {
    api = await startApi(
      new FixedPolicy(compiled([...DELEGATION, 'p, alice, airlock.api, /sessions/poster, DELETE, deny'])),
    );
    const id = ((await (await create('poster', ALICE)).json()) as { id: string }).id;
    await expectForbidden(
      await fetch(`${api.url}/v1/sessions/${id}`, { method: 'DELETE', headers: ALICE }),
      /denied by policy\.csv:7: p, alice, airlock\.api, \/sessions\/poster, DELETE, deny/,
    );
  });
});

describe('with delegation off or no policy', () => {
  it('lets every caller do everything while the policy has no airlock.api rule (backward compatible)', async () => {
    api = await startApi(new FixedPolicy(compiled(ROLES)));
    const id = ((await (await create('poster', BOB)).json()) as { id: string }).id;
    expect((await fetch(`${api.url}/v1/sessions/${id}`, { headers: ALICE })).status).toBe(200);
    expect((await postJson(`${api.url}/v1/sessions/${id}/exec`, { command: ['x'] }, BOB)).status).toBe(200);
    expect((await fetch(`${api.url}/v1/sessions/${id}`, { method: 'DELETE', headers: ALICE })).status).toBe(
      204,
    );
  });

  it('answers 503 while no valid policy is loaded: nothing can be authorized (fail closed)', async () => {
    api = await startApi(new FixedPolicy(null, 'policy.csv:1: bad'));
    const res = await fetch(`${api.url}/v1/sessions`, { headers: ALICE });
    expect(res.status).toBe(503);
    expect(problemSchema.parse(await readProblem(res)).detail).toMatch(/no valid policy/);
    expect((await create('analyst', ALICE)).status).toBe(503);
    expect(api.sessions.calls).toEqual([]);
  });
});
