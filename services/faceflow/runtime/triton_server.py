"""A real Triton server for the local runtime: the ``tritonserver`` that ``nvidia-pytriton`` bundles.

The wheel is unpacked once into the cache folder with ``pip install --no-deps --target`` (only the
binary and its python backend are needed; its ``numpy<2`` pin must not constrain our venv).
Facts that shape how its python backend is started (measured here):

* the backend stub embeds CPython in *isolated* mode, so PYTHONPATH is ignored; it derives its
  prefix from the ``python3`` it finds on PATH, so the model environment's ``bin`` goes first;
* the stub was built against numpy 1's C ABI and corrupts BYTES tensors under numpy 2, so the
  models run in their own small venv (``triton-env.txt``: numpy<2, onnxruntime, pillow, dlib),
  the way a production Triton image carries its own packages; our source folder is on its path;
* the stub links ``libpython3.X.so``; LD_LIBRARY_PATH points at the running interpreter's.

Readiness is judged by a real inference on ``frame_info``: a dead python stub is not reflected by
``/v2/health/ready`` (a known upstream issue).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import sys
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from faceflow.errors import RuntimeStartError
from faceflow.runtime import procs
from faceflow.runtime.settings import DevSettings

logger = logging.getLogger(__name__)

PYTRITON_VERSION = "0.7.0"
PROBE_MODEL = "frame_info"
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class TritonInstall:
    root: Path

    @property
    def server_dir(self) -> Path:
        return self.root / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        return self.server_dir / "bin" / "tritonserver"

    def stub(self) -> Path:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.server_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise RuntimeStartError(
                f"nvidia-pytriton {PYTRITON_VERSION} has no python-backend stub for Python {version} "
                f"(looked for {stub}); use Python 3.8-3.13"
            )
        return stub


def ensure_tritonserver(cache: Path, *, say: Callable[[str], None] = lambda _msg: None) -> TritonInstall:
    """Unpack the ``nvidia-pytriton`` wheel into ``cache`` unless already there (idempotent)."""
    install = TritonInstall(cache / f"pytriton-{PYTRITON_VERSION}")
    if install.binary.exists():
        return install
    say(f"  installing the tritonserver binary from nvidia-pytriton=={PYTRITON_VERSION} into {install.root}")
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--target",
        str(install.root),
        f"nvidia-pytriton=={PYTRITON_VERSION}",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
    if result.returncode != 0 or not install.binary.exists():
        raise RuntimeStartError(
            f"could not install nvidia-pytriton=={PYTRITON_VERSION} "
            f"(needs PyPI once; exit {result.returncode}):\n"
            + "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        )
    return install


def ensure_model_env(cache: Path, *, say: Callable[[str], None] = lambda _msg: None) -> Path:
    """Create (once) the venv Triton's python models run in; returns its ``bin`` folder."""
    import faceflow  # noqa: PLC0415

    requirements = (resources.files("faceflow.runtime") / "triton-env.txt").read_text()
    source_root = Path(faceflow.__file__).resolve().parents[1]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    env_dir = cache / f"triton-model-env-py{version}"
    digest = hashlib.sha256((requirements + str(source_root)).encode()).hexdigest()
    marker = env_dir / "faceflow-complete.sha256"
    bindir = env_dir / "bin"
    if marker.exists() and marker.read_text().strip() == digest and (bindir / "python3").exists():
        return bindir
    say(f"  creating the environment Triton's python models run in ({env_dir}, first run only)")
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(env_dir)],
        [
            str(bindir / "python3"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(_write(cache / f"{env_dir.name}.requirements.txt", requirements)),
        ],
    ]
    for argv in steps:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
        if result.returncode != 0:
            raise RuntimeStartError(
                f"creating Triton's model environment failed at `{' '.join(argv[:4])} ...` "
                f"(exit {result.returncode}; needs PyPI once):\n"
                + "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            )
    site = env_dir / "lib" / f"python{version}" / "site-packages"
    (site / "faceflow-source.pth").write_text(f"{source_root}\n")
    marker.write_text(digest + "\n")
    return bindir


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def backend_dir(install: TritonInstall, run_dir: Path) -> Path:
    """A backend folder of symlinks: the wheel's python backend with the stub for this Python."""
    root = run_dir / "triton" / "backends"
    python = root / "python"
    python.mkdir(parents=True, exist_ok=True)
    links = {
        "libtriton_python.so": install.server_dir / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": install.server_dir
        / "backends"
        / "python"
        / "triton_python_backend_utils.py",
        "triton_python_backend_stub": install.stub(),
    }
    for name, target in links.items():
        link = python / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return root


def server_env(model_env_bin: Path) -> dict[str, str]:
    """Environment under which the python-backend stub embeds this Python and the model venv."""
    env = dict(os.environ)
    env["PATH"] = str(model_env_bin) + os.pathsep + env.get("PATH", "")
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    env.pop("PYTHONPATH", None)  # ignored by the isolated stub anyway; keep the picture honest
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))
    return env


def start(settings: DevSettings, install: TritonInstall, model_env_bin: Path) -> procs.ProcessRecord:
    repo = settings.model_repository
    if not repo.is_dir():
        raise RuntimeStartError(
            f"the Triton model repository {repo} does not exist: build it with `faceflow models build` "
            "(`make demo` / `make test` do), run from the repository root, or set FACEFLOW_TRITON_REPOSITORY"
        )
    procs.require_free_ports(
        "Triton",
        settings.host,
        {
            "HTTP port": settings.triton_http_port,
            "gRPC port": settings.triton_grpc_port,
            "metrics port": settings.triton_metrics_port,
        },
        "Set FACEFLOW_DEV_TRITON_HTTP_PORT / _GRPC_PORT / _METRICS_PORT to free ports, or point "
        "FACEFLOW_TRITON_URL at the Triton that is already running.",
    )
    backends = backend_dir(install, settings.run_dir)
    argv = [
        str(install.binary),
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        f"--http-address={settings.host}",
        f"--http-port={settings.triton_http_port}",
        f"--grpc-address={settings.host}",
        f"--grpc-port={settings.triton_grpc_port}",
        f"--metrics-address={settings.host}",
        f"--metrics-port={settings.triton_metrics_port}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--exit-timeout-secs=10",
        "--log-verbose=0",
    ]
    return procs.spawn(
        "triton", argv, log=settings.run_dir / "triton" / "triton.log", env=server_env(model_env_bin)
    )


def summarize_log(path: Path, lines: int = 15) -> str:
    """Triton's error lines and failed-model rows (its option table would drown them in a tail)."""
    text = procs.tail(path, lines=400)
    picked = [
        line
        for line in text.splitlines()
        if line.startswith("E")
        or "UNAVAILABLE" in line
        or line.startswith(("error:", "terminate", "  what()"))
    ]
    return "\n".join(picked[-lines:]) if picked else procs.tail(path, lines)


def http_ready(http_url: str, *, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{http_url}/v2/health/ready", timeout=timeout_s) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def probe_inference(grpc_url: str, *, timeout_s: float = 20.0) -> dict[str, int]:
    """One real inference on ``frame_info`` with a tiny JPEG: proves the python stubs run."""
    import tritonclient.grpc as grpcclient  # noqa: PLC0415 - heavy import, only when probing
    from PIL import Image  # noqa: PLC0415

    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (128, 64, 32)).save(buf, format="JPEG")
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        images = grpcclient.InferInput("IMAGES", [1], "BYTES")
        images.set_data_from_numpy(np.array([buf.getvalue()], dtype=object))
        result = client.infer(PROBE_MODEL, [images], client_timeout=timeout_s)
        status = result.as_numpy("FRAME_STATUS")
        height = result.as_numpy("HEIGHT")
        width = result.as_numpy("WIDTH")
    finally:
        client.close()
    if status is None or height is None or width is None:
        raise RuntimeStartError(f"{PROBE_MODEL} answered without its outputs")
    answer = {"status": int(status[0]), "height": int(height[0]), "width": int(width[0])}
    if answer != {"status": 0, "height": 24, "width": 32}:
        raise RuntimeStartError(f"{PROBE_MODEL} answered {answer}, expected a 32x24 image with status 0")
    return answer


def model_index(http_url: str) -> list[dict[str, str]]:
    """The repository index (name, version, state) from the HTTP API."""
    import json  # noqa: PLC0415

    req = urllib.request.Request(f"http://{http_url}/v2/repository/index", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
        index: list[dict[str, str]] = json.loads(resp.read())
    return index
