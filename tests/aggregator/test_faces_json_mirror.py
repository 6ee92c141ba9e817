"""The faces topic's JSON mirror (``faces_json_mirror``): the option, the processor's outputs, and the
real broker, where every faces record has its JSON twin with the same key and headers."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import closing
from typing import Any

import pytest
from google.protobuf import json_format
from kafka import TopicPartition
from support_aggregator import analysis, config, make_topics, produce, running, walking
from support_analyzer import read_all

from faceflow import topics
from faceflow.aggregator.cli import config_from_args
from faceflow.aggregator.config import AggregatorConfig
from faceflow.aggregator.processor import AggregatorProcessor
from faceflow.cli import build_parser
from faceflow.core.identity import Gallery
from faceflow.errors import ConfigError
from faceflow.kafka import admin
from faceflow.kafka.clients import make_consumer
from faceflow.kafka.headers import TraceParent, message_headers
from faceflow.kafka.json_mirror import to_json
from faceflow.service.consume import InRecord, OutRecord, Result
from faceflow.v1 import analysis_pb2, face_event_pb2

STREAM_ENDED = face_event_pb2.FACE_EVENT_TYPE_STREAM_ENDED
OBS = face_event_pb2.FACE_EVENT_TYPE_OBSERVATION


def one_walk(stream: str, person: str, frames: int) -> list[analysis_pb2.FrameAnalysis]:
    """A person walking through ``frames`` frames, then the stream's end (every lifecycle event)."""
    return [*walking(stream, person, range(frames)), analysis(stream, frames, [], eos=True)]


def in_records(messages: Sequence[analysis_pb2.FrameAnalysis]) -> list[InRecord]:
    return [
        InRecord(
            topic=topics.ANALYSES.name,
            partition=0,
            offset=offset,
            key=m.stream_id.encode(),
            value=m.SerializeToString(),
            headers=message_headers("faceflow.v1.FrameAnalysis", TraceParent.new()),
            timestamp_ms=0,
        )
        for offset, m in enumerate(messages)
    ]


def process(cfg: AggregatorConfig, messages: Sequence[analysis_pb2.FrameAnalysis]) -> list[Result]:
    processor = AggregatorProcessor(cfg, gallery=Gallery(), lock=threading.RLock(), restore=lambda _p: {})
    return processor.process(in_records(messages))


def on(topic: str, outputs: Sequence[OutRecord]) -> list[OutRecord]:
    return [o for o in outputs if o.topic == topic]


# -- the option -------------------------------------------------------------------------------------


def test_the_mirror_is_off_by_default_and_on_by_variable_or_flag() -> None:
    assert AggregatorConfig().faces_json_mirror is False
    assert AggregatorConfig().faces_json_topic == topics.FACES_JSON.name == "faceflow.faces.json.v1"
    env = {"FACEFLOW_AGGREGATOR_FACES_JSON_MIRROR": "true", "FACEFLOW_AGGREGATOR_FACES_JSON_TOPIC": "x.json"}
    from_env = AggregatorConfig.from_env(env)
    assert (from_env.faces_json_mirror, from_env.faces_json_topic) == (True, "x.json")
    args = build_parser().parse_args(["aggregator", "--faces-json-mirror", "--faces-json-topic", "y.json"])
    from_flags = config_from_args(args, {})
    assert (from_flags.faces_json_mirror, from_flags.faces_json_topic) == (True, "y.json")
    assert config_from_args(build_parser().parse_args(["aggregator"]), env).faces_json_mirror is True


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"faces_json_mirror": True, "faces_json_topic": "t"}, None),
        ({"faces_json_mirror": False, "faces_json_topic": "f", "faces_topic": "f"}, None),  # unused
        (
            {"faces_json_mirror": True, "faces_json_topic": "f", "faces_topic": "f"},
            r"faces_json_topic: expected a topic other than faces_topic .*got 'f'",
        ),
        ({"faces_json_topic": ""}, r"faces_json_topic: expected a name of 1\.\.249 characters"),
    ],
)
def test_the_mirror_topic_is_validated(overrides: dict[str, object], error: str | None) -> None:
    if error is None:
        assert AggregatorConfig(**overrides).faces_json_topic == overrides["faces_json_topic"]  # type: ignore[arg-type]
    else:
        with pytest.raises(ConfigError, match=error):
            AggregatorConfig(**overrides)  # type: ignore[arg-type]


# -- the processor (no broker) ------------------------------------------------------------------------


def test_each_faces_output_has_its_json_twin_in_the_same_result() -> None:
    """Same result = same delivery unit: the input offset is committed only once both are acked."""
    cfg = AggregatorConfig(faces_json_mirror=True)
    results = process(cfg, one_walk("u1", "ann", 7))
    total = 0
    for result in results:
        faces, mirror = on(cfg.faces_topic, result.outputs), on(cfg.faces_json_topic, result.outputs)
        assert len(faces) == len(mirror)
        for original, twin in zip(faces, mirror, strict=True):
            event = face_event_pb2.FaceEvent.FromString(original.value or b"")
            assert (twin.key, twin.headers, twin.partition) == (original.key, original.headers, None)
            assert twin.value == to_json(event)
            assert json_format.Parse(twin.value, face_event_pb2.FaceEvent()) == event
        total += len(faces)
    outputs = on(cfg.faces_topic, [o for r in results for o in r.outputs])
    types = {face_event_pb2.FaceEvent.FromString(o.value or b"").type for o in outputs}
    assert total > 7 and {OBS, STREAM_ENDED} <= types


def test_with_the_mirror_off_no_output_goes_to_the_json_topic() -> None:
    cfg = AggregatorConfig()
    outputs = [o for r in process(cfg, one_walk("u2", "bob", 7)) for o in r.outputs]
    assert on(cfg.faces_topic, outputs) and not on(cfg.faces_json_topic, outputs)


# -- the real broker ----------------------------------------------------------------------------------


def records_in(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds (the sum of its partitions' end offsets)."""
    with closing(make_consumer(bootstrap, group_id=None, client_id="test-count")) as consumer:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        assert partitions, f"{topic} does not exist"
        return sum(consumer.end_offsets(partitions).values())


def ended(streams: set[str]) -> Callable[[list[Any]], bool]:
    """Until every stream's STREAM_ENDED, its last event, is read."""

    def done(records: list[Any]) -> bool:
        events = [face_event_pb2.FaceEvent.FromString(r.value) for r in records]
        return streams <= {e.stream_id for e in events if e.type == STREAM_ENDED}

    return done


def mirror_topic(bootstrap: str, name: str) -> str:
    topic = f"{name}.faces-json"
    admin.ensure_topics(
        bootstrap, [topics.TopicSpec(name=topic, partitions=3, configs=topics.FACES_JSON.configs)]
    )
    return topic


@pytest.mark.integration
def test_every_faces_record_has_a_json_twin_with_its_key_and_headers(
    kafka_bootstrap: str, triton_url: str, unique_name: str
) -> None:
    t = make_topics(kafka_bootstrap, unique_name)  # 3 partitions, as the mirror
    mirror = mirror_topic(kafka_bootstrap, unique_name)
    cfg = config(
        kafka_bootstrap,
        triton_url,
        t,
        unique_name,
        faces_json_mirror=True,
        faces_json_topic=mirror,
        publish_embeddings=True,  # repeated floats through JSON too
    )
    with running(cfg):
        produce(kafka_bootstrap, t.analyses, one_walk("j1", "ann", 8) + one_walk("j2", "bob", 6))
        faces = read_all(kafka_bootstrap, t.faces, until=ended({"j1", "j2"}), timeout_s=60)
        twins = read_all(kafka_bootstrap, mirror, until=lambda r: len(r) >= len(faces), timeout_s=60)
    # per key, in offset order (one key, one partition): the same records, one as protobuf, one as JSON
    by_key: dict[bytes, list[tuple[int, list[Any], face_event_pb2.FaceEvent]]] = defaultdict(list)
    for r in faces:
        by_key[r.key].append((r.partition, r.headers, face_event_pb2.FaceEvent.FromString(r.value)))
    twins_by_key: dict[bytes, list[tuple[int, list[Any], face_event_pb2.FaceEvent]]] = defaultdict(list)
    for r in twins:
        event = json_format.Parse(r.value.decode("utf-8"), face_event_pb2.FaceEvent())
        assert r.value == to_json(event)
        twins_by_key[r.key].append((r.partition, r.headers, event))
    assert set(by_key) == {b"j1", b"j2"}
    assert twins_by_key == by_key
    assert any(e.embedding for _, _, e in by_key[b"j1"])
    content_type = ("content-type", b"application/x-protobuf; type=faceflow.v1.FaceEvent")
    assert all(headers[0] == content_type for _, headers, _ in by_key[b"j1"])
    # stopped: everything produced is delivered, so the topics hold exactly the pairs
    assert records_in(kafka_bootstrap, mirror) == records_in(kafka_bootstrap, t.faces) == len(faces)


@pytest.mark.integration
def test_with_the_mirror_off_nothing_reaches_the_json_topic(
    kafka_bootstrap: str, triton_url: str, unique_name: str
) -> None:
    t = make_topics(kafka_bootstrap, unique_name)
    mirror = mirror_topic(kafka_bootstrap, unique_name)
    cfg = config(kafka_bootstrap, triton_url, t, unique_name, faces_json_topic=mirror)
    with running(cfg):
        produce(kafka_bootstrap, t.analyses, one_walk("k1", "cy", 6))
        faces = read_all(kafka_bootstrap, t.faces, until=ended({"k1"}), timeout_s=60)
    assert len(faces) > 6
    assert records_in(kafka_bootstrap, mirror) == 0
