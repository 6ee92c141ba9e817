"""Untrusted encoded pictures -> 8-bit RGB, for ingest and the Triton models alike (Pillow + numpy).

:func:`decode_picture` does, in this order:

1. opens the picture with only the allowed Pillow formats (:class:`DecodeLimits`); Pillow reads
   the header only;
2. refuses it (:class:`PictureTooLarge`) when the header says it has more pixels than
   ``max_pixels`` or than Pillow's own decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``);
   Pillow's ``DecompressionBombError`` and ``DecompressionBombWarning`` are refusals of the same
   kind (importing this module makes that warning an error, process-wide). Nothing large has
   been allocated at this point;
3. for a JPEG, when ``min_side`` is set, asks libjpeg for a DCT-scaled decode (1/2, 1/4 or 1/8:
   Pillow's ``draft``) to the smallest such size whose longest side is still at least ``min_side``;
4. refuses it when the size it decodes to is over ``max_decoded_pixels`` (what is left of a
   request's budget), then decodes it;
5. converts it to ``[H,W,3]`` uint8 RGB by :data:`MODE_TABLE`, in bands of about a megapixel
   written straight into the oriented output. When ``min_side`` is set and the decoded picture is
   still at least twice that on its longest side (any PNG, a JPEG libjpeg could not scale), each
   band is shrunk by the integer factor that keeps the longest side at least ``min_side`` (box
   average) before it is written, so the output is small and Pillow's decoded picture is the only
   full-size buffer.

With ``min_side`` set, a picture's working size thus has a longest side in
``[min_side, 2 * min_side)``, or its full size when that is smaller.

EXIF orientation (tag 274, values 2..8) is applied; an unreadable EXIF block counts as
orientation 1. :class:`DecodedPicture` keeps the original (oriented) width and height beside the
pixels, so a caller that got a reduced picture maps its coordinates back with
:attr:`DecodedPicture.scale`.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from faceflow.errors import FaceflowError
from faceflow.models.contract import FRAME_FORMATS, MAX_FRAME_PIXELS

logger = logging.getLogger(__name__)

# Pillow warns (rather than refuses) between its limit and twice it; a warning is only a log line
# nobody reads, so in a process that decodes untrusted pictures it is an error, caught by _open.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning, module="PIL.Image")

__all__ = [
    "MODE_TABLE",
    "STILL_FORMATS",
    "DecodeLimits",
    "DecodedPicture",
    "ImageError",
    "ModeRule",
    "PictureTooLarge",
    "PictureUndecodable",
    "UnsupportedFormat",
    "decode_picture",
    "to_rgb",
]

U8 = npt.NDArray[np.uint8]

#: Formats of still-image files a folder source reads: common camera and export formats. Formats
#: that run external programs (EPS runs Ghostscript) or that cameras never write stay out.
STILL_FORMATS: Final[tuple[str, ...]] = ("JPEG", "PNG", "TIFF", "BMP", "GIF", "WEBP", "PPM")

#: Pixels per band of the mode conversion (about one megapixel, a few MB of temporaries).
_BAND_PIXELS: Final[int] = 1 << 20
_EXIF_ORIENTATION: Final[int] = 0x0112
_NOMINAL_16BIT: Final[tuple[float, float]] = (0.0, 65535.0)


class ImageError(FaceflowError, ValueError):
    """An encoded picture is refused."""


class PictureUndecodable(ImageError):  # noqa: N818
    """Not a picture, a truncated or corrupt one, or one in a mode outside :data:`MODE_TABLE`."""


class UnsupportedFormat(PictureUndecodable):
    """A picture Pillow can read, in a format the caller does not allow.

    Attributes:
        format: Pillow's name of the format (``"GIF"``, ``"TIFF"`` ...).
    """

    def __init__(self, message: str, format_name: str) -> None:
        super().__init__(message)
        self.format = format_name


class PictureTooLarge(ImageError):  # noqa: N818
    """A picture with more pixels than a limit allows (checked before its pixels are decoded)."""


def _check_count(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        wanted = "an int >= 1 or None" if allow_none else "an int >= 1"
        raise ValueError(f"{name}: expected {wanted}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class DecodeLimits:
    """What :func:`decode_picture` accepts and how far it may reduce a picture.

    Attributes:
        max_pixels: most pixels (width x height, from the header) of one picture.
        min_side: None decodes at full size; an int lets a picture be decoded smaller (JPEG DCT
            scaling, then an integer shrink) while its longest side stays at least this.
        formats: Pillow format names that are opened; anything else is :class:`UnsupportedFormat`.
    """

    max_pixels: int = MAX_FRAME_PIXELS
    min_side: int | None = None
    formats: tuple[str, ...] = FRAME_FORMATS

    def __post_init__(self) -> None:
        _check_count("max_pixels", self.max_pixels)
        _check_count("min_side", self.min_side, allow_none=True)
        if not isinstance(self.formats, tuple) or not self.formats:
            raise ValueError(
                f"formats: expected a non-empty tuple of Pillow format names, got {self.formats!r}"
            )
        Image.init()
        unknown = [f for f in self.formats if f not in Image.OPEN]
        if unknown:
            known = ", ".join(sorted(Image.OPEN))
            raise ValueError(f"formats: expected formats Pillow can open ({known}), got {unknown}")

    @property
    def effective_max_pixels(self) -> int:
        """``max_pixels``, lowered to Pillow's own limit when that is smaller."""
        pillow = Image.MAX_IMAGE_PIXELS
        return self.max_pixels if pillow is None else min(self.max_pixels, int(pillow))


@dataclass(frozen=True)
class DecodedPicture:
    """A decoded picture: RGB pixels, possibly reduced, and the size of the original.

    Attributes:
        rgb: ``[h,w,3]`` uint8, C-contiguous, oriented.
        width: width of the original picture once oriented (``w`` unless it was reduced).
        height: height of the original picture once oriented.
        format: Pillow's name of the encoded format.
        mode: Pillow's mode of the stored pixels (the key into :data:`MODE_TABLE`).
        orientation: the EXIF orientation that was applied (1: none).
        decoded_pixels: pixels the decoder produced (before any shrinking): what a pixel budget
            is charged with; 0 means those of ``rgb``.
    """

    rgb: U8
    width: int
    height: int
    format: str
    mode: str
    orientation: int = 1
    decoded_pixels: int = 0

    def __post_init__(self) -> None:
        rgb = self.rgb
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            got = f"{rgb.dtype} {list(rgb.shape)}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise ValueError(f"rgb: expected uint8 of shape [H,W,3], got {got}")
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        if h < 1 or w < 1:
            raise ValueError(f"rgb: expected at least one pixel, got {list(rgb.shape)}")
        if not (w <= self.width and h <= self.height):
            raise ValueError(f"expected rgb no larger than {self.width}x{self.height}, got {w}x{h}")
        if not 1 <= self.orientation <= 8:
            raise ValueError(f"orientation: expected an EXIF orientation in 1..8, got {self.orientation}")
        if self.decoded_pixels == 0:
            object.__setattr__(self, "decoded_pixels", h * w)
        if self.decoded_pixels < h * w:
            raise ValueError(
                f"decoded_pixels: expected at least {h * w} (those of rgb), got {self.decoded_pixels}"
            )

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors from :attr:`rgb` pixel coordinates to the original's; (1.0, 1.0) if not reduced."""
        return self.width / int(self.rgb.shape[1]), self.height / int(self.rgb.shape[0])

    @property
    def reduced(self) -> bool:
        return self.scale != (1.0, 1.0)


# --- The mode table ---------------------------------------------------------------------------------

ValueRange = tuple[float, float]
#: Writes one band of a picture (a Pillow image of that mode) into ``out`` (``[h,w,3]`` uint8).
BandConverter = Callable[[Image.Image, U8, ValueRange | None], None]


@dataclass(frozen=True)
class ModeRule:
    """How a Pillow mode becomes 8-bit RGB.

    Attributes:
        convert: writes one band into the output.
        meaning: what happens to the values, in words (documented in docs/models.md).
        value_range: for modes without a fixed range (``I``, ``F``): finds the range mapped to 0..255
            from the whole picture; None for the others.
    """

    convert: BandConverter
    meaning: str
    value_range: Callable[[Image.Image], ValueRange] | None = None


def _gray(out: U8, gray: npt.NDArray[np.generic]) -> None:
    out[...] = gray[..., None]


def _over_black(color: npt.NDArray[np.uint8], alpha: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint16]:
    """``color * alpha / 255`` rounded: the picture composited over black, as a viewer would show it."""
    return (color.astype(np.uint16) * alpha + 127) // 255


def _pillow_rgb(band: Image.Image, out: U8, _r: ValueRange | None) -> None:
    out[...] = np.asarray(band.convert("RGB"))


def _rgb(band: Image.Image, out: U8, _r: ValueRange | None) -> None:
    out[...] = np.asarray(band)


def _first_three(band: Image.Image, out: U8, _r: ValueRange | None) -> None:
    out[...] = np.asarray(band)[..., :3]


def _bilevel(band: Image.Image, out: U8, _r: ValueRange | None) -> None:
    _gray(out, np.asarray(band).astype(np.uint8) * np.uint8(255))


def _luma(band: Image.Image, out: U8, _r: ValueRange | None) -> None:
    _gray(out, np.asarray(band))


def _luma_premultiplied(band: Image.Image, out: U8, _r: ValueRange | None) -> None:
    _gray(out, np.asarray(band)[..., 0])


def _luma_alpha(band: Image.Image, out: U8, _r: ValueRange | None) -> None:
    la = np.asarray(band)
    _gray(out, _over_black(la[..., 0], la[..., 1]))


def _rgba(band: Image.Image, out: U8, _r: ValueRange | None) -> None:
    rgba = np.asarray(band)
    out[...] = _over_black(rgba[..., :3], rgba[..., 3:4])


def _via_rgba(band: Image.Image, out: U8, _r: ValueRange | None) -> None:
    _rgba(band.convert("RGBA"), out, None)


def _palette(band: Image.Image, out: U8, _r: ValueRange | None) -> None:
    if "transparency" in band.info:
        _via_rgba(band, out, None)
    else:
        _pillow_rgb(band, out, None)


def _sixteen_bit(band: Image.Image, out: U8, _r: ValueRange | None) -> None:
    value = np.asarray(band).astype(np.uint32)
    _gray(out, ((value + 128) // 257).astype(np.uint8))  # round(v / 257): 65535 -> 255


def _scaled(band: Image.Image, out: U8, value_range: ValueRange | None) -> None:
    if value_range is None:
        raise RuntimeError("a scaled mode needs its value range")
    lo, hi = value_range
    value = np.asarray(band).astype(np.float64)
    span = hi - lo
    scaled = (value - lo) * (255.0 / span) if span > 0 else np.zeros_like(value)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    _gray(out, np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _bands(image: Image.Image, multiple: int = 1) -> Iterator[tuple[int, int]]:
    """Row ranges of about ``_BAND_PIXELS`` pixels; every band but the last has a multiple of
    ``multiple`` rows."""
    width, height = image.size
    rows = max(multiple, _BAND_PIXELS // max(1, width) // multiple * multiple)
    for top in range(0, height, rows):
        yield top, min(height, top + rows)


def _extrema(image: Image.Image) -> ValueRange | None:
    """Smallest and largest finite value of a one-band picture; None if it has none."""
    lo, hi = math.inf, -math.inf
    width = image.size[0]
    for top, bottom in _bands(image):
        value = np.asarray(image.crop((0, top, width, bottom)))
        finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return None if lo > hi else (lo, hi)


def _int32_range(image: Image.Image) -> ValueRange:
    found = _extrema(image)
    if found is None:
        return _NOMINAL_16BIT
    lo, hi = found
    return _NOMINAL_16BIT if lo >= 0 and hi <= 65535 else found


def _float_range(image: Image.Image) -> ValueRange:
    found = _extrema(image)
    if found is None:
        return (0.0, 1.0)
    lo, hi = found
    if lo >= 0 and hi <= 1:
        return (0.0, 1.0)
    if lo >= 0 and hi <= 255:
        return (0.0, 255.0)
    return found


_OVER_BLACK: Final[str] = "alpha composited over black"

#: Every Pillow mode and its conversion to 8-bit RGB. Gray modes become three equal channels.
MODE_TABLE: Final[Mapping[str, ModeRule]] = {
    "1": ModeRule(_bilevel, "0 -> 0, 1 -> 255"),
    "L": ModeRule(_luma, "gray as is"),
    "LA": ModeRule(_luma_alpha, f"gray, {_OVER_BLACK}"),
    "La": ModeRule(_luma_premultiplied, "premultiplied gray: alpha dropped (= over black)"),
    "P": ModeRule(_palette, f"palette colours; a transparent index is {_OVER_BLACK}"),
    "PA": ModeRule(_via_rgba, f"palette colours, {_OVER_BLACK}"),
    "RGB": ModeRule(_rgb, "as is"),
    "RGBA": ModeRule(_rgba, _OVER_BLACK),
    "RGBa": ModeRule(_first_three, "premultiplied: alpha dropped (= over black)"),
    "RGBX": ModeRule(_first_three, "padding byte dropped"),
    "CMYK": ModeRule(_pillow_rgb, "Pillow's CMYK -> RGB, (255 - C)(255 - K)/255 ...; no ICC profile"),
    "YCbCr": ModeRule(_pillow_rgb, "Pillow's YCbCr -> RGB (JPEG's BT.601 full range)"),
    "LAB": ModeRule(_pillow_rgb, "Pillow's CIELAB (D65) -> sRGB"),
    "HSV": ModeRule(_pillow_rgb, "Pillow's HSV -> RGB"),
    "I": ModeRule(
        _scaled,
        "32-bit int: values within 0..65535 are 16-bit samples (/257); any other range is stretched "
        "from the picture's minimum to its maximum",
        _int32_range,
    ),
    "I;16": ModeRule(_sixteen_bit, "16-bit: round(v / 257)"),
    "I;16L": ModeRule(_sixteen_bit, "16-bit little-endian: round(v / 257)"),
    "I;16B": ModeRule(_sixteen_bit, "16-bit big-endian: round(v / 257)"),
    "I;16N": ModeRule(_sixteen_bit, "16-bit native order: round(v / 257)"),
    "F": ModeRule(
        _scaled,
        "32-bit float: 0..1 (x255) or 0..255 (as is) when all finite values fit, else stretched from "
        "minimum to maximum; NaN -> 0",
        _float_range,
    ),
}


def _source_view(displayed: U8, orientation: int) -> U8:
    """The view of ``displayed`` (the oriented picture) indexed like the stored picture."""
    views: dict[int, Callable[[U8], U8]] = {
        1: lambda d: d,
        2: lambda d: d[:, ::-1],
        3: lambda d: d[::-1, ::-1],
        4: lambda d: d[::-1],
        5: lambda d: d.transpose(1, 0, 2),
        6: lambda d: np.rot90(d, 1),
        7: lambda d: d[::-1, ::-1].transpose(1, 0, 2),
        8: lambda d: np.rot90(d, -1),
    }
    return views[orientation](displayed)


def to_rgb(image: Image.Image, orientation: int = 1, *, reduce: int = 1) -> U8:
    """A loaded Pillow picture -> ``[H,W,3]`` uint8 RGB by :data:`MODE_TABLE`, EXIF ``orientation``
    applied, shrunk by the integer factor ``reduce`` (box average of the RGB values, Pillow's
    ``reduce``; sizes rounded up) band by band.

    Raises:
        PictureUndecodable: the mode is not in :data:`MODE_TABLE`.
        ValueError: ``orientation`` is not in 1..8 or ``reduce`` is not >= 1.
    """
    rule = MODE_TABLE.get(image.mode)
    if rule is None:
        raise PictureUndecodable(f"picture mode {image.mode!r}: expected one of {', '.join(MODE_TABLE)}")
    if not 1 <= orientation <= 8:
        raise ValueError(f"orientation: expected an EXIF orientation in 1..8, got {orientation}")
    _check_count("reduce", reduce)
    width, height = image.size
    out_w, out_h = -(-width // reduce), -(-height // reduce)
    shape = (out_w, out_h, 3) if orientation >= 5 else (out_h, out_w, 3)
    out: U8 = np.empty(shape, np.uint8)
    stored = _source_view(out, orientation)
    value_range = rule.value_range(image) if rule.value_range is not None else None
    for top, bottom in _bands(image, reduce):
        band = image.crop((0, top, width, bottom))
        if reduce == 1:
            rule.convert(band, stored[top:bottom], value_range)
            continue
        full: U8 = np.empty((bottom - top, width, 3), np.uint8)
        rule.convert(band, full, value_range)
        stored[top // reduce : -(-bottom // reduce)] = np.asarray(Image.fromarray(full).reduce(reduce))
    return out


# --- Decoding ----------------------------------------------------------------------------------------


def _draft_request(width: int, height: int, min_side: int | None) -> tuple[int, int] | None:
    """The size to ask Pillow's ``draft`` for, or None when no DCT scaling would apply."""
    if min_side is None or max(width, height) < 2 * min_side:
        return None
    ratio = min_side / max(width, height)
    return max(1, math.ceil(width * ratio)), max(1, math.ceil(height * ratio))


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block must not lose the picture
        logger.debug("unreadable EXIF block, orientation 1: %s", exc)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _identify(data: bytes | Path) -> str | None:
    """Pillow's name of the format of ``data`` when Pillow can open it at all (header only)."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as probe:
            return str(probe.format)
    except Exception:  # noqa: BLE001 - only naming the format: any failure means "unknown"
        return None


def _open(data: bytes | Path, limits: DecodeLimits) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data) if isinstance(data, bytes) else data, formats=limits.formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PictureTooLarge(f"refused by Pillow's decompression-bomb check: {exc}") from exc
    except UnidentifiedImageError as exc:
        kind = _identify(data)
        if kind is not None:
            raise UnsupportedFormat(
                f"expected a {' or '.join(limits.formats)} picture, got a {kind} picture", kind
            ) from exc
        raise PictureUndecodable(f"not a {' or '.join(limits.formats)} picture") from exc
    except Exception as exc:  # any reader failure is this picture's refusal, not a crash
        raise PictureUndecodable(f"unreadable header: {exc}") from exc


def decode_picture(
    data: bytes | Path, limits: DecodeLimits | None = None, *, max_decoded_pixels: int | None = None
) -> DecodedPicture:
    """Decode one encoded picture (bytes, or a file) into 8-bit RGB within ``limits``.

    ``max_decoded_pixels`` bounds the size it decodes to (after any DCT scaling): a caller's
    remaining budget.

    Raises:
        PictureTooLarge: over ``limits.max_pixels``, Pillow's bomb limit or ``max_decoded_pixels``.
        UnsupportedFormat: a picture in a format outside ``limits.formats``.
        PictureUndecodable: empty, not a picture, truncated or corrupt.
    """
    limits = limits or DecodeLimits()
    if isinstance(data, bytes) and not data:
        raise PictureUndecodable("expected image bytes, got 0 bytes")
    with _open(data, limits) as image:
        width, height = image.size
        limit = limits.effective_max_pixels
        if width * height > limit:
            raise PictureTooLarge(
                f"picture {width}x{height} ({width * height} pixels): expected at most {limit} pixels"
            )
        request = _draft_request(width, height, limits.min_side)
        if request is not None and isinstance(image, JpegImagePlugin.JpegImageFile):
            image.draft(None, request)
        decoded_w, decoded_h = image.size
        if max_decoded_pixels is not None and decoded_w * decoded_h > max_decoded_pixels:
            raise PictureTooLarge(
                f"picture {width}x{height} decodes to {decoded_w * decoded_h} pixels: expected at most "
                f"{max(0, max_decoded_pixels)} (what is left of the request's pixel budget)"
            )
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PictureTooLarge(f"refused by Pillow's decompression-bomb check: {exc}") from exc
        except MemoryError as exc:
            raise PictureTooLarge(f"picture {width}x{height}: not enough memory to decode it") from exc
        except Exception as exc:  # any decoder failure is this picture's refusal
            raise PictureUndecodable(
                f"{image.format} picture {width}x{height} does not decode: {exc}"
            ) from exc
        if image.size != (decoded_w, decoded_h):
            raise PictureUndecodable(
                f"expected a {decoded_w}x{decoded_h} picture from the decoder, "
                f"got {image.size[0]}x{image.size[1]}"
            )
        orientation = _orientation(image)
        shrink = max(decoded_w, decoded_h) // limits.min_side if limits.min_side is not None else 1
        rgb = to_rgb(image, orientation, reduce=shrink if shrink >= 2 else 1)
        kind, mode = str(image.format), image.mode
    if orientation >= 5:
        width, height = height, width
    return DecodedPicture(rgb, width, height, kind, mode, orientation, decoded_w * decoded_h)
