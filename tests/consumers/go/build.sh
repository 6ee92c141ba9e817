#!/usr/bin/env bash
# Builds tests/consumers/go (the Go consumer of the faces topic: franz-go + google.golang.org/protobuf)
# into .cache/bin/faces-consumer-go, or into the path given as $1. Idempotent: does nothing when the
# binary is newer than go.mod, go.sum and main.go (and then needs no Go at all). The modules come
# from the Go module proxy at the versions go.sum pins, or from the module cache when it has them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="${1:-$repo/.cache/bin/faces-consumer-go}"

if [[ -x "$out" && "$out" -nt "$here/go.mod" && "$out" -nt "$here/go.sum" && "$out" -nt "$here/main.go" ]]; then
  echo "==> Go faces consumer (tests/consumers/go): $out is up to date"
  exit 0
fi

command -v go >/dev/null || { echo "faces-consumer-go: Go is needed to build tests/consumers/go (see README prerequisites)" >&2; exit 1; }

echo "==> building the Go faces consumer (tests/consumers/go) into $out with go build"
mkdir -p "$(dirname "$out")"
started=$SECONDS
# -trimpath, -buildvcs=false: the binary does not depend on the state of the work tree (nor need git).
# -mod=readonly: go.sum is the pin; a build never rewrites go.mod or go.sum.
(cd "$here" && go build -mod=readonly -trimpath -buildvcs=false -o "$out" .)
echo "==> built $out in $((SECONDS - started)) s"
