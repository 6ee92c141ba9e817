"""Pushed pictures through faceflow.ingest.push.prepare_image: every JPEG/PNG mode to the right
colours, bombs refused from the header without allocating their pixels, big JPEGs DCT-scaled; and
image-folder files through the same decoder."""

from __future__ import annotations

import io
import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from models.test_imaging_samples import astronaut, encode, png_header, png_zeros
from PIL import Image

from faceflow.ingest.encode import EncodeSettings, bound_size
from faceflow.ingest.errors import FrameTooLarge
from faceflow.ingest.push import NotAnImage, prepare_image
from faceflow.ingest.sources import ImageFolderSource

PALETTE = [10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6)


def flat(mode: str, value: object, size: tuple[int, int] = (48, 32)) -> Image.Image:
    return Image.new(mode, size, value)  # type: ignore[arg-type]


def palette(transparent: bool) -> Image.Image:
    image = Image.new("P", (48, 32), 1)
    image.putpalette(PALETTE)
    if transparent:
        image.info["transparency"] = 1
    return image


def sixteen_bit(value: int) -> Image.Image:
    return Image.fromarray(np.full((32, 48), value, np.uint16))


#: (picture, format, expected RGB): the pushed picture's colour after prepare_image.
MODE_CASES: list[tuple[Callable[[], Image.Image], str, tuple[int, int, int]]] = [
    (lambda: flat("1", 1), "PNG", (255, 255, 255)),
    (lambda: flat("L", 77), "PNG", (77, 77, 77)),
    (lambda: flat("LA", (200, 128)), "PNG", (100, 100, 100)),  # alpha composited over black
    (lambda: palette(transparent=False), "PNG", (200, 100, 50)),
    (lambda: palette(transparent=True), "PNG", (0, 0, 0)),
    (lambda: flat("RGB", (30, 140, 220)), "PNG", (30, 140, 220)),
    (lambda: flat("RGBA", (200, 100, 50, 128)), "PNG", (100, 50, 25)),
    (lambda: sixteen_bit(30_000), "PNG", (117, 117, 117)),  # 30000 / 257, not clipped to white
    (lambda: sixteen_bit(65_535), "PNG", (255, 255, 255)),
    (lambda: sixteen_bit(1_000), "PNG", (4, 4, 4)),
    (lambda: flat("L", 77), "JPEG", (77, 77, 77)),
    (lambda: flat("CMYK", (0, 255, 0, 0)), "JPEG", (255, 0, 255)),
    (lambda: flat("CMYK", (0, 0, 0, 128)), "JPEG", (127, 127, 127)),
]


def colours(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG"
        return np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)


@pytest.mark.parametrize(("build", "fmt", "expected"), MODE_CASES)
def test_every_mode_arrives_in_the_right_colours(
    build: Callable[[], Image.Image], fmt: str, expected: tuple[int, int, int]
) -> None:
    prepared = prepare_image(encode(build(), fmt), EncodeSettings())
    assert not prepared.passed_through
    assert (prepared.width, prepared.height) == (48, 32)
    assert np.abs(colours(prepared.data) - expected).max() <= 3


def test_an_rgb_jpeg_that_fits_is_passed_through() -> None:
    data = encode(flat("RGB", (30, 140, 220)), "JPEG")
    prepared = prepare_image(data, EncodeSettings())
    assert prepared.passed_through and prepared.data is data


def test_a_rotated_jpeg_is_re_encoded_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rgb = np.zeros((32, 64, 3), np.uint8)
    rgb[:, :32] = 255  # left half white: after rotation the top half is white
    prepared = prepare_image(encode(rgb, "JPEG", exif=exif.tobytes()), EncodeSettings())
    assert not prepared.passed_through and (prepared.width, prepared.height) == (32, 64)
    with Image.open(io.BytesIO(prepared.data)) as image:
        upright = np.asarray(image.convert("L")).astype(int)
    assert upright[:28].mean() > 240 and upright[36:].mean() < 15


def test_a_big_jpeg_is_dct_scaled_and_matches_a_full_decode() -> None:
    rgb = astronaut(2600)
    prepared = prepare_image(encode(rgb, "JPEG", quality=95), EncodeSettings(max_side=1280))
    assert (prepared.width, prepared.height) == (1280, 1280) and not prepared.passed_through
    reference = bound_size(rgb, 1280)
    assert np.abs(colours(prepared.data) - reference.reshape(-1, 3).astype(int)).mean() < 3


def _status_kb(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match is not None, f"no {field} in /proc/self/status"
    return int(match.group(1))


@pytest.mark.parametrize(
    ("make_bomb", "message"),
    [
        (
            lambda: png_header(100_000, 100_000),
            "picture refused: refused by Pillow's decompression-bomb check",
        ),
        (lambda: png_header(9000, 9000, "RGBA"), r"picture refused: picture 9000x9000 \(81000000 pixels\)"),
        (lambda: png_zeros(8000, 8000, "RGBA"), r"picture refused: picture 8000x8000 \(64000000 pixels\)"),
    ],
)
def test_a_tiny_png_bomb_is_refused_without_allocating_its_pixels(
    make_bomb: Callable[[], bytes], message: str
) -> None:
    bomb = make_bomb()
    assert len(bomb) < 300_000  # 64 megapixels of RGBA in a few hundred KB at most
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS (VmHWM) restarts from now
    rss_before = _status_kb("VmRSS")
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge, match=message):
            prepare_image(bomb, EncodeSettings())
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # decoding it would take 256 MB (RGBA) and 192 MB more for RGB; refusing it takes next to nothing
    assert python_peak < 4 * 2**20
    assert _status_kb("VmHWM") - rss_before < 16 * 1024


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (png_zeros(40, 30)[:40], NotAnImage, "that do not decode"),
        (
            encode(flat("RGB", (1, 2, 3)), "WEBP"),
            NotAnImage,
            "expected a JPEG or PNG picture, got a WEBP picture",
        ),
        (encode(flat("RGB", (1, 2, 3)), "TIFF"), NotAnImage, "got a TIFF picture"),
    ],
)
def test_other_refusals_keep_their_kind(data: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        prepare_image(data, EncodeSettings())


def test_an_image_folder_decodes_every_mode_and_skips_bombs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "1.png").write_bytes(encode(sixteen_bit(30_000), "PNG"))
    (tmp_path / "2.png").write_bytes(png_header(100_000, 100_000))
    (tmp_path / "3.tif").write_bytes(encode(Image.fromarray(np.full((32, 48), 0.5, np.float32)), "TIFF"))
    (tmp_path / "4.png").write_bytes(png_zeros(8000, 8000))
    (tmp_path / "5.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    (tmp_path / "6.jpg").write_bytes(encode(flat("CMYK", (0, 255, 0, 0)), "JPEG"))
    with (
        caplog.at_level("WARNING", logger="faceflow.ingest.sources"),
        ImageFolderSource(tmp_path, "photos") as source,
    ):
        frames = list(source)
    assert [p.name for p in source.skipped] == ["2.png", "4.png", "5.eps"]
    corners = np.array([f.rgb[0, 0] for f in frames], int)
    assert np.abs(corners - [[117, 117, 117], [128, 128, 128], [255, 0, 255]]).max() <= 3  # JPEG: near
    assert (
        "skipping" in caplog.text and "2.png: too large" in caplog.text and "4.png: too large" in caplog.text
    )
    assert "5.eps: not a readable image" in caplog.text
