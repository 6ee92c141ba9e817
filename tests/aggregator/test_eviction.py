"""Eviction and restore on the real broker (issue 20.4): a replica over ``max_streams`` checkpoints
the least recently seen stream at *its own* partition's offset, drops it, and restores it with the
same track and identity when it sends again.

The old code stamped an evicted stream's checkpoint with the offset of the partition whose record
was being processed. Here that partition is far ahead of the evicted stream's, so such a stamp
would lie past the end of the evicted stream's partition, and the commit limit would let the
committed offset run past records whose effects no checkpoint holds.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing

import pytest
from kafka import TopicPartition
from support_aggregator import config, make_topics, produce, running, walking
from support_analyzer import read_all

from faceflow.aggregator.state import Checkpoint, decode_checkpoint
from faceflow.kafka.clients import make_consumer
from faceflow.kafka.membership import key_partition
from faceflow.service.config import DEFAULT_TRITON_URL
from faceflow.v1 import face_event_pb2

pytestmark = pytest.mark.integration

PARTITIONS = 3
OBS = face_event_pb2.FACE_EVENT_TYPE_OBSERVATION


def streams_in(partition: int, count: int, prefix: str) -> list[str]:
    names = (f"{prefix}{i}" for i in range(10_000))
    chosen = [n for n in names if key_partition(n.encode(), PARTITIONS) == partition]
    return chosen[:count]


def observations(records: list) -> list[face_event_pb2.FaceEvent]:
    return [e for e in (face_event_pb2.FaceEvent.FromString(r.value) for r in records) if e.type == OBS]


def has(stream: str, seq: int) -> Callable[[list], bool]:
    return lambda records: any(e.stream_id == stream and e.seq == seq for e in observations(records))


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    with closing(make_consumer(bootstrap, group_id=None, client_id="test-ends")) as consumer:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}


def test_an_evicted_stream_is_stamped_with_its_own_partition_and_resumes_its_track(
    kafka_bootstrap: str, unique_name: str
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=PARTITIONS)
    (b,) = streams_in(1, 1, "b")
    a1, a2 = streams_in(0, 2, "a")
    # Checkpoints only from evictions (and the stop): no frame count or interval comes due.
    cfg = config(
        kafka_bootstrap,
        DEFAULT_TRITON_URL,
        t,
        unique_name,
        max_streams=2,
        checkpoint_frames=1000,
        checkpoint_interval_s=3600.0,
    )
    with running(cfg) as (service, _stub):
        produce(kafka_bootstrap, t.analyses, walking(b, "bob", range(3)))  # partition 1, offsets 0-2
        read_all(kafka_bootstrap, t.faces, until=has(b, 2))
        # Partition 0 runs ten records ahead, then a2's first record pushes b (the oldest) out.
        produce(kafka_bootstrap, t.analyses, walking(a1, "ann", range(10)))
        read_all(kafka_bootstrap, t.faces, until=has(a1, 9))
        produce(kafka_bootstrap, t.analyses, walking(a2, "cy", range(4)))
        read_all(kafka_bootstrap, t.faces, until=has(a2, 3))
        assert service.processor is not None
        with service.processor.lock:
            assert service.processor.stream(b) is None, "b should have been evicted"
        evicted = read_all(
            kafka_bootstrap, t.state, until=lambda rs: any(r.key == b.encode() for r in rs), timeout_s=30
        )
        # b returns: restored from its checkpoint (a1, now the oldest, is evicted in turn).
        produce(kafka_bootstrap, t.analyses, walking(b, "bob", range(3, 8), x0=22.0))
        faces = read_all(kafka_bootstrap, t.faces, until=has(b, 7))
        ends = end_offsets(kafka_bootstrap, t.analyses)
    state = read_all(kafka_bootstrap, t.state, until=lambda rs: len(rs) >= len(evicted), timeout_s=30)

    checkpoints: list[tuple[int, Checkpoint]] = [(r.partition, decode_checkpoint(r.value)) for r in state]
    first_b = next(c for p, c in checkpoints if c.stream_id == b)
    assert (first_b.partition, first_b.next_offset) == (1, 3), first_b  # its own partition's offset
    for state_partition, c in checkpoints:
        assert c.partition == state_partition == key_partition(c.stream_id.encode(), PARTITIONS)
        assert c.next_offset <= ends[c.partition], (c.stream_id, c.next_offset, ends)

    by_seq = {e.seq: (e.track_id, e.identity_id) for e in observations(faces) if e.stream_id == b}
    assert by_seq[7] == by_seq[2], by_seq  # same track, same identity after the restore
    assert by_seq[2][0] == "t1"
