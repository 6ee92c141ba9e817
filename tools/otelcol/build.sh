#!/usr/bin/env bash
# Builds tools/otelcol (a minimal OpenTelemetry Collector: OTLP receiver, debug exporter) into
# .cache/bin/otelcol-faceflow, or into the path given as $1. Idempotent: does nothing when the
# binary is newer than go.mod, go.sum and main.go. The modules come from the Go module proxy at
# the versions go.sum pins (a cold build takes a few minutes on two cores).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/.cache/bin/otelcol-faceflow}"

command -v go >/dev/null || { echo "otelcol-faceflow: Go is needed to build tools/otelcol (see README prerequisites)" >&2; exit 1; }

if [[ -x "$out" && "$out" -nt "$here/go.mod" && "$out" -nt "$here/go.sum" && "$out" -nt "$here/main.go" ]]; then
  echo "==> test collector (tools/otelcol): $out is up to date"
  exit 0
fi

echo "==> building the test collector (tools/otelcol) into $out with go build"
mkdir -p "$(dirname "$out")"
started=$SECONDS
# -buildvcs=false: the binary does not depend on the state of the work tree (nor need git).
(cd "$here" && go build -trimpath -buildvcs=false -o "$out" .)
echo "==> built $out in $((SECONDS - started)) s"
