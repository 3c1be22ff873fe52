/** SDK options and error classes (no network): defaults in one place, bad options named. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { clientDefaults } from '../../../src/sdk/client.js';
import {
  AirlockApiError,
  ExecTimeoutError,
  SessionNotFoundError,
  UnknownRoleError,
  errorFromProblem,
} from '../../../src/sdk/errors.js';
import { ErrorCodes } from '../../../src/errors.js';

afterEach(() => vi.unstubAllEnvs());

describe('clientDefaults', () => {
  it('reads AIRLOCK_API_URL and AIRLOCK_API_TOKEN; options win; trailing slashes go', () => {
    vi.stubEnv('AIRLOCK_API_URL', 'http://127.0.0.1:9999/');
    vi.stubEnv('AIRLOCK_API_TOKEN', 'from-env');
    expect(clientDefaults()).toEqual({
      apiUrl: 'http://127.0.0.1:9999',
      token: 'from-env',
      retries: 3,
      retryBaseDelayMs: 200,
      retryMaxDelayMs: 2000,
    });
    expect(clientDefaults({ apiUrl: 'https://airlock.example', token: 't' })).toMatchObject({
      apiUrl: 'https://airlock.example',
      token: 't',
    });
  });

  it.each([
    [{ apiUrl: 'ftp://x', token: 't' }, /apiUrl must be an http\(s\) URL/],
    [{ token: 't', retries: -1 }, /retries must be a non-negative integer/],
    [{ token: 't', retryBaseDelayMs: 1.5 }, /retryBaseDelayMs must be a non-negative integer/],
    [
      { token: 't', retryBaseDelayMs: 500, retryMaxDelayMs: 100 },
      /retryMaxDelayMs cannot be less than retryBaseDelayMs/,
    ],
  ])('%j is refused naming the option', (opts, message) => {
    expect(() => clientDefaults(opts)).toThrow(message);
  });

  it('no token anywhere: says where one comes from', () => {
    vi.stubEnv('AIRLOCK_API_TOKEN', '');
    const cwd = process.cwd();
    process.chdir('/');
    try {
      expect(() => clientDefaults()).toThrow(/no API token: pass token, set AIRLOCK_API_TOKEN/);
    } finally {
      process.chdir(cwd);
    }
  });
});

describe('errorFromProblem', () => {
  const problem = (code: string, status: number) => ({
    type: `urn:airlock:error:${code}`,
    title: 't',
    status,
    detail: 'd',
    code,
  });

  it('picks the class by the stable code (the server codes of src/errors.ts)', () => {
    expect(errorFromProblem(problem(ErrorCodes.SESSION_NOT_FOUND, 404), 'GET /x')).toBeInstanceOf(
      SessionNotFoundError,
    );
    expect(errorFromProblem(problem(ErrorCodes.UNKNOWN_ROLE, 422), 'POST /x')).toBeInstanceOf(
      UnknownRoleError,
    );
    expect(errorFromProblem(problem(ErrorCodes.EXEC_TIMEOUT, 504), 'POST /x')).toBeInstanceOf(
      ExecTimeoutError,
    );
    const other = errorFromProblem(problem('AIRLOCK_INTERNAL', 500), 'GET /x', 'req-1');
    expect(other.constructor).toBe(AirlockApiError);
    expect(other).toMatchObject({
      code: 'AIRLOCK_INTERNAL',
      status: 500,
      requestId: 'req-1',
      call: 'GET /x',
    });
    expect(other.message).toBe('GET /x: 500 AIRLOCK_INTERNAL: d');
  });
});
