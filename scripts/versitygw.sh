#!/usr/bin/env bash
# Build (once) and locate versitygw, the S3 server that checks the gateway's re-signed presigned URLs
# (test/integration/gateway-sigv4-presigned.test.ts), compiled from source through the Go module
# proxy and cached OUTSIDE the repository:
#
#   ${AIRLOCK_TOOLS_DIR:-$HOME/.cache/airlock-tools}/versitygw-<version>/versitygw
#
# Usage: scripts/versitygw.sh [--paths]
#   (no flag)  build when missing, then print VERSITYGW=PATH and VERSITYGW_VERSION=…; seconds when
#              cached; cold ~135 s of CPU (empty Go module and build caches, measured), 2-3 minutes
#              on 2 idle cores with the downloads
#   --paths    only print those lines; exit 1 when it is not built (never builds)
#
# Why versitygw (github.com/versity/versitygw, Apache-2.0): a maintained S3 protocol gateway whose
# posix backend serves buckets from a directory, and which verifies SigV4 signatures itself —
# header signatures and query-string (presigned) ones: a presigned URL signed with a wrong secret
# gets 403 SignatureDoesNotMatch, one with an unknown access key a refusal too. moto (scripts/moto.sh)
# checks header signatures only. One static binary (CGO_ENABLED=0), ~60 MB.
#
# Environment: AIRLOCK_TOOLS_DIR (cache root), GOFLAGS (default -p=2 on this 2-core machine).
set -euo pipefail
export PATH="/usr/local/bin:/usr/local/go/bin:${PATH}"

VERSITYGW_VERSION=v1.8.0

TOOLS_DIR="${AIRLOCK_TOOLS_DIR:-${HOME}/.cache/airlock-tools}"
BIN="${TOOLS_DIR}/versitygw-${VERSITYGW_VERSION}/versitygw"

say() { printf '[versitygw] %s\n' "$*" >&2; }
die() {
  printf '[versitygw] ERROR: %s\n' "$*" >&2
  exit 1
}

paths_only=false
for arg in "$@"; do
  case "${arg}" in
    --paths) paths_only=true ;;
    -h | --help)
      sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument ${arg} (see --help)" ;;
  esac
done

print_paths() {
  printf 'VERSITYGW=%s\nVERSITYGW_VERSION=%s\n' "${BIN}" "${VERSITYGW_VERSION}"
}

if [[ -x "${BIN}" ]]; then
  ${paths_only} || say "versitygw ${VERSITYGW_VERSION} cached"
  print_paths
  exit 0
fi
${paths_only} && die "versitygw ${VERSITYGW_VERSION} is not built: run bash scripts/versitygw.sh"

command -v go >/dev/null || die "go is not installed (versitygw is built from source)"
export GOFLAGS="${GOFLAGS:--p=2} -trimpath -buildvcs=false"
export CGO_ENABLED=0

say "building versitygw ${VERSITYGW_VERSION} (go install)"
t0=$(date +%s)
gobin="$(mktemp -d)"
trap 'rm -rf "${gobin}"' EXIT
GOBIN="${gobin}" go install -ldflags "-s -w" "github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}" ||
  die "go install github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION} failed"
"${gobin}/versitygw" --version >/dev/null || die "versitygw built but does not run"
# Installed atomically: a half-written file never looks cached.
mkdir -p "$(dirname "${BIN}")"
cp "${gobin}/versitygw" "${BIN}.tmp.$$"
chmod 0755 "${BIN}.tmp.$$"
mv -f "${BIN}.tmp.$$" "${BIN}"
say "versitygw built in $(($(date +%s) - t0))s"
print_paths
