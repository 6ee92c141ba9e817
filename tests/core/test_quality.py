"""Tests for faceflow.core.quality: the detection and observation quality formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceflow.core.quality import (
    POSE_EXPONENT,
    detection_qualities,
    detection_quality,
    frontalness,
    observation_qualities,
    observation_quality,
    pose_factors,
    size_factors,
)

DEG = math.pi / 180.0


def box(side_w: float, side_h: float | None = None, x: float = 10.0, y: float = 20.0) -> list[float]:
    h = side_w if side_h is None else side_h
    return [x, y, x + side_w, y + h]


def keypoints(
    *,
    eye_dist: float = 40.0,
    nose_t: float = 0.5,
    roll_deg: float = 0.0,
    cx: float = 100.0,
    cy: float = 100.0,
) -> np.ndarray:
    """5 keypoints: eyes ``eye_dist`` apart, the nose at fraction ``nose_t`` along the eye axis."""
    c, s = math.cos(roll_deg * DEG), math.sin(roll_deg * DEG)
    axis = np.array([c, s])
    down = np.array([-s, c])
    left = np.array([cx, cy]) - axis * eye_dist / 2
    right = np.array([cx, cy]) + axis * eye_dist / 2
    nose = left + axis * eye_dist * nose_t + down * eye_dist * 0.5
    mouth_l = left + down * eye_dist
    mouth_r = right + down * eye_dist
    return np.stack([left, right, nose, mouth_l, mouth_r])


def test_pose_exponent_gives_point_two_at_sixty_degrees() -> None:
    assert math.cos(60 * DEG) ** POSE_EXPONENT == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("w", "h", "expected"),
    [
        (10.0, 10.0, 0.0),  # below min_side_px
        (24.0, 24.0, 0.0),  # at min_side_px
        (68.0, 68.0, 0.5),  # halfway: smoothstep(0.5) = 0.5
        (112.0, 112.0, 1.0),  # at good_side_px
        (400.0, 400.0, 1.0),  # above
        (400.0, 24.0, 0.0),  # the shorter side decides
        (0.0, 0.0, 0.0),  # degenerate box
    ],
)
def test_size_factor_table(w: float, h: float, expected: float) -> None:
    assert size_factors([box(w, h)])[0] == pytest.approx(expected)


def test_size_factor_is_smooth_and_monotonic() -> None:
    sides = np.linspace(0, 200, 401)
    values = size_factors([box(s) for s in sides])
    assert np.all(np.diff(values) >= 0)
    assert values.min() == 0.0 and values.max() == 1.0
    # smoothstep: zero slope at both ends
    assert size_factors([box(24.5)])[0] < 1e-3
    assert size_factors([box(111.5)])[0] > 1 - 1e-3


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, 1.0),
        ({"nose_t": 0.0}, 2.0 ** (-POSE_EXPONENT / 2)),  # nose under the left eye: o = 1
        ({"nose_t": 1.0}, 2.0 ** (-POSE_EXPONENT / 2)),  # symmetric
        ({"nose_t": 0.5 + math.tan(60 * DEG) / 2}, 0.2),  # offset of a 60 degree yaw
        ({"roll_deg": 60.0}, 0.5),  # roll: cos(60)
        ({"roll_deg": -60.0}, 0.5),
        ({"roll_deg": 90.0}, 0.0),
        ({"roll_deg": 180.0}, 0.0),  # upside down / eyes swapped
        ({"eye_dist": 0.0}, 0.0),  # coincident eyes: unmeasurable
    ],
)
def test_frontalness_table(kwargs: dict[str, float], expected: float) -> None:
    assert frontalness(keypoints(**kwargs)[None])[0] == pytest.approx(expected, abs=1e-9)


def test_frontalness_decreases_with_nose_offset() -> None:
    values = frontalness(np.stack([keypoints(nose_t=t) for t in np.linspace(0.5, 2.0, 16)]))
    assert np.all(np.diff(values) < 0)


def test_detection_quality_is_the_product_of_its_terms() -> None:
    kp = keypoints(nose_t=0.7)
    expected = 0.8 * size_factors([box(68)])[0] * frontalness(kp[None])[0]
    assert detection_quality(box(68), 0.8, kp) == pytest.approx(expected)
    assert detection_quality(box(68), 0.8) == pytest.approx(0.8 * 0.5)
    assert detection_quality(box(200), 1.0, keypoints()) == pytest.approx(1.0)


def test_detection_quality_orders_faces_sensibly() -> None:
    small = detection_quality(box(40), 0.9, keypoints())
    large = detection_quality(box(120), 0.9, keypoints())
    turned = detection_quality(box(120), 0.9, keypoints(nose_t=0.9))
    unsure = detection_quality(box(120), 0.5, keypoints())
    assert large > small and large > turned and large > unsure
    assert all(0.0 <= q <= 1.0 for q in (small, large, turned, unsure))


def test_detection_qualities_match_the_scalar_function() -> None:
    rng = np.random.default_rng(7)
    n = 20
    boxes = np.stack([box(s, s * 1.2, x, y) for s, x, y in rng.uniform([10, 0, 0], [200, 500, 500], (n, 3))])
    scores = rng.uniform(0, 1, n)
    kps = np.stack([keypoints(nose_t=t, roll_deg=r) for t, r in rng.uniform([0, -40], [1, 40], (n, 2))])
    batch = detection_qualities(boxes, scores, kps)
    assert batch.shape == (n,) and batch.dtype == np.float64
    for i in range(n):
        assert batch[i] == pytest.approx(detection_quality(boxes[i], float(scores[i]), kps[i]))


def test_detection_qualities_accept_no_faces() -> None:
    assert detection_qualities(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))).shape == (0,)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((box(50), 1.5), {}, ValueError, r"score: expected values in \[0, 1\]"),
        ((box(50), -0.1), {}, ValueError, "score"),
        ((box(50), math.nan), {}, ValueError, "score: expected finite"),
        (([0, 0, 10], 0.5), {}, ValueError, r"box: expected shape \[4\]"),
        (([0, 0, math.inf, 10], 0.5), {}, ValueError, "box: expected finite"),
        (([10, 10, 0, 20], 0.5), {}, ValueError, "expected x2 >= x1"),
        (("abcd", 0.5), {}, TypeError, "box: expected a numeric array"),
        ((box(50), 0.5, np.zeros((4, 2))), {}, ValueError, r"keypoints5: expected shape \[5,2\]"),
        ((box(50), 0.5), {"min_side_px": -1.0}, ValueError, "min_side_px: expected >= 0"),
        ((box(50), 0.5), {"good_side_px": 10.0}, ValueError, "good_side_px: expected > min_side_px"),
        ((box(50), 0.5), {"min_side_px": math.nan}, ValueError, "min_side_px: expected a finite"),
    ],
)
def test_detection_quality_rejects_bad_input(
    args: tuple[object, ...], kwargs: dict[str, float], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        detection_quality(*args, **kwargs)  # type: ignore[arg-type]


def test_detection_qualities_reject_mismatched_counts() -> None:
    with pytest.raises(ValueError, match="scores: expected 2 faces"):
        detection_qualities([box(50), box(60)], [0.5])
    with pytest.raises(ValueError, match="keypoints5: expected 2 faces"):
        detection_qualities([box(50), box(60)], [0.5, 0.5], keypoints()[None])


@pytest.mark.parametrize(
    ("pitch_deg", "yaw_deg", "roll_deg", "expected"),
    [
        (0, 0, 0, 1.0),
        (0, 60, 0, 0.2),
        (0, -60, 0, 0.2),
        (60, 0, 0, 0.2),
        (60, 60, 0, 0.04),
        (0, 0, 80, 1.0),  # roll is not penalised
        (0, 90, 0, 0.0),
        (0, 135, 0, 0.0),  # beyond 90 degrees: facing away
        (0, 30, 0, math.cos(30 * DEG) ** POSE_EXPONENT),
    ],
)
def test_pose_factor_table(pitch_deg: float, yaw_deg: float, roll_deg: float, expected: float) -> None:
    pose = np.array([[pitch_deg, yaw_deg, roll_deg]]) * DEG
    assert pose_factors(pose)[0] == pytest.approx(expected, abs=1e-12)


def test_observation_quality_refines_detection_quality() -> None:
    assert observation_quality(0.9) == pytest.approx(0.9)
    assert observation_quality(0.9, head_pose=[0.0, 60 * DEG, 0.0]) == pytest.approx(0.18)
    occ = np.full(29, 0.5)
    assert observation_quality(0.9, occlusion=occ) == pytest.approx(0.45)
    both = observation_quality(0.9, head_pose=[60 * DEG, 0.0, 0.0], occlusion=np.ones(29))
    assert both == pytest.approx(0.0)
    # only the mean occlusion matters
    partial = np.zeros(29)
    partial[:10] = 1.0
    assert observation_quality(1.0, occlusion=partial) == pytest.approx(19 / 29)


def test_observation_qualities_match_the_scalar_function() -> None:
    rng = np.random.default_rng(3)
    n = 12
    dq = rng.uniform(0, 1, n)
    pose = rng.uniform(-1.2, 1.2, (n, 3))
    occ = rng.uniform(0, 1, (n, 29))
    batch = observation_qualities(dq, head_pose=pose, occlusion=occ)
    for i in range(n):
        assert batch[i] == pytest.approx(
            observation_quality(float(dq[i]), head_pose=pose[i], occlusion=occ[i])
        )
    assert np.all((batch >= 0) & (batch <= dq))


@pytest.mark.parametrize(
    ("dq", "kwargs", "error", "match"),
    [
        (1.2, {}, ValueError, r"detection_quality: expected values in \[0, 1\]"),
        (math.nan, {}, ValueError, "detection_quality: expected finite"),
        (0.5, {"head_pose": [0.0, 0.1]}, ValueError, r"head_pose: expected shape \[3\]"),
        (0.5, {"head_pose": [0.0, math.nan, 0.0]}, ValueError, "head_pose: expected finite"),
        (0.5, {"occlusion": np.zeros(28)}, ValueError, r"occlusion: expected shape \[29\]"),
        (0.5, {"occlusion": np.full(29, 2.0)}, ValueError, r"occlusion: expected values in \[0, 1\]"),
        ("high", {}, TypeError, "detection_quality: expected a numeric array"),
    ],
)
def test_observation_quality_rejects_bad_input(
    dq: object, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        observation_quality(dq, **kwargs)  # type: ignore[arg-type]


def test_observation_qualities_reject_mismatched_counts() -> None:
    with pytest.raises(ValueError, match="head_pose: expected 2 faces"):
        observation_qualities([0.5, 0.5], head_pose=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="occlusion: expected 2 faces"):
        observation_qualities([0.5, 0.5], occlusion=np.zeros((1, 29)))
