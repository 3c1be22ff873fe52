#!/usr/bin/env bash
# Prepare a Debian 12 machine (as root) for building and testing Airlock.
#
# Idempotent and non-interactive: on a machine that already has everything it only checks and
# finishes in seconds. On a fresh machine it installs Node >= 22.19 (node@24 from the npm
# registry into /usr/local), the Debian packages the tests use, starts dockerd when no engine
# answers, stops the Debian etcd/squid services (tests start their own on random ports) and runs
# `npm ci`.
#
# Environment:
#   AIRLOCK_SKIP_NPM_CI=1   do not run `npm ci` (e.g. when node_modules is already current)
set -euo pipefail

export PATH="/usr/local/bin:/usr/local/sbin:${PATH}"
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_MIN="22.19"
DEBIAN_PACKAGES=(docker.io etcd-server etcd-client squid iptables busybox curl git ca-certificates
  nginx-light fcgiwrap python3-requests python3-venv openssl chromium iproute2 util-linux)
DOCKERD_LOG=/var/log/airlock-dockerd.log

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "run as root (apt-get, dockerd and /usr/local need it)"

APT_UPDATED=0
apt_update_once() {
  if [[ "${APT_UPDATED}" -eq 0 ]]; then
    say "apt-get update"
    apt-get update -qq
    APT_UPDATED=1
  fi
}

# (No `dpkg -s | grep -q`: grep stopping early makes dpkg die of SIGPIPE, which pipefail reports.)
is_installed() { [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" == ii* ]]; }

# Install Debian packages without letting their maintainer scripts start services: a temporary
# policy-rc.d (the Debian mechanism for exactly this) answers "not allowed" to invoke-rc.d.
apt_install() {
  apt_update_once
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${policy}"
    chmod 0755 "${policy}"
    created_policy=1
  fi
  say "apt-get install $*"
  local rc=0
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
  if [[ "${created_policy}" -eq 1 ]]; then rm -f "${policy}"; fi
  [[ "${rc}" -eq 0 ]] || die "apt-get install $* failed (exit ${rc})"
}

version_ge() { # version_ge A B: A >= B (dotted numeric)
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

# --- Debian packages -------------------------------------------------------------------------
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  is_installed "${pkg}" || missing+=("${pkg}")
done
if [[ "${#missing[@]}" -gt 0 ]]; then
  apt_install "${missing[@]}"
else
  say "debian packages present: ${DEBIAN_PACKAGES[*]}"
fi

# --- Node ------------------------------------------------------------------------------------
node_version() { node -p 'process.versions.node' 2>/dev/null || true; }
current_node="$(node_version)"
if [[ -n "${current_node}" ]] && version_ge "${current_node}" "${NODE_MIN}"; then
  say "node ${current_node} ($(command -v node)) ok"
else
  say "node ${current_node:-missing} is older than ${NODE_MIN}: installing node@24 into /usr/local"
  if ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  npm i -g --prefix /usr/local --no-audit --no-fund node@24
  hash -r
  current_node="$(node_version)"
  [[ -n "${current_node}" ]] && version_ge "${current_node}" "${NODE_MIN}" ||
    die "node is still ${current_node:-missing} after installing node@24 ($(command -v node || echo none))"
  say "node ${current_node} ($(command -v node)) installed"
fi

# --- Services the tests start themselves -----------------------------------------------------
# Only stop what the Debian packages started; tests run their own etcd/squid/nginx on their own ports.
for svc in etcd squid nginx fcgiwrap; do
  if [[ -d /run/systemd/system ]]; then
    if systemctl is-active --quiet "${svc}" 2>/dev/null || systemctl is-enabled --quiet "${svc}" 2>/dev/null; then
      say "stopping and disabling system service ${svc}"
      systemctl disable --now "${svc}" >/dev/null 2>&1 || true
    fi
  elif [[ -x "/etc/init.d/${svc}" && -s "/run/${svc}.pid" ]] && kill -0 "$(head -n1 "/run/${svc}.pid")" 2>/dev/null; then
    # Without systemd: Debian's init scripts keep /run/NAME.pid (their `status` is not reliable:
    # fcgiwrap's answers 0 when spawn-fcgi is absent).
    say "stopping system service ${svc}"
    service "${svc}" stop >/dev/null 2>&1 || true
  fi
done

# --- Docker engine ---------------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
  say "docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null) answers"
else
  if [[ -d /run/systemd/system ]] && systemctl start docker >/dev/null 2>&1; then
    say "started docker.service"
  else
    say "starting dockerd (log: ${DOCKERD_LOG})"
    nohup dockerd >>"${DOCKERD_LOG}" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || die "docker engine did not answer within 60 s (see ${DOCKERD_LOG})"
  say "docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null) answers"
fi

# --- npm dependencies ------------------------------------------------------------------------
# node_modules is current when npm's hidden lockfile (written by every install) has every
# non-optional package of package-lock.json at the same version. Skipping `npm ci` then keeps a
# re-run fast and leaves a node_modules that other processes may be using in place.
node_modules_current() {
  node - "${REPO_ROOT}" <<'JS' 2>/dev/null
const fs = require('node:fs');
const path = require('node:path');
const root = process.argv[2];
const lock = JSON.parse(fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8'));
const hidden = JSON.parse(fs.readFileSync(path.join(root, 'node_modules/.package-lock.json'), 'utf8'));
for (const [key, entry] of Object.entries(lock.packages ?? {})) {
  if (key === '' || entry.link) continue;
  const have = hidden.packages?.[key];
  if (!have) {
    if (entry.optional) continue;
    process.exit(1);
  }
  if (have.version !== entry.version || !fs.existsSync(path.join(root, key))) process.exit(1);
}
JS
}
if [[ "${AIRLOCK_SKIP_NPM_CI:-0}" == "1" ]]; then
  say "npm ci skipped (AIRLOCK_SKIP_NPM_CI=1)"
elif node_modules_current; then
  say "node_modules matches package-lock.json"
else
  say "npm ci"
  (cd "${REPO_ROOT}" && npm ci --no-audit --no-fund --prefer-offline)
fi

say "done"
