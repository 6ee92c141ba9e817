"""Tests for faceflow.run.events_json: the faces.jsonl line, its JSON Schema and the writers."""

from __future__ import annotations

import base64
import copy
import json
import zlib
from typing import Any

import jsonschema
import numpy as np
import pytest
import support_run as sr

from faceflow.models.contract import AGE_BINS, ATTRIBUTES, GENDERS, PARSING_CLASSES, RACES, VISIBILITY_POINTS
from faceflow.run import events_json
from faceflow.run.events_json import (
    EVENT_TYPES,
    EventJsonError,
    JsonlWriter,
    event_to_json,
    event_type_name,
    load_schema,
    write_jsonl,
)
from faceflow.v1 import common_pb2, face_event_pb2

BOX = (100.0, 80.0, 180.0, 180.0)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_event_types_cover_the_enum_except_unspecified() -> None:
    numbers = [
        n for n in face_event_pb2.FaceEventType.values() if n != face_event_pb2.FACE_EVENT_TYPE_UNSPECIFIED
    ]
    assert [event_type_name(n) for n in numbers] == list(EVENT_TYPES)
    assert EVENT_TYPES == (
        "observation",
        "track_started",
        "track_lost",
        "track_ended",
        "identity_resolved",
        "stream_ended",
    )


@pytest.mark.parametrize("kind", list(sr.one_of_each()))
@pytest.mark.parametrize(("mask", "embedding"), [(False, False), (True, False), (True, True)])
def test_every_event_type_validates(
    validator: jsonschema.Draft202012Validator, kind: str, mask: bool, embedding: bool
) -> None:
    event = sr.one_of_each()[kind]
    obj = event_to_json(event, include_parsing_mask=mask, include_embedding=embedding)
    validator.validate(obj)
    assert ("embedding" in obj) is embedding
    for results in (obj["raw"], obj["fused"]):
        if results is not None:
            assert ("parsing_mask" in results) is mask
    json.dumps(obj, allow_nan=False)  # plain JSON


def test_all_types_are_exercised() -> None:
    got = {event_to_json(e)["type"] for e in sr.one_of_each().values()}
    assert got == set(EVENT_TYPES)


def test_analyzed_observation_content() -> None:
    obj = event_to_json(sr.one_of_each()["observation_analyzed"])
    assert obj["type"] == "observation"
    assert (obj["stream_id"], obj["seq"], obj["track_id"], obj["face_index"]) == ("cam1", 3, "t1", 0)
    assert obj["pts_seconds"] == pytest.approx(0.3)
    assert obj["capture_time"] == "2026-01-01T00:00:00.300Z"
    assert obj["identity"] == {"id": "id-aa11", "name": "Alice", "distance": 0.31}
    assert obj["box"] == {"x1": 100.0, "y1": 80.0, "x2": 180.0, "y2": 180.0}
    assert obj["detector_score"] == 0.93  # float32 written short, not 0.9300000071525574
    assert obj["analyzed"] is True
    assert obj["results_seq"] == 3
    assert obj["summary"] is None
    assert obj["best_shot"] == {
        "stream_id": "cam1",
        "seq": 3,
        "pts_seconds": pytest.approx(0.3),
        "box": obj["box"],
        "quality": 0.7,
    }
    assert [m["name"] for m in obj["models"]] == ["face_detector", "facexformer", "face_embedder"]
    assert [m["random_init"] for m in obj["models"]] == [False, True, False]
    raw = obj["raw"]
    assert len(raw["landmarks68"]) == 68
    assert all(len(p) == 2 for p in raw["landmarks68"])
    assert raw["head_pose"]["pitch"] == 0.1
    assert raw["head_pose"]["degrees"]["yaw"] == pytest.approx(-11.459, abs=1e-3)
    assert list(raw["attributes"]) == list(ATTRIBUTES)
    assert raw["present_attributes"] == ["No_Beard", "Smiling", "Young"]
    assert raw["attribute_confidence"] is None  # raw results carry no confidence
    assert list(raw["occlusion"]) == list(VISIBILITY_POINTS)
    assert list(raw["parsing_areas"]) == list(PARSING_CLASSES)
    assert sum(raw["parsing_areas"].values()) == pytest.approx(1.0, abs=1e-5)
    assert raw["age"]["label"] == AGE_BINS[3]
    assert list(raw["age"]["distribution"]) == list(AGE_BINS)
    assert raw["gender"] == {
        "label": GENDERS[1],
        "probability": 0.6,
        "confidence": 0.0,
        "distribution": {GENDERS[0]: 0.4, GENDERS[1]: 0.6},
    }
    assert list(raw["race"]["distribution"]) == list(RACES)
    assert (raw["evidence"], raw["weight"]) == (1, 0.75)
    fused = obj["fused"]
    assert fused["attribute_confidence"] == dict.fromkeys(ATTRIBUTES, 0.8)
    assert fused["age"]["confidence"] == 0.8


def test_skipped_observation_has_no_raw_and_names_its_results_seq() -> None:
    obj = event_to_json(sr.one_of_each()["observation_skipped"])
    assert obj["analyzed"] is False
    assert obj["raw"] is None
    assert obj["results_seq"] == 3
    assert obj["fused"] is not None
    assert obj["identity"] == {"id": "anon-1a2b3c4d5e", "name": None, "distance": 0.0}


def test_unset_fields_are_null() -> None:
    obj = event_to_json(sr.one_of_each()["observation_no_identity"])
    assert obj["identity"] is None
    ended = event_to_json(sr.one_of_each()["stream_ended"])
    for key in (
        "track_id",
        "identity",
        "face_index",
        "box",
        "results_seq",
        "raw",
        "fused",
        "best_shot",
        "summary",
    ):
        assert ended[key] is None, key
    event = face_event_pb2.FaceEvent(
        type=face_event_pb2.FACE_EVENT_TYPE_TRACK_STARTED, stream_id="s", track_id="t"
    )
    assert event_to_json(event)["capture_time"] is None


def test_track_ended_summary() -> None:
    obj = event_to_json(sr.one_of_each()["track_ended"])
    assert obj["summary"] == {
        "first_seq": 1,
        "last_seq": 20,
        "first_pts_seconds": 0.1,
        "last_pts_seconds": 2.0,
        "observations": 8,
        "analyzed_observations": 3,
        "end_reason": "end_of_stream",
    }
    assert obj["fused"]["evidence"] == 3


@pytest.mark.parametrize("compress", [True, False])
def test_parsing_mask_is_decompressed_and_base64(compress: bool) -> None:
    event = sr.observation("cam1", 1, "t1", BOX, mask=True)
    event.raw.parsing.CopyFrom(sr.parsing_mask(sr.crop_box_of(BOX), compress=compress))
    mask = event_to_json(event, include_parsing_mask=True)["raw"]["parsing_mask"]
    assert (mask["width"], mask["height"]) == (224, 224)
    assert mask["crop_box"] == {"x1": 80.0, "y1": 55.0, "x2": 200.0, "y2": 205.0}
    ids = np.frombuffer(base64.b64decode(mask["class_ids_base64"]), np.uint8).reshape(224, 224)
    np.testing.assert_array_equal(ids, sr.parsing_ids())
    assert event_to_json(event, include_parsing_mask=True)["fused"]["parsing_mask"] is None  # fused has none
    assert "parsing_mask" not in event_to_json(event)["raw"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: setattr(m, "class_ids", b"not zlib"), "expected zlib-compressed class ids"),
        (
            lambda m: setattr(m, "class_ids", zlib.compress(b"\0" * 100)),
            "expected 224x224 = 50176 class ids, got 100",
        ),
        (lambda m: setattr(m, "width", 0), "expected a mask size in 1.."),
        (
            lambda m: (
                setattr(m, "compression", common_pb2.MASK_COMPRESSION_NONE),
                setattr(m, "class_ids", b"x"),
            ),
            "got 1 bytes",
        ),
    ],
)
def test_corrupt_parsing_mask_is_refused(change: Any, message: str) -> None:
    event = sr.observation("cam1", 1, "t1", BOX, mask=True)
    change(event.raw.parsing)
    with pytest.raises(EventJsonError, match=r"raw\.parsing") as info:
        event_to_json(event, include_parsing_mask=True)
    assert message in str(info.value)
    event_to_json(event)  # without the mask nothing is decoded


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda e: setattr(e, "quality", float("nan")), "quality: expected a finite number, got nan"),
        (lambda e: setattr(e.raw.attributes[31], "probability", float("inf")), "raw.attributes.Smiling"),
        (lambda e: setattr(e.fused.head_pose, "yaw", float("nan")), "fused.head_pose.yaw"),
        (lambda e: setattr(e.raw.landmarks68[5], "y", float("-inf")), "raw.landmarks68[5].y"),
        (lambda e: setattr(e.box, "x2", float("nan")), "box.x2"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_field(change: Any, where: str) -> None:
    event = sr.observation("cam1", 1, "t1", BOX)
    change(event)
    with pytest.raises(EventJsonError, match=where.replace("[", r"\[").replace("]", r"\]")):
        event_to_json(event)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (face_event_pb2.FaceEvent(stream_id="s"), "other than UNSPECIFIED"),
        (face_event_pb2.FaceEvent(type=42, stream_id="s"), "expected a FaceEventType number, got 42"),
        (common_pb2.BoundingBox(), "expected a faceflow.v1.FaceEvent, got BoundingBox"),
    ],
)
def test_invalid_events_are_refused(event: Any, message: str) -> None:
    with pytest.raises(EventJsonError, match=message):
        event_to_json(event)


def test_embedding_only_when_asked() -> None:
    event = sr.observation("cam1", 1, "t1", BOX, embedding=True)
    assert "embedding" not in event_to_json(event)
    values = event_to_json(event, include_embedding=True)["embedding"]
    assert len(values) == 128
    assert values[3] == 0.03
    assert event_to_json(sr.observation("cam1", 1, "t1", BOX), include_embedding=True)["embedding"] is None


def _obs() -> dict[str, Any]:
    return event_to_json(sr.one_of_each()["observation_analyzed"], include_parsing_mask=True)


def _ended() -> dict[str, Any]:
    return event_to_json(sr.one_of_each()["stream_ended"])


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    target = out
    for key in parents:
        target = target[key]
    target[last] = value
    return out


def _drop(obj: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    del out[key]
    return out


@pytest.mark.parametrize(
    ("name", "obj"),
    [
        ("missing key", _drop(_obs(), "quality")),
        ("extra key", _set(_obs(), "colour", "red")),
        ("unknown type", _set(_obs(), "type", "observed")),
        ("seq negative", _set(_obs(), "seq", -1)),
        ("seq as string", _set(_obs(), "seq", "3")),
        ("analyzed as int", _set(_obs(), "analyzed", 1)),
        ("capture_time not RFC 3339 UTC", _set(_obs(), "capture_time", "2026-01-01 00:00:00")),
        ("identity without name key", _set(_obs(), "identity", {"id": "id-1", "distance": 0.1})),
        ("empty identity name", _set(_obs(), "identity.name", "")),
        ("box missing y2", _set(_obs(), "box", {"x1": 1, "y1": 2, "x2": 3})),
        ("observation without box", _set(_obs(), "box", None)),
        ("observation without face_index", _set(_obs(), "face_index", None)),
        ("unknown attribute", _set(_obs(), "raw.attributes.Sunglasses", 0.5)),
        ("probability above 1", _set(_obs(), "raw.attributes.Smiling", 1.5)),
        ("present attribute unknown", _set(_obs(), "raw.present_attributes", ["Sunglasses"])),
        ("age label unknown", _set(_obs(), "raw.age.label", "25")),
        ("gender distribution label", _set(_obs(), "raw.gender.distribution", {"man": 1.0})),
        ("race label unknown", _set(_obs(), "fused.race.label", "martian")),
        ("parsing class unknown", _set(_obs(), "raw.parsing_areas", {"teeth": 0.1})),
        ("landmark with 3 coords", _set(_obs(), "raw.landmarks68", [[1.0, 2.0, 3.0]])),
        ("head pose without degrees", _set(_obs(), "raw.head_pose", {"pitch": 0, "yaw": 0, "roll": 0})),
        ("mask not base64", _set(_obs(), "raw.parsing_mask.class_ids_base64", "***")),
        (
            "model without random_init",
            _set(_obs(), "models", [{"name": "m", "version": "1", "weights": "w"}]),
        ),
        ("results extra key", _set(_obs(), "raw.tint", 1)),
        ("stream_ended with a track", _set(_ended(), "track_id", "t1")),
        ("lifecycle with face_index", _set(_ended(), "face_index", 0)),
        (
            "track event without track",
            _set(event_to_json(sr.one_of_each()["track_started"]), "track_id", None),
        ),
        ("summary missing end_reason", _set(event_to_json(sr.one_of_each()["track_lost"]), "summary", {})),
        ("embedding empty list", _set(_obs(), "embedding", [])),
    ],
)
def test_invalid_lines_fail_the_schema(
    validator: jsonschema.Draft202012Validator, name: str, obj: dict[str, Any]
) -> None:
    errors = list(validator.iter_errors(obj))
    assert errors, f"{name}: expected a schema error, got none"


def test_schema_enums_are_the_contract_and_drift_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    defs = load_schema()["$defs"]
    assert defs["attribute_label"]["enum"] == list(ATTRIBUTES)
    assert defs["parsing_class"]["enum"] == list(PARSING_CLASSES)
    monkeypatch.setitem(
        events_json._SCHEMA_LABELS, "race_label", ("white", "black", "asian", "indian", "others")
    )
    with pytest.raises(EventJsonError, match=r"\$defs.race_label.enum: expected"):
        load_schema()


def test_jsonl_writer_appends_and_flushes_each_line(tmp_path: Any) -> None:
    path = tmp_path / "out" / "faces.jsonl"
    events = list(sr.one_of_each().values())
    with JsonlWriter(path) as writer:
        writer.write_event(events[0])
        assert len(path.read_text().splitlines()) == 1  # on disk before close
        writer.write({"type": "note"})
        assert writer.lines == 2
    with pytest.raises(EventJsonError, match="closed"):
        writer.write({})
    assert write_jsonl(path, events[1:]) == len(events) - 1  # appends
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(events) + 1
    assert json.loads(lines[0]) == event_to_json(events[0])
    assert json.loads(lines[1]) == {"type": "note"}


def test_a_new_jsonl_writer_replaces_the_last_runs_file(tmp_path: Any) -> None:
    """`faceflow run --out DIR` twice: the second faces.jsonl holds the second run's events only."""
    path = tmp_path / "faces.jsonl"
    with JsonlWriter(path) as first:
        first.write({"run": 1})
        first.write({"run": 1})
    with JsonlWriter(path) as second:
        second.write({"run": 2})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"run": 2}]


def test_jsonl_writer_refuses_nan_and_non_objects(tmp_path: Any) -> None:
    with JsonlWriter(tmp_path / "f.jsonl") as writer:
        with pytest.raises(ValueError, match="Out of range float"):
            writer.write({"x": float("nan")})
        with pytest.raises(EventJsonError, match="expected a JSON object"):
            writer.write([1, 2])  # type: ignore[arg-type]
    assert (tmp_path / "f.jsonl").read_text() == ""


def test_unicode_names_are_written_as_utf8(tmp_path: Any) -> None:
    event = sr.observation("cam1", 1, "t1", BOX, identity_id="id-1", identity_name="Zoë 张")
    path = tmp_path / "f.jsonl"
    write_jsonl(path, [event])
    assert "Zoë 张" in path.read_text(encoding="utf-8")
