#!/usr/bin/env bash
# The README's test command (CI runs it through .ci/run): on a fresh Debian 12 machine, as root,
# installs what is missing and runs every test. Needs no standard input.
#   1. scripts/setup.sh       Node >= 22.19, Debian packages, dockerd, npm ci
#   2. npm run build          dist/ (the images copy it)
#   3. offline image build    airlock-base:local -> airlock-gateway:dev, airlock-sandbox:dev
#   3b. scripts/k8s-tools.sh  kube-apiserver, etcd, helm, kubectl (cached outside the repo)
#   3c. scripts/k8s-node-tools.sh  kubelet, controller-manager, scheduler, kube-proxy, coredns,
#                             kube-router (cached outside the repo), the node's Debian packages
#   4. npm test               typecheck, lint, build, the unit, integration and e2e tiers
#   5. scripts/k8s-node.sh up, the cluster tier (test/e2e/k8s-node*.test.ts), then down (always)
set -euo pipefail
export PATH="/usr/local/bin:/usr/local/sbin:${PATH}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "setup"
bash scripts/setup.sh </dev/null

step "build"
npm run build </dev/null

step "images (offline)"
bash scripts/build-images.sh --offline </dev/null

step "kubernetes tools"
bash scripts/k8s-tools.sh --with-kubectl </dev/null # kube-apiserver, etcd, helm for the k8s-* tests, kubectl for e2e/k8s-kubectl: built once from the Go module proxy (~10 min cold), cached in ~/.cache/airlock-tools

step "moto (S3-compatible server)"
bash scripts/moto.sh </dev/null # moto[server] from PyPI in a venv cached in ~/.cache/airlock-tools, for test/integration/gateway-sigv4.test.ts
bash scripts/versitygw.sh </dev/null # versitygw from the Go module proxy (~2-3 min cold), cached likewise: verifies presigned URLs in test/integration/gateway-sigv4-presigned.test.ts

step "python venv and OpenTelemetry Collector"
bash scripts/python-venv.sh </dev/null # httpx + pytest for the Python SDK's tests (test/e2e/sdk.test.ts), cached in ~/.cache/airlock-tools
bash scripts/otel-collector.sh </dev/null # OTLP receiver + debug exporter for test/integration/telemetry.test.ts (~3.5 min cold), cached likewise

step "kubernetes node tools"
bash scripts/k8s-node-tools.sh </dev/null # the one-node cluster's binaries (~12 min cold), cached like the above

step "test"
mkdir -p .airlock
report=.airlock/vitest-report.json
cluster_report=.airlock/vitest-cluster-report.json
rm -f "${report}" "${cluster_report}"
rc=0
# Arguments after -- reach the last command of the test script (vitest run).
npm test -- --project unit --project integration --project e2e \
  --reporter=default --reporter=json --outputFile.json="${report}" </dev/null || rc=$?

# The cluster tier: a one-node Kubernetes cluster (scripts/k8s-node.sh) only for its duration; `down`
# runs whatever happens (it restores the host: iptables, sysctls, mounts, cgroups). `up` itself
# retries a failed start once; test assertions are never retried.
step "cluster tier"
trap 'bash scripts/k8s-node.sh down </dev/null || true' EXIT
# A fresh node every run: a node left up by an aborted run would keep images older than step 3.
bash scripts/k8s-node.sh down </dev/null || true
if bash scripts/k8s-node.sh up </dev/null; then
  npx vitest run --project cluster --reporter=default --reporter=json \
    --outputFile.json="${cluster_report}" </dev/null || rc=1
else
  echo "cluster tier: the one-node cluster did not come up (logs: /tmp/airlock-logs/k8s-node-attempt-*)"
  rc=1
fi
bash scripts/k8s-node.sh down </dev/null || rc=1
trap - EXIT

# One plain closing line with the counts of both runs (vitest's own summary is not a recognised format).
if [[ -s "${report}" ]]; then
  # shellcheck disable=SC2016 # JavaScript template literals, not shell expansions
  node -e '
    const fs = require("node:fs"), path = require("node:path");
    let passed = 0, failed = 0, skipped = 0;
    for (const f of process.argv.slice(1)) {
      if (!fs.existsSync(f) || fs.statSync(f).size === 0) continue;
      const r = require(path.resolve(f));
      passed += r.numPassedTests; failed += r.numFailedTests;
      skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    }
    console.log(`vitest: ${passed} passed, ${failed} failed, ${skipped} skipped`);' "${report}" "${cluster_report}"
else
  echo "vitest: no report (the test script failed before vitest ran)"
fi
exit "${rc}"
