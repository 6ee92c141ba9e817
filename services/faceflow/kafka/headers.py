"""Kafka record headers of faceflow messages: content type, schema version, W3C trace context."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

HeaderList = list[tuple[str, bytes]]

CONTENT_TYPE = "content-type"
SCHEMA_VERSION = "schema-version"
TRACEPARENT = "traceparent"
SCHEMA_VERSION_V1 = "1"

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def protobuf_content_type(full_name: str) -> str:
    """The content type of a protobuf payload, e.g. ``application/x-protobuf; type=faceflow.v1.Frame``."""
    return f"application/x-protobuf; type={full_name}"


@dataclass(frozen=True)
class TraceParent:
    """A W3C ``traceparent`` (version 00)."""

    trace_id: str
    span_id: str
    flags: str = "01"

    def __post_init__(self) -> None:
        header = self.header()
        if not _TRACEPARENT.match(header) or set(self.trace_id) == {"0"} or set(self.span_id) == {"0"}:
            raise ValueError(f"expected a W3C traceparent 00-<32 hex>-<16 hex>-<2 hex>, got {header!r}")

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    @classmethod
    def new(cls) -> TraceParent:
        return cls(trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8))

    @classmethod
    def parse(cls, value: str | bytes) -> TraceParent:
        text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else value
        match = _TRACEPARENT.match(text.strip())
        if not match:
            raise ValueError(f"expected a W3C traceparent 00-<32 hex>-<16 hex>-<2 hex>, got {text!r}")
        return cls(trace_id=match.group(1), span_id=match.group(2), flags=match.group(3))

    def child(self) -> TraceParent:
        """The same trace with a new span id (the next hop)."""
        return TraceParent(trace_id=self.trace_id, span_id=secrets.token_hex(8), flags=self.flags)


def message_headers(full_name: str, trace: TraceParent | None = None) -> HeaderList:
    """Headers for a protobuf message of type ``full_name``."""
    trace = trace or TraceParent.new()
    return [
        (CONTENT_TYPE, protobuf_content_type(full_name).encode()),
        (SCHEMA_VERSION, SCHEMA_VERSION_V1.encode()),
        (TRACEPARENT, trace.header().encode()),
    ]
