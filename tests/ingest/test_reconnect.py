"""Tests for faceflow.ingest.reconnect: backoff, the reconnect loop, sequence numbers."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from faceflow.ingest.errors import IngestConfigError, SourceDisconnected, SourceNotFound, SourceUndecodable
from faceflow.ingest.frames import DecodedFrame
from faceflow.ingest.reconnect import Backoff, EndReason, RunResult, SeqCounter, run_with_reconnect
from faceflow.ingest.sampling import FpsSampler
from faceflow.ingest.sources import FrameSource, InMemorySource, VideoSource

PIXELS = np.zeros((2, 2, 3), np.uint8)


def fast_backoff() -> Backoff:
    return Backoff(initial_s=0.001, max_s=0.002, jitter=0.0)


class Opener:
    """An ``open_fn`` that plays a script: each entry is a source to return or an error to raise."""

    def __init__(self, script: list[Callable[[], FrameSource]]) -> None:
        self.script = script
        self.opened: list[FrameSource] = []

    def __call__(self) -> FrameSource:
        step = self.script[min(len(self.opened), len(self.script) - 1)]
        source = step()
        self.opened.append(source)
        return source


def memory(frames: int, *, live: bool = True, disconnect_after: int | None = None, start: float = 0.0):
    pts = [start + i / 10 for i in range(frames)]
    return lambda: InMemorySource(
        [PIXELS] * frames, "cam1", pts_s=pts, is_live=live, disconnect_after=disconnect_after
    )


def failing(error: Exception) -> Callable[[], FrameSource]:
    def raise_it() -> FrameSource:
        raise error

    return raise_it


# --- Backoff -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected_error", "message_part"),
    [
        ({}, None, None),
        ({"initial_s": 1, "max_s": 1, "multiplier": 1, "jitter": 0}, None, None),
        ({"initial_s": 0}, IngestConfigError, "initial_s: expected a finite number > 0, got 0"),
        ({"initial_s": 5, "max_s": 1}, IngestConfigError, "max_s: expected a finite number >= 5, got 1"),
        ({"multiplier": 0.5}, IngestConfigError, "multiplier"),
        ({"jitter": -0.1}, IngestConfigError, "jitter"),
        ({"jitter": 1.0}, IngestConfigError, "jitter: expected a number in [0, 1), got 1.0"),
        ({"max_s": float("inf")}, IngestConfigError, "max_s"),
    ],
)
def test_backoff_validation(
    kwargs: dict[str, float], expected_error: type[Exception] | None, message_part: str | None
) -> None:
    if expected_error is None:
        Backoff(**kwargs)
        return
    with pytest.raises(expected_error) as info:
        Backoff(**kwargs)
    assert message_part in str(info.value)


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30, multiplier=2, jitter=0)
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert delays == sorted(delays)
    assert backoff.attempts == 10


def test_backoff_never_overflows() -> None:
    backoff = Backoff(initial_s=1, max_s=60, multiplier=10, jitter=0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 60


def test_backoff_jitter_stays_within_bounds() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30, multiplier=2, jitter=0.2, rng=random.Random(7))
    seen: list[float] = []
    for _ in range(300):
        base = backoff.base_delay()
        delay = backoff.next_delay()
        assert base * 0.8 <= delay <= min(30, base * 1.2)
        seen.append(delay)
        if backoff.attempts % 12 == 0:
            backoff.reset()
    assert max(seen) <= 30
    assert len({round(d, 9) for d in seen[:6]}) == 6  # jittered: not a fixed ladder
    # The jitter is centred: over many draws the mean factor is about 1.
    firsts = [Backoff(jitter=0.2, rng=random.Random(i)).next_delay() for i in range(400)]
    assert np.mean(firsts) == pytest.approx(0.5, rel=0.03)


def test_backoff_reset_starts_over() -> None:
    backoff = Backoff(initial_s=1, max_s=8, jitter=0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert (backoff.attempts, backoff.next_delay()) == (0, 1)


# --- SeqCounter --------------------------------------------------------------------------------


def test_seq_counter_is_unique_across_threads() -> None:
    counter = SeqCounter(100)
    taken: list[list[int]] = [[] for _ in range(4)]

    def take(bucket: list[int]) -> None:
        for _ in range(2000):
            bucket.append(counter.next())

    threads = [threading.Thread(target=take, args=(b,)) for b in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = sorted(n for bucket in taken for n in bucket)
    assert everything == list(range(100, 8100))
    assert all(bucket == sorted(bucket) for bucket in taken)
    assert counter.peek == 8100


@pytest.mark.parametrize(
    ("start", "expected_error"),
    [(0, None), (10**15, None), (-1, IngestConfigError), (1.0, IngestConfigError)],
)
def test_seq_counter_start(start: object, expected_error: type[Exception] | None) -> None:
    if expected_error is None:
        assert SeqCounter(start).next() == start
        return
    with pytest.raises(expected_error, match="start: expected an int >= 0"):
        SeqCounter(start)


def test_seq_counter_starting_now_outruns_an_earlier_process() -> None:
    earlier = SeqCounter.starting_now(lambda: 1_700_000_000_000_000_000)
    for _ in range(1000):
        earlier.next()
    later = SeqCounter.starting_now(lambda: 1_700_000_000_000_000_000 + 10**9)  # one second later
    assert later.next() > earlier.peek


# --- run_with_reconnect ------------------------------------------------------------------------


def test_live_source_reconnects_and_seq_keeps_increasing() -> None:
    stop = threading.Event()
    seq = SeqCounter()
    delivered: list[tuple[int, float]] = []
    opener = Opener([memory(10, disconnect_after=3)])
    reconnects: list[int] = []

    def on_frame(frame: DecodedFrame) -> None:
        delivered.append((seq.next(), frame.pts_s))
        if len(delivered) == 10:
            stop.set()

    result = run_with_reconnect(
        opener, on_frame, stop, fast_backoff(), is_live=True, stream_id="cam1", on_reconnect=reconnects.append
    )
    assert result.reason is EndReason.STOPPED
    assert (result.frames, result.connects, result.disconnects) == (10, 4, 3)
    assert [s for s, _ in delivered] == list(range(10))
    assert [p for _, p in delivered][:4] == [0.0, 0.1, 0.2, 0.0]  # the source's clock restarts
    assert reconnects == [1, 1, 1]  # the backoff was reset by the frames of each connection
    assert all(source.closed for source in opener.opened)


def test_live_source_that_ends_cleanly_is_reopened() -> None:
    stop = threading.Event()
    opener = Opener([memory(2)])
    count = 0

    def on_frame(frame: DecodedFrame) -> None:
        nonlocal count
        count += 1
        if count == 5:
            stop.set()

    result = run_with_reconnect(opener, on_frame, stop, fast_backoff(), is_live=True)
    assert (result.reason, result.connects, result.disconnects) == (EndReason.STOPPED, 3, 2)


@pytest.mark.parametrize(
    ("script", "expected_reason", "expected_frames", "expected_error"),
    [
        ([memory(5, live=False)], EndReason.ENDED, 5, None),
        ([memory(5, live=False, disconnect_after=2)], EndReason.DISCONNECTED, 2, None),
        ([failing(SourceDisconnected("f.mp4", "gone"))], EndReason.DISCONNECTED, 0, None),
        ([failing(SourceNotFound("f.mp4", "no such file"))], None, 0, SourceNotFound),
        ([failing(SourceUndecodable("f.mp4", "corrupt"))], None, 0, SourceUndecodable),
    ],
)
def test_files_end_instead_of_reconnecting(
    script: list[Callable[[], FrameSource]],
    expected_reason: EndReason | None,
    expected_frames: int,
    expected_error: type[Exception] | None,
) -> None:
    opener = Opener(script)
    frames: list[DecodedFrame] = []

    def run() -> RunResult:
        return run_with_reconnect(opener, frames.append, threading.Event(), fast_backoff(), is_live=False)

    if expected_error is not None:
        with pytest.raises(expected_error):
            run()
        assert len(opener.opened) == 0
        return
    result = run()
    assert (result.reason, result.frames, len(frames)) == (expected_reason, expected_frames, expected_frames)
    assert len(opener.opened) <= 1


def test_live_open_failures_are_retried_with_growing_delays() -> None:
    stop = threading.Event()
    backoff = Backoff(initial_s=0.001, max_s=0.01, jitter=0)
    unreachable = failing(SourceDisconnected("rtsp://cam", "Connection refused"))
    calls = 0

    def open_fn() -> FrameSource:
        nonlocal calls
        calls += 1
        if calls <= 3:
            return unreachable()
        return memory(3, live=True)()

    def on_frame(frame: DecodedFrame) -> None:
        assert backoff.attempts == 0  # reset once a frame arrived
        stop.set()

    result = run_with_reconnect(open_fn, on_frame, stop, backoff, is_live=True)
    assert (result.reason, result.frames, result.connects, calls) == (EndReason.STOPPED, 1, 1, 4)


def test_max_attempts_gives_up_with_the_last_error() -> None:
    opener = Opener([failing(SourceDisconnected("rtsp://cam", "Connection refused"))])
    with pytest.raises(SourceDisconnected, match="Connection refused"):
        run_with_reconnect(
            opener, lambda f: None, threading.Event(), fast_backoff(), is_live=True, max_attempts=3
        )


def test_not_found_is_not_retried_even_when_live() -> None:
    opener = Opener([failing(SourceNotFound("http://cam/x", "404"))])
    with pytest.raises(SourceNotFound):
        run_with_reconnect(opener, lambda f: None, threading.Event(), fast_backoff(), is_live=True)


def test_stop_interrupts_the_backoff_sleep() -> None:
    stop = threading.Event()
    opener = Opener([memory(3, disconnect_after=1)])
    outcome: list[object] = []
    thread = threading.Thread(
        target=lambda: outcome.append(
            run_with_reconnect(opener, lambda f: None, stop, Backoff(initial_s=30, max_s=60), is_live=True)
        )
    )
    thread.start()
    time.sleep(0.1)  # now sleeping ~30 s before the reconnect
    began = time.monotonic()
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - began < 1.0
    assert outcome[0].reason is EndReason.STOPPED  # type: ignore[attr-defined]
    assert len(opener.opened) == 1


def test_errors_of_on_frame_propagate_and_close_the_source() -> None:
    opener = Opener([memory(3)])

    def on_frame(frame: DecodedFrame) -> None:
        raise RuntimeError("producer broke")

    with pytest.raises(RuntimeError, match="producer broke"):
        run_with_reconnect(opener, on_frame, threading.Event(), fast_backoff(), is_live=True)
    assert opener.opened[0].closed  # type: ignore[attr-defined]


def test_reconnects_to_a_real_flaky_http_stream(stream_server) -> None:
    """The real thing: FFmpeg over a socket, dropped twice mid-stream, then served whole."""
    stop = threading.Event()
    seq = SeqCounter()
    sampler = FpsSampler(5)
    seqs: list[int] = []
    kept_pts: list[float] = []

    def open_fn() -> FrameSource:
        return VideoSource(stream_server.url("/flaky"), "cam1", open_timeout_s=5, read_timeout_s=2)

    def on_frame(frame: DecodedFrame) -> None:
        if sampler.keep(frame.pts_s):
            seqs.append(seq.next())
            kept_pts.append(frame.pts_s)
        if len(stream_server.requests) >= 3 and frame.pts_s >= 1.5:
            stop.set()

    result = run_with_reconnect(
        open_fn, on_frame, stop, Backoff(initial_s=0.01, max_s=0.05), is_live=True, stream_id="cam1"
    )
    assert result.reason is EndReason.STOPPED
    assert (result.connects, result.disconnects) == (3, 2)
    assert stream_server.requests == ["/flaky"] * 3
    assert seqs == list(range(len(seqs)))
    assert sampler.clock_resets == 2  # each reconnect restarted the media clock
    assert len(seqs) == 5 + 5 + 8  # half a clip (1 s at 5 fps) twice, then 1.5 s
    assert kept_pts[:3] == pytest.approx([0.0, 0.2, 0.4])
