#!/bin/sh
# Triton readiness: one real inference on face_pipeline (k8s/scripts/gen_probe.py wrote the request).
# /v2/health/ready stays green when a python-backend stub dies; this fails instead. Exit 0 = ready.
#   PROBE_DIR         folder of face_pipeline.{bin,header-length,expect} (default: this script's)
#   TRITON_HTTP_ADDR  host:port of Triton's HTTP endpoint (default 127.0.0.1:8000)
#   PROBE_TIMEOUT_S   curl's time limit in seconds (default 8; keep it below the probe's timeout)
set -u
dir=${PROBE_DIR:-$(dirname "$0")}
addr=${TRITON_HTTP_ADDR:-127.0.0.1:8000}
answer=$(curl -sS --max-time "${PROBE_TIMEOUT_S:-8}" \
  -H "Content-Type: application/octet-stream" \
  -H "Inference-Header-Content-Length: $(cat "$dir/face_pipeline.header-length")" \
  --data-binary "@$dir/face_pipeline.bin" \
  -w '\n%{http_code}' "http://$addr/v2/models/face_pipeline/infer" 2>&1)
status=$?
code=$(printf '%s' "$answer" | tail -n 1)
body=$(printf '%s' "$answer" | sed '$d')
if [ "$status" -ne 0 ] || [ "$code" != 200 ]; then
  echo "triton probe: face_pipeline inference failed (curl exit $status, HTTP $code): $body" | cut -c1-500 >&2
  exit 1
fi
while IFS= read -r expected; do
  [ -z "$expected" ] && continue
  case "$body" in
    *"$expected"*) ;;
    *) echo "triton probe: answer lacks $expected: $body" | cut -c1-500 >&2; exit 1 ;;
  esac
done <"$dir/face_pipeline.expect"
exit 0
