"""Triton's readiness probe (k8s/base/triton/probe/probe.sh) against a real Triton server.

The probe must pass on a healthy server and fail where Triton's own ``/v2/health/ready`` does not:
after a python-backend stub died. A private server (triton only, free ports) is started because
this test kills one of its stubs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support_runtime import free_port_settings

from faceflow.runtime.settings import DevSettings
from faceflow.runtime.stack import DevStack, require_ready

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "k8s" / "base" / "triton" / "probe" / "probe.sh"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def probe(http_addr: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRITON_HTTP_ADDR": http_addr, "PROBE_TIMEOUT_S": "20"}
    return subprocess.run(
        ["/bin/sh", str(PROBE)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevSettings]:
    # Always a private server, even where FACEFLOW_TEST_TRITON_URL points at a shared one.
    settings = replace(free_port_settings(tmp_path_factory.mktemp("triton-probe-home")), external_triton=None)
    stack = DevStack(settings)
    try:
        require_ready(stack.up(["triton"], quiet=True))
        yield settings
    finally:
        stack.down(quiet=True)


def stub_pid(settings: DevSettings, model: str) -> int:
    """The pid of this server's python-backend stub that runs ``model``."""
    marker = f"/{model}/1/model.py"
    backends = str(settings.run_dir / "triton" / "backends")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if args and args[0].startswith(backends) and any(a.endswith(marker) for a in args):
            return int(proc.name)
    raise AssertionError(f"no python-backend stub of {model} under {backends}")


def ready(http_addr: str) -> int:
    with urllib.request.urlopen(f"http://{http_addr}/v2/health/ready", timeout=5) as resp:
        return int(resp.status)


def test_probe_passes_then_catches_a_dead_stub(triton: DevSettings) -> None:
    http = triton.triton_http_url
    assert http is not None
    healthy = probe(http)
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stderr == ""

    os.kill(stub_pid(triton, "face_embedder"), signal.SIGKILL)
    assert ready(http) == 200  # Triton itself still says ready (the upstream issue)
    dead = probe(http)
    assert dead.returncode == 1
    assert "triton probe: face_pipeline inference failed (curl exit 0, HTTP 500)" in dead.stderr
    assert "face_embedder" in dead.stderr and "is not healthy" in dead.stderr


def test_probe_fails_without_a_server(tmp_path: Path) -> None:
    result = probe("127.0.0.1:9")  # discard port: nothing answers
    assert result.returncode == 1
    assert "triton probe: face_pipeline inference failed (curl exit 7, HTTP 000)" in result.stderr


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            200,
            b'{"outputs":[{"name":"FRAME_STATUS","datatype":"INT32","shape":[1],"data":[1]}]}',
            "answer lacks",
        ),
        (400, b'{"error":"unexpected inference input IMAGES"}', "HTTP 400"),
    ],
)
def test_probe_checks_the_answer(status: int, body: bytes, message: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        result = probe(f"127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert message in result.stderr
