"""A consumer that is not Python reads the faces topic: Go, with the published descriptor set only.

``tests/consumers/go/main.go`` (franz-go and google.golang.org/protobuf; built by
``tests/consumers/go/build.sh``, see tests/support_consumers.py) reads real records from the real
broker, written by faceflow's own producer (lz4-compressed batches), decodes them with ``dynamicpb``
from the FileDescriptorSet ``faceflow schema`` writes, and prints them with ``protojson``. Parsed,
its JSON must equal what Python's ``json_format`` makes of the same event, field for field. Its
``--json`` mode reads the JSON mirror's values with ``encoding/json``.

The full event here is made by walking the descriptors, not typed out: every field of FaceEvent and
of each message under it is set (a field added to the .proto is set without editing this file), with
values at the edges where the JSON mappings could differ. Text differs, by design, in spacing and in
how non-ASCII is written (protojson: UTF-8; Python's MessageToJson: ``\\uXXXX``), and would in float
formatting, so floats are dyadic (exact in binary, short in decimal) and the comparison is of parsed
JSON.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import support_consumers
from google.protobuf import descriptor, json_format
from google.protobuf.message import Message
from support_consumers import (
    BAD_ARGUMENTS,
    BASE_ARGS,
    FACE_EVENT,
    U64_MAX,
    assert_each_record_read,
    assert_one_error_line,
    assert_too_few_records_time_out,
    descriptor_set,
    ensure_go_consumer,
    expected_json,
    faces_records,
    printed_lines,
    produce,
    run_go_consumer,
)

from faceflow.kafka import json_mirror
from faceflow.kafka.headers import HeaderList
from faceflow.v1 import face_event_pb2

pytestmark = pytest.mark.integration

FD = descriptor.FieldDescriptor
#: Not exact as a double: proto3 JSON writes 64-bit integers as strings, in both runtimes.
BEYOND_DOUBLE = 2**53 + 1
#: The values well-known types get in turn (their JSON forms; fractions of 0, 3 and 9 digits).
WELL_KNOWN = {
    "google.protobuf.Timestamp": ["2026-12-07T20:00:00.250Z", "1970-01-01T00:00:00.000000001Z"],
    "google.protobuf.Duration": ["1.000000001s", "-1.500s", "0s"],
}
#: JSON escapes (quote, backslash, newline), HTML characters Go escapes unless told not to, UTF-8
#: beyond ASCII and beyond the BMP (a surrogate pair in Python's \u escapes).
TRICKY_TEXT = 'Zoë "Å" \\ <&> \n 😀'
MASK = b"\x00\x01\x02\xff\x10\x7f\xfe"  # 7 bytes: base64 with two padding characters


def scalar(field: descriptor.FieldDescriptor, n: int) -> Any:
    """A value for a scalar field, at an edge of its JSON mapping; ``n`` varies it per field."""
    t = field.type
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return (n % 32) / 8 - 1.9375  # dyadic, negative and positive, never 0
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return U64_MAX
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return BEYOND_DOUBLE + n if n % 2 else -(2**62) - n
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return 2**32 - 1
    if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return -(2**31) if n % 2 else 2**31 - 1
    if t == FD.TYPE_BOOL:
        return True
    if t == FD.TYPE_STRING:
        return f"{field.name}-{n} {TRICKY_TEXT}"
    if t == FD.TYPE_BYTES:
        return MASK
    if t == FD.TYPE_ENUM and field.enum_type is not None:
        return field.enum_type.values[-1].number
    raise ValueError(f"every_field_set: {field.full_name}: field type {t} is not handled; extend scalar()")


def fill(message: Message, counter: dict[str, int]) -> None:
    """Set every field of ``message`` and, recursively, of each message under it (two per list).

    ``counter["n"]`` counts the fields set so far; a well-known type's count picks its next form.
    """
    name = message.DESCRIPTOR.full_name
    forms = WELL_KNOWN.get(name)
    if forms is not None:
        json_format.Parse(json.dumps(forms[counter.get(name, 0) % len(forms)]), message)
        counter[name] = counter.get(name, 0) + 1
        return
    for field in message.DESCRIPTOR.fields:
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if field.containing_oneof is not None or is_map:
            raise ValueError(
                f"every_field_set: {field.full_name}: oneofs and maps are not handled; extend fill()"
            )
        counter["n"] = n = counter.get("n", 0) + 1
        repeated = field.is_repeated
        if field.type == FD.TYPE_MESSAGE:
            if repeated:
                for _ in range(2):
                    fill(getattr(message, field.name).add(), counter)
            else:
                fill(getattr(message, field.name), counter)
        elif repeated:
            getattr(message, field.name).extend([scalar(field, n), scalar(field, n + 1)])
        else:
            setattr(message, field.name, scalar(field, n))


def every_field_set() -> face_event_pb2.FaceEvent:
    event = face_event_pb2.FaceEvent()
    fill(event, {})
    return event


def unset_fields(message: Message, path: str = "") -> list[str]:
    """Fields left at their default anywhere under ``message`` (none, for :func:`every_field_set`)."""
    missing = []
    for field in message.DESCRIPTOR.fields:
        where = f"{path}{field.name}"
        value = getattr(message, field.name)
        if field.is_repeated:
            if len(value) == 0:
                missing.append(where)
            elif field.type == FD.TYPE_MESSAGE:
                for i, item in enumerate(value):
                    missing += unset_fields(item, f"{where}[{i}].")
        elif field.type == FD.TYPE_MESSAGE:
            if not message.HasField(field.name):
                missing.append(where)
            elif field.message_type is not None and field.message_type.full_name not in WELL_KNOWN:
                missing += unset_fields(value, f"{where}.")
        elif value == field.default_value:
            missing.append(where)
    return missing


def events() -> list[face_event_pb2.FaceEvent]:
    """Every field set, and one with only a few (every other one is printed with its default)."""
    sparse = face_event_pb2.FaceEvent(
        type=face_event_pb2.FACE_EVENT_TYPE_STREAM_ENDED, stream_id="cam-2", seq=7
    )
    return [every_field_set(), sparse]


def send(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, HeaderList]]) -> None:
    produce(bootstrap, topic, records, client_id="test-go-consumer")


def test_the_full_event_sets_every_field() -> None:
    assert unset_fields(every_field_set()) == []


def test_go_decodes_real_faces_records_to_the_json_python_makes(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}.faces"
    sent = faces_records(events())
    send(kafka_bootstrap, topic, [(e.stream_id.encode(), e.SerializeToString(), h) for e, h in sent])

    out = run_go_consumer(
        [
            "--bootstrap", kafka_bootstrap,
            "--topic", topic,
            "--descriptor-set", descriptor_set(tmp_path),
            "--message", FACE_EVENT,
            "--count", str(len(sent)),
        ]
    )  # fmt: skip

    got = assert_each_record_read(printed_lines(out), sent, expected_json)
    stdout = out.stdout
    full_event = sent[0][0]
    full = got[str(full_event.seq)]["value"]
    # What each runtime prints, spelled out (equal in both): 64-bit integers as strings, unsigned
    # ones unsigned; bytes as standard base64 with its padding; Duration and Timestamp with 0, 3, 6
    # or 9 fractional digits; enums by name.
    assert full["resultsSeq"] == str(U64_MAX)
    assert full["seq"] == str(full_event.seq) and int(full["seq"]) > 2**53
    assert full["raw"]["parsing"]["classIds"] == base64.b64encode(MASK).decode() == "AAEC/xB//g=="
    assert {full["pts"], full["bestShot"]["pts"]} <= {"1.000000001s", "-1.500s", "0s"}
    assert full["type"] == face_event_pb2.FaceEventType.Name(full_event.type)
    assert full["identityName"] == full_event.identity_name and TRICKY_TEXT in full["identityName"]
    # The one difference in the text: protojson writes non-ASCII as UTF-8, Python as \u escapes.
    assert "Zoë" in stdout and "Zo\\u00eb" in json_format.MessageToJson(full_event)
    sparse = got["7"]["value"]
    # Fields without presence printed with their defaults; unset messages left out (EmitDefaultValues,
    # not EmitUnpopulated, which would print "box": null where Python prints nothing).
    assert sparse["identityName"] == "" and sparse["embedding"] == [] and sparse["faceIndex"] == 0
    assert sparse["resultsSeq"] == "0" and "box" not in sparse and "pts" not in sparse


def test_go_reads_the_json_mirror_form(kafka_bootstrap: str, unique_name: str) -> None:
    topic = f"{unique_name}.faces.json"
    sent = faces_records(events())  # a mirror record has its original's key and headers
    send(kafka_bootstrap, topic, [(e.stream_id.encode(), json_mirror.to_json(e), h) for e, h in sent])

    out = run_go_consumer(
        ["--json", "--bootstrap", kafka_bootstrap, "--topic", topic, "--count", str(len(sent))]
    )

    got = assert_each_record_read(printed_lines(out), sent, lambda e: json.loads(json_mirror.to_json(e)))
    full = got[str(sent[0][0].seq)]["value"]
    # encoding/json sees what the mirror wrote: 64-bit integers as strings, 32-bit ones as numbers.
    assert full["resultsSeq"] == str(U64_MAX) and isinstance(full["faceIndex"], int)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (["--message", FACE_EVENT], "is not a faceflow.v1.FaceEvent"),
        (["--json"], "is not one JSON object"),
    ],
)
def test_an_undecodable_record_is_one_line_and_exit_1(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, mode: list[str], message: str
) -> None:
    topic = f"{unique_name}.bad"
    # Field 2 (stream_id) says 5 bytes follow, and 2 do: neither protobuf nor JSON.
    send(kafka_bootstrap, topic, [(b"cam-1", b"\x12\x05ab", [])])
    schema_args = ["--descriptor-set", descriptor_set(tmp_path)] if "--message" in mode else []
    out = run_go_consumer(
        ["--bootstrap", kafka_bootstrap, "--topic", topic, "--count", "1", *schema_args, *mode]
    )
    assert_one_error_line(out, 1, f"a record of {topic} {message}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        *BAD_ARGUMENTS,
        (
            [*BASE_ARGS, "--json", "--timeout-s", "soon"],
            "--timeout-s: expected a positive integer, got 'soon'",
        ),
        ([*BASE_ARGS, "--json", "--topic"], "--topic: expected a value"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    out = run_go_consumer(args)
    assert_one_error_line(out, 2, message)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("faceflow.v1.NoSuchEvent", "has no message 'faceflow.v1.NoSuchEvent'"),
        ("faceflow.v1.FaceEventType", "has no message 'faceflow.v1.FaceEventType'"),  # an enum
    ],
)
def test_a_message_the_descriptor_set_lacks_is_one_line_and_exit_2(
    tmp_path: Path, name: str, message: str
) -> None:
    out = run_go_consumer([*BASE_ARGS, "--descriptor-set", descriptor_set(tmp_path), "--message", name])
    assert_one_error_line(out, 2, message)


def test_a_file_that_is_no_descriptor_set_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.binpb"
    bogus.write_bytes(b"not a descriptor set")
    out = run_go_consumer([*BASE_ARGS, "--descriptor-set", str(bogus), "--message", FACE_EVENT])
    assert_one_error_line(out, 2, f"--descriptor-set {bogus}: not a FileDescriptorSet")


def test_too_few_records_time_out_with_one_line_and_exit_1(kafka_bootstrap: str, unique_name: str) -> None:
    assert_too_few_records_time_out(run_go_consumer, kafka_bootstrap, f"{unique_name}.empty")


def test_building_again_runs_no_go(monkeypatch: pytest.MonkeyPatch) -> None:
    binary = ensure_go_consumer()  # builds on a machine where `make tools` has not

    def no_subprocess(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        raise AssertionError(f"ran {args!r} on a second build")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert ensure_go_consumer() == binary == support_consumers.GO_BINARY
    assert support_consumers.is_go_consumer_up_to_date(binary)
