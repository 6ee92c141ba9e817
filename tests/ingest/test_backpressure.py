"""Tests for faceflow.ingest.backpressure: policies, bounded memory, counting every drop."""

from __future__ import annotations

import logging
import queue
import threading
import time

import pytest

from faceflow.ingest.backpressure import BoundedFrameQueue, DropReason, QueuePolicy
from faceflow.ingest.errors import IngestConfigError, QueueClosed


class DropLog:
    """An ``on_drop`` hook that records what it is told (thread-safe)."""

    def __init__(self) -> None:
        self.items: list[tuple[object, DropReason]] = []
        self._lock = threading.Lock()

    def __call__(self, item: object, reason: DropReason) -> None:
        with self._lock:
            self.items.append((item, reason))


def start(target: object, *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("kwargs", "expected_error", "message_part"),
    [
        ({"maxsize": 1}, None, None),
        ({"maxsize": 4, "policy": "block", "block_timeout_s": 0}, None, None),
        ({"maxsize": 4, "policy": QueuePolicy.BLOCK}, None, None),
        ({"maxsize": 0}, IngestConfigError, "maxsize: expected an int >= 1, got 0"),
        ({"maxsize": 2.0}, IngestConfigError, "maxsize"),
        (
            {"maxsize": 2, "policy": "drop-newest"},
            IngestConfigError,
            "expected one of ['drop-oldest', 'block']",
        ),
        ({"maxsize": 2, "block_timeout_s": -1}, IngestConfigError, "block_timeout_s"),
        ({"maxsize": 2, "block_timeout_s": float("inf")}, IngestConfigError, "block_timeout_s"),
    ],
)
def test_settings_validation(
    kwargs: dict[str, object], expected_error: type[Exception] | None, message_part: str | None
) -> None:
    if expected_error is None:
        BoundedFrameQueue(**kwargs)
        return
    with pytest.raises(expected_error) as info:
        BoundedFrameQueue(**kwargs)
    assert message_part in str(info.value)


def test_drop_oldest_evicts_and_reports() -> None:
    drops = DropLog()
    q: BoundedFrameQueue[int] = BoundedFrameQueue(3, "drop-oldest", on_drop=drops)
    assert all(q.put(i) for i in range(1, 6))
    assert [q.get(timeout=0) for _ in range(3)] == [3, 4, 5]
    assert drops.items == [(1, DropReason.OLDEST), (2, DropReason.OLDEST)]
    stats = q.stats()
    assert (stats.put, stats.got, stats.dropped_oldest, stats.depth, stats.high_watermark) == (5, 3, 2, 0, 3)
    assert q.dropped_oldest == 2
    assert q.dropped_timeout == 0


def test_block_times_out_and_drops_the_new_item() -> None:
    drops = DropLog()
    q: BoundedFrameQueue[str] = BoundedFrameQueue(2, "block", 0.05, on_drop=drops)
    assert q.put("a")
    assert q.put("b")
    began = time.monotonic()
    assert not q.put("c")
    assert time.monotonic() - began >= 0.05
    assert drops.items == [("c", DropReason.TIMEOUT)]
    assert q.dropped_timeout == 1
    assert [q.get(timeout=0), q.get(timeout=0)] == ["a", "b"]


def test_block_waits_for_room() -> None:
    q: BoundedFrameQueue[int] = BoundedFrameQueue(1, "block", 5.0)
    q.put(1)
    consumer = start(lambda: (time.sleep(0.05), q.get()))
    began = time.monotonic()
    assert q.put(2)
    assert 0.03 < time.monotonic() - began < 4.0
    consumer.join(5)
    assert q.get(timeout=1) == 2
    assert q.dropped_timeout == 0


def test_get_times_out_with_queue_empty() -> None:
    q: BoundedFrameQueue[int] = BoundedFrameQueue(1)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)


def test_close_drains_then_raises() -> None:
    q: BoundedFrameQueue[int] = BoundedFrameQueue(4)
    q.put(1)
    q.put(2)
    q.close()
    assert q.closed
    assert not q.put(3)
    assert q.dropped_closed == 1
    assert [q.get(), q.get()] == [1, 2]
    with pytest.raises(QueueClosed):
        q.get(timeout=0)


def test_close_wakes_blocked_getters_and_putters() -> None:
    drops = DropLog()
    q: BoundedFrameQueue[int] = BoundedFrameQueue(1, "block", 30.0, on_drop=drops)
    empty: BoundedFrameQueue[int] = BoundedFrameQueue(1)
    q.put(0)
    outcomes: dict[str, object] = {}

    def blocked_put() -> None:
        outcomes["put"] = q.put(1)

    def blocked_get() -> None:
        try:
            empty.get()
        except QueueClosed as exc:
            outcomes["get"] = exc

    threads = [start(blocked_put), start(blocked_get)]
    time.sleep(0.05)
    began = time.monotonic()
    q.close()
    empty.close()
    for thread in threads:
        thread.join(5)
    assert time.monotonic() - began < 2.0
    assert outcomes["put"] is False
    assert isinstance(outcomes["get"], QueueClosed)
    assert drops.items == [(1, DropReason.CLOSED)]


@pytest.mark.parametrize(
    ("policy", "timeout_s", "total"), [("drop-oldest", 0.0, 1500), ("block", 0.001, 400)]
)
def test_fast_producer_slow_consumer_stays_bounded(policy: str, timeout_s: float, total: int) -> None:
    maxsize = 8
    drops = DropLog()
    q: BoundedFrameQueue[int] = BoundedFrameQueue(maxsize, policy, timeout_s, on_drop=drops)
    got: list[int] = []
    depths: list[int] = []
    done = threading.Event()

    def produce() -> None:
        for i in range(total):
            q.put(i)
        q.close()

    def consume() -> None:
        while True:
            try:
                got.append(q.get(timeout=1))
            except QueueClosed:
                return
            if len(got) % 5 == 0:
                time.sleep(0.005)  # far slower than the producer: drops are certain

    def watch() -> None:
        while not done.is_set():
            depths.append(len(q))
            time.sleep(0)

    watcher = start(watch)
    threads = [start(produce), start(consume)]
    for thread in threads:
        thread.join(20)
    done.set()
    watcher.join(5)
    stats = q.stats()
    assert max(depths) <= maxsize
    assert stats.high_watermark <= maxsize
    assert got == sorted(got)  # FIFO order survives drops
    assert stats.dropped > 0
    # Nothing is lost silently: every item was delivered or reported dropped.
    assert len(got) + len(drops.items) == total
    assert sorted(got + [item for item, _ in drops.items]) == list(range(total))
    assert stats.put == stats.got + stats.dropped_oldest + stats.depth
    expected_reason = DropReason.OLDEST if policy == "drop-oldest" else DropReason.TIMEOUT
    assert {reason for _, reason in drops.items} == {expected_reason}


def test_failing_hook_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def hook(item: int, reason: DropReason) -> None:
        raise RuntimeError("metrics down")

    q: BoundedFrameQueue[int] = BoundedFrameQueue(1, on_drop=hook, name="cam1")
    q.put(1)
    with caplog.at_level(logging.ERROR, logger="faceflow.ingest.backpressure"):
        assert q.put(2)
    assert "queue cam1: on_drop hook failed" in caplog.text
    assert q.get(timeout=0) == 2


def test_none_items_are_reported_like_any_other() -> None:
    drops = DropLog()
    q: BoundedFrameQueue[None] = BoundedFrameQueue(1, on_drop=drops)
    q.put(None)
    q.put(None)
    assert drops.items == [(None, DropReason.OLDEST)]
