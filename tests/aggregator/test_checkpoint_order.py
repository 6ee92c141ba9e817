"""A checkpoint never reaches the state topic before the face events it covers (issue 20.3).

The fault is injected between the two: the aggregator's producer (the real one, on the real
broker) holds every faces-topic send unacknowledged while analyses cross several checkpoint
boundaries. A checkpoint sent in that window would let a crash restore state whose events were
never published: the new owner would drop their replay as repeats, and the events would be lost.
So while the faces sends are held the state topic must stay empty; once they are released, the
checkpoint arrives, and every event below its offset is on the faces topic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.future import Future
from support_aggregator import config, make_topics, produce, running, walking
from support_analyzer import read_all

import faceflow.aggregator.service as aggregator_service
from faceflow.aggregator.state import decode_checkpoint
from faceflow.kafka.clients import make_consumer
from faceflow.kafka.membership import key_partition
from faceflow.service.config import DEFAULT_TRITON_URL
from faceflow.v1 import face_event_pb2

pytestmark = pytest.mark.integration

FRAMES = 12  # checkpoint_frames=5: checkpoints are due at the 5th and the 10th frame


class HeldProducer:
    """The real producer, with sends to one topic held unacknowledged until :meth:`release`."""

    def __init__(self, real: Any, topic: str) -> None:
        self._real = real
        self._topic = topic
        self._lock = threading.Lock()
        self._held: list[tuple[tuple[Any, ...], dict[str, Any], Future]] | None = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if topic == self._topic and self._held is not None:
                future = Future()
                self._held.append(((topic, *args), kwargs, future))
                return future
        return self._real.send(topic, *args, **kwargs)

    def held(self) -> int:
        with self._lock:
            return 0 if self._held is None else len(self._held)

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held or [], None
        for args, kwargs, future in held:
            sent = self._real.send(*args, **kwargs)
            sent.add_callback(future.success)
            sent.add_errback(future.failure)


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def records_in(bootstrap: str, topic: str, partitions: int) -> int:
    with closing(make_consumer(bootstrap, group_id=None, client_id="test-state-count")) as consumer:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        return sum(end[tp] - begin[tp] for tp in tps)


def test_no_checkpoint_reaches_the_state_topic_while_its_events_are_unacknowledged(
    kafka_bootstrap: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = make_topics(kafka_bootstrap, unique_name)
    producers: list[HeldProducer] = []
    real_make_producer = aggregator_service.make_producer

    def held_make_producer(*args: Any, **kwargs: Any) -> HeldProducer:
        producers.append(HeldProducer(real_make_producer(*args, **kwargs), t.faces))
        return producers[-1]

    monkeypatch.setattr(aggregator_service, "make_producer", held_make_producer)
    cfg = config(kafka_bootstrap, DEFAULT_TRITON_URL, t, unique_name, checkpoint_interval_s=3600.0)
    stream = "cam-held"
    with running(cfg) as (service, _stub):
        assert len(producers) == 1
        producer = producers[0]
        produce(kafka_bootstrap, t.analyses, walking(stream, "ann", range(FRAMES)))
        # Every frame applied and its observation handed to the producer (and held there).
        wait_for(lambda: producer.held() >= FRAMES, f"{FRAMES} held faces sends")
        assert service.processor is not None and service.processor.events >= FRAMES
        time.sleep(2.0)  # a window in which a checkpoint sent with its events would have arrived
        assert records_in(kafka_bootstrap, t.state, 3) == 0, "a checkpoint went out before its events"

        producer.release()
        wait_for(lambda: records_in(kafka_bootstrap, t.state, 3) >= 1, "the checkpoint after the release")
        state = read_all(kafka_bootstrap, t.state, until=lambda records: len(records) >= 1, timeout_s=30)
        faces = read_all(
            kafka_bootstrap,
            t.faces,
            until=lambda records: len(records) >= FRAMES,
            timeout_s=60,
        )

    checkpoints = [decode_checkpoint(r.value) for r in state]
    partition = key_partition(stream.encode(), 3)
    assert {c.partition for c in checkpoints} == {partition}
    covered = max(c.next_offset for c in checkpoints)
    assert covered in (5, 10, FRAMES), covered  # a checkpoint boundary, or the stop's final one
    # The stream is alone in its fresh partition: offset k is seq k. Every seq below the checkpoint's
    # offset has its observation on the faces topic.
    seqs = {
        e.seq
        for e in (face_event_pb2.FaceEvent.FromString(r.value) for r in faces)
        if e.type == face_event_pb2.FACE_EVENT_TYPE_OBSERVATION
    }
    assert set(range(covered)) <= seqs
