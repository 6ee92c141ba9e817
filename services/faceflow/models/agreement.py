"""How closely two runs of the face models agree: the CPU choices a user makes, measured.

* :func:`head_agreement`: FaceXFormer's decoded heads from two precisions (fp32 and int8) on the
  same crops, per head in the head's own terms: label agreement (argmax) for the distributions
  (age, gender, race), decision agreement at ``PRESENCE_THRESHOLD`` for the binary heads
  (attributes, visibility), distances for the geometric heads (landmarks, head pose), pixel
  agreement and mean IoU for the parsing mask.
* :func:`detection_recall`: detected boxes against labelled ones (one-to-one matching at an IoU
  threshold), for the detector's input size.

Pure: numpy and our own types only. ``bench/precision.py`` and ``bench/detector_size.py`` print
these; ``tests/models/test_precision.py`` holds them to a floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceflow.core.association import match
from faceflow.core.geometry import iou_matrix
from faceflow.models.contract import PARSING_CLASSES, PRESENCE_THRESHOLD
from faceflow.models.decode import HeadOutputs

__all__ = ["HeadAgreement", "detection_recall", "head_agreement"]

#: The heads whose output is a distribution over labels, compared by their most likely label.
LABEL_HEADS: tuple[str, ...] = ("age", "gender", "race")
#: The heads of independent probabilities, compared by the decision at PRESENCE_THRESHOLD.
DECISION_HEADS: tuple[str, ...] = ("attributes", "visibility")


@dataclass(frozen=True, kw_only=True)
class HeadAgreement:
    """Per-head agreement of one run of FaceXFormer's heads (``other``) with a reference run.

    Fractions are in 0..1 (1: identical decisions). Landmark distances are in the pixels the
    heads were decoded in (crop pixels when decoded on ``[0, 0, CROP_SIZE, CROP_SIZE]`` boxes).
    """

    faces: int
    landmarks_mean_px: float
    landmarks_max_px: float
    head_pose_mean_deg: float
    head_pose_max_deg: float
    attributes_agreement: float
    attributes_max_prob_diff: float
    visibility_agreement: float
    visibility_max_prob_diff: float
    age_agreement: float
    gender_agreement: float
    race_agreement: float
    label_max_prob_diff: float
    parsing_pixel_agreement: float
    parsing_mean_iou: float

    @property
    def worst_label_agreement(self) -> float:
        """The lowest argmax agreement over the label heads (age, gender, race)."""
        return min(self.age_agreement, self.gender_agreement, self.race_agreement)

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def parsing_mean_iou(ref: npt.NDArray[np.uint8], other: npt.NDArray[np.uint8]) -> float:
    """Mean over the parsing classes present in either mask of their IoU, over all pixels."""
    ious = []
    for c in range(len(PARSING_CLASSES)):
        a, b = ref == c, other == c
        union = int(np.count_nonzero(a | b))
        if union:
            ious.append(np.count_nonzero(a & b) / union)
    return float(np.mean(ious)) if ious else 1.0


def head_agreement(ref: HeadOutputs, other: HeadOutputs) -> HeadAgreement:
    """How ``other`` agrees with ``ref``, the same F >= 1 faces decoded by the same code (a
    :class:`HeadOutputs` is finite by construction: a NaN never gets this far).

    Raises:
        ValueError: different face counts, or no faces.
    """
    f = ref.landmarks68.shape[0]
    if other.landmarks68.shape[0] != f:
        raise ValueError(f"expected the same faces in both runs, got {f} and {other.landmarks68.shape[0]}")
    if f == 0:
        raise ValueError("expected at least one face to compare, got 0")
    points = np.linalg.norm(ref.landmarks68.astype(np.float64) - other.landmarks68, axis=-1)  # [F,68]
    pose = np.degrees(np.abs(ref.head_pose.astype(np.float64) - other.head_pose))

    def decisions(head: str) -> float:
        a = getattr(ref, head) >= PRESENCE_THRESHOLD
        b = getattr(other, head) >= PRESENCE_THRESHOLD
        return float(np.mean(a == b))

    def labels(head: str) -> float:
        return float(np.mean(getattr(ref, head).argmax(axis=1) == getattr(other, head).argmax(axis=1)))

    return HeadAgreement(
        faces=int(f),
        landmarks_mean_px=float(points.mean()),
        landmarks_max_px=float(points.max()),
        head_pose_mean_deg=float(pose.mean()),
        head_pose_max_deg=float(pose.max()),
        attributes_agreement=decisions("attributes"),
        attributes_max_prob_diff=_max_abs(ref.attributes, other.attributes),
        visibility_agreement=decisions("visibility"),
        visibility_max_prob_diff=_max_abs(ref.visibility, other.visibility),
        age_agreement=labels("age"),
        gender_agreement=labels("gender"),
        race_agreement=labels("race"),
        label_max_prob_diff=max(_max_abs(getattr(ref, h), getattr(other, h)) for h in LABEL_HEADS),
        parsing_pixel_agreement=float(np.mean(ref.parsing == other.parsing)),
        parsing_mean_iou=parsing_mean_iou(ref.parsing, other.parsing),
    )


def detection_recall(
    truth: npt.ArrayLike, detected: npt.ArrayLike, *, iou_threshold: float = 0.5
) -> tuple[int, Sequence[bool]]:
    """Labelled boxes found by the detector: one-to-one (optimal) matching at ``iou_threshold``.

    Returns the number of matched labelled boxes and, per labelled box, whether it was found.

    Raises:
        ValueError: boxes not of shape ``[N, 4]``, or a threshold outside (0, 1].
    """
    if isinstance(iou_threshold, bool) or not (
        isinstance(iou_threshold, int | float) and math.isfinite(iou_threshold) and 0 < iou_threshold <= 1
    ):
        raise ValueError(f"iou_threshold: expected a number in (0, 1], got {iou_threshold!r}")
    iou = iou_matrix(truth, detected)
    found = [False] * iou.shape[0]
    rows, _cols = match(1.0 - iou, iou >= iou_threshold)
    for r in rows.tolist():
        found[r] = True
    return len(rows), found
