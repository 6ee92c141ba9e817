"""A bounded, thread-safe frame queue between decoding and the producer, with a drop policy.

Decoding must never hang forever and memory must stay bounded, so when the queue is full a
frame is dropped, and every drop is counted per reason and reported to an ``on_drop`` hook for
logging and metrics (DESIGN.md: nothing is lost silently):

* ``drop-oldest`` (live sources): the oldest queued frame is evicted to make room
  (reason :attr:`DropReason.OLDEST`); the newest frames win.
* ``block`` (files): the producer waits up to ``block_timeout_s`` for room, then the *new* frame
  is dropped (reason :attr:`DropReason.TIMEOUT`).

After :meth:`BoundedFrameQueue.close`, waiters wake up, ``put`` drops (reason
:attr:`DropReason.CLOSED`), and ``get`` drains what is left before raising
:class:`~faceflow.ingest.errors.QueueClosed`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from faceflow.ingest.checks import check_int, check_number
from faceflow.ingest.errors import IngestConfigError, QueueClosed

logger = logging.getLogger(__name__)

T = TypeVar("T")


class QueuePolicy(StrEnum):
    """What a full queue does with a new item."""

    DROP_OLDEST = "drop-oldest"
    BLOCK = "block"


class DropReason(StrEnum):
    """Why an item was dropped; also the metric label."""

    OLDEST = "oldest"
    TIMEOUT = "timeout"
    CLOSED = "closed"


@dataclass(frozen=True)
class QueueStats:
    """A consistent snapshot of a queue's counters.

    ``put`` counts items accepted (some later evicted); at any instant
    ``put == got + dropped_oldest + depth``, and every ``put()`` call either added to ``put`` or
    to ``dropped_timeout`` / ``dropped_closed``.
    """

    put: int
    got: int
    dropped_oldest: int
    dropped_timeout: int
    dropped_closed: int
    depth: int
    high_watermark: int

    @property
    def dropped(self) -> int:
        """Items dropped for any reason."""
        return self.dropped_oldest + self.dropped_timeout + self.dropped_closed


DropHook = Callable[[T, DropReason], None]


class BoundedFrameQueue(Generic[T]):
    """A FIFO of at most ``maxsize`` items with a drop policy; safe across threads.

    Args:
        maxsize: capacity, >= 1.
        policy: ``"drop-oldest"`` or ``"block"`` (see the module docstring).
        block_timeout_s: with ``block``, how long ``put`` waits for room before dropping.
        on_drop: called as ``on_drop(item, reason)`` for every dropped item, outside the queue's
            lock and in the thread that caused the drop; its exceptions are logged, not raised.
        name: for log messages (e.g. the stream id).

    Raises:
        IngestConfigError: a setting is out of range.
    """

    def __init__(
        self,
        maxsize: int,
        policy: QueuePolicy | str = QueuePolicy.DROP_OLDEST,
        block_timeout_s: float = 1.0,
        *,
        on_drop: DropHook[T] | None = None,
        name: str = "frames",
    ) -> None:
        self.maxsize = check_int("maxsize", maxsize, minimum=1)
        try:
            self.policy = QueuePolicy(policy)
        except ValueError:
            expected = [p.value for p in QueuePolicy]
            raise IngestConfigError(f"policy: expected one of {expected}, got {policy!r}") from None
        self.block_timeout_s = check_number("block_timeout_s", block_timeout_s, minimum=0.0)
        self.name = name
        self._on_drop = on_drop
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self._counts = dict.fromkeys(DropReason, 0)
        self._put = 0
        self._got = 0
        self._high_watermark = 0

    def put(self, item: T) -> bool:
        """Enqueue ``item``; return False if it was dropped instead (counted and reported).

        With ``drop-oldest`` this never blocks. With ``block`` it waits at most
        ``block_timeout_s`` for room.
        """
        evicted: list[T] = []  # a list, not Optional: an item may itself be None
        dropped_reason: DropReason | None = None
        with self._lock:
            if self._closed:
                dropped_reason = DropReason.CLOSED
            elif len(self._items) >= self.maxsize:
                if self.policy is QueuePolicy.DROP_OLDEST:
                    evicted.append(self._items.popleft())
                    self._counts[DropReason.OLDEST] += 1
                else:
                    deadline = time.monotonic() + self.block_timeout_s
                    while len(self._items) >= self.maxsize and not self._closed:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._not_full.wait(remaining)
                    if self._closed:
                        dropped_reason = DropReason.CLOSED
                    elif len(self._items) >= self.maxsize:
                        dropped_reason = DropReason.TIMEOUT
            if dropped_reason is None:
                self._items.append(item)
                self._put += 1
                self._high_watermark = max(self._high_watermark, len(self._items))
                self._not_empty.notify()
            else:
                self._counts[dropped_reason] += 1
        for old in evicted:
            self._report(old, DropReason.OLDEST)
        if dropped_reason is not None:
            self._report(item, dropped_reason)
            return False
        return True

    def get(self, timeout: float | None = None) -> T:
        """Dequeue the oldest item, waiting up to ``timeout`` seconds (None: until one comes).

        Raises:
            queue.Empty: nothing arrived within ``timeout``.
            QueueClosed: the queue is closed and empty.
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._lock:
            while not self._items:
                if self._closed:
                    raise QueueClosed(f"queue {self.name} is closed")
                if deadline is None:
                    self._not_empty.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise queue.Empty
                    self._not_empty.wait(remaining)
            item = self._items.popleft()
            self._got += 1
            self._not_full.notify()
            return item

    def close(self) -> None:
        """Refuse new items and wake every waiter; items already queued can still be got."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def dropped_oldest(self) -> int:
        """Items evicted by the ``drop-oldest`` policy."""
        with self._lock:
            return self._counts[DropReason.OLDEST]

    @property
    def dropped_timeout(self) -> int:
        """New items dropped after waiting ``block_timeout_s`` for room."""
        with self._lock:
            return self._counts[DropReason.TIMEOUT]

    @property
    def dropped_closed(self) -> int:
        """Items offered or waiting when the queue was closed."""
        with self._lock:
            return self._counts[DropReason.CLOSED]

    def stats(self) -> QueueStats:
        """All counters, read at one instant."""
        with self._lock:
            return QueueStats(
                put=self._put,
                got=self._got,
                dropped_oldest=self._counts[DropReason.OLDEST],
                dropped_timeout=self._counts[DropReason.TIMEOUT],
                dropped_closed=self._counts[DropReason.CLOSED],
                depth=len(self._items),
                high_watermark=self._high_watermark,
            )

    def _report(self, item: T, reason: DropReason) -> None:
        logger.debug("queue %s: dropped an item (%s)", self.name, reason)
        if self._on_drop is None:
            return
        try:
            self._on_drop(item, reason)
        except Exception:
            logger.exception("queue %s: on_drop hook failed for a %s drop", self.name, reason)
