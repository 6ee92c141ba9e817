"""Tests for faceflow.models.crops: crop boxes, crop tensors, landmarks back to the frame."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from faceflow.models.boxes import crop_px_to_frame, expand_box, landmarks_to_frame, normalize_landmarks
from faceflow.models.contract import CROP_SIZE, IMAGENET_MEAN, IMAGENET_STD
from faceflow.models.crops import crop_faces


def two_colour_image(h: int = 100, w: int = 200) -> np.ndarray:
    """Left half red, right half blue."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 255
    img[:, w // 2 :, 2] = 255
    return img


@pytest.mark.parametrize(
    ("box", "margin", "size", "want"),
    [
        ((100, 100, 140, 180), 0.25, (1000, 1000), (90, 80, 150, 200)),
        ((100, 100, 140, 180), 0.0, (1000, 1000), (100, 100, 140, 180)),
        ((0, 10, 40, 50), 0.25, (45, 55), (0, 0, 45, 55)),  # clamped on every side
        ((10.5, 20.25, 30.5, 60.25), 0.5, (100, 100), (0.5, 0.25, 40.5, 80.25)),
    ],
)
def test_expand_box(
    box: tuple[float, ...], margin: float, size: tuple[int, int], want: tuple[float, ...]
) -> None:
    out = expand_box(box, margin, width=size[0], height=size[1])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, want, atol=1e-4)


def test_expand_box_many_and_none() -> None:
    boxes = np.array([[100, 100, 140, 180], [0, 0, 10, 10]], np.float32)
    out = expand_box(boxes, width=1000, height=1000)
    np.testing.assert_allclose(out, [[90, 80, 150, 200], [0, 0, 12.5, 12.5]])
    assert expand_box(np.zeros((0, 4)), width=10, height=10).shape == (0, 4)


@pytest.mark.parametrize(
    ("box", "kwargs", "match"),
    [
        ((0, 0, 10, 10), {"margin": -0.1}, "expected margin >= 0, got -0.1"),
        ((0, 0, 10, 10), {"width": 0}, "positive frame size"),
        ((10, 0, 0, 10), {}, "inverted box"),
        ((0, 0, 10), {}, r"expected box of shape \[F,4\], got \[1, 3\]"),
        ((0, 0, np.nan, 10), {}, "finite"),
    ],
)
def test_expand_box_validation(box: tuple[float, ...], kwargs: dict[str, float], match: str) -> None:
    args: dict[str, float] = {"margin": 0.25, "width": 100, "height": 100}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        expand_box(box, args["margin"], width=int(args["width"]), height=int(args["height"]))


def test_crop_faces_shape_and_normalisation() -> None:
    img = np.full((50, 80, 3), (255, 128, 0), np.uint8)
    out = crop_faces(img, [[0, 0, 80, 50], [10.5, 5.5, 30.25, 40.75]])
    assert out.shape == (2, 3, CROP_SIZE, CROP_SIZE)
    assert out.dtype == np.float32
    want = (np.array([255, 128, 0]) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    for c in range(3):
        np.testing.assert_allclose(out[:, c], want[c], atol=1e-4)


def test_crop_faces_keeps_orientation_and_rgb() -> None:
    img = two_colour_image()
    out = crop_faces(img, [[50, 0, 150, 100]])  # red on the left half of the crop, blue on the right
    red = (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    blue = (1 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]
    assert out[0, 0, :, :100].mean() == pytest.approx(red, abs=1e-3)
    assert out[0, 2, :, 124:].mean() == pytest.approx(blue, abs=1e-3)
    assert out[0, 2, :, :100].mean() < 0 < out[0, 0, :, :100].mean()


def test_crop_faces_on_a_real_face() -> None:
    img = data.astronaut()
    crop_box = expand_box((181.5, 58.2, 269.9, 177.8), width=img.shape[1], height=img.shape[0])
    out = crop_faces(img, crop_box[None])
    assert out.shape == (1, 3, 224, 224)
    assert np.isfinite(out).all()
    assert -2.2 < out.min() < out.max() < 2.7  # the ImageNet-normalised range


def test_crop_faces_zero_faces() -> None:
    out = crop_faces(np.zeros((10, 10, 3), np.uint8), np.zeros((0, 4)))
    assert out.shape == (0, 3, CROP_SIZE, CROP_SIZE)


@pytest.mark.parametrize(
    ("image", "boxes", "match"),
    [
        (np.zeros((10, 10), np.uint8), [[0, 0, 5, 5]], r"shape \[H,W,3\], got \[10, 10\]"),
        (np.zeros((10, 10, 3), np.float32), [[0, 0, 5, 5]], "dtype uint8, got float32"),
        (np.zeros((10, 10, 3), np.uint8), [[0, 0, 5]], r"crop_boxes of shape \[F,4\]"),
        (np.zeros((10, 10, 3), np.uint8), [[3, 3, 3, 8]], "positive width and height"),
        (
            np.zeros((10, 20, 3), np.uint8),
            [[-1, 0, 5, 5]],
            r"inside the 20x10 frame .*, got \[-1.0, 0.0, 5.0, 5.0\]",
        ),
        (np.zeros((10, 20, 3), np.uint8), [[0, 0, 5, 10.5]], "inside the 20x10 frame"),
    ],
)
def test_crop_faces_validation(image: np.ndarray, boxes: list[list[float]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        crop_faces(image, boxes)


@pytest.mark.parametrize(
    ("v", "crop_px"),
    [(-1.0, -0.5), (1.0, 223.5), (0.0, 111.5)],
)
def test_normalize_landmarks_formula(v: float, crop_px: float) -> None:
    out = normalize_landmarks(np.full((1, 136), v))
    assert out.shape == (1, 68, 2)
    np.testing.assert_allclose(out, crop_px)


def test_landmarks_to_frame_identity_box_and_scaling() -> None:
    raw = np.random.default_rng(1).uniform(-1, 1, (2, 136))
    crop_px = normalize_landmarks(raw)
    same = landmarks_to_frame(raw, [[0, 0, 224, 224], [0, 0, 224, 224]])
    np.testing.assert_allclose(same, crop_px, atol=1e-4)
    # a 448-wide crop at x=100: crop pixel p -> 100 + (p + 0.5) * 2 - 0.5
    moved = landmarks_to_frame(raw[:1], [[100, 50, 548, 162]])
    np.testing.assert_allclose(moved[0, :, 0], 100 + (crop_px[0, :, 0] + 0.5) * 2 - 0.5, atol=1e-3)
    np.testing.assert_allclose(moved[0, :, 1], 50 + (crop_px[0, :, 1] + 0.5) * 0.5 - 0.5, atol=1e-3)


def test_landmarks_corners_land_on_crop_edges() -> None:
    raw = np.zeros((1, 136))
    raw[0, 0:2] = -1.0  # point 0 at the crop's top-left edge
    raw[0, 2:4] = 1.0  # point 1 at the bottom-right edge
    out = landmarks_to_frame(raw, [[10, 20, 110, 70]])
    np.testing.assert_allclose(out[0, 0], [10 - 0.5, 20 - 0.5], atol=1e-4)
    np.testing.assert_allclose(out[0, 1], [110 - 0.5, 70 - 0.5], atol=1e-4)


def test_landmarks_zero_faces() -> None:
    assert landmarks_to_frame(np.zeros((0, 136)), np.zeros((0, 4))).shape == (0, 68, 2)


@pytest.mark.parametrize(
    ("raw", "boxes", "match"),
    [
        (np.zeros((1, 134)), [[0, 0, 1, 1]], r"raw landmarks of shape \[F,136\], got \[1, 134\]"),
        (np.zeros((2, 136)), [[0, 0, 1, 1]], r"points of shape \[1,K,2\], got \[2, 68, 2\]"),
        (np.zeros((1, 136)), [[0, 0, 1]], r"crop_boxes of shape \[F,4\]"),
    ],
)
def test_landmarks_validation(raw: np.ndarray, boxes: list[list[float]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        landmarks_to_frame(raw, boxes)


def test_crop_px_to_frame_many_points() -> None:
    pts = np.array([[[0.0, 0.0], [223.0, 223.0]]])
    out = crop_px_to_frame(pts, [[0, 0, 224, 224]])
    np.testing.assert_allclose(out, pts)
