"""The shared main loop: why it stops and what it returns."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from faceflow.errors import ServiceStartError
from faceflow.service.main import EXIT_FAILURE, EXIT_OK, run_service


class Fake:
    def __init__(self, *, fail_after: int | None = None, start_error: Exception | None = None) -> None:
        self.calls: list[tuple[str, float]] = []
        self.polls = 0
        self.fail_after = fail_after
        self.start_error = start_error

    def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error
        self.calls.append(("start", 0.0))

    def stop(self, grace_s: float) -> None:
        self.calls.append(("stop", grace_s))

    def failure(self) -> BaseException | None:
        self.polls += 1
        if self.fail_after is not None and self.polls > self.fail_after:
            return RuntimeError("consumer thread died")
        return None


def test_until_stops_with_grace_and_exit_0() -> None:
    fake = Fake()
    reasons: list[str] = []
    code = run_service(fake, name="t", grace_s=3.0, until=lambda: fake.polls >= 2, on_stopping=reasons.append)
    assert code == EXIT_OK
    assert fake.calls == [("start", 0.0), ("stop", 3.0)]
    assert reasons == ["done"]


def test_a_fatal_failure_stops_without_grace_and_exits_1() -> None:
    fake = Fake(fail_after=1)
    assert run_service(fake, name="t", grace_s=3.0) == EXIT_FAILURE
    assert fake.calls[-1] == ("stop", 0.0)


def test_duration() -> None:
    fake = Fake()
    assert run_service(fake, name="t", grace_s=1.0, duration_s=0.1) == EXIT_OK


def test_sigterm_stops_with_grace() -> None:
    fake = Fake()
    reasons: list[str] = []
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert run_service(fake, name="t", grace_s=2.0, on_stopping=reasons.append) == EXIT_OK
    finally:
        timer.cancel()
    assert reasons == ["on SIGTERM"]
    assert fake.calls[-1] == ("stop", 2.0)
    assert signal.getsignal(signal.SIGTERM) is not None


def test_a_start_error_propagates_for_the_cli_to_print() -> None:
    fake = Fake(start_error=ServiceStartError("port taken"))
    with pytest.raises(ServiceStartError, match="port taken"):
        run_service(fake, name="t", grace_s=1.0)
