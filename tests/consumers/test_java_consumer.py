"""A consumer that is not Python reads the faces topic: Java, with the published descriptor set only.

``tests/consumers/java/FacesConsumer.java`` (kafka-clients, protobuf-java, protobuf-java-util, run by
the JDK's source launcher) decodes real records from the real broker with ``DynamicMessage``; its
``JsonFormat`` output must equal what Python's ``json_format`` makes of the same event, field for
field. Its ``--json`` mode reads the JSON mirror's form through Kafka Connect's stock
``JsonConverter`` (``schemas.enable=false``), as a sink connector would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from support_consumers import ensure_consumer_jars, run_java_consumer
from support_runtime import shared_cache

from faceflow import schema, topics
from faceflow.kafka import admin
from faceflow.kafka.clients import make_producer
from faceflow.kafka.headers import HeaderList, TraceParent, message_headers
from faceflow.v1 import common_pb2, face_event_pb2

pytestmark = pytest.mark.integration

FACE_EVENT = "faceflow.v1.FaceEvent"
U64_MAX = 2**64 - 1


def results(base: float) -> face_event_pb2.FaceResults:
    """FaceResults with every field set. Floats are dyadic (exact in binary, short in decimal), so
    the comparison is about the wire and the JSON mapping, not about how Java 17 prints a float."""
    r = face_event_pb2.FaceResults(
        landmarks68=[common_pb2.Point(x=base + i, y=base + i + 0.5) for i in range(3)],
        head_pose=common_pb2.HeadPose(pitch=-0.125, yaw=0.25, roll=base / 8),
        attributes=[face_event_pb2.LabelScore(label="Smiling", probability=0.75, confidence=0.5)],
        occlusion=[face_event_pb2.LabelScore(label="left_eye", probability=0.0625, confidence=0.25)],
        age=face_event_pb2.Distribution(
            scores=[
                face_event_pb2.LabelScore(label="20-29", probability=0.625),
                face_event_pb2.LabelScore(label="30-39", probability=0.375),
            ],
            top_label="20-29",
            top_probability=0.625,
            confidence=0.125,
        ),
        gender=face_event_pb2.Distribution(
            scores=[face_event_pb2.LabelScore(label="female", probability=0.875)],
            top_label="female",
            top_probability=0.875,
            confidence=0.75,
        ),
        race=face_event_pb2.Distribution(
            scores=[face_event_pb2.LabelScore(label="asian", probability=0.5)],
            top_label="asian",
            top_probability=0.5,
            confidence=0.0625,
        ),
        parsing=common_pb2.ParsingMask(
            width=3,
            height=2,
            class_ids=b"\x00\x01\x02\xff\x10\x7f",
            compression=common_pb2.MASK_COMPRESSION_NONE,
            crop_box=common_pb2.BoundingBox(x1=1.0, y1=2.0, x2=4.0, y2=4.0),
        ),
        parsing_areas=[face_event_pb2.LabelScore(label="skin", probability=0.5)],
        evidence=4,
        weight=2.5,
    )
    return r


def full_event(stream_id: str, seq: int) -> face_event_pb2.FaceEvent:
    """A FaceEvent with every field of face_event.proto set (docs/consumers.md promises them all)."""
    e = face_event_pb2.FaceEvent(
        type=face_event_pb2.FACE_EVENT_TYPE_TRACK_ENDED,
        stream_id=stream_id,
        seq=seq,
        track_id="t-7",
        identity_id="id-00ff",
        identity_name="Zoë Ådahl",  # UTF-8 beyond ASCII
        face_index=2,
        box=common_pb2.BoundingBox(x1=1.5, y1=2.0, x2=30.25, y2=40.0),
        detector_score=0.875,
        quality=0.5,
        raw=results(10.0),
        fused=results(20.0),
        embedding=[0.25, -0.5, 1.0, 0.0],
        models=[
            common_pb2.ModelInfo(
                name="facexformer", version="1", weights="sha256:ab", random_init=True, variant="swin_b"
            ),
            common_pb2.ModelInfo(name="face_detector", version="2", weights="sha256:cd"),
        ],
        track_observations=9,
        analyzed=True,
        results_seq=U64_MAX,
        identity_distance=0.375,
        best_shot=face_event_pb2.BestShot(
            stream_id=stream_id, seq=seq - 1, box=common_pb2.BoundingBox(x1=3.0, x2=5.0), quality=0.75
        ),
        summary=face_event_pb2.TrackSummary(
            first_seq=2**53 + 1,  # not exact as a double: proto3 JSON writes 64-bit integers as strings
            last_seq=seq,
            observations=9,
            analyzed_observations=5,
            end_reason="end_of_stream",
        ),
    )
    e.pts.FromMilliseconds(1500)
    e.capture_time.FromJsonString("2026-12-07T20:00:00.250Z")
    e.best_shot.pts.FromNanoseconds(1_000_000_001)
    e.summary.first_pts.FromSeconds(0)
    e.summary.last_pts.FromMilliseconds(1500)
    return e


def events() -> list[face_event_pb2.FaceEvent]:
    """A full event, and one with only a few fields (every other one is printed with its default)."""
    sparse = face_event_pb2.FaceEvent(
        type=face_event_pb2.FACE_EVENT_TYPE_STREAM_ENDED, stream_id="cam-2", seq=7
    )
    return [full_event("cam-ü", 2**40 + 3), sparse]


def expected_json(event: face_event_pb2.FaceEvent) -> Any:
    return json.loads(json_format.MessageToJson(event, always_print_fields_with_no_presence=True))


def mirror_value(event: face_event_pb2.FaceEvent) -> bytes:
    """The JSON mirror's value of ``event`` (what faceflow.kafka.json_mirror writes)."""
    return json_format.MessageToJson(event, indent=None, always_print_fields_with_no_presence=True).encode()


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, HeaderList]]) -> None:
    admin.ensure_topics(bootstrap, [topics.FACES.renamed(topic)])
    # The services' producer settings (lz4-compressed batches, idempotent): the consumer must read them.
    producer = make_producer(bootstrap, client_id="test-java-consumer")
    for key, value, headers in records:
        producer.send(topic, key=key, value=value, headers=headers).get(timeout=30)
    producer.close()


def consume(*args: str) -> list[dict[str, Any]]:
    out = run_java_consumer(args)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def by_seq(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Lines keyed by the event's seq (records of a topic with several partitions come in any order)."""
    return {line["value"]["seq"]: line for line in lines}


def faces_records() -> list[tuple[face_event_pb2.FaceEvent, HeaderList]]:
    return [(e, message_headers(FACE_EVENT, TraceParent.new())) for e in events()]


def test_java_decodes_real_faces_records_to_the_json_python_makes(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    schema.write(tmp_path / "schema")
    topic = f"{unique_name}.faces"
    sent = faces_records()
    produce(kafka_bootstrap, topic, [(e.stream_id.encode(), e.SerializeToString(), h) for e, h in sent])

    lines = consume(
        "--bootstrap", kafka_bootstrap,
        "--topic", topic,
        "--descriptor-set", str(tmp_path / "schema" / schema.DESCRIPTOR_SET_NAME),
        "--message", FACE_EVENT,
        "--count", str(len(sent)),
    )  # fmt: skip

    got = by_seq(lines)
    assert len(lines) == len(sent) == len(got)
    for event, headers in sent:
        line = got[str(event.seq)]
        assert line["value"] == expected_json(event)
        assert line["key"] == event.stream_id
        assert line["headers"] == {name: value.decode() for name, value in headers}
    full = got[str(2**40 + 3)]["value"]
    assert full["resultsSeq"] == str(U64_MAX)  # unsigned, as a string, in both runtimes
    assert full["raw"]["parsing"]["classIds"] == "AAEC/xB/"
    sparse = got["7"]["value"]
    assert sparse["identityName"] == "" and sparse["embedding"] == [] and sparse["faceIndex"] == 0


def test_connects_json_converter_reads_the_json_mirror_form(kafka_bootstrap: str, unique_name: str) -> None:
    topic = f"{unique_name}.faces.json"
    sent = faces_records()  # a mirror record has its original's key and headers
    produce(kafka_bootstrap, topic, [(e.stream_id.encode(), mirror_value(e), h) for e, h in sent])

    lines = consume("--json", "--bootstrap", kafka_bootstrap, "--topic", topic, "--count", str(len(sent)))

    got = by_seq(lines)
    assert len(lines) == len(sent) == len(got)
    for event, headers in sent:
        line = got[str(event.seq)]
        assert line["value"] == json.loads(mirror_value(event))
        assert line["key"] == event.stream_id
        assert line["headers"] == {name: value.decode() for name, value in headers}
    types = got[str(2**40 + 3)]["connectTypes"]
    # What a sink sees without a schema: 64-bit integers stay strings, 32-bit ones become INT64.
    assert types["seq"] == "String" and types["faceIndex"] == "Long" and types["analyzed"] == "Boolean"
    assert types["raw"] == "Map" and types["embedding"] == "List" and types["captureTime"] == "String"
    assert types["detectorScore"] == "Double" and types["summary"] == "Map"


def test_a_message_the_descriptor_set_lacks_is_one_line_and_exit_2(tmp_path: Path) -> None:
    schema.write(tmp_path / "schema")
    out = run_java_consumer(
        [
            "--bootstrap", "127.0.0.1:9",
            "--topic", "t",
            "--descriptor-set", str(tmp_path / "schema" / schema.DESCRIPTOR_SET_NAME),
            "--message", "faceflow.v1.NoSuchEvent",
            "--count", "1",
        ]
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1
    assert "has no message 'faceflow.v1.NoSuchEvent'" in out.stderr


#: A valid command line up to the mode (``--json`` or a descriptor set).
BASE = ["--bootstrap", "b:1", "--topic", "t", "--count", "1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--topic", "t", "--count", "1", "--json"], "--bootstrap is missing"),
        ([*BASE[:-1], "0", "--json"], "--count: expected a positive integer, got '0'"),
        (BASE, "expected either --descriptor-set and --message, or --json"),
        ([*BASE, "--json", "--message", "M"], "expected either --descriptor-set and --message, or --json"),
        ([*BASE, "--message", "M"], "--descriptor-set and --message go together"),
        ([*BASE, "--json", "--verbose"], "unknown argument '--verbose'"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    out = run_java_consumer(args)
    assert (out.returncode, out.stdout, out.stderr.count("\n")) == (2, "", 1)
    assert message in out.stderr


def test_too_few_records_time_out_with_one_line_and_exit_1(kafka_bootstrap: str, unique_name: str) -> None:
    topic = f"{unique_name}.empty"
    admin.ensure_topics(kafka_bootstrap, [topics.FACES.renamed(topic)])
    out = run_java_consumer(
        ["--json", "--bootstrap", kafka_bootstrap, "--topic", topic, "--count", "1", "--timeout-s", "3"]
    )
    assert (out.returncode, out.stdout, out.stderr.count("\n")) == (1, "", 1)
    assert f"timed out after 3 s with 0 of 1 records from {topic}" in out.stderr


def test_fetching_the_jars_again_runs_no_maven(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = shared_cache()
    libs = ensure_consumer_jars(cache)  # fetches on a machine where `make setup` has not

    def no_subprocess(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        raise AssertionError(f"ran {args!r} on a second fetch")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    assert ensure_consumer_jars(cache) == libs
    assert {p.name.rsplit("-", 1)[0] for p in libs.glob("*.jar")} >= {
        "protobuf-java",
        "protobuf-java-util",
        "connect-json",
        "connect-api",
    }
