"""Where the face model looks and the way back: crop boxes and crop-to-frame coordinates (pure numpy).

The contract (DESIGN.md "Model semantics", values from :mod:`faceflow.models.contract`): the crop is
the detector box grown by ``CROP_MARGIN`` (25%) of its width / height on each side, clamped to the
frame, resized to ``CROP_SIZE`` x ``CROP_SIZE`` (see :mod:`faceflow.models.crops` for the pixels).

Coordinates: boxes are continuous pixel coordinates (the frame spans ``[0, W] x [0, H]``, a box's
x2 is its right edge). PIL resamples the crop box exactly, fractional edges included, so crop pixel
``p`` (pixel-index coordinates: the centre of the first pixel is 0) sits at frame coordinate
``x1 + (p + 0.5) * (x2 - x1) / CROP_SIZE - 0.5``, the same pixel-index convention.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from faceflow.models.contract import CROP_MARGIN, CROP_SIZE, NUM_LANDMARKS

__all__ = ["as_boxes", "crop_px_to_frame", "expand_box", "landmarks_to_frame", "normalize_landmarks"]


def as_boxes(boxes: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"expected {name} of shape [F,4], got {list(b.shape)}")
    if not np.isfinite(b).all():
        raise ValueError(f"expected finite {name}, got NaN or inf")
    if bool((b[:, 2:] < b[:, :2]).any()):
        raise ValueError(f"expected x2 >= x1 and y2 >= y1 in {name}, got an inverted box")
    return b


def expand_box(
    box: npt.ArrayLike, margin: float = CROP_MARGIN, *, width: int, height: int
) -> npt.NDArray[np.float32]:
    """Grow ``box`` by ``margin`` of its width (height) on the left and right (top and bottom), clamp.

    ``box`` is one box ``[4]`` or many ``[F,4]`` (x1, y1, x2, y2); the result has the same shape,
    float32, clamped to ``[0, width] x [0, height]``.
    """
    if margin < 0:
        raise ValueError(f"expected margin >= 0, got {margin}")
    if width <= 0 or height <= 0:
        raise ValueError(f"expected a positive frame size, got width={width} height={height}")
    arr = np.asarray(box, dtype=np.float64)
    single = arr.ndim == 1
    b = as_boxes(arr.reshape(1, -1) if single else arr, "box")
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    out = np.stack(
        [b[:, 0] - margin * w, b[:, 1] - margin * h, b[:, 2] + margin * w, b[:, 3] + margin * h], axis=1
    )
    clamped = np.clip(out, 0.0, np.array([width, height, width, height], np.float64)).astype(np.float32)
    result: npt.NDArray[np.float32] = clamped[0] if single else clamped
    return result


def crop_px_to_frame(
    points: npt.ArrayLike, crop_boxes: npt.ArrayLike, size: int = CROP_SIZE
) -> npt.NDArray[np.float32]:
    """Map points ``[F,K,2]`` (x, y) in crop pixels of a ``size`` x ``size`` crop to frame pixels."""
    pts = np.asarray(points, dtype=np.float64)
    boxes = as_boxes(crop_boxes, "crop_boxes")
    if pts.ndim != 3 or pts.shape[2] != 2 or pts.shape[0] != boxes.shape[0]:
        raise ValueError(f"expected points of shape [{boxes.shape[0]},K,2], got {list(pts.shape)}")
    origin = boxes[:, None, :2]
    scale = (boxes[:, None, 2:] - boxes[:, None, :2]) / size
    return (origin + (pts + 0.5) * scale - 0.5).astype(np.float32)


def normalize_landmarks(raw: npt.ArrayLike, num_points: int = NUM_LANDMARKS) -> npt.NDArray[np.float32]:
    """Raw landmark head ``[F, 2*num_points]`` in [-1, 1] -> crop pixels ``[F,num_points,2]``.

    crop px = ((v + 1) * CROP_SIZE - 1) / 2, per DESIGN.md; the raw vector is (x, y) pairs.
    """
    r = np.asarray(raw, dtype=np.float64)
    if r.size == 0:
        r = r.reshape(0, 2 * num_points)
    if r.ndim != 2 or r.shape[1] != 2 * num_points:
        raise ValueError(f"expected raw landmarks of shape [F,{2 * num_points}], got {list(r.shape)}")
    return (((r + 1.0) * CROP_SIZE - 1.0) / 2.0).reshape(-1, num_points, 2).astype(np.float32)


def landmarks_to_frame(raw: npt.ArrayLike, crop_boxes: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Raw landmark head ``[F,136]`` -> ``[F,68,2]`` (x, y) frame pixels, via the crop boxes the model saw."""
    return crop_px_to_frame(normalize_landmarks(raw), crop_boxes)
