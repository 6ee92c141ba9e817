from __future__ import annotations

import pytest

from faceflow.kafka.headers import TRACEPARENT, TraceParent, message_headers


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
        (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "expected a W3C traceparent"),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "expected a W3C traceparent"),
        ("garbage", "expected a W3C traceparent"),
    ],
)
def test_traceparent_parse(value: str | bytes, error: str | None) -> None:
    if error:
        with pytest.raises(ValueError, match=error):
            TraceParent.parse(value)
    else:
        parsed = TraceParent.parse(value)
        text = value.decode() if isinstance(value, bytes) else value
        assert parsed.header() == text


def test_child_keeps_trace_and_changes_span() -> None:
    parent = TraceParent.new()
    child = parent.child()
    assert child.trace_id == parent.trace_id and child.span_id != parent.span_id


def test_message_headers_name_type_schema_and_trace() -> None:
    headers = dict(message_headers("faceflow.v1.Frame"))
    assert headers["content-type"] == b"application/x-protobuf; type=faceflow.v1.Frame"
    assert headers["schema-version"] == b"1"
    TraceParent.parse(headers[TRACEPARENT])
