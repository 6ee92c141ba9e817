"""``--ready-file``: the bound ports of a service on port 0, written once it is ready, removed on stop.

The unit tests drive :func:`run_deployable` with a fake service; the integration tests start each
real deployable as a process on port 0 against the real broker (and Triton for the analyzer), read
the file, and connect to both ports it names.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from faceflow.errors import ConfigError
from faceflow.kafka import admin
from faceflow.service.main import EXIT_FAILURE, EXIT_OK, run_deployable
from faceflow.service.ready_file import READY_FILE_ENV, Endpoints, ReadyFile, ready_file_path

FACEFLOW = str(Path(sys.executable).parent / "faceflow")
ENDPOINTS = Endpoints(grpc_host="127.0.0.1", grpc_port=50001, metrics_host="0.0.0.0", metrics_port=9001)


class Fake:
    """A service that turns ready after ``ready_after`` polls of the main loop."""

    def __init__(self, ready_after: int | None) -> None:
        self.ready_after = ready_after
        self.polls = 0
        self.stops: list[float] = []

    def start(self) -> None:
        pass

    def stop(self, grace_s: float) -> None:
        self.stops.append(grace_s)

    def failure(self) -> BaseException | None:
        self.polls += 1
        return None

    def ready(self) -> bool:
        return self.ready_after is not None and self.polls >= self.ready_after


def _run(
    fake: Fake, path: Path, seen: list[bool], *, ticks: int, each_tick: Callable[[], None] = lambda: None
) -> int:
    """Run ``fake`` with a ready file at ``path`` for ``ticks`` polls (or until it fails), noting in
    ``seen`` whether the file exists at each; ``each_tick`` runs after each note."""

    def until() -> bool:
        seen.append(path.exists())
        each_tick()
        return len(seen) >= ticks

    return run_deployable(
        fake,
        name="fake",
        grace_s=2.0,
        banner=lambda: "up",
        until=until,
        ready=fake.ready,
        endpoints=lambda: ENDPOINTS,
        ready_file=ReadyFile(path, service="fake"),
    )


def test_written_once_ready_with_ports_and_pid_then_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ready.json"
    fake = Fake(ready_after=3)
    seen: list[bool] = []
    contents: list[dict[str, object]] = []
    original = ReadyFile.write

    def spy(self: ReadyFile, endpoints: Endpoints) -> None:
        original(self, endpoints)
        contents.append(json.loads(self.path.read_text()))

    monkeypatch.setattr(ReadyFile, "write", spy)
    assert _run(fake, path, seen, ticks=6) == EXIT_OK
    assert seen == [False, False, True, True, True, True]  # not before ready, then throughout
    assert contents == [
        {
            "service": "fake",
            "pid": os.getpid(),
            "ready": True,
            "grpc_host": "127.0.0.1",
            "grpc_port": 50001,
            "metrics_host": "0.0.0.0",
            "metrics_port": 9001,
        }
    ]
    assert not path.exists() and fake.stops == [2.0]
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file left beside it


def test_never_ready_never_written_and_a_stale_file_is_removed_at_start(tmp_path: Path) -> None:
    path = tmp_path / "ready.json"
    path.write_text('{"ready": true, "pid": 1}\n')  # left by a process killed with SIGKILL
    seen: list[bool] = []
    assert _run(Fake(ready_after=None), path, seen, ticks=4) == EXIT_OK
    assert seen == [False] * 4 and not path.exists()


def test_a_ready_file_that_cannot_be_written_is_a_fatal_failure(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    path = folder / "ready.json"
    fake = Fake(ready_after=2)
    seen: list[bool] = []

    def remove_folder() -> None:
        if fake.polls == 1:
            folder.rmdir()  # the folder disappears after the check at start

    code = _run(fake, path, seen, ticks=10, each_tick=remove_folder)
    assert code == EXIT_FAILURE and fake.stops == [0.0] and len(seen) < 10


@pytest.mark.parametrize(
    ("flag", "env", "expected", "error"),
    [
        (None, {}, None, None),
        ("{tmp}/a.json", {}, "{tmp}/a.json", None),
        (None, {READY_FILE_ENV: "{tmp}/b.json"}, "{tmp}/b.json", None),
        ("{tmp}/a.json", {READY_FILE_ENV: "{tmp}/b.json"}, "{tmp}/a.json", None),
        ("{tmp}/missing/a.json", {}, None, "expected a file in an existing folder"),
        ("{tmp}", {}, None, "expected a file, got a folder"),
    ],
)
def test_ready_file_path(
    flag: str | None, env: dict[str, str], expected: str | None, error: str | None, tmp_path: Path
) -> None:
    def fill(text: str) -> str:
        return text.format(tmp=tmp_path)

    given = Path(fill(flag)) if flag else None
    environ = {k: fill(v) for k, v in env.items()}
    if error:
        with pytest.raises(ConfigError, match=error):
            ready_file_path(given, environ)
    else:
        got = ready_file_path(given, environ)
        assert got == (Path(fill(expected)) if expected else None)


# -- the real deployables on port 0 ----------------------------------------------------------------


@contextmanager
def _service(
    name: str, args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    base = {k: v for k, v in os.environ.items() if k != READY_FILE_ENV}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [FACEFLOW, "--log-level", "INFO", name, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=base | (env or {}),
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _wait_for_file(
    path: Path, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 180
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before ready:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no ready file after {timeout_s} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    ready: dict[str, object] = json.loads(path.read_text())
    return ready


def _check_ports(ready: dict[str, object], *, service: str, pid: int) -> None:
    assert ready["service"] == service and ready["pid"] == pid and ready["ready"] is True
    grpc_port, metrics_port = ready["grpc_port"], ready["metrics_port"]
    assert isinstance(grpc_port, int) and isinstance(metrics_port, int) and grpc_port > 0 and metrics_port > 0
    with grpc.insecure_channel(f"{ready['grpc_host']}:{grpc_port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with urllib.request.urlopen(f"http://{ready['metrics_host']}:{metrics_port}/metrics", timeout=10) as resp:
        # Prometheus' text format (ingest has nothing to report before its first frame)
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")


def _stop(proc: subprocess.Popen[bytes], path: Path, log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()[-3000:]
    assert not path.exists()


def _run_topics(bootstrap: str, prefix: str) -> dict[str, str]:
    states = admin.create_run_topics(bootstrap, prefix, partitions=2)
    return {state.kind: state.name for state in states}


def _on_port_0(bootstrap: str, *flags: str) -> list[str]:
    """A service's flags: the broker, both servers on port 0, then ``flags``."""
    return ["--kafka-bootstrap", bootstrap, "--grpc-port", "0", "--metrics-port", "0", *flags]


def _consumer_args(
    bootstrap: str, triton_url: str, group_id: str, t: dict[str, str], *kinds: str
) -> list[str]:
    """A consumer service's flags (analyzer, aggregator): :func:`_on_port_0`, Triton, its group,
    and ``--<kind>-topic NAME`` for each of ``kinds`` of this test's run topics ``t``."""
    topic_flags = [flag for kind in kinds for flag in (f"--{kind}-topic", t[kind])]
    return _on_port_0(bootstrap, "--triton-url", triton_url, "--group-id", group_id, *topic_flags)


def _check_ready_file(name: str, args: list[str], tmp_path: Path, *, from_env: bool = False) -> str:
    """Start ``faceflow <name> ARGS`` with a ready file (the flag, or the variable with ``from_env``),
    check both ports it names, stop it (the file goes); return its log."""
    path, log = tmp_path / f"{name}.ready.json", tmp_path / f"{name}.log"
    flag, env = ([], {READY_FILE_ENV: str(path)}) if from_env else (["--ready-file", str(path)], None)
    with _service(name, [*args, *flag], log, env=env) as proc:
        ready = _wait_for_file(path, proc, log)
        _check_ports(ready, service=name, pid=proc.pid)
        _stop(proc, path, log)
    return log.read_text()


@pytest.mark.integration
def test_ingest_on_port_0_writes_its_ports(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    t = _run_topics(kafka_bootstrap, unique_name)
    _check_ready_file("ingest", _on_port_0(kafka_bootstrap, "--topic", t["frames"]), tmp_path)


@pytest.mark.integration
def test_aggregator_on_port_0_writes_its_ports(
    kafka_bootstrap: str, triton_url: str, unique_name: str, tmp_path: Path
) -> None:
    t = _run_topics(kafka_bootstrap, unique_name)
    args = [
        *_consumer_args(kafka_bootstrap, triton_url, unique_name, t, "analyses", "faces", "state", "dlq"),
        *("--session-timeout-ms", "6000", "--max-poll-interval-ms", "60000"),
    ]
    text = _check_ready_file("aggregator", args, tmp_path)
    assert "session_timeout_ms=6000" in text and "max_poll_interval_ms=60000" in text  # the flags reach it


@pytest.mark.integration
@pytest.mark.slow
def test_analyzer_on_port_0_writes_its_ports_from_the_env_variable(
    kafka_bootstrap: str, triton_url: str, unique_name: str, tmp_path: Path
) -> None:
    t = _run_topics(kafka_bootstrap, unique_name)
    args = _consumer_args(kafka_bootstrap, triton_url, unique_name, t, "frames", "analyses", "dlq")
    _check_ready_file("analyzer", args, tmp_path, from_env=True)
