/**
 * The TypeScript SDK (`import { Sandbox } from 'airlock/sdk'`, or from 'airlock' where the error classes
 * whose names the server's errors already use carry an `Sdk` prefix): a typed client of the Airlock API
 * whose wire types are generated from the OpenAPI document (./openapi.gen.ts). docs/sdk.md.
 */
export { AirlockClient, type AirlockClientOptions, type AirlockClientOptionsWithDefaults } from './client.js';
export {
  Sandbox,
  type CreateSessionInput,
  type DecisionEvent,
  type DecisionsOptions,
  type ExecChunk,
  type ExecOptions,
  type ExecResult,
  type SandboxCreateOptions,
  type SessionInfo,
} from './sandbox.js';
export {
  AirlockApiError,
  AirlockConnectionError,
  AirlockSdkError,
  ExecTimeoutError,
  ForbiddenError,
  GatewayUnavailableError,
  InvalidRequestError,
  IsolationFailedError,
  RuntimeFailedError,
  RuntimeUnavailableError,
  SandboxRejectedError,
  SessionConflictError,
  SessionNotFoundError,
  UnauthorizedError,
  UnknownRoleError,
  errorFromProblem,
  type ApiProblem,
} from './errors.js';
export type {
  components as ApiComponents,
  operations as ApiOperations,
  paths as ApiPaths,
} from './openapi.gen.js';
