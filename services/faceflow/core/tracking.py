"""Per-stream multi-face tracking in the spirit of ByteTrack / BoT-SORT.

A :class:`StreamTracker` turns the faces detected in each frame of one stream
(:class:`Observation`) into tracks with stable ids (``"t1"``, ``"t2"``, ... per stream, never
reused). Each :meth:`StreamTracker.update` is one frame and returns a :class:`TrackUpdate`: the
track id of every observation and the frame's lifecycle events (started, lost, recovered, ended).

1. **Motion**: a constant-velocity Kalman filter per track on ``(cx, cy, w, h)`` (pixels, pixels
   per second), time-aware: it predicts from the track's last match to the frame's media time
   ``t``, so 5-10 fps, gaps and jitter all work. The coordinates are independent, so it is a 2x2
   filter per coordinate, vectorised over the tracks.
2. **Cost**: ``1 - IoU`` with the predicted box; when both the track and the observation have an
   embedding, ``(1 - w) * (1 - IoU) + w * min(distance, 1)`` (``w = embedding_weight``, dlib
   Euclidean distance). A pair is allowed only if ``IoU >= iou_gate`` or ``distance <=
   reid_distance`` (re-acquisition by appearance alone), and never when that distance exceeds
   ``appearance_veto`` (another person at the same place). Allowed pairs cost less than 1.
3. **Assignment** (:func:`faceflow.core.association.match`): Hungarian minimising the summed
   ``cost - 1`` over matched allowed pairs. Stages: (a) ``score >= high_score`` observations vs
   active (tentative, confirmed) tracks; (b) the other observations vs the active tracks left;
   then recovery: (c) the high-score observations left vs LOST tracks, (d) the others left vs
   the LOST tracks left (a face that comes back blurred keeps its id).
4. **Births**: each observation left starts a track, so every observation gets an id. A track is
   CONFIRMED after ``min_hits`` matches (at birth when 1) by an observation with ``score >=
   low_score``; a TENTATIVE track that misses a frame ends (reason ``"unconfirmed"``).
5. **Loss**: a CONFIRMED track unmatched for ``lost_after_s`` becomes LOST (reported once); one
   unmatched for more than ``max_lost_s`` ends (``"lost"``) before the frame is associated, so a
   face back after that gets a new id. Beyond ``max_tracks`` (active + lost) the longest-lost end
   (``"evicted"``).

Deterministic (ties go to input order and track age). :meth:`StreamTracker.snapshot` is JSON
data; :meth:`StreamTracker.restore` continues exactly as the original would.

Pure: the standard library, numpy, scipy and our own types only.
"""

from __future__ import annotations

import enum
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from faceflow.core import motion
from faceflow.core.association import embedding_distances, match
from faceflow.core.geometry import _iou_matrix, from_cxcywh
from faceflow.models.contract import IDENTITY_DIM

logger = logging.getLogger(__name__)

__all__ = [
    "SNAPSHOT_VERSION",
    "Observation",
    "StreamTracker",
    "TrackState",
    "TrackUpdate",
    "TrackView",
    "TrackerConfig",
]

#: Version of the :meth:`StreamTracker.snapshot` format.
SNAPSHOT_VERSION: Final[int] = 1

Float32Array = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Box = tuple[float, float, float, float]

_TENTATIVE: Final = 0
_CONFIRMED: Final = 1
_LOST: Final = 2


class TrackState(enum.Enum):
    """Lifecycle of a track: TENTATIVE -> CONFIRMED <-> LOST -> ENDED (or TENTATIVE -> ENDED)."""

    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    LOST = "lost"
    ENDED = "ended"


_STATE_BY_CODE: Final = (TrackState.TENTATIVE, TrackState.CONFIRMED, TrackState.LOST)
_CODE_BY_NAME: Final = {state.value: code for code, state in enumerate(_STATE_BY_CODE)}


def _finite(value: object) -> float | None:
    """``value`` as a float if it is a finite real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _check_unit(value: object, what: str) -> float:
    v = _finite(value)
    if v is None or not 0.0 <= v <= 1.0:
        raise ValueError(f"{what}: expected a float in [0, 1], got {value!r}")
    return v


@dataclass(frozen=True, kw_only=True, eq=False)
class Observation:
    """One detected face in one frame, the tracker's input.

    Attributes:
        face_index: index of the face in its frame's analysis (>= 0).
        box: float32 ``[4]``, ``(x1, y1, x2, y2)`` in pixels, finite, ``x2 > x1`` and ``y2 > y1``.
        score: detector confidence in ``[0, 1]``; decides the association stage.
        quality: in ``[0, 1]``; weighs this observation's embedding in the track's appearance.
        embedding: float32 ``[IDENTITY_DIM]`` identity descriptor (dlib), or None for a face the
            analyzer did not analyze in this frame (the usual case).

    Arrays are not copied: treat them as read-only. Equality is identity (``eq=False``).
    :meth:`create` converts array-likes.
    """

    face_index: int
    box: Float32Array
    score: float
    quality: float = 1.0
    embedding: Float32Array | None = None

    def __post_init__(self) -> None:
        if isinstance(self.face_index, bool) or not isinstance(self.face_index, int):
            raise TypeError(f"face_index: expected an int >= 0, got {type(self.face_index).__name__}")
        if self.face_index < 0:
            raise ValueError(f"face_index: expected an int >= 0, got {self.face_index}")
        box = self.box
        if not isinstance(box, np.ndarray):
            raise TypeError(f"box: expected a float32 numpy array [4], got {type(box).__name__}")
        if box.shape != (4,) or box.dtype != np.float32:
            raise ValueError(f"box: expected a float32 array of shape (4,), got {box.dtype} {box.shape}")
        if not np.isfinite(box).all() or not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(f"box: expected finite (x1, y1, x2, y2), x2 > x1, y2 > y1, got {box.tolist()}")
        _check_unit(self.score, "score")
        _check_unit(self.quality, "quality")
        emb = self.embedding
        if emb is not None:
            if not isinstance(emb, np.ndarray):
                raise TypeError(f"embedding: expected a float32 numpy array, got {type(emb).__name__}")
            if emb.shape != (IDENTITY_DIM,) or emb.dtype != np.float32:
                want = f"a float32 array of shape ({IDENTITY_DIM},)"
                raise ValueError(f"embedding: expected {want}, got {emb.dtype} {emb.shape}")
            if not np.isfinite(emb).all():
                raise ValueError("embedding: expected finite values, got NaN or infinity")

    @classmethod
    def create(
        cls,
        face_index: int,
        box: npt.ArrayLike,
        score: float,
        quality: float = 1.0,
        embedding: npt.ArrayLike | None = None,
    ) -> Observation:
        """An observation from array-likes (lists, float64 arrays), converted to float32."""
        return cls(
            face_index=face_index,
            box=np.asarray(box, dtype=np.float32),
            score=score,
            quality=quality,
            embedding=None if embedding is None else np.asarray(embedding, dtype=np.float32),
        )


@dataclass(frozen=True, kw_only=True)
class TrackerConfig:
    """Tuning of :class:`StreamTracker`; validated on construction.

    Attributes:
        high_score: observations at or above it are associated first (with active, then LOST tracks).
        low_score: observations below it never confirm a track (they may continue one).
        iou_gate: a pair with IoU (observation vs predicted box) at least this may be matched.
        embedding_weight: share of the embedding distance in the cost when both sides have one.
        reid_distance: a pair whose embedding distance (dlib Euclidean: same person typically
            < 0.4, different > 0.6) is at most this may be matched even with no overlap.
        appearance_veto: a pair whose embedding distance exceeds this is never matched, however
            much the boxes overlap (another person at the same place: a cut the shot detector
            missed, two people crossing); 2 disables it.
        min_hits: matched frames (birth included) before a track is CONFIRMED; 1 = at birth.
        lost_after_s: media time a CONFIRMED track may go unmatched before it is LOST (0: the
            first frame it misses).
        max_lost_s: a track unmatched for more than this much media time ends (reason "lost").
        max_tracks: most tracks (active + lost) kept; beyond, the longest-lost end ("evicted").
        track_embedding_momentum: EMA momentum of a track's appearance; a new embedding enters
            with weight ``(1 - momentum) * quality`` (the first one is taken as it is).
        measurement_noise: std of a measured coordinate, as a fraction of the face height.
        acceleration_noise: std of the white-noise acceleration, face heights per second squared.
        initial_velocity_std: std of a new track's velocity, face heights per second.
        max_extrapolation_s: the predicted position moves with the velocity for at most this long
            after the last match (then it stays; its uncertainty still grows).
    """

    high_score: float = 0.6
    low_score: float = 0.3
    iou_gate: float = 0.2
    embedding_weight: float = 0.5
    reid_distance: float = 0.45
    appearance_veto: float = 0.9
    min_hits: int = 1
    lost_after_s: float = 0.0
    max_lost_s: float = 2.0
    max_tracks: int = 256
    track_embedding_momentum: float = 0.9
    measurement_noise: float = 0.05
    acceleration_noise: float = 1.0
    initial_velocity_std: float = 2.0
    max_extrapolation_s: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _INT_FIELDS:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"{f.name}: expected an int >= 1, got {type(value).__name__}")
                if value < 1:
                    raise ValueError(f"{f.name}: expected an int >= 1, got {value}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{f.name}: expected a float, got {type(value).__name__}")
            lo, hi, lo_in, hi_in = _BOUNDS[f.name]
            if not (lo <= value if lo_in else lo < value) or not (value <= hi if hi_in else value < hi):
                interval = f"{'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}"
                raise ValueError(f"{f.name}: expected a float in {interval}, got {value!r}")
        if self.low_score > self.high_score:
            raise ValueError(f"low_score: expected <= high_score ({self.high_score}), got {self.low_score}")
        if self.lost_after_s > self.max_lost_s:
            limit = f"max_lost_s ({self.max_lost_s})"
            raise ValueError(f"lost_after_s: expected <= {limit}, got {self.lost_after_s}")


_INT_FIELDS: Final = frozenset(("min_hits", "max_tracks"))
#: TrackerConfig float field -> (low, high, low included, high included).
_BOUNDS: Final[dict[str, tuple[float, float, bool, bool]]] = {
    "high_score": (0.0, 1.0, True, True),
    "low_score": (0.0, 1.0, True, True),
    "iou_gate": (0.0, 1.0, False, True),
    "embedding_weight": (0.0, 1.0, True, True),
    "reid_distance": (0.0, 1.0, False, False),
    "appearance_veto": (0.0, 2.0, False, True),
    "lost_after_s": (0.0, math.inf, True, False),
    "max_lost_s": (0.0, math.inf, True, False),
    "track_embedding_momentum": (0.0, 1.0, True, False),
    "measurement_noise": (0.0, math.inf, False, False),
    "acceleration_noise": (0.0, math.inf, False, False),
    "initial_velocity_std": (0.0, math.inf, False, False),
    "max_extrapolation_s": (0.0, math.inf, True, False),
}


@dataclass(frozen=True)
class TrackUpdate:
    """What one :meth:`StreamTracker.update` did.

    Attributes:
        assignments: the track id of each observation, in input order.
        started: tracks CONFIRMED in this update (born confirmed or reaching ``min_hits``).
        lost: tracks that became LOST in this update.
        recovered: LOST tracks matched again in this update.
        ended: ``(track_id, reason)`` of tracks that ended in this update: ``"lost"`` (unmatched
            beyond ``max_lost_s``), ``"unconfirmed"`` (a tentative track missed a frame),
            ``"evicted"`` (beyond ``max_tracks``).

    Each event tuple is in track-id order.
    """

    assignments: tuple[str, ...]
    started: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    recovered: tuple[str, ...] = ()
    ended: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class TrackView:
    """A read-only view of one track.

    Attributes:
        track_id: ``"t<n>"``, unique within the stream.
        state: TENTATIVE, CONFIRMED or LOST (ended tracks are not kept).
        first_seq, last_seq: ``seq`` of the first and of the last matched frame.
        first_t, last_t: media time of the first and of the last matched frame.
        hits: matched frames, birth included.
        box: the last matched observation's box ``(x1, y1, x2, y2)``.
        predicted: the filter's box at the tracker's current time (the ``t`` of the last update):
            the smoothed box for a track matched then, the extrapolation for one that was not.
    """

    track_id: str
    state: TrackState
    first_seq: int
    last_seq: int
    first_t: float
    last_t: float
    hits: int
    box: Box
    predicted: Box


class _Tracks:
    """Struct of arrays, one row per live track, in creation (id) order."""

    def __init__(self, n: int = 0) -> None:
        self.num: IntArray = np.zeros(n, np.int64)
        self.state: npt.NDArray[np.int8] = np.zeros(n, np.int8)
        self.mean: FloatArray = np.zeros((n, 8))  # cx, cy, w, h, then their velocities (px/s)
        self.cov: FloatArray = np.zeros((n, 3, 4))  # [var(pos), cov(pos, vel), var(vel)] per coordinate
        self.t: FloatArray = np.zeros(n)  # media time of the last match (the filter's time)
        self.first_t: FloatArray = np.zeros(n)
        self.first_seq: IntArray = np.zeros(n, np.int64)
        self.last_seq: IntArray = np.zeros(n, np.int64)
        self.hits: IntArray = np.zeros(n, np.int64)
        self.box: FloatArray = np.zeros((n, 4))
        self.emb: FloatArray = np.zeros((n, IDENTITY_DIM))
        self.has_emb: BoolArray = np.zeros(n, np.bool_)

    def __len__(self) -> int:
        return int(self.num.shape[0])

    def take(self, index: IntArray | BoolArray) -> _Tracks:
        out = _Tracks()
        for name, column in vars(self).items():
            setattr(out, name, column[index])
        return out

    def extend(self, other: _Tracks) -> None:
        for name, column in vars(self).items():
            setattr(self, name, np.concatenate([column, getattr(other, name)]))


def _predict(tracks: _Tracks, t: float, config: TrackerConfig) -> tuple[FloatArray, FloatArray]:
    """Position ``[T, 4]`` (cx, cy, w, h) and covariance ``[T, 3, 4]`` of every track at time ``t``."""
    return motion.predict(
        tracks.mean,
        tracks.cov,
        t - tracks.t,
        acceleration_noise=config.acceleration_noise,
        max_extrapolation_s=config.max_extrapolation_s,
    )


def _check_time(t: object, seq: object, last_t: float | None, last_seq: int | None) -> tuple[float, int]:
    now = _finite(t)
    if now is None:
        raise ValueError(f"t: expected a finite media time in seconds, got {t!r}")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError(f"seq: expected an int >= 0, got {seq!r}")
    if last_t is not None and now < last_t:
        raise ValueError(
            f"t: expected media time >= {last_t} (seq {last_seq}), got {t} (seq {seq}); "
            "a stream whose clock goes back needs end_all() or a new tracker"
        )
    if last_seq is not None and seq <= last_seq:
        raise ValueError(f"seq: expected > the previous frame's seq {last_seq}, got {seq} (replayed?)")
    return now, seq


class StreamTracker:
    """The multi-face tracker of one stream (see the module docstring for the algorithm).

    Not thread-safe: one owner per stream. ``stream_id`` only labels log messages.
    """

    def __init__(self, config: TrackerConfig | None = None, *, stream_id: str = "") -> None:
        if config is None:
            config = TrackerConfig()
        if not isinstance(config, TrackerConfig):
            raise TypeError(f"config: expected a TrackerConfig, got {type(config).__name__}")
        self._config = config
        self._stream_id = stream_id
        self._tracks = _Tracks()
        self._next_id = 1
        self._last_t: float | None = None
        self._last_seq: int | None = None

    @property
    def config(self) -> TrackerConfig:
        """The configuration this tracker runs with."""
        return self._config

    @property
    def last_t(self) -> float | None:
        """Media time of the last update (None before the first)."""
        return self._last_t

    @property
    def last_seq(self) -> int | None:
        """``seq`` of the last update (None before the first)."""
        return self._last_seq

    def __len__(self) -> int:
        return len(self._tracks)

    def update(self, observations: Sequence[Observation], *, t: float, seq: int) -> TrackUpdate:
        """Associate one frame's observations with the tracks; see :class:`TrackUpdate`.

        Raises:
            ValueError: ``t`` is lower than the previous frame's, or ``seq`` not greater than the
                previous one (a replayed frame), or either is not a finite number / int >= 0.
            TypeError: an element of ``observations`` is not an :class:`Observation`.
        """
        t, seq = _check_time(t, seq, self._last_t, self._last_seq)
        obs = tuple(observations)
        for i, o in enumerate(obs):
            if not isinstance(o, Observation):
                raise TypeError(f"observations[{i}]: expected an Observation, got {type(o).__name__}")
        cfg = self._config
        tr = self._tracks
        ended: list[tuple[str, str]] = []

        # 1. Tracks unmatched for longer than max_lost_s end before this frame is associated.
        expired = (t - tr.t) > cfg.max_lost_s
        if expired.any():
            ended.extend((f"t{n}", "lost") for n in tr.num[expired].tolist())
            tr = tr.take(~expired)

        n_obs, n_tr = len(obs), len(tr)
        boxes = np.array([o.box for o in obs], dtype=np.float64).reshape(n_obs, 4)
        scores = np.fromiter((o.score for o in obs), np.float64, n_obs)
        emb_rows = [i for i, o in enumerate(obs) if o.embedding is not None]

        # 2. Cost of every (observation, track) pair against the prediction at t.
        pred_pos, pred_cov = _predict(tr, t, cfg)
        iou = _iou_matrix(boxes, from_cxcywh(pred_pos, 1.0))
        cost = 1.0 - iou
        allowed = iou >= cfg.iou_gate
        obs_emb = np.zeros((0, IDENTITY_DIM))
        if emb_rows:
            obs_emb = np.array([obs[i].embedding for i in emb_rows], dtype=np.float64)
            emb_cols = np.flatnonzero(tr.has_emb)
            if emb_cols.size:
                dist = embedding_distances(obs_emb, tr.emb[emb_cols])
                block = np.ix_(np.asarray(emb_rows), emb_cols)
                w = cfg.embedding_weight
                cost[block] = (1.0 - w) * cost[block] + w * np.minimum(dist, 1.0)
                allowed[block] |= dist <= cfg.reid_distance
                allowed[block] &= dist <= cfg.appearance_veto

        # 3. Four association stages: by score, active tracks before lost ones.
        match_track = np.full(n_obs, -1, np.int64)
        track_matched = np.zeros(n_tr, np.bool_)
        high = scores >= cfg.high_score
        active = tr.state != _LOST
        for row_mask, col_mask in (
            (high, active),
            (~high, active),
            (high, ~active),
            (~high, ~active),
        ):
            rows = np.flatnonzero(row_mask & (match_track < 0))
            cols = np.flatnonzero(col_mask & ~track_matched)
            if rows.size == 0 or cols.size == 0:
                continue
            r, c = match(cost[np.ix_(rows, cols)], allowed[np.ix_(rows, cols)])
            match_track[rows[r]] = cols[c]
            track_matched[cols[c]] = True

        # 4. Matched tracks: filter update, appearance, state.
        started: list[int] = []
        recovered: list[int] = []
        mo = np.flatnonzero(match_track >= 0)
        if mo.size:
            mt = match_track[mo]
            tr.mean[mt], tr.cov[mt] = motion.correct(
                tr.mean[mt], pred_pos[mt], pred_cov[mt], boxes[mo], measurement_noise=cfg.measurement_noise
            )
            tr.t[mt] = t
            tr.last_seq[mt] = seq
            tr.hits[mt] += 1
            tr.box[mt] = boxes[mo]
            emb_index = {row: k for k, row in enumerate(emb_rows)}
            for o_i, t_i in zip(mo.tolist(), mt.tolist(), strict=True):
                k = emb_index.get(o_i)
                if k is not None:
                    self._blend(tr, t_i, obs_emb[k], obs[o_i].quality)
            state = tr.state[mt]
            was_lost = state == _LOST
            recovered.extend(tr.num[mt[was_lost]].tolist())
            confirm = (state == _TENTATIVE) & (tr.hits[mt] >= cfg.min_hits) & (scores[mo] >= cfg.low_score)
            started.extend(tr.num[mt[confirm]].tolist())
            tr.state[mt[was_lost | confirm]] = _CONFIRMED

        nums = tr.num.tolist()
        assignments = [f"t{nums[j]}" if j >= 0 else "" for j in match_track.tolist()]

        # 5. Unmatched tracks: tentative ones end, confirmed ones may become lost.
        unmatched = ~track_matched
        gone = unmatched & (tr.state == _TENTATIVE)
        ended.extend((f"t{n}", "unconfirmed") for n in tr.num[gone].tolist())
        newly_lost = unmatched & (tr.state == _CONFIRMED) & ((t - tr.t) >= cfg.lost_after_s)
        lost = tr.num[newly_lost].tolist()
        tr.state[newly_lost] = _LOST
        if gone.any():
            tr = tr.take(~gone)

        # 6. Births: every unmatched observation starts a track.
        born = np.flatnonzero(match_track < 0)
        if born.size:
            new = self._birth(obs, born, boxes[born], t, seq)
            started.extend(new.num[new.state == _CONFIRMED].tolist())
            for k, i in enumerate(born.tolist()):
                assignments[i] = f"t{new.num[k]}"
            tr.extend(new)

        # 7. Bounded state.
        if len(tr) > cfg.max_tracks:
            tr, evicted = self._evict(tr, len(tr) - cfg.max_tracks, seq)
            ended.extend((f"t{n}", "evicted") for n in evicted)

        self._tracks = tr
        self._last_t, self._last_seq = t, seq
        result = TrackUpdate(
            assignments=tuple(assignments),
            started=tuple(f"t{n}" for n in sorted(started)),
            lost=tuple(f"t{n}" for n in lost),
            recovered=tuple(f"t{n}" for n in sorted(recovered)),
            ended=tuple(ended),
        )
        if result.started or result.lost or result.recovered or result.ended:
            events = (result.started, result.lost, result.recovered, result.ended)
            logger.debug("stream %s seq %s: started/lost/recovered/ended %s", self._stream_id, seq, events)
        return result

    def _blend(self, tr: _Tracks, row: int, embedding: FloatArray, quality: float) -> None:
        if tr.has_emb[row]:
            weight = (1.0 - self._config.track_embedding_momentum) * quality
            tr.emb[row] = (1.0 - weight) * tr.emb[row] + weight * embedding
        else:
            tr.emb[row] = embedding
            tr.has_emb[row] = True

    def _birth(
        self, obs: tuple[Observation, ...], born: IntArray, boxes: FloatArray, t: float, seq: int
    ) -> _Tracks:
        cfg = self._config
        n = born.shape[0]
        new = _Tracks(n)
        new.num[:] = np.arange(self._next_id, self._next_id + n)
        self._next_id += n
        new.mean, new.cov = motion.initiate(
            boxes, measurement_noise=cfg.measurement_noise, initial_velocity_std=cfg.initial_velocity_std
        )
        new.t[:] = t
        new.first_t[:] = t
        new.first_seq[:] = seq
        new.last_seq[:] = seq
        new.hits[:] = 1
        new.box[:] = boxes
        for k, i in enumerate(born.tolist()):
            o = obs[i]
            confirmed = cfg.min_hits <= 1 and o.score >= cfg.low_score
            new.state[k] = _CONFIRMED if confirmed else _TENTATIVE
            if o.embedding is not None:
                new.emb[k] = o.embedding
                new.has_emb[k] = True
        return new

    def _evict(self, tr: _Tracks, excess: int, seq: int) -> tuple[_Tracks, list[int]]:
        """End ``excess`` tracks: LOST ones longest lost first, then others least recently matched."""
        lost = tr.state == _LOST
        # lexsort: the last key is the primary one. By last match time; ties: oldest lost, newest other.
        order = np.lexsort((np.where(lost, tr.num, -tr.num), tr.t, ~lost))
        victims = np.sort(order[:excess])
        if not lost[victims].all():
            active = int((~lost[victims]).sum())
            logger.warning(
                "stream %s seq %s: over max_tracks, evicting %s active", self._stream_id, seq, active
            )
        keep = np.ones(len(tr), np.bool_)
        keep[victims] = False
        return tr.take(keep), tr.num[victims].tolist()

    def end_all(self, reason: str) -> tuple[tuple[str, str], ...]:
        """End every track (the stream ended); ``(track_id, reason)`` in id order. Ids stay unused."""
        if not isinstance(reason, str) or not reason:
            raise ValueError(f"reason: expected a non-empty str, got {reason!r}")
        ended = tuple((f"t{n}", reason) for n in self._tracks.num.tolist())
        self._tracks = _Tracks()
        if ended:
            logger.debug("stream %s: ended %s tracks (%s)", self._stream_id, len(ended), reason)
        return ended

    def _view(self, row: int, pred: FloatArray) -> TrackView:
        tr = self._tracks
        return TrackView(
            track_id=f"t{tr.num[row]}",
            state=_STATE_BY_CODE[int(tr.state[row])],
            first_seq=int(tr.first_seq[row]),
            last_seq=int(tr.last_seq[row]),
            first_t=float(tr.first_t[row]),
            last_t=float(tr.t[row]),
            hits=int(tr.hits[row]),
            box=_box_tuple(tr.box[row]),
            predicted=_box_tuple(pred[row]),
        )

    def _predicted_boxes(self) -> FloatArray:
        tr = self._tracks
        now = self._last_t if self._last_t is not None else 0.0
        return from_cxcywh(_predict(tr, now, self._config)[0], 1.0)

    def tracks(self) -> list[TrackView]:
        """Every live (not ended) track, in id order."""
        pred = self._predicted_boxes()
        return [self._view(row, pred) for row in range(len(self._tracks))]

    def _row(self, track_id: str) -> int | None:
        if not isinstance(track_id, str) or not _TRACK_ID.fullmatch(track_id):
            return None
        rows = np.flatnonzero(self._tracks.num == int(track_id[1:]))
        return int(rows[0]) if rows.size else None

    def track(self, track_id: str) -> TrackView | None:
        """The live track ``track_id``, or None if unknown or ended."""
        row = self._row(track_id)
        return None if row is None else self._view(row, self._predicted_boxes())

    def forget_appearance(self, track_id: str) -> bool:
        """Drop the live track's appearance (its embedding EMA), as erasure requires; it is
        rebuilt from the next analyzed faces. False if the track is unknown, ended or had none."""
        row = self._row(track_id)
        if row is None or not self._tracks.has_emb[row]:
            return False
        self._tracks.has_emb[row] = False
        self._tracks.emb[row] = 0.0
        return True

    def track_embedding(self, track_id: str) -> Float32Array | None:
        """A copy of the track's appearance (EMA of its embeddings), or None if it has none."""
        row = self._row(track_id)
        if row is None or not self._tracks.has_emb[row]:
            return None
        emb: Float32Array = self._tracks.emb[row].astype(np.float32)
        return emb

    # --- state ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-serialisable data (str, int, float, bool, list, dict, None)."""
        tr = self._tracks
        return {
            "version": SNAPSHOT_VERSION,
            "next_id": self._next_id,
            "last_t": self._last_t,
            "last_seq": self._last_seq,
            "config": asdict(self._config),
            "tracks": {
                "id": [f"t{n}" for n in tr.num.tolist()],
                "state": [_STATE_BY_CODE[code].value for code in tr.state.tolist()],
                "first_seq": tr.first_seq.tolist(),
                "last_seq": tr.last_seq.tolist(),
                "first_t": tr.first_t.tolist(),
                "last_t": tr.t.tolist(),
                "hits": tr.hits.tolist(),
                "box": tr.box.tolist(),
                "mean": tr.mean.tolist(),
                "cov": tr.cov.tolist(),
                "embedding": [e.tolist() if has else None for e, has in zip(tr.emb, tr.has_emb, strict=True)],
            },
        }

    @classmethod
    def restore(
        cls, config: TrackerConfig, snapshot: Mapping[str, Any], *, stream_id: str = ""
    ) -> StreamTracker:
        """A tracker that continues exactly where the one that took ``snapshot`` stood.

        Raises:
            ValueError: the snapshot is malformed; the message names the offending field.
        """
        tracker = cls(config, stream_id=stream_id)
        _restore_into(tracker, snapshot)
        if snapshot.get("config") != asdict(config):
            logger.info("stream %s: restoring a tracker snapshot taken with another config", stream_id)
        return tracker


def _box_tuple(row: FloatArray) -> Box:
    return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))


def _snap_int(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"snapshot: {what}: expected an int >= {minimum}, got {value!r:.60}")
    return value


def _snap_column(
    cols: Mapping[str, Any], name: str, shape: tuple[int, ...], integer: bool = False
) -> FloatArray:
    value = cols[name]
    try:
        arr = np.array(value, dtype=np.float64) if isinstance(value, list) else np.zeros(0)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if value == [] and 0 in shape:
        arr = arr.reshape(shape)
    if (
        arr.shape != shape
        or not np.isfinite(arr).all()
        or (integer and any(type(v) is not int for v in value))
    ):
        kind = "ints" if integer else "finite numbers"
        raise ValueError(
            f"snapshot: tracks.{name}: expected a list of {kind} of shape {shape}, got {value!r:.60}"
        )
    return arr


def _snap_check(ok: BoolArray, name: str, expected: str, values: Any) -> None:
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise ValueError(f"snapshot: tracks.{name}[{i}]: expected {expected}, got {values[i]!r:.60}")


_TRACK_ID: Final = re.compile(r"t[1-9][0-9]*")
_SNAP_KEYS: Final = frozenset(("version", "next_id", "last_t", "last_seq", "config", "tracks"))
_SNAP_COLUMNS: Final = frozenset(
    ("id", "state", "first_seq", "last_seq", "first_t", "last_t", "hits", "box", "mean", "cov", "embedding")
)


def _restore_into(tracker: StreamTracker, snap: Mapping[str, Any]) -> None:
    if not isinstance(snap, Mapping) or set(snap) != _SNAP_KEYS:
        got = str(sorted(snap)) if isinstance(snap, Mapping) else type(snap).__name__
        raise ValueError(f"snapshot: expected a mapping with keys {sorted(_SNAP_KEYS)}, got {got}")
    if snap["version"] != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot: version: expected {SNAPSHOT_VERSION}, got {snap['version']!r:.60}")
    next_id = _snap_int(snap["next_id"], "next_id", 1)
    last_t = snap["last_t"]
    if last_t is not None and _finite(last_t) is None:
        raise ValueError(f"snapshot: last_t: expected a finite number or None, got {last_t!r:.60}")
    last_seq = None if snap["last_seq"] is None else _snap_int(snap["last_seq"], "last_seq", 0)
    cols = snap["tracks"]
    if not isinstance(cols, Mapping) or set(cols) != _SNAP_COLUMNS:
        got = str(sorted(cols)) if isinstance(cols, Mapping) else type(cols).__name__
        raise ValueError(f"snapshot: tracks: expected a mapping with keys {sorted(_SNAP_COLUMNS)}, got {got}")
    ids = cols["id"]
    if not isinstance(ids, list) or not all(isinstance(i, str) and _TRACK_ID.fullmatch(i) for i in ids):
        raise ValueError(f"snapshot: tracks.id: expected a list of 't<n>' ids, got {ids!r:.60}")
    n = len(ids)
    if n and (last_t is None or last_seq is None):
        raise ValueError("snapshot: last_t, last_seq: expected numbers when there are tracks, got None")
    tr = _Tracks(n)
    tr.num = np.array([int(i[1:]) for i in ids], np.int64).reshape(n)
    _snap_check((tr.num >= 1) & (tr.num < next_id), "id", f"an id below t{next_id} (next_id)", ids)
    if np.unique(tr.num).size != n:
        raise ValueError(f"snapshot: tracks.id: expected unique ids, got {ids!r:.60}")
    states = cols["state"]
    if not isinstance(states, list) or len(states) != n or not all(x in _CODE_BY_NAME for x in states):
        raise ValueError(f"snapshot: tracks.state: expected {n} of {list(_CODE_BY_NAME)}, got {states!r:.60}")
    tr.state = np.array([_CODE_BY_NAME[x] for x in states], np.int8).reshape(n)
    for name in ("first_seq", "last_seq", "hits"):
        setattr(tr, name, _snap_column(cols, name, (n,), integer=True).astype(np.int64))
    for name, shape in (
        ("first_t", (n,)),
        ("last_t", (n,)),
        ("box", (n, 4)),
        ("mean", (n, 8)),
        ("cov", (n, 3, 4)),
    ):
        setattr(tr, "t" if name == "last_t" else name, _snap_column(cols, name, shape))
    tr.cov = _snap_column(cols, "cov", (n, 3, 4))
    _snap_check(tr.first_seq >= 0, "first_seq", "an int >= 0", cols["first_seq"])
    _snap_check(tr.first_seq <= tr.last_seq, "last_seq", "an int >= first_seq", cols["last_seq"])
    _snap_check(tr.last_seq <= (last_seq or 0), "last_seq", f"an int <= {last_seq}", cols["last_seq"])
    _snap_check(tr.hits >= 1, "hits", "an int >= 1", cols["hits"])
    _snap_check(tr.first_t <= tr.t, "last_t", "a time >= first_t", cols["last_t"])
    _snap_check(tr.t <= (last_t or 0.0), "last_t", f"a time <= {last_t}", cols["last_t"])
    variances_ok = np.asarray((tr.cov[:, 0] >= 0).all(axis=1) & (tr.cov[:, 2] >= 0).all(axis=1))
    _snap_check(variances_ok, "cov", "variances >= 0", cols["cov"])
    embeddings = cols["embedding"]
    if not isinstance(embeddings, list) or len(embeddings) != n:
        raise ValueError(f"snapshot: tracks.embedding: expected a list of {n} items, got {embeddings!r:.60}")
    for i, e in enumerate(embeddings):
        if e is not None:
            tr.emb[i] = _snap_column({f"embedding[{i}]": e}, f"embedding[{i}]", (IDENTITY_DIM,))
            tr.has_emb[i] = True
    order = np.argsort(tr.num, kind="stable")
    tracker._tracks = tr.take(order)
    tracker._next_id = next_id
    tracker._last_t = None if last_t is None else float(last_t)
    tracker._last_seq = last_seq
