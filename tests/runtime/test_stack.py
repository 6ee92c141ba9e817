"""The local runtime against the real broker and the real Triton server."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from support_runtime import REPO, free_port_settings

from faceflow.errors import RuntimeStartError
from faceflow.runtime import procs
from faceflow.runtime.settings import DevSettings
from faceflow.runtime.stack import DevStack

pytestmark = pytest.mark.integration


def _jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def _png(mode: str, size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def test_triton_answers_each_frame_with_its_status(triton_url: str) -> None:
    """Bad frames get a status; they never fail the batch."""
    frames = [_jpeg(64, 48), b"not an image", b"", _png("LA"), _png("L"), _png("RGBA"), _jpeg(7, 5)]
    client = grpcclient.InferenceServerClient(triton_url)
    try:
        images = grpcclient.InferInput("IMAGES", [len(frames)], "BYTES")
        images.set_data_from_numpy(np.array(frames, dtype=object))
        result = client.infer("frame_info", [images], client_timeout=30)
    finally:
        client.close()
    assert result.as_numpy("FRAME_STATUS").tolist() == [0, 1, 1, 0, 0, 0, 0]
    assert result.as_numpy("WIDTH").tolist() == [64, 0, 0, 40, 40, 40, 7]
    assert result.as_numpy("HEIGHT").tolist() == [48, 0, 0, 30, 30, 30, 5]


def test_up_again_is_harmless_and_keeps_the_same_processes(runtime: DevSettings) -> None:
    stack = DevStack(runtime)
    before = {s.name: s.pid for s in stack.status()}
    after = {s.name: (s.pid, s.ready) for s in stack.up(quiet=True)}
    if runtime.external_kafka or runtime.external_triton:
        pytest.skip("external components: nothing of ours to compare")
    assert after == {name: (pid, True) for name, pid in before.items()}


def _faceflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceflow", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
        check=False,
    )


def _port_args(s: DevSettings) -> list[str]:
    return [
        f"--home={s.home}",
        f"--kafka-port={s.kafka_port}",
        f"--controller-port={s.controller_port}",
        f"--triton-http-port={s.triton_http_port}",
        f"--triton-grpc-port={s.triton_grpc_port}",
        f"--triton-metrics-port={s.triton_metrics_port}",
    ]


def _env(s: DevSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEFLOW_")}
    env["FACEFLOW_CACHE"] = str(s.cache)
    return env


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and str(os.getpid()) != proc.name:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@pytest.mark.slow
def test_cli_up_status_up_down_leaves_nothing_behind(tmp_path: Path) -> None:
    s = free_port_settings(tmp_path / "home")
    args, env = _port_args(s), _env(s)
    up = _faceflow("dev", "up", *args, env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "kafka: ready" in up.stdout and "triton: ready" in up.stdout
    status = _faceflow("dev", "status", *args, env=env)
    assert status.returncode == 0 and "frame_info=READY" in status.stdout, status.stdout
    again = _faceflow("dev", "up", *args, env=env)
    assert again.returncode == 0 and "already running" in again.stdout, again.stdout
    assert _processes_mentioning(str(s.home)), "expected the runtime's processes to run"

    down = _faceflow("dev", "down", *args, env=env)
    assert down.returncode == 0, down.stderr
    assert "kafka: stopped" in down.stdout and "triton: stopped" in down.stdout
    assert _processes_mentioning(str(s.home)) == []
    for port in (s.kafka_port, s.controller_port, s.triton_http_port, s.triton_grpc_port):
        assert procs.port_is_free(s.host, port), port
    stopped = _faceflow("dev", "status", *args, env=env)
    assert stopped.returncode == 1 and "stopped" in stopped.stdout
    assert "nothing was running" in _faceflow("dev", "down", *args, env=env).stdout


def test_taken_port_gives_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    s = free_port_settings(tmp_path / "home")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", s.kafka_port))
        blocker.listen()
        result = _faceflow("dev", "up", "--only", "kafka", *_port_args(s), env=_env(s))
    assert result.returncode == 2
    assert f"port(s) already in use: client port 127.0.0.1:{s.kafka_port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_broker_that_fails_to_start_reports_its_log(tmp_path: Path) -> None:
    s = free_port_settings(tmp_path / "home")
    data = s.run_dir / "kafka" / "data"
    data.mkdir(parents=True)
    # Storage formatted for another node: the broker refuses to start.
    (data / "meta.properties").write_text("version=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\nnode.id=42\n")
    with pytest.raises(RuntimeStartError, match=r"exited during start-up(.|\n)*node.id"):
        DevStack(s).up(["kafka"], quiet=True)
    assert DevStack(s).down(quiet=True) == []


def test_triton_that_fails_to_start_reports_its_log(tmp_path: Path) -> None:
    repo = tmp_path / "repo" / "broken"
    (repo / "1").mkdir(parents=True)
    (repo / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\ninput [ { name: "X" } ]\n')
    (repo / "1" / "model.py").write_text("raise RuntimeError('model import fails')\n")
    s = free_port_settings(tmp_path / "home", model_repository=tmp_path / "repo")
    with pytest.raises(RuntimeStartError, match=r"Triton exited during start-up(.|\n)*broken"):
        DevStack(s).up(["triton"], quiet=True)
    DevStack(s).down(quiet=True)
    assert _processes_mentioning(str(s.home)) == []
