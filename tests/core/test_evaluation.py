"""Tests for faceflow.core.evaluation, including a cross-check against py-motmetrics."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import motmetrics as mm
import numpy as np
import pytest

from faceflow.core.evaluation import EvalFrame, evaluate, identity_accuracy, pool_mot_scores
from faceflow.core.geometry import iou_matrix

# --- builders --------------------------------------------------------------------------------------


def box(x: float, y: float = 0.0, size: float = 10.0) -> tuple[float, float, float, float]:
    return (x, y, x + size, y + size)


A = box(0)
B = box(100)
FAR = box(500)


def frame(key: int, gt: dict[str, Any], hyp: dict[str, Any], ignore: tuple[Any, ...] = ()) -> EvalFrame:
    return EvalFrame(key=key, gt=list(gt.items()), hyp=list(hyp.items()), ignore=ignore)


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"key": 0}, None, None),
        ({"key": 1.5, "gt": [("a", A)], "hyp": [("1", np.array(A)), ("1", B)], "ignore": [FAR]}, None, None),
        ({"key": float("nan")}, ValueError, "key: expected a finite frame index or pts, got nan"),
        ({"key": True}, ValueError, "key: expected a finite frame index or pts"),
        (
            {"key": 0, "gt": [("a", A), ("a", B)]},
            ValueError,
            "gt[1]: expected unique ids in a frame, got 'a' twice",
        ),
        ({"key": 0, "gt": [("", A)]}, ValueError, "gt[0]: expected a non-empty str id, got ''"),
        ({"key": 0, "gt": [(1, A)]}, ValueError, "gt[0]: expected a non-empty str id, got 1"),
        ({"key": 0, "hyp": [("1", (0, 0, 1))]}, ValueError, "hyp[0] box: expected shape [4]"),
        ({"key": 0, "hyp": [("1",)]}, TypeError, "hyp[0]: expected an (id, box) pair"),
        ({"key": 0, "hyp": "ab"}, TypeError, "hyp: expected a sequence of (id, box) pairs, got str"),
        (
            {"key": 0, "ignore": [(0, 0, 1, float("inf"))]},
            ValueError,
            "ignore[0]: expected finite coordinates",
        ),
    ],
)
def test_eval_frame_validation(
    kwargs: dict[str, Any], error: type[Exception] | None, message: str | None
) -> None:
    if error is None:
        EvalFrame(**kwargs)
        return
    with pytest.raises(error, match=re.escape(message or "")):
        EvalFrame(**kwargs)


@pytest.mark.parametrize(
    ("frames", "kwargs", "error", "message"),
    [
        ([frame(3, {}, {"1": A, "2": B})], {}, None, None),
        ([EvalFrame(key=3, hyp=[("1", A), ("1", B)])], {}, ValueError, "frame 3: hyp: expected unique ids"),
        ([frame(0, {}, {})], {"iou_threshold": 0.0}, ValueError, "iou_threshold: expected a float in (0, 1]"),
        ([frame(0, {}, {})], {"iou_threshold": "0.5"}, TypeError, "iou_threshold: expected a float"),
        ([{"key": 0}], {}, TypeError, "frames[0]: expected an EvalFrame, got dict"),
    ],
)
def test_evaluate_rejects(
    frames: list[Any], kwargs: dict[str, Any], error: type[Exception] | None, message: str | None
) -> None:
    if error is None:
        evaluate(frames, **kwargs)
        return
    with pytest.raises(error, match=re.escape(message or "")):
        evaluate(frames, **kwargs)


# --- hand-made cases with known answers -----------------------------------------------------------


def perfect() -> list[EvalFrame]:
    return [frame(k, {"a": box(k), "b": box(100 + k)}, {"1": box(k), "2": box(100 + k)}) for k in range(10)]


def swap_halfway() -> list[EvalFrame]:
    frames = []
    for k in range(10):
        first, second = ("1", "2") if k < 5 else ("2", "1")
        frames.append(frame(k, {"a": box(k), "b": box(100 + k)}, {first: box(k), second: box(100 + k)}))
    return frames


def gap_and_false_positive() -> list[EvalFrame]:
    # 'a' is tracked, missed at frame 2, tracked again; a false positive appears at frame 3.
    hyps: list[dict[str, Any]] = [{"1": A}, {"1": A}, {}, {"1": A, "9": FAR}]
    return [frame(k, {"a": A}, h) for k, h in enumerate(hyps)]


def with_ignore() -> list[EvalFrame]:
    # hyp '5' sits on an ignore region (an occluded face): it counts as nothing.
    return [
        frame(0, {"a": A}, {"1": A, "5": FAR}, ignore=(box(501),)),
        frame(1, {"a": A}, {"1": A, "5": box(300)}),
    ]


EXPECTED: dict[str, dict[str, Any]] = {
    "perfect": {
        "idf1": 1.0, "idp": 1.0, "idr": 1.0, "idtp": 20, "idfp": 0, "idfn": 0, "id_switches": 0,
        "fragmentations": 0, "mota": 1.0, "motp": 1.0, "num_frames": 10, "num_gt": 20, "num_hyp": 20,
        "num_ignored": 0, "num_matches": 20, "false_positives": 0, "misses": 0,
    },
    "swap_halfway": {
        "idf1": 0.5, "idp": 0.5, "idr": 0.5, "idtp": 10, "idfp": 10, "idfn": 10, "id_switches": 2,
        "fragmentations": 0, "mota": 0.9, "motp": 1.0, "num_frames": 10, "num_gt": 20, "num_hyp": 20,
        "num_ignored": 0, "num_matches": 20, "false_positives": 0, "misses": 0,
    },
    "gap_and_false_positive": {
        "idf1": 6 / 8, "idp": 3 / 4, "idr": 3 / 4, "idtp": 3, "idfp": 1, "idfn": 1, "id_switches": 0,
        "fragmentations": 1, "mota": 0.5, "motp": 1.0, "num_frames": 4, "num_gt": 4, "num_hyp": 4,
        "num_ignored": 0, "num_matches": 3, "false_positives": 1, "misses": 1,
    },
    "with_ignore": {
        "idf1": 4 / 5, "idp": 2 / 3, "idr": 1.0, "idtp": 2, "idfp": 1, "idfn": 0, "id_switches": 0,
        "fragmentations": 0, "mota": 0.5, "motp": 1.0, "num_frames": 2, "num_gt": 2, "num_hyp": 3,
        "num_ignored": 1, "num_matches": 2, "false_positives": 1, "misses": 0,
    },
}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "frames"),
    [
        ("perfect", perfect()),
        ("swap_halfway", swap_halfway()),
        ("gap_and_false_positive", gap_and_false_positive()),
        ("with_ignore", with_ignore()),
    ],
)
def test_known_answers(name: str, frames: list[EvalFrame]) -> None:
    scores = evaluate(frames)
    got = scores.as_dict()
    assert got.pop("iou_threshold") == 0.5
    assert got == pytest.approx(EXPECTED[name])
    assert json.loads(json.dumps(got)) == got


def test_clear_mot_keeps_last_frames_match() -> None:
    # Frame 1: hyp '2' overlaps 'a' better, but '1' still overlaps enough: no switch, '2' is an FP.
    frames = [frame(0, {"a": box(0)}, {"1": box(0)}), frame(1, {"a": box(0)}, {"1": box(2), "2": box(0)})]
    scores = evaluate(frames)
    assert (scores.id_switches, scores.false_positives, scores.num_matches) == (0, 1, 2)
    assert scores.motp == pytest.approx((1.0 + 80 / 120) / 2)


@pytest.mark.parametrize(("threshold", "matches"), [(0.5, 0), (0.3, 1), (1.0, 0)])
def test_iou_threshold(threshold: float, matches: int) -> None:
    # IoU of these two boxes: 6 * 10 / (2 * 100 - 60) = 0.4286
    scores = evaluate([frame(0, {"a": box(0)}, {"1": box(4)})], iou_threshold=threshold)
    assert scores.num_matches == matches
    assert scores.iou_threshold == threshold


def test_empty_sequence_is_nan_and_json_none() -> None:
    scores = evaluate([])
    assert math.isnan(scores.idf1) and math.isnan(scores.mota) and math.isnan(scores.motp)
    d = scores.as_dict()
    assert d["idf1"] is None and d["num_frames"] == 0
    json.dumps(d, allow_nan=False)


# --- cross-check with py-motmetrics -----------------------------------------------------------------


def random_sequence(seed: int, jitter: float = 0.18, n_frames: int = 60) -> list[EvalFrame]:
    """Seeded objects with a noisy tracker: jitter around the 0.5 IoU line, misses, FPs, id changes."""
    rng = np.random.default_rng(seed)
    n_obj = int(rng.integers(2, 7))
    pos = rng.uniform(0, 300, (n_obj, 2))
    vel = rng.uniform(-8, 8, (n_obj, 2))
    size = rng.uniform(20, 60, n_obj)
    hyp_of = list(range(n_obj))
    next_hyp = n_obj
    frames = []
    for k in range(n_frames):
        pos += vel
        present = rng.random(n_obj) > 0.1
        gt = [(f"{i}", (*pos[i], *(pos[i] + size[i]))) for i in range(n_obj) if present[i]]
        if rng.random() < 0.08:  # two hypotheses swap
            i, j = rng.choice(n_obj, 2, replace=False)
            hyp_of[i], hyp_of[j] = hyp_of[j], hyp_of[i]
        if rng.random() < 0.05:  # a hypothesis gets a fresh id
            hyp_of[int(rng.integers(n_obj))] = next_hyp
            next_hyp += 1
        hyp = []
        for i in range(n_obj):
            if rng.random() < 0.12:
                continue
            noise = rng.normal(0, size[i] * jitter, 4)
            hyp.append((f"{hyp_of[i]}", tuple(np.r_[pos[i], pos[i] + size[i]] + noise)))
        for _ in range(int(rng.poisson(0.4))):
            xy = rng.uniform(0, 300, 2)
            hyp.append((f"{next_hyp}", (*xy, *(xy + 30))))
            next_hyp += 1
        frames.append(EvalFrame(key=k, gt=gt, hyp=hyp))
    return frames


def motmetrics_summary(frames: list[EvalFrame]) -> dict[str, float]:
    acc = mm.MOTAccumulator(auto_id=True)
    for f in frames:
        gt_boxes = np.array([b for _, b in f.gt], float).reshape(-1, 4)
        hyp_boxes = np.array([b for _, b in f.hyp], float).reshape(-1, 4)
        dist = 1.0 - iou_matrix(gt_boxes, hyp_boxes)
        dist[dist > 0.5] = np.nan
        acc.update([int(g) for g, _ in f.gt], [int(h) for h, _ in f.hyp], dist)
    names = [
        "idf1", "idp", "idr", "idtp", "num_switches", "mota", "motp", "num_fragmentations",
        "num_misses", "num_false_positives", "num_detections", "num_objects",
    ]  # fmt: skip
    summary = mm.metrics.create().compute(acc, metrics=names, name="seq")
    return {name: float(summary[name].iloc[0]) for name in names}


@pytest.mark.parametrize(("seed", "jitter"), [(s, j) for s in range(5) for j in (0.04, 0.18)])
def test_agrees_with_motmetrics(seed: int, jitter: float) -> None:
    frames = random_sequence(seed, jitter)
    ours = evaluate(frames)
    ref = motmetrics_summary(frames)
    assert ref["num_switches"] > 0 and ref["num_fragmentations"] > 0  # the sequences exercise them
    assert ours.idf1 == pytest.approx(ref["idf1"], abs=1e-9)
    assert ours.idp == pytest.approx(ref["idp"], abs=1e-9)
    assert ours.idr == pytest.approx(ref["idr"], abs=1e-9)
    assert ours.idtp == ref["idtp"]
    assert ours.id_switches == ref["num_switches"]
    assert ours.mota == pytest.approx(ref["mota"], abs=1e-9)
    assert ours.motp == pytest.approx(1.0 - ref["motp"], abs=1e-9)  # motmetrics: mean distance
    assert ours.fragmentations == ref["num_fragmentations"]
    assert (ours.misses, ours.false_positives) == (ref["num_misses"], ref["num_false_positives"])
    assert (ours.num_matches, ours.num_gt) == (ref["num_detections"], ref["num_objects"])


# --- identity accuracy -------------------------------------------------------------------------------


def test_identity_accuracy() -> None:
    frames = []
    for k in range(10):
        # alice is named anon-1 for 8 frames and anon-2 for 2; bob is anon-3, and anon-3 names alice once.
        alice_id = "anon-1" if k < 8 else "anon-2"
        hyp = [(alice_id if k != 5 else "anon-3", box(k)), ("anon-3", box(100 + k))]
        frames.append(EvalFrame(key=k, gt=[("alice", box(k)), ("bob", box(100 + k))], hyp=hyp))
    frames.append(EvalFrame(key=10, gt=[("carol", box(300))], hyp=[]))  # never matched
    scores = identity_accuracy(frames)
    assert scores.mapping == {"anon-1": "alice", "anon-2": "alice", "anon-3": "bob"}
    assert (scores.num_gt, scores.num_matches, scores.correct) == (21, 20, 19)
    assert scores.accuracy == pytest.approx(19 / 20)
    assert scores.identities_per_person == {"alice": 3, "bob": 1}
    assert scores.persons_per_identity == {"anon-1": 1, "anon-2": 1, "anon-3": 2}
    assert json.loads(json.dumps(scores.as_dict()))["accuracy"] == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("hyp_labels", "mapping", "accuracy"),
    [
        (("x", "x"), {"x": "alice"}, 0.5),  # one identity for two people in one frame: allowed
        (("x", "y"), {"x": "alice", "y": "bob"}, 1.0),
        (("y", "x"), {"x": "bob", "y": "alice"}, 1.0),
    ],
)
def test_identity_accuracy_table(
    hyp_labels: tuple[str, str], mapping: dict[str, str], accuracy: float
) -> None:
    frames = [
        EvalFrame(key=0, gt=[("alice", A), ("bob", B)], hyp=[(hyp_labels[0], A), (hyp_labels[1], B)]),
    ]
    scores = identity_accuracy(frames)
    assert scores.mapping == mapping and scores.accuracy == accuracy


def test_identity_accuracy_empty() -> None:
    scores = identity_accuracy([])
    assert math.isnan(scores.accuracy) and scores.as_dict()["accuracy"] is None


# --- pooling -------------------------------------------------------------------------------------------


def test_pool_mot_scores_sums_counts_and_recomputes_ratios() -> None:
    one = evaluate([frame(k, {"a": box(k)}, {"1": box(k)}) for k in range(4)])  # perfect, 4 boxes
    two = evaluate([frame(k, {"b": box(k)}, {}) for k in range(12)])  # all missed, 12 boxes
    pooled = pool_mot_scores([one, two])
    assert (one.idf1, two.idf1) == (1.0, 0.0)
    assert pooled.idf1 == pytest.approx(2 * 4 / (16 + 4))  # not (1.0 + 0.0) / 2
    assert (pooled.num_gt, pooled.num_hyp, pooled.idtp, pooled.misses) == (16, 4, 4, 12)
    assert pooled.mota == pytest.approx(1 - 12 / 16)
    assert pooled.motp == pytest.approx(one.motp)
    alone = pool_mot_scores([one])
    assert alone.as_dict() | {"motp": None} == one.as_dict() | {"motp": None}


@pytest.mark.parametrize(
    ("scores", "error", "message"),
    [
        ([], ValueError, "scores: expected the scores of at least one sequence, got none"),
        (["x"], TypeError, "scores[0]: expected MotScores, got str"),
        (
            [evaluate([]), evaluate([], iou_threshold=0.3)],
            ValueError,
            "scores[1].iou_threshold: expected 0.5 (as scores[0]), got 0.3",
        ),
    ],
)
def test_pool_mot_scores_rejects(scores: list[Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        pool_mot_scores(scores)
