"""Tests for faceflow.ingest.encode: size bounds, JPEG encoding, the byte-limit ladder."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from faceflow.ingest.encode import (
    EncodeSettings,
    bound_size,
    encode_frame,
    encode_jpeg,
    fit_under,
)
from faceflow.ingest.errors import FrameTooLarge, IngestConfigError, InvalidFrame
from faceflow.ingest.frames import DecodedFrame

ASTRONAUT = skdata.astronaut()  # 512x512x3 uint8


def decode(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG"
        return np.asarray(image.convert("RGB"))


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("shape", "max_side", "expected_shape", "expected_error"),
    [
        ((240, 320), 160, (120, 160), None),
        ((320, 240), 160, (160, 120), None),
        ((1080, 1920), 1280, (720, 1280), None),
        ((1000, 10), 100, (100, 1), None),
        ((10, 1000), 100, (1, 100), None),
        ((333, 777), 500, (214, 500), None),
        ((100, 50), 200, (100, 50), None),  # never upscales
        ((100, 50), 100, (100, 50), None),
        ((100, 50), None, (100, 50), None),
        ((100, 50), 0, None, IngestConfigError),
        ((100, 50), 10.5, None, IngestConfigError),
        ((100, 50), True, None, IngestConfigError),
    ],
)
def test_bound_size(
    shape: tuple[int, int],
    max_side: int | None,
    expected_shape: tuple[int, int] | None,
    expected_error: type[Exception] | None,
) -> None:
    rgb = noise(*shape)
    if expected_error is not None:
        with pytest.raises(expected_error, match="max_side: expected an int >= 1"):
            bound_size(rgb, max_side)
        return
    out = bound_size(rgb, max_side)
    assert out.shape == (*expected_shape, 3)
    assert out.dtype == np.uint8
    if expected_shape == shape:
        assert out is rgb


def test_bound_size_averages_areas() -> None:
    checker = np.zeros((64, 64, 3), np.uint8)
    checker[::2, ::2] = 255
    checker[1::2, 1::2] = 255
    small = bound_size(checker, 16)
    assert np.abs(small.astype(int) - 127).max() <= 1


@pytest.mark.parametrize(
    ("rgb", "quality", "expected_error"),
    [
        (ASTRONAUT, 85, None),
        (ASTRONAUT, 1, None),
        (ASTRONAUT, 100, None),
        (np.zeros((1, 1, 3), np.uint8), 85, None),
        (ASTRONAUT[::2, ::3], 85, None),  # non-contiguous view
        (ASTRONAUT, 0, IngestConfigError),
        (ASTRONAUT, 101, IngestConfigError),
        (ASTRONAUT, 85.0, IngestConfigError),
        (ASTRONAUT[..., 0], 85, InvalidFrame),
        (ASTRONAUT.astype(np.float32), 85, InvalidFrame),
    ],
)
def test_encode_jpeg(rgb: np.ndarray, quality: int, expected_error: type[Exception] | None) -> None:
    if expected_error is not None:
        with pytest.raises(expected_error):
            encode_jpeg(rgb, quality)
        return
    jpeg = encode_jpeg(rgb, quality)
    assert jpeg.startswith(b"\xff\xd8\xff")
    back = decode(jpeg)
    assert back.shape == rgb.shape
    if quality >= 85 and rgb.size > 3:
        assert np.abs(back.astype(int) - rgb.astype(int)).mean() < 6


def test_lower_quality_gives_smaller_files() -> None:
    sizes = [len(encode_jpeg(ASTRONAUT, q)) for q in (95, 85, 70, 50, 20)]
    assert sizes == sorted(sizes, reverse=True)


def test_fit_under_keeps_a_frame_that_already_fits() -> None:
    size = len(encode_jpeg(ASTRONAUT, 90))
    fitted = fit_under(ASTRONAUT, 90, size)
    assert (fitted.quality, fitted.scale, fitted.width, fitted.height) == (90, 1.0, 512, 512)
    assert len(fitted.jpeg) == size


def test_fit_under_lowers_quality_before_size() -> None:
    limit = len(encode_jpeg(ASTRONAUT, 60))
    fitted = fit_under(ASTRONAUT, 95, limit, min_quality=50, quality_step=5)
    assert len(fitted.jpeg) <= limit
    assert fitted.scale == 1.0
    assert 50 <= fitted.quality <= 60


def test_fit_under_shrinks_by_steps_of_three_quarters() -> None:
    rgb = noise(480, 640)
    limit = 60_000
    fitted = fit_under(rgb, 85, limit)
    assert len(fitted.jpeg) <= limit
    assert fitted.quality == 50
    steps = round(np.log(fitted.scale) / np.log(0.75))
    assert steps >= 1
    assert fitted.scale == pytest.approx(0.75**steps)
    assert (fitted.width, fitted.height) == (round(640 * fitted.scale), round(480 * fitted.scale))
    assert decode(fitted.jpeg).shape == (fitted.height, fitted.width, 3)


def test_fit_under_gives_up_with_the_sizes_in_the_message() -> None:
    with pytest.raises(FrameTooLarge) as info:
        fit_under(ASTRONAUT, 85, 300)
    message = str(info.value)
    assert "frame 512x512" in message
    assert "at most 300 bytes" in message
    assert "quality 50" in message


@pytest.mark.parametrize(
    ("kwargs", "expected_error"),
    [
        ({"quality": 85, "max_bytes": 0}, IngestConfigError),
        ({"quality": 85, "max_bytes": 10**6, "min_quality": 0}, IngestConfigError),
        ({"quality": 85, "max_bytes": 10**6, "quality_step": 0}, IngestConfigError),
        ({"quality": 0, "max_bytes": 10**6}, IngestConfigError),
    ],
)
def test_fit_under_validates_settings(kwargs: dict[str, int], expected_error: type[Exception]) -> None:
    with pytest.raises(expected_error):
        fit_under(ASTRONAUT, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "expected_error", "message_part"),
    [
        ({}, None, None),
        ({"max_side": None}, None, None),
        ({"quality": 60, "min_quality": 60}, None, None),
        ({"max_side": 0}, IngestConfigError, "max_side"),
        (
            {"quality": 50, "min_quality": 60},
            IngestConfigError,
            "min_quality: expected at most quality (50), got 60",
        ),
        ({"quality": 120}, IngestConfigError, "quality: expected an int in 1..100, got 120"),
        ({"max_bytes": -5}, IngestConfigError, "max_bytes"),
    ],
)
def test_encode_settings_validation(
    kwargs: dict[str, int], expected_error: type[Exception] | None, message_part: str | None
) -> None:
    if expected_error is None:
        EncodeSettings(**kwargs)
        return
    with pytest.raises(expected_error) as info:
        EncodeSettings(**kwargs)
    assert message_part in str(info.value)


def test_encode_frame_bounds_and_wraps() -> None:
    frame = DecodedFrame("cam1", 1.25, 123, ASTRONAUT)
    encoded = encode_frame(frame, 42, EncodeSettings(max_side=256, quality=80))
    assert (encoded.stream_id, encoded.seq, encoded.pts_s, encoded.capture_time_ns) == ("cam1", 42, 1.25, 123)
    assert (encoded.width, encoded.height) == (256, 256)
    assert decode(encoded.jpeg).shape == (256, 256, 3)
    assert not encoded.end_of_stream


def test_encode_frame_raises_when_nothing_fits() -> None:
    frame = DecodedFrame("cam1", 0.0, 0, ASTRONAUT)
    with pytest.raises(FrameTooLarge):
        encode_frame(frame, 0, EncodeSettings(max_bytes=200))
