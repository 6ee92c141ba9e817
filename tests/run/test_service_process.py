"""A service process of ``faceflow run`` is judged by its own log, never by an earlier run's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from faceflow.run.orchestrate import RunError, ServiceProcess


def test_wait_for_ignores_the_log_of_an_earlier_run_in_the_same_place(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "aggregator.log"
    log.parent.mkdir()
    log.write_text("faceflow aggregator: gRPC 127.0.0.1:43079; metrics\n")  # last run's, long dead
    script = "import time; time.sleep(0.3); print('faceflow aggregator: gRPC 127.0.0.1:50123;', flush=True)"
    service = ServiceProcess("aggregator", [sys.executable, "-c", script], log, dict(os.environ))
    try:
        match = service.wait_for(r"gRPC ([\d.]+:\d+);", 30)
        assert match.group(1) == "127.0.0.1:50123"
    finally:
        assert service.stop() == 0
    assert "43079" not in log.read_text()


def test_a_service_that_exits_while_starting_is_one_clear_error(tmp_path: Path) -> None:
    script = "import sys; print('ERROR: the port is taken'); sys.exit(2)"
    argv = [sys.executable, "-c", script]
    service = ServiceProcess("ingest", argv, tmp_path / "ingest.log", dict(os.environ))
    with pytest.raises(RunError, match=r"ingest exited with 2 while starting: ERROR: the port is taken"):
        service.wait_for(r"never printed", 30)
    service.stop()
