"""A real RTSP server (GStreamer's gst-rtsp-server) killed and restarted mid-stream: ingest reconnects
and ``seq`` continues without a gap, into the real broker."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support_ingest import consume, create_frames_topic, ingest_config, of_stream, running_service, wait_until

from faceflow.ingest.config import PolicyChoice
from faceflow.ingest.runner import SourceState
from faceflow.runtime import procs

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
INSTALL_HINT = "run `make rtsp-server` (apt: python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly)"


def _server_missing() -> str | None:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        done = subprocess.run(
            [SYSTEM_PYTHON, "-c", probe], check=False, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON} cannot run: {exc}"
    return None if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


MISSING = _server_missing()
# `make test` installs the server, so in CI (and whenever FACEFLOW_REQUIRE_RTSP is set) a missing
# server is a failure, never a silent skip; a developer's ad-hoc pytest run may skip with the hint.
REQUIRED = bool(os.environ.get("CI") or os.environ.get("FACEFLOW_REQUIRE_RTSP"))
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        MISSING is not None and not REQUIRED, reason=f"no RTSP server: {MISSING}; {INSTALL_HINT}"
    ),
]


def test_the_rtsp_server_is_installed() -> None:
    assert MISSING is None, f"no RTSP server: {MISSING}; {INSTALL_HINT}"


class RtspServer:
    """One ``rtsp_server.py`` process on a fixed port; :meth:`kill` and :meth:`start` it at will."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line == "ready", f"the RTSP server did not start: {line!r} {self.process.stderr.read()}"  # type: ignore[union-attr]

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    server = RtspServer(procs.free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_rtsp_server_killed_and_restarted(
    kafka_bootstrap: str, unique_name: str, rtsp_server: RtspServer
) -> None:
    topic = create_frames_topic(kafka_bootstrap, unique_name)
    config = ingest_config(
        kafka_bootstrap,
        topic,
        target_fps=5.0,
        read_timeout_s=3.0,
        reconnect_initial_s=0.2,
        reconnect_max_s=1.0,
        max_reconnect_attempts=0,  # a camera is retried for ever
        # This test is about reconnect and seq continuity, not backpressure (test_producer covers
        # drops): block, so a loaded CI machine cannot drop a live frame and open a seq gap.
        queue_policy=PolicyChoice.BLOCK,
    )
    with running_service(config) as service:
        service.start_source(config.source("cam-rtsp", rtsp_server.url))

        def produced() -> int:
            return service.source("cam-rtsp").frames_produced

        wait_until(lambda: produced() >= 5, timeout_s=60, what="frames from the RTSP server")
        rtsp_server.kill()
        wait_until(
            lambda: service.source("cam-rtsp").state is SourceState.RECONNECTING,
            timeout_s=30,
            what="ingest to notice that the server is gone",
        )
        before = produced()
        rtsp_server.start()
        wait_until(lambda: produced() >= before + 5, timeout_s=60, what="frames after the restart")
        status = service.stop_source("cam-rtsp")

    assert status.reconnects >= 1
    assert status.frames_dropped == 0
    assert rtsp_server.url in status.last_error  # why it last reconnected, for the operator
    frames = of_stream(
        consume(
            kafka_bootstrap, topic, until=lambda rs: len(of_stream(rs, "cam-rtsp")) >= status.frames_produced
        ),
        "cam-rtsp",
    )
    seqs = [f.seq for f in frames]
    assert len(seqs) == status.frames_produced
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq must continue across the reconnect"
    assert all((f.width, f.height) == (320, 240) and f.source_uri == rtsp_server.url for f in frames)
