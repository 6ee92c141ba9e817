"""Small, careful process management for the local runtime.

The broker and Triton outlive the ``faceflow dev up`` command that starts them, so each runs in its
own session (process group), writes its output to a log file, and is recorded by pid *and* start
time: a pid that the kernel has reused for another program is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from faceflow.errors import RuntimeStartError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ProcessRecord:
    """A process we started: enough to find it again and to prove it is still the same one."""

    name: str
    pid: int
    start_ticks: int
    log: str

    def is_alive(self) -> bool:
        return process_start_ticks(self.pid) == self.start_ticks


def process_start_ticks(pid: int) -> int:
    """The kernel's start time of ``pid`` (clock ticks since boot), or -1 if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its exit status is left
        return -1
    return int(fields[19])


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP listener could bind ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_is_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free at the time of the call (tests and ``--ports auto``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def require_free_ports(component: str, host: str, ports: Mapping[str, int], hint: str) -> None:
    """Raise a clear error naming every taken port before we start ``component``."""
    taken = [f"{what} {host}:{port}" for what, port in ports.items() if not port_is_free(host, port)]
    if taken:
        raise RuntimeStartError(
            f"cannot start {component}: port(s) already in use: {', '.join(taken)}. "
            f"Another program (or another faceflow runtime) holds them. {hint}"
        )


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessRecord:
    """Start ``argv`` detached in its own session, stdout+stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n==== faceflow: starting {name}: {' '.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise RuntimeStartError(f"cannot start {name}: {argv[0]}: {exc.strerror}") from exc
    ticks = process_start_ticks(proc.pid)
    logger.info("started %s pid=%d log=%s", name, proc.pid, log)
    return ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks, log=str(log))


def wait_until(
    what: str,
    probe: Callable[[], bool],
    *,
    timeout_s: float,
    record: ProcessRecord | None = None,
    interval_s: float = 0.25,
    summarize: Callable[[Path], str] | None = None,
) -> None:
    """Poll ``probe`` until it is true; fail early (with the log's tail) if the process died.

    ``summarize`` picks what of the log to show (default: its last lines).
    """
    summarize = summarize or tail
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if probe():
                return
        except Exception as exc:  # noqa: BLE001 - a probe failure just means "not yet"
            logger.debug("%s not ready yet: %s", what, exc)
        if record is not None and not record.is_alive():
            raise RuntimeStartError(
                f"{what} exited during start-up. From {record.log}:\n{summarize(Path(record.log))}"
            )
        if time.monotonic() >= deadline:
            log_note = f" From {record.log}:\n{summarize(Path(record.log))}" if record else ""
            raise RuntimeStartError(f"{what} was not ready after {timeout_s:.0f} s.{log_note}")
        time.sleep(interval_s)


def stop(record: ProcessRecord, *, grace_s: float = 30.0) -> bool:
    """SIGTERM the process group, wait up to ``grace_s``, then SIGKILL. True if it had been running."""
    if not record.is_alive():
        return False
    logger.info("stopping %s pid=%d", record.name, record.pid)
    _signal_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not record.is_alive():
            _kill_leftovers(record.pid)
            return True
        time.sleep(0.1)
    logger.warning("%s pid=%d ignored SIGTERM for %.0f s: killing it", record.name, record.pid, grace_s)
    _signal_group(record.pid, signal.SIGKILL)
    for _ in range(50):
        _reap(record.pid)
        if not record.is_alive():
            break
        time.sleep(0.1)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    except PermissionError:
        os.kill(pid, sig)


def _kill_leftovers(pgid: int) -> None:
    """Children (Triton's python-backend stubs) may outlive their parent for a moment."""
    for _ in range(30):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child (only when started in this process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
