import { afterEach, describe, expect, it } from 'vitest';
import { policyStatusSchema, readinessSchema } from '../../../src/api/schemas.js';
import { ALICE, FixedPolicy, readProblem, SNAPSHOT, startApi, type TestApi } from './helpers.js';
import { compilePolicy } from '../../../src/policy/load.js';
import { CANONICAL_MODEL } from '../../../src/policy/model.js';

let api: TestApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

describe('GET /healthz', () => {
  it('answers 200 even without a policy', async () => {
    api = await startApi(new FixedPolicy(null));
    const res = await fetch(`${api.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });
});

describe('GET /readyz', () => {
  it('answers 200 with a policy loaded and the service ready', async () => {
    api = await startApi();
    const res = await fetch(`${api.url}/readyz`);
    expect(res.status).toBe(200);
    expect(readinessSchema.parse(await res.json())).toEqual({ ready: true, reasons: [] });
  });

  it('answers 503 when no valid policy is loaded, with the load error as reason', async () => {
    api = await startApi(new FixedPolicy(null, 'policy.csv:3: unknown effect "alow"'));
    const res = await fetch(`${api.url}/readyz`);
    expect(res.status).toBe(503);
    const body = readinessSchema.parse(await res.json());
    expect(body.ready).toBe(false);
    expect(body.reasons).toEqual(['no valid policy loaded: policy.csv:3: unknown effect "alow"']);
  });

  it("answers 503 with the session service's reasons when it is not ready", async () => {
    api = await startApi();
    api.sessions.ready = { ready: false, reasons: ['docker engine unreachable'] };
    const res = await fetch(`${api.url}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ ready: false, reasons: ['docker engine unreachable'] });
  });

  it('answers 503 when the readiness check itself throws', async () => {
    api = await startApi();
    api.sessions.readiness = () => {
      throw new Error('socket hang up');
    };
    const res = await fetch(`${api.url}/readyz`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { reasons: string[] }).reasons[0]).toContain('socket hang up');
  });
});

describe('GET /v1/policy', () => {
  it('describes the policy in force', async () => {
    api = await startApi(new FixedPolicy(SNAPSHOT, 'later reload failed'));
    const res = await fetch(`${api.url}/v1/policy`, { headers: ALICE });
    expect(res.status).toBe(200);
    expect(policyStatusSchema.parse(await res.json())).toEqual({
      version: 'abc123def456',
      loadedAt: '2026-01-01T00:00:00.000Z',
      rules: 7,
      lastError: 'later reload failed',
      modes: { analyst: 'enforce', poster: 'enforce' },
    });
  });

  it('shows the mode of every role: complain for the roles of modes.yaml', async () => {
    const snapshot = compilePolicy(CANONICAL_MODEL, 'p, analyst, a.test, /*, GET, allow\n', {
      files: { 'modes.yaml': 'version: 1\ncomplain: [learner]\n' },
    });
    api = await startApi(new FixedPolicy(snapshot));
    const res = await fetch(`${api.url}/v1/policy`, { headers: ALICE });
    expect(res.status).toBe(200);
    const body = policyStatusSchema.parse(await res.json());
    expect(body.modes).toEqual({ analyst: 'enforce', learner: 'complain' });
  });

  it('answers null fields when no policy is loaded', async () => {
    api = await startApi(new FixedPolicy(null, 'model.conf missing'));
    const res = await fetch(`${api.url}/v1/policy`, { headers: ALICE });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      version: null,
      loadedAt: null,
      rules: null,
      lastError: 'model.conf missing',
      modes: null,
    });
  });
});

describe('unknown routes and methods', () => {
  it('answers 404 problem+json for an unknown path', async () => {
    api = await startApi();
    const res = await fetch(`${api.url}/v2/sessions`, { headers: ALICE });
    expect(res.status).toBe(404);
    expect(await readProblem(res)).toMatchObject({ status: 404, code: 'AIRLOCK_ROUTE_NOT_FOUND' });
  });

  it('routes case-sensitively and strictly', async () => {
    api = await startApi();
    expect((await fetch(`${api.url}/V1/sessions`, { headers: ALICE })).status).toBe(404);
    expect((await fetch(`${api.url}/healthz/`)).status).toBe(404);
  });

  it('answers 405 with Allow for a known path and a wrong method', async () => {
    api = await startApi();
    const res = await fetch(`${api.url}/v1/sessions`, { method: 'PUT', headers: ALICE });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, POST');
    expect(await readProblem(res)).toMatchObject({ status: 405, code: 'AIRLOCK_REQUEST_INVALID' });
  });

  it('sets X-Request-Id and no-store on every answer', async () => {
    api = await startApi();
    const res = await fetch(`${api.url}/nowhere`);
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('x-powered-by')).toBeNull();
  });
});

describe('GET /metrics', () => {
  it('exposes request counters by route pattern and status, default metrics and scrape-time gauges', async () => {
    api = await startApi();
    await fetch(`${api.url}/v1/sessions`, { headers: ALICE });
    await fetch(`${api.url}/v1/sessions/s-404`, { headers: ALICE });
    await fetch(`${api.url}/v1/sessions`);
    await fetch(`${api.url}/nowhere`);
    const res = await fetch(`${api.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toContain(
      'airlock_api_http_requests_total{method="GET",route="/v1/sessions",status="200"} 1',
    );
    expect(text).toContain(
      'airlock_api_http_requests_total{method="GET",route="/v1/sessions/:id",status="404"} 1',
    );
    expect(text).toContain(
      'airlock_api_http_requests_total{method="GET",route="/v1/sessions",status="401"} 1',
    );
    expect(text).toContain(
      'airlock_api_http_requests_total{method="GET",route="(unmatched)",status="404"} 1',
    );
    expect(text).toContain('# TYPE airlock_api_http_request_duration_seconds histogram');
    expect(text).toContain('airlock_api_auth_failures_total 1');
    expect(text).toContain('airlock_policy_loaded 1');
    expect(text).toContain('airlock_policy_rules 7');
    expect(text).toContain('airlock_api_ready 1');
    expect(text).toContain('airlock_api_sessions{status="running"} 0');
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).not.toContain('s-404');
  });

  it('reports no policy as airlock_policy_loaded 0 and not ready', async () => {
    api = await startApi(new FixedPolicy(null, 'bad'));
    const text = await (await fetch(`${api.url}/metrics`)).text();
    expect(text).toContain('airlock_policy_loaded 0');
    expect(text).toContain('airlock_policy_load_error 1');
    expect(text).toContain('airlock_api_ready 0');
  });
});
