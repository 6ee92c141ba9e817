"""Scores of a run's face events against a clip's ground truth (the generated demo clip's format).

Observations are matched to ground-truth frames by media time (the mesh samples frames, so seqs
differ from the clip's frame indices). Tracks are scored against the ground truth's *appearances*
(a person who leaves the picture and comes back is a new appearance: a tracker cannot be asked to
bridge that), identities against its *instances*: one person on screen, across all their
appearances (an identity must bridge the gaps). An instance is the person's name unless the clip
shows the same photo twice at once (the crowd clip's mirrored "-2" copies): then the copies are
distinct instances, and an identity that names both is scored as wrong on one of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from faceflow.core.evaluation import EvalFrame, evaluate, identity_accuracy
from faceflow.run.democlip import GroundTruth


def _box(event: Mapping[str, Any]) -> tuple[float, float, float, float]:
    b = event["box"]
    return (float(b["x1"]), float(b["y1"]), float(b["x2"]), float(b["y2"]))


def score_stream(events: Sequence[Mapping[str, Any]], truth: GroundTruth) -> dict[str, Any]:
    """Tracking (IDF1, ID switches, MOTA) and identity scores of one stream's observations."""
    by_frame: dict[int, list[Mapping[str, Any]]] = {}
    keys: dict[int, float] = {}
    for event in events:
        if event.get("type") != "observation" or event.get("box") is None:
            continue
        seq = int(event["seq"])
        by_frame.setdefault(seq, []).append(event)
        keys[seq] = float(event["pts_seconds"])
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
    tracking = evaluate(track_frames).as_dict()
    identities = identity_accuracy(person_frames).as_dict()
    kept: dict[str, bool] = {}
    for appearance in sorted(returns):
        person, _, number = appearance.rpartition("/")
        if number.isdigit() and int(number) > 1:
            before = returns.get(f"{person}/{int(number) - 1}")
            if before:
                kept[appearance] = before.most_common(1)[0][0] == returns[appearance].most_common(1)[0][0]
    return {
        "frames_scored": len(track_frames),
        "tracking": tracking,
        "identities": identities,
        "returns_keep_identity": kept,
    }


def headline(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The few numbers the summary prints (IDF1, ID switches, identity accuracy)."""
    tracking = scores.get("tracking", {})
    identities = scores.get("identities", {})
    return {
        "idf1": tracking.get("idf1"),
        "id_switches": tracking.get("id_switches"),
        "mota": tracking.get("mota"),
        "identity_accuracy": identities.get("accuracy"),
        "returns_keep_identity": scores.get("returns_keep_identity"),
    }
