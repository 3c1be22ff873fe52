#!/usr/bin/env bash
# Build (once) and locate the Kubernetes tools the Kubernetes tests run: kube-apiserver, etcd,
# helm and (with --with-kubectl) kubectl, compiled from source through the Go module proxy and
# cached OUTSIDE the repository:
#
#   ${AIRLOCK_TOOLS_DIR:-$HOME/.cache/airlock-tools}/<name>-<version>/<name>
#
# Usage: scripts/k8s-tools.sh [--paths] [--with-kubectl]
#   (no flag)       build whatever is missing, then print NAME=PATH lines; seconds when cached
#   --paths         only print NAME=PATH lines (KUBECTL when built); exit 1 naming what is missing
#                   (never builds; with --with-kubectl kubectl counts as required)
#   --with-kubectl  also build kubectl, in the same wrapper module and Go build cache (about 1.5
#                   minutes once kube-apiserver is built). test/e2e/k8s-kubectl.test.ts runs it inside
#                   a sandbox; scripts/test.sh (CI) passes this flag.
#
# Pinned versions (change them here only; the tests ask this script for the paths):
#   kube-apiserver  k8s.io/kubernetes  v1.36.3  a supported release (1.35-1.37 are current)
#   etcd            go.etcd.io/etcd    v3.6.8   the etcd release kubernetes v1.36.3's own go.mod
#                   pins; Debian's 3.4.23 is too old for 1.31+ (needs >= 3.5.11 / 3.4.29). Built in
#                   the same wrapper module as kube-apiserver, so the shared packages (grpc, etcd
#                   client/api, protobuf, otel) compile once.
#   helm            helm.sh/helm/v3    v3.21.4  the v3 release built on the same k8s.io v0.36 libraries
#
# How: `go install` refuses modules with `replace` lines, and k8s.io/kubernetes' go.mod points every
# k8s.io/* staging module at ./staging. So a throw-away wrapper module (in a temp dir, never
# committed) requires k8s.io/kubernetes and replaces each staging module, read from that go.mod,
# by its published v0.X.Y twin; `go build` then builds the upstream main packages. helm has no such
# lines and is built with plain `go install helm.sh/helm/v3/cmd/helm@VERSION`.
#
# Environment: AIRLOCK_TOOLS_DIR (cache root), GOFLAGS (default -p=2 on this 2-core machine).
set -euo pipefail
export PATH="/usr/local/bin:/usr/local/go/bin:${PATH}"

KUBERNETES_VERSION=v1.36.3
ETCD_VERSION=v3.6.8
HELM_VERSION=v3.21.4

TOOLS_DIR="${AIRLOCK_TOOLS_DIR:-${HOME}/.cache/airlock-tools}"
KUBE_APISERVER="${TOOLS_DIR}/kube-apiserver-${KUBERNETES_VERSION}/kube-apiserver"
KUBECTL="${TOOLS_DIR}/kubectl-${KUBERNETES_VERSION}/kubectl"
ETCD="${TOOLS_DIR}/etcd-${ETCD_VERSION}/etcd"
HELM="${TOOLS_DIR}/helm-${HELM_VERSION}/helm"

say() { printf '[k8s-tools] %s\n' "$*" >&2; }
die() {
  printf '[k8s-tools] ERROR: %s\n' "$*" >&2
  exit 1
}

paths_only=false
with_kubectl=false
for arg in "$@"; do
  case "${arg}" in
    --paths) paths_only=true ;;
    --with-kubectl) with_kubectl=true ;;
    -h | --help)
      sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument ${arg} (see --help)" ;;
  esac
done

print_paths() {
  printf 'KUBERNETES_VERSION=%s\nETCD_VERSION=%s\nHELM_VERSION=%s\n' \
    "${KUBERNETES_VERSION}" "${ETCD_VERSION}" "${HELM_VERSION}"
  printf 'KUBE_APISERVER=%s\nETCD=%s\nHELM=%s\n' "${KUBE_APISERVER}" "${ETCD}" "${HELM}"
  if [[ -x "${KUBECTL}" ]]; then printf 'KUBECTL=%s\n' "${KUBECTL}"; fi
}

if ${paths_only}; then
  missing=()
  required=("${KUBE_APISERVER}" "${ETCD}" "${HELM}")
  if ${with_kubectl}; then required+=("${KUBECTL}"); fi
  for bin in "${required[@]}"; do
    [[ -x "${bin}" ]] || missing+=("${bin}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    die "not built: ${missing[*]} (run: bash scripts/k8s-tools.sh$(${with_kubectl} && echo ' --with-kubectl'))"
  fi
  print_paths
  exit 0
fi

command -v go >/dev/null || die "go is not installed (the Kubernetes tools are built from source)"
export GOFLAGS="${GOFLAGS:--p=2} -trimpath -buildvcs=false"
export CGO_ENABLED=0
mkdir -p "${TOOLS_DIR}"

# Installs a freshly built binary atomically: a half-written file never looks cached.
install_bin() { # install_bin SRC DEST
  mkdir -p "$(dirname "$2")"
  cp "$1" "$2.tmp.$$"
  chmod 0755 "$2.tmp.$$"
  mv -f "$2.tmp.$$" "$2"
}

elapsed() { echo "$(($(date +%s) - $1))s"; }

# --- helm ------------------------------------------------------------------------------------
if [[ -x "${HELM}" ]]; then
  say "helm ${HELM_VERSION} cached"
else
  say "building helm ${HELM_VERSION} (go install)"
  t0=$(date +%s)
  gobin="$(mktemp -d)"
  # Like helm's Makefile: stamp the Kubernetes version of its client libraries as the default
  # capabilities (`helm template` and `helm lint` otherwise assume Kubernetes 1.20).
  helm_gomod="$(cd "${gobin}" && go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  k8s_minor="$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "${helm_gomod}" | sed -n 1p)"
  [[ -n "${k8s_minor}" ]] || die "cannot read helm ${HELM_VERSION}'s k8s.io/client-go version"
  helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    helm_ldflags+=" -X ${p}.k8sVersionMajor=1 -X ${p}.k8sVersionMinor=${k8s_minor}"
  done
  GOBIN="${gobin}" go install -ldflags "${helm_ldflags}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  install_bin "${gobin}/helm" "${HELM}"
  rm -rf "${gobin}"
  say "helm built in $(elapsed "${t0}")"
fi

# --- kube-apiserver, etcd (and kubectl) from one wrapper module ------------------------------
targets=()
[[ -x "${KUBE_APISERVER}" ]] || targets+=(kube-apiserver)
[[ -x "${ETCD}" ]] || targets+=(etcd)
if ${with_kubectl} && [[ ! -x "${KUBECTL}" ]]; then targets+=(kubectl); fi

if [[ ${#targets[@]} -eq 0 ]]; then
  say "kube-apiserver ${KUBERNETES_VERSION}, etcd ${ETCD_VERSION}$(${with_kubectl} && echo ', kubectl') cached"
else
  say "building ${targets[*]} (kubernetes ${KUBERNETES_VERSION}, etcd ${ETCD_VERSION})"
  t0=$(date +%s)
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' EXIT
  minor="${KUBERNETES_VERSION#v1.}" # 36.3 -> staging modules are v0.36.3
  staging_version="v0.${minor}"
  gomod="$(cd "${work}" && go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "${gomod}" ]] || die "could not download k8s.io/kubernetes@${KUBERNETES_VERSION}"
  {
    echo "module airlock.local/k8s-tools"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "${gomod}")"
    echo
    echo "require ("
    echo "	k8s.io/kubernetes ${KUBERNETES_VERSION}"
    echo "	go.etcd.io/etcd/server/v3 ${ETCD_VERSION}"
    echo ")"
    echo
    echo "replace ("
    # Every `k8s.io/X => ./staging/src/k8s.io/X` becomes `k8s.io/X => k8s.io/X v0.<minor>.<patch>`.
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/k8s\.io/[a-z0-9-]*$#\t\1 => \1 '"${staging_version}"'#p' "${gomod}"
    echo ")"
  } >"${work}/go.mod"
  grep -q 'k8s.io/api => k8s.io/api' "${work}/go.mod" || die "found no staging replace lines in ${gomod}"
  mkdir -p "${work}/etcd"
  cat >"${work}/etcd/main.go" <<'GO'
// Command etcd is the upstream etcd server: the same entry point as etcd's own main package.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  # tools.go pins the upstream main packages, so `go mod tidy` resolves exactly their dependencies
  # (kubectl's, e.g. kustomize, only when it is asked for).
  {
    printf '//go:build tools\n\n// Package tools pins the upstream main packages built from this module.\npackage tools\n\n'
    printf 'import _ "k8s.io/kubernetes/cmd/kube-apiserver"\n'
    if ${with_kubectl}; then printf 'import _ "k8s.io/kubernetes/cmd/kubectl"\n'; fi
  } >"${work}/tools.go"
  (cd "${work}" && go mod tidy >/dev/null) || die "go mod tidy failed in the wrapper module"
  # Version stamps, as kubernetes' own build sets them (helm and clients read the server version).
  major_minor="${minor%%.*}"
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X ${pkg}.gitVersion=${KUBERNETES_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${major_minor}"
  ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=${KUBERNETES_VERSION}"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${major_minor}"
  pkgs=()
  for t in "${targets[@]}"; do
    case "${t}" in
      kube-apiserver) pkgs+=(k8s.io/kubernetes/cmd/kube-apiserver) ;;
      kubectl) pkgs+=(k8s.io/kubernetes/cmd/kubectl) ;;
      etcd) pkgs+=(./etcd) ;;
    esac
  done
  mkdir -p "${work}/bin"
  (cd "${work}" && go build -ldflags "${ldflags}" -o "${work}/bin/" "${pkgs[@]}")
  for t in "${targets[@]}"; do
    case "${t}" in
      kube-apiserver) install_bin "${work}/bin/kube-apiserver" "${KUBE_APISERVER}" ;;
      kubectl) install_bin "${work}/bin/kubectl" "${KUBECTL}" ;;
      etcd) install_bin "${work}/bin/etcd" "${ETCD}" ;;
    esac
  done
  say "${targets[*]} built in $(elapsed "${t0}")"
fi

"${KUBE_APISERVER}" --version >&2
"${ETCD}" --version | sed -n 1p >&2
"${HELM}" version --short >&2
if ${with_kubectl}; then "${KUBECTL}" version --client 2>&1 | sed -n 1p >&2; fi
print_paths
