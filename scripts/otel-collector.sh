#!/usr/bin/env bash
# Build (once) and locate a minimal OpenTelemetry Collector for the telemetry tests
# (test/integration/telemetry-otlp.test.ts): the collector core's `otelcol` with the OTLP receiver
# (gRPC and HTTP) and the debug exporter, compiled through the Go module proxy and cached OUTSIDE the
# repository like scripts/k8s-tools.sh:
#
#   ${AIRLOCK_TOOLS_DIR:-$HOME/.cache/airlock-tools}/otelcol-airlock-<version>/otelcol-airlock
#
# Usage: scripts/otel-collector.sh [--paths]
#   (no flag)  build it when missing, then print OTELCOL=PATH; seconds when cached
#   --paths    only print OTELCOL=PATH; exit 1 when not built (never builds)
#
# Why not `go install go.opentelemetry.io/collector/cmd/otelcorecol`: that module carries `replace`
# lines (go install refuses it) and many components the tests do not need. A throw-away wrapper
# module (in a temp dir, never committed) holds the few lines `ocb` (the collector builder) would
# generate for this component list; every collector module is kept at one release.
#
# Pinned: go.opentelemetry.io/collector v0.165.0 (stable modules v1.71.0, the same release).
# Environment: AIRLOCK_TOOLS_DIR (cache root), GOFLAGS (default -p=2 on this 2-core machine).
set -euo pipefail
export PATH="/usr/local/bin:/usr/local/go/bin:${PATH}"

COLLECTOR_VERSION=v0.165.0
STABLE_VERSION=v1.71.0
TOOLS_DIR="${AIRLOCK_TOOLS_DIR:-${HOME}/.cache/airlock-tools}"
BUILD_REVISION=3 # bump when main.go below changes
OTELCOL="${TOOLS_DIR}/otelcol-airlock-${COLLECTOR_VERSION}-${BUILD_REVISION}/otelcol-airlock"

say() { printf '[otel-collector] %s\n' "$*" >&2; }
die() {
  printf '[otel-collector] ERROR: %s\n' "$*" >&2
  exit 1
}

case "${1:-}" in
  --paths)
    [[ -x "${OTELCOL}" ]] || die "not built: ${OTELCOL} (run: bash scripts/otel-collector.sh)"
    printf 'OTELCOL=%s\n' "${OTELCOL}"
    exit 0
    ;;
  -h | --help)
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  "") ;;
  *) die "unknown argument ${1} (see --help)" ;;
esac

if [[ -x "${OTELCOL}" ]]; then
  printf 'OTELCOL=%s\n' "${OTELCOL}"
  exit 0
fi
command -v go >/dev/null || die "go not found (scripts/setup.sh installs it)"

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
mkdir -p "$(dirname "${OTELCOL}")"
cat >"${work}/main.go" <<'GO'
// Package main is a minimal OpenTelemetry Collector: OTLP in, debug exporter out.
package main

import (
	"log"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

func components() (otelcol.Factories, error) {
	var err error
	f := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
	if f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory()); err != nil {
		return f, err
	}
	if f.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](debugexporter.NewFactory()); err != nil {
		return f, err
	}
	return f, nil
}

func main() {
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{Command: "otelcol-airlock", Description: "Airlock's test collector", Version: "COLLECTOR_VERSION"},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{envprovider.NewFactory(), fileprovider.NewFactory()},
				DefaultScheme:     "env",
			},
		},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		log.Fatal(err)
	}
}
GO
sed -i "s/COLLECTOR_VERSION/${COLLECTOR_VERSION}/" "${work}/main.go"
start=$(date +%s)
say "building otelcol-airlock ${COLLECTOR_VERSION} (a cold build takes minutes)"
(
  cd "${work}"
  export GOFLAGS="${GOFLAGS:--p=2}" GOTOOLCHAIN=local
  go mod init airlock.local/otelcol >/dev/null 2>&1
  go get \
    "go.opentelemetry.io/collector/otelcol@${COLLECTOR_VERSION}" \
    "go.opentelemetry.io/collector/component@${STABLE_VERSION}" \
    "go.opentelemetry.io/collector/confmap@${STABLE_VERSION}" \
    "go.opentelemetry.io/collector/confmap/provider/envprovider@${STABLE_VERSION}" \
    "go.opentelemetry.io/collector/confmap/provider/fileprovider@${STABLE_VERSION}" \
    "go.opentelemetry.io/collector/exporter@${STABLE_VERSION}" \
    "go.opentelemetry.io/collector/exporter/debugexporter@${COLLECTOR_VERSION}" \
    "go.opentelemetry.io/collector/receiver@${STABLE_VERSION}" \
    "go.opentelemetry.io/collector/receiver/otlpreceiver@${COLLECTOR_VERSION}" \
    "go.opentelemetry.io/collector/service@${COLLECTOR_VERSION}" >&2
  go mod tidy >&2
  go build -trimpath -ldflags='-s -w' -o "${OTELCOL}.tmp" .
)
mv "${OTELCOL}.tmp" "${OTELCOL}"
say "built in $(($(date +%s) - start)) s"
printf 'OTELCOL=%s\n' "${OTELCOL}"
