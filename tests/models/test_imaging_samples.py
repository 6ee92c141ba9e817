"""Pictures made at test time for the image-limit tests (imported as ``models.test_imaging_samples``),
and the checks that they are what they claim to be.

``png_zeros`` writes a valid PNG of any size row by row through zlib, so a 30-megapixel picture of
a few KB is made without allocating its pixels; ``png_header`` writes only a PNG's header (IHDR)
declaring any size, the cheapest decompression bomb.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

#: PNG colour types and channels: gray, RGB, gray + alpha, RGBA.
_COLOR_TYPES = {"L": (0, 1), "RGB": (2, 3), "LA": (4, 2), "RGBA": (6, 4)}


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def _ihdr(width: int, height: int, mode: str, bit_depth: int) -> bytes:
    color_type, _ = _COLOR_TYPES[mode]
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))


def png_header(width: int, height: int, mode: str = "RGBA", bit_depth: int = 8) -> bytes:
    """A PNG that declares ``width`` x ``height`` but carries one empty IDAT: refused from the header."""
    idat = _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + _ihdr(width, height, mode, bit_depth) + idat + _chunk(b"IEND", b"")


def png_zeros(width: int, height: int, mode: str = "L", bit_depth: int = 8) -> bytes:
    """A complete, valid PNG of black (and fully transparent) pixels, written without its pixels."""
    _, channels = _COLOR_TYPES[mode]
    row = b"\x00" * (1 + width * channels * bit_depth // 8)  # filter byte 0, then zero samples
    packer = zlib.compressobj(9)
    rows_per_step = max(1, (1 << 22) // len(row))
    step = row * rows_per_step
    parts = [packer.compress(step) for _ in range(height // rows_per_step)]
    parts.append(packer.compress(row * (height % rows_per_step)))
    parts.append(packer.flush())
    idat = _chunk(b"IDAT", b"".join(parts))
    return b"\x89PNG\r\n\x1a\n" + _ihdr(width, height, mode, bit_depth) + idat + _chunk(b"IEND", b"")


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **options: object) -> bytes:
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def astronaut(side: int | None = None) -> np.ndarray:
    """skimage's astronaut (one face), upscaled bicubic to ``side`` x ``side`` if given."""
    rgb = np.asarray(skdata.astronaut())
    if side is None:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.BICUBIC))


def gray16(rgb: np.ndarray) -> Image.Image:
    """A 16-bit grayscale ("I;16") picture of ``rgb``: its 8-bit luma times 257 (full 16-bit range)."""
    luma = np.asarray(Image.fromarray(rgb).convert("L"), np.uint16) * 257
    return Image.fromarray(luma)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize(("mode", "bit_depth"), [("L", 8), ("L", 16), ("RGB", 8), ("LA", 8), ("RGBA", 8)])
def test_png_zeros_decodes_to_its_declared_size_and_black(mode: str, bit_depth: int) -> None:
    data = png_zeros(301, 207, mode, bit_depth)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (301, 207)
        img.load()
        assert np.asarray(img).max() == 0


def test_a_30_megapixel_png_is_a_few_kilobytes() -> None:
    data = png_zeros(6000, 5000)
    assert len(data) < 64_000
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (6000, 5000)


def test_png_header_declares_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's own bomb check would refuse it
    with Image.open(io.BytesIO(png_header(100_000, 100_000, "L"))) as img:
        assert img.size == (100_000, 100_000)
        assert img.mode == "L"


def test_gray16_spans_the_16_bit_range() -> None:
    picture = gray16(astronaut())
    assert picture.mode == "I;16"
    values = np.asarray(picture)
    assert values.max() > 60_000 and values.dtype == np.uint16
