"""Per-track fusion of the face model's results over a track's analyzed observations.

Every analyzed observation of a track contributes its age, gender and race distributions, its 40
attribute probabilities and its 29 landmark-occlusion probabilities, weighted by its quality
(:mod:`faceflow.core.quality`). :class:`TrackFusion` keeps O(1) state per track: running
weighted means, updated in place (West's incremental update ``mean += (w / W) * (x - mean)``,
float64), never a list of observations.

Fused values
    For every head, the fused probabilities are the weighted mean of the observations'
    probabilities. A distribution's ``top_label`` is its argmax (ties: the first label in
    contract order); a binary label's fused decision is "present" (attribute) / "occluded"
    (point) when its weighted mean is >= ``PRESENCE_THRESHOLD`` (0.5).

Confidence (in [0, 1]), per distribution and per binary label::

    confidence = evidence * agreement
    evidence   = 1 - exp(-W / evidence_scale)          W = total weight (sum of qualities)
    agreement  = max(0, V_fused - max_{d != fused} V_d)

``V_d`` is the weighted share of observations whose *own* decision is ``d`` (an observation's
decision: its argmax label for a distribution; present iff its probability >= 0.5 for a binary
label), so ``agreement`` is the weighted vote margin of the fused decision over the strongest
alternative. For a binary label it is ``2 * V_agree - 1``. With the default
``evidence_scale = 2.0``: one observation of quality 0.2 gives at most 0.095, one of quality
1.0 at most 0.39, ten agreeing observations of quality 0.8 give 0.98, and an even split between
two labels gives 0 whatever the weight. How sure the model itself was is not folded in: it is in
the fused probabilities (``top_probability``) for a client to read alongside.

Pure: numpy and the model contract only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from faceflow.models.contract import (
    AGE_BINS,
    ATTRIBUTES,
    GENDERS,
    PRESENCE_THRESHOLD,
    RACES,
    VISIBILITY_POINTS,
)

logger = logging.getLogger(__name__)

__all__ = [
    "SNAPSHOT_VERSION",
    "FusedDistribution",
    "FusedResults",
    "TrackFusion",
    "evidence_factor",
]

FloatArray = npt.NDArray[np.float64]

#: Version of :meth:`TrackFusion.snapshot`'s format.
SNAPSHOT_VERSION: Final[int] = 1

#: A distribution head's probabilities must sum to 1 within this before renormalisation.
_SUM_TOLERANCE: Final[float] = 1e-3

_DISTRIBUTIONS: Final[dict[str, tuple[str, ...]]] = {"age": AGE_BINS, "gender": GENDERS, "race": RACES}
_BINARY: Final[dict[str, tuple[str, ...]]] = {"attributes": ATTRIBUTES, "occlusion": VISIBILITY_POINTS}


def evidence_factor(weight: float, evidence_scale: float) -> float:
    """``1 - exp(-weight / evidence_scale)``: 0 without evidence, saturating towards 1."""
    return float(-math.expm1(-weight / evidence_scale))


def _readonly(arr: FloatArray) -> FloatArray:
    out = np.array(arr, dtype=np.float64)
    out.setflags(write=False)
    return out


def _check_unit_vector(value: object, name: str, n: int) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a numeric array [{n}], got {type(value).__name__}") from None
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected shape [{n}], got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite probabilities, got NaN or inf")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(f"{name}: expected probabilities in [0, 1], got {arr.min()}..{arr.max()}")
    return arr


@dataclass(frozen=True, kw_only=True, slots=True)
class FusedDistribution:
    """One fused categorical head (age, gender or race).

    Attributes:
        labels: the head's labels in contract order.
        probabilities: quality-weighted mean probability per label; sums to 1.
        top_label: the label with the highest fused probability (first in order on a tie).
        top_probability: its fused probability, in [0, 1].
        confidence: ``evidence * vote margin`` in [0, 1] (module docstring).
    """

    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    top_label: str
    top_probability: float
    confidence: float

    def __post_init__(self) -> None:
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels: expected distinct labels, got {self.labels!r}")
        if len(self.probabilities) != len(self.labels):
            raise ValueError(
                f"probabilities: expected {len(self.labels)} values, got {len(self.probabilities)}"
            )
        if not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in self.probabilities):
            raise ValueError(f"probabilities: expected values in [0, 1], got {self.probabilities!r}")
        if abs(math.fsum(self.probabilities) - 1.0) > _SUM_TOLERANCE:
            raise ValueError(f"probabilities: expected a sum of 1, got {math.fsum(self.probabilities)}")
        if self.top_label not in self.labels:
            raise ValueError(f"top_label: expected one of {self.labels}, got {self.top_label!r}")
        for name in ("top_probability", "confidence"):
            value = getattr(self, name)
            if not (isinstance(value, float) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name}: expected a float in [0, 1], got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: labels, probabilities, top label and probability, confidence."""
        return {
            "labels": list(self.labels),
            "probabilities": list(self.probabilities),
            "top_label": self.top_label,
            "top_probability": self.top_probability,
            "confidence": self.confidence,
        }


@dataclass(frozen=True, kw_only=True, eq=False)
class FusedResults:
    """A track's fused face-model results (see the module docstring for every formula).

    Attributes:
        age, gender, race: fused distributions over ``AGE_BINS``, ``GENDERS``, ``RACES``.
        attributes: [40] weighted-mean probability per CelebA attribute (``ATTRIBUTES`` order).
        attribute_confidence: [40] confidence in [0, 1] of each attribute's present/absent call.
        occlusion: [29] weighted-mean probability that each COFW point is occluded.
        occlusion_confidence: [29] confidence in [0, 1] of each point's occluded/visible call.
        evidence: number of observations fused (>= 1).
        weight: total weight W (sum of the observations' qualities, > 0).

    Arrays are float64 and read-only. Equality is identity (``eq=False``).
    """

    age: FusedDistribution
    gender: FusedDistribution
    race: FusedDistribution
    attributes: FloatArray
    attribute_confidence: FloatArray
    occlusion: FloatArray
    occlusion_confidence: FloatArray
    evidence: int
    weight: float

    def __post_init__(self) -> None:
        for name, labels in (("age", AGE_BINS), ("gender", GENDERS), ("race", RACES)):
            dist = getattr(self, name)
            if not isinstance(dist, FusedDistribution) or dist.labels != labels:
                raise ValueError(f"{name}: expected a FusedDistribution over {labels}, got {dist!r}")
        for name, n in (
            ("attributes", len(ATTRIBUTES)),
            ("attribute_confidence", len(ATTRIBUTES)),
            ("occlusion", len(VISIBILITY_POINTS)),
            ("occlusion_confidence", len(VISIBILITY_POINTS)),
        ):
            object.__setattr__(self, name, _readonly(_check_unit_vector(getattr(self, name), name, n)))
        if isinstance(self.evidence, bool) or not isinstance(self.evidence, int) or self.evidence < 1:
            raise ValueError(f"evidence: expected an int >= 1, got {self.evidence!r}")
        if not (isinstance(self.weight, float) and math.isfinite(self.weight) and self.weight > 0.0):
            raise ValueError(f"weight: expected a finite float > 0, got {self.weight!r}")

    @property
    def present_attributes(self) -> tuple[str, ...]:
        """Names of the attributes whose fused probability is >= ``PRESENCE_THRESHOLD``."""
        return tuple(a for a, p in zip(ATTRIBUTES, self.attributes, strict=True) if p >= PRESENCE_THRESHOLD)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, attributes and occlusion keyed by label."""
        return {
            "age": self.age.to_dict(),
            "gender": self.gender.to_dict(),
            "race": self.race.to_dict(),
            "attributes": {
                a: {"probability": float(p), "confidence": float(c)}
                for a, p, c in zip(ATTRIBUTES, self.attributes, self.attribute_confidence, strict=True)
            },
            "occlusion": {
                v: {"probability": float(p), "confidence": float(c)}
                for v, p, c in zip(VISIBILITY_POINTS, self.occlusion, self.occlusion_confidence, strict=True)
            },
            "evidence": self.evidence,
            "weight": self.weight,
        }


@dataclass(slots=True)
class _Head:
    """Running weighted means of one head: probabilities and decision (vote) shares."""

    mean: FloatArray
    votes: FloatArray


class TrackFusion:
    """Quality-weighted fusion of one track's analyzed observations; O(1) memory.

    Usage: ``add(...)`` once per analyzed observation, ``fused()`` for the current result.
    ``snapshot()`` / ``restore()`` carry the exact state across a checkpoint: a restored object
    continues bit for bit like the original.

    Args:
        evidence_scale: W at which the evidence factor reaches 1 - 1/e (~0.63); > 0.
    """

    __slots__ = ("_evidence", "_evidence_scale", "_heads", "_weight")

    def __init__(self, *, evidence_scale: float = 2.0) -> None:
        if (
            isinstance(evidence_scale, bool)
            or not isinstance(evidence_scale, (int, float))
            or not math.isfinite(evidence_scale)
            or evidence_scale <= 0.0
        ):
            raise ValueError(f"evidence_scale: expected a finite number > 0, got {evidence_scale!r}")
        self._evidence_scale = float(evidence_scale)
        self._evidence = 0
        self._weight = 0.0
        self._heads: dict[str, _Head] = {}
        for name, labels in (*_DISTRIBUTIONS.items(), *_BINARY.items()):
            n = len(labels)
            self._heads[name] = _Head(mean=np.zeros(n), votes=np.zeros(n))

    @property
    def evidence(self) -> int:
        """Number of observations added."""
        return self._evidence

    @property
    def weight(self) -> float:
        """Total weight W added (sum of the weights)."""
        return self._weight

    @property
    def evidence_scale(self) -> float:
        """The ``evidence_scale`` this object was built with."""
        return self._evidence_scale

    def add(
        self,
        *,
        weight: float,
        age: npt.ArrayLike,
        gender: npt.ArrayLike,
        race: npt.ArrayLike,
        attributes: npt.ArrayLike,
        occlusion: npt.ArrayLike,
    ) -> None:
        """Fuse one analyzed observation.

        Args:
            weight: its quality, a finite float > 0 (an observation of quality 0 carries no
                information: skip it instead of adding it).
            age, gender, race: probability vectors [8], [2], [5] in contract order; each must sum
                to 1 within 1e-3 and is renormalised.
            attributes: [40] probabilities (CelebA order).
            occlusion: [29] probabilities that each COFW point is occluded.

        Raises ``ValueError`` / ``TypeError`` on a bad weight or vector; the state is unchanged
        then (everything is validated before anything is updated).
        """
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TypeError(f"weight: expected a float > 0, got {type(weight).__name__}")
        if not math.isfinite(weight) or weight <= 0.0:
            raise ValueError(f"weight: expected a finite float > 0, got {weight!r}")
        values = {
            "age": age,
            "gender": gender,
            "race": race,
            "attributes": attributes,
            "occlusion": occlusion,
        }
        checked: dict[str, tuple[FloatArray, FloatArray]] = {}
        for name, labels in _DISTRIBUTIONS.items():
            p = _check_unit_vector(values[name], name, len(labels))
            total = float(p.sum())
            if abs(total - 1.0) > _SUM_TOLERANCE:
                raise ValueError(f"{name}: expected probabilities summing to 1, got a sum of {total}")
            vote = np.zeros(len(labels))
            vote[int(np.argmax(p))] = 1.0
            checked[name] = (p / total, vote)
        for name, labels in _BINARY.items():
            p = _check_unit_vector(values[name], name, len(labels))
            checked[name] = (p, (p >= PRESENCE_THRESHOLD).astype(np.float64))
        new_weight = self._weight + float(weight)
        step = float(weight) / new_weight
        for name, (p, vote) in checked.items():
            head = self._heads[name]
            head.mean += step * (p - head.mean)
            head.votes += step * (vote - head.votes)
        self._weight = new_weight
        self._evidence += 1

    def fused(self) -> FusedResults | None:
        """The fused results so far, or None before the first :meth:`add`."""
        if self._evidence == 0:
            return None
        evidence = evidence_factor(self._weight, self._evidence_scale)
        dists: dict[str, FusedDistribution] = {}
        for name, labels in _DISTRIBUTIONS.items():
            head = self._heads[name]
            probs = np.clip(head.mean, 0.0, 1.0)
            probs = probs / probs.sum()
            top = int(np.argmax(probs))
            votes = np.clip(head.votes, 0.0, 1.0)
            others = np.delete(votes, top)
            margin = float(votes[top] - (others.max() if others.size else 0.0))
            dists[name] = FusedDistribution(
                labels=labels,
                probabilities=tuple(float(x) for x in probs),
                top_label=labels[top],
                top_probability=float(probs[top]),
                confidence=float(min(max(margin, 0.0), 1.0) * evidence),
            )
        binary: dict[str, tuple[FloatArray, FloatArray]] = {}
        for name in _BINARY:
            head = self._heads[name]
            mean = np.clip(head.mean, 0.0, 1.0)
            present_share = np.clip(head.votes, 0.0, 1.0)
            agree = np.where(mean >= PRESENCE_THRESHOLD, present_share, 1.0 - present_share)
            binary[name] = (mean, np.clip(2.0 * agree - 1.0, 0.0, 1.0) * evidence)
        return FusedResults(
            age=dists["age"],
            gender=dists["gender"],
            race=dists["race"],
            attributes=binary["attributes"][0],
            attribute_confidence=binary["attributes"][1],
            occlusion=binary["occlusion"][0],
            occlusion_confidence=binary["occlusion"][1],
            evidence=self._evidence,
            weight=self._weight,
        )

    # --- checkpointing ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state (floats round-trip exactly through ``json``)."""
        return {
            "version": SNAPSHOT_VERSION,
            "evidence_scale": self._evidence_scale,
            "evidence": self._evidence,
            "weight": self._weight,
            "heads": {
                name: {"mean": [float(x) for x in head.mean], "votes": [float(x) for x in head.votes]}
                for name, head in self._heads.items()
            },
        }

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any]) -> TrackFusion:
        """Rebuild from :meth:`snapshot`'s output; ``ValueError`` on malformed input."""
        if not isinstance(snapshot, Mapping):
            raise ValueError(f"snapshot: expected a mapping, got {type(snapshot).__name__}")
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(
                f"snapshot.version: expected {SNAPSHOT_VERSION}, got {snapshot.get('version')!r}"
            )
        try:
            fusion = cls(evidence_scale=snapshot["evidence_scale"])
        except KeyError as exc:
            raise ValueError(f"snapshot: expected key {exc}, got none") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"snapshot: {exc}") from None
        evidence = snapshot.get("evidence")
        if isinstance(evidence, bool) or not isinstance(evidence, int) or evidence < 0:
            raise ValueError(f"snapshot.evidence: expected an int >= 0, got {evidence!r}")
        weight = snapshot.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ValueError(f"snapshot.weight: expected a finite float >= 0, got {weight!r}")
        if weight < 0.0 or (evidence == 0) != (weight == 0.0):
            raise ValueError(
                f"snapshot.weight: expected 0 exactly when evidence is 0, got weight {weight!r} "
                f"with evidence {evidence}"
            )
        heads = snapshot.get("heads")
        if not isinstance(heads, Mapping) or set(heads) != set(fusion._heads):
            got = sorted(heads) if isinstance(heads, Mapping) else type(heads).__name__
            raise ValueError(f"snapshot.heads: expected keys {sorted(fusion._heads)}, got {got}")
        for name, head in fusion._heads.items():
            raw = heads[name]
            if not isinstance(raw, Mapping):
                raise ValueError(f"snapshot.heads.{name}: expected a mapping, got {type(raw).__name__}")
            for part in ("mean", "votes"):
                value = raw.get(part)
                if not isinstance(value, list) or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in value
                ):
                    raise ValueError(
                        f"snapshot.heads.{name}.{part}: expected a list of numbers, got {value!r}"
                    )
                arr = np.array(value, dtype=np.float64)
                n = head.mean.shape[0]
                # Running means are convex combinations of values in [0, 1]; allow rounding.
                if (
                    arr.shape != (n,)
                    or not np.isfinite(arr).all()
                    or arr.min() < -1e-9
                    or arr.max() > 1 + 1e-9
                ):
                    raise ValueError(
                        f"snapshot.heads.{name}.{part}: expected {n} finite values in [0, 1], got {value!r}"
                    )
                setattr(head, part, arr)
        fusion._evidence = evidence
        fusion._weight = float(weight)
        return fusion
