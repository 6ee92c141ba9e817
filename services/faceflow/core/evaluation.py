"""Multi-object tracking metrics against ground truth: CLEAR MOT, identity (IDF1) and naming accuracy.

Input is a sequence of :class:`EvalFrame` (ground-truth and hypothesis boxes with their ids, and
regions to ignore). Two evaluations share one frame matching:

* **Frame matching** (CLEAR MOT, Bernardin & Stiefelhagen 2008, as py-motmetrics does it): a
  ground truth and a hypothesis may match when their IoU is at least ``iou_threshold``. Each
  frame first keeps last frame's correspondences that are still possible, then matches the rest
  with the Hungarian algorithm, maximising the number of matches and then minimising the summed
  ``1 - IoU``. A match whose ground truth was last matched to another hypothesis id is an **ID
  switch**. Unmatched ground truths are **misses**; unmatched hypotheses are **false positives**,
  unless they overlap an ignore region by at least ``iou_threshold`` (then they count as
  nothing, here and in the identity measures).
* :func:`evaluate` -> :class:`MotScores`: MOTA, MOTP (here the mean IoU of matches; motmetrics
  reports the mean ``1 - IoU``), ID switches, fragmentations and the identity measures of
  Ristani et al. 2016: ground-truth ids and hypothesis ids are put in one-to-one correspondence
  (a global bipartite assignment maximising the frames in which the two boxes overlap by at least
  the threshold); IDTP counts those frames, IDF1 = 2 IDTP / (GT + hypothesis detections).
  The numbers agree with py-motmetrics (``MOTAccumulator``, distance ``1 - IoU``, ``max_d = 1 -
  iou_threshold``); the tests check it.
* :func:`pool_mot_scores`: the scores of several sequences (streams) as one, from summed counts.
* :func:`identity_accuracy` -> :class:`IdentityScores`: hypothesis labels are identity ids and
  ground-truth labels person names; each identity id stands for the person it matched most often.

Undefined ratios (no ground truth, no matches) are NaN in the dataclasses and None in
``as_dict()``. Pure: numpy, scipy and our own modules only.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped, unused-ignore]

from faceflow.core.geometry import FloatArray, _iou_matrix, as_box

logger = logging.getLogger(__name__)

__all__ = ["EvalFrame", "IdentityScores", "MotScores", "evaluate", "identity_accuracy", "pool_mot_scores"]

Labelled = tuple[str, npt.ArrayLike]


def _check_labelled(items: object, what: str, unique: bool) -> None:
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise TypeError(f"{what}: expected a sequence of (id, box) pairs, got {type(items).__name__}")
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 2:
            raise TypeError(f"{what}[{i}]: expected an (id, box) pair, got {item!r:.60}")
        label, box = item
        if not isinstance(label, str) or not label:
            raise ValueError(f"{what}[{i}]: expected a non-empty str id, got {label!r:.60}")
        if unique and label in seen:
            raise ValueError(f"{what}[{i}]: expected unique ids in a frame, got {label!r} twice")
        seen.add(label)
        as_box(box, f"{what}[{i}] box")


@dataclass(frozen=True, kw_only=True)
class EvalFrame:
    """One frame of ground truth and hypotheses.

    Attributes:
        key: the frame's index or pts (finite; for messages and ordering only).
        gt: ``(gt_id, box)`` pairs; ids unique within the frame. Boxes are ``(x1, y1, x2, y2)``.
        hyp: ``(hyp_id, box)`` pairs. :func:`evaluate` needs unique ids within a frame;
            :func:`identity_accuracy` does not (two faces may be given one identity).
        ignore: boxes of regions not to count (e.g. heavily occluded ground-truth faces): an
            unmatched hypothesis overlapping one by at least the IoU threshold is no false positive.
    """

    key: int | float
    gt: Sequence[Labelled] = ()
    hyp: Sequence[Labelled] = ()
    ignore: Sequence[npt.ArrayLike] = ()

    def __post_init__(self) -> None:
        key = self.key
        if isinstance(key, bool) or not isinstance(key, (int, float)) or not math.isfinite(key):
            raise ValueError(f"key: expected a finite frame index or pts, got {self.key!r:.60}")
        _check_labelled(self.gt, "gt", unique=True)
        _check_labelled(self.hyp, "hyp", unique=False)
        if isinstance(self.ignore, (str, bytes)) or not isinstance(self.ignore, Sequence):
            raise TypeError(f"ignore: expected a sequence of boxes, got {type(self.ignore).__name__}")
        for i, box in enumerate(self.ignore):
            as_box(box, f"ignore[{i}]")


def _nan_to_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


@dataclass(frozen=True, kw_only=True)
class MotScores:
    """CLEAR MOT and identity measures of a sequence (see the module docstring).

    Attributes:
        idf1, idp, idr: identity F1, precision, recall (Ristani et al. 2016).
        idtp, idfp, idfn: identity true positives, false positives, false negatives.
        id_switches: matches whose ground truth was last matched to another hypothesis id.
        fragmentations: times a ground-truth trajectory went from matched to missed and came back.
        mota: ``1 - (misses + false_positives + id_switches) / num_gt``.
        motp: mean IoU of the matches.
        num_frames, num_gt, num_hyp: frames, ground-truth boxes, hypothesis boxes (ignored ones
            excluded); num_ignored: hypotheses not counted because they overlap an ignore region.
        num_matches, false_positives, misses: frame-level matching counts.
        iou_threshold: the IoU a match needed.
    """

    idf1: float
    idp: float
    idr: float
    idtp: int
    idfp: int
    idfn: int
    id_switches: int
    fragmentations: int
    mota: float
    motp: float
    num_frames: int
    num_gt: int
    num_hyp: int
    num_ignored: int
    num_matches: int
    false_positives: int
    misses: int
    iou_threshold: float

    def as_dict(self) -> dict[str, Any]:
        """The scores as JSON-serialisable data (NaN as None)."""
        return _nan_to_none(asdict(self))


@dataclass(frozen=True, kw_only=True)
class IdentityScores:
    """How well identity ids name persons (see :func:`identity_accuracy`).

    Attributes:
        accuracy: fraction of matched ground-truth boxes whose identity maps to their person.
        num_gt, num_matches, correct: ground-truth boxes, those matched, those correctly named.
        mapping: identity id -> the person it matched most often (ties: the first name in order).
        identities_per_person: person -> how many identity ids it was matched to (1 is ideal).
        persons_per_identity: identity id -> how many persons it was matched to (1 is ideal).
        iou_threshold: the IoU a match needed.
    """

    accuracy: float
    num_gt: int
    num_matches: int
    correct: int
    mapping: dict[str, str]
    identities_per_person: dict[str, int]
    persons_per_identity: dict[str, int]
    iou_threshold: float

    def as_dict(self) -> dict[str, Any]:
        """The scores as JSON-serialisable data (NaN as None)."""
        return _nan_to_none(asdict(self))


@dataclass(frozen=True)
class _FrameResult:
    matches: list[tuple[int, int, float]]  # (gt index, hyp index, IoU)
    switches: int
    unmatched_gt: list[int]
    false_positives: list[int]
    ignored: list[int]
    valid: npt.NDArray[np.bool_]  # [G, H] pairs overlapping by at least the threshold


def _boxes(items: Sequence[Labelled]) -> FloatArray:
    return np.stack([as_box(box) for _, box in items]) if items else np.zeros((0, 4))


def _match_frame(frame: EvalFrame, last: dict[str, str], threshold: float) -> _FrameResult:
    """CLEAR MOT matching of one frame; updates ``last`` (gt id -> last matched hyp id)."""
    gt_ids = [label for label, _ in frame.gt]
    hyp_ids = [label for label, _ in frame.hyp]
    hyp_boxes = _boxes(frame.hyp)
    iou = _iou_matrix(_boxes(frame.gt), hyp_boxes)
    # Written as motmetrics does (distance 1 - IoU <= max_d) so both agree at the boundary too.
    valid = (1.0 - iou) <= (1.0 - threshold)
    gt_done = np.zeros(len(gt_ids), np.bool_)
    hyp_done = np.zeros(len(hyp_ids), np.bool_)
    matches: list[tuple[int, int, float]] = []
    switches = 0
    if gt_ids and hyp_ids:
        # 1. Keep last frame's correspondences that are still possible.
        by_label: defaultdict[str, list[int]] = defaultdict(list)
        for j, label in enumerate(hyp_ids):
            by_label[label].append(j)
        for i, g in enumerate(gt_ids):
            h = last.get(g)
            if h is None or h not in by_label:
                continue
            cands = [j for j in by_label[h] if not hyp_done[j] and valid[i, j]]
            if cands:
                j = max(cands, key=lambda k: (iou[i, k], -k))
                gt_done[i] = hyp_done[j] = True
                matches.append((i, j, float(iou[i, j])))
        # 2. The rest: most matches first, then the least summed distance (motmetrics' large edges).
        open_pairs = valid & ~gt_done[:, None] & ~hyp_done[None, :]
        if open_pairs.any():
            dist = 1.0 - iou
            large = 2.0 * min(dist.shape) * (float(np.abs(dist[open_pairs]).max()) + 1.0) + 1.0
            rows, cols = linear_sum_assignment(np.where(open_pairs, dist, large))
            for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
                if not open_pairs[i, j]:
                    continue
                g, h = gt_ids[i], hyp_ids[j]
                if g in last and last[g] != h:
                    switches += 1
                last[g] = h
                gt_done[i] = hyp_done[j] = True
                matches.append((i, j, float(iou[i, j])))
    unmatched_hyp = np.flatnonzero(~hyp_done)
    ignored: list[int] = []
    if unmatched_hyp.size and frame.ignore:
        overlap = _iou_matrix(hyp_boxes[unmatched_hyp], np.stack([as_box(box) for box in frame.ignore]))
        hit = (1.0 - overlap.max(axis=1)) <= (1.0 - threshold)
        ignored = unmatched_hyp[hit].tolist()
        unmatched_hyp = unmatched_hyp[~hit]
    return _FrameResult(
        matches=matches,
        switches=switches,
        unmatched_gt=np.flatnonzero(~gt_done).tolist(),
        false_positives=unmatched_hyp.tolist(),
        ignored=ignored,
        valid=valid,
    )


def _check_threshold(iou_threshold: float) -> float:
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)):
        raise TypeError(f"iou_threshold: expected a float in (0, 1], got {type(iou_threshold).__name__}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold: expected a float in (0, 1], got {iou_threshold}")
    return float(iou_threshold)


_F = TypeVar("_F")


def _checked_frames(frames: Iterable[_F], kind: type[_F]) -> list[_F]:
    """``frames`` as a list, every element of type ``kind`` (else TypeError naming its index)."""
    out = list(frames)
    for i, frame in enumerate(out):
        if not isinstance(frame, kind):
            raise TypeError(f"frames[{i}]: expected an {kind.__name__}, got {type(frame).__name__}")
    return out


def _frames(frames: Iterable[EvalFrame]) -> list[EvalFrame]:
    return _checked_frames(frames, EvalFrame)


def _identity_tp(pair_tp: dict[tuple[str, str], int]) -> int:
    """Most identity true positives over one-to-one gt id <-> hyp id correspondences."""
    if not pair_tp:
        return 0
    gts = sorted({g for g, _ in pair_tp})
    hyps = sorted({h for _, h in pair_tp})
    gi = {g: i for i, g in enumerate(gts)}
    hi = {h: i for i, h in enumerate(hyps)}
    tp = np.zeros((len(gts), len(hyps)))
    for (g, h), n in pair_tp.items():
        tp[gi[g], hi[h]] = n
    rows, cols = linear_sum_assignment(-tp)
    return int(tp[rows, cols].sum())


def evaluate(frames: Iterable[EvalFrame], *, iou_threshold: float = 0.5) -> MotScores:
    """CLEAR MOT and identity measures of ``frames`` (in order); see the module docstring.

    Raises:
        ValueError: a frame has a hypothesis id twice, or the threshold is not in (0, 1].
        TypeError: an element of ``frames`` is not an :class:`EvalFrame`.
    """
    threshold = _check_threshold(iou_threshold)
    seq = _frames(frames)
    last: dict[str, str] = {}
    tracked: dict[str, bool] = {}  # gt id -> matched at its last appearance
    gap: dict[str, bool] = {}  # gt id -> missed since it was last matched
    pair_tp: Counter[tuple[str, str]] = Counter()
    num_gt = num_hyp = num_ignored = num_matches = fps = misses = switches = frags = 0
    iou_sum = 0.0
    for frame in seq:
        hyp_ids = [label for label, _ in frame.hyp]
        if len(set(hyp_ids)) != len(hyp_ids):
            dup = next(h for h in hyp_ids if hyp_ids.count(h) > 1)
            raise ValueError(f"frame {frame.key}: hyp: expected unique ids in a frame, got {dup!r} twice")
        result = _match_frame(frame, last, threshold)
        gt_ids = [label for label, _ in frame.gt]
        matched_gt = {i for i, _, _ in result.matches}
        for i, g in enumerate(gt_ids):
            if i in matched_gt:
                if gap.get(g):
                    frags += 1
                gap[g] = False
                tracked[g] = True
            else:
                if tracked.get(g):
                    gap[g] = True
                tracked[g] = False
        ignored = set(result.ignored)
        counted = [j for j in range(len(hyp_ids)) if j not in ignored]
        if counted:
            rows, cols = np.nonzero(result.valid[:, counted])
            for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
                pair_tp[(gt_ids[i], hyp_ids[counted[j]])] += 1
        num_gt += len(gt_ids)
        num_hyp += len(counted)
        num_ignored += len(ignored)
        num_matches += len(result.matches)
        iou_sum += sum(v for _, _, v in result.matches)
        fps += len(result.false_positives)
        misses += len(result.unmatched_gt)
        switches += result.switches
    idtp = _identity_tp(pair_tp)
    scores = MotScores(
        idf1=_ratio(2 * idtp, num_gt + num_hyp),
        idp=_ratio(idtp, num_hyp),
        idr=_ratio(idtp, num_gt),
        idtp=idtp,
        idfp=num_hyp - idtp,
        idfn=num_gt - idtp,
        id_switches=switches,
        fragmentations=frags,
        mota=1.0 - _ratio(misses + fps + switches, num_gt),
        motp=_ratio(iou_sum, num_matches),
        num_frames=len(seq),
        num_gt=num_gt,
        num_hyp=num_hyp,
        num_ignored=num_ignored,
        num_matches=num_matches,
        false_positives=fps,
        misses=misses,
        iou_threshold=threshold,
    )
    logger.debug("evaluate: %s frames: idf1=%s mota=%s", len(seq), scores.idf1, scores.mota)
    return scores


def pool_mot_scores(scores: Sequence[MotScores]) -> MotScores:
    """Several sequences' scores as one: counts summed, ratios recomputed from the sums (never averaged).

    IDTP is summed per sequence (each has its own id correspondence); MOTP is the match-weighted
    mean IoU.

    Raises:
        ValueError: no scores, or scores measured at different IoU thresholds.
    """
    items = list(scores)
    if not items:
        raise ValueError("scores: expected the scores of at least one sequence, got none")
    for i, s in enumerate(items):
        if not isinstance(s, MotScores):
            raise TypeError(f"scores[{i}]: expected MotScores, got {type(s).__name__}")
        if s.iou_threshold != items[0].iou_threshold:
            raise ValueError(
                f"scores[{i}].iou_threshold: expected {items[0].iou_threshold} (as scores[0]), "
                f"got {s.iou_threshold}"
            )
    total = {
        name: sum(getattr(s, name) for s in items)
        for name in (
            "idtp", "id_switches", "fragmentations", "num_frames", "num_gt", "num_hyp", "num_ignored",
            "num_matches", "false_positives", "misses",
        )
    }  # fmt: skip
    iou_sum = sum(s.motp * s.num_matches for s in items if s.num_matches)
    idtp, num_gt, num_hyp = total["idtp"], total["num_gt"], total["num_hyp"]
    return MotScores(
        idf1=_ratio(2 * idtp, num_gt + num_hyp),
        idp=_ratio(idtp, num_hyp),
        idr=_ratio(idtp, num_gt),
        idfp=num_hyp - idtp,
        idfn=num_gt - idtp,
        mota=1.0 - _ratio(total["misses"] + total["false_positives"] + total["id_switches"], num_gt),
        motp=_ratio(iou_sum, total["num_matches"]),
        iou_threshold=items[0].iou_threshold,
        **total,
    )


def identity_accuracy(frames: Iterable[EvalFrame], *, iou_threshold: float = 0.5) -> IdentityScores:
    """How well hypothesis labels (identity ids) name ground-truth labels (person names).

    Frames are matched as in :func:`evaluate`; each identity id is mapped to the person it matched
    most often (majority; ties go to the first name in sorted order), and ``accuracy`` is the
    fraction of matches whose identity maps to their person.
    """
    threshold = _check_threshold(iou_threshold)
    last: dict[str, str] = {}
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)  # identity -> person -> matches
    num_gt = num_matches = 0
    for frame in _frames(frames):
        result = _match_frame(frame, last, threshold)
        num_gt += len(frame.gt)
        num_matches += len(result.matches)
        for i, j, _ in result.matches:
            counts[frame.hyp[j][0]][frame.gt[i][0]] += 1
    mapping: dict[str, str] = {}
    correct = 0
    identities_per_person: Counter[str] = Counter()
    for identity in sorted(counts):
        persons = counts[identity]
        best = min(persons, key=lambda p: (-persons[p], p))
        mapping[identity] = best
        correct += persons[best]
        identities_per_person.update(persons.keys())
    return IdentityScores(
        accuracy=_ratio(correct, num_matches),
        num_gt=num_gt,
        num_matches=num_matches,
        correct=correct,
        mapping=mapping,
        identities_per_person=dict(sorted(identities_per_person.items())),
        persons_per_identity={identity: len(counts[identity]) for identity in sorted(counts)},
        iou_threshold=threshold,
    )
