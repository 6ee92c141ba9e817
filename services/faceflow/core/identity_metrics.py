"""The identity metrics a user judges a face-recognition system by, against per-frame ground truth.

Input: a sequence of :class:`IdentityFrame` (one per analysed frame, in media-time order): the
frame's ground-truth faces (:class:`TruthFace`: person, box, whether visible; ``None`` when the
frame has no ground truth) and its observations (:class:`HypFace`: box, track id, identity id or
none, identity name or ""), with the set of enrolled person names. :func:`identity_metrics`
returns :class:`IdentityMetrics`; :func:`pool_identity_metrics` pools several streams by summing
counts (never by averaging rates).

Matching: per frame, the *visible* ground-truth faces are matched 1:1 to observations with IoU >=
``iou_threshold`` by the Hungarian algorithm of :mod:`faceflow.core.evaluation` (most matches,
then the least summed ``1 - IoU``; each frame on its own, no carry-over). A ground-truth face that
is not visible (occluded) is an ignore region: an unmatched observation overlapping one by the
threshold counts nowhere. A matched face is a (ground-truth face, observation) pair.

Definitions (exactly what is computed):

* ``named_recall`` = ``named_correct / recall_faces``: ``recall_faces`` are the visible ground-truth
  faces of enrolled persons (``name`` in ``enrolled``) whose box is at least ``min_face_px`` high;
  ``named_correct`` those of them matched to an observation whose name equals the person's name (an
  unmatched face is not named).
* ``false_name_rate`` = ``false_names / matched_faces``: a false name is a matched face whose
  observation carries a non-empty name different from the ground-truth person's name (a stranger
  named as an enrolled person included). ``named_faces``: matched faces whose observation carries
  a name; ``false_name_share_of_named`` = ``false_names / named_faces``; ``stranger_faces_named``:
  the false names that fell on persons who are not enrolled; ``unmatched_named``: observations with
  a name that matched no visible face and overlap no ignore region (reported, in no rate).
* ``identities_per_person``: the mean, over ground-truth persons whose matched faces carry at least
  one identity id, of the number of distinct identity ids on their matched faces (every face
  counts, whatever its size); ``identities_by_person`` lists it per person, and
  ``persons_without_identity`` counts the matched persons none of whose faces got an identity.
* ``persons_per_identity``: the mean, over the identity ids of matched faces, of the number of
  distinct ground-truth persons among the faces it got; ``persons_by_identity`` per identity.
* ``same_frame_shared_identity``: frames (every frame, with or without ground truth) in which two
  or more observations carry the same identity id: a hard constraint is broken there (faces of one
  frame are different people). ``same_frame_shared_examples``: the first ``max_examples``
  (frame key, media time, identity id, observations).
* ``idf1`` (with ``idp``, ``idr``, ``idtp``, ``id_num_gt``, ``id_num_hyp``): identity F1 of identity
  ids against ground-truth persons over the whole clip (Ristani et al. 2016, as
  :func:`faceflow.core.evaluation.evaluate` computes it: a global one-to-one assignment of persons
  to identity ids maximising the frames in which they overlap by the threshold; IDF1 = 2 IDTP /
  (GT + hypothesis detections)). Unlike ``evaluate`` it accepts one identity id on several faces
  of a frame (that is a failure to measure, not an input error): a (person, identity) pair counts
  at most once per frame. An observation without an identity is a hypothesis detection that can
  never be a true positive.
* ``tracking_idf1`` (with ``tracking_idtp`` ...): :func:`~faceflow.core.evaluation.evaluate`'s IDF1 of
  track ids against ground-truth *appearances* (``TruthFace.appearance``).
* ``time_to_name``: for each track whose majority ground-truth person (over its matched faces; ties:
  the first in sorted order) is enrolled, the seconds from the track's first observation matched to
  that person to its first observation carrying that person's name (clamped at 0; None when never
  named); ``median`` and ``max`` over the named tracks, ``never_named`` the count of the others.

Undefined ratios (nothing to divide by) are NaN in the dataclass and None in ``as_dict()``. Pure:
standard library, numpy and our own modules.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from faceflow.core.evaluation import (
    EvalFrame,
    _check_threshold,
    _checked_frames,
    _identity_tp,
    _match_frame,
    evaluate,
)
from faceflow.core.geometry import as_box

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MIN_FACE_PX",
    "HypFace",
    "IdentityFrame",
    "IdentityMetrics",
    "SharedIdentity",
    "TrackNaming",
    "TruthFace",
    "identity_metrics",
    "pool_identity_metrics",
]

#: Ground-truth faces lower than this (pixels) do not count toward named recall.
DEFAULT_MIN_FACE_PX = 40.0
#: How many same-frame shared identities are listed by default.
DEFAULT_MAX_EXAMPLES = 10


def _label(value: object, what: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        shown = "a str" if empty else "a non-empty str"
        raise ValueError(f"{what}: expected {shown}, got {value!r:.60}")
    return value


def _finite(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what}: expected a finite number, got {value!r:.60}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class TruthFace:
    """One ground-truth face of a frame.

    Attributes:
        person: the ground-truth identity: one id for the person across all their appearances.
        box: ``(x1, y1, x2, y2)`` pixels.
        visible: False for an occluded face (it is then an ignore region, never matched).
        name: the name a correct identity gives this person ("" -> ``person``); a person is
            enrolled when this name is in the enrolled set.
        appearance: the id of this appearance, for tracking IDF1 ("" -> ``person``).
    """

    person: str
    box: tuple[float, float, float, float]
    visible: bool = True
    name: str = ""
    appearance: str = ""

    def __post_init__(self) -> None:
        _label(self.person, "person")
        b = as_box(self.box, "box")
        object.__setattr__(self, "box", (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
        if not isinstance(self.visible, bool):
            raise ValueError(f"visible: expected a bool, got {self.visible!r:.60}")
        object.__setattr__(self, "name", _label(self.name, "name", empty=True) or self.person)
        object.__setattr__(
            self, "appearance", _label(self.appearance, "appearance", empty=True) or self.person
        )

    @property
    def height(self) -> float:
        """The box height in pixels."""
        return self.box[3] - self.box[1]


@dataclass(frozen=True, kw_only=True)
class HypFace:
    """One observation of a frame: its box, track and identity (``None`` / "" when it has none)."""

    box: tuple[float, float, float, float]
    track_id: str
    identity_id: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        b = as_box(self.box, "box")
        object.__setattr__(self, "box", (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
        _label(self.track_id, "track_id")
        if self.identity_id is not None:
            _label(self.identity_id, "identity_id")
        _label(self.name, "name", empty=True)


@dataclass(frozen=True, kw_only=True)
class IdentityFrame:
    """One analysed frame: ``key`` (seq, for messages and examples), media time ``t`` (seconds),
    its ground truth (``None``: no ground truth, only the same-frame check applies) and observations."""

    key: int | float
    t: float
    truth: Sequence[TruthFace] | None
    hyps: Sequence[HypFace] = ()

    def __post_init__(self) -> None:
        _finite(self.key, "key")
        _finite(self.t, "t")
        if self.truth is not None:
            if isinstance(self.truth, (str, bytes)) or not isinstance(self.truth, Sequence):
                raise TypeError(
                    f"truth: expected a sequence of TruthFace or None, got {type(self.truth).__name__}"
                )
            seen: set[str] = set()
            for i, face in enumerate(self.truth):
                if not isinstance(face, TruthFace):
                    raise TypeError(f"truth[{i}]: expected a TruthFace, got {type(face).__name__}")
                if face.person in seen:
                    raise ValueError(
                        f"truth[{i}]: expected each person at most once a frame, got {face.person!r} twice"
                    )
                seen.add(face.person)
            object.__setattr__(self, "truth", tuple(self.truth))
        if isinstance(self.hyps, (str, bytes)) or not isinstance(self.hyps, Sequence):
            raise TypeError(f"hyps: expected a sequence of HypFace, got {type(self.hyps).__name__}")
        for i, hyp in enumerate(self.hyps):
            if not isinstance(hyp, HypFace):
                raise TypeError(f"hyps[{i}]: expected a HypFace, got {type(hyp).__name__}")
        object.__setattr__(self, "hyps", tuple(self.hyps))


@dataclass(frozen=True, kw_only=True)
class SharedIdentity:
    """A frame in which ``observations`` (>= 2) faces carry one identity id."""

    key: int | float
    t: float
    identity_id: str
    observations: int
    stream: str = ""


@dataclass(frozen=True, kw_only=True)
class TrackNaming:
    """How long a track of an enrolled person took to carry that person's name (``seconds`` None:
    never); ``first_t``: its first observation matched to the person; ``named_t``: its first named."""

    track_id: str
    person: str
    name: str
    first_t: float
    named_t: float | None
    seconds: float | None


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _none(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True, kw_only=True)
class IdentityMetrics:
    """The identity metrics of one stream (or a pool of streams); see the module docstring."""

    enrolled: tuple[str, ...]
    min_face_px: float
    iou_threshold: float
    frames: int
    frames_scored: int
    gt_faces: int
    matched_faces: int
    recall_faces: int
    named_correct: int
    named_faces: int
    false_names: int
    stranger_faces_named: int
    unmatched_named: int
    identities_by_person: Mapping[str, int]
    persons_without_identity: int
    persons_by_identity: Mapping[str, int]
    same_frame_shared_identity: int
    same_frame_shared_examples: tuple[SharedIdentity, ...]
    idtp: int
    id_num_gt: int
    id_num_hyp: int
    tracking_idtp: int
    tracking_num_gt: int
    tracking_num_hyp: int
    tracks_to_name: tuple[TrackNaming, ...] = field(default=())

    # -- the rates, always recomputed from the counts (so that pooled rates come from summed counts)
    @property
    def named_recall(self) -> float:
        return _ratio(self.named_correct, self.recall_faces)

    @property
    def false_name_rate(self) -> float:
        return _ratio(self.false_names, self.matched_faces)

    @property
    def false_name_share_of_named(self) -> float:
        return _ratio(self.false_names, self.named_faces)

    @property
    def identities_per_person(self) -> float:
        return _ratio(sum(self.identities_by_person.values()), len(self.identities_by_person))

    @property
    def persons_per_identity(self) -> float:
        return _ratio(sum(self.persons_by_identity.values()), len(self.persons_by_identity))

    @property
    def idf1(self) -> float:
        return _ratio(2 * self.idtp, self.id_num_gt + self.id_num_hyp)

    @property
    def idp(self) -> float:
        return _ratio(self.idtp, self.id_num_hyp)

    @property
    def idr(self) -> float:
        return _ratio(self.idtp, self.id_num_gt)

    @property
    def tracking_idf1(self) -> float:
        return _ratio(2 * self.tracking_idtp, self.tracking_num_gt + self.tracking_num_hyp)

    @property
    def time_to_name_median(self) -> float:
        named = [t.seconds for t in self.tracks_to_name if t.seconds is not None]
        return float(statistics.median(named)) if named else math.nan

    @property
    def time_to_name_max(self) -> float:
        named = [t.seconds for t in self.tracks_to_name if t.seconds is not None]
        return max(named) if named else math.nan

    @property
    def tracks_never_named(self) -> int:
        return sum(1 for t in self.tracks_to_name if t.seconds is None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: counts, rates (NaN as None), per person / identity / track lists."""
        return {
            "enrolled": list(self.enrolled),
            "min_face_px": self.min_face_px,
            "iou_threshold": self.iou_threshold,
            "frames": self.frames,
            "frames_scored": self.frames_scored,
            "gt_faces": self.gt_faces,
            "matched_faces": self.matched_faces,
            "named_recall": _none(self.named_recall),
            "recall_faces": self.recall_faces,
            "named_correct": self.named_correct,
            "false_name_rate": _none(self.false_name_rate),
            "false_names": self.false_names,
            "named_faces": self.named_faces,
            "false_name_share_of_named": _none(self.false_name_share_of_named),
            "stranger_faces_named": self.stranger_faces_named,
            "unmatched_named": self.unmatched_named,
            "identities_per_person": _none(self.identities_per_person),
            "identities_by_person": dict(self.identities_by_person),
            "persons_without_identity": self.persons_without_identity,
            "persons_per_identity": _none(self.persons_per_identity),
            "persons_by_identity": dict(self.persons_by_identity),
            "same_frame_shared_identity": self.same_frame_shared_identity,
            "same_frame_shared_examples": [
                {"key": e.key, "t": e.t, "identity_id": e.identity_id, "observations": e.observations}
                | ({"stream": e.stream} if e.stream else {})
                for e in self.same_frame_shared_examples
            ],
            "idf1": _none(self.idf1),
            "idp": _none(self.idp),
            "idr": _none(self.idr),
            "idtp": self.idtp,
            "id_num_gt": self.id_num_gt,
            "id_num_hyp": self.id_num_hyp,
            "tracking_idf1": _none(self.tracking_idf1),
            "tracking_idtp": self.tracking_idtp,
            "tracking_num_gt": self.tracking_num_gt,
            "tracking_num_hyp": self.tracking_num_hyp,
            "time_to_name": {
                "median": _none(self.time_to_name_median),
                "max": _none(self.time_to_name_max),
                "tracks": len(self.tracks_to_name),
                "never_named": self.tracks_never_named,
                "per_track": [
                    {
                        "track_id": t.track_id,
                        "person": t.person,
                        "first_t": t.first_t,
                        "named_t": t.named_t,
                        "seconds": t.seconds,
                    }
                    for t in self.tracks_to_name
                ],
            },
        }


def _frames(frames: Iterable[IdentityFrame]) -> list[IdentityFrame]:
    return _checked_frames(frames, IdentityFrame)


def _enrolled(enrolled: Collection[str]) -> frozenset[str]:
    if isinstance(enrolled, (str, bytes)) or not isinstance(enrolled, Collection):
        raise TypeError(f"enrolled: expected a collection of names, got {type(enrolled).__name__}")
    for name in enrolled:
        _label(name, "enrolled name")
    return frozenset(enrolled)


def _shared(frame: IdentityFrame) -> list[tuple[str, int]]:
    counts = Counter(h.identity_id for h in frame.hyps if h.identity_id is not None)
    return sorted((identity, n) for identity, n in counts.items() if n >= 2)


def identity_metrics(
    frames: Iterable[IdentityFrame],
    *,
    enrolled: Collection[str],
    min_face_px: float = DEFAULT_MIN_FACE_PX,
    iou_threshold: float = 0.5,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> IdentityMetrics:
    """The identity metrics of one stream's ``frames`` (see the module docstring).

    Raises:
        TypeError: an element of ``frames`` is not an :class:`IdentityFrame`; ``enrolled`` is not a
            collection of names.
        ValueError: a threshold out of range, an empty enrolled name, or a track id twice in a frame.
    """
    threshold = _check_threshold(iou_threshold)
    min_px = _finite(min_face_px, "min_face_px")
    names = _enrolled(enrolled)
    seq = _frames(frames)
    track_frames: list[EvalFrame] = []
    pair_tp: Counter[tuple[str, str]] = Counter()
    identities: defaultdict[str, set[str]] = defaultdict(set)  # person -> identity ids
    matched_persons: set[str] = set()
    persons: defaultdict[str, set[str]] = defaultdict(set)  # identity id -> persons
    person_names: dict[str, str] = {}
    track_persons: defaultdict[str, Counter[str]] = defaultdict(Counter)
    first_matched: dict[tuple[str, str], float] = {}  # (track, person) -> first media time
    first_named: dict[tuple[str, str], float] = {}  # (track, name) -> first media time
    examples: list[SharedIdentity] = []
    shared_frames = frames_scored = gt_faces = matched = recall_faces = named_correct = 0
    named_faces = false_names = strangers = unmatched_named = id_num_gt = id_num_hyp = 0
    for frame in seq:
        for h in frame.hyps:
            if h.name:
                key = (h.track_id, h.name)
                first_named[key] = min(first_named.get(key, math.inf), frame.t)
        shared = _shared(frame)
        if shared:
            shared_frames += 1
            examples.extend(
                SharedIdentity(key=frame.key, t=frame.t, identity_id=i, observations=n) for i, n in shared
            )
        if frame.truth is None:
            continue
        frames_scored += 1
        visible = [f for f in frame.truth if f.visible]
        ignore = [f.box for f in frame.truth if not f.visible]
        hyp_boxes = [(f"h{j}", h.box) for j, h in enumerate(frame.hyps)]
        eval_frame = EvalFrame(
            key=frame.key, gt=[(f.person, f.box) for f in visible], hyp=hyp_boxes, ignore=ignore
        )
        track_frames.append(
            EvalFrame(
                key=frame.key,
                gt=[(f.appearance, f.box) for f in visible],
                hyp=[(h.track_id, h.box) for h in frame.hyps],
                ignore=ignore,
            )
        )
        result = _match_frame(eval_frame, {}, threshold)
        by_hyp = {j: i for i, j, _ in result.matches}
        gt_faces += len(visible)
        for f in visible:
            person_names[f.person] = f.name
            if f.name in names and f.height >= min_px:
                recall_faces += 1
        for i, j, _ in result.matches:
            f, h = visible[i], frame.hyps[j]
            matched += 1
            matched_persons.add(f.person)
            if f.name in names and f.height >= min_px and h.name == f.name:
                named_correct += 1
            if h.name:
                named_faces += 1
                if h.name != f.name:
                    false_names += 1
                    strangers += f.name not in names
            if h.identity_id is not None:
                identities[f.person].add(h.identity_id)
                persons[h.identity_id].add(f.person)
            track_persons[h.track_id][f.person] += 1
            key = (h.track_id, f.person)
            first_matched[key] = min(first_matched.get(key, math.inf), frame.t)
        ignored = set(result.ignored)
        unmatched_named += sum(
            1 for j, h in enumerate(frame.hyps) if h.name and j not in by_hyp and j not in ignored
        )
        # identity IDF1: (person, identity) overlapping by the threshold, at most once per frame
        counted = [j for j in range(len(frame.hyps)) if j not in ignored]
        pairs = {
            (visible[i].person, frame.hyps[j].identity_id or "")
            for i in range(len(visible))
            for j in counted
            if result.valid[i, j] and frame.hyps[j].identity_id is not None
        }
        pair_tp.update(pairs)
        id_num_gt += len(visible)
        id_num_hyp += len(counted)
    tracking = evaluate(track_frames, iou_threshold=threshold)
    naming: list[TrackNaming] = []
    for track_id in sorted(track_persons):
        votes = track_persons[track_id]
        person = min(votes, key=lambda p: (-votes[p], p))
        name = person_names[person]
        if name not in names:
            continue
        first_t = first_matched[(track_id, person)]
        named_t = first_named.get((track_id, name))
        naming.append(
            TrackNaming(
                track_id=track_id,
                person=person,
                name=name,
                first_t=first_t,
                named_t=named_t,
                seconds=None if named_t is None else max(0.0, named_t - first_t),
            )
        )
    metrics = IdentityMetrics(
        enrolled=tuple(sorted(names)),
        min_face_px=min_px,
        iou_threshold=threshold,
        frames=len(seq),
        frames_scored=frames_scored,
        gt_faces=gt_faces,
        matched_faces=matched,
        recall_faces=recall_faces,
        named_correct=named_correct,
        named_faces=named_faces,
        false_names=false_names,
        stranger_faces_named=strangers,
        unmatched_named=unmatched_named,
        identities_by_person={p: len(identities[p]) for p in sorted(identities)},
        persons_without_identity=len(matched_persons - set(identities)),
        persons_by_identity={i: len(persons[i]) for i in sorted(persons)},
        same_frame_shared_identity=shared_frames,
        same_frame_shared_examples=tuple(examples[:max_examples]),
        idtp=_identity_tp(pair_tp),
        id_num_gt=id_num_gt,
        id_num_hyp=id_num_hyp,
        tracking_idtp=tracking.idtp,
        tracking_num_gt=tracking.num_gt,
        tracking_num_hyp=tracking.num_hyp,
        tracks_to_name=tuple(naming),
    )
    logger.debug(
        "identity metrics: %d frames: recall=%s false names=%d/%d shared=%d",
        len(seq),
        metrics.named_recall,
        false_names,
        matched,
        shared_frames,
    )
    return metrics


def _prefixed(sid: str, mapping: Mapping[str, int]) -> dict[str, int]:
    return {f"{sid}/{k}": v for k, v in mapping.items()}


def pool_identity_metrics(
    per_stream: Mapping[str, IdentityMetrics], *, max_examples: int = DEFAULT_MAX_EXAMPLES
) -> IdentityMetrics:
    """The metrics of several streams as one: counts summed, rates recomputed from the sums.

    Persons, identities and tracks are kept per stream (keys ``"<stream>/<id>"``): a mean over
    persons is the mean over (stream, person) pairs, IDF1 sums each stream's IDTP and detections.
    All streams must share ``enrolled``, ``min_face_px`` and ``iou_threshold``.

    Raises:
        ValueError: no stream, or streams scored with different settings.
    """
    if not per_stream:
        raise ValueError("per_stream: expected the metrics of at least one stream, got none")
    items = sorted(per_stream.items())
    first = items[0][1]
    for sid, m in items:
        if not isinstance(m, IdentityMetrics):
            raise TypeError(f"per_stream[{sid!r}]: expected IdentityMetrics, got {type(m).__name__}")
        settings = (m.enrolled, m.min_face_px, m.iou_threshold)
        if settings != (first.enrolled, first.min_face_px, first.iou_threshold):
            raise ValueError(
                f"per_stream[{sid!r}]: expected the settings of {items[0][0]!r} "
                f"{(first.enrolled, first.min_face_px, first.iou_threshold)}, got {settings}"
            )
    counts = {
        name: sum(getattr(m, name) for _, m in items)
        for name in (
            "frames",
            "frames_scored",
            "gt_faces",
            "matched_faces",
            "recall_faces",
            "named_correct",
            "named_faces",
            "false_names",
            "stranger_faces_named",
            "unmatched_named",
            "persons_without_identity",
            "same_frame_shared_identity",
            "idtp",
            "id_num_gt",
            "id_num_hyp",
            "tracking_idtp",
            "tracking_num_gt",
            "tracking_num_hyp",
        )
    }
    return IdentityMetrics(
        enrolled=first.enrolled,
        min_face_px=first.min_face_px,
        iou_threshold=first.iou_threshold,
        identities_by_person={
            k: v for sid, m in items for k, v in _prefixed(sid, m.identities_by_person).items()
        },
        persons_by_identity={
            k: v for sid, m in items for k, v in _prefixed(sid, m.persons_by_identity).items()
        },
        same_frame_shared_examples=tuple(
            replace(e, stream=sid) for sid, m in items for e in m.same_frame_shared_examples
        )[:max_examples],
        tracks_to_name=tuple(
            replace(t, track_id=f"{sid}/{t.track_id}") for sid, m in items for t in m.tracks_to_name
        ),
        **counts,
    )
