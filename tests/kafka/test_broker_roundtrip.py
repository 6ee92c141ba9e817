"""Against the real broker: keyed frames with headers, and topic configs read back."""

from __future__ import annotations

import time
from contextlib import closing

import pytest

from faceflow import topics
from faceflow.kafka import admin
from faceflow.kafka.clients import header_dict, make_consumer, make_producer
from faceflow.kafka.headers import TRACEPARENT, TraceParent, message_headers
from faceflow.v1 import frame_pb2

pytestmark = pytest.mark.integration


def _frame(stream: str, seq: int, size: int = 1000) -> frame_pb2.Frame:
    frame = frame_pb2.Frame(
        stream_id=stream, seq=seq, image=bytes([seq % 256]) * size, content_type="image/jpeg"
    )
    frame.capture_time.GetCurrentTime()
    return frame


def test_keyed_frames_with_headers_round_trip(kafka_bootstrap: str, unique_name: str) -> None:
    spec = topics.FRAMES.renamed(unique_name)
    assert admin.ensure_topics(kafka_bootstrap, [spec]) == {unique_name: "created"}
    trace = TraceParent.new()
    sent = [_frame(stream, seq) for seq in range(5) for stream in ("cam-a", "cam-b")]
    with closing(make_producer(kafka_bootstrap, client_id="test")) as producer:
        futures = [
            producer.send(
                unique_name,
                key=f.stream_id.encode(),
                value=f.SerializeToString(),
                headers=message_headers("faceflow.v1.Frame", trace),
            )
            for f in sent
        ]
        metas = [fut.get(timeout=30) for fut in futures]
    # Same key -> same partition: per-stream order is preserved.
    by_stream = {}
    for frame, meta in zip(sent, metas, strict=True):
        by_stream.setdefault(frame.stream_id, set()).add(meta.partition)
    assert all(len(parts) == 1 for parts in by_stream.values())

    received: list[tuple[bytes, frame_pb2.Frame, dict[str, bytes]]] = []
    with closing(
        make_consumer(kafka_bootstrap, group_id=unique_name, client_id="test", topics=[unique_name])
    ) as c:
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            for batch in c.poll(timeout_ms=500).values():
                received += [
                    (r.key, frame_pb2.Frame.FromString(r.value), dict(header_dict(r.headers))) for r in batch
                ]
    assert len(received) == len(sent)
    for stream in ("cam-a", "cam-b"):
        seqs = [f.seq for key, f, _ in received if key == stream.encode()]
        assert seqs == [0, 1, 2, 3, 4], f"per-key order broken for {stream}: {seqs}"
    for key, frame, headers in received:
        assert frame.stream_id.encode() == key
        assert headers["content-type"] == b"application/x-protobuf; type=faceflow.v1.Frame"
        assert TraceParent.parse(headers[TRACEPARENT]).trace_id == trace.trace_id
    assert sorted((f.stream_id, f.seq) for _, f, _ in received) == sorted((f.stream_id, f.seq) for f in sent)


def test_frame_larger_than_kafka_default_limit_fits(kafka_bootstrap: str, unique_name: str) -> None:
    """A 3 MiB frame: over Kafka's 1 MiB defaults, within the frames topic's max.message.bytes."""
    spec = topics.FRAMES.renamed(unique_name)
    admin.ensure_topics(kafka_bootstrap, [spec])
    big = _frame("cam-big", 0, size=3 * 1024 * 1024)
    with closing(make_producer(kafka_bootstrap, client_id="test", compression=None)) as producer:
        producer.send(unique_name, key=b"cam-big", value=big.SerializeToString()).get(timeout=30)
    with closing(
        make_consumer(kafka_bootstrap, group_id=unique_name, client_id="test", topics=[unique_name])
    ) as c:
        got = []
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            for batch in c.poll(timeout_ms=500).values():
                got += batch
    assert frame_pb2.Frame.FromString(got[0].value) == big


def test_created_topics_configs_read_back_from_broker(runtime: object, kafka_bootstrap: str) -> None:
    """`dev up` created every DESIGN topic with its explicit configs and partition count."""
    names = [t.name for t in topics.ALL_TOPICS]
    configs = admin.topic_configs(kafka_bootstrap, names)
    partitions = admin.topic_partitions(kafka_bootstrap, names)
    for spec in topics.ALL_TOPICS:
        for key, value in spec.configs.items():
            assert configs[spec.name].get(key) == value, (spec.name, key, configs[spec.name])
        assert partitions[spec.name] == spec.partitions


def test_ensure_topics_is_idempotent(kafka_bootstrap: str, unique_name: str) -> None:
    spec = topics.AGGREGATOR_STATE.renamed(unique_name)
    assert admin.ensure_topics(kafka_bootstrap, [spec]) == {unique_name: "created"}
    assert admin.ensure_topics(kafka_bootstrap, [spec]) == {unique_name: "exists"}
    assert admin.topic_configs(kafka_bootstrap, [unique_name])[unique_name]["cleanup.policy"] == "compact"
