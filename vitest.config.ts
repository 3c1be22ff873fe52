import { defineConfig } from 'vitest/config';

// Three tiers (see docs/testing.md): unit (no network, no Docker), integration (real servers on
// loopback, port 0), e2e (real Docker engine, the images built by `airlock images build --offline`).
export default defineConfig({
  test: {
    projects: [
      // Property and differential tests do real work: generous timeouts for a loaded 2-core machine.
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 60_000 } },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          testTimeout: 240_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
