"""Keeping a live source alive: exponential backoff, the reconnect loop, per-stream sequence numbers.

:func:`run_with_reconnect` drives one stream: it opens the source, hands every frame to
``on_frame``, and when a *live* source disconnects it waits (:class:`Backoff`, interruptible by
the stop event) and opens it again; a file that ends or breaks ends the loop. Sequence numbers
are not the source's business: the service takes them from one :class:`SeqCounter` per stream,
which outlives every reconnect, so ``seq`` keeps increasing and ``(stream_id, seq)`` stays
unique (DESIGN.md, "Delivery contract").
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from faceflow.ingest.checks import check_int, check_number
from faceflow.ingest.errors import IngestConfigError, SourceDisconnected
from faceflow.ingest.frames import DecodedFrame
from faceflow.ingest.sources import FrameSource

logger = logging.getLogger(__name__)


class Backoff:
    """Exponential backoff with jitter: ``initial_s * multiplier**n``, capped at ``max_s``.

    Each delay is the capped base times a random factor in ``[1 - jitter, 1 + jitter]``, capped
    again at ``max_s``, so retries from many ingest replicas do not hit a camera in lockstep.

    Args:
        initial_s: the first base delay, > 0.
        max_s: the largest delay, >= ``initial_s``.
        multiplier: growth per attempt, >= 1.
        jitter: relative spread in ``[0, 1)``.
        rng: the random generator (seed it in tests); default a fresh ``random.Random()``.
    """

    def __init__(
        self,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        multiplier: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.initial_s = check_number("initial_s", initial_s, minimum=0.0, inclusive=False)
        self.max_s = check_number("max_s", max_s, minimum=self.initial_s)
        self.multiplier = check_number("multiplier", multiplier, minimum=1.0)
        self.jitter = check_number("jitter", jitter, minimum=0.0)
        if self.jitter >= 1.0:
            raise IngestConfigError(f"jitter: expected a number in [0, 1), got {jitter!r}")
        self._rng = rng or random.Random()  # noqa: S311 (timing jitter, not cryptography)
        self._base_s = self.initial_s
        self.attempts = 0

    def base_delay(self) -> float:
        """The un-jittered delay the next :meth:`next_delay` is centred on."""
        return self._base_s

    def next_delay(self) -> float:
        """Return the delay before the next attempt (seconds) and advance the schedule."""
        base = self._base_s
        self.attempts += 1
        # Grow the base until it reaches the cap; never compute multiplier**attempts (overflow).
        self._base_s = min(self.max_s, base * self.multiplier)
        spread = self._rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        return min(self.max_s, base * (1.0 + spread))

    def reset(self) -> None:
        """Start again from ``initial_s`` (call after a successful connection)."""
        self._base_s = self.initial_s
        self.attempts = 0


class SeqCounter:
    """Thread-safe, strictly increasing sequence numbers for one stream.

    Start at ``start`` (0 by default). A counter that must stay increasing across *process*
    restarts (consumers drop a ``(stream_id, seq)`` they have already applied) should come from
    :meth:`starting_now`, which starts at the wall clock in microseconds: a new process then
    starts above anything the previous one could have reached at under a million frames a second.
    """

    def __init__(self, start: int = 0) -> None:
        self._next = check_int("start", start, minimum=0)
        self._lock = threading.Lock()

    @classmethod
    def starting_now(cls, clock_ns: Callable[[], int] = time.time_ns) -> SeqCounter:
        """A counter starting at the current wall clock in microseconds."""
        return cls(clock_ns() // 1000)

    def next(self) -> int:
        """Return the next sequence number."""
        with self._lock:
            value = self._next
            self._next += 1
            return value

    @property
    def peek(self) -> int:
        """The number :meth:`next` will return, without taking it."""
        with self._lock:
            return self._next


class EndReason(StrEnum):
    """Why :func:`run_with_reconnect` returned."""

    ENDED = "ended"  # a file (non-live source) reached its end
    STOPPED = "stopped"  # the stop event was set
    DISCONNECTED = "disconnected"  # a non-live source raised SourceDisconnected


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_with_reconnect` did."""

    reason: EndReason
    frames: int
    connects: int
    disconnects: int


def run_with_reconnect(
    open_fn: Callable[[], FrameSource],
    on_frame: Callable[[DecodedFrame], None],
    stop_event: threading.Event,
    backoff: Backoff,
    is_live: bool,
    *,
    stream_id: str = "?",
    max_attempts: int | None = None,
    on_reconnect: Callable[[int], None] | None = None,
    probe_live: bool = False,
) -> RunResult:
    """Feed the frames of a source to ``on_frame`` until it ends or ``stop_event`` is set.

    For a live source (``is_live``), a :class:`SourceDisconnected` from ``open_fn`` or from
    iterating makes the loop wait ``backoff.next_delay()`` seconds (returning at once if
    ``stop_event`` is set meanwhile) and open the source again; the backoff is reset once a frame
    arrives after a (re)connect; a live source that ends cleanly counts as disconnected too. For a
    file, the end or a ``SourceDisconnected`` ends the loop. Every other
    exception (``SourceNotFound``, ``SourceUndecodable``, errors of ``on_frame``) propagates.
    The source is always closed. ``stop_event`` is checked between frames, so a stop takes
    effect within one read (bounded by the source's read timeout).

    Args:
        open_fn: opens the source; called again for each reconnect.
        on_frame: receives each frame, in order, in this thread (assign ``seq`` here).
        stop_event: set it from another thread to stop.
        backoff: the delay schedule between attempts.
        is_live: whether disconnects are retried.
        stream_id: for log messages.
        max_attempts: give up after this many failed attempts in a row (re-raising the last
            ``SourceDisconnected``); None retries forever.
        on_reconnect: called with the attempt number before each reopen (e.g. to reset a
            sampler's clock).
        probe_live: take ``is_live`` from each opened source (which decided it from its
            container); ``is_live`` is then only the guess for a source that cannot be opened.
    """
    if max_attempts is not None:
        check_int("max_attempts", max_attempts, minimum=1)
    frames = connects = disconnects = failures = 0
    while not stop_event.is_set():
        if (connects or failures) and on_reconnect is not None:
            on_reconnect(failures)
        source: FrameSource | None = None
        try:
            source = open_fn()
            connects += 1
            if probe_live:
                is_live = source.is_live
            got_frame = False
            for frame in source:
                if not got_frame:
                    got_frame = True
                    failures = 0
                    backoff.reset()
                on_frame(frame)
                frames += 1
                if stop_event.is_set():
                    break
            else:
                if not is_live:
                    logger.info("stream %s: %s ended after %d frames in total", stream_id, source.uri, frames)
                    return RunResult(EndReason.ENDED, frames, connects, disconnects)
                # A live stream does not end by itself: treat a clean end as a drop.
                raise SourceDisconnected(source.uri, "live source ended")
        except SourceDisconnected as exc:
            # One path for a source that could not be opened and one that broke off mid-stream.
            if source is not None:
                disconnects += 1
            if not is_live:
                what = (
                    "source unreachable, not live, giving up"
                    if source is None
                    else "non-live source broke off, ending"
                )
                logger.warning("stream %s: %s: %s", stream_id, what, exc)
                return RunResult(EndReason.DISCONNECTED, frames, connects, disconnects)
            failures += 1
            retry = _wait_before_retry(
                exc,
                stream_id=stream_id,
                failures=failures,
                max_attempts=max_attempts,
                backoff=backoff,
                stop_event=stop_event,
            )
            if not retry:
                break
        finally:
            if source is not None:
                source.close()
    logger.info("stream %s: stopped after %d frames, %d connects", stream_id, frames, connects)
    return RunResult(EndReason.STOPPED, frames, connects, disconnects)


def _wait_before_retry(
    exc: SourceDisconnected,
    *,
    stream_id: str,
    failures: int,
    max_attempts: int | None,
    backoff: Backoff,
    stop_event: threading.Event,
) -> bool:
    """Sleep the next backoff delay; False if the stop event was set meanwhile.

    Raises:
        SourceDisconnected: ``exc`` again, after ``max_attempts`` failures in a row.
    """
    if max_attempts is not None and failures >= max_attempts:
        logger.error("stream %s: giving up after %d failed attempts: %s", stream_id, failures, exc)
        raise exc
    delay = backoff.next_delay()
    logger.warning(
        "stream %s: %s; reconnecting in %.2f s (attempt %d)", stream_id, exc.reason, delay, failures
    )
    return not stop_event.wait(delay)
