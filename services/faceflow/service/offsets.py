"""Which input offsets may be committed, and which ``(stream_id, seq)`` were already applied (pure).

:class:`OffsetTracker` implements the delivery contract's commit rule (DESIGN.md): an input offset
is committed only after every output of it *and of every earlier record of its partition* is
acknowledged. Records complete out of order (a DLQ record is acked before a slow analysis); the
committable offset of a partition is the first offset not yet done.

:class:`SeqDedup` remembers, per stream, the highest ``seq`` whose outputs were acknowledged, for
the ``max_streams`` most recently seen streams (stream ids come from clients: the map is bounded).
A record at or below it is a repeat (a replay after a restart or a rebalance) and is dropped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable


class OffsetTracker:
    """Offsets in flight per partition and the first one not yet done. Thread-safe.

    Partitions are any hashable (a ``TopicPartition``); offsets are ints, increasing per partition.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Hashable, OrderedDict[int, bool]] = {}
        self._next: dict[Hashable, int] = {}

    def add(self, partition: Hashable, offset: int) -> None:
        """A record was polled (before it is processed)."""
        with self._lock:
            pending = self._pending.setdefault(partition, OrderedDict())
            last = next(reversed(pending), None)
            if last is not None and offset <= last:
                raise ValueError(f"offset {offset} of {partition}: expected > {last} (offsets increase)")
            pending[offset] = False

    def done(self, partition: Hashable, offset: int) -> None:
        """Every output of this record is acknowledged (or it needed none)."""
        with self._lock:
            pending = self._pending.get(partition)
            if pending is None or offset not in pending:
                return  # the partition was dropped (revoked) meanwhile
            pending[offset] = True
            while pending:
                first, finished = next(iter(pending.items()))
                if not finished:
                    break
                pending.popitem(last=False)
                self._next[partition] = first + 1

    def committable(self, partition: Hashable) -> int | None:
        """The offset to commit for ``partition`` (the first not done), or None if nothing completed."""
        with self._lock:
            return self._next.get(partition)

    def undone_below(self, partition: Hashable, offset: int) -> list[int] | None:
        """Offsets below ``offset`` polled and not yet done, or None if ``partition`` is not tracked
        (never polled, or dropped on revoke)."""
        with self._lock:
            pending = self._pending.get(partition)
            if pending is None:
                return None
            return [o for o, finished in pending.items() if o < offset and not finished]

    def all_committable(self) -> dict[Hashable, int]:
        with self._lock:
            return dict(self._next)

    def in_flight(self, partition: Hashable | None = None) -> int:
        """Records polled and not yet done (in one partition, or in all)."""
        with self._lock:
            if partition is not None:
                return sum(1 for done in self._pending.get(partition, {}).values() if not done)
            return sum(1 for p in self._pending.values() for done in p.values() if not done)

    def drop(self, partitions: Iterable[Hashable]) -> None:
        """Forget partitions (revoked): their pending records will never be committed by us."""
        with self._lock:
            for partition in partitions:
                self._pending.pop(partition, None)
                self._next.pop(partition, None)


class SeqDedup:
    """Highest applied ``seq`` per stream, for the ``max_streams`` most recently seen streams."""

    def __init__(self, max_streams: int = 10_000) -> None:
        if max_streams < 1:
            raise ValueError(f"max_streams: expected >= 1, got {max_streams}")
        self.max_streams = max_streams
        self._last: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def is_repeat(self, stream_id: str, seq: int) -> bool:
        """True when ``seq`` is at or below the highest applied seq of ``stream_id``."""
        with self._lock:
            last = self._last.get(stream_id)
            return last is not None and seq <= last

    def applied(self, stream_id: str, seq: int) -> None:
        """Outputs of ``(stream_id, seq)`` are acknowledged."""
        with self._lock:
            last = self._last.pop(stream_id, -1)
            self._last[stream_id] = max(last, seq)
            while len(self._last) > self.max_streams:
                self._last.popitem(last=False)

    def forget(self, stream_ids: Iterable[str]) -> None:
        with self._lock:
            for stream_id in stream_ids:
                self._last.pop(stream_id, None)

    def __len__(self) -> int:
        return len(self._last)
