#!/usr/bin/env bash
# Build (once) and locate what a one-node Kubernetes cluster needs beyond scripts/k8s-tools.sh
# (kube-apiserver, etcd, helm, kubectl): the node and control-plane components below, compiled from
# source through the Go module proxy and cached OUTSIDE the repository, keyed by version:
#
#   ${AIRLOCK_TOOLS_DIR:-$HOME/.cache/airlock-tools}/<name>-<version>/<name>
#
# and the Debian packages the node runs with (installed with apt when missing).
#
# Usage: scripts/k8s-node-tools.sh [--paths]
#   (no flag)  install missing Debian packages, build whatever is missing, print NAME=PATH lines
#   --paths    only print NAME=PATH lines; exit 1 naming what is missing (never builds)
#
# Pinned versions (change them here only; scripts/k8s-node.sh asks this script for the paths):
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy
#              k8s.io/kubernetes, the KUBERNETES_VERSION of scripts/k8s-tools.sh (one release for
#              the whole cluster), built in the same kind of wrapper module (see that script: `go
#              install` refuses k8s.io/kubernetes' `replace` lines).
#   coredns    github.com/coredns/coredns v1.14.7 (plain `go install`; no replace lines). Cluster
#              DNS for the Pods (the controller resolves the gateway Services by name).
#   kube-router github.com/cloudnativelabs/kube-router/v2 v2.1.0, the only v2 release the module
#              proxy serves; run in firewall-only mode as the NetworkPolicy enforcer (docs/kubernetes.md
#              says why this one). Its published advisory concerns the service proxy, which
#              firewall-only mode does not run.
#   pause      a 20-line static Go program (SIGTERM/SIGINT -> exit 0, reaps nothing else): the Pod
#              sandbox image, written into an image archive by scripts/k8s-node.sh (no registry).
#
# Debian packages: containerd runc (from docker.io), containernetworking-plugins (bridge, host-local,
# loopback, portmap, firewall), iptables, ipset (kube-router), conntrack, socat (kubectl
# port-forward), ethtool.
#
# Cold build on this 2-core machine (measured, with other work running): about 11.5 minutes in all
# when scripts/k8s-tools.sh has built kube-apiserver before: the four Kubernetes binaries 3 min
# (shared Go build cache), kube-router 3 min, coredns 5 min. Cached: well under a second.
# A build waits for another `go build` of k8s.io/kubernetes in progress (e.g. scripts/k8s-tools.sh
# in a concurrent CI run) instead of competing for the two cores, and holds a lock on the cache.
#
# Environment: AIRLOCK_TOOLS_DIR (cache root), GOFLAGS (default -p=2).
set -euo pipefail
export PATH="/usr/local/bin:/usr/local/go/bin:/usr/sbin:/sbin:${PATH}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KUBERNETES_VERSION="$(sed -n 's/^KUBERNETES_VERSION=\(v[0-9.]*\)$/\1/p' "${HERE}/k8s-tools.sh")"
COREDNS_VERSION=v1.14.7
KUBE_ROUTER_VERSION=v2.1.0
PAUSE_VERSION=airlock-1

TOOLS_DIR="${AIRLOCK_TOOLS_DIR:-${HOME}/.cache/airlock-tools}"
KUBE_BINS=(kubelet kube-controller-manager kube-scheduler kube-proxy)
DEBIAN_PACKAGES=(containerd runc containernetworking-plugins iptables ipset conntrack socat ethtool)

say() { printf '[k8s-node-tools] %s\n' "$*" >&2; }
die() {
  printf '[k8s-node-tools] ERROR: %s\n' "$*" >&2
  exit 1
}
[[ -n "${KUBERNETES_VERSION}" ]] || die "cannot read KUBERNETES_VERSION from ${HERE}/k8s-tools.sh"

bin_path() { # bin_path NAME -> cached path
  case "$1" in
    coredns) echo "${TOOLS_DIR}/coredns-${COREDNS_VERSION}/coredns" ;;
    kube-router) echo "${TOOLS_DIR}/kube-router-${KUBE_ROUTER_VERSION}/kube-router" ;;
    pause) echo "${TOOLS_DIR}/pause-${PAUSE_VERSION}/pause" ;;
    *) echo "${TOOLS_DIR}/$1-${KUBERNETES_VERSION}/$1" ;;
  esac
}
ALL=("${KUBE_BINS[@]}" coredns kube-router pause)

print_paths() {
  printf 'KUBERNETES_VERSION=%s\nCOREDNS_VERSION=%s\nKUBE_ROUTER_VERSION=%s\n' \
    "${KUBERNETES_VERSION}" "${COREDNS_VERSION}" "${KUBE_ROUTER_VERSION}"
  local n
  for n in "${ALL[@]}"; do
    printf '%s=%s\n' "$(echo "${n}" | tr 'a-z-' 'A-Z_')" "$(bin_path "${n}")"
  done
}

paths_only=false
for arg in "$@"; do
  case "${arg}" in
    --paths) paths_only=true ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument ${arg} (see --help)" ;;
  esac
done

if ${paths_only}; then
  missing=()
  for n in "${ALL[@]}"; do [[ -x "$(bin_path "${n}")" ]] || missing+=("${n}"); done
  [[ ${#missing[@]} -eq 0 ]] || die "not built: ${missing[*]} (run: bash scripts/k8s-node-tools.sh)"
  print_paths
  exit 0
fi

# --- Debian packages ---------------------------------------------------------------------------
is_installed() { [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" == ii* ]]; }
missing_pkgs=()
for p in "${DEBIAN_PACKAGES[@]}"; do is_installed "${p}" || missing_pkgs+=("${p}"); done
if [[ ${#missing_pkgs[@]} -gt 0 ]]; then
  [[ "$(id -u)" -eq 0 ]] || die "missing Debian packages ${missing_pkgs[*]} (run as root to install them)"
  say "apt-get install ${missing_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
  # As scripts/setup.sh: a temporary policy-rc.d keeps maintainer scripts from starting services.
  policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${policy}"
    chmod 0755 "${policy}"
    created_policy=1
  fi
  rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null; } || rc=$?
  if [[ "${created_policy}" -eq 1 ]]; then rm -f "${policy}"; fi
  [[ "${rc}" -eq 0 ]] || die "apt-get install ${missing_pkgs[*]} failed (exit ${rc})"
fi

# --- builds --------------------------------------------------------------------------------------
command -v go >/dev/null || die "go is not installed (the Kubernetes tools are built from source)"
export GOFLAGS="${GOFLAGS:--p=2} -trimpath -buildvcs=false"
export CGO_ENABLED=0
mkdir -p "${TOOLS_DIR}"

install_bin() { # install_bin SRC DEST (atomic: a half-written file never looks cached)
  mkdir -p "$(dirname "$2")"
  cp "$1" "$2.tmp.$$"
  chmod 0755 "$2.tmp.$$"
  mv -f "$2.tmp.$$" "$2"
}
elapsed() { echo "$(($(date +%s) - $1))s"; }

todo=()
for n in "${ALL[@]}"; do [[ -x "$(bin_path "${n}")" ]] || todo+=("${n}"); done
if [[ ${#todo[@]} -eq 0 ]]; then
  say "cached: ${ALL[*]}"
  print_paths
  exit 0
fi

# One builder at a time on this cache (flock), and none while another process compiles
# k8s.io/kubernetes (scripts/k8s-tools.sh): two such builds on two cores only slow each other down.
exec 9>"${TOOLS_DIR}/.k8s-node-tools.lock"
flock 9
waited=0
while pgrep -f 'go build .*k8s\.io/kubernetes/cmd/' >/dev/null 2>&1; do
  if [[ "${waited}" -eq 0 ]]; then say "waiting for another go build of k8s.io/kubernetes to finish"; fi
  waited=$((waited + 5))
  [[ "${waited}" -lt 3600 ]] || die "another go build of k8s.io/kubernetes is still running after 1 h"
  sleep 5
done
# Another builder may have finished what we wanted while we waited.
todo=()
for n in "${ALL[@]}"; do [[ -x "$(bin_path "${n}")" ]] || todo+=("${n}"); done

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

want() { local n; for n in "${todo[@]}"; do [[ "${n}" == "$1" ]] && return 0; done; return 1; }

if want pause; then
  mkdir -p "${work}/pause"
  cat >"${work}/pause/main.go" <<'GO'
// Command pause holds a Pod's namespaces open until it is told to stop (the role of Kubernetes'
// pause container, registry.k8s.io/pause, which cannot be pulled here).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
	os.Exit(0)
}
GO
  printf 'module airlock.local/pause\n\ngo 1.21\n' >"${work}/pause/go.mod"
  (cd "${work}/pause" && go build -ldflags "-s -w" -o "${work}/pause/pause" .)
  install_bin "${work}/pause/pause" "$(bin_path pause)"
  say "pause built"
fi

if want coredns; then
  say "building coredns ${COREDNS_VERSION} (go install)"
  t0=$(date +%s)
  GOBIN="${work}/gobin" go install -ldflags "-s -w" "github.com/coredns/coredns@${COREDNS_VERSION}"
  install_bin "${work}/gobin/coredns" "$(bin_path coredns)"
  say "coredns built in $(elapsed "${t0}")"
fi

if want kube-router; then
  say "building kube-router ${KUBE_ROUTER_VERSION} (go install)"
  t0=$(date +%s)
  GOBIN="${work}/gobin" go install -ldflags "-s -w" \
    "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@${KUBE_ROUTER_VERSION}"
  install_bin "${work}/gobin/kube-router" "$(bin_path kube-router)"
  say "kube-router built in $(elapsed "${t0}")"
fi

kube_targets=()
for n in "${KUBE_BINS[@]}"; do if want "${n}"; then kube_targets+=("${n}"); fi; done
if [[ ${#kube_targets[@]} -gt 0 ]]; then
  say "building ${kube_targets[*]} (kubernetes ${KUBERNETES_VERSION})"
  t0=$(date +%s)
  mod="${work}/kube"
  mkdir -p "${mod}/bin"
  minor="${KUBERNETES_VERSION#v1.}"
  gomod="$(cd "${mod}" && go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "${gomod}" ]] || die "could not download k8s.io/kubernetes@${KUBERNETES_VERSION}"
  {
    printf 'module airlock.local/k8s-node-tools\n\ngo %s\n\n' "$(sed -n 's/^go \([0-9.]*\)$/\1/p' "${gomod}")"
    printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "${KUBERNETES_VERSION}"
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/k8s\.io/[a-z0-9-]*$#\t\1 => \1 v0.'"${minor}"'#p' "${gomod}"
    printf ')\n'
  } >"${mod}/go.mod"
  grep -q 'k8s.io/api => k8s.io/api' "${mod}/go.mod" || die "found no staging replace lines in ${gomod}"
  {
    printf '//go:build tools\n\n// Package tools pins the upstream main packages built from this module.\npackage tools\n\n'
    for n in "${kube_targets[@]}"; do printf 'import _ "k8s.io/kubernetes/cmd/%s"\n' "${n}"; done
  } >"${mod}/tools.go"
  (cd "${mod}" && go mod tidy >/dev/null) || die "go mod tidy failed in the wrapper module"
  major_minor="${minor%%.*}"
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X ${pkg}.gitVersion=${KUBERNETES_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${major_minor}"
  ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=${KUBERNETES_VERSION}"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${major_minor}"
  pkgs=()
  for n in "${kube_targets[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${n}"); done
  (cd "${mod}" && go build -ldflags "${ldflags}" -o "${mod}/bin/" "${pkgs[@]}")
  for n in "${kube_targets[@]}"; do install_bin "${mod}/bin/${n}" "$(bin_path "${n}")"; done
  say "${kube_targets[*]} built in $(elapsed "${t0}")"
fi

print_paths
