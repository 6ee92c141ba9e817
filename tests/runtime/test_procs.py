from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from faceflow.errors import RuntimeStartError
from faceflow.runtime import procs


def test_spawn_records_and_stop_ends_the_whole_group(tmp_path: Path) -> None:
    # A parent that starts a child in the same group, both sleeping: stop must end both.
    script = (
        "import subprocess,sys,time; "
        "subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); "
        "print('up', flush=True); time.sleep(60)"
    )
    rec = procs.spawn("sleeper", [sys.executable, "-c", script], log=tmp_path / "log" / "sleeper.log")
    procs.wait_until("sleeper", lambda: "up" in procs.tail(Path(rec.log)), timeout_s=20, record=rec)
    assert rec.is_alive()
    assert procs.stop(rec, grace_s=5)
    assert not rec.is_alive()
    assert procs.stop(rec) is False  # stopping twice is harmless


def test_reused_pid_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    rec = procs.spawn(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], log=tmp_path / "s.log"
    )
    try:
        impostor = procs.ProcessRecord(name="x", pid=rec.pid, start_ticks=rec.start_ticks + 1, log=rec.log)
        assert rec.is_alive() and not impostor.is_alive()
    finally:
        procs.stop(rec, grace_s=5)


def test_wait_until_reports_an_early_exit_with_the_log(tmp_path: Path) -> None:
    rec = procs.spawn(
        "crasher",
        [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"],
        log=tmp_path / "c.log",
    )
    with pytest.raises(RuntimeStartError, match=r"crasher exited during start-up(.|\n)*boom: bad config"):
        procs.wait_until("crasher", lambda: False, timeout_s=20, record=rec)


def test_wait_until_times_out_clearly() -> None:
    start = time.monotonic()
    with pytest.raises(RuntimeStartError, match="was not ready after 1 s"):
        procs.wait_until("nothing", lambda: False, timeout_s=1, interval_s=0.1)
    assert time.monotonic() - start < 5


def test_spawn_of_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeStartError, match="cannot start ghost"):
        procs.spawn("ghost", [str(tmp_path / "no-such-binary")], log=tmp_path / "g.log")


def test_taken_port_is_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not procs.port_is_free("127.0.0.1", port)
        assert procs.port_is_open("127.0.0.1", port)
        with pytest.raises(RuntimeStartError, match=f"client port 127.0.0.1:{port}"):
            procs.require_free_ports("x", "127.0.0.1", {"client port": port}, "hint")


def test_tail_of_missing_log_says_so(tmp_path: Path) -> None:
    assert "no log at" in procs.tail(tmp_path / "missing.log")
