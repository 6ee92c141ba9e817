"""Seeded hostile inputs for the fuzz suite: images, bombs, every image mode, bad field encodings.

Every case is made at test time, from a seed (bombs are compressed as they are written by
``models.test_imaging_samples.png_zeros``: a 400-megapixel PNG never exists in memory).
"""

from __future__ import annotations

import io
import random
import struct
from dataclasses import dataclass

import numpy as np
from models.test_imaging_samples import png_header, png_zeros
from PIL import Image
from skimage import data

#: Pillow modes the suite saves in every format that takes them.
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F")
FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP", "GIF")


@dataclass(frozen=True)
class Case:
    """One hostile input: ``name`` says what it is (shown when a case fails)."""

    name: str
    data: bytes


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header claims ``width`` x ``height`` (the data is short)."""
    jpeg = encode(np.full((16, 16, 3), 128, np.uint8), "JPEG")
    at = jpeg.index(b"\xff\xc0")
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]


def encode(image: np.ndarray | Image.Image, fmt: str) -> bytes:
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt)
    return buffer.getvalue()


def astronaut() -> np.ndarray:
    return np.asarray(data.astronaut())


def mode_cases() -> list[Case]:
    """The astronaut photo in every mode that every format will write (what a format refuses to
    write is not a case: no client can send it in that format)."""
    base = Image.fromarray(astronaut()).resize((160, 160))
    cases = []
    for mode in MODES:
        try:
            picture = base.convert(mode)
        except ValueError:
            picture = base.convert("L").convert(mode)
        for fmt in FORMATS:
            try:
                cases.append(Case(f"{mode} as {fmt}", encode(picture, fmt)))
            except (OSError, ValueError, KeyError):
                continue
    return cases


def bomb_cases() -> list[Case]:
    """Pictures of a few KB that declare tens to billions of pixels: all over the 8K frame limit."""
    return [
        Case("PNG 20000x20000 gray (400 MP, over Pillow's own limit)", png_zeros(20_000, 20_000)),
        Case("PNG 9000x9000 gray (81 MP, under Pillow's limit)", png_zeros(9_000, 9_000)),
        Case("PNG 6000x6000 16-bit gray (36 MP)", png_zeros(6_000, 6_000, bit_depth=16)),
        Case("PNG 8000x5000 RGBA (40 MP)", png_zeros(8_000, 5_000, "RGBA")),
        Case("PNG 2x20000000 strip (40 MP)", png_zeros(2, 20_000_000)),
        Case("PNG header claiming 65535x65535", png_header(65_535, 65_535)),
        Case("JPEG claiming 65000x65000", jpeg_claiming(65_000, 65_000)),
        Case("JPEG claiming 12000x9000", jpeg_claiming(12_000, 9_000)),
    ]


def broken_cases(seed: int, count: int) -> list[Case]:
    """Random bytes, truncations and bit flips of real pictures, ``count`` of them, from ``seed``."""
    rng = random.Random(seed)
    photo = astronaut()[::2, ::2]
    valid = {"JPEG": encode(photo, "JPEG"), "PNG": encode(photo, "PNG"), "WEBP": encode(photo, "WEBP")}
    cases = [Case("empty", b""), Case("one byte", b"\xff")]
    while len(cases) < count:
        kind = rng.choice(("random", "truncated", "flipped", "header+junk"))
        fmt = rng.choice(sorted(valid))
        original = valid[fmt]
        if kind == "random":
            blob = rng.randbytes(rng.randint(1, 4096))
        elif kind == "truncated":
            blob = original[: rng.randint(1, len(original) - 1)]
        elif kind == "flipped":
            mutable = bytearray(original)
            for _ in range(rng.randint(1, 24)):
                mutable[rng.randrange(len(mutable))] = rng.randrange(256)
            blob = bytes(mutable)
        else:
            blob = original[:64] + rng.randbytes(rng.randint(0, 2048))
        cases.append(Case(f"{kind} {fmt} #{len(cases)}", blob))
    return cases


def bad_utf8(rng: random.Random) -> bytes:
    """Bytes that are not valid UTF-8 (a lone continuation byte, an overlong form, a surrogate)."""
    return rng.choice((b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xff\xfe", b"cam\xe9ra"))


def field_bytes(number: int, value: bytes) -> bytes:
    """One length-delimited protobuf field (a string or bytes field) with raw ``value``."""
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
