"""``faceflow schema``: the published descriptor set decodes every topic without faceflow's code."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from kafka import KafkaProducer

from faceflow import schema, topics
from faceflow.cli import main
from faceflow.kafka import admin
from faceflow.kafka.headers import message_headers
from faceflow.v1 import common_pb2, face_event_pb2

ROOT = Path(__file__).resolve().parents[1]


def full_event() -> face_event_pb2.FaceEvent:
    """A FaceEvent with a value in every kind of field (scalars, enums, nested, repeated, WKTs)."""
    e = face_event_pb2.FaceEvent(
        type=face_event_pb2.FACE_EVENT_TYPE_OBSERVATION,
        stream_id="cam-1",
        seq=2**40 + 3,
        track_id="t-7",
        identity_id="id-00ff",
        identity_name="Ada",
        face_index=2,
        box=common_pb2.BoundingBox(x1=1.5, y1=2.0, x2=30.25, y2=40.0),
        detector_score=0.875,
        quality=0.5,
        embedding=[0.25, -0.5],
        track_observations=9,
        analyzed=True,
        results_seq=2**40 + 3,
        identity_distance=0.375,
    )
    e.pts.FromMilliseconds(1500)
    e.capture_time.FromJsonString("2026-12-07T20:00:00.250Z")
    e.raw.attributes.add(label="Smiling", probability=0.75)
    e.raw.age.scores.add(label="20-29", probability=0.5)
    e.raw.age.top_label = "20-29"
    e.raw.parsing.class_ids = b"\x00\x01\x02"
    e.raw.parsing.width = 3
    e.fused.evidence = 4
    e.best_shot.stream_id = "cam-1"
    e.best_shot.pts.FromSeconds(1)
    e.models.add().CopyFrom(common_pb2.ModelInfo())
    return e


def test_every_proto_file_is_in_the_set_with_its_imports_first() -> None:
    names = [f.name for f in schema.descriptor_set().file]
    ours = sorted(f"faceflow/v1/{p.name}" for p in (ROOT / "protos/faceflow/v1").glob("*.proto"))
    assert sorted(n for n in names if n.startswith("faceflow/")) == ours
    assert len(names) == len(set(names))
    for index, proto in enumerate(schema.descriptor_set().file):
        for dep in proto.dependency:
            assert dep in names[:index], f"{proto.name} imports {dep}, which does not come first"


def test_a_fresh_pool_decodes_a_full_event_to_the_same_json() -> None:
    pool = descriptor_pool.DescriptorPool()
    for proto in schema.descriptor_set().file:
        pool.Add(proto)
    dynamic = message_factory.GetMessageClass(pool.FindMessageTypeByName("faceflow.v1.FaceEvent"))
    event = full_event()
    decoded = dynamic.FromString(event.SerializeToString())
    assert json_format.MessageToDict(decoded) == json_format.MessageToDict(event)


def test_manifest_names_every_protobuf_topic_and_real_messages() -> None:
    manifest = schema.topic_manifest()
    pool = descriptor_pool.DescriptorPool()
    for proto in schema.descriptor_set().file:
        pool.Add(proto)
    entries = {t["topic"]: t for t in manifest["topics"]}  # type: ignore[attr-defined]
    assert set(entries) == {
        topics.FRAMES.name,
        topics.ANALYSES.name,
        topics.FACES.name,
        topics.FACES_JSON.name,
        topics.IDENTITIES.name,
        topics.IDENTITIES_AUDIT.name,
    }
    for entry in entries.values():
        assert pool.FindMessageTypeByName(entry["value"]).full_name == entry["value"]
        assert entry["value_format"] == ("json" if entry["topic"] == topics.FACES_JSON.name else "protobuf")
    mirror = entries[topics.FACES_JSON.name]
    assert (mirror["mirror_of"], mirror["json_schema"]) == (topics.FACES.name, schema.FACES_JSON_SCHEMA_NAME)
    assert {k: mirror[k] for k in ("value", "key", "headers")} == {
        k: entries[topics.FACES.name][k] for k in ("value", "key", "headers")
    }
    faces = entries[topics.FACES.name]["headers"]
    sent = dict(message_headers("faceflow.v1.FaceEvent"))
    assert faces["content-type"] == sent["content-type"].decode()
    assert faces["schema-version"] == sent["schema-version"].decode()


def test_cli_writes_the_files_and_refuses_a_file_as_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / schema.DESCRIPTOR_SET_NAME).stat().st_size > 1000
    written = json.loads((tmp_path / "s" / schema.FACES_JSON_SCHEMA_NAME).read_text())
    assert written == schema.faces_json_schema()
    assert (
        json.loads((tmp_path / "s" / schema.TOPICS_NAME).read_text())["descriptor_set"]
        == schema.DESCRIPTOR_SET_NAME
    )
    capsys.readouterr()
    (tmp_path / "f").write_text("x")
    assert main(["schema", "--out", str(tmp_path / "f")]) == 2
    assert "expected a directory" in capsys.readouterr().err


#: A consumer as a Kafka user writes it: kafka-python and protobuf only, faceflow made unimportable.
CONSUMER = textwrap.dedent(
    """
    import json, sys
    sys.modules["faceflow"] = None  # prove no faceflow code is used
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
    from kafka import KafkaConsumer

    bootstrap, topic, schema_dir = sys.argv[1:4]
    manifest = json.load(open(f"{schema_dir}/topics.json"))
    raw = open(f"{schema_dir}/{manifest['descriptor_set']}", "rb").read()
    fds = descriptor_pb2.FileDescriptorSet.FromString(raw)
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    value_type = next(t["value"] for t in manifest["topics"] if t["topic"] == "faceflow.faces.v1")
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(value_type))
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=20000, group_id=None)
    for record in consumer:
        event = cls.FromString(record.value)
        headers = {k: v.decode() for k, v in record.headers}
        print(json.dumps({"key": record.key.decode(), "headers": headers,
                          "event": json_format.MessageToDict(event)}))
        break
    """
)


@pytest.mark.integration
def test_a_consumer_without_faceflow_decodes_the_faces_topic(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    schema.write(tmp_path / "schema")
    topic = f"{unique_name}.faces"
    admin.ensure_topics(kafka_bootstrap, [topics.FACES.renamed(topic)])
    event = full_event()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    headers = message_headers("faceflow.v1.FaceEvent")
    producer.send(topic, key=b"cam-1", value=event.SerializeToString(), headers=headers).get(timeout=30)
    producer.close()
    out = subprocess.run(
        [sys.executable, "-c", CONSUMER, kafka_bootstrap, topic, str(tmp_path / "schema")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert line["key"] == "cam-1"
    assert line["headers"]["content-type"] == "application/x-protobuf; type=faceflow.v1.FaceEvent"
    assert line["event"] == json_format.MessageToDict(event)
    assert line["event"]["seq"] == str(2**40 + 3)  # canonical JSON: 64-bit integers as strings
    assert line["event"]["type"] == "FACE_EVENT_TYPE_OBSERVATION"
