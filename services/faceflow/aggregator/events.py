"""Between the wire and the core: ``FrameAnalysis`` -> :class:`~faceflow.core.stream.FrameIn`, and the
core's :class:`~faceflow.core.stream.FrameOut` -> ``FaceEvent`` messages for faceflow.faces.v1.

Label names come from :mod:`faceflow.models.contract`; probability vectors arrive in that order.
Embeddings go on the public topic only when the aggregator is configured to publish them.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from faceflow.core.fusion import FusedDistribution, FusedResults
from faceflow.core.stream import FaceIn, FrameIn, FrameOut, IdentityRef, TaskResults, TrackSummary
from faceflow.models.contract import (
    AGE_BINS,
    ATTRIBUTES,
    GENDERS,
    IDENTITY_DIM,
    NUM_LANDMARKS,
    PARSING_CLASSES,
    RACES,
    VISIBILITY_POINTS,
)
from faceflow.v1 import aggregator_pb2, analysis_pb2, common_pb2, face_event_pb2

EVENT_TYPES: dict[str, face_event_pb2.FaceEventType.ValueType] = {
    "track_started": face_event_pb2.FACE_EVENT_TYPE_TRACK_STARTED,
    "track_lost": face_event_pb2.FACE_EVENT_TYPE_TRACK_LOST,
    "track_ended": face_event_pb2.FACE_EVENT_TYPE_TRACK_ENDED,
    "identity_resolved": face_event_pb2.FACE_EVENT_TYPE_IDENTITY_RESOLVED,
    "stream_ended": face_event_pb2.FACE_EVENT_TYPE_STREAM_ENDED,
}
TRACK_STATES = {
    "active": aggregator_pb2.TRACK_STATE_CONFIRMED,
    "lost": aggregator_pb2.TRACK_STATE_LOST,
    "ended": aggregator_pb2.TRACK_STATE_ENDED,
}


class AnalysisError(ValueError):
    """A ``FrameAnalysis`` that breaks the contract (wrong vector lengths...)."""


def _vector(values: Sequence[float], n: int, name: str, face: int) -> np.ndarray:
    if len(values) != n:
        raise AnalysisError(f"face {face}: {name}: expected {n} values, got {len(values)}")
    return np.asarray(values, np.float32)


def _areas(mask: common_pb2.ParsingMask) -> np.ndarray | None:
    if not mask.class_ids:
        return None
    raw = (
        zlib.decompress(mask.class_ids)
        if mask.compression == common_pb2.MASK_COMPRESSION_ZLIB
        else mask.class_ids
    )
    ids = np.frombuffer(raw, np.uint8)
    counts = np.bincount(ids, minlength=len(PARSING_CLASSES))[: len(PARSING_CLASSES)]
    return (counts / max(1, ids.size)).astype(np.float32)


def frame_in(message: analysis_pb2.FrameAnalysis) -> FrameIn:
    """The core's view of one analysis.

    Raises:
        AnalysisError: a face's vectors do not have the contract's lengths.
    """
    faces = []
    for k, f in enumerate(message.faces):
        analyzed = f.analyzed if f.HasField("analyzed") else True  # absent: an analyzer before scheduling
        analyzed = analyzed and len(f.embedding) > 0
        box = np.array([f.box.x1, f.box.y1, f.box.x2, f.box.y2], np.float32)
        kps = np.array([[p.x, p.y] for p in f.keypoints5], np.float32) if len(f.keypoints5) == 5 else None
        tasks = None
        embedding = None
        if analyzed:
            tasks = TaskResults(
                landmarks68=np.array([[p.x, p.y] for p in f.landmarks68], np.float32).reshape(-1, 2),
                head_pose=np.array([f.head_pose.pitch, f.head_pose.yaw, f.head_pose.roll], np.float32),
                attributes=_vector(f.attributes, len(ATTRIBUTES), "attributes", k),
                occlusion=_vector(f.visibility, len(VISIBILITY_POINTS), "visibility", k),
                age=_vector(f.age, len(AGE_BINS), "age", k),
                gender=_vector(f.gender, len(GENDERS), "gender", k),
                race=_vector(f.race, len(RACES), "race", k),
                parsing_areas=_areas(f.parsing),
            )
            if tasks.landmarks68.shape[0] not in (0, NUM_LANDMARKS):
                raise AnalysisError(f"face {k}: landmarks68: expected {NUM_LANDMARKS} points")
            embedding = _vector(f.embedding, IDENTITY_DIM, "embedding", k)
        faces.append(
            FaceIn(
                face_index=f.face_index,
                box=box,
                score=float(f.score),
                keypoints5=kps,
                analyzed=analyzed,
                results_seq=message.seq if analyzed else int(f.results_seq),
                tasks=tasks,
                embedding=embedding,
            )
        )
    return FrameIn(
        seq=message.seq,
        t=message.pts.ToNanoseconds() / 1e9,
        capture_ns=message.capture_time.ToNanoseconds(),
        faces=tuple(faces),
        end_of_stream=message.end_of_stream,
        shot_start_seq=message.shot_start_seq,
    )


# --- results -------------------------------------------------------------------------------------


def _box(values: Sequence[float] | np.ndarray) -> common_pb2.BoundingBox:
    x1, y1, x2, y2 = (float(v) for v in values)
    return common_pb2.BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2)


def _distribution(
    labels: Sequence[str], probabilities: np.ndarray, confidence: float = 0.0
) -> face_event_pb2.Distribution:
    p = [float(v) for v in probabilities]
    top = int(np.argmax(p))
    return face_event_pb2.Distribution(
        scores=[
            face_event_pb2.LabelScore(label=label, probability=v) for label, v in zip(labels, p, strict=True)
        ],
        top_label=labels[top],
        top_probability=p[top],
        confidence=confidence,
    )


def _fused_distribution(d: FusedDistribution) -> face_event_pb2.Distribution:
    return _distribution(d.labels, np.asarray(d.probabilities), float(d.confidence))


def raw_results(tasks: TaskResults, mask: common_pb2.ParsingMask | None) -> face_event_pb2.FaceResults:
    out = face_event_pb2.FaceResults(
        landmarks68=[common_pb2.Point(x=float(x), y=float(y)) for x, y in tasks.landmarks68],
        head_pose=common_pb2.HeadPose(
            pitch=float(tasks.head_pose[0]), yaw=float(tasks.head_pose[1]), roll=float(tasks.head_pose[2])
        ),
        attributes=[
            face_event_pb2.LabelScore(label=a, probability=float(p))
            for a, p in zip(ATTRIBUTES, tasks.attributes, strict=True)
        ],
        occlusion=[
            face_event_pb2.LabelScore(label=a, probability=float(p))
            for a, p in zip(VISIBILITY_POINTS, tasks.occlusion, strict=True)
        ],
        age=_distribution(AGE_BINS, tasks.age),
        gender=_distribution(GENDERS, tasks.gender),
        race=_distribution(RACES, tasks.race),
        evidence=1,
    )
    if tasks.parsing_areas is not None:
        out.parsing_areas.extend(
            face_event_pb2.LabelScore(label=c, probability=float(p))
            for c, p in zip(PARSING_CLASSES, tasks.parsing_areas, strict=True)
        )
    if mask is not None:
        out.parsing.CopyFrom(mask)
    return out


def fused_results(fused: FusedResults | None) -> face_event_pb2.FaceResults:
    if fused is None:
        return face_event_pb2.FaceResults()
    return face_event_pb2.FaceResults(
        attributes=[
            face_event_pb2.LabelScore(label=a, probability=float(p), confidence=float(c))
            for a, p, c in zip(ATTRIBUTES, fused.attributes, fused.attribute_confidence, strict=True)
        ],
        occlusion=[
            face_event_pb2.LabelScore(label=a, probability=float(p), confidence=float(c))
            for a, p, c in zip(VISIBILITY_POINTS, fused.occlusion, fused.occlusion_confidence, strict=True)
        ],
        age=_fused_distribution(fused.age),
        gender=_fused_distribution(fused.gender),
        race=_fused_distribution(fused.race),
        evidence=fused.evidence,
        weight=float(fused.weight),
    )


def _identity(event: face_event_pb2.FaceEvent, identity: IdentityRef | None) -> None:
    if identity is not None:
        event.identity_id = identity.identity_id
        event.identity_name = identity.name
        event.identity_distance = float(identity.distance)


def best_shot(stream_id: str, summary: TrackSummary) -> face_event_pb2.BestShot | None:
    shot = summary.best_shot
    if shot is None:
        return None
    out = face_event_pb2.BestShot(
        stream_id=stream_id, seq=shot.seq, box=_box(shot.box), quality=float(shot.quality)
    )
    out.pts.FromNanoseconds(round(shot.t * 1e9))
    return out


def track_summary(summary: TrackSummary) -> face_event_pb2.TrackSummary:
    out = face_event_pb2.TrackSummary(
        first_seq=summary.first_seq,
        last_seq=summary.last_seq,
        observations=summary.observations,
        analyzed_observations=summary.analyzed,
        end_reason=summary.end_reason,
    )
    out.first_pts.FromNanoseconds(round(summary.first_t * 1e9))
    out.last_pts.FromNanoseconds(round(summary.last_t * 1e9))
    return out


def face_events(
    message: analysis_pb2.FrameAnalysis,
    out: FrameOut,
    *,
    publish_embeddings: bool,
) -> list[face_event_pb2.FaceEvent]:
    """The events of one applied frame, in this order: tracks started, one observation per face
    (detector order), identities resolved, tracks lost and ended, the stream's end."""
    stream_id = message.stream_id
    masks = {f.face_index: f.parsing for f in message.faces if f.parsing.class_ids}
    events: list[face_event_pb2.FaceEvent] = []

    def base(kind: face_event_pb2.FaceEventType.ValueType) -> face_event_pb2.FaceEvent:
        event = face_event_pb2.FaceEvent(type=kind, stream_id=stream_id, seq=message.seq)
        event.pts.CopyFrom(message.pts)
        event.capture_time.CopyFrom(message.capture_time)
        return event

    def lifecycle(kinds: set[str]) -> None:
        for item in out.lifecycle:
            if item.kind not in kinds:
                continue
            event = base(EVENT_TYPES[item.kind])
            if item.track is not None:
                tr = item.track
                event.track_id = tr.track_id
                _identity(event, tr.identity)
                event.box.CopyFrom(_box(tr.last_box))
                event.fused.CopyFrom(fused_results(tr.fused))
                event.track_observations = tr.observations
                shot = best_shot(stream_id, tr)
                if shot is not None:
                    event.best_shot.CopyFrom(shot)
                if item.kind in ("track_lost", "track_ended"):
                    event.summary.CopyFrom(track_summary(tr))
            events.append(event)

    lifecycle({"track_started"})
    for obs in out.observations:
        face = obs.face
        event = base(face_event_pb2.FACE_EVENT_TYPE_OBSERVATION)
        event.track_id = obs.track_id
        _identity(event, obs.track.identity)
        event.face_index = face.face_index
        event.box.CopyFrom(_box(face.box))
        event.detector_score = float(face.score)
        event.quality = float(obs.quality)
        event.analyzed = face.analyzed
        event.results_seq = face.results_seq if not face.analyzed else message.seq
        if face.analyzed and face.tasks is not None:
            event.raw.CopyFrom(raw_results(face.tasks, masks.get(face.face_index)))
            if publish_embeddings and face.embedding is not None:
                event.embedding.extend(float(v) for v in face.embedding)
        event.fused.CopyFrom(fused_results(obs.track.fused))
        event.models.extend(message.models)
        event.track_observations = obs.track.observations
        shot = best_shot(stream_id, obs.track)
        if shot is not None:
            event.best_shot.CopyFrom(shot)
        events.append(event)
    lifecycle({"identity_resolved", "track_lost", "track_ended", "stream_ended"})
    return events


def track_message(stream_id: str, summary: TrackSummary) -> aggregator_pb2.Track:
    """A track for GetTrack / ListTracks."""
    out = aggregator_pb2.Track(
        stream_id=stream_id,
        track_id=summary.track_id,
        state=TRACK_STATES.get(summary.state, aggregator_pb2.TRACK_STATE_UNSPECIFIED),
        first_seq=summary.first_seq,
        last_seq=summary.last_seq,
        observations=summary.observations,
        analyzed_observations=summary.analyzed,
        last_box=_box(summary.last_box),
        fused=fused_results(summary.fused),
        best_quality=float(summary.best_shot.quality) if summary.best_shot else 0.0,
    )
    out.first_pts.FromNanoseconds(round(summary.first_t * 1e9))
    out.last_pts.FromNanoseconds(round(summary.last_t * 1e9))
    if summary.identity is not None:
        out.identity_id = summary.identity.identity_id
        out.identity_name = summary.identity.name
        out.identity_distance = float(summary.identity.distance)
    shot = best_shot(stream_id, summary)
    if shot is not None:
        out.best_shot.CopyFrom(shot)
    return out
