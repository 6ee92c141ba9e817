"""Tests for faceflow.ingest.push: checking and bounding pushed pictures, the call's tally."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from support_shots import shot_frames

from faceflow.ingest.encode import EncodeSettings
from faceflow.ingest.errors import FrameTooLarge
from faceflow.ingest.metrics import DropCause, IngestMetrics, RefusalCause
from faceflow.ingest.push import (
    NotAnImage,
    PushStreams,
    PushTally,
    add_frames_taken,
    frames_taken_note,
    prepare_image,
    pushed_frame,
)
from faceflow.v1 import ingest_pb2

ASTRONAUT = skdata.astronaut()  # 512x512 RGB


def encoded(rgb: np.ndarray, kind: str = "JPEG", size: tuple[int, int] | None = None) -> bytes:
    image = Image.fromarray(rgb)
    if size is not None:
        image = image.resize(size)
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return buffer.getvalue()


JPEG_512 = encoded(ASTRONAUT)


@pytest.mark.parametrize(
    ("image", "settings", "expected"),
    [
        (JPEG_512, EncodeSettings(max_side=1280), (512, 512, True)),
        (JPEG_512, EncodeSettings(max_side=256), (256, 256, False)),
        (encoded(ASTRONAUT, "PNG"), EncodeSettings(max_side=1280), (512, 512, False)),
        (encoded(skdata.camera()), EncodeSettings(max_side=None), (512, 512, False)),  # grayscale JPEG
        (JPEG_512, EncodeSettings(max_side=None, max_bytes=20_000), (384, 384, False)),  # shrunk to fit
    ],
)
def test_prepare_image(image: bytes, settings: EncodeSettings, expected: tuple[int, int, bool]) -> None:
    prepared = prepare_image(image, settings)
    assert (prepared.width, prepared.height, prepared.passed_through) == expected
    assert prepared.data.startswith(b"\xff\xd8\xff")
    assert len(prepared.data) <= settings.max_bytes
    if prepared.passed_through:
        assert prepared.data is image


@pytest.mark.parametrize(
    ("image", "error", "message_part"),
    [
        (b"", NotAnImage, "got an empty image"),
        (b"hello, not a picture at all", NotAnImage, r"got 27 bytes starting with b'hello, n'"),
        (JPEG_512[: len(JPEG_512) // 2], NotAnImage, "do not decode"),
        (encoded(ASTRONAUT, "GIF"), NotAnImage, "expected a JPEG or PNG picture, got a GIF picture"),
        (encoded(ASTRONAUT, "PNG"), FrameTooLarge, "expected a JPEG of at most 100 bytes"),
    ],
)
def test_prepare_image_refusals(image: bytes, error: type[Exception], message_part: str) -> None:
    with pytest.raises(error, match=message_part):
        prepare_image(
            image, EncodeSettings(max_side=None, max_bytes=100 if error is FrameTooLarge else 10**7)
        )


def test_pushed_frame_times_default_to_arrival() -> None:
    streams = PushStreams(capacity=4)
    stream = streams.get("edge-1", now_ns=1_000_000_000)
    prepared = prepare_image(JPEG_512, EncodeSettings())
    first = pushed_frame(ingest_pb2.PushFramesRequest(stream_id="edge-1"), prepared, stream, 1_500_000_000)
    request = ingest_pb2.PushFramesRequest(stream_id="edge-1")
    request.pts.FromNanoseconds(40_000_000)
    request.capture_time.FromNanoseconds(123)
    second = pushed_frame(request, prepared, stream, 2_000_000_000)
    assert (first.pts_s, first.capture_time_ns) == (0.5, 1_500_000_000)
    assert (second.pts_s, second.capture_time_ns) == (0.04, 123)
    assert second.seq == first.seq + 1


def test_pushed_frames_get_a_new_shot_exactly_at_a_cut() -> None:
    streams = PushStreams(capacity=4)
    stream = streams.get("edge-1", now_ns=0)
    metrics = IngestMetrics()
    pictures = [encoded(rgb) for rgb in shot_frames("female", scale=2)[:5] + shot_frames("male", scale=2)[:4]]
    prepared = [prepare_image(p, EncodeSettings()) for p in pictures]
    assert all(p.passed_through for p in prepared)  # the detector reads the decode that checked them
    request = ingest_pb2.PushFramesRequest(stream_id="edge-1")
    frames = [
        pushed_frame(request, p, stream, 1_000_000_000 + k, metrics=metrics) for k, p in enumerate(prepared)
    ]
    first = frames[0].seq
    assert [f.shot_start_seq for f in frames] == [first] * 5 + [first + 5] * 4
    assert 'faceflow_ingest_shot_cuts_total{stream_id="edge-1"} 1.0' in metrics.render()
    seq, shot = stream.end_seq()
    assert (seq, shot) == (first + 9, first + 5)


def test_prepared_pixels_are_the_decoded_picture() -> None:
    prepared = prepare_image(JPEG_512, EncodeSettings(max_side=256))
    assert prepared.pixels.shape == (256, 256, 3)  # DCT-scaled to at least max_side, no more decode
    assert prepare_image(JPEG_512, EncodeSettings()).pixels.shape == (512, 512, 3)


def test_push_streams_keep_the_most_recent() -> None:
    streams = PushStreams(capacity=2)
    a = streams.get("a", 0)
    streams.get("b", 0)
    assert streams.get("a", 0) is a
    streams.get("c", 0)  # evicts b, the least recently used
    assert len(streams) == 2
    assert streams.get("a", 0) is a
    a_seq = a.seq.next()
    streams.get("b", 0)  # comes back: a new counter that still starts from the clock
    assert streams.get("b", 0).seq.peek > 0 and a_seq > 0


def test_tally_counts_and_lists_rejections() -> None:
    tally = PushTally()
    tally.sent()
    tally.sent()
    tally.settle(0, "s", None)
    tally.settle(1, "s", "timed out")
    tally.reject(
        2, "s", RefusalCause.NOT_AN_IMAGE, "cannot identify image file <_io.BytesIO object at 0x7f00>"
    )
    tally.reject(3, "s", RefusalCause.TOO_LARGE, "x" * 2000)
    tally.reject(4, "s", DropCause.BROKER_STALLED, "no room")
    assert tally.wait(0.1) == 0
    reply = tally.reply()
    assert (reply.accepted, reply.rejected) == (1, 4)
    assert [(r.index, r.reason) for r in reply.rejections] == [
        (1, ingest_pb2.REJECT_REASON_BACKPRESSURE),
        (2, ingest_pb2.REJECT_REASON_NOT_AN_IMAGE),
        (3, ingest_pb2.REJECT_REASON_TOO_LARGE),
        (4, ingest_pb2.REJECT_REASON_BACKPRESSURE),
    ]
    assert reply.rejections[1].detail == "cannot identify image file"  # no object repr reaches a client
    assert len(reply.rejections[2].detail) == 500 and reply.rejections[2].detail.endswith("...")


@pytest.mark.parametrize(
    ("taken", "note"),
    [
        (0, "0 frames of this call were taken before the error"),
        (1, "1 frame of this call was taken before the error"),
        (12, "12 frames of this call were taken before the error"),
    ],
)
def test_frames_taken_note(taken: int, note: str) -> None:
    assert frames_taken_note(taken) == note
    error = NotAnImage("frame 3: bad")
    add_frames_taken(error, taken)
    assert str(error) == f"frame 3: bad; {note}"
