# faceflow: the two commands a newcomer needs are `make demo` and `make test`.
# Both create or refresh the venv, install the project, fetch the Kafka broker's jars and the
# tritonserver binary, build what must be built, then run. Both are idempotent.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
BIN    := .cache/bin
BUF    := $(BIN)/buf
BUF_VERSION := v1.75.0
STAMP  := $(VENV)/.faceflow-installed
# The last released wire contract (a buf image of protos/): `make lint` refuses breaking changes to it.
PROTO_BASELINE := protos/releases/v0.1.0.binpb
export FACEFLOW_HOME ?= $(CURDIR)/.faceflow

.PHONY: help setup venv runtime-deps models tools consumer-jars demo test test-fast lint format protos protos-release up down status clean-runtime rtsp-server browser k8s-check weights bench bench-ingest bench-pipeline bench-analyzer bench-tracker bench-schedule bench-identities bench-e2e bench-precision bench-detector-size bench-gpu

help:
	@echo "make demo   - set everything up and run the demo (starts Kafka + Triton locally)"
	@echo "make test   - set everything up and run lint + the whole test suite"
	@echo "make up / down / status - the local runtime (faceflow dev ...)"
	@echo "make protos - regenerate services/faceflow/v1 from protos/"

$(PY):
	@echo "==> creating the virtual environment in $(VENV)"
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "faceflow needs Python 3.11+, found " + sys.version.split()[0] + ": set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

$(STAMP): pyproject.toml | $(PY)
	@echo "==> installing faceflow and its dependencies into $(VENV) (first run downloads torch: a few minutes)"
	$(PIP) install --progress-bar off -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

runtime-deps: venv
	@echo "==> preparing the local runtime (Kafka jars via Maven, tritonserver, Triton's model env)"
	$(VENV)/bin/faceflow dev prepare

# FaceXFormer ONNX + CenterFace ONNX + Triton repositories (cpu, gpu) in build/; idempotent.
# Pass the authors' checkpoint with FACEFLOW_FACEXFORMER_WEIGHTS=/path/to/ckpt.pt (else random-init, flagged).
models: venv
	@echo "==> building model artefacts and Triton repositories (faceflow models build)"
	$(VENV)/bin/faceflow models build

$(BUF):
	@echo "==> installing buf $(BUF_VERSION) with go install into $(BIN)"
	@command -v go >/dev/null || { echo "Go is needed for the dev tools (buf): see README prerequisites"; exit 1; }
	GOBIN=$(CURDIR)/$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

# The real RTSP server that tests/ingest/test_rtsp_reconnect.py kills and restarts: GStreamer's
# gst-rtsp-server, driven by the system python3 (tests/ingest/rtsp_server.py). Installed once with
# apt (root or sudo); a machine that has it is left alone. Under CI a missing server fails the tests.
RTSP_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
RTSP_PROBE := /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" 2>/dev/null

rtsp-server:
	@if $(RTSP_PROBE); then echo "==> RTSP test server (GStreamer gst-rtsp-server): present"; \
	elif ! command -v apt-get >/dev/null; then echo "==> no apt-get: install $(RTSP_PACKAGES) yourself (the RTSP tests skip without them)"; \
	else echo "==> installing the RTSP test server (GStreamer gst-rtsp-server) with apt"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(RTSP_PACKAGES) >/dev/null; fi

# Debian's Chromium: the test that opens report.html in a real headless browser. Installed once with
# apt (root or sudo); a machine that has it is left alone.
browser:
	@if [ -x /usr/bin/chromium ]; then echo "==> headless browser (Debian chromium): present"; \
	elif ! command -v apt-get >/dev/null; then echo "==> no apt-get: install chromium yourself (the report test needs it)"; \
	else echo "==> installing Debian's chromium with apt (the report's browser test)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; fi

OTELCOL  := $(BIN)/otelcol-faceflow
PROMTOOL := $(BIN)/promtool
GO_CONSUMER := $(BIN)/faces-consumer-go

# The Go consumer of the faces topic (franz-go + google.golang.org/protobuf) that
# tests/consumers/test_go_consumer.py runs against the real broker.
$(GO_CONSUMER): tests/consumers/go/go.mod tests/consumers/go/go.sum tests/consumers/go/main.go
	@echo "==> building the Go faces consumer for tests/consumers (tests/consumers/go, about a minute)"
	tests/consumers/go/build.sh $(CURDIR)/$(GO_CONSUMER)

# A minimal OpenTelemetry Collector (OTLP receiver + debug exporter), built with Go: the real
# receiver that tests/service/test_tracing_otlp.py sends one frame's trace to.
$(OTELCOL): tools/otelcol/go.mod tools/otelcol/go.sum tools/otelcol/main.go
	@echo "==> building the OpenTelemetry Collector for the trace tests (tools/otelcol, a minute or two)"
	tools/otelcol/build.sh $(CURDIR)/$(OTELCOL)

# Prometheus's promtool: checks and unit-tests k8s/monitoring's alert rules.
$(PROMTOOL):
	@echo "==> installing promtool with go install (first time: several minutes)"
	k8s/monitoring/check.sh --install-only

tools: $(BUF) $(OTELCOL) $(PROMTOOL) $(GO_CONSUMER) rtsp-server browser

# The Java consumer's jars (protobuf-java, connect-json) for tests/consumers, by Maven, once.
consumer-jars: runtime-deps
	@echo "==> fetching the Java consumer's jars for tests/consumers (Maven, first run only)"
	$(PY) tests/support_consumers.py

setup: venv runtime-deps models tools consumer-jars

lint: venv tools
	@echo "==> lint: ruff, mypy, import contracts, buf lint, generated code up to date"
	$(VENV)/bin/ruff check services tests bench triton_repo k8s/scripts k8s/components k8s/monitoring
	$(VENV)/bin/ruff format --check services tests bench triton_repo k8s/scripts k8s/components k8s/monitoring
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(BUF) lint
	$(BUF) breaking --against $(PROTO_BASELINE)
	$(PY) -m faceflow.protogen --check

format: venv
	$(VENV)/bin/ruff format services tests bench triton_repo k8s/scripts k8s/components k8s/monitoring
	$(VENV)/bin/ruff check --fix services tests bench triton_repo k8s/scripts k8s/components k8s/monitoring

protos: venv
	$(PY) -m faceflow.protogen

# The released wire contract that `make lint` holds protos/ to (`buf breaking`). At a release that
# may break it on purpose (a new major package), write the new baseline: make protos-release VERSION=0.2.0
protos-release: tools
	@test -n "$(VERSION)" || { echo "usage: make protos-release VERSION=x.y.z"; exit 2; }
	$(BUF) build -o protos/releases/v$(VERSION).binpb
	@echo "==> now set PROTO_BASELINE in the Makefile to protos/releases/v$(VERSION).binpb"

demo: setup
	@echo "==> demo"
	$(VENV)/bin/faceflow demo

test: setup lint
	@echo "==> tests (unit + real Kafka/Triton integration + slow)"
	$(PY) -m pytest

# The pipeline benchmark's baseline is the authors' style: MTCNN from facenet-pytorch, which declares
# torch<2.3 / numpy<2 but runs with --no-deps (see bench/README.md).
bench-pipeline: venv runtime-deps models
	$(PIP) install --quiet --no-deps facenet-pytorch==2.6.0 requests
	$(PY) bench/pipeline.py --quick

bench: bench-ingest bench-pipeline bench-analyzer bench-tracker bench-schedule bench-identities bench-e2e

bench-precision: venv models
	@echo "==> FaceXFormer int8 vs fp32: latency and per-head agreement (bench/results/precision.json)"
	$(PY) bench/precision.py --quick

bench-detector-size: venv
	@echo "==> detector input size: recall on the real-footage set vs time (bench/results/detector_size.json)"
	$(PY) bench/detector_size.py --quick

bench-e2e: venv runtime-deps models
	@echo "==> end-to-end benchmark: faceflow run vs the same models in one process (bench/results/e2e.json)"
	$(PY) bench/e2e.py --quick

bench-analyzer: venv runtime-deps models
	@echo "==> analyzer benchmark: frames/s topic to topic vs direct face_pipeline calls (bench/results/analyzer.json)"
	$(PY) bench/analyzer.py --quick

bench-tracker: venv
	$(PY) bench/tracker.py --quick

bench-schedule: venv runtime-deps models
	$(PY) bench/schedule.py --quick

# Named recall, false names, identities per person... on eval/manifest.json (the demo clip until it
# exists), the naming threshold swept offline over the run's analyses (bench/results/identities.json).
bench-identities: venv runtime-deps models
	$(PY) bench/identities.py --quick

# Only on a machine with a CUDA GPU (it needs nothing but PyTorch there): FaceXFormer fp32 vs fp16.
bench-gpu: venv
	$(PY) bench/facexformer_gpu.py

# The Kubernetes manifests: kustomize build every overlay, validate (Kubernetes + Strimzi + KEDA
# schemas), lint (kube-score). `make test` runs the same through tests/k8s.
k8s-check: venv
	k8s/check.sh

# The authors' FaceXFormer checkpoint from its model hub (needs the network once); `make models`
# then builds with it.
weights: venv
	$(VENV)/bin/faceflow models fetch

bench-ingest: venv runtime-deps
	@echo "==> ingest benchmark: frames/s with Kafka vs the same loop without (bench/results/ingest.json)"
	$(PY) bench/ingest.py

test-fast: venv
	$(PY) -m pytest -m "not integration and not slow"

up: runtime-deps models
	$(VENV)/bin/faceflow dev up

down: venv
	$(VENV)/bin/faceflow dev down

status: venv
	$(VENV)/bin/faceflow dev status

clean-runtime: down
	rm -rf $(FACEFLOW_HOME)/run
