"""The published contract: the mesh's protobuf descriptors, for consumers without faceflow's code.

``faceflow schema --out DIR`` writes

* ``faceflow.v1.binpb``: a ``google.protobuf.FileDescriptorSet`` holding every ``faceflow/v1``
  file and each file it imports (the well-known ``Duration`` and ``Timestamp``), dependencies
  first. It is what ``protoc --include_imports --descriptor_set_out`` writes, so any protobuf
  runtime can decode the topics with it and no generated code: Java's ``DynamicMessage``, Go's
  ``dynamicpb``, ``buf curl``/``grpcurl --protoset`` for the gRPC APIs.
* ``topics.json``: for each topic that carries protobuf, its name, the full name of the message of
  each record's value, how the key is formed, and the headers a record carries.

The set is built from the descriptors compiled into :mod:`faceflow.v1` (the same bytes the services
encode with), never from a second compile of ``protos/``, so it cannot drift from what is sent.
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

__all__ = ["DESCRIPTOR_SET_NAME", "TOPICS_NAME", "TOPIC_MESSAGES", "descriptor_set", "topic_manifest"]

DESCRIPTOR_SET_NAME: Final[str] = "faceflow.v1.binpb"
TOPICS_NAME: Final[str] = "topics.json"

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


def topic_manifest() -> dict[str, object]:
    """What ``topics.json`` holds: per protobuf topic, its value message, key and headers."""
    return {
        "descriptor_set": DESCRIPTOR_SET_NAME,
        "topics": [
            {
                "topic": name,
                "value": message,
                "key": key,
                "headers": _headers(message) if has_headers else {},
                "purpose": topics.by_name(name).purpose,
            }
            for name, (message, key, has_headers) in TOPIC_MESSAGES.items()
        ],
    }


def write(out: Path) -> list[Path]:
    """Write the descriptor set and the topic manifest into ``out`` (created); return the paths."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: expected a directory, got the file {out}")
    out.mkdir(parents=True, exist_ok=True)
    descriptors = out / DESCRIPTOR_SET_NAME
    manifest = out / TOPICS_NAME
    payload = descriptor_set().SerializeToString(deterministic=True)
    atomic_write(descriptors, lambda tmp: tmp.write_bytes(payload))
    atomic_write_text(manifest, json.dumps(topic_manifest(), indent=2) + "\n")
    return [descriptors, manifest]


def _run(args: argparse.Namespace) -> int:
    for path in write(Path(args.out)):
        sys.stdout.write(f"{path}\n")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "schema",
        help="write the protobuf descriptor set and the topic manifest, for consumers in any language",
    )
    p.add_argument("--out", default="schema", help="directory to write into (default: ./schema)")
    p.set_defaults(handler=_run)
