"""Tests for faceflow.ingest.frames."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from faceflow.ingest.errors import InvalidFrame
from faceflow.ingest.frames import PNG, DecodedFrame, EncodedFrame, check_rgb

JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"\0" * 16
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def decoded_kwargs(**changes: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "stream_id": "cam1",
        "pts_s": 1.5,
        "capture_time_ns": 1_700_000_000_000_000_000,
        "rgb": np.zeros((4, 6, 3), np.uint8),
    }
    kwargs.update(changes)
    return kwargs


def encoded_kwargs(**changes: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "stream_id": "cam1",
        "seq": 7,
        "pts_s": 0.2,
        "capture_time_ns": 5,
        "jpeg": JPEG_BYTES,
        "width": 6,
        "height": 4,
    }
    kwargs.update(changes)
    return kwargs


@pytest.mark.parametrize(
    ("changes", "expected_error", "message_part"),
    [
        ({}, None, None),
        ({"pts_s": -0.5}, None, None),
        ({"pts_s": 3}, None, None),
        ({"rgb": np.zeros((1, 1, 3), np.uint8)}, None, None),
        ({"stream_id": "bad id"}, InvalidFrame, "got 'bad id'"),
        ({"pts_s": float("nan")}, InvalidFrame, "pts_s: expected a finite float"),
        ({"pts_s": float("inf")}, InvalidFrame, "got inf"),
        ({"pts_s": "1.0"}, InvalidFrame, "got str"),
        ({"capture_time_ns": -1}, InvalidFrame, "capture_time_ns: expected an int >= 0, got -1"),
        ({"capture_time_ns": 1.5}, InvalidFrame, "got float"),
        ({"capture_time_ns": True}, InvalidFrame, "got bool"),
        (
            {"rgb": np.zeros((4, 6), np.uint8)},
            InvalidFrame,
            "expected shape HxWx3 with H, W >= 1, got (4, 6)",
        ),
        ({"rgb": np.zeros((4, 6, 4), np.uint8)}, InvalidFrame, "got (4, 6, 4)"),
        ({"rgb": np.zeros((0, 6, 3), np.uint8)}, InvalidFrame, "got (0, 6, 3)"),
        ({"rgb": np.zeros((4, 6, 3), np.float32)}, InvalidFrame, "expected dtype uint8, got float32"),
        ({"rgb": [[[0, 0, 0]]]}, InvalidFrame, "got list"),
    ],
)
def test_decoded_frame_validation(
    changes: dict[str, Any], expected_error: type[Exception] | None, message_part: str | None
) -> None:
    if expected_error is None:
        frame = DecodedFrame(**decoded_kwargs(**changes))
        assert (frame.height, frame.width) == frame.rgb.shape[:2]
        return
    with pytest.raises(expected_error) as info:
        DecodedFrame(**decoded_kwargs(**changes))
    assert message_part in str(info.value)


def test_decoded_frame_is_frozen_and_compares_by_identity() -> None:
    frame = DecodedFrame(**decoded_kwargs())
    twin = DecodedFrame(**decoded_kwargs(rgb=frame.rgb))
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.pts_s = 2.0
    assert frame == frame
    assert frame != twin


@pytest.mark.parametrize(
    ("changes", "expected_error", "message_part"),
    [
        ({}, None, None),
        ({"content_type": PNG, "jpeg": PNG_BYTES}, None, None),
        ({"seq": 0}, None, None),
        ({"end_of_stream": True}, None, None),
        ({"end_of_stream": True, "jpeg": b"", "width": 0, "height": 0}, None, None),
        ({"shot_start_seq": 7}, None, None),  # this frame starts its shot
        ({"shot_start_seq": 8}, InvalidFrame, "shot_start_seq: expected at most seq (7), got 8"),
        ({"shot_start_seq": -1}, InvalidFrame, "shot_start_seq: expected an int >= 0, got -1"),
        ({"shot_start_seq": None}, InvalidFrame, "shot_start_seq: expected an int >= 0, got NoneType"),
        ({"seq": -1}, InvalidFrame, "seq: expected an int >= 0, got -1"),
        ({"seq": np.int64(3)}, InvalidFrame, "got int64"),
        ({"seq": False}, InvalidFrame, "got bool"),
        ({"stream_id": ""}, InvalidFrame, "stream id"),
        ({"jpeg": b""}, InvalidFrame, "got 0 bytes"),
        ({"jpeg": PNG_BYTES}, InvalidFrame, "expected image/jpeg data"),
        ({"jpeg": bytearray(JPEG_BYTES)}, InvalidFrame, "jpeg: expected bytes, got bytearray"),
        ({"content_type": "image/gif"}, InvalidFrame, "content_type: expected one of"),
        ({"width": 0}, InvalidFrame, "width: expected an int >= 1, got 0"),
        ({"height": 2.0}, InvalidFrame, "height: expected an int >= 1, got float"),
        ({"end_of_stream": 1}, InvalidFrame, "end_of_stream: expected a bool, got int"),
        ({"pts_s": float("nan")}, InvalidFrame, "pts_s"),
        ({"end_of_stream": True, "jpeg": b"", "width": -1, "height": 0}, InvalidFrame, "width"),
    ],
)
def test_encoded_frame_validation(
    changes: dict[str, Any], expected_error: type[Exception] | None, message_part: str | None
) -> None:
    if expected_error is None:
        EncodedFrame(**encoded_kwargs(**changes))
        return
    with pytest.raises(expected_error) as info:
        EncodedFrame(**encoded_kwargs(**changes))
    assert message_part in str(info.value)


def test_end_marker_and_value_equality() -> None:
    marker = EncodedFrame.end_marker("cam1", 9, 2.0, 10)
    assert marker.end_of_stream
    assert (marker.jpeg, marker.width, marker.height, marker.seq, marker.shot_start_seq) == (b"", 0, 0, 9, 0)
    assert EncodedFrame.end_marker("cam1", 9, 2.0, 10, shot_start_seq=4).shot_start_seq == 4
    assert EncodedFrame(**encoded_kwargs()) == EncodedFrame(**encoded_kwargs())


def test_check_rgb_returns_the_same_array() -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    assert check_rgb(rgb) is rgb
