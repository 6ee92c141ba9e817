#!/usr/bin/env bash
# k8s/monitoring/check.sh: lint the Prometheus rules, run their unit tests, parse the dashboard's PromQL.
#
#   k8s/monitoring/check.sh                 # everything (installs promtool into .cache/bin first)
#   k8s/monitoring/check.sh --install-only  # only install promtool (what `make tools` runs)
#
# Idempotent and offline once promtool is installed (Go module proxy, first run only, a few minutes:
# it builds github.com/prometheus/prometheus/cmd/promtool). A promtool already in .cache/bin with its
# version stamp is left alone.
#   promtool check rules alerts.yaml        the rule file: syntax, PromQL, templates, duplicates
#   promtool test rules alerts_test.yaml    every alert fires on synthetic series, and stays quiet
#   promtool check rules <dashboard>        every panel and variable query, as recording rules
#                                           (dashboard_queries.py replaces Grafana's variables)
# Exit status: 0 clean, 1 a check failed, 2 promtool could not be installed.
set -euo pipefail

PROMTOOL_VERSION=v0.316.0

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=$ROOT/.cache/bin
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$BIN"

say() { echo "==> $*"; }
die() { echo "k8s/monitoring/check.sh: $*" >&2; exit 2; }

install_promtool() {
  local stamp=$BIN/.promtool-$PROMTOOL_VERSION
  if [ -x "$BIN/promtool" ] && [ -f "$stamp" ]; then return; fi
  command -v go >/dev/null || die "Go is needed to install promtool (README prerequisites)"
  say "installing promtool $PROMTOOL_VERSION with go install into $BIN (first run only, a few minutes)"
  GOBIN=$BIN GOFLAGS=-buildvcs=false nice go install \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" \
    || die "go install github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION failed"
  rm -f "$BIN"/.promtool-*
  touch "$stamp"
}

install_promtool
[ "${1:-}" = "--install-only" ] && exit 0

failed=0
say "promtool check rules k8s/monitoring/alerts.yaml"
"$BIN/promtool" check rules --lint=all --lint-fatal "$HERE/alerts.yaml" || failed=1

say "promtool test rules k8s/monitoring/alerts_test.yaml"
"$BIN/promtool" test rules "$HERE/alerts_test.yaml" || failed=1

say "promtool check rules on every query of k8s/monitoring/dashboard.json"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if "$PY" "$HERE/dashboard_queries.py" >"$tmp/dashboard-rules.yaml"; then
  "$BIN/promtool" check rules --lint=all --lint-fatal "$tmp/dashboard-rules.yaml" || failed=1
else
  failed=1
fi

if [ "$failed" -ne 0 ]; then
  echo "k8s/monitoring/check.sh: FAILED" >&2
  exit 1
fi
say "k8s/monitoring/check.sh: all checks passed"
