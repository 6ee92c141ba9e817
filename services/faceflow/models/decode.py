"""Decoding of the face model's raw heads into the contract's tensors and labelled results.

Two steps, one module, every consumer (Triton model, analyzer, aggregator, report) uses them:

1. :func:`decode_heads`: raw FaceXFormer outputs for F faces -> :class:`HeadOutputs`, the
   ``face_pipeline`` tensors (landmarks in frame pixels, sigmoid / softmax probabilities,
   parsing class ids as uint8). DESIGN.md "Model semantics" defines each decode.
2. :meth:`FaceResult.from_arrays` / :meth:`HeadOutputs.results`: one face's tensors -> a
   :class:`FaceResult` with labelled fields (label lists from :mod:`faceflow.models.contract`).

Pure: numpy and our own modules only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from faceflow.models.boxes import landmarks_to_frame
from faceflow.models.contract import (
    AGE_BINS,
    ATTRIBUTES,
    CROP_SIZE,
    GENDERS,
    HEAD_POSE,
    NUM_LANDMARKS,
    PARSING_CLASSES,
    PRESENCE_THRESHOLD,
    RACES,
    VISIBILITY_POINTS,
)

logger = logging.getLogger(__name__)

__all__ = [
    "Distribution",
    "FaceResult",
    "HeadOutputs",
    "HeadPose",
    "decode_heads",
    "sigmoid",
    "softmax",
]

FloatArray = npt.NDArray[np.float32]

_PROB_TOLERANCE: Final[float] = 1e-3

#: HeadOutputs field -> (contract tensor name, dims after F, dtype).
_FIELDS: Final[dict[str, tuple[str, tuple[int, ...], type[np.generic]]]] = {
    "landmarks68": ("LANDMARKS68", (NUM_LANDMARKS, 2), np.float32),
    "head_pose": ("HEAD_POSE", (len(HEAD_POSE),), np.float32),
    "attributes": ("ATTRIBUTES", (len(ATTRIBUTES),), np.float32),
    "visibility": ("VISIBILITY", (len(VISIBILITY_POINTS),), np.float32),
    "age": ("AGE", (len(AGE_BINS),), np.float32),
    "gender": ("GENDER", (len(GENDERS),), np.float32),
    "race": ("RACE", (len(RACES),), np.float32),
    "parsing": ("PARSING", (CROP_SIZE, CROP_SIZE), np.uint8),
}
_PROBABILITY_FIELDS: Final[tuple[str, ...]] = ("attributes", "visibility", "age", "gender", "race")
_DISTRIBUTION_FIELDS: Final[tuple[str, ...]] = ("age", "gender", "race")


def sigmoid(x: npt.ArrayLike) -> FloatArray:
    """Numerically stable logistic function, float32."""
    a = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(a))
    out = np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return out.astype(np.float32)


def softmax(x: npt.ArrayLike, axis: int = -1) -> FloatArray:
    """Numerically stable softmax along ``axis``, float32."""
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return a.astype(np.float32)
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    out: FloatArray = (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)
    return out


# --- Contract tensors --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeadOutputs:
    """The face model's results for F faces as the ``face_pipeline`` tensors (F may be 0).

    ``landmarks68`` [F,68,2] (x, y) frame pixels; ``head_pose`` [F,3] pitch, yaw, roll radians;
    ``attributes`` [F,40], ``visibility`` [F,29] (probability occluded), ``age`` [F,8],
    ``gender`` [F,2], ``race`` [F,5] probabilities, float32; ``parsing`` [F,224,224] uint8
    class ids of the crop.
    """

    landmarks68: FloatArray
    head_pose: FloatArray
    attributes: FloatArray
    visibility: FloatArray
    age: FloatArray
    gender: FloatArray
    race: FloatArray
    parsing: npt.NDArray[np.uint8]

    def __post_init__(self) -> None:
        for field, (_, _, dtype) in _FIELDS.items():
            value = getattr(self, field)
            if not isinstance(value, np.ndarray):
                raise TypeError(f"expected {field} to be a numpy array, got {type(value).__name__}")
            if value.dtype != dtype:
                raise TypeError(f"expected {field} dtype {np.dtype(dtype)}, got {value.dtype}")
        n = self.landmarks68.shape[0] if self.landmarks68.ndim else 0
        for field, (_, dims, _) in _FIELDS.items():
            value = getattr(self, field)
            if value.shape != (n, *dims):
                want = ",".join(str(d) for d in (n, *dims))
                raise ValueError(f"expected {field} of shape [{want}], got {list(value.shape)}")
        for field in ("landmarks68", "head_pose", *_PROBABILITY_FIELDS):
            if not np.isfinite(getattr(self, field)).all():
                raise ValueError(f"expected finite {field}, got NaN or inf")
        for field in _PROBABILITY_FIELDS:
            value = getattr(self, field)
            if value.size and (value.min() < 0.0 or value.max() > 1.0):
                raise ValueError(
                    f"expected {field} probabilities in [0, 1], got {value.min()}..{value.max()}"
                )
        if self.parsing.size and int(self.parsing.max()) >= len(PARSING_CLASSES):
            raise ValueError(
                f"expected parsing class ids < {len(PARSING_CLASSES)}, got {int(self.parsing.max())}"
            )

    def __len__(self) -> int:
        return int(self.head_pose.shape[0])

    @classmethod
    def empty(cls) -> HeadOutputs:
        """No faces."""
        return cls(**{f: np.zeros((0, *dims), dtype) for f, (_, dims, dtype) in _FIELDS.items()})

    @classmethod
    def from_triton(cls, outputs: Mapping[str, np.ndarray]) -> HeadOutputs:
        """Build from a mapping of contract tensor names (``LANDMARKS68``, ``AGE``...) to arrays.

        Extra names (``BOXES``, ``EMBEDDING``...) are ignored; arrays are copied.
        """
        missing = [name for name, _, _ in _FIELDS.values() if name not in outputs]
        if missing:
            raise KeyError(f"expected tensors {[v[0] for v in _FIELDS.values()]}, got {sorted(outputs)}")
        return cls(**{f: np.array(outputs[name]) for f, (name, _, _) in _FIELDS.items()})

    def to_triton(self) -> dict[str, np.ndarray]:
        """The tensors keyed by contract name (the inverse of :meth:`from_triton`)."""
        return {name: getattr(self, f) for f, (name, _, _) in _FIELDS.items()}

    def results(self) -> list[FaceResult]:
        """One labelled :class:`FaceResult` per face."""
        return [
            FaceResult.from_arrays(
                landmarks68=self.landmarks68[i],
                head_pose=self.head_pose[i],
                attributes=self.attributes[i],
                visibility=self.visibility[i],
                age=self.age[i],
                gender=self.gender[i],
                race=self.race[i],
                parsing=self.parsing[i],
            )
            for i in range(len(self))
        ]


def decode_heads(
    *,
    landmarks: npt.ArrayLike,
    head_pose: npt.ArrayLike,
    attributes: npt.ArrayLike,
    visibility: npt.ArrayLike,
    age: npt.ArrayLike,
    gender: npt.ArrayLike,
    race: npt.ArrayLike,
    parsing: npt.ArrayLike,
    crop_boxes: npt.ArrayLike,
) -> HeadOutputs:
    """Raw FaceXFormer heads for F faces -> :class:`HeadOutputs`.

    Raw shapes: landmarks [F,136] in [-1, 1] ((x, y) pairs), head_pose [F,3], attributes [F,40]
    logits, visibility [F,29] logits, age [F,8], gender [F,2], race [F,5] logits, parsing
    [F,11,224,224] logits; ``crop_boxes`` [F,4] the frame region each crop came from.
    """
    raw_parsing = np.asarray(parsing)
    n_classes = len(PARSING_CLASSES)
    if raw_parsing.size == 0:
        raw_parsing = raw_parsing.reshape(0, n_classes, CROP_SIZE, CROP_SIZE)
    if raw_parsing.ndim != 4 or raw_parsing.shape[1:] != (n_classes, CROP_SIZE, CROP_SIZE):
        want = f"[F,{n_classes},{CROP_SIZE},{CROP_SIZE}]"
        raise ValueError(f"expected raw parsing of shape {want}, got {list(raw_parsing.shape)}")

    def raw2d(name: str, value: npt.ArrayLike, width: int) -> npt.NDArray[np.float64]:
        a = np.asarray(value, dtype=np.float64)
        if a.size == 0:
            a = a.reshape(0, width)
        if a.ndim != 2 or a.shape[1] != width:
            raise ValueError(f"expected raw {name} of shape [F,{width}], got {list(a.shape)}")
        return a

    return HeadOutputs(
        landmarks68=landmarks_to_frame(landmarks, crop_boxes),
        head_pose=raw2d("head_pose", head_pose, len(HEAD_POSE)).astype(np.float32),
        attributes=sigmoid(raw2d("attributes", attributes, len(ATTRIBUTES))),
        visibility=sigmoid(raw2d("visibility", visibility, len(VISIBILITY_POINTS))),
        age=softmax(raw2d("age", age, len(AGE_BINS))),
        gender=softmax(raw2d("gender", gender, len(GENDERS))),
        race=softmax(raw2d("race", race, len(RACES))),
        parsing=np.argmax(raw_parsing, axis=1).astype(np.uint8),
    )


# --- Labelled per-face results -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Distribution:
    """A probability distribution over labels; :attr:`label` is the most probable one."""

    labels: tuple[str, ...]
    probabilities: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("expected at least one label, got none")
        if len(self.probabilities) != len(self.labels):
            raise ValueError(f"expected {len(self.labels)} probabilities, got {len(self.probabilities)}")
        if any(not 0.0 <= p <= 1.0 for p in self.probabilities):
            raise ValueError(f"expected probabilities in [0, 1], got {self.probabilities}")
        total = math.fsum(self.probabilities)
        if abs(total - 1.0) > _PROB_TOLERANCE:
            raise ValueError(f"expected probabilities summing to 1, got {total:.6f}")

    @classmethod
    def from_array(cls, labels: tuple[str, ...], probabilities: npt.ArrayLike) -> Distribution:
        """Build from a probability vector in ``labels`` order."""
        p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        return cls(labels=labels, probabilities=tuple(float(v) for v in p))

    @property
    def label(self) -> str:
        """The most probable label (the first one on a tie)."""
        return self.labels[int(np.argmax(self.probabilities))]

    @property
    def probability(self) -> float:
        """The probability of :attr:`label`."""
        return max(self.probabilities)

    def as_dict(self) -> dict[str, float]:
        """``{label: probability}`` in label order."""
        return dict(zip(self.labels, self.probabilities, strict=True))


@dataclass(frozen=True, slots=True)
class HeadPose:
    """Head orientation in radians."""

    pitch: float
    yaw: float
    roll: float

    def __post_init__(self) -> None:
        for name in HEAD_POSE:
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"expected a finite {name}, got {getattr(self, name)}")

    def degrees(self) -> tuple[float, float, float]:
        """(pitch, yaw, roll) in degrees."""
        return (math.degrees(self.pitch), math.degrees(self.yaw), math.degrees(self.roll))


def _labelled(labels: tuple[str, ...], values: npt.ArrayLike, name: str) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.shape != (len(labels),):
        raise ValueError(f"expected {name} of shape [{len(labels)}], got {list(np.shape(values))}")
    return {label: float(p) for label, p in zip(labels, v, strict=True)}


@dataclass(frozen=True, slots=True)
class FaceResult:
    """Every face-model result for one face, labelled.

    ``attributes`` maps each CelebA attribute to its probability; ``occlusion`` each COFW point
    to the probability that it is occluded; ``landmarks68`` are (x, y) frame pixels in iBUG
    order; ``parsing_fractions`` (optional) is the share of the crop covered by each class.
    """

    landmarks68: tuple[tuple[float, float], ...]
    head_pose: HeadPose
    attributes: dict[str, float]
    occlusion: dict[str, float]
    age: Distribution
    gender: Distribution
    race: Distribution
    parsing_fractions: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if len(self.landmarks68) != NUM_LANDMARKS or any(len(p) != 2 for p in self.landmarks68):
            raise ValueError(f"expected {NUM_LANDMARKS} (x, y) landmarks, got {len(self.landmarks68)} points")
        for name, labels in (("attributes", ATTRIBUTES), ("occlusion", VISIBILITY_POINTS)):
            value: dict[str, float] = getattr(self, name)
            if tuple(value) != labels:
                raise ValueError(
                    f"expected {name} keys {labels[:2]}...{labels[-1:]}, got {tuple(value)[:3]}..."
                )
            if any(not 0.0 <= p <= 1.0 for p in value.values()):
                raise ValueError(f"expected {name} probabilities in [0, 1], got {value}")
        for name, labels in (("age", AGE_BINS), ("gender", GENDERS), ("race", RACES)):
            dist: Distribution = getattr(self, name)
            if dist.labels != labels:
                raise ValueError(f"expected {name} labels {labels}, got {dist.labels}")
        if self.parsing_fractions is not None and tuple(self.parsing_fractions) != PARSING_CLASSES:
            raise ValueError(
                f"expected parsing_fractions keys {PARSING_CLASSES}, got {tuple(self.parsing_fractions)}"
            )

    @property
    def present_attributes(self) -> tuple[str, ...]:
        """Attributes with probability >= ``PRESENCE_THRESHOLD``, in CelebA order."""
        return tuple(k for k, p in self.attributes.items() if p >= PRESENCE_THRESHOLD)

    @property
    def occluded_points(self) -> tuple[str, ...]:
        """COFW points with occlusion probability >= ``PRESENCE_THRESHOLD``."""
        return tuple(k for k, p in self.occlusion.items() if p >= PRESENCE_THRESHOLD)

    @classmethod
    def from_arrays(
        cls,
        *,
        landmarks68: npt.ArrayLike,
        head_pose: npt.ArrayLike,
        attributes: npt.ArrayLike,
        visibility: npt.ArrayLike,
        age: npt.ArrayLike,
        gender: npt.ArrayLike,
        race: npt.ArrayLike,
        parsing: npt.ArrayLike | None = None,
    ) -> FaceResult:
        """Build from one face's contract tensors (probabilities, not logits; see :func:`decode_heads`)."""
        lm = np.asarray(landmarks68, dtype=np.float64)
        if lm.shape != (NUM_LANDMARKS, 2):
            raise ValueError(f"expected landmarks68 of shape [{NUM_LANDMARKS},2], got {list(lm.shape)}")
        pose = np.asarray(head_pose, dtype=np.float64).reshape(-1)
        if pose.shape != (len(HEAD_POSE),):
            raise ValueError(
                f"expected head_pose of shape [{len(HEAD_POSE)}], got {list(np.shape(head_pose))}"
            )
        fractions = None
        if parsing is not None:
            ids = np.asarray(parsing)
            if ids.ndim != 2 or ids.size == 0:
                raise ValueError(f"expected parsing of shape [H,W], got {list(ids.shape)}")
            counts = np.bincount(ids.reshape(-1).astype(np.int64), minlength=len(PARSING_CLASSES))
            if counts.shape[0] != len(PARSING_CLASSES):
                raise ValueError(f"expected parsing class ids < {len(PARSING_CLASSES)}, got {int(ids.max())}")
            fractions = _labelled(PARSING_CLASSES, counts / ids.size, "parsing counts")
        return cls(
            landmarks68=tuple((float(x), float(y)) for x, y in lm),
            head_pose=HeadPose(pitch=float(pose[0]), yaw=float(pose[1]), roll=float(pose[2])),
            attributes=_labelled(ATTRIBUTES, attributes, "attributes"),
            occlusion=_labelled(VISIBILITY_POINTS, visibility, "visibility"),
            age=_distribution(AGE_BINS, age, "age"),
            gender=_distribution(GENDERS, gender, "gender"),
            race=_distribution(RACES, race, "race"),
            parsing_fractions=fractions,
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (floats, strings, lists) with every labelled result."""
        out: dict[str, object] = {
            "landmarks68": [list(p) for p in self.landmarks68],
            "head_pose": {
                "pitch": self.head_pose.pitch,
                "yaw": self.head_pose.yaw,
                "roll": self.head_pose.roll,
            },
            "attributes": dict(self.attributes),
            "present_attributes": list(self.present_attributes),
            "occlusion": dict(self.occlusion),
            "occluded_points": list(self.occluded_points),
        }
        for name in _DISTRIBUTION_FIELDS:
            dist: Distribution = getattr(self, name)
            out[name] = {"label": dist.label, "probability": dist.probability, "distribution": dist.as_dict()}
        if self.parsing_fractions is not None:
            out["parsing_fractions"] = dict(self.parsing_fractions)
        return out


def _distribution(labels: tuple[str, ...], values: npt.ArrayLike, name: str) -> Distribution:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.shape != (len(labels),):
        raise ValueError(f"expected {name} of shape [{len(labels)}], got {list(np.shape(values))}")
    return Distribution.from_array(labels, v)
