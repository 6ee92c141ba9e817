"""The consume loop's contract: the records a service gets and produces, what it answers for each
record (:class:`Result`), the :class:`Processor` a service plugs in, and the loop's settings.

Kept apart from :mod:`faceflow.service.consume` (the loop itself) so that a processor, its tests
and a reader of the delivery contract need only these types; ``consume`` re-exports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import TopicPartition

from faceflow.kafka.headers import HeaderList

#: Header names on a DLQ record (the original headers are kept as they were).
DLQ_REASON = "faceflow-dlq-reason"
DLQ_SOURCE = "faceflow-dlq-source"
DLQ_SERVICE = "faceflow-dlq-service"


@dataclass(frozen=True)
class InRecord:
    """One consumed record, with the partition epoch it was polled in (see rebalances)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: HeaderList
    timestamp_ms: int
    epoch: int = 0

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True)
class OutRecord:
    """One record to produce. ``partition`` None lets the producer's partitioner choose (by key).

    ``after`` holds the record back: ``(input partition, offset)`` sends it only once every input
    record of that partition (of the result's input topic) below ``offset`` is done, apart from the
    result's own record, and once the result's other outputs are acknowledged. The aggregator's
    checkpoints use it, so a checkpoint never reaches the state topic before the events it covers
    (a crash in between would otherwise restore state whose events were never published).
    """

    topic: str
    key: bytes | None
    value: bytes | None
    headers: HeaderList = field(default_factory=list)
    partition: int | None = None
    after: tuple[int, int] | None = None


@dataclass(frozen=True)
class Result:
    """What became of one input record: its outputs, or a DLQ reason, or nothing (a repeat).

    ``token`` is the processor's own note (e.g. ``(stream_id, seq)`` to mark applied on delivery).
    """

    record: InRecord
    outputs: tuple[OutRecord, ...] = ()
    dlq_reason: str | None = None
    token: Any = None


class Processor(Protocol):
    """What a service plugs into the loop."""

    def process(self, records: Sequence[InRecord]) -> Sequence[Result]:
        """One Result per record, in order. Raise ``Unavailable`` to retry the whole batch later."""
        ...

    def delivered(self, results: Sequence[Result]) -> None:
        """Every output of these results is acknowledged (called in the loop's thread)."""
        ...

    def revoked(self, partitions: set[TopicPartition]) -> None:
        """These partitions left this member: drop their state."""
        ...

    def commit_limit(self, partition: TopicPartition) -> int | None:
        """The highest offset (exclusive) the processor allows to commit, or None for no limit."""
        ...

    # Optional: ``final_results() -> Sequence[Result]``, called once when stopping, after the last
    # batch; its results (with ``record.offset == -1``) are produced before the final commit.
    # Optional: ``assigned(partitions: set[TopicPartition]) -> None``, called by the loop's thread
    # with partitions newly assigned (inside the rebalance callback: keep it short).
    # Optional: ``pending_results() -> Sequence[Result]``, called by the loop's thread on every turn;
    # results the processor wants sent now, not tied to an input record (``record.offset == -1``),
    # e.g. the aggregator's erasure checkpoints.


@dataclass(frozen=True, kw_only=True)
class LoopConfig:
    """Batching, backpressure and retry settings of a :class:`ConsumeLoop`."""

    service: str
    topics: tuple[str, ...]
    dlq_topic: str | None
    max_batch_records: int = 16
    max_wait_ms: int = 20
    max_pending: int = 256
    concurrency: int = 1
    inline: bool = False
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    commit_interval_s: float = 0.5
    poll_timeout_ms: int = 100

    def __post_init__(self) -> None:
        if not self.topics:
            raise ValueError("topics: expected at least one topic to consume, got none")
        for name in ("max_batch_records", "max_pending", "concurrency", "poll_timeout_ms"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms: expected >= 0, got {self.max_wait_ms}")
        if self.max_pending < self.max_batch_records:
            raise ValueError(
                f"max_pending: expected >= max_batch_records ({self.max_batch_records}), got "
                f"{self.max_pending}"
            )
        if not 0 < self.retry_initial_s <= self.retry_max_s:
            raise ValueError(
                f"retry: expected 0 < initial <= max, got {self.retry_initial_s}, {self.retry_max_s}"
            )
