"""The consume loop's held-back outputs (``OutRecord.after``) without a broker: a fake producer
whose sends are acknowledged by the test, a fake consumer, the loop's own tracker and assignment.

What must hold: an output waits for every input below its offset (its own record apart) and for
its result's first outputs; a revoked partition drops only the outputs aimed at it, and the result
still finishes (its own partition stays committable); two held outputs for the same target
partition go out in the order they were produced, even when the later one is ready first.
"""

from __future__ import annotations

from typing import Any

from kafka import TopicPartition

from faceflow.service.consume import ConsumeLoop, InRecord, LoopConfig, OutRecord, Result

A0, A1 = TopicPartition("a", 0), TopicPartition("a", 1)


class Future:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def add_callback(self, fn: Any) -> Future:
        self.callbacks.append(fn)
        return self

    def add_errback(self, _fn: Any) -> Future:
        return self

    def ack(self) -> None:
        for fn in self.callbacks:
            fn(None)


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, bytes | None, Future]] = []

    def send(
        self, topic: str, *, key: Any = None, value: Any = None, headers: Any = None, partition: Any = None
    ) -> Future:
        future = Future()
        self.sent.append((topic, partition, value, future))
        return future

    def values(self, topic: str) -> list[bytes | None]:
        return [value for t, _, value, _ in self.sent if t == topic]

    def ack_all(self) -> None:
        for *_, future in list(self.sent):
            future.ack()


class Processor:
    def __init__(self) -> None:
        self.delivered_results: list[Result] = []

    def process(self, records: Any) -> list[Result]:
        return []

    def delivered(self, results: Any) -> None:
        self.delivered_results.extend(results)

    def revoked(self, partitions: Any) -> None:
        pass

    def commit_limit(self, partition: Any) -> None:
        return None


def make_loop() -> tuple[ConsumeLoop, Producer]:
    producer = Producer()
    loop = ConsumeLoop(
        LoopConfig(service="t", topics=("a",), dlq_topic=None, inline=True),
        consumer=object(),
        producer=producer,
        processor=Processor(),
    )
    loop._assigned |= {A0, A1}
    return loop, producer


def record(partition: int, offset: int) -> InRecord:
    return InRecord(
        topic="a", partition=partition, offset=offset, key=b"k", value=b"v", headers=[], timestamp_ms=0
    )


def poll(loop: ConsumeLoop, tp: TopicPartition, *offsets: int) -> None:
    for offset in offsets:
        loop.tracker.add(tp, offset)


def event(value: bytes) -> OutRecord:
    return OutRecord("faces", b"k", value)


def checkpoint(value: bytes, partition: int, offset: int) -> OutRecord:
    return OutRecord("state", b"s", value, partition=partition, after=(partition, offset))


def test_a_checkpoint_waits_for_its_events_and_for_every_earlier_input() -> None:
    loop, producer = make_loop()
    poll(loop, A0, 0, 1)
    loop._produce(Result(record(0, 0)), [event(b"e0")])
    loop._produce(Result(record(0, 1)), [event(b"e1"), checkpoint(b"c2", 0, 2)])
    loop._release_held()
    assert producer.values("state") == []
    producer.sent[1][3].ack()  # e1: the checkpoint's own events, but e0 (offset 0) is not done
    loop._release_held()
    assert producer.values("state") == []
    producer.sent[0][3].ack()  # e0
    loop._release_held()
    assert producer.values("state") == [b"c2"]
    producer.ack_all()
    assert loop.tracker.committable(A0) == 2


def test_a_revoked_partition_drops_only_its_outputs_and_the_result_still_finishes() -> None:
    loop, producer = make_loop()
    poll(loop, A0, 0, 1, 2)
    poll(loop, A1, 0)
    for tp, offset in ((A0, 0), (A0, 1), (A1, 0)):
        loop.tracker.done(tp, offset)
    # Record 2 of partition 0 evicts a stream of partition 1 (its checkpoint at partition 1's
    # offset) and checkpoints its own partition.
    outputs = [checkpoint(b"p1", 1, 1), checkpoint(b"p0", 0, 3)]
    loop._produce(Result(record(0, 2), outputs=tuple(outputs)), outputs)
    loop._revoke_offsets({A1})
    loop._release_held()
    assert producer.values("state") == [b"p0"]
    producer.ack_all()
    assert loop.tracker.committable(A0) == 3, "partition 0 is committable past the record"
    assert loop._held == type(loop._held)()


def test_the_carriers_partition_revoked_keeps_the_other_partitions_checkpoint() -> None:
    loop, producer = make_loop()
    poll(loop, A0, 0)
    poll(loop, A1, 0)
    loop.tracker.done(A1, 0)
    outputs = [checkpoint(b"p1", 1, 1), checkpoint(b"p0", 0, 1)]
    loop._produce(Result(record(0, 0), outputs=tuple(outputs)), outputs)
    loop._revoke_offsets({A0})
    loop._release_held()
    assert producer.values("state") == [b"p1"], "the evicted stream's checkpoint is still written"


def test_held_outputs_for_one_partition_go_out_in_production_order() -> None:
    loop, producer = make_loop()
    poll(loop, A0, 0)
    poll(loop, A1, 0)
    # An older checkpoint of a partition-1 stream rides on a partition-0 record whose events are
    # slow; a newer one of the same stream rides on a partition-1 record that is ready at once.
    older = [event(b"e0"), checkpoint(b"old", 1, 0)]
    loop._produce(Result(record(0, 0), outputs=tuple(older)), older)
    newer = [checkpoint(b"new", 1, 1)]
    loop._produce(Result(record(1, 0), outputs=tuple(newer)), newer)
    loop._release_held()
    assert producer.values("state") == [], "the newer one may not overtake the older one"
    producer.sent[0][3].ack()  # e0
    loop._release_held()
    assert producer.values("state") == [b"old", b"new"]
