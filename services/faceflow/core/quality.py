"""Face quality in [0, 1]: how much one observation of a face is worth.

Two consumers use it: the analyzer's scheduler (:mod:`faceflow.core.scheduling`) re-analyzes a
face when a *clearly better shot* arrives, and per-track fusion (:mod:`faceflow.core.fusion`)
weights each analyzed observation by it. Both want the same ordering: a large, sharp, frontal,
unoccluded face scores near 1; a tiny, turned-away or covered face near 0.

Two stages, because the analyzer knows less than the aggregator:

* :func:`detection_quality` needs only the detector's output (box, score, 5 keypoints) and is
  what the scheduler can compute for every face of every frame::

      q_det = score * size * frontal

  - ``size`` = smoothstep(u) = u**2 * (3 - 2*u), with
    u = clip((min(w, h) - min_side_px) / (good_side_px - min_side_px), 0, 1): 0 at or below
    ``min_side_px``, 1 at or above ``good_side_px``, smooth (zero slope at both ends) between.
  - ``frontal`` = yaw_factor * roll_factor from the keypoints (image-left eye ``L``, image-right
    eye ``R``, nose ``N``; frame pixels). With ``v = R - L`` and the nose's position along the eye
    axis ``t = (N - L) . v / |v|**2`` (0 at the left eye, 1/2 centred, 1 at the right eye), the
    offset ``o = |2t - 1|`` (in half-interocular units) estimates yaw as ``atan(o)`` (weak
    perspective, nose tip about half an interocular distance in front of the eyes), and
    ``yaw_factor = cos(atan(o)) ** k = (1 + o**2) ** (-k / 2)``.
    ``roll_factor = max(v_x / |v|, 0)`` (cos of the eye line's angle; 0 for a face upside down or
    with the eyes swapped). Eyes closer than 1e-3 px give ``frontal = 0``; without keypoints
    ``frontal = 1`` (not estimated).

* :func:`observation_quality` refines it with the face model's own head pose and landmark
  occlusion, known only after analysis::

      q_obs = q_det * (max(cos yaw, 0) * max(cos pitch, 0)) ** k * (1 - mean(occlusion))

  ``cos yaw * cos pitch`` is the cosine of the angle between the face's normal and the camera
  axis. Roll is not penalised here (an in-plane rotation hides nothing). ``occlusion`` is the
  visibility head's 29 per-point probabilities of being occluded (1 = occluded).

The exponent ``k = log2(5) ~= 2.32`` (:data:`POSE_EXPONENT`) makes the pose falloff
``cos(a) ** k`` equal 0.2 at 60 degrees (0.72 at 30, 0.92 at 15, 0 at 90). The keypoint yaw
estimate and the model's yaw are both applied by :func:`observation_quality` (the scalar it is
given already contains the keypoint term), so a profile face weighs very little in fusion; that
is intended: age, gender and most attributes are much less reliable on profiles.

Every function has a vectorised variant over F faces (``detection_qualities``,
``observation_qualities``); the scalar functions call them with F = 1. Inputs are validated
(finite, shapes, ranges) and errors raise ``ValueError`` / ``TypeError`` "name: expected X, got Y".
Pure: numpy and the model contract only.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import numpy as np
import numpy.typing as npt

from faceflow.models.contract import HEAD_POSE, KEYPOINTS5, VISIBILITY_POINTS

logger = logging.getLogger(__name__)

__all__ = [
    "POSE_EXPONENT",
    "detection_qualities",
    "detection_quality",
    "frontalness",
    "observation_qualities",
    "observation_quality",
    "pose_factors",
    "size_factors",
]

FloatArray = npt.NDArray[np.float64]

#: Exponent of the cos-shaped pose falloff: ``cos(60 deg) ** POSE_EXPONENT == 0.2``.
POSE_EXPONENT: Final[float] = math.log2(5.0)

#: Eyes closer than this (pixels) make frontalness unmeasurable: it is reported as 0.
_MIN_EYE_DISTANCE_PX: Final[float] = 1e-3

_YAW: Final[int] = HEAD_POSE.index("yaw")
_PITCH: Final[int] = HEAD_POSE.index("pitch")
_LEFT_EYE: Final[int] = KEYPOINTS5.index("left_eye")
_RIGHT_EYE: Final[int] = KEYPOINTS5.index("right_eye")
_NOSE: Final[int] = KEYPOINTS5.index("nose")


# --- validation ----------------------------------------------------------------------------------


def _array(value: object, name: str, shape: tuple[int | None, ...]) -> FloatArray:
    """``value`` as a finite float64 array of ``shape`` (None = any length), else raise."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name}: expected a numeric array, got {type(value).__name__}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a numeric array, got {type(value).__name__}") from None
    want = "[" + ",".join("F" if d is None else str(d) for d in shape) + "]"
    if arr.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape, arr.shape, strict=True)):
        raise ValueError(f"{name}: expected shape {want}, got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return arr


def _unit_interval(arr: FloatArray, name: str) -> None:
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(f"{name}: expected values in [0, 1], got {arr.min()}..{arr.max()}")


def _check_sides(min_side_px: float, good_side_px: float) -> None:
    for name, value in (("min_side_px", min_side_px), ("good_side_px", good_side_px)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: expected a finite number of pixels, got {value!r}")
    if min_side_px < 0.0:
        raise ValueError(f"min_side_px: expected >= 0, got {min_side_px}")
    if good_side_px <= min_side_px:
        raise ValueError(f"good_side_px: expected > min_side_px ({min_side_px}), got {good_side_px}")


def _check_count(arr: FloatArray, name: str, count: int) -> None:
    if arr.shape[0] != count:
        raise ValueError(f"{name}: expected {count} faces (one per box), got {arr.shape[0]}")


# --- components ----------------------------------------------------------------------------------


def size_factors(
    boxes: npt.ArrayLike, *, min_side_px: float = 24.0, good_side_px: float = 112.0
) -> FloatArray:
    """Size term in [0, 1] for boxes [F,4] (x1, y1, x2, y2 frame pixels); see the module docstring.

    The face's side is the box's shorter side: 0 at or below ``min_side_px``, 1 at or above
    ``good_side_px``, smoothstep between. Boxes with x2 < x1 or y2 < y1 raise ``ValueError``.
    """
    _check_sides(min_side_px, good_side_px)
    arr = _array(boxes, "boxes", (None, 4))
    w = arr[:, 2] - arr[:, 0]
    h = arr[:, 3] - arr[:, 1]
    if arr.shape[0] and (w.min() < 0.0 or h.min() < 0.0):
        raise ValueError(f"boxes: expected x2 >= x1 and y2 >= y1, got widths {w} and heights {h}")
    u = np.clip((np.minimum(w, h) - min_side_px) / (good_side_px - min_side_px), 0.0, 1.0)
    out: FloatArray = u * u * (3.0 - 2.0 * u)
    return out


def frontalness(keypoints5: npt.ArrayLike) -> FloatArray:
    """Frontalness in [0, 1] from the detector's 5 keypoints [F,5,2] (x, y frame pixels).

    ``yaw_factor * roll_factor`` as in the module docstring: 1 for a nose centred between level
    eyes, falling as the nose moves towards an eye (0.2 when the nose offset corresponds to
    60 degrees of yaw) or the eye line tilts; 0 for coincident eyes.
    """
    kp = _array(keypoints5, "keypoints5", (None, len(KEYPOINTS5), 2))
    left, right, nose = kp[:, _LEFT_EYE], kp[:, _RIGHT_EYE], kp[:, _NOSE]
    v = right - left
    dist2 = np.einsum("fi,fi->f", v, v)
    ok = dist2 >= _MIN_EYE_DISTANCE_PX**2
    safe2 = np.where(ok, dist2, 1.0)
    t = np.einsum("fi,fi->f", nose - left, v) / safe2
    offset = np.abs(2.0 * t - 1.0)
    yaw_factor = (1.0 + offset * offset) ** (-POSE_EXPONENT / 2.0)
    roll_factor = np.maximum(v[:, 0] / np.sqrt(safe2), 0.0)
    out: FloatArray = np.where(ok, yaw_factor * roll_factor, 0.0)
    return out


def pose_factors(head_pose: npt.ArrayLike) -> FloatArray:
    """Pose term in [0, 1] for head poses [F,3] (pitch, yaw, roll radians).

    ``(max(cos yaw, 0) * max(cos pitch, 0)) ** POSE_EXPONENT``: 1 frontal, 0.2 at 60 degrees of
    yaw (or pitch), 0 at 90 degrees or beyond. Roll is ignored.
    """
    pose = _array(head_pose, "head_pose", (None, len(HEAD_POSE)))
    c = np.maximum(np.cos(pose[:, _YAW]), 0.0) * np.maximum(np.cos(pose[:, _PITCH]), 0.0)
    out: FloatArray = c**POSE_EXPONENT
    return out


# --- qualities -----------------------------------------------------------------------------------


def detection_qualities(
    boxes: npt.ArrayLike,
    scores: npt.ArrayLike,
    keypoints5: npt.ArrayLike | None = None,
    *,
    min_side_px: float = 24.0,
    good_side_px: float = 112.0,
) -> FloatArray:
    """Detection quality in [0, 1] for F faces: ``score * size * frontal`` (module docstring).

    Args:
        boxes: [F,4] x1, y1, x2, y2 frame pixels.
        scores: [F] detector confidence in [0, 1].
        keypoints5: [F,5,2] detector keypoints (x, y frame pixels) in contract order, or None
            (frontalness not estimated: factor 1).
        min_side_px: a shorter box side at or below this gives quality 0.
        good_side_px: a shorter box side at or above this gets the full size factor 1.

    Returns:
        float64 [F] in [0, 1].
    """
    size = size_factors(boxes, min_side_px=min_side_px, good_side_px=good_side_px)
    s = _array(scores, "scores", (None,))
    _check_count(s, "scores", size.shape[0])
    _unit_interval(s, "scores")
    q = s * size
    if keypoints5 is not None:
        front = frontalness(keypoints5)
        _check_count(front, "keypoints5", size.shape[0])
        q = q * front
    out: FloatArray = np.clip(q, 0.0, 1.0)
    return out


def detection_quality(
    box: npt.ArrayLike,
    score: float,
    keypoints5: npt.ArrayLike | None = None,
    *,
    min_side_px: float = 24.0,
    good_side_px: float = 112.0,
) -> float:
    """Detection quality in [0, 1] of one face; ``box`` [4], ``keypoints5`` [5,2] or None.

    See :func:`detection_qualities` and the module docstring for the formula.
    """
    b = _array(box, "box", (4,))
    s = _array(score, "score", ())
    _unit_interval(s, "score")
    kp = None if keypoints5 is None else _array(keypoints5, "keypoints5", (len(KEYPOINTS5), 2))[None]
    q = detection_qualities(b[None], s[None], kp, min_side_px=min_side_px, good_side_px=good_side_px)
    return float(q[0])


def observation_qualities(
    detection_quality: npt.ArrayLike,
    *,
    head_pose: npt.ArrayLike | None = None,
    occlusion: npt.ArrayLike | None = None,
) -> FloatArray:
    """Observation quality in [0, 1] for F analyzed faces (module docstring).

    ``q_det * pose_factor(head_pose) * (1 - mean(occlusion))``.

    Args:
        detection_quality: [F] values of :func:`detection_qualities`, in [0, 1].
        head_pose: [F,3] pitch, yaw, roll radians (the face model's head pose), or None.
        occlusion: [F,29] probability that each COFW point is occluded, or None.

    Returns:
        float64 [F] in [0, 1].
    """
    q = _array(detection_quality, "detection_quality", (None,))
    _unit_interval(q, "detection_quality")
    if head_pose is not None:
        pose = pose_factors(head_pose)
        _check_count(pose, "head_pose", q.shape[0])
        q = q * pose
    if occlusion is not None:
        occ = _array(occlusion, "occlusion", (None, len(VISIBILITY_POINTS)))
        _check_count(occ, "occlusion", q.shape[0])
        _unit_interval(occ, "occlusion")
        q = q * (1.0 - occ.mean(axis=1))
    out: FloatArray = np.clip(q, 0.0, 1.0)
    return out


def observation_quality(
    detection_quality: float,
    *,
    head_pose: npt.ArrayLike | None = None,
    occlusion: npt.ArrayLike | None = None,
) -> float:
    """Observation quality in [0, 1] of one analyzed face; ``head_pose`` [3], ``occlusion`` [29].

    See :func:`observation_qualities` and the module docstring for the formula.
    """
    q = _array(detection_quality, "detection_quality", ())
    pose = None if head_pose is None else _array(head_pose, "head_pose", (len(HEAD_POSE),))[None]
    occ = None if occlusion is None else _array(occlusion, "occlusion", (len(VISIBILITY_POINTS),))[None]
    return float(observation_qualities(q[None], head_pose=pose, occlusion=occ)[0])
