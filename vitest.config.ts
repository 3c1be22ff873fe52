import { defineConfig } from 'vitest/config';

// Four tiers (see docs/testing.md): unit (no network, no Docker), integration (real servers on
// loopback, port 0), e2e (real Docker engine, the images built by `airlock images build --offline`),
// cluster (e2e on the one-node Kubernetes cluster of scripts/k8s-node.sh).
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
          exclude: ['test/e2e/k8s-node*.test.ts'],
          // Fails a file on error-level control-plane log lines it did not declare (issue 15).
          setupFiles: ['test/helpers/e2e-setup.ts'],
          testTimeout: 240_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      // e2e on the one-node cluster of scripts/k8s-node.sh (real kubelet, containerd, NetworkPolicy):
      // a tier of its own so CI brings the cluster up only for it (`k8s-node.sh up`, then
      // `vitest run --project cluster`, then `down`), and its host changes never overlap the others.
      {
        test: {
          name: 'cluster',
          include: ['test/e2e/k8s-node*.test.ts'],
          testTimeout: 240_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
