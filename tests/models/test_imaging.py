"""faceflow.models.imaging: every Pillow mode to the right 8-bit RGB, bombs refused from the header,
broken bytes undecodable, EXIF orientation, and DCT-scaled JPEG decoding that keeps coordinates."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from models.test_imaging_samples import astronaut, encode, iou, png_header, png_zeros
from PIL import Image, ImageOps

from faceflow.models.centerface import CenterFaceDetector
from faceflow.models.contract import DECODE_MIN_SIDE, DETECT_MAX_SIDE, MAX_FRAME_PIXELS
from faceflow.models.imaging import (
    MODE_TABLE,
    STILL_FORMATS,
    DecodedPicture,
    DecodeLimits,
    PictureTooLarge,
    PictureUndecodable,
    UnsupportedFormat,
    decode_picture,
    to_rgb,
)
from faceflow.models.pipeline import FrameLimits, LocatorStage

#: Every mode Pillow 13 has (``Image.new`` accepts exactly these).
PILLOW_MODES = (
    "1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX",
    "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "I;16L", "I;16B", "I;16N", "F",
)  # fmt: skip

ANY_FORMAT = DecodeLimits(max_pixels=MAX_FRAME_PIXELS, formats=STILL_FORMATS)


def gray3(values: object) -> np.ndarray:
    """Expected RGB of a gray picture: three equal channels."""
    v = np.asarray(values, np.uint8)
    return np.repeat(v[..., None], 3, axis=-1)


def from_bytes(mode: str, rows: list[list[tuple[int, ...]]]) -> Image.Image:
    raw = np.asarray(rows, np.uint8)
    return Image.frombytes(mode, (raw.shape[1], raw.shape[0]), raw.tobytes())


def merged(mode: str, rows: list[list[tuple[int, ...]]]) -> Image.Image:
    """A picture of ``mode`` whose stored band values are ``rows`` (LAB's raw bytes are signed a/b)."""
    raw = np.asarray(rows, np.uint8)
    return Image.merge(
        mode, [Image.fromarray(np.ascontiguousarray(raw[..., c])) for c in range(raw.shape[2])]
    )


def palette_image(alpha: list[list[int]] | None = None, transparent_index: int | None = None) -> Image.Image:
    index = np.array([[0, 1, 2]], np.uint8)
    mode = "PA" if alpha is not None else "P"
    if alpha is not None:
        image = Image.frombytes("PA", (3, 1), np.dstack([index, np.asarray(alpha, np.uint8)]).tobytes())
    else:
        image = Image.fromarray(index, "L").convert("P")
    image.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (256 * 3 - 9))
    if transparent_index is not None:
        image.info["transparency"] = transparent_index
    assert image.mode == mode
    return image


RAMP16 = np.arange(0, 65536, 257 * 15, dtype=np.uint16).reshape(1, -1)  # 0, 3855, ... 65535
RAMP8 = (RAMP16 // 257).astype(np.uint8)  # exact: multiples of 257


def sixteen(mode: str, dtype: str) -> Image.Image:
    return Image.frombytes(mode, (RAMP16.shape[1], 1), RAMP16.astype(dtype).tobytes())


def over_black(rgb: list[int], alpha: int) -> list[int]:
    return [int(np.rint(c * alpha / 255)) for c in rgb]


#: (mode, picture builder, expected RGB, tolerance): one row or more per Pillow mode.
MODE_CASES: list[tuple[str, Callable[[], Image.Image], np.ndarray, int]] = [
    ("1", lambda: Image.fromarray(np.array([[False, True]])), gray3([[0, 255]]), 0),
    ("L", lambda: Image.fromarray(np.arange(0, 256, 51, dtype=np.uint8).reshape(1, -1)),
     gray3([[0, 51, 102, 153, 204, 255]]), 0),
    ("LA", lambda: from_bytes("LA", [[(200, 255), (200, 128), (200, 0)]]),
     gray3([[200, 100, 0]]), 0),
    ("La", lambda: from_bytes("La", [[(100, 128), (255, 255)]]), gray3([[100, 255]]), 0),
    ("P", palette_image, np.array([[[10, 20, 30], [200, 100, 50], [0, 255, 0]]], np.uint8), 0),
    ("P", lambda: palette_image(transparent_index=1),
     np.array([[[10, 20, 30], [0, 0, 0], [0, 255, 0]]], np.uint8), 0),
    ("PA", lambda: palette_image(alpha=[[255, 128, 0]]),
     np.array([[[10, 20, 30], over_black([200, 100, 50], 128), [0, 0, 0]]], np.uint8), 0),
    ("RGB", lambda: from_bytes("RGB", [[(1, 2, 3), (250, 128, 7)]]),
     np.array([[[1, 2, 3], [250, 128, 7]]], np.uint8), 0),
    ("RGBA", lambda: from_bytes("RGBA", [[(200, 100, 50, 255), (200, 100, 50, 128), (9, 9, 9, 0)]]),
     np.array([[[200, 100, 50], over_black([200, 100, 50], 128), [0, 0, 0]]], np.uint8), 0),
    ("RGBa", lambda: from_bytes("RGBa", [[(100, 50, 20, 128)]]), np.array([[[100, 50, 20]]], np.uint8), 0),
    ("RGBX", lambda: from_bytes("RGBX", [[(1, 2, 3, 99)]]), np.array([[[1, 2, 3]]], np.uint8), 0),
    ("CMYK", lambda: from_bytes("CMYK", [[(0, 0, 0, 0), (255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0),
                                          (0, 0, 0, 255), (0, 0, 0, 128)]]),
     np.array([[[255, 255, 255], [0, 255, 255], [255, 0, 255], [255, 255, 0], [0, 0, 0], [127, 127, 127]]],
              np.uint8), 0),
    ("YCbCr", lambda: from_bytes("YCbCr", [[(0, 128, 128), (128, 128, 128), (255, 128, 128), (76, 85, 255)]]),
     np.array([[[0, 0, 0], [128, 128, 128], [255, 255, 255], [255, 0, 0]]], np.uint8), 2),
    # CIELAB stored as L*x255/100, a*+128, b*+128; sRGB red is L*a*b* (53.2, 80.1, 67.2); L* 50 is sRGB 119.
    ("LAB", lambda: merged("LAB", [[(0, 128, 128), (128, 128, 128), (255, 128, 128), (136, 208, 195)]]),
     np.array([[[0, 0, 0], [119, 119, 119], [255, 255, 255], [255, 0, 0]]], np.uint8), 12),
    ("HSV", lambda: from_bytes("HSV", [[(0, 255, 255), (85, 255, 255), (170, 255, 255), (0, 0, 128)]]),
     np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]]], np.uint8), 0),
    # 16-bit samples in a 32-bit picture (0..65535): scaled by 257, not clipped at 255.
    ("I", lambda: Image.fromarray(RAMP16.astype(np.int32)), gray3(RAMP8), 0),
    # a true 32-bit range is stretched from its minimum to its maximum
    ("I", lambda: Image.fromarray(np.array([[-100_000, 0, 100_000]], np.int32)), gray3([[0, 128, 255]]), 0),
    ("I;16", lambda: sixteen("I;16", "<u2"), gray3(RAMP8), 0),
    ("I;16L", lambda: sixteen("I;16L", "<u2"), gray3(RAMP8), 0),
    ("I;16B", lambda: sixteen("I;16B", ">u2"), gray3(RAMP8), 0),
    ("I;16N", lambda: sixteen("I;16N", "=u2"), gray3(RAMP8), 0),
    ("I;16", lambda: Image.fromarray(np.array([[1000, 32768, 65535]], np.uint16)), gray3([[4, 128, 255]]), 0),
    ("F", lambda: Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)), gray3([[0, 128, 255]]), 0),
    ("F", lambda: Image.fromarray(np.array([[0.0, 17.0, 255.0]], np.float32)), gray3([[0, 17, 255]]), 0),
    ("F", lambda: Image.fromarray(np.array([[-10.0, 0.0, 10.0, np.nan]], np.float32)),
     gray3([[0, 128, 255, 0]]), 0),
]  # fmt: skip


def test_the_table_covers_every_pillow_mode() -> None:
    for mode in PILLOW_MODES:
        Image.new(mode, (1, 1))  # a real Pillow mode
    assert set(MODE_TABLE) == set(PILLOW_MODES)
    assert {case[0] for case in MODE_CASES} == set(PILLOW_MODES)


@pytest.mark.parametrize(("mode", "build", "expected", "tolerance"), MODE_CASES)
def test_every_mode_becomes_the_right_rgb(
    mode: str, build: Callable[[], Image.Image], expected: np.ndarray, tolerance: int
) -> None:
    image = build()
    assert image.mode == mode
    rgb = to_rgb(image)
    assert rgb.dtype == np.uint8 and rgb.shape == expected.shape and rgb.flags.c_contiguous
    np.testing.assert_allclose(rgb.astype(int), expected.astype(int), atol=tolerance, err_msg=mode)


def test_a_16_bit_gray_png_ramp_decodes_to_the_8_bit_ramp_not_white() -> None:
    ramp = np.tile(np.arange(0, 65536, 257, dtype=np.uint16), (4, 1))  # 256 steps, 0..65535
    picture = decode_picture(encode(Image.fromarray(ramp)))
    assert picture.mode == "I;16"
    np.testing.assert_array_equal(picture.rgb, gray3(np.tile(np.arange(256, dtype=np.uint8), (4, 1))))


def test_conversion_runs_in_bands_of_a_tall_picture() -> None:
    tall = (np.arange(3000 * 400, dtype=np.uint32).reshape(3000, 400) % 65536).astype(np.uint16)
    np.testing.assert_array_equal(to_rgb(Image.fromarray(tall)), gray3((tall.astype(np.uint32) + 128) // 257))


# --- encoded files ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("RGB", "PNG"), ("RGBA", "PNG"),
        ("I;16", "PNG"), ("L", "JPEG"), ("RGB", "JPEG"), ("CMYK", "JPEG"), ("F", "TIFF"), ("I", "TIFF"),
        ("I;16B", "TIFF"), ("LAB", "TIFF"), ("CMYK", "TIFF"), ("YCbCr", "TIFF"), ("PA", "TIFF"),
    ],
)  # fmt: skip
def test_encoded_pictures_decode_like_their_mode(mode: str, fmt: str) -> None:
    rng = np.random.default_rng(0)
    original = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).convert(mode)
    data = encode(original, fmt)
    with Image.open(io.BytesIO(data)) as stored:
        stored.load()
        expected = to_rgb(stored)  # the table, on what the file holds
        stored_mode = stored.mode
    picture = decode_picture(data, ANY_FORMAT)
    assert (picture.format, picture.mode) == (fmt, stored_mode)
    assert (picture.width, picture.height) == (32, 24)
    np.testing.assert_array_equal(picture.rgb, expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(orientation: int) -> None:
    rgb = np.random.default_rng(orientation).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(rgb), "PNG", exif=exif.tobytes())
    picture = decode_picture(data)
    with Image.open(io.BytesIO(data)) as img:
        expected = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    assert picture.orientation == orientation
    assert (picture.height, picture.width) == expected.shape[:2]
    np.testing.assert_array_equal(picture.rgb, expected)


# --- refusals -----------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("data", "limits", "message"),
    [
        (png_header(9000, 9000), DecodeLimits(), r"picture 9000x9000 \(81000000 pixels\)"),
        (png_header(100_000, 100_000), DecodeLimits(), "Pillow's decompression-bomb check"),
        (png_header(7681, 4320, "L"), DecodeLimits(), "expected at most 33177600 pixels"),
        (png_zeros(300, 200), DecodeLimits(max_pixels=59_999), "expected at most 59999 pixels"),
        # over Pillow's own limit (89.5 MP: its warning; twice that: its error), ours set far above it
        (png_header(10_000, 10_000, "L"), DecodeLimits(max_pixels=10**12), "expected at most 89478485"),
        (png_header(20_000, 10_000, "L"), DecodeLimits(max_pixels=10**12), "decompression bomb"),
    ],
)
def test_bombs_are_too_large_from_the_header(data: bytes, limits: DecodeLimits, message: str) -> None:
    with pytest.raises(PictureTooLarge, match=message):
        decode_picture(data, limits)


def test_pillow_bomb_warning_raised_as_an_error_is_too_large() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PictureTooLarge, match="decompression bomb"):
            decode_picture(png_header(10_000, 10_000, "L"), DecodeLimits(max_pixels=10**12))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_smaller_pillow_limit_applies_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    assert DecodeLimits().effective_max_pixels == 10_000
    with pytest.raises(PictureTooLarge, match="expected at most 10000 pixels"):
        decode_picture(png_zeros(150, 100))
    with pytest.raises(PictureTooLarge):
        decode_picture(png_zeros(250, 100))  # over twice Pillow's limit: its DecompressionBombError


def test_the_pixel_budget_counts_the_decoded_size() -> None:
    big = encode(astronaut(2600), "JPEG")  # DCT-scaled 1/2 at min_side 1280: 1300 x 1300
    limits = DecodeLimits(min_side=1280)
    with pytest.raises(PictureTooLarge, match="decodes to 1690000 pixels: expected at most 1689999"):
        decode_picture(big, limits, max_decoded_pixels=1_689_999)
    assert decode_picture(big, limits, max_decoded_pixels=1_690_000).decoded_pixels == 1_690_000


JPEG = encode(astronaut(), "JPEG")
PNG = encode(astronaut(), "PNG")


def corrupt(data: bytes, at: int) -> bytes:
    return data[:at] + bytes(b ^ 0x5A for b in data[at : at + 64]) + data[at + 64 :]


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", PictureUndecodable, "got 0 bytes"),
        (b"not an image at all", PictureUndecodable, "not a JPEG or PNG picture"),
        (np.random.default_rng(1).bytes(4096), PictureUndecodable, "not a JPEG or PNG picture"),
        (b"\x89PNG\r\n\x1a\n" + np.random.default_rng(2).bytes(500), PictureUndecodable, "not a JPEG or PNG"),
        (JPEG[: len(JPEG) // 2], PictureUndecodable, "JPEG picture 512x512 does not decode"),
        (PNG[: len(PNG) // 2], PictureUndecodable, "PNG picture 512x512 does not decode"),
        (corrupt(PNG, len(PNG) // 2), PictureUndecodable, "does not decode"),
        (encode(astronaut(), "GIF"), UnsupportedFormat, "expected a JPEG or PNG picture, got a GIF picture"),
        (encode(astronaut(), "TIFF"), UnsupportedFormat, "got a TIFF picture"),
    ],
)
def test_broken_or_foreign_bytes_are_undecodable(data: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        decode_picture(data)


def test_unsupported_format_names_it() -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        decode_picture(encode(astronaut(), "BMP"))
    assert caught.value.format == "BMP"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_pixels": 0}, "max_pixels: expected an int >= 1, got 0"),
        ({"max_pixels": True}, "max_pixels: expected an int >= 1, got True"),
        ({"min_side": 0}, "min_side: expected an int >= 1 or None, got 0"),
        ({"formats": ()}, "formats: expected a non-empty tuple"),
        ({"formats": ("JPEG", "XYZ")}, r"formats: expected formats Pillow can open .*got \['XYZ'\]"),
    ],
)
def test_decode_limits_validate(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecodeLimits(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rgb", "size", "message"),
    [
        (np.zeros((2, 2), np.uint8), (2, 2), r"rgb: expected uint8 of shape \[H,W,3\], got uint8 \[2, 2\]"),
        (np.zeros((2, 2, 3), np.float32), (2, 2), "got float32"),
        (np.zeros((0, 2, 3), np.uint8), (2, 2), "expected at least one pixel"),
        (np.zeros((4, 4, 3), np.uint8), (2, 2), "expected rgb no larger than 2x2, got 4x4"),
    ],
)
def test_decoded_picture_validates(rgb: np.ndarray, size: tuple[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecodedPicture(rgb, size[0], size[1], "PNG", "RGB")


# --- DCT-scaled JPEG decoding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "min_side", "decoded"),
    [
        ((4000, 3001), 1280, (2000, 1501)),  # 1/2: the longest side stays >= 1280
        ((7680, 4320), DECODE_MIN_SIDE, (3840, 2160)),  # 8K -> 4K at the default
        ((3840, 2160), DECODE_MIN_SIDE, (3840, 2160)),  # 4K stays full size at the default
        ((2559, 100), 1280, (2559, 100)),  # under twice min_side: full size
        ((4000, 3001), None, (4000, 3001)),
        ((5000, 300), 1000, (1250, 75)),  # 1/4 by DCT scaling: 5000 // 4 >= 1000 > 5000 // 8
    ],
)
def test_jpeg_draft_keeps_the_longest_side_at_least_min_side(
    size: tuple[int, int], min_side: int | None, decoded: tuple[int, int]
) -> None:
    data = encode(Image.new("RGB", size, (90, 120, 150)), "JPEG")
    picture = decode_picture(data, DecodeLimits(min_side=min_side))
    assert (picture.rgb.shape[1], picture.rgb.shape[0]) == decoded
    assert (picture.width, picture.height) == size
    assert picture.scale == (size[0] / decoded[0], size[1] / decoded[1])
    assert np.abs(picture.rgb.astype(int) - (90, 120, 150)).max() <= 3


@pytest.mark.parametrize(("mode", "orientation"), [("RGB", 1), ("I;16", 1), ("P", 6), ("RGBA", 8)])
def test_a_big_png_is_shrunk_band_by_band_like_a_whole_reduce(mode: str, orientation: int) -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (2900, 1300, 3), dtype=np.uint8)  # taller than one band at 1300 wide
    image = (
        Image.fromarray(rgb).convert(mode)
        if mode != "I;16"
        else Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(image, "PNG", exif=exif.tobytes())
    picture = decode_picture(data, DecodeLimits(min_side=1000))  # 2900 // 1000: shrunk by 2
    with Image.open(io.BytesIO(data)) as stored:
        stored.load()
        full = Image.fromarray(to_rgb(stored, orientation))
    expected = np.asarray(full.reduce(2))
    assert picture.rgb.shape == expected.shape and picture.reduced
    assert picture.decoded_pixels == 2900 * 1300
    np.testing.assert_array_equal(picture.rgb, expected)


@pytest.fixture(scope="module")
def centerface() -> CenterFaceDetector:
    return CenterFaceDetector(max_side=DETECT_MAX_SIDE)


@pytest.mark.parametrize(("side", "min_side"), [(4000, 1280), (5120, DECODE_MIN_SIDE)])
def test_draft_decode_finds_the_same_face_in_original_coordinates(
    centerface: CenterFaceDetector, side: int, min_side: int
) -> None:
    data = encode(astronaut(side), "JPEG", quality=92)
    full = LocatorStage(detector=centerface, limits=FrameLimits(min_side=None)).run([data])
    draft = LocatorStage(detector=centerface, limits=FrameLimits(min_side=min_side)).run([data])
    picture = draft.pictures[0]
    assert picture is not None and picture.reduced and picture.rgb.shape[0] == side // 2
    assert full.frame_index.tolist() == draft.frame_index.tolist() == [0]
    assert iou(full.boxes[0].tolist(), draft.boxes[0].tolist()) > 0.95
    reference = np.array([181.5, 58.2, 269.9, 177.8]) * side / 512  # the face in the 512 px original
    assert iou(draft.boxes[0].tolist(), reference.tolist()) > 0.6
    np.testing.assert_allclose(draft.keypoints5, full.keypoints5, atol=side * 0.004)


def test_normal_frames_decode_exactly_as_before(centerface: CenterFaceDetector) -> None:
    frames = [encode(astronaut(), "JPEG"), encode(astronaut(640)[:480], "JPEG"), PNG]
    default = LocatorStage(detector=centerface).run(frames)
    full = LocatorStage(detector=centerface, limits=FrameLimits(min_side=None)).run(frames)
    for name, value in default.as_tensors().items():
        np.testing.assert_array_equal(value, full.as_tensors()[name], err_msg=name)
    for data, picture in zip(frames, default.pictures, strict=True):
        with Image.open(io.BytesIO(data)) as img:
            assert picture is not None and not picture.reduced
            np.testing.assert_array_equal(picture.rgb, np.asarray(img.convert("RGB")))
