"""The published contract: the mesh's protobuf descriptors, for consumers without faceflow's code.

``faceflow schema --out DIR`` writes

* ``faceflow.v1.binpb``: a ``google.protobuf.FileDescriptorSet`` holding every ``faceflow/v1``
  file and each file it imports (the well-known ``Duration`` and ``Timestamp``), dependencies
  first. It is what ``protoc --include_imports --descriptor_set_out`` writes, so any protobuf
  runtime can decode the topics with it and no generated code: Java's ``DynamicMessage``, Go's
  ``dynamicpb``, ``buf curl``/``grpcurl --protoset`` for the gRPC APIs.
* ``topics.json``: for each topic that carries protobuf, its name, the full name of the message of
  each record's value, how the key is formed, and the headers a record carries; and the JSON mirror
  of the faces topic (``value_format`` ``json``, with its schema's file name).
* ``faces.json.schema.json``: the JSON Schema (draft 2020-12) of the mirror's values, the canonical
  proto3 JSON of ``FaceEvent`` (:mod:`faceflow.json_schema`).

The set and the JSON Schema are built from the descriptors compiled into :mod:`faceflow.v1` (the
same bytes the services encode with), never from a second compile of ``protos/``, so they cannot
drift from what is sent.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from faceflow import topics
from faceflow.errors import ConfigError
from faceflow.files import atomic_write, atomic_write_text
from faceflow.json_schema import message_json_schema
from faceflow.kafka.headers import CONTENT_TYPE, SCHEMA_VERSION, TRACEPARENT, message_headers
from faceflow.v1 import (
    aggregator_pb2,
    analysis_pb2,
    common_pb2,
    face_event_pb2,
    frame_pb2,
    identity_pb2,
    ingest_pb2,
)

__all__ = [
    "DESCRIPTOR_SET_NAME",
    "FACES_JSON_SCHEMA_NAME",
    "JSON_MIRRORS",
    "TOPICS_NAME",
    "TOPIC_MESSAGES",
    "descriptor_set",
    "faces_json_schema",
    "topic_manifest",
]

DESCRIPTOR_SET_NAME: Final[str] = "faceflow.v1.binpb"
TOPICS_NAME: Final[str] = "topics.json"
FACES_JSON_SCHEMA_NAME: Final[str] = "faces.json.schema.json"

_FILES: Final[tuple[FileDescriptor, ...]] = tuple(
    module.DESCRIPTOR
    for module in (
        common_pb2,
        frame_pb2,
        analysis_pb2,
        face_event_pb2,
        identity_pb2,
        ingest_pb2,
        aggregator_pb2,
    )
)

#: Topic -> (value message, key, whether its records carry headers). Topics not listed carry no
#: protobuf value of ours (the aggregator's state topic holds zlib-compressed JSON checkpoints,
#: internal to the aggregator). The gallery writes its records without headers.
TOPIC_MESSAGES: Final[dict[str, tuple[str, str, bool]]] = {
    topics.FRAMES.name: (frame_pb2.Frame.DESCRIPTOR.full_name, "stream_id, UTF-8", True),
    topics.ANALYSES.name: (analysis_pb2.FrameAnalysis.DESCRIPTOR.full_name, "stream_id, UTF-8", True),
    topics.FACES.name: (face_event_pb2.FaceEvent.DESCRIPTOR.full_name, "stream_id, UTF-8", True),
    topics.IDENTITIES.name: (
        identity_pb2.IdentityRecord.DESCRIPTOR.full_name,
        "identity id, UTF-8; a null value is a tombstone (the identity was forgotten)",
        False,
    ),
    topics.IDENTITIES_AUDIT.name: (
        identity_pb2.IdentityAudit.DESCRIPTOR.full_name,
        "identity id, UTF-8 (append-only: every gallery change, and who made it)",
        False,
    ),
}


#: JSON mirror topic -> (the protobuf topic it mirrors, its JSON Schema's file name). A mirror record
#: has its original's key and headers (``content-type`` names the protobuf message it mirrors).
JSON_MIRRORS: Final[dict[str, tuple[str, str]]] = {
    topics.FACES_JSON.name: (topics.FACES.name, FACES_JSON_SCHEMA_NAME),
}


def _headers(message: str) -> dict[str, str]:
    """The headers a record of ``message`` carries, with their values (from the producers' helper)."""
    example = dict(message_headers(message))
    return {
        CONTENT_TYPE: example[CONTENT_TYPE].decode(),
        SCHEMA_VERSION: example[SCHEMA_VERSION].decode(),
        TRACEPARENT: "W3C trace context of the span that produced the record, 00-<trace>-<span>-<flags>",
    }


def _with_imports(files: tuple[FileDescriptor, ...]) -> Iterator[FileDescriptor]:
    """Every file and its transitive imports, each once, dependencies before dependants."""
    seen: set[str] = set()

    def visit(fd: FileDescriptor) -> Iterator[FileDescriptor]:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            yield from visit(dep)
        yield fd

    for fd in files:
        yield from visit(fd)


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """The ``FileDescriptorSet`` of the whole ``faceflow.v1`` API, imports included."""
    out = descriptor_pb2.FileDescriptorSet()
    for fd in _with_imports(_FILES):
        fd.CopyToProto(out.file.add())
    return out


def faces_json_schema() -> dict[str, Any]:
    """The JSON Schema of the faces JSON mirror's values: ``FaceEvent`` as canonical proto3 JSON."""
    return message_json_schema(
        face_event_pb2.FaceEvent.DESCRIPTOR,
        description=f"A record value of {topics.FACES_JSON.name}: the {topics.FACES.name} record of the "
        "same key and headers, as json_format.MessageToJson(event, indent=None, "
        "always_print_fields_with_no_presence=True) writes it, UTF-8.",
    )


def topic_manifest() -> dict[str, object]:
    """What ``topics.json`` holds: per topic, its value message and format, key and headers."""
    entries: list[dict[str, object]] = [
        {
            "topic": name,
            "value": message,
            "value_format": "protobuf",
            "key": key,
            "headers": _headers(message) if has_headers else {},
            "purpose": topics.by_name(name).purpose,
        }
        for name, (message, key, has_headers) in TOPIC_MESSAGES.items()
    ]
    for name, (original, schema_name) in JSON_MIRRORS.items():
        message, key, has_headers = TOPIC_MESSAGES[original]
        entries.append(
            {
                "topic": name,
                "value": message,
                "value_format": "json",
                "json_schema": schema_name,
                "mirror_of": original,
                "key": key,
                "headers": _headers(message) if has_headers else {},
                "purpose": topics.by_name(name).purpose,
            }
        )
    return {"descriptor_set": DESCRIPTOR_SET_NAME, "topics": entries}


def write(out: Path) -> list[Path]:
    """Write the descriptor set, the topic manifest and the JSON Schema into ``out``; return the paths."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: expected a directory, got the file {out}")
    out.mkdir(parents=True, exist_ok=True)
    descriptors = out / DESCRIPTOR_SET_NAME
    manifest = out / TOPICS_NAME
    payload = descriptor_set().SerializeToString(deterministic=True)
    atomic_write(descriptors, lambda tmp: tmp.write_bytes(payload))
    atomic_write_text(manifest, json.dumps(topic_manifest(), indent=2) + "\n")
    json_schema = out / FACES_JSON_SCHEMA_NAME
    atomic_write_text(json_schema, json.dumps(faces_json_schema(), indent=2) + "\n")
    return [descriptors, manifest, json_schema]


def _run(args: argparse.Namespace) -> int:
    for path in write(Path(args.out)):
        sys.stdout.write(f"{path}\n")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "schema",
        help="write the protobuf descriptor set, the topic manifest and the faces JSON Schema, for consumers "
        "in any language",
    )
    p.add_argument("--out", default="schema", help="directory to write into (default: ./schema)")
    p.set_defaults(handler=_run)
