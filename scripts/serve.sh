#!/usr/bin/env bash
# The README's main command: on a fresh Debian 12 machine, as root, installs what is missing
# (Node 24, Docker, ...), builds Airlock and its images offline, and runs `airlock serve`.
#
# Usage: scripts/serve.sh [CONFIG]      (default: airlock.example.yaml)
set -euo pipefail
export PATH="/usr/local/bin:/usr/local/sbin:${PATH}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
config="${1:-airlock.example.yaml}"
[[ -f "${config}" ]] || { echo "serve: config file ${config} not found" >&2; exit 2; }

bash scripts/setup.sh
npm run --silent build
bash scripts/build-images.sh --offline
echo "[serve] starting: node dist/cli/main.js serve --config ${config}"
exec node dist/cli/main.js serve --config "${config}"
