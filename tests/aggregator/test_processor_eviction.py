"""The aggregator processor's eviction bookkeeping, without a broker: the evicted index is per
partition and bounded, a revoke drops it, an evicted stream's unacknowledged checkpoint is what it
resumes from, and the checkpoint is freed once the topic acknowledges it."""

from __future__ import annotations

import threading

import pytest
from kafka import TopicPartition
from support_aggregator import walking

import faceflow.aggregator.processor as processor_module
from faceflow import topics
from faceflow.aggregator.config import AggregatorConfig
from faceflow.aggregator.processor import AggregatorProcessor
from faceflow.aggregator.state import Checkpoint
from faceflow.core.identity import Gallery
from faceflow.service.consume import InRecord, Result
from faceflow.v1 import analysis_pb2

TOPIC = "t.analyses"


class Feed:
    """Analysis records with per-partition offsets, as the consume loop hands them over."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}

    def record(self, message: analysis_pb2.FrameAnalysis, partition: int) -> InRecord:
        offset = self.next.get(partition, 0)
        self.next[partition] = offset + 1
        return InRecord(
            topic=TOPIC,
            partition=partition,
            offset=offset,
            key=message.stream_id.encode(),
            value=message.SerializeToString(),
            headers=[],
            timestamp_ms=0,
        )


def make(max_streams: int, reads: list[int] | None = None) -> AggregatorProcessor:
    def restore(partition: int) -> dict[str, Checkpoint]:
        if reads is not None:
            reads.append(partition)
        return {}

    cfg = AggregatorConfig(max_streams=max_streams, checkpoint_frames=1000, checkpoint_interval_s=3600.0)
    return AggregatorProcessor(cfg, gallery=Gallery(), lock=threading.RLock(), restore=restore)


def frames(stream: str, seqs: range, partition: int, feed: Feed) -> list[InRecord]:
    return [feed.record(m, partition) for m in walking(stream, "ann", seqs)]


def checkpoints(results: list[Result]) -> list[tuple[str, int, tuple[int, int] | None]]:
    return [
        (o.key.decode(), o.partition or 0, o.after)
        for r in results
        for o in r.outputs
        if o.topic == topics.AGGREGATOR_STATE.name and o.key is not None
    ]


def test_evicting_stamps_the_evicted_streams_partition_and_keeps_the_checkpoint_until_acked() -> None:
    feed = Feed()
    p = make(max_streams=1)
    p.process(frames("b", range(3), 1, feed))  # partition 1, offsets 0-2
    results = p.process(frames("a", range(10), 0, feed))  # a's first record evicts b
    assert checkpoints(results) == [("b", 1, (1, 3))]  # partition 1's offset, not partition 0's
    state = p.partitions[1]
    assert list(state.evicted) == ["b"] and state.unacked["b"].next_offset == 3
    p.delivered([r for r in results if r.token is not None])  # the topic acknowledged it
    p.process(frames("a", range(10, 11), 0, feed))
    assert "b" not in state.unacked, "an acknowledged checkpoint is freed by the next batch"


def test_a_returning_stream_resumes_from_its_unacknowledged_checkpoint_without_reading_kafka() -> None:
    feed, reads = Feed(), []
    p = make(max_streams=1, reads=reads)
    p.process(frames("b", range(3), 1, feed))
    p.process(frames("a", range(2), 0, feed))  # b evicted, its checkpoint not acknowledged
    before = p.partitions[1].unacked["b"].snapshot
    assert reads == [1, 0]  # each partition read once, on its first record
    p.process(frames("b", range(3, 4), 1, feed))
    assert reads == [1, 0], "b came back from memory, not from the state topic"
    owned = p.stream("b")
    assert owned is not None and owned.analytics.snapshot()["last_seq"] == 3
    assert before["last_seq"] == 2


def test_the_evicted_index_is_bounded_per_partition_and_dropped_on_revoke(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processor_module, "MIN_EVICTED_REMEMBERED", 3)
    feed = Feed()
    p = make(max_streams=1)  # remembered: max(3, 16 x 1) = 16
    for i in range(20):
        p.process(frames(f"s{i}", range(1), 2, feed))
    state = p.partitions[2]
    assert len(state.evicted) == 16
    assert next(iter(state.evicted)) == "s3"  # s0-s2 forgotten: 19 evicted, 16 remembered
    assert set(state.unacked) <= set(state.evicted)
    p.revoked({TopicPartition(TOPIC, 2)})
    assert 2 not in p.partitions and all(o.partition != 2 for _, o in p.owned())
