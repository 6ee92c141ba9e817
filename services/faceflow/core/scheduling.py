"""The analyzer's face-aware scheduling policy: detect every frame, analyze a face only when it pays.

DESIGN.md "Face-aware scheduling". The face transformer and the embedder cost far more than the
detector, and a face that stays in view is the same face frame after frame. The
:class:`Scheduler` keeps soft per-stream state, *remembered faces* (the box where the face is now,
and when / at which seq / at what quality it was last analyzed), and for each detection of a
frame answers :class:`FaceDecision`: analyze it now, or reuse the analysis of an earlier frame.

Per frame of a stream (mode ADAPTIVE):

0. A hard cut: when the frame's ``shot_start_seq`` (ingest's shot-cut detector,
   :mod:`faceflow.core.shots`) differs from the stream's previous frame's, every remembered face
   of the stream is forgotten, so every face of the first frame of a new shot is ``"new"`` and
   analyzed. After a cut the next person's face often lies where the last one's was; by position
   alone it would inherit the last person's results until ``max_age_s``. Any change counts
   (including to or from 0, unknown): a false cut only costs analyses. The cut frame itself may
   have been dropped upstream; the shot id still changes on the next frame that arrives.
1. Remembered faces not seen for more than ``forget_after_s`` (media time) are forgotten.
2. Detections are matched one-to-one to remembered faces by IoU, greedily by IoU descending
   (ties: lower detection index, then lower remembered index), a pair only at IoU >=
   ``match_iou``. A matched face's box moves to the detection; its last-analysis time, seq and
   best quality stay until it is analyzed again.
3. Each detection gets a reason, checked in this order:

   - ``"new"``: it matched no remembered face (a new or returning face), **or** the match is
     ambiguous: the detection overlaps a second remembered face (or the remembered face overlaps
     a second detection) at IoU >= ``match_iou`` and within ``ambiguity_margin`` of the chosen
     pair's IoU. Two faces crossing therefore get analyzed instead of one silently inheriting
     the other's results; the remembered face is reset to this analysis (best quality = this
     detection's quality).
   - ``"stale"``: the face's last analysis is older than ``max_age_s`` (strictly: at 5 fps and
     1 s, a steady face is analyzed every sixth frame, 0.83 times a second).
   - ``"better"``: the detection's quality is at least ``quality_margin`` above the best quality
     at which the face was analyzed so far.
   - ``"fresh"``: none of the above: not analyzed; ``results_seq`` is the seq of the face's last
     analysis.

   Analyzed faces get ``results_seq = seq``.
4. State is updated assuming every chosen analysis succeeds. If one fails, the analyzer calls
   :meth:`Scheduler.forget_stream`: losing state costs extra analyses, never a wrong result.

Media time must not go backwards within a stream: if ``t`` (or ``seq``) does, e.g. a replay after
a restart, the stream's state is forgotten and its faces are new (no exception). Bounds:
``max_streams`` streams (least recently used evicted), ``max_faces_per_stream`` remembered faces
per stream (this frame's detections first, in detection order, then the most recently seen); a
detection beyond the bound is simply analyzed again next frame.

Mode ALL analyzes every face (reason ``"all"``) and keeps no state: the reference policy.

Pure: numpy and ``faceflow.core.geometry``. Not thread-safe: one scheduler per consumer loop.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from faceflow.core.geometry import as_boxes, iou_matrix

logger = logging.getLogger(__name__)

__all__ = ["REASONS", "FaceDecision", "ScheduleMode", "SchedulePolicy", "Scheduler"]

FloatArray = npt.NDArray[np.float64]

#: Every :attr:`FaceDecision.reason`, in the order the adaptive policy checks them.
REASONS: Final[tuple[str, ...]] = ("all", "new", "stale", "better", "fresh")
#: Media times are float sums of frame intervals: 11/5 - 6/5 is 1.0000000000000002, not 1.0.
_TIME_EPSILON: Final[float] = 1e-6

_COUNTERS: Final[tuple[str, ...]] = (
    "frames",
    "faces",
    "analyzed",
    *REASONS,
    "resets",
    "cuts",
    "streams_evicted",
    "faces_dropped",
)


class ScheduleMode(enum.StrEnum):
    """ALL: analyze every face of every frame (the reference); ADAPTIVE: only when it pays."""

    ALL = "all"
    ADAPTIVE = "adaptive"


def _positive(value: object, name: str, *, allow_zero: bool = False, upper: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if not low_ok or (upper is not None and value > upper):
        bound = ">= 0" if allow_zero else "> 0"
        rng = f"{bound} and <= {upper}" if upper is not None else bound
        raise ValueError(f"{name}: expected a number {rng}, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class SchedulePolicy:
    """When the analyzer runs the face model and the embedder on a detected face.

    Every knob trades compute against freshness:

    Attributes:
        mode: ADAPTIVE (default) or ALL (analyze everything; the baseline to measure against).
        max_age_s: a face whose last analysis is older than this (media seconds) is analyzed
            again. Lower = fresher results (expressions, occlusion change) for more compute; 1 s
            re-analyzes a static face on the first frame more than a second after the last
            analysis (every sixth frame at 5 fps, every 31st at 30 fps).
        quality_margin: a detection whose quality (in [0, 1]) beats the face's best analyzed
            quality by this much is analyzed (a better shot). Lower = chases every small
            improvement; higher = keeps a mediocre first shot until ``max_age_s``. In (0, 1].
        match_iou: IoU at or above which a detection is the same face as a remembered one. Lower
            follows fast motion at low frame rates but risks confusing neighbours (then the
            ambiguity rule costs analyses); higher treats fast movers as new faces. In (0, 1].
        ambiguity_margin: a match whose IoU is within this of a competing overlap (>= match_iou)
            is ambiguous and analyzed. 0 disables the rule (cheapest, risks swapped results when
            faces cross). In [0, 1].
        forget_after_s: a remembered face unseen for longer than this (media seconds) is
            forgotten; a face returning later is new. Higher bridges short occlusions (and
            detector misses) without re-analysis but lets a different person entering the same
            spot inherit results until ``max_age_s``.
        max_faces_per_stream: remembered faces kept per stream (memory bound).
        max_streams: streams kept (least recently used evicted; memory bound). An evicted
            stream's faces are new again: more compute, never a wrong result.
    """

    mode: ScheduleMode = ScheduleMode.ADAPTIVE
    max_age_s: float = 1.0
    quality_margin: float = 0.15
    match_iou: float = 0.3
    ambiguity_margin: float = 0.1
    forget_after_s: float = 3.0
    max_faces_per_stream: int = 64
    max_streams: int = 1024

    def __post_init__(self) -> None:
        if not isinstance(self.mode, ScheduleMode):
            raise TypeError(f"mode: expected a ScheduleMode, got {type(self.mode).__name__} {self.mode!r}")
        _positive(self.max_age_s, "max_age_s")
        _positive(self.quality_margin, "quality_margin", upper=1.0)
        _positive(self.match_iou, "match_iou", upper=1.0)
        _positive(self.ambiguity_margin, "ambiguity_margin", allow_zero=True, upper=1.0)
        _positive(self.forget_after_s, "forget_after_s")
        for name in ("max_faces_per_stream", "max_streams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class FaceDecision:
    """What to do with one detected face of a frame.

    Attributes:
        analyze: run the face model and the embedder on this face now.
        results_seq: this frame's seq when analyzed; otherwise the seq of the earlier analysis
            whose results stand for this face.
        reason: one of :data:`REASONS`; ``"fresh"`` exactly when not analyzed.
    """

    analyze: bool
    results_seq: int
    reason: str

    def __post_init__(self) -> None:
        if not isinstance(self.analyze, bool):
            raise TypeError(f"analyze: expected a bool, got {type(self.analyze).__name__}")
        if (
            isinstance(self.results_seq, bool)
            or not isinstance(self.results_seq, int)
            or self.results_seq < 0
        ):
            raise ValueError(f"results_seq: expected an int >= 0, got {self.results_seq!r}")
        if self.reason not in REASONS:
            raise ValueError(f"reason: expected one of {REASONS}, got {self.reason!r}")
        if self.analyze == (self.reason == "fresh"):
            raise ValueError(f"reason: expected 'fresh' exactly when analyze is False, got {self.reason!r}")


@dataclass(slots=True)
class _Face:
    """A remembered face: where it is now, and its last analysis."""

    box: FloatArray
    seen_t: float
    analyzed_t: float
    analyzed_seq: int
    best_quality: float


@dataclass(slots=True)
class _Stream:
    last_t: float
    last_seq: int
    shot: int = 0
    faces: list[_Face] = field(default_factory=list)


def _greedy_pairs(iou: FloatArray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one (detection, remembered) pairs, greedily by IoU descending, IoU >= threshold."""
    rows, cols = np.nonzero(iou >= threshold)
    if rows.size == 0:
        return []
    order = np.lexsort((cols, rows, -iou[rows, cols]))
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append((r, c))
    return pairs


def _runner_up(values: FloatArray, skip: int) -> float:
    """The largest of ``values`` except index ``skip`` (0 when there is none)."""
    if values.shape[0] < 2:
        return 0.0
    return float(np.delete(values, skip).max())


class Scheduler:
    """Per-stream face-aware scheduling state and decisions (see the module docstring)."""

    def __init__(self, policy: SchedulePolicy | None = None) -> None:
        if policy is None:
            policy = SchedulePolicy()
        if not isinstance(policy, SchedulePolicy):
            raise TypeError(f"policy: expected a SchedulePolicy, got {type(policy).__name__}")
        self._policy = policy
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._counts: dict[str, int] = dict.fromkeys(_COUNTERS, 0)

    @property
    def policy(self) -> SchedulePolicy:
        """The policy this scheduler applies."""
        return self._policy

    def __len__(self) -> int:
        """Number of streams with state."""
        return len(self._streams)

    def remembered_faces(self, stream_id: str) -> int:
        """Number of faces remembered for ``stream_id`` (0 for an unknown stream)."""
        state = self._streams.get(stream_id)
        return 0 if state is None else len(state.faces)

    def forget_stream(self, stream_id: str) -> bool:
        """Drop a stream's state (an analysis failed, or a rebalance); False if it had none."""
        return self._streams.pop(stream_id, None) is not None

    def stats(self) -> dict[str, int]:
        """Counters since construction: ``frames``, ``faces``, ``analyzed``, one per reason,
        ``resets`` (time went backwards), ``cuts`` (a stream's shot changed and its faces were
        forgotten), ``streams_evicted``, ``faces_dropped`` (over the per-stream bound), and the
        gauge ``streams`` (streams with state now). A fixed key set.
        """
        return {**self._counts, "streams": len(self._streams)}

    def decide(
        self,
        stream_id: str,
        *,
        seq: int,
        t: float,
        boxes: npt.ArrayLike,
        qualities: npt.ArrayLike,
        shot_start_seq: int = 0,
    ) -> list[FaceDecision]:
        """Decide, for each detected face of one frame, whether to analyze it.

        Args:
            stream_id: the frame's stream.
            seq: the frame's per-stream sequence number (int >= 0).
            t: the frame's media time, seconds (finite).
            boxes: [F,4] detections, x1, y1, x2, y2 frame pixels (F may be 0).
            qualities: [F] detection qualities in [0, 1] (:func:`faceflow.core.quality.detection_qualities`).
            shot_start_seq: the frame's shot (``Frame.shot_start_seq``; 0 = unknown): a change from
                the stream's previous frame is a hard cut, after which every face is new.

        Returns:
            One :class:`FaceDecision` per detection, in detection order.
        """
        if not isinstance(stream_id, str):
            raise TypeError(f"stream_id: expected a str, got {type(stream_id).__name__}")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"seq: expected an int >= 0, got {seq!r}")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError(f"t: expected finite media seconds, got {t!r}")
        if isinstance(shot_start_seq, bool) or not isinstance(shot_start_seq, int) or shot_start_seq < 0:
            raise ValueError(f"shot_start_seq: expected an int >= 0, got {shot_start_seq!r}")
        b = as_boxes(boxes, "boxes")
        try:
            q = np.asarray(qualities, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"qualities: expected an array [F] of numbers, got {type(qualities).__name__}"
            ) from None
        if q.ndim == 1 and q.shape[0] == 0:
            q = q.reshape(0)
        if q.shape != (b.shape[0],):
            raise ValueError(f"qualities: expected shape [{b.shape[0]}] (one per box), got {list(q.shape)}")
        if q.size and (not np.isfinite(q).all() or q.min() < 0.0 or q.max() > 1.0):
            raise ValueError(f"qualities: expected finite values in [0, 1], got {q.tolist()}")
        t = float(t)
        self._counts["frames"] += 1
        self._counts["faces"] += b.shape[0]
        if self._policy.mode is ScheduleMode.ALL:
            decisions = [FaceDecision(analyze=True, results_seq=seq, reason="all") for _ in range(b.shape[0])]
        else:
            decisions = self._decide_adaptive(stream_id, seq, t, b, q, shot=shot_start_seq)
        for d in decisions:
            self._counts[d.reason] += 1
            self._counts["analyzed"] += int(d.analyze)
        return decisions

    def _stream(self, stream_id: str, seq: int, t: float, shot: int) -> _Stream:
        state = self._streams.get(stream_id)
        if state is not None and (t < state.last_t or seq < state.last_seq):
            logger.info(
                "scheduler: stream %s went back (seq %d t %.3f after seq %d t %.3f); forgetting its faces",
                stream_id,
                seq,
                t,
                state.last_seq,
                state.last_t,
            )
            self._counts["resets"] += 1
            del self._streams[stream_id]
            state = None
        if state is not None and shot != state.shot:
            logger.debug(
                "scheduler: stream %s seq %d: a new shot (from seq %d, was %d); forgetting its faces",
                stream_id,
                seq,
                shot,
                state.shot,
            )
            self._counts["cuts"] += 1
            state.faces = []
            state.shot = shot
        if state is None:
            state = _Stream(last_t=t, last_seq=seq, shot=shot)
            self._streams[stream_id] = state
            while len(self._streams) > self._policy.max_streams:
                evicted, _ = self._streams.popitem(last=False)
                self._counts["streams_evicted"] += 1
                logger.debug("scheduler: evicted least recently used stream %s", evicted)
        else:
            self._streams.move_to_end(stream_id)
        return state

    def _decide_adaptive(
        self, stream_id: str, seq: int, t: float, boxes: FloatArray, qualities: FloatArray, *, shot: int
    ) -> list[FaceDecision]:
        policy = self._policy
        state = self._stream(stream_id, seq, t, shot)
        faces = [f for f in state.faces if t - f.seen_t <= policy.forget_after_s]
        remembered = np.array([f.box for f in faces]).reshape(len(faces), 4)
        iou = iou_matrix(boxes, remembered)
        match_of: dict[int, int] = dict(_greedy_pairs(iou, policy.match_iou))
        matched_faces = set(match_of.values())

        decisions: list[FaceDecision] = []
        current: list[_Face] = []
        for i in range(boxes.shape[0]):
            box, quality = boxes[i].copy(), float(qualities[i])
            j = match_of.get(i)
            if j is None:
                current.append(_Face(box=box, seen_t=t, analyzed_t=t, analyzed_seq=seq, best_quality=quality))
                decisions.append(FaceDecision(analyze=True, results_seq=seq, reason="new"))
                continue
            face = faces[j]
            face.box, face.seen_t = box, t
            current.append(face)
            chosen = float(iou[i, j])
            competing = max(_runner_up(iou[i, :], j), _runner_up(iou[:, j], i))
            ambiguous = competing >= policy.match_iou and chosen - competing < policy.ambiguity_margin
            if ambiguous:
                face.analyzed_t, face.analyzed_seq, face.best_quality = t, seq, quality
                decisions.append(FaceDecision(analyze=True, results_seq=seq, reason="new"))
            elif t - face.analyzed_t > policy.max_age_s + _TIME_EPSILON:
                face.analyzed_t, face.analyzed_seq = t, seq
                face.best_quality = max(face.best_quality, quality)
                decisions.append(FaceDecision(analyze=True, results_seq=seq, reason="stale"))
            elif quality >= face.best_quality + policy.quality_margin:
                face.analyzed_t, face.analyzed_seq, face.best_quality = t, seq, quality
                decisions.append(FaceDecision(analyze=True, results_seq=seq, reason="better"))
            else:
                decisions.append(FaceDecision(analyze=False, results_seq=face.analyzed_seq, reason="fresh"))

        older = sorted((f for j, f in enumerate(faces) if j not in matched_faces), key=lambda f: -f.seen_t)
        kept = current + older
        if len(kept) > policy.max_faces_per_stream:
            self._counts["faces_dropped"] += len(kept) - policy.max_faces_per_stream
            kept = kept[: policy.max_faces_per_stream]
        state.faces = kept
        state.last_t, state.last_seq = t, seq
        return decisions
