"""Size bounding and JPEG encoding of decoded frames.

Every frame that goes on the frames topic is bounded twice: in pixels (:func:`bound_size`, the
longest side at most ``max_side``) and in bytes (:func:`fit_under`, which lowers the JPEG quality
down to a floor, then shrinks the picture by 0.75 per step until it fits). A frame that cannot be
made to fit raises :class:`~faceflow.ingest.errors.FrameTooLarge`; the service counts and logs it
(DESIGN.md: nothing is dropped silently). :func:`log_cut` is the debug line of a hard cut that the
stream's shot-cut detector found in a frame about to be encoded.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from faceflow.core.shots import ShotStep
from faceflow.ingest.checks import check_int
from faceflow.ingest.errors import FrameTooLarge, IngestConfigError
from faceflow.ingest.frames import JPEG, DecodedFrame, EncodedFrame, RGBImage, check_rgb
from faceflow.topics import FRAME_PAYLOAD_LIMIT

logger = logging.getLogger(__name__)

#: Each downsizing step multiplies both sides by this.
SCALE_STEP = 0.75
#: Below this many pixels on the shorter side :func:`fit_under` gives up.
MIN_SIDE = 16


def _check_quality(quality: object, what: str = "quality") -> int:
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise IngestConfigError(f"{what}: expected an int in 1..100, got {quality!r}")
    return quality


def _check_max_side(max_side: object) -> int | None:
    return None if max_side is None else check_int("max_side", max_side, minimum=1)


def _resize(rgb: RGBImage, width: int, height: int) -> RGBImage:
    image = Image.fromarray(np.ascontiguousarray(rgb))
    # BOX is area averaging: every source pixel contributes, no aliasing when shrinking a lot.
    return np.asarray(image.resize((width, height), Image.Resampling.BOX), dtype=np.uint8)


def _scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def bound_size(rgb: RGBImage, max_side: int | None) -> RGBImage:
    """Shrink ``rgb`` so its longest side is at most ``max_side``, keeping the aspect ratio.

    Never upscales: a picture that already fits (or ``max_side=None``) is returned as is, the
    same object. Shrinking uses area averaging.

    Raises:
        InvalidFrame: ``rgb`` is not HxWx3 uint8.
        IngestConfigError: ``max_side`` is not None or a positive int.
    """
    check_rgb(rgb)
    limit = _check_max_side(max_side)
    if limit is None:
        return rgb
    height, width = int(rgb.shape[0]), int(rgb.shape[1])
    longest = max(height, width)
    if longest <= limit:
        return rgb
    scale = limit / longest
    new_w, new_h = _scaled_size(height, width, scale)
    if width >= height:
        new_w = limit
    else:
        new_h = limit
    return _resize(rgb, new_w, new_h)


def encode_jpeg(rgb: RGBImage, quality: int = 85) -> bytes:
    """JPEG-encode an HxWx3 uint8 RGB picture (baseline, 4:2:0 chroma).

    Raises:
        InvalidFrame: ``rgb`` is not HxWx3 uint8.
        IngestConfigError: ``quality`` is not an int in 1..100.
    """
    check_rgb(rgb)
    _check_quality(quality)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@dataclass(frozen=True)
class FittedJpeg:
    """The result of :func:`fit_under`: the JPEG and how it was made."""

    jpeg: bytes
    width: int
    height: int
    quality: int
    scale: float


def fit_under(
    rgb: RGBImage,
    quality: int,
    max_bytes: int,
    *,
    min_quality: int = 50,
    quality_step: int = 10,
) -> FittedJpeg:
    """Encode ``rgb`` as a JPEG of at most ``max_bytes`` bytes, degrading it step by step.

    First the quality drops by ``quality_step`` down to ``min_quality``; then, at ``min_quality``,
    both sides shrink by :data:`SCALE_STEP` per step (always from the original pixels) until the
    JPEG fits or the shorter side would fall below :data:`MIN_SIDE` pixels.

    Raises:
        FrameTooLarge: no attempt fit; the message has the frame size, the limit and the
            smallest attempt.
        IngestConfigError: a quality or the limit is out of range.
    """
    check_rgb(rgb)
    _check_quality(quality)
    _check_quality(min_quality, "min_quality")
    check_int("max_bytes", max_bytes, minimum=1)
    check_int("quality_step", quality_step, minimum=1)
    height, width = int(rgb.shape[0]), int(rgb.shape[1])
    q, scale = quality, 1.0
    current = rgb
    attempts = 0
    while True:
        jpeg = encode_jpeg(current, q)
        attempts += 1
        if len(jpeg) <= max_bytes:
            if attempts > 1:
                logger.debug(
                    "frame %dx%d fit under %d bytes at quality %d, scale %.3f after %d attempts",
                    width,
                    height,
                    max_bytes,
                    q,
                    scale,
                    attempts,
                )
            return FittedJpeg(jpeg, int(current.shape[1]), int(current.shape[0]), q, scale)
        if q > min_quality:
            q = max(min_quality, q - quality_step)
            continue
        next_scale = scale * SCALE_STEP
        new_w, new_h = _scaled_size(height, width, next_scale)
        if min(new_w, new_h) < MIN_SIDE:
            raise FrameTooLarge(
                f"frame {width}x{height}: expected a JPEG of at most {max_bytes} bytes, got "
                f"{len(jpeg)} bytes at the smallest attempt ({current.shape[1]}x{current.shape[0]}, "
                f"quality {q}, {attempts} attempts)"
            )
        scale = next_scale
        current = _resize(rgb, new_w, new_h)


@dataclass(frozen=True, kw_only=True)
class EncodeSettings:
    """How the ingest service bounds and encodes frames.

    Attributes:
        max_side: longest side in pixels after :func:`bound_size`; None keeps the source size.
        quality: JPEG quality of a first attempt.
        min_quality: the floor :func:`fit_under` lowers the quality to before it shrinks.
        max_bytes: largest JPEG accepted; defaults to what the frames topic can carry.
    """

    max_side: int | None = 1280
    quality: int = 85
    min_quality: int = 50
    max_bytes: int = FRAME_PAYLOAD_LIMIT

    def __post_init__(self) -> None:
        _check_max_side(self.max_side)
        _check_quality(self.quality)
        _check_quality(self.min_quality, "min_quality")
        if self.min_quality > self.quality:
            raise IngestConfigError(
                f"min_quality: expected at most quality ({self.quality}), got {self.min_quality}"
            )
        check_int("max_bytes", self.max_bytes, minimum=1)


def encode_frame(
    frame: DecodedFrame, seq: int, settings: EncodeSettings | None = None, *, shot_start_seq: int = 0
) -> EncodedFrame:
    """Bound, encode and wrap one decoded frame for the frames topic (``shot_start_seq``: the
    frame's shot, see :class:`~faceflow.ingest.frames.EncodedFrame`).

    Raises:
        FrameTooLarge: the frame cannot fit under ``settings.max_bytes``.
    """
    settings = settings or EncodeSettings()
    bounded = bound_size(frame.rgb, settings.max_side)
    fitted = fit_under(bounded, settings.quality, settings.max_bytes, min_quality=settings.min_quality)
    if fitted.scale < 1.0 or fitted.quality < settings.quality:
        logger.info(
            "stream %s seq %d: frame degraded to fit %d bytes (quality %d, scale %.3f)",
            frame.stream_id,
            seq,
            settings.max_bytes,
            fitted.quality,
            fitted.scale,
        )
    return EncodedFrame(
        stream_id=frame.stream_id,
        seq=seq,
        pts_s=frame.pts_s,
        capture_time_ns=frame.capture_time_ns,
        jpeg=fitted.jpeg,
        width=fitted.width,
        height=fitted.height,
        content_type=JPEG,
        shot_start_seq=shot_start_seq,
    )


def log_cut(stream_id: str, seq: int, step: ShotStep | None) -> None:
    """Log (debug) the hard cut found at frame ``seq`` with what the detector measured."""
    if step is not None and logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "stream %s seq %d: hard cut, a new shot (cells %.3f, global %.3f, score %.2f, level %.2f)",
            stream_id,
            seq,
            step.cells,
            step.whole,
            step.score,
            step.level,
        )
