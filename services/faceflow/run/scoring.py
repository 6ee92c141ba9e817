"""Scores of a run's face events against a clip's ground truth (the generated demo clip's format).

Observations are matched to ground-truth frames by media time (the mesh samples frames, so seqs
differ from the clip's frame indices). Tracks are scored against the ground truth's *appearances*
(a person who leaves the picture and comes back is a new appearance: a tracker cannot be asked to
bridge that), identities against its *instances*: one person on screen, across all their
appearances (an identity must bridge the gaps). An instance is the person's name unless the clip
shows the same photo twice at once (the crowd clip's mirrored "-2" copies): then the copies are
distinct instances, and an identity that names both is scored as wrong on one of them.

The ``identity_metrics`` block (:mod:`faceflow.core.identity_metrics`: named recall, false names,
identities per person, persons per identity, same-frame shared identities, IDF1, time to name) is
computed per stream from the same observations, with each ground-truth instance as the person and
the instance's person as the correct name; a person whose name was enrolled for the run is an
enrolled person, any other a stranger. Unlike the older tracking block it also scores the frames
the mesh analysed without finding a face (``analyzed_frames``): their ground-truth faces are
misses, not skipped. :func:`score_streams` scores every stream and pools them (counts summed,
rates recomputed; never an average of rates).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from faceflow.core.evaluation import (
    EvalFrame,
    IdentityScores,
    MotScores,
    evaluate,
    identity_accuracy,
    pool_mot_scores,
)
from faceflow.core.identity_metrics import (
    DEFAULT_MIN_FACE_PX,
    HypFace,
    IdentityFrame,
    IdentityMetrics,
    TruthFace,
    identity_metrics,
    pool_identity_metrics,
)
from faceflow.run.democlip import GroundTruth

__all__ = [
    "IDENTITY_HEADLINE",
    "headline",
    "identity_frames",
    "score_stream",
    "score_streams",
]

#: The headline keys that come from the identity metrics (headline key -> dotted identity_metrics key).
IDENTITY_HEADLINE: Final[dict[str, str]] = {
    "named_recall": "named_recall",
    "false_name_rate": "false_name_rate",
    "identities_per_person": "identities_per_person",
    "persons_per_identity": "persons_per_identity",
    "same_frame_shared_identity": "same_frame_shared_identity",
    "identity_idf1": "idf1",
    "time_to_name_median_s": "time_to_name.median",
}


def _box(event: Mapping[str, Any]) -> tuple[float, float, float, float]:
    b = event["box"]
    return (float(b["x1"]), float(b["y1"]), float(b["x2"]), float(b["y2"]))


def _observations(
    events: Sequence[Mapping[str, Any]],
) -> tuple[dict[int, list[Mapping[str, Any]]], dict[int, float]]:
    by_frame: dict[int, list[Mapping[str, Any]]] = {}
    keys: dict[int, float] = {}
    for event in events:
        if event.get("type") != "observation" or event.get("box") is None:
            continue
        seq = int(event["seq"])
        by_frame.setdefault(seq, []).append(event)
        keys[seq] = float(event["pts_seconds"])
    return by_frame, keys


def identity_frames(
    events: Sequence[Mapping[str, Any]],
    truth: GroundTruth,
    *,
    analyzed_frames: Mapping[int, float] | None = None,
) -> list[IdentityFrame]:
    """One stream's observations (faces.jsonl objects) and ground truth as identity-metric frames.

    ``analyzed_frames`` (seq -> media time of every frame the mesh analysed) adds the frames without
    an observation; without it only frames with an observation are known. A frame whose time has no
    ground-truth frame is kept with ``truth=None`` (it still counts for same-frame shared identities).
    """
    by_frame, keys = _observations(events)
    times = dict(analyzed_frames or {})
    times.update(keys)
    out = []
    for seq in sorted(times):
        gt = truth.at_pts(times[seq])
        faces = (
            None
            if gt is None
            else [
                TruthFace(
                    person=f.instance,
                    name=f.person,
                    appearance=f.appearance,
                    box=f.box,
                    visible=not f.occluded,
                )
                for f in gt.faces
            ]
        )
        hyps = []
        for o in by_frame.get(seq, ()):
            identity = o.get("identity") or {}
            hyps.append(
                HypFace(
                    box=_box(o),
                    track_id=str(o.get("track_id") or f"untracked-{seq}-{o.get('face_index')}"),
                    identity_id=str(identity["id"]) if identity.get("id") else None,
                    name=str(identity.get("name") or ""),
                )
            )
        out.append(IdentityFrame(key=seq, t=times[seq], truth=faces, hyps=hyps))
    return out


@dataclass(frozen=True)
class _Scored:
    frames_scored: int
    tracking: MotScores
    identities: IdentityScores
    returns_keep_identity: dict[str, bool]
    metrics: IdentityMetrics

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_scored": self.frames_scored,
            "tracking": self.tracking.as_dict(),
            "identities": self.identities.as_dict(),
            "returns_keep_identity": self.returns_keep_identity,
            "identity_metrics": self.metrics.as_dict(),
        }


def _score(
    events: Sequence[Mapping[str, Any]],
    truth: GroundTruth,
    enrolled: Collection[str],
    min_face_px: float,
    analyzed_frames: Mapping[int, float] | None,
) -> _Scored:
    by_frame, keys = _observations(events)
    track_frames: list[EvalFrame] = []
    person_frames: list[EvalFrame] = []
    returns: dict[str, Counter[str]] = {}
    for seq in sorted(keys):
        gt = truth.at_pts(keys[seq])
        if gt is None:
            continue
        visible = [f for f in gt.faces if not f.occluded]
        ignore = [f.box for f in gt.faces if f.occluded]
        observations = by_frame[seq]
        hyp_tracks = [(str(o["track_id"]), _box(o)) for o in observations]
        hyp_ids = [(str((o.get("identity") or {}).get("id") or "none"), _box(o)) for o in observations]
        track_frames.append(
            EvalFrame(key=seq, gt=[(f.appearance, f.box) for f in visible], hyp=hyp_tracks, ignore=ignore)
        )
        person_frames.append(
            EvalFrame(key=seq, gt=[(f.instance, f.box) for f in visible], hyp=hyp_ids, ignore=ignore)
        )
        for f in visible:
            fb = np.asarray(f.box, np.float64)
            for o in observations:
                ob = np.asarray(_box(o))
                inter = np.clip(np.minimum(fb[2:], ob[2:]) - np.maximum(fb[:2], ob[:2]), 0, None).prod()
                identity = (o.get("identity") or {}).get("id")
                if identity and inter > 0.5 * (fb[2] - fb[0]) * (fb[3] - fb[1]):
                    returns.setdefault(f.appearance, Counter())[str(identity)] += 1
    kept: dict[str, bool] = {}
    for appearance in sorted(returns):
        person, _, number = appearance.rpartition("/")
        if number.isdigit() and int(number) > 1:
            before = returns.get(f"{person}/{int(number) - 1}")
            if before:
                kept[appearance] = before.most_common(1)[0][0] == returns[appearance].most_common(1)[0][0]
    metrics = identity_metrics(
        identity_frames(events, truth, analyzed_frames=analyzed_frames),
        enrolled=enrolled,
        min_face_px=min_face_px,
    )
    return _Scored(
        frames_scored=len(track_frames),
        tracking=evaluate(track_frames),
        identities=identity_accuracy(person_frames),
        returns_keep_identity=kept,
        metrics=metrics,
    )


def score_stream(
    events: Sequence[Mapping[str, Any]],
    truth: GroundTruth,
    *,
    enrolled: Collection[str] = (),
    min_face_px: float = DEFAULT_MIN_FACE_PX,
    analyzed_frames: Mapping[int, float] | None = None,
) -> dict[str, Any]:
    """Tracking (IDF1, ID switches, MOTA), identity accuracy and the identity metrics of one stream.

    Args:
        events: the stream's faces.jsonl objects.
        truth: its ground truth.
        enrolled: the names enrolled for the run (persons with these names are enrolled persons).
        min_face_px: ground-truth faces lower than this do not count toward named recall.
        analyzed_frames: seq -> media time of every frame the mesh analysed (see :func:`identity_frames`).
    """
    return _score(events, truth, enrolled, min_face_px, analyzed_frames).as_dict()


def score_streams(
    events: Sequence[Mapping[str, Any]],
    truths: Mapping[str, GroundTruth],
    *,
    enrolled: Collection[str] = (),
    min_face_px: float = DEFAULT_MIN_FACE_PX,
    analyzed_frames: Mapping[str, Mapping[int, float]] | None = None,
) -> dict[str, Any]:
    """Every stream with a ground truth scored (:func:`score_stream`), and the pool of them.

    Returns ``{**headline(pooled), "per_stream": {sid: scores}, "pooled": pooled}``; ``pooled`` has
    the keys of one stream's scores, from summed counts (``returns_keep_identity`` keys get a
    ``"<stream>/"`` prefix when there are several streams). Empty ``truths``: an empty dict.
    """
    if not truths:
        return {}
    frames = analyzed_frames or {}
    scored = {
        sid: _score(
            [e for e in events if e.get("stream_id") == sid], truth, enrolled, min_face_px, frames.get(sid)
        )
        for sid, truth in sorted(truths.items())
    }
    single = len(scored) == 1
    identities = [s.identities for s in scored.values()]
    correct, matches = sum(s.correct for s in identities), sum(s.num_matches for s in identities)
    pooled = {
        "streams": sorted(scored),
        "frames_scored": sum(s.frames_scored for s in scored.values()),
        "tracking": pool_mot_scores([s.tracking for s in scored.values()]).as_dict(),
        "identities": {
            "accuracy": correct / matches if matches else None,
            "num_gt": sum(s.num_gt for s in identities),
            "num_matches": matches,
            "correct": correct,
        },
        "returns_keep_identity": {
            (k if single else f"{sid}/{k}"): v
            for sid, s in scored.items()
            for k, v in s.returns_keep_identity.items()
        },
        "identity_metrics": pool_identity_metrics({sid: s.metrics for sid, s in scored.items()}).as_dict(),
    }
    return {
        **headline(pooled),
        "per_stream": {sid: s.as_dict() for sid, s in scored.items()},
        "pooled": pooled,
    }


def headline(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The few numbers the summary prints: IDF1, ID switches, identity accuracy and the identity
    metrics users judge by (named recall, false-name rate, identities per person, persons per
    identity, same-frame shared identities, identity IDF1, median time to name)."""
    tracking = scores.get("tracking", {})
    identities = scores.get("identities", {})
    metrics = scores.get("identity_metrics") or {}
    out = {
        "idf1": tracking.get("idf1"),
        "id_switches": tracking.get("id_switches"),
        "mota": tracking.get("mota"),
        "identity_accuracy": identities.get("accuracy"),
        "returns_keep_identity": scores.get("returns_keep_identity"),
    }
    if metrics:
        for key, source in IDENTITY_HEADLINE.items():
            value: Any = metrics
            for part in source.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            out[key] = value
    return out
