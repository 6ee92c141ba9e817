"""Tests for faceflow.core.geometry."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from faceflow.core.geometry import (
    area,
    as_boxes,
    centers,
    clip_boxes,
    from_cxcywh,
    iou,
    iou_matrix,
    to_cxcywh,
)


def naive_iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize(
    ("a", "b", "expected", "error"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0, None),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150, None),
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0, None),  # touching edges
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0, None),
        ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100, None),  # contained
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0, None),  # degenerate
        ([0, 0, 10], [0, 0, 10, 10], None, ValueError),
        ([0, 0, 10, float("nan")], [0, 0, 10, 10], None, ValueError),
        ([0, 0, 10, "x"], [0, 0, 10, 10], None, TypeError),
    ],
)
def test_iou(a: Any, b: Any, expected: float | None, error: type[Exception] | None) -> None:
    if error is not None:
        with pytest.raises(error):
            iou(a, b)
        return
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


@pytest.mark.parametrize(("n", "m"), [(0, 0), (0, 3), (4, 0), (1, 1), (7, 5)])
def test_iou_matrix_matches_pairwise(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 10 + m)
    xy = rng.uniform(0, 100, (n + m, 2))
    wh = rng.uniform(5, 60, (n + m, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    a, b = boxes[:n], boxes[n:]
    out = iou_matrix(a, b)
    assert out.shape == (n, m)
    assert out.dtype == np.float64
    for i in range(n):
        for j in range(m):
            assert out[i, j] == pytest.approx(naive_iou(list(a[i]), list(b[j])))
    assert ((out >= 0) & (out <= 1)).all()


@pytest.mark.parametrize(
    ("boxes", "error", "message"),
    [
        (np.zeros((2, 3)), ValueError, "boxes: expected shape [N, 4], got (2, 3)"),
        (np.zeros(4), ValueError, "got (4,)"),
        ([[0, 0, 1, float("inf")]], ValueError, "expected finite coordinates"),
        ([[0, 0, 1, object()]], TypeError, "expected an array of shape [N, 4] of numbers"),
    ],
)
def test_as_boxes_rejects(boxes: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        as_boxes(boxes)


def test_as_boxes_accepts_empty_forms() -> None:
    assert as_boxes([]).shape == (0, 4)
    assert as_boxes(np.zeros((0, 4), np.float32)).shape == (0, 4)
    assert iou_matrix([], [[0, 0, 1, 1]]).shape == (0, 1)


@pytest.mark.parametrize(
    ("boxes", "areas", "centres"),
    [
        ([[0, 0, 10, 20]], [200.0], [[5.0, 10.0]]),
        ([[10, 10, 5, 20]], [0.0], [[7.5, 15.0]]),  # x2 < x1: zero area, not negative
        ([[0, 0, 1, 1], [2, 2, 6, 4]], [1.0, 8.0], [[0.5, 0.5], [4.0, 3.0]]),
        ([], [], np.zeros((0, 2))),
    ],
)
def test_area_and_centers(boxes: Any, areas: list[float], centres: Any) -> None:
    np.testing.assert_allclose(area(boxes), areas)
    np.testing.assert_allclose(centers(boxes), np.asarray(centres).reshape(-1, 2))


@pytest.mark.parametrize(
    ("boxes", "width", "height", "expected", "error"),
    [
        ([[-5, -5, 50, 50]], 40, 30, [[0, 0, 40, 30]], None),
        ([[10, 10, 20, 20]], 40, 30, [[10, 10, 20, 20]], None),
        ([[50, 40, 60, 70]], 40, 30, [[40, 30, 40, 30]], None),
        ([[0, 0, 1, 1]], 0, 30, None, ValueError),
        ([[0, 0, 1, 1]], 40, float("nan"), None, ValueError),
        ([[0, 0, 1, 1]], "40", 30, None, TypeError),
    ],
)
def test_clip_boxes(
    boxes: Any, width: Any, height: Any, expected: Any, error: type[Exception] | None
) -> None:
    if error is not None:
        with pytest.raises(error):
            clip_boxes(boxes, width, height)
        return
    original = np.asarray(boxes, dtype=np.float64)
    before = original.copy()
    out = clip_boxes(original, width, height)
    np.testing.assert_allclose(out, expected)
    np.testing.assert_array_equal(original, before)  # input untouched


def test_cxcywh_round_trip() -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 1.0, 3.0]])
    np.testing.assert_allclose(to_cxcywh(boxes), [[30, 60, 40, 80], [0.5, 1.5, 1, 3]])
    np.testing.assert_allclose(from_cxcywh(to_cxcywh(boxes)), boxes)
    # min_size widens degenerate boxes around their centre
    np.testing.assert_allclose(from_cxcywh([[5, 5, -2, 0.5]], min_size=1.0), [[4.5, 4.5, 5.5, 5.5]])
