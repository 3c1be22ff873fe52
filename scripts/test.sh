#!/usr/bin/env bash
# The README's test command (CI runs it through .ci/run): on a fresh Debian 12 machine, as root,
# installs what is missing and runs every test. Needs no standard input.
#   1. scripts/setup.sh       Node >= 22.19, Debian packages, dockerd, npm ci
#   2. npm run build          dist/ (the images copy it)
#   3. offline image build    airlock-base:local -> airlock-gateway:dev, airlock-sandbox:dev
#   3b. scripts/k8s-tools.sh  kube-apiserver, etcd, helm, kubectl (cached outside the repo)
#   4. npm test               typecheck, lint, build, every vitest tier (unit, integration, e2e)
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

step "test"
mkdir -p .airlock
report=.airlock/vitest-report.json
rm -f "${report}"
rc=0
# Arguments after -- reach the last command of the test script (vitest run).
npm test -- --reporter=default --reporter=json --outputFile.json="${report}" </dev/null || rc=$?

# One plain closing line with the counts (vitest's own summary is not a recognised format).
if [[ -s "${report}" ]]; then
  node -e '
    const r = require(require("node:path").resolve(process.argv[1]));
    const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    console.log(`vitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);' "${report}"
else
  echo "vitest: no report (the test script failed before vitest ran)"
fi
exit "${rc}"
