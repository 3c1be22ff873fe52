import { describe, expect, it } from 'vitest';
import { ApiErrorCodes, statusForCode, toProblem } from '../../../src/api/problem.js';
import {
  ConfigError,
  ErrorCodes,
  ExecTimeoutError,
  ForbiddenError,
  GatewayUnavailableError,
  RequestValidationError,
  RuntimeError,
  SessionConflictError,
  SessionNotFoundError,
  UnauthorizedError,
  UnknownRoleError,
} from '../../../src/errors.js';

describe('error to problem mapping', () => {
  it.each([
    [new RequestValidationError('role: required', 'role'), 400],
    [new UnauthorizedError(), 401],
    [new ForbiddenError('no'), 403],
    [new SessionNotFoundError('s-1'), 404],
    [new SessionConflictError('s-1', 'stopping'), 409],
    [new UnknownRoleError('admin'), 422],
    [new RuntimeError('engine down'), 502],
    [new GatewayUnavailableError('gateway down'), 503],
    [new ExecTimeoutError(1000), 504],
  ])('%s -> %i', (err, status) => {
    const { problem, internal } = toProblem(err, 'req-1');
    expect(internal).toBe(false);
    expect(problem).toMatchObject({
      status,
      code: err.code,
      detail: err.message,
      type: `urn:airlock:error:${err.code}`,
    });
    expect(statusForCode(err.code)).toBe(status);
  });

  it('keeps the field of a validation error', () => {
    expect(toProblem(new RequestValidationError('x', 'env.HTTP_PROXY'), 'r').problem.field).toBe(
      'env.HTTP_PROXY',
    );
  });

  it("appends the runtime's message from the cause once", () => {
    const withCause = new RuntimeError('create failed', { cause: new Error('no such image') });
    expect(toProblem(withCause, 'r').problem.detail).toBe('create failed: no such image');
    const already = new RuntimeError('create failed: no such image', { cause: new Error('no such image') });
    expect(toProblem(already, 'r').problem.detail).toBe('create failed: no such image');
  });

  it.each([
    ['a plain Error', new Error('db password is hunter2')],
    ['a thrown string', 'oops'],
    ['an Airlock error the API does not answer with', new ConfigError('bad key', 'x')],
  ])('turns %s into a generic 500', (_name, err) => {
    const { problem, internal } = toProblem(err, 'req-9');
    expect(internal).toBe(true);
    expect(problem).toMatchObject({ status: 500, code: ApiErrorCodes.INTERNAL });
    expect(problem.detail).toContain('req-9');
    expect(problem.detail).not.toMatch(/hunter2|oops|bad key/);
  });

  it('answers 500 for codes outside the API (config and policy errors)', () => {
    expect(statusForCode(ErrorCodes.CONFIG_INVALID)).toBe(500);
    expect(statusForCode(ErrorCodes.POLICY_INVALID)).toBe(500);
    expect(statusForCode(ApiErrorCodes.ROUTE_NOT_FOUND)).toBe(404);
  });
});
