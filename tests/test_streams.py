"""Tests for faceflow.streams (the stream id rule every service applies)."""

from __future__ import annotations

import pytest

from faceflow.errors import FaceflowError, InvalidArgument
from faceflow.streams import InvalidStreamId, is_valid_stream_id, validate_stream_id


@pytest.mark.parametrize(
    ("stream_id", "expected_error", "message_part"),
    [
        ("cam1", None, None),
        ("a", None, None),
        ("Front-Door_2.hd", None, None),
        ("0" * 64, None, None),
        ("9.9.9", None, None),
        ("", InvalidStreamId, "got ''"),
        ("a" * 65, InvalidStreamId, "65 characters"),
        ("-cam", InvalidStreamId, "starting with a letter or digit"),
        (".hidden", InvalidStreamId, "got '.hidden'"),
        ("_x", InvalidStreamId, None),
        ("..", InvalidStreamId, None),
        ("cam 1", InvalidStreamId, "got 'cam 1'"),
        ("cam/1", InvalidStreamId, None),
        ("cam1\n", InvalidStreamId, None),
        ("kamera-ü", InvalidStreamId, None),
        ("a:b", InvalidStreamId, None),
        (None, InvalidStreamId, "got NoneType"),
        (42, InvalidStreamId, "got int"),
        (b"cam1", InvalidStreamId, "got bytes"),
    ],
)
def test_validate_stream_id(
    stream_id: object, expected_error: type[Exception] | None, message_part: str | None
) -> None:
    assert is_valid_stream_id(stream_id) is (expected_error is None)
    if expected_error is None:
        assert validate_stream_id(stream_id) == stream_id
        return
    with pytest.raises(expected_error) as info:
        validate_stream_id(stream_id)
    assert "1 to 64 characters of [A-Za-z0-9._-]" in str(info.value)
    if message_part is not None:
        assert message_part in str(info.value)


def test_invalid_stream_id_is_a_value_error_under_the_package_root() -> None:
    with pytest.raises(ValueError):
        validate_stream_id("bad id")
    assert issubclass(InvalidStreamId, InvalidArgument)
    assert issubclass(InvalidArgument, FaceflowError)


def test_long_invalid_ids_are_shortened_in_the_message() -> None:
    with pytest.raises(InvalidStreamId) as info:
        validate_stream_id("x y" * 1000)
    assert len(str(info.value)) < 300
    assert "3000 characters" in str(info.value)
