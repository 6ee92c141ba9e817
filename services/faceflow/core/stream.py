"""One stream's analytics: tracks, identities and fused results over time (pure).

:class:`StreamAnalytics` is what the aggregator keeps per stream. For each analyzed frame
(:class:`FrameIn`) it

1. drops a repeat (``seq`` at or below the last applied one: a replay after a restart);
2. tracks every detection (:class:`~faceflow.core.tracking.StreamTracker`; only analyzed faces
   carry an embedding, the others are tracked by motion and IoU);
3. weighs each observation by its quality (:mod:`faceflow.core.quality`) and fuses the analyzed
   ones into their track (:class:`~faceflow.core.fusion.TrackFusion`); keeps each track's best
   shot (a reference: seq, box, quality; never pixels);
4. links tracks to identities by embedding (:class:`~faceflow.core.identity.Gallery`): an
   enrolled or named person, or an anonymous identity (``anon-...``, derived from the stream, the
   track and the seq where it was created, so a replay recreates the same id) that a returning face
   finds again;
5. reports what happened (:class:`FrameOut`): an observation per face, lifecycle events, and the
   gallery entries it created or changed (the service publishes those).

Everything is bounded (the tracker's ``max_tracks``, ``max_ended_tracks`` kept for queries, a
track's descriptors) and checkpointable (:meth:`StreamAnalytics.snapshot` / :meth:`restore`). The
gallery is shared by the streams of a process; the caller serialises access to it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from faceflow.core.fusion import FusedResults, TrackFusion
from faceflow.core.identity import (
    Candidates,
    Gallery,
    IdentityEntry,
    IdentityKind,
    IdentityMatch,
    add_exemplars,
    anonymous_identity_id,
)
from faceflow.core.naming import NamingPolicy, TrackIdentity, decide, evidence_quality
from faceflow.core.quality import detection_quality, observation_quality
from faceflow.core.tracking import Observation, StreamTracker, TrackerConfig

logger = logging.getLogger(__name__)

SNAPSHOT_VERSION: Final[int] = 1
#: Tracks remembered per track as having shared a frame with it (cannot-link), most recent kept.
MAX_COOCCURRING: Final[int] = 64

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class StreamConfig:
    """Tracking and identity settings of every stream.

    ``match_threshold``: the naming operating point, the largest evidence distance at which a
    track is named as an enrolled or named person (calibrated on eval/, see
    :mod:`faceflow.core.naming`); ``name_margin``: how much nearer than any other name it must be;
    ``anon_threshold``: the largest distance at which a track joins an anonymous identity;
    ``cross_stream``: whether anonymous identities first seen on other streams are candidates;
    ``max_track_embeddings``: descriptors a track keeps as evidence (its best); ``max_exemplars``:
    per identity; ``max_ended_tracks``: ended tracks kept for queries.
    """

    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    match_threshold: float = 0.55
    name_margin: float = 0.05
    anon_threshold: float = 0.5
    cross_stream: bool = False
    max_track_embeddings: int = 16
    max_exemplars: int = 16
    max_ended_tracks: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.tracker, TrackerConfig):
            raise TypeError(f"tracker: expected a TrackerConfig, got {type(self.tracker).__name__}")
        if not (isinstance(self.match_threshold, (int, float)) and 0 < self.match_threshold < 2):
            raise ValueError(f"match_threshold: expected a distance in (0, 2), got {self.match_threshold!r}")
        for name in ("max_track_embeddings", "max_exemplars", "max_ended_tracks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        self.naming_policy()  # validates the naming fields

    def naming_policy(self) -> NamingPolicy:
        """The open-set naming policy these settings describe."""
        return NamingPolicy(
            name_threshold=self.match_threshold,
            name_margin=self.name_margin,
            anon_threshold=self.anon_threshold,
        )


@dataclass(frozen=True)
class TaskResults:
    """One analyzed face's task results in contract order (probabilities, not logits)."""

    landmarks68: F32
    head_pose: F32  # pitch, yaw, roll (radians)
    attributes: F32
    occlusion: F32
    age: F32
    gender: F32
    race: F32
    parsing_areas: F32 | None = None


@dataclass(frozen=True)
class FaceIn:
    """One detected face of a frame; ``tasks`` and ``embedding`` only when it was analyzed."""

    face_index: int
    box: F32
    score: float
    keypoints5: F32 | None
    analyzed: bool
    results_seq: int
    tasks: TaskResults | None = None
    embedding: F32 | None = None

    def __post_init__(self) -> None:
        if self.analyzed and (self.tasks is None or self.embedding is None):
            raise ValueError(f"face {self.face_index}: expected tasks and an embedding for an analyzed face")


@dataclass(frozen=True)
class FrameIn:
    """One frame's analysis: ``t`` is media time (seconds), ``capture_ns`` wall-clock capture time."""

    seq: int
    t: float
    capture_ns: int
    faces: tuple[FaceIn, ...] = ()
    end_of_stream: bool = False
    #: seq of the first frame of this frame's shot (ingest's cut detector); a change from the
    #: stream's previous frame is a hard cut. Producers without a detector always send 0.
    shot_start_seq: int = 0


@dataclass(frozen=True)
class BestShot:
    seq: int
    t: float
    box: tuple[float, float, float, float]
    quality: float


@dataclass(frozen=True)
class IdentityRef:
    identity_id: str
    name: str
    kind: IdentityKind
    distance: float


@dataclass(frozen=True)
class TrackSummary:
    track_id: str
    first_seq: int
    last_seq: int
    first_t: float
    last_t: float
    observations: int
    analyzed: int
    state: str  # "active", "lost", "ended"
    end_reason: str
    last_box: tuple[float, float, float, float]
    identity: IdentityRef | None
    fused: FusedResults | None
    best_shot: BestShot | None


@dataclass(frozen=True)
class ObservationOut:
    face: FaceIn
    track_id: str
    quality: float
    track: TrackSummary


@dataclass(frozen=True)
class LifecycleOut:
    """``kind``: track_started, track_lost, track_ended, identity_resolved, stream_ended."""

    kind: str
    track: TrackSummary | None


@dataclass(frozen=True)
class FrameOut:
    seq: int
    repeat: bool = False
    observations: tuple[ObservationOut, ...] = ()
    lifecycle: tuple[LifecycleOut, ...] = ()
    gallery_puts: tuple[IdentityEntry, ...] = ()
    #: Anonymous identities merged into another (removed from the gallery; the service deletes
    #: them from the identities topic). Not erasures: a replay may create and merge them again.
    gallery_removes: tuple[str, ...] = ()


class _Track:
    """What the aggregator keeps per track beyond the tracker's motion state."""

    def __init__(self, track_id: str, seq: int, t: float, *, embeddings: int) -> None:
        self.track_id = track_id
        self.first_seq = self.last_seq = seq
        self.first_t = self.last_t = t
        self.observations = 0
        self.analyzed = 0
        self.last_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
        self.fusion = TrackFusion()
        self.identity = TrackIdentity(capacity=embeddings)
        self.best: BestShot | None = None
        self.best_analyzed = False
        self.state = "active"
        self.end_reason = ""
        self.started = False
        #: tracks that shared a frame with this one (cannot-link), most recent last
        self.cooccur: dict[str, None] = {}

    def summary(self, gallery: Gallery) -> TrackSummary:
        match = self.identity.match
        ref = None
        if match is not None:
            entry = gallery.get(match.identity_id)
            name = entry.name if entry is not None else match.name
            kind = entry.kind if entry is not None else match.kind
            ref = IdentityRef(match.identity_id, name, kind, match.distance)
        return TrackSummary(
            track_id=self.track_id,
            first_seq=self.first_seq,
            last_seq=self.last_seq,
            first_t=self.first_t,
            last_t=self.last_t,
            observations=self.observations,
            analyzed=self.analyzed,
            state=self.state,
            end_reason=self.end_reason,
            last_box=self.last_box,
            identity=ref,
            fused=self.fusion.fused(),
            best_shot=self.best,
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "first": [self.first_seq, self.first_t],
            "last": [self.last_seq, self.last_t],
            "counts": [self.observations, self.analyzed],
            "last_box": list(self.last_box),
            "fusion": self.fusion.snapshot(),
            "identity": self.identity.snapshot(),
            "best": None
            if self.best is None
            else [self.best.seq, self.best.t, list(self.best.box), self.best.quality],
            "best_analyzed": self.best_analyzed,
            "state": self.state,
            "end_reason": self.end_reason,
            "started": self.started,
            "cooccur": list(self.cooccur),
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any]) -> _Track:
        try:
            track = cls(str(data["track_id"]), int(data["first"][0]), float(data["first"][1]), embeddings=1)
            track.last_seq, track.last_t = int(data["last"][0]), float(data["last"][1])
            track.observations, track.analyzed = (int(v) for v in data["counts"])
            track.last_box = tuple(float(v) for v in data["last_box"])  # type: ignore[assignment]
            track.fusion = TrackFusion.restore(data["fusion"])
            track.identity = TrackIdentity.restore(data["identity"])
            best = data["best"]
            if best is not None:
                x1, y1, x2, y2 = (float(v) for v in best[2])
                track.best = BestShot(int(best[0]), float(best[1]), (x1, y1, x2, y2), float(best[3]))
            track.best_analyzed = bool(data["best_analyzed"])
            track.state, track.end_reason, track.started = (
                str(data["state"]),
                str(data["end_reason"]),
                bool(data["started"]),
            )
            track.cooccur = dict.fromkeys(str(v) for v in data.get("cooccur", ()))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"track snapshot: malformed ({exc})") from exc
        return track


class StreamAnalytics:
    """Tracks, identities and fusion of one stream; see the module docstring.

    Args:
        stream_id: the stream.
        config: settings shared by every stream.
        gallery: the identities (shared by the streams of a process; the caller serialises access).
        clock: epoch seconds for identity timestamps (never for tracking, which uses media time).
    """

    def __init__(
        self,
        stream_id: str,
        config: StreamConfig,
        gallery: Gallery,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream_id = stream_id
        self.config = config
        self.gallery = gallery
        self.clock = clock
        self.tracker = StreamTracker(config.tracker, stream_id=stream_id)
        self.tracks: dict[str, _Track] = {}
        self.ended: OrderedDict[str, _Track] = OrderedDict()
        self.last_seq = -1
        self.last_t: float | None = None
        self.t_offset = 0.0
        self.frames = 0
        self.faces = 0
        self.duplicates = 0
        self.stream_ended = False
        self.last_capture_ns = 0
        self.total_tracks = 0
        self.shot_start_seq: int | None = None  # None: no frame seen yet
        self.cuts = 0
        self.policy = config.naming_policy()

    # -- applying frames --------------------------------------------------------------------------
    def apply(self, frame: FrameIn) -> FrameOut:
        """Apply one frame's analysis (see the module docstring)."""
        if frame.seq <= self.last_seq:
            self.duplicates += 1
            return FrameOut(seq=frame.seq, repeat=True)
        self.last_seq = frame.seq
        self.last_capture_ns = max(self.last_capture_ns, frame.capture_ns)
        t = self._media_time(frame.t)
        if frame.end_of_stream:
            return self._end(frame.seq, t)
        self.stream_ended = False
        lifecycle: list[LifecycleOut] = []
        if self.shot_start_seq is not None and frame.shot_start_seq != self.shot_start_seq:
            lifecycle.extend(self._cut(frame.seq))
        self.shot_start_seq = frame.shot_start_seq
        self.frames += 1
        self.faces += len(frame.faces)
        qualities = [self._quality(face) for face in frame.faces]
        observations = [
            Observation.create(
                face.face_index,
                face.box,
                min(1.0, max(0.0, float(face.score))),
                quality=q,
                embedding=face.embedding if face.analyzed else None,
            )
            for face, q in zip(frame.faces, qualities, strict=True)
        ]
        update = self.tracker.update(observations, t=t, seq=frame.seq)
        puts: list[IdentityEntry] = []
        removes: list[str] = []
        resolved: list[str] = []
        present = list(dict.fromkeys(update.assignments))
        evidence: list[tuple[float, str, bool]] = []
        for face, q, track_id in zip(frame.faces, qualities, update.assignments, strict=True):
            track = self.tracks.get(track_id)
            if track is None:
                track = _Track(track_id, frame.seq, t, embeddings=self.config.max_track_embeddings)
                self.tracks[track_id] = track
                self.total_tracks += 1
            self._observe(track, face, q, frame.seq, t)
            for other in present:
                if other != track_id:
                    track.cooccur.pop(other, None)
                    track.cooccur[other] = None
            while len(track.cooccur) > MAX_COOCCURRING:
                del track.cooccur[next(iter(track.cooccur))]
            if face.analyzed and face.embedding is not None:
                dq = evidence_quality(face.box, face.score, face.keypoints5)
                held = track.identity.add(face.embedding, dq)
                evidence.append((dq, track_id, held and dq >= self.policy.min_quality))
        # the best evidence of the frame decides first (each decision forbids the identities the
        # frame's other tracks hold at that moment)
        for _, track_id, grow in sorted(evidence, key=lambda e: -e[0]):
            if self._resolve(self.tracks[track_id], frame.seq, present, puts, removes, grow=grow):
                resolved.append(track_id)
        resolved.extend(t for t in self._distinct(present, frame.seq, puts) if t not in resolved)
        for track_id in update.started:
            track = self.tracks.get(track_id)
            if track is not None and not track.started:
                track.started = True
                lifecycle.append(LifecycleOut("track_started", track.summary(self.gallery)))
        observations_out = tuple(
            ObservationOut(face, track_id, q, self.tracks[track_id].summary(self.gallery))
            for face, q, track_id in zip(frame.faces, qualities, update.assignments, strict=True)
        )
        for track_id in resolved:
            lifecycle.append(LifecycleOut("identity_resolved", self.tracks[track_id].summary(self.gallery)))
        for track_id in update.lost:
            track = self.tracks.get(track_id)
            if track is not None:
                track.state = "lost"
                if track.started:
                    lifecycle.append(LifecycleOut("track_lost", track.summary(self.gallery)))
        for track_id in update.recovered:
            if track_id in self.tracks:
                self.tracks[track_id].state = "active"
        for track_id, reason in update.ended:
            lifecycle.extend(self._finish(track_id, reason))
        return FrameOut(
            seq=frame.seq,
            observations=observations_out,
            lifecycle=tuple(lifecycle),
            gallery_puts=tuple(puts),
            gallery_removes=tuple(removes),
        )

    def _media_time(self, t: float) -> float:
        """Media time kept monotonic: a stream restarted after its end (pts from 0 again) goes on."""
        effective = t + self.t_offset
        if self.last_t is not None and effective < self.last_t:
            self.t_offset += self.last_t - effective + 1e-3
            effective = t + self.t_offset
        self.last_t = effective
        return effective

    def _quality(self, face: FaceIn) -> float:
        dq = detection_quality(face.box, min(1.0, max(0.0, float(face.score))), face.keypoints5)
        if face.analyzed and face.tasks is not None:
            return observation_quality(dq, head_pose=face.tasks.head_pose, occlusion=face.tasks.occlusion)
        return dq

    def _observe(self, track: _Track, face: FaceIn, quality: float, seq: int, t: float) -> None:
        track.observations += 1
        track.last_seq, track.last_t = seq, t
        track.state = "active"
        track.last_box = tuple(float(v) for v in face.box)  # type: ignore[assignment]
        if face.analyzed and face.tasks is not None:
            track.analyzed += 1
            if quality > 0:
                tasks = face.tasks
                track.fusion.add(
                    weight=quality,
                    age=tasks.age,
                    gender=tasks.gender,
                    race=tasks.race,
                    attributes=tasks.attributes,
                    occlusion=tasks.occlusion,
                )
        better = track.best is None or quality > track.best.quality
        # the best shot is an analyzed observation whenever there is one (its results exist)
        if (face.analyzed and (better or not track.best_analyzed)) or (not track.best_analyzed and better):
            track.best = BestShot(seq, t, track.last_box, quality)
            track.best_analyzed = face.analyzed

    def _own_anonymous(self, track: _Track) -> str | None:
        """The id of the anonymous identity ``track`` created itself and is linked to, or None."""
        current = track.identity.match
        if current is None or current.kind is not IdentityKind.ANONYMOUS:
            return None
        entry = self.gallery.get(current.identity_id)
        own = entry is not None and entry.source == f"anonymous:{self.stream_id}/{track.track_id}"
        return current.identity_id if own else None

    def _forbidden(self, track: _Track, present: list[str]) -> set[str]:
        """Cannot-link: the identities of the tracks that share this frame or shared an earlier one."""
        out = set()
        for other in (*present, *track.cooccur):
            if other == track.track_id:
                continue
            held = self.tracks.get(other) or self.ended.get(other)
            if held is not None and held.identity.identity_id is not None:
                out.add(held.identity.identity_id)
        return out

    def _resolve(
        self,
        track: _Track,
        seq: int,
        present: list[str],
        puts: list[IdentityEntry],
        removes: list[str],
        *,
        grow: bool,
    ) -> bool:
        """Decide ``track``'s identity from its evidence (:func:`faceflow.core.naming.decide`);
        True when its identity changed.

        A new anonymous identity's id derives from the stream, the track and the ``seq`` at which it
        is created: a replay recreates the same id, and a track whose identity was erased gets a new
        one (never the erased id again).

        A track holding the anonymous identity it created itself (its first shots matched nobody)
        is decided without it: that identity holds only its own descriptors and would always win.
        When the evidence then names the track or finds an older identity (the person came back),
        the track moves there, its usable descriptors join that identity's exemplars, and its own
        identity is merged away (``removes``) unless another track is linked to it. An identity
        built by several tracks is never merged away on one track's evidence: only a track's own.
        """
        policy = self.policy
        descriptors, weights = track.identity.usable(policy.min_quality)
        now = self.clock()
        own = self._own_anonymous(track)
        current = track.identity.match
        if descriptors.shape[0]:
            candidates = self.gallery.evidence(
                descriptors, weights, stream_id=self.stream_id, cross_stream=self.config.cross_stream
            )
        else:
            candidates = Candidates((), np.zeros(0), np.zeros(0, bool), ())
        decision = decide(
            current,
            candidates,
            own=own,
            forbidden=self._forbidden(track, present),
            evidence=float(weights.sum()),
            policy=policy,
        )
        chosen = decision.match
        entry = None if chosen is None else self.gallery.get(chosen.identity_id)
        changed = False
        if entry is None or chosen is None:
            self._new_anonymous(track, seq, puts)
            changed = True
            logger.debug(
                "stream %s: track %s: own anonymous identity (%s)",
                self.stream_id,
                track.track_id,
                decision.reason,
            )
        elif current is None or chosen.identity_id != current.identity_id:
            track.identity.assign(
                IdentityMatch(
                    identity_id=entry.identity_id, name=entry.name, kind=entry.kind, distance=chosen.distance
                )
            )
            changed = True
            logger.info(
                "stream %s: track %s: identity %s (%s, distance %.3f)",
                self.stream_id,
                track.track_id,
                entry.identity_id,
                decision.reason,
                chosen.distance,
            )
            if own is not None:
                self._merge_own(
                    track, own=own, target=entry, descriptors=descriptors, now=now, puts=puts, removes=removes
                )
        linked = track.identity.match
        if linked is not None:
            self.gallery.touch(linked.identity_id, now)
            grown_from = self.gallery.get(linked.identity_id)
            if grown_from is not None and grown_from.kind is not IdentityKind.ENROLLED and grow:
                grown = add_exemplars(
                    grown_from,
                    track.identity.descriptors()[-1:],
                    max_exemplars=self.config.max_exemplars,
                    now_s=now,
                )
                if grown is not grown_from:  # the exemplars changed: share them (other replicas, restarts)
                    self._put(grown, puts)
        return changed

    def _new_anonymous(self, track: _Track, seq: int, puts: list[IdentityEntry]) -> None:
        """Give ``track`` an anonymous identity of its own, built from its evidence."""
        now = self.clock()
        identity_id = anonymous_identity_id(self.stream_id, track.track_id, seq)
        descriptors, _ = track.identity.usable(self.policy.min_quality)
        if descriptors.shape[0] == 0:
            descriptors = track.identity.descriptors()
        existing = self.gallery.get(identity_id)  # a replay: the identity is back from the topic
        entry = (
            existing
            if existing is not None
            else IdentityEntry(
                identity_id=identity_id,
                name="",
                kind=IdentityKind.ANONYMOUS,
                embeddings=descriptors,
                origin_stream=self.stream_id,
                source=f"anonymous:{self.stream_id}/{track.track_id}",
                created_s=now,
                updated_s=now,
                last_seen_s=now,
            )
        )
        self._put(entry, puts)
        track.identity.assign(
            IdentityMatch(identity_id=identity_id, name="", kind=IdentityKind.ANONYMOUS, distance=0.0)
        )

    def _merge_own(
        self,
        track: _Track,
        *,
        own: str,
        target: IdentityEntry,
        descriptors: F32,
        now: float,
        puts: list[IdentityEntry],
        removes: list[str],
    ) -> None:
        if target.kind is not IdentityKind.ENROLLED and descriptors.shape[0]:
            grown = add_exemplars(target, descriptors, max_exemplars=self.config.max_exemplars, now_s=now)
            if grown is not target:
                self._put(grown, puts)
        holders = (*self.tracks.values(), *self.ended.values())
        if any(t.identity.identity_id == own for t in holders if t is not track):
            return
        self.gallery.remove(own)
        puts[:] = [p for p in puts if p.identity_id != own]
        removes.append(own)
        logger.info(
            "stream %s: track %s: identity %s merged into %s",
            self.stream_id,
            track.track_id,
            own,
            target.identity_id,
        )

    def _distinct(self, present: list[str], seq: int, puts: list[IdentityEntry]) -> list[str]:
        """Two faces of one frame are two people: where tracks of this frame share an identity,
        the nearest keeps it and the others get anonymous identities of their own. Returns the
        tracks whose identity changed."""
        holders: dict[str, list[_Track]] = {}
        for track_id in present:
            track = self.tracks.get(track_id)
            if track is not None and track.identity.identity_id is not None:
                holders.setdefault(track.identity.identity_id, []).append(track)
        changed = []
        for identity_id, tracks in holders.items():
            if len(tracks) < 2:
                continue
            tracks.sort(key=lambda tr: (tr.identity.distance or 0.0, tr.first_seq))
            for loser in tracks[1:]:
                logger.info(
                    "stream %s seq %s: tracks %s and %s share identity %s in one frame; %s gets its own",
                    self.stream_id,
                    seq,
                    tracks[0].track_id,
                    loser.track_id,
                    identity_id,
                    loser.track_id,
                )
                self._new_anonymous(loser, seq, puts)
                changed.append(loser.track_id)
        return changed

    def _put(self, entry: IdentityEntry, puts: list[IdentityEntry]) -> None:
        evicted = self.gallery.put(entry)
        if evicted:
            logger.info("stream %s: gallery full, evicted anonymous identity %s", self.stream_id, evicted)
        puts[:] = [p for p in puts if p.identity_id != entry.identity_id]
        puts.append(entry)

    def _finish(self, track_id: str, reason: str) -> list[LifecycleOut]:
        track = self.tracks.pop(track_id, None)
        if track is None:
            return []
        track.state, track.end_reason = "ended", reason
        self.ended[track_id] = track
        while len(self.ended) > self.config.max_ended_tracks:
            self.ended.popitem(last=False)
        return [LifecycleOut("track_ended", track.summary(self.gallery))] if track.started else []

    def _end_every_track(self, reason: str) -> list[LifecycleOut]:
        lifecycle: list[LifecycleOut] = []
        for track_id, ended_reason in self.tracker.end_all(reason):
            lifecycle.extend(self._finish(track_id, ended_reason))
        for track_id in list(self.tracks):  # tentative tracks the tracker no longer knew
            lifecycle.extend(self._finish(track_id, reason))
        return lifecycle

    def _cut(self, seq: int) -> list[LifecycleOut]:
        """A hard cut: every track ends (a track never continues into another shot on motion);
        identities carry people across it."""
        self.cuts += 1
        lifecycle = self._end_every_track("cut")
        logger.debug("stream %s seq %s: shot cut, %d tracks ended", self.stream_id, seq, len(lifecycle))
        return lifecycle

    def _end(self, seq: int, t: float) -> FrameOut:
        lifecycle = self._end_every_track("end_of_stream")
        lifecycle.append(LifecycleOut("stream_ended", None))
        self.stream_ended = True
        return FrameOut(seq=seq, lifecycle=tuple(lifecycle))

    # -- identities --------------------------------------------------------------------------------
    def forget_identity(self, identity_id: str) -> list[str]:
        """Drop an erased identity from every track: the link, the descriptors collected for it, and
        the tracker's appearance of its live tracks. Returns the tracks touched."""
        touched = []
        for track in (*self.tracks.values(), *self.ended.values()):
            if track.identity.identity_id == identity_id:
                track.identity = TrackIdentity(capacity=self.config.max_track_embeddings)
                self.tracker.forget_appearance(track.track_id)
                touched.append(track.track_id)
        return touched

    def held_identities(self) -> dict[str, IdentityKind]:
        """The identities this stream's tracks (live and ended) are linked to, with their kinds as
        the tracks hold them."""
        held: dict[str, IdentityKind] = {}
        for track in (*self.tracks.values(), *self.ended.values()):
            match = track.identity.match
            if match is not None:
                held[match.identity_id] = match.kind
        return held

    # -- queries -----------------------------------------------------------------------------------
    def track(self, track_id: str) -> TrackSummary | None:
        track = self.tracks.get(track_id) or self.ended.get(track_id)
        return None if track is None else track.summary(self.gallery)

    def track_summaries(self, *, active_only: bool = False) -> list[TrackSummary]:
        """Tracks, newest first."""
        tracks = list(self.tracks.values()) if active_only else [*self.tracks.values(), *self.ended.values()]
        tracks.sort(
            key=lambda tr: (tr.first_seq, int(tr.track_id[1:]) if tr.track_id[1:].isdigit() else 0),
            reverse=True,
        )
        return [tr.summary(self.gallery) for tr in tracks]

    # -- checkpoints ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "version": SNAPSHOT_VERSION,
            "stream_id": self.stream_id,
            "last_seq": self.last_seq,
            "last_t": self.last_t,
            "t_offset": self.t_offset,
            "counts": [self.frames, self.faces, self.duplicates, self.total_tracks],
            "shot": [self.shot_start_seq, self.cuts],
            "last_capture_ns": self.last_capture_ns,
            "stream_ended": self.stream_ended,
            "tracker": self.tracker.snapshot(),
            "tracks": [tr.snapshot() for tr in self.tracks.values()],
            "ended": [tr.snapshot() for tr in self.ended.values()],
        }

    @classmethod
    def restore(
        cls,
        snapshot: Mapping[str, Any],
        config: StreamConfig,
        gallery: Gallery,
        *,
        clock: Callable[[], float] = time.time,
    ) -> StreamAnalytics:
        """The stream as it was when ``snapshot`` was taken.

        Raises:
            ValueError: the snapshot is malformed or of another version.
        """
        if not isinstance(snapshot, Mapping) or snapshot.get("version") != SNAPSHOT_VERSION:
            got = snapshot.get("version") if isinstance(snapshot, Mapping) else type(snapshot).__name__
            raise ValueError(f"stream snapshot: expected version {SNAPSHOT_VERSION}, got {got!r}")
        try:
            stream = cls(str(snapshot["stream_id"]), config, gallery, clock=clock)
            stream.last_seq = int(snapshot["last_seq"])
            last_t = snapshot["last_t"]
            stream.last_t = None if last_t is None else float(last_t)
            stream.t_offset = float(snapshot["t_offset"])
            stream.frames, stream.faces, stream.duplicates, stream.total_tracks = (
                int(v) for v in snapshot["counts"]
            )
            stream.last_capture_ns = int(snapshot["last_capture_ns"])
            shot, cuts = snapshot.get("shot", (None, 0))
            stream.shot_start_seq, stream.cuts = (None if shot is None else int(shot)), int(cuts)
            stream.stream_ended = bool(snapshot["stream_ended"])
            stream.tracker = StreamTracker.restore(
                config.tracker, snapshot["tracker"], stream_id=stream.stream_id
            )
            for data in snapshot["tracks"]:
                track = _Track.restore(data)
                stream.tracks[track.track_id] = track
            for data in snapshot["ended"]:
                track = _Track.restore(data)
                stream.ended[track.track_id] = track
        except (KeyError, TypeError) as exc:
            raise ValueError(f"stream snapshot: malformed ({exc})") from exc
        if not math.isfinite(stream.t_offset):
            raise ValueError("stream snapshot: t_offset must be finite")
        return stream
