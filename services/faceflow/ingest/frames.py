"""The two frame types of the ingest data path, validated on construction.

:class:`DecodedFrame` is what a source yields: raw RGB pixels with their media time and the wall
clock at decode. :class:`EncodedFrame` is what goes on the frames topic: a JPEG (or PNG) with the
``(stream_id, seq)`` pair that makes delivery idempotent (DESIGN.md, "Delivery contract").
Both are frozen; invalid values raise :class:`~faceflow.ingest.errors.InvalidFrame` with a message
of the form "expected X, got Y".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from faceflow.ingest.errors import InvalidFrame
from faceflow.streams import InvalidStreamId, validate_stream_id

JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
_MAGIC: Final = {JPEG: b"\xff\xd8\xff", PNG: b"\x89PNG\r\n\x1a\n"}
CONTENT_TYPES: Final = tuple(_MAGIC)

RGBImage = npt.NDArray[np.uint8]


def check_rgb(rgb: object, what: str = "rgb") -> RGBImage:
    """Return ``rgb`` if it is an HxWx3 uint8 array with H, W >= 1, else raise :class:`InvalidFrame`."""
    if not isinstance(rgb, np.ndarray):
        raise InvalidFrame(f"{what}: expected a numpy array HxWx3 uint8, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InvalidFrame(f"{what}: expected shape HxWx3 with H, W >= 1, got {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise InvalidFrame(f"{what}: expected dtype uint8, got {rgb.dtype}")
    return rgb


def _check_int(value: object, what: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFrame(f"{what}: expected an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise InvalidFrame(f"{what}: expected an int >= {minimum}, got {value}")


def _check_pts(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidFrame(f"pts_s: expected a finite float (seconds), got {type(value).__name__}")
    if not math.isfinite(value):
        raise InvalidFrame(f"pts_s: expected a finite float (seconds), got {value}")


def _check_stream_id(value: object) -> None:
    try:
        validate_stream_id(value)
    except InvalidStreamId as exc:
        raise InvalidFrame(str(exc)) from exc


@dataclass(frozen=True, eq=False)
class DecodedFrame:
    """One decoded picture from a source.

    Attributes:
        stream_id: the stream it belongs to (see :mod:`faceflow.streams`).
        pts_s: media time in seconds, from the container's timestamps (not wall clock); may jump or
            go backwards when a live source reconnects.
        capture_time_ns: wall clock (``time.time_ns()``) when the frame was decoded.
        rgb: HxWx3 uint8 pixels. Not copied: treat it as read-only.

    Equality is identity (``eq=False``): comparing pixel arrays field by field is ambiguous.
    """

    stream_id: str
    pts_s: float
    capture_time_ns: int
    rgb: RGBImage

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)
        _check_pts(self.pts_s)
        _check_int(self.capture_time_ns, "capture_time_ns", 0)
        check_rgb(self.rgb)

    @property
    def height(self) -> int:
        """Rows of pixels."""
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """Columns of pixels."""
        return int(self.rgb.shape[1])


@dataclass(frozen=True)
class EncodedFrame:
    """One sampled, size-bounded, encoded frame as it goes on the frames topic.

    Attributes:
        stream_id: the stream it belongs to; the Kafka key.
        seq: per-stream sequence number, assigned by the ingest service (never by a source), that
            keeps increasing across reconnects; consumers drop a ``(stream_id, seq)`` seen before.
        pts_s: media time in seconds.
        capture_time_ns: wall clock at decode.
        jpeg: the encoded image (JPEG, or PNG where ``content_type`` says so). Empty only for an
            end-of-stream marker.
        width, height: pixel size of the encoded image (0 only for an end-of-stream marker).
        content_type: ``image/jpeg`` or ``image/png``; checked against the image's magic bytes.
        end_of_stream: the source ended; no more frames follow for this stream.
        shot_start_seq: seq of the first frame of the shot this frame belongs to (the stream's
            :class:`~faceflow.core.shots.StreamShots`), at most ``seq``; a change from one frame to
            the next is a hard cut. 0 = unknown. An end-of-stream marker carries the last shot.
    """

    stream_id: str
    seq: int
    pts_s: float
    capture_time_ns: int
    jpeg: bytes
    width: int
    height: int
    content_type: str = JPEG
    end_of_stream: bool = False
    shot_start_seq: int = 0

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)
        _check_int(self.seq, "seq", 0)
        _check_int(self.shot_start_seq, "shot_start_seq", 0)
        if self.shot_start_seq > self.seq:
            raise InvalidFrame(
                f"shot_start_seq: expected at most seq ({self.seq}), got {self.shot_start_seq}"
            )
        _check_pts(self.pts_s)
        _check_int(self.capture_time_ns, "capture_time_ns", 0)
        if not isinstance(self.end_of_stream, bool):
            raise InvalidFrame(f"end_of_stream: expected a bool, got {type(self.end_of_stream).__name__}")
        if self.content_type not in _MAGIC:
            raise InvalidFrame(f"content_type: expected one of {CONTENT_TYPES}, got {self.content_type!r}")
        if not isinstance(self.jpeg, bytes):
            raise InvalidFrame(f"jpeg: expected bytes, got {type(self.jpeg).__name__}")
        if self.end_of_stream and not self.jpeg:
            _check_int(self.width, "width", 0)
            _check_int(self.height, "height", 0)
            return
        _check_int(self.width, "width", 1)
        _check_int(self.height, "height", 1)
        magic = _MAGIC[self.content_type]
        if not self.jpeg.startswith(magic):
            raise InvalidFrame(
                f"jpeg: expected {self.content_type} data starting with {magic!r}, "
                f"got {len(self.jpeg)} bytes starting with {self.jpeg[:8]!r}"
            )

    @classmethod
    def end_marker(
        cls, stream_id: str, seq: int, pts_s: float, capture_time_ns: int, *, shot_start_seq: int = 0
    ) -> EncodedFrame:
        """An end-of-stream marker: no image, ``end_of_stream=True``, the stream's last shot."""
        return cls(
            stream_id=stream_id,
            seq=seq,
            pts_s=pts_s,
            capture_time_ns=capture_time_ns,
            jpeg=b"",
            width=0,
            height=0,
            end_of_stream=True,
            shot_start_seq=shot_start_seq,
        )
