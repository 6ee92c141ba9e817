#!/usr/bin/env bash
# k8s/check.sh: render every overlay, validate it against Kubernetes' and the CRDs' schemas, lint it.
#
#   k8s/check.sh                 # everything (installs missing tools into .cache/bin first)
#   k8s/check.sh --render-only   # only `kustomize build` each overlay into .cache/k8s/rendered/
#
# Idempotent and offline once the tools are installed (Go module proxy + PyPI, first run only):
#   kustomize      sigs.k8s.io/kustomize/kustomize/v5   (go install)
#   kubeconform    github.com/yannh/kubeconform         (go install)
#   kube-score     github.com/zegl/kube-score           (go install)
#   Kubernetes JSON schemas: the kubernetes-validate wheel from PyPI (only its schema files are used)
#   CRD schemas (Strimzi, KEDA): committed in k8s/schemas/ (see its README)
# Exit status: 0 clean, 1 a check failed, 2 a tool could not be installed.
set -euo pipefail

KUSTOMIZE_VERSION=v5.8.2      # v5.8.3 needs Go 1.27
KUBECONFORM_VERSION=v0.8.0
KUBE_SCORE_VERSION=v1.20.0
KUBERNETES_VALIDATE_VERSION=1.37.0
# Validate against the oldest Kubernetes we support (the native preStop sleep action is on by
# default from 1.30; 1.33 is the oldest release still patched) and the newest with schemas.
KUBE_VERSIONS="1.33.0 1.37.0"
OVERLAYS="dev prod prod-canary"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/.cache/bin
CACHE=$ROOT/.cache/k8s
RENDERED=$CACHE/rendered
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$BIN" "$RENDERED"

say() { echo "==> $*"; }
die() { echo "k8s/check.sh: $*" >&2; exit 2; }

go_tool() { # name module version
  local name=$1 module=$2 version=$3 stamp=$BIN/.$1-$3
  if [ -x "$BIN/$name" ] && [ -f "$stamp" ]; then return; fi
  command -v go >/dev/null || die "Go is needed to install $name (README prerequisites)"
  say "installing $name $version with go install into $BIN (first run only)"
  GOBIN=$BIN GOFLAGS=-buildvcs=false nice go install "$module@$version" || die "go install $module@$version failed"
  touch "$stamp"
}

k8s_schemas() {
  local dir=$CACHE/kubernetes-json-schema stamp=$CACHE/.kubernetes-validate-$KUBERNETES_VALIDATE_VERSION-${KUBE_VERSIONS// /-}
  if [ -f "$stamp" ]; then return; fi
  say "fetching Kubernetes JSON schemas (kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI)"
  rm -rf "$CACHE/wheel" "$dir"
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps -d "$CACHE/wheel" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" || die "pip download kubernetes-validate failed"
  # shellcheck disable=SC2086 # the versions are meant to split into arguments
  "$PY" - "$CACHE/wheel" "$dir" $KUBE_VERSIONS <<'EOF'
import sys, zipfile
from pathlib import Path
wheel = next(Path(sys.argv[1]).glob("kubernetes_validate-*.whl"))
out = Path(sys.argv[2])
wanted = tuple(f"kubernetes_validate/kubernetes-json-schema/v{v}-local-strict/" for v in sys.argv[3:])
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if n.startswith(wanted) and n.endswith(".json")]
    missing = [w for w in wanted if not any(n.startswith(w) for n in names)]
    if missing:
        sys.exit(f"{wheel.name} has no schemas for {missing}")
    for name in names:
        target = out / name.split("kubernetes-json-schema/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        # The "local" schemas point at /api/_definitions.json (a web root); make that a file URL.
        base = f'"{(target.parent / "_definitions.json").resolve().as_uri()}#'.encode()
        target.write_bytes(zf.read(name).replace(b'"/api/_definitions.json#', base))
print(f"  {len(names)} schema files for Kubernetes {', '.join(sys.argv[3:])}")
EOF
  touch "$stamp"
}

render() {
  go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
  for overlay in $OVERLAYS; do
    "$BIN/kustomize" build "$ROOT/k8s/overlays/$overlay" >"$RENDERED/$overlay.yaml"
    say "rendered $overlay: $(grep -c '^kind:' "$RENDERED/$overlay.yaml") objects -> ${RENDERED#"$ROOT"/}/$overlay.yaml"
  done
}

say "kustomize build of every overlay ($OVERLAYS)"
render
[ "${1:-}" = "--render-only" ] && exit 0

go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
go_tool kube-score github.com/zegl/kube-score/cmd/kube-score "$KUBE_SCORE_VERSION"
k8s_schemas

failed=0
for version in $KUBE_VERSIONS; do
  say "kubeconform: schemas of Kubernetes $version + Strimzi/KEDA CRDs (k8s/schemas), strict"
  for overlay in $OVERLAYS; do
    # -strict: unknown fields fail; no -ignore-missing-schemas: a kind without a schema fails too.
    if ! "$BIN/kubeconform" -strict -summary -kubernetes-version "$version" \
      -schema-location "$CACHE/kubernetes-json-schema/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
      -schema-location "$ROOT/k8s/schemas/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
      "$RENDERED/$overlay.yaml"; then
      failed=1
    fi
  done
done

# kube-score, with its optional seccomp check on. Exceptions live next to the objects they concern
# as `kube-score/ignore` annotations, each with its reason in a comment beside it (overlays' patches).
for overlay in $OVERLAYS; do
  say "kube-score $KUBE_SCORE_VERSION: $overlay"
  if ! "$BIN/kube-score" score --output-format ci --kubernetes-version v1.33 \
    --enable-optional-test container-seccomp-profile \
    "$RENDERED/$overlay.yaml" >"$CACHE/kube-score-$overlay.txt"; then
    grep -E '^\[(CRITICAL|WARNING)\]' "$CACHE/kube-score-$overlay.txt" || cat "$CACHE/kube-score-$overlay.txt"
    failed=1
  elif grep -qE '^\[(CRITICAL|WARNING)\]' "$CACHE/kube-score-$overlay.txt"; then
    grep -E '^\[(CRITICAL|WARNING)\]' "$CACHE/kube-score-$overlay.txt"
    failed=1
  else
    echo "  clean ($(grep -c '^\[OK\]' "$CACHE/kube-score-$overlay.txt") checks OK)"
  fi
done

say "generated files up to date (topics from topics.py, the canary from the base)"
"$PY" "$ROOT/k8s/scripts/gen_topics.py" --check || failed=1
"$PY" "$ROOT/k8s/scripts/gen_canary.py" --check || failed=1

if [ "$failed" -ne 0 ]; then
  echo "k8s/check.sh: FAILED" >&2
  exit 1
fi
say "k8s/check.sh: all checks passed"
