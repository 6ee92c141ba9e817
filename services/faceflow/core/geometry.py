"""Axis-aligned box helpers on float arrays.

A box is ``(x1, y1, x2, y2)`` in pixels (top-left and bottom-right corners, ``x2 >= x1``,
``y2 >= y1``); a set of boxes is an ``[N, 4]`` array. Every function accepts any array-like,
computes in float64 and returns new arrays (inputs are never modified). An empty set may be given
as shape ``(0, 4)`` or ``(0,)``. A box with ``x2 < x1`` (or ``y2 < y1``) has zero area rather than
a negative one.

Pure: numpy only.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = [
    "FloatArray",
    "area",
    "as_box",
    "as_boxes",
    "centers",
    "clip_boxes",
    "from_cxcywh",
    "iou",
    "iou_matrix",
    "to_cxcywh",
]

FloatArray = npt.NDArray[np.float64]


def as_boxes(boxes: npt.ArrayLike, what: str = "boxes") -> FloatArray:
    """``boxes`` as a finite float64 ``[N, 4]`` array, else raise ValueError naming ``what``."""
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: expected an array of shape [N, 4] of numbers, got {boxes!r:.80}") from exc
    if arr.ndim == 1 and arr.shape[0] == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{what}: expected shape [N, 4], got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: expected finite coordinates, got {arr[~np.isfinite(arr).all(axis=1)][:3]}")
    return arr


def as_box(box: npt.ArrayLike, what: str = "box") -> FloatArray:
    """``box`` as a finite float64 array of shape ``[4]``, else raise ValueError naming ``what``."""
    try:
        arr = np.asarray(box, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: expected 4 numbers (x1, y1, x2, y2), got {box!r:.80}") from exc
    if arr.shape != (4,):
        raise ValueError(f"{what}: expected shape [4] (x1, y1, x2, y2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: expected finite coordinates, got {arr.tolist()}")
    return arr


def area(boxes: npt.ArrayLike) -> FloatArray:
    """Area of each box, ``[N]``; zero for degenerate boxes."""
    b = as_boxes(boxes)
    return np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)


def centers(boxes: npt.ArrayLike) -> FloatArray:
    """Centre ``(cx, cy)`` of each box, ``[N, 2]``."""
    b = as_boxes(boxes)
    return np.stack([(b[:, 0] + b[:, 2]) * 0.5, (b[:, 1] + b[:, 3]) * 0.5], axis=1)


def iou(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Intersection over union of two single boxes, in ``[0, 1]`` (0 when both have zero area)."""
    p = as_box(a, "a")
    q = as_box(b, "b")
    iw = min(p[2], q[2]) - max(p[0], q[0])
    ih = min(p[3], q[3]) - max(p[1], q[1])
    if iw <= 0.0 or ih <= 0.0:
        return 0.0
    inter = float(iw * ih)
    union = max(p[2] - p[0], 0.0) * max(p[3] - p[1], 0.0) + max(q[2] - q[0], 0.0) * max(q[3] - q[1], 0.0)
    union -= inter
    if union <= 0.0 or not math.isfinite(union):
        return 0.0
    return min(inter / float(union), 1.0)


def _iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU of validated float64 boxes ``a [N, 4]`` and ``b [M, 4]``, without checks (hot path)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    inter = iw * ih
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    out: FloatArray = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0.0)
    np.minimum(out, 1.0, out=out)
    return out


def iou_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Pairwise IoU of ``a [N, 4]`` and ``b [M, 4]``: ``[N, M]`` float64 (``[N, 0]`` if M = 0, etc.)."""
    return _iou_matrix(as_boxes(a, "a"), as_boxes(b, "b"))


def clip_boxes(boxes: npt.ArrayLike, width: float, height: float) -> FloatArray:
    """Boxes clipped to the image ``[0, width] x [0, height]``, ``[N, 4]`` float64."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name}: expected a number > 0, got {type(value).__name__}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name}: expected a finite number > 0, got {value}")
    b = as_boxes(boxes)
    out = b.copy()
    np.clip(out[:, 0::2], 0.0, float(width), out=out[:, 0::2])
    np.clip(out[:, 1::2], 0.0, float(height), out=out[:, 1::2])
    return out


def to_cxcywh(boxes: npt.ArrayLike) -> FloatArray:
    """``(x1, y1, x2, y2)`` rows -> ``(cx, cy, w, h)`` rows, ``[N, 4]`` float64 (no checks: hot path)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([(b[:, 0:2] + b[:, 2:4]) * 0.5, b[:, 2:4] - b[:, 0:2]], axis=1)


def from_cxcywh(boxes: npt.ArrayLike, min_size: float = 0.0) -> FloatArray:
    """``(cx, cy, w, h)`` rows -> ``(x1, y1, x2, y2)`` rows, with w and h raised to ``min_size``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    half = np.maximum(b[:, 2:4], min_size) * 0.5
    return np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1)
