"""The main loop every deployable shares: signals, a stop event, the grace period, exit codes.

:func:`run_service` starts a :class:`Runnable`, then waits until one of these happens:

* SIGTERM or SIGINT: the service is stopped with its grace period (it reports NOT_SERVING first,
  finishes or hands back its work, commits what is done) and the process exits 0;
* the service reports a fatal failure (:meth:`Runnable.failure`, e.g. its consumer thread died):
  it is stopped without grace and the process exits :data:`EXIT_FAILURE`, with the reason logged
  and printed;
* ``until()`` becomes true (files ended) or ``duration_s`` passed: stopped with grace, exit 0.

Once ``ready()`` first holds (the service's health reports SERVING), ``on_ready`` runs once: the
deployables write their ready file then (:mod:`faceflow.service.ready_file`). A failure there is
a fatal failure too, since whoever waits for the file would wait forever.

A failure to start (a port taken, a broker missing) propagates as a
:class:`~faceflow.errors.FaceflowError`, which the CLI prints as one line (exit 2).

:func:`run_deployable` is what each service's CLI calls: tracing for ``faceflow-<name>``, a
one-line banner once started, a one-line "stopping" notice, the ready file if asked for, then
:func:`run_service`. :func:`run_served` wires it the way all three deployables need: ready once
their gRPC server reports SERVING, the ready file naming the ports they bound.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    from faceflow.service.grpc_server import GrpcServer
    from faceflow.service.ready_file import Endpoints, ReadyFile

logger = logging.getLogger(__name__)

EXIT_OK = 0
#: A fatal failure while running (not at start-up, which the CLI reports with exit 2).
EXIT_FAILURE = 1
POLL_S = 0.2


class Runnable(Protocol):
    """What :func:`run_service` runs."""

    def start(self) -> None:
        """Start serving; raise a FaceflowError when that is impossible."""
        ...

    def stop(self, grace_s: float) -> None:
        """Stop within ``grace_s`` seconds (idempotent)."""
        ...

    def failure(self) -> BaseException | None:
        """A fatal error from a background thread, or None while healthy."""
        ...


class StopReason:
    SIGNAL = "signal"
    DONE = "done"
    DURATION = "duration"
    FAILURE = "failure"


_WHY = {StopReason.DONE: "all sources done", StopReason.DURATION: "duration reached"}


def run_deployable(
    service: Runnable,
    *,
    name: str,
    grace_s: float,
    banner: Callable[[], str],
    duration_s: float | None = None,
    until: Callable[[], bool] | None = None,
    ready: Callable[[], bool] | None = None,
    endpoints: Callable[[], Endpoints] | None = None,
    ready_file: ReadyFile | None = None,
) -> int:
    """Run a service from its CLI: tracing set up and shut down, ``faceflow <name>: <banner()>``
    printed once started, ``faceflow <name>: stopping (<why>; grace N s)`` when it stops.

    With ``ready_file``, ``endpoints()`` is written there once ``ready()`` holds, and the file is
    removed when the service starts stopping (a stale one is removed before it starts).
    """
    from faceflow.service.tracing import setup_tracing, shutdown_tracing  # noqa: PLC0415 - fast --help

    if ready_file is not None and endpoints is None:
        raise ValueError("ready_file needs endpoints")
    if ready_file is not None:
        ready_file.clear_stale()
    setup_tracing(f"faceflow-{name}")

    def started() -> None:
        print(f"faceflow {name}: {banner()}", flush=True)  # noqa: T201 - the CLI's user-facing output

    def stopping(why: str) -> None:
        if ready_file is not None:
            ready_file.remove()
        why = _WHY.get(why, why)
        print(f"faceflow {name}: stopping ({why}; grace {grace_s:g} s)", flush=True)  # noqa: T201

    def announce() -> None:
        if ready_file is not None and endpoints is not None:
            ready_file.write(endpoints())

    try:
        return run_service(
            service,
            name=name,
            grace_s=grace_s,
            duration_s=duration_s,
            until=until,
            on_started=started,
            on_stopping=stopping,
            ready=ready,
            on_ready=announce if ready_file is not None else None,
        )
    finally:
        if ready_file is not None:
            ready_file.remove()
        shutdown_tracing()


class ServedConfig(Protocol):
    """What :func:`run_served` reads of a deployable's config (each service's config has these)."""

    @property
    def grpc_host(self) -> str: ...

    @property
    def metrics_host(self) -> str: ...

    @property
    def grace_s(self) -> float: ...


class Served(Runnable, Protocol):
    """A deployable :func:`run_served` runs: its config, and its gRPC server (None until started)."""

    @property
    def config(self) -> ServedConfig: ...

    @property
    def server(self) -> GrpcServer | None: ...


def run_served(
    service: Served,
    *,
    name: str,
    banner: Callable[[], str],
    metrics_port: Callable[[], int | None],
    ready_path: Path | None,
    duration_s: float | None = None,
    until: Callable[[], bool] | None = None,
) -> int:
    """:func:`run_deployable` the way each deployable's CLI runs it, with the grace of its config.

    Ready once its gRPC server reports SERVING. With ``ready_path`` (what
    :func:`~faceflow.service.ready_file.ready_file_path` made of ``--ready-file``: the CLI resolves
    it before it builds anything, so a bad path is said first) the ready file names the config's
    hosts with the bound gRPC port and ``metrics_port()`` (0 while no metrics server listens).
    """
    from faceflow.service.ready_file import Endpoints, ReadyFile  # noqa: PLC0415 - fast --help

    config = service.config

    def ready() -> bool:
        server = service.server
        return server is not None and server.serving

    def endpoints() -> Endpoints:
        server = service.server
        if server is None:  # only asked for once ready(), which needs a server
            raise RuntimeError(f"{name}: endpoints asked for before its gRPC server started")
        return Endpoints(
            grpc_host=config.grpc_host,
            grpc_port=server.port,
            metrics_host=config.metrics_host,
            metrics_port=metrics_port() or 0,
        )

    return run_deployable(
        service,
        name=name,
        grace_s=config.grace_s,
        banner=banner,
        duration_s=duration_s,
        until=until,
        ready=ready,
        endpoints=endpoints,
        ready_file=None if ready_path is None else ReadyFile(ready_path, service=name),
    )


def run_service(
    service: Runnable,
    *,
    name: str,
    grace_s: float,
    duration_s: float | None = None,
    until: Callable[[], bool] | None = None,
    on_started: Callable[[], None] | None = None,
    on_stopping: Callable[[str], None] | None = None,
    ready: Callable[[], bool] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Run ``service`` until a signal, a failure, ``until()`` or ``duration_s``; return the exit code.

    ``on_ready`` runs once, the first time ``ready()`` holds (at once when ``ready`` is None).
    """
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.start()
        if on_started is not None:
            on_started()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        reason = StopReason.SIGNAL
        announce = _Announcement(ready, on_ready)
        announced_failure = announce.check()
        while announced_failure is None and not stop.wait(POLL_S):
            failure = service.failure()
            if failure is not None:
                reason = StopReason.FAILURE
                break
            announced_failure = announce.check()
            if announced_failure is not None:
                break
            if until is not None and until():
                reason = StopReason.DONE
                break
            if deadline is not None and time.monotonic() >= deadline:
                reason = StopReason.DURATION
                break
        if announced_failure is not None:
            reason = StopReason.FAILURE
        why = f"on {received[0]}" if received and reason == StopReason.SIGNAL else reason
        if on_stopping is not None:
            on_stopping(why)
        if reason == StopReason.FAILURE:
            logger.error(
                "%s: stopping after a fatal failure: %s", name, announced_failure or service.failure()
            )
            service.stop(0.0)
            return EXIT_FAILURE
        logger.info("%s: stopping (%s; grace %.1f s)", name, why, grace_s)
        service.stop(grace_s)
        return EXIT_OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Announcement:
    """Calls ``on_ready`` once, the first time ``ready()`` holds; returns what either raised."""

    def __init__(self, ready: Callable[[], bool] | None, on_ready: Callable[[], None] | None) -> None:
        self._ready = ready or (lambda: True)
        self._on_ready = on_ready
        self._done = on_ready is None

    def check(self) -> BaseException | None:
        if self._done or self._on_ready is None:
            return None
        try:
            if not self._ready():
                return None
            self._done = True
            self._on_ready()
        except Exception as exc:  # noqa: BLE001 - e.g. the ready file's folder is gone: fatal, reported
            self._done = True
            return exc
        return None
