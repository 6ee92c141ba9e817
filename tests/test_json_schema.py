"""The JSON Schema of proto3 JSON (``faceflow.json_schema``) against what ``to_json`` really writes."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from faceflow import schema
from faceflow.json_schema import DRAFT_2020_12, message_json_schema
from faceflow.kafka.json_mirror import to_json
from faceflow.v1 import (
    aggregator_pb2,
    analysis_pb2,
    common_pb2,
    face_event_pb2,
    frame_pb2,
    identity_pb2,
    ingest_pb2,
)

F = FieldDescriptor
TEXT = "cam-1 \u00fc\u2713"  # non-ASCII: it survives the JSON form
_VALUES: dict[int, object] = {
    F.TYPE_DOUBLE: 0.375,
    F.TYPE_FLOAT: -2.5,
    F.TYPE_INT32: -7,
    F.TYPE_SINT32: -7,
    F.TYPE_SFIXED32: -7,
    F.TYPE_UINT32: 2**32 - 1,
    F.TYPE_FIXED32: 7,
    F.TYPE_INT64: -(2**40 + 3),
    F.TYPE_SINT64: -(2**40 + 3),
    F.TYPE_SFIXED64: -(2**40 + 3),
    F.TYPE_UINT64: 2**64 - 1,
    F.TYPE_FIXED64: 2**40 + 3,
    F.TYPE_BOOL: True,
    F.TYPE_STRING: TEXT,
    F.TYPE_BYTES: b"\x00\x01\xfe\xff",
}


def _value(field: Any) -> object:
    if field.type == F.TYPE_ENUM:
        return field.enum_type.values[-1].number
    return _VALUES[field.type]


def populated(message: Message, depth: int = 0) -> Message:
    """``message`` with every field set to a value that is not its default (repeated and maps: two
    entries), recursively; the well-known types get valid values."""
    if depth > 8:
        raise ValueError(f"{message.DESCRIPTOR.full_name}: expected no recursive messages")
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        message.FromJsonString("2026-12-07T20:00:00.250Z")  # type: ignore[attr-defined]
        return message
    if name == "google.protobuf.Duration":
        message.FromMilliseconds(1500)  # type: ignore[attr-defined]
        return message
    message.SetInParent()
    for field in message.DESCRIPTOR.fields:
        target = getattr(message, field.name)
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            for k in (_value(key), 0 if key.type != F.TYPE_STRING else "k2"):
                if value.type == F.TYPE_MESSAGE:
                    populated(target[k], depth + 1)
                else:
                    target[k] = _value(value)
        elif field.is_repeated:
            if field.type == F.TYPE_MESSAGE:
                for _ in range(2):
                    populated(target.add(), depth + 1)
            else:
                target.extend([_value(field), _value(field)])
        elif field.type == F.TYPE_MESSAGE:
            populated(target, depth + 1)
        else:
            setattr(message, field.name, _value(field))
    return message


def full_event() -> face_event_pb2.FaceEvent:
    event = face_event_pb2.FaceEvent()
    populated(event)
    return event


def validator(document: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(
        document, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _messages() -> list[Descriptor]:
    modules = (common_pb2, frame_pb2, analysis_pb2, face_event_pb2, identity_pb2, ingest_pb2, aggregator_pb2)
    return [d for m in modules for d in m.DESCRIPTOR.message_types_by_name.values()]


# -- the encoding -----------------------------------------------------------------------------------


def test_to_json_is_canonical_proto3_json_on_one_line() -> None:
    event = full_event()
    data = to_json(event)
    expected = json_format.MessageToJson(event, indent=None, always_print_fields_with_no_presence=True)
    assert data == expected.encode("utf-8")
    assert b"\n" not in data and data.isascii()  # MessageToJson escapes non-ASCII: \u00fc
    decoded = json.loads(data)
    assert decoded["seq"] == str(2**64 - 1) and decoded["streamId"] == TEXT
    assert decoded["type"] == "FACE_EVENT_TYPE_STREAM_ENDED"
    assert decoded["pts"] == "1.500s" and decoded["captureTime"] == "2026-12-07T20:00:00.250Z"
    assert json_format.Parse(data, face_event_pb2.FaceEvent()) == event


def test_fields_without_presence_are_printed_even_when_default() -> None:
    decoded = json.loads(to_json(face_event_pb2.FaceEvent()))
    assert decoded["seq"] == "0" and decoded["embedding"] == [] and decoded["analyzed"] is False
    assert decoded["type"] == "FACE_EVENT_TYPE_UNSPECIFIED" and "box" not in decoded


# -- the schema -------------------------------------------------------------------------------------


def test_the_faces_schema_is_draft_2020_12_and_names_every_field() -> None:
    document = schema.faces_json_schema()
    assert document["$schema"] == DRAFT_2020_12 == "https://json-schema.org/draft/2020-12/schema"
    validator(document)
    defs = document["$defs"]
    face_event = defs["faceflow.v1.FaceEvent"]
    assert document["$ref"] == "#/$defs/faceflow.v1.FaceEvent"
    assert set(face_event["properties"]) == set(json.loads(to_json(full_event())))
    assert face_event["properties"]["seq"] == {"type": "string", "pattern": "^[0-9]+$"}
    assert face_event["properties"]["embedding"]["type"] == "array"
    assert defs["faceflow.v1.FaceEventType"]["enum"][0] == "FACE_EVENT_TYPE_UNSPECIFIED"
    assert defs["google.protobuf.Duration"]["type"] == "string"
    assert defs["faceflow.v1.ParsingMask"]["properties"]["classIds"]["contentEncoding"] == "base64"
    assert "box" not in face_event["required"] and "streamId" in face_event["required"]


@pytest.mark.parametrize("message", [full_event(), face_event_pb2.FaceEvent()], ids=["full", "empty"])
def test_the_faces_schema_accepts_what_to_json_writes(message: face_event_pb2.FaceEvent) -> None:
    errors = list(validator(schema.faces_json_schema()).iter_errors(json.loads(to_json(message))))
    assert errors == []


@pytest.mark.parametrize("descriptor", _messages(), ids=lambda d: d.full_name)
def test_every_faceflow_message_validates_against_its_own_schema(descriptor: Descriptor) -> None:
    """Every field type, map, oneof and well-known type of the API, not only FaceEvent's."""
    message = populated(message_factory.GetMessageClass(descriptor)())
    document = message_json_schema(descriptor)
    assert list(validator(document).iter_errors(json.loads(to_json(message)))) == []


DELETE = object()


def _mutated(document: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(document))
    target = out
    for part in path[:-1]:
        target = target[part]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "error_at"),
    [
        (("seq",), "0", None),
        (("detectorScore",), "NaN", None),
        (("box", "x1"), 3, None),
        (("captureTime",), "2026-12-07T20:00:00Z", None),
        (("seq",), 3, ("seq",)),  # a 64-bit integer is a string in proto3 JSON
        (("seq",), "-3", ("seq",)),  # uint64
        (("type",), 1, ("type",)),  # enums by name
        (("type",), "FACE_EVENT_TYPE_NOPE", ("type",)),
        (("faceIndex",), "2", ("faceIndex",)),
        (("faceIndex",), -1, ("faceIndex",)),
        (("analyzed",), "true", ("analyzed",)),
        (("embedding",), 0.5, ("embedding",)),
        (("embedding",), ["0.5"], ("embedding", 0)),
        (("box", "x1"), "1.5", ("box", "x1")),
        (("pts",), 1.5, ("pts",)),
        (("captureTime",), "2026-12-07 20:00:00", ("captureTime",)),
        (("raw", "parsing", "classIds"), "not base64!", ("raw", "parsing", "classIds")),
        (("raw", "parsing", "compression"), 1, ("raw", "parsing", "compression")),
        (("stream_id",), "cam-1", ()),  # the proto name is not the JSON name: unknown property
        (("streamId",), DELETE, ()),  # printed always, so required
    ],
)
def test_the_faces_schema_rejects_a_wrong_type_at_its_place(
    path: tuple[str, ...], value: object, error_at: tuple[str | int, ...] | None
) -> None:
    document = _mutated(json.loads(to_json(full_event())), path, value)
    best = jsonschema.exceptions.best_match(validator(schema.faces_json_schema()).iter_errors(document))
    if error_at is None:
        assert best is None
    else:
        assert best is not None and tuple(best.absolute_path) == error_at, best


def test_a_oneof_allows_one_member_and_map_keys_are_integers() -> None:
    document = message_json_schema(aggregator_pb2.StartPosition.DESCRIPTOR)
    check = validator(document)
    start = aggregator_pb2.StartPosition(offsets=aggregator_pb2.PartitionOffsets(offsets={0: 5, 3: 2**40}))
    written = json.loads(to_json(start))
    assert written == {"offsets": {"offsets": {"0": "5", "3": str(2**40)}}}
    assert list(check.iter_errors(written)) == []
    assert not check.is_valid({"earliest": True, "offsets": {"offsets": {}}})
    assert not check.is_valid({"offsets": {"offsets": {"p0": "5"}}})
    assert not check.is_valid({"offsets": {"offsets": {"0": 5}}})


def test_a_google_type_without_a_json_mapping_is_refused() -> None:
    from google.protobuf import descriptor_pb2  # noqa: PLC0415

    with pytest.raises(ValueError, match="expected a message with a known proto3 JSON mapping"):
        message_json_schema(descriptor_pb2.FileDescriptorProto.DESCRIPTOR)
