#!/usr/bin/env bash
# Create (once) the Python virtual environment the Python SDK's tests run in (clients/python: httpx,
# pytest), cached OUTSIDE the repository like scripts/k8s-tools.sh and keyed by the pinned versions:
#
#   ${AIRLOCK_TOOLS_DIR:-$HOME/.cache/airlock-tools}/python-venv-<key>/bin/python
#
# Usage: scripts/python-venv.sh [--paths]
#   (no flag)  create it when missing (pip from PyPI), then print PYTHON=PATH; instant when cached
#   --paths    only print PYTHON=PATH; exit 1 when not created (never installs)
#
# The client itself is not installed into the venv: the tests put clients/python/src on PYTHONPATH, so
# the venv never goes stale when the client changes. Debian's python3 (with python3-venv, installed
# by scripts/setup.sh) is used when present.
set -euo pipefail

HTTPX_VERSION=0.28.1
PYTEST_VERSION=9.2.0
TOOLS_DIR="${AIRLOCK_TOOLS_DIR:-${HOME}/.cache/airlock-tools}"
PY_SYSTEM=/usr/bin/python3
[[ -x "${PY_SYSTEM}" ]] || PY_SYSTEM="$(command -v python3 || true)"
[[ -n "${PY_SYSTEM}" ]] || { echo '[python-venv] ERROR: python3 not found (scripts/setup.sh installs it)' >&2; exit 1; }
PY_VERSION="$("${PY_SYSTEM}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
VENV="${TOOLS_DIR}/python-venv-py${PY_VERSION}-httpx${HTTPX_VERSION}-pytest${PYTEST_VERSION}"
PYTHON="${VENV}/bin/python"

if [[ "${1:-}" == "--paths" ]]; then
  [[ -x "${PYTHON}" ]] || { echo "[python-venv] ERROR: not created: ${VENV} (run: bash scripts/python-venv.sh)" >&2; exit 1; }
  printf 'PYTHON=%s\n' "${PYTHON}"
  exit 0
fi
if [[ ! -x "${PYTHON}" || ! -e "${VENV}/.complete" ]]; then
  rm -rf "${VENV}"
  mkdir -p "${TOOLS_DIR}"
  echo "[python-venv] creating ${VENV}" >&2
  "${PY_SYSTEM}" -m venv "${VENV}"
  "${PYTHON}" -m pip install --quiet --disable-pip-version-check \
    "httpx==${HTTPX_VERSION}" "pytest==${PYTEST_VERSION}" >&2
  touch "${VENV}/.complete"
fi
printf 'PYTHON=%s\n' "${PYTHON}"
