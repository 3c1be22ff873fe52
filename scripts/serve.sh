#!/usr/bin/env bash
# The README's main command: on a fresh Debian 12 machine, as root, installs what is missing
# (Node 24, Docker, ...), builds Airlock and its images offline, runs `airlock serve`, and starts the
# demo forum the README's examples call (forum.test:3000: json-server with scripts/demo/forum.json,
# listening only on the egress network's host address, where the example config's `host-gateway`
# alias points). Ctrl-C (or SIGTERM) stops both.
#
# Usage: scripts/serve.sh [CONFIG]      (default: airlock.example.yaml)
# Environment:
#   AIRLOCK_DEMO_FORUM=0   do not start the demo forum (e.g. with your own config and upstreams)
set -euo pipefail
export PATH="/usr/local/bin:/usr/local/sbin:${PATH}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
config="${1:-airlock.example.yaml}"
[[ -f "${config}" ]] || { echo "serve: config file ${config} not found" >&2; exit 2; }

bash scripts/setup.sh
npm run --silent build
bash scripts/build-images.sh --offline

say() { printf '[serve] %s\n' "$*"; }
airlock_pid=""
forum_pid=""
stop() {
  trap - INT TERM
  [[ -n "${forum_pid}" ]] && kill -TERM "${forum_pid}" 2>/dev/null || true
  [[ -n "${airlock_pid}" ]] && kill -TERM "${airlock_pid}" 2>/dev/null || true
}
trap stop INT TERM

say "starting: node dist/cli/main.js serve --config ${config}"
node dist/cli/main.js serve --config "${config}" &
airlock_pid=$!

if [[ "${AIRLOCK_DEMO_FORUM:-1}" != "0" ]]; then
  # The API answers /healthz once the gateway and the egress network are up.
  read -r listen state_dir < <(node --input-type=module -e '
    const { loadConfig } = await import(process.cwd() + "/dist/config/load.js");
    const c = loadConfig(process.argv[1]);
    console.log(c.api.listen, c.stateDir);' "${config}")
  up=0
  for _ in $(seq 1 300); do
    kill -0 "${airlock_pid}" 2>/dev/null || break
    if curl -fsS -o /dev/null "http://${listen}/healthz" 2>/dev/null; then up=1; break; fi
    sleep 0.5
  done
  if [[ "${up}" -eq 1 ]]; then
    host="$(docker network inspect airlock-egress --format '{{(index .IPAM.Config 0).Gateway}}')"
    db="${state_dir}/demo/forum.json"
    mkdir -p "$(dirname "${db}")"
    cp scripts/demo/forum.json "${db}"
    node node_modules/json-server/lib/cli/bin.js --host "${host}" --port 3000 --quiet "${db}" &
    forum_pid=$!
    say "demo forum: forum.test:3000 -> json-server on ${host}:3000 (data ${db}; AIRLOCK_DEMO_FORUM=0 skips it)"
  fi
fi

rc=0
wait "${airlock_pid}" || rc=$?
# `wait` returns early when a trapped signal arrives: wait for airlock's own shutdown too.
while kill -0 "${airlock_pid}" 2>/dev/null; do wait "${airlock_pid}" || rc=$?; done
[[ -n "${forum_pid}" ]] && { kill -TERM "${forum_pid}" 2>/dev/null || true; wait "${forum_pid}" 2>/dev/null || true; }
exit "${rc}"
