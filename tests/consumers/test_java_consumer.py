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

import pytest
from google.protobuf import json_format
from support_consumers import (
    BAD_ARGUMENTS,
    FACE_EVENT,
    U64_MAX,
    assert_consumer_reads,
    assert_one_error_line,
    assert_too_few_records_time_out,
    descriptor_set,
    ensure_consumer_jars,
    expected_json,
    faces_records,
    run_java_consumer,
)
from support_runtime import shared_cache

from faceflow.v1 import common_pb2, face_event_pb2

pytestmark = pytest.mark.integration


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


def mirror_value(event: face_event_pb2.FaceEvent) -> bytes:
    """The JSON mirror's value of ``event`` (what faceflow.kafka.json_mirror writes)."""
    return json_format.MessageToJson(event, indent=None, always_print_fields_with_no_presence=True).encode()


#: The producer of this module's records.
CLIENT_ID = "test-java-consumer"


def test_java_decodes_real_faces_records_to_the_json_python_makes(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    _, got = assert_consumer_reads(
        run_java_consumer,
        kafka_bootstrap,
        f"{unique_name}.faces",
        faces_records(events()),
        encode=lambda e: e.SerializeToString(),
        mode=["--descriptor-set", descriptor_set(tmp_path), "--message", FACE_EVENT],
        expected=expected_json,
        client_id=CLIENT_ID,
    )
    full = got[str(2**40 + 3)]["value"]
    assert full["resultsSeq"] == str(U64_MAX)  # unsigned, as a string, in both runtimes
    assert full["raw"]["parsing"]["classIds"] == "AAEC/xB/"
    sparse = got["7"]["value"]
    assert sparse["identityName"] == "" and sparse["embedding"] == [] and sparse["faceIndex"] == 0


def test_connects_json_converter_reads_the_json_mirror_form(kafka_bootstrap: str, unique_name: str) -> None:
    _, got = assert_consumer_reads(
        run_java_consumer,
        kafka_bootstrap,
        f"{unique_name}.faces.json",
        faces_records(events()),  # a mirror record has its original's key and headers
        encode=mirror_value,
        mode=["--json"],
        expected=lambda e: json.loads(mirror_value(e)),
        client_id=CLIENT_ID,
    )
    types = got[str(2**40 + 3)]["connectTypes"]
    # What a sink sees without a schema: 64-bit integers stay strings, 32-bit ones become INT64.
    assert types["seq"] == "String" and types["faceIndex"] == "Long" and types["analyzed"] == "Boolean"
    assert types["raw"] == "Map" and types["embedding"] == "List" and types["captureTime"] == "String"
    assert types["detectorScore"] == "Double" and types["summary"] == "Map"


def test_a_message_the_descriptor_set_lacks_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = run_java_consumer(
        [
            "--bootstrap", "127.0.0.1:9",
            "--topic", "t",
            "--descriptor-set", descriptor_set(tmp_path),
            "--message", "faceflow.v1.NoSuchEvent",
            "--count", "1",
        ]
    )  # fmt: skip
    assert_one_error_line(out, 2, "has no message 'faceflow.v1.NoSuchEvent'")


@pytest.mark.parametrize(("args", "message"), BAD_ARGUMENTS)
def test_a_bad_argument_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    out = run_java_consumer(args)
    assert_one_error_line(out, 2, message)


def test_too_few_records_time_out_with_one_line_and_exit_1(kafka_bootstrap: str, unique_name: str) -> None:
    assert_too_few_records_time_out(run_java_consumer, kafka_bootstrap, f"{unique_name}.empty")


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
