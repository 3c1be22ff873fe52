#!/usr/bin/env bash
# Install (once) and locate moto's S3-compatible server, the real AWS API emulator the SigV4
# credential test (test/integration/gateway-sigv4.test.ts) signs requests for. From PyPI, into a
# Python venv cached OUTSIDE the repository:
#
#   ${AIRLOCK_TOOLS_DIR:-$HOME/.cache/airlock-tools}/moto-<version>/venv
#
# Usage: scripts/moto.sh [--paths]
#   (no flag)  install when missing, then print MOTO_PYTHON=PATH (run the server with
#              `$MOTO_PYTHON -m moto.server`); seconds when cached
#   --paths    only print the line; exit 1 naming what is missing (never installs)
#
# Why moto (getmoto/moto, Apache-2.0): a maintained emulator of AWS APIs whose server mode checks
# SigV4 signatures with botocore's own signer once IAM authentication is on
# (INITIAL_NO_AUTH_ACTION_COUNT), against access keys created through its IAM API: a request signed
# with an unknown key or a wrong secret is refused 403 as S3 would. MinIO would need a large Go
# build; LocalStack needs Docker images that cannot be pulled here.
#
# Environment: AIRLOCK_TOOLS_DIR (cache root), PYTHON (default python3; needs the venv module:
# Debian's python3-venv, installed by scripts/setup.sh).
set -euo pipefail

MOTO_VERSION=5.2.5

TOOLS_DIR="${AIRLOCK_TOOLS_DIR:-${HOME}/.cache/airlock-tools}"
DIR="${TOOLS_DIR}/moto-${MOTO_VERSION}"
VENV="${DIR}/venv"
PY="${VENV}/bin/python"

say() { printf '[moto] %s\n' "$*" >&2; }
die() {
  printf '[moto] ERROR: %s\n' "$*" >&2
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

# The marker is written only after a complete install: a half-made venv is never used.
if [[ -f "${DIR}/.complete" ]]; then
  echo "MOTO_PYTHON=${PY}"
  echo "MOTO_VERSION=${MOTO_VERSION}"
  exit 0
fi
if ${paths_only}; then
  die "moto ${MOTO_VERSION} is not installed: run bash scripts/moto.sh"
fi

say "installing moto[server]==${MOTO_VERSION} into ${VENV}"
rm -rf "${DIR}"
mkdir -p "${DIR}"
"${PYTHON:-python3}" -m venv "${VENV}" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
"${PY}" -m pip install --quiet --disable-pip-version-check "moto[server]==${MOTO_VERSION}" ||
  die "pip install moto[server]==${MOTO_VERSION} failed"
"${PY}" -c 'import moto.server, boto3' || die "moto installed but does not import"
touch "${DIR}/.complete"
echo "MOTO_PYTHON=${PY}"
echo "MOTO_VERSION=${MOTO_VERSION}"
