"""Tracking and identity quality on the generated demo clip, with the real detector and embedder.

The clip (services/faceflow/run/democlip.py) has real faces from photos moving, crossing, occluding
each other and leaving for several seconds, with ground truth. CenterFace and the dlib embedder run
in this process (the models Triton serves), the analyzer's adaptive schedule picks which faces get
an embedding, and the pure core tracks and links them. Scores come from faceflow.core.evaluation
(cross-checked against py-motmetrics in test_evaluation.py).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from faceflow.core.evaluation import EvalFrame, evaluate, identity_accuracy
from faceflow.core.identity import Gallery
from faceflow.core.quality import detection_qualities
from faceflow.core.scheduling import SchedulePolicy, Scheduler
from faceflow.core.stream import FaceIn, FrameIn, StreamAnalytics, StreamConfig, TaskResults
from faceflow.models.centerface import CenterFaceDetector
from faceflow.models.contract import AGE_BINS, ATTRIBUTES, GENDERS, RACES, VISIBILITY_POINTS
from faceflow.models.identity import IdentityEmbedder
from faceflow.run.democlip import DEMO, GroundTruth, generate_clip

pytestmark = pytest.mark.slow

NEUTRAL = TaskResults(
    landmarks68=np.zeros((68, 2), np.float32),
    head_pose=np.zeros(3, np.float32),
    attributes=np.full(len(ATTRIBUTES), 0.5, np.float32),
    occlusion=np.full(len(VISIBILITY_POINTS), 0.1, np.float32),
    age=np.full(len(AGE_BINS), 1 / len(AGE_BINS), np.float32),
    gender=np.full(len(GENDERS), 1 / len(GENDERS), np.float32),
    race=np.full(len(RACES), 1 / len(RACES), np.float32),
)


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[EvalFrame], list[EvalFrame], dict[str, list[str]]]:
    clip = generate_clip(DEMO, tmp_path_factory.mktemp("clip"))
    truth = GroundTruth.load(clip.ground_truth)
    detector = CenterFaceDetector(intra_op_threads=2)
    embedder = IdentityEmbedder()
    scheduler = Scheduler(SchedulePolicy())
    stream = StreamAnalytics("demo", StreamConfig(), Gallery())
    tracks: list[EvalFrame] = []
    people: list[EvalFrame] = []
    identities_per_appearance: dict[str, list[str]] = {}
    with av.open(str(clip.video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 2:
                continue  # 5 fps, as ingest samples the 10 fps clip by default
            rgb = frame.to_ndarray(format="rgb24")
            pts = index / DEMO.fps
            det = detector.detect(rgb)
            qualities = detection_qualities(det.boxes, det.scores, det.keypoints5)
            decisions = scheduler.decide("demo", seq=index, t=pts, boxes=det.boxes, qualities=qualities)
            chosen = [i for i, d in enumerate(decisions) if d.analyze]
            embeddings = embedder.embed(rgb, det.keypoints5[chosen], det.boxes[chosen]) if chosen else []
            emb = dict(zip(chosen, embeddings, strict=True))
            faces = tuple(
                FaceIn(
                    face_index=i,
                    box=det.boxes[i],
                    score=float(det.scores[i]),
                    keypoints5=det.keypoints5[i],
                    analyzed=i in emb,
                    results_seq=decisions[i].results_seq,
                    tasks=NEUTRAL if i in emb else None,
                    embedding=emb.get(i),
                )
                for i in range(len(det))
            )
            out = stream.apply(FrameIn(seq=index, t=pts, capture_ns=0, faces=faces))
            gt = truth.at_pts(pts)
            assert gt is not None, f"no ground truth at {pts}"
            visible = [f for f in gt.faces if not f.occluded]
            ignore = [f.box for f in gt.faces if f.occluded]
            hyp_tracks = [(o.track_id, o.face.box) for o in out.observations]
            hyp_ids = [
                (o.track.identity.identity_id if o.track.identity else "none", o.face.box)
                for o in out.observations
            ]
            tracks.append(
                EvalFrame(
                    key=index, gt=[(f.appearance, f.box) for f in visible], hyp=hyp_tracks, ignore=ignore
                )
            )
            people.append(
                EvalFrame(key=index, gt=[(f.person, f.box) for f in visible], hyp=hyp_ids, ignore=ignore)
            )
            for o in out.observations:
                if o.track.identity is not None:
                    for f in visible:
                        box = np.asarray(f.box)
                        inter = np.clip(
                            np.minimum(box[2:], o.face.box[2:]) - np.maximum(box[:2], o.face.box[:2]), 0, None
                        )
                        if inter.prod() > 0.5 * (box[2] - box[0]) * (box[3] - box[1]):
                            identities_per_appearance.setdefault(f.appearance, []).append(
                                o.track.identity.identity_id
                            )
    return tracks, people, identities_per_appearance


def test_tracks_on_the_demo_clip_have_idf1_at_least_0_9(
    run: tuple[list[EvalFrame], list[EvalFrame], dict[str, list[str]]],
) -> None:
    tracks, _, _ = run
    scores = evaluate(tracks)
    print(f"demo clip tracking: {scores.as_dict()}")
    assert scores.idf1 >= 0.9, scores.as_dict()


def test_identities_follow_people_across_gaps_and_crossings(
    run: tuple[list[EvalFrame], list[EvalFrame], dict[str, list[str]]],
) -> None:
    _, people, per_appearance = run
    scores = identity_accuracy(people)
    print(f"demo clip identities: {scores.as_dict()}")
    assert scores.accuracy >= 0.9, scores.as_dict()
    # a person who leaves for >= 2 s (cameraman/1 -> cameraman/2) comes back with the same identity id
    first = max(set(per_appearance["cameraman/1"]), key=per_appearance["cameraman/1"].count)
    again = max(set(per_appearance["cameraman/2"]), key=per_appearance["cameraman/2"].count)
    assert first == again


def test_the_clip_is_generated_where_asked(tmp_path: Path) -> None:
    clip = generate_clip(DEMO, tmp_path)
    assert clip.video.exists() and clip.ground_truth.exists()
