/**
 * Setup file of the e2e project (vitest.config.ts): after each file's own hooks, an error-level line
 * of the control plane that the file did not declare fails it (test/helpers/log-watch.ts, issue 15).
 */
import { afterAll, expect } from 'vitest';
import { unexpectedErrorLines } from './log-watch.js';

afterAll(() => {
  expect(
    unexpectedErrorLines(),
    'error-level log lines nobody expected (declare with expectErrorLog)',
  ).toEqual([]);
});
