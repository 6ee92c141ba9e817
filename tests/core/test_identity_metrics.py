"""Tests for faceflow.core.identity_metrics: named recall, false names, fragmentation, merges,
same-frame shared identities, identity IDF1, time to name, and pooling by summed counts."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pytest

from faceflow.core.evaluation import EvalFrame, evaluate
from faceflow.core.identity_metrics import (
    HypFace,
    IdentityFrame,
    IdentityMetrics,
    TruthFace,
    identity_metrics,
    pool_identity_metrics,
)

# --- builders --------------------------------------------------------------------------------------


def box(x: float, size: float = 60.0) -> tuple[float, float, float, float]:
    return (x, 0.0, x + size, size)


def gt(person: str, x: float, *, size: float = 60.0, visible: bool = True, appearance: str = "") -> TruthFace:
    return TruthFace(person=person, box=box(x, size), visible=visible, appearance=appearance)


def hyp(x: float, track: str, identity: str | None = None, name: str = "", size: float = 60.0) -> HypFace:
    return HypFace(box=box(x, size), track_id=track, identity_id=identity, name=name)


def frame(k: int, truth: list[TruthFace] | None, hyps: list[HypFace], fps: float = 10.0) -> IdentityFrame:
    return IdentityFrame(key=k, t=k / fps, truth=truth, hyps=hyps)


def scores(frames: list[IdentityFrame], enrolled: tuple[str, ...] = ("alice",), **kw: Any) -> dict[str, Any]:
    return identity_metrics(frames, enrolled=enrolled, **kw).as_dict()


# --- the table of behaviours ------------------------------------------------------------------------

CASES: list[tuple[str, list[IdentityFrame], tuple[str, ...], dict[str, Any]]] = [
    (
        "two faces in one frame with one identity: one violation",
        [
            frame(0, [gt("alice", 0), gt("bob", 200)], [hyp(0, "t1", "id-a"), hyp(200, "t2", "id-a")]),
            frame(1, [gt("alice", 0), gt("bob", 200)], [hyp(0, "t1", "id-a"), hyp(200, "t2", "anon-b")]),
        ],
        ("alice",),
        {"same_frame_shared_identity": 1, "persons_by_identity": {"anon-b": 1, "id-a": 2}},
    ),
    (
        "a shared identity counts without ground truth too",
        [frame(0, None, [hyp(0, "t1", "anon-x"), hyp(200, "t2", "anon-x"), hyp(400, "t3", "anon-x")])],
        (),
        {"same_frame_shared_identity": 1, "frames_scored": 0, "matched_faces": 0},
    ),
    (
        "a stranger named as the enrolled person: a false name",
        [frame(0, [gt("alice", 0), gt("stranger", 200)], [hyp(0, "t1"), hyp(200, "t2", "id-a", "alice")])],
        ("alice",),
        {
            "false_names": 1,
            "stranger_faces_named": 1,
            "named_faces": 1,
            "matched_faces": 2,
            "false_name_rate": 0.5,
            "false_name_share_of_named": 1.0,
            "named_recall": 0.0,
        },
    ),
    (
        "the enrolled person named as another enrolled person: a false name, no stranger",
        [frame(0, [gt("alice", 0)], [hyp(0, "t1", "id-b", "bob")])],
        ("alice", "bob"),
        {"false_names": 1, "stranger_faces_named": 0, "named_recall": 0.0, "false_name_rate": 1.0},
    ),
    (
        "the enrolled person named right: recall 1, no false name",
        [frame(k, [gt("alice", 0)], [hyp(0, "t1", "id-a", "alice")]) for k in range(3)],
        ("alice",),
        {"named_recall": 1.0, "false_names": 0, "false_name_rate": 0.0, "identities_per_person": 1.0},
    ),
    (
        "fragmentation: one person, three identities",
        [frame(k, [gt("alice", 0)], [hyp(0, f"t{k}", f"anon-{k}")]) for k in range(3)],
        ("alice",),
        {"identities_per_person": 3.0, "identities_by_person": {"alice": 3}, "persons_per_identity": 1.0},
    ),
    (
        "a merge: two persons, one identity",
        [
            frame(0, [gt("alice", 0)], [hyp(0, "t1", "anon-1")]),
            frame(1, [gt("bob", 0)], [hyp(0, "t2", "anon-1")]),
        ],
        (),
        {"persons_per_identity": 2.0, "persons_by_identity": {"anon-1": 2}, "identities_per_person": 1.0},
    ),
    (
        "recall ignores faces under 40 px",
        [
            frame(0, [gt("alice", 0, size=39.0)], [hyp(0, "t1", size=39.0)]),
            frame(1, [gt("alice", 0, size=39.0)], [hyp(0, "t1", size=39.0)]),
            frame(2, [gt("alice", 0, size=40.0)], [hyp(0, "t1", "id-a", "alice", size=40.0)]),
        ],
        ("alice",),
        {"recall_faces": 1, "named_correct": 1, "named_recall": 1.0, "matched_faces": 3},
    ),
    (
        "an unmatched face is not named",
        [frame(0, [gt("alice", 0)], [hyp(500, "t1", "id-a", "alice")])],
        ("alice",),
        {"named_recall": 0.0, "matched_faces": 0, "false_name_rate": None, "unmatched_named": 1},
    ),
    (
        "an occluded face is neither a miss nor a match",
        [frame(0, [gt("alice", 0, visible=False)], [hyp(0, "t1", "id-b", "bob")])],
        ("alice",),
        {"gt_faces": 0, "recall_faces": 0, "named_recall": None, "unmatched_named": 0, "id_num_hyp": 0},
    ),
    (
        "faces without an identity count as neither identities nor persons",
        [frame(0, [gt("alice", 0)], [hyp(0, "t1")])],
        ("alice",),
        {"identities_per_person": None, "persons_without_identity": 1, "persons_per_identity": None},
    ),
]


@pytest.mark.parametrize(
    ("frames", "enrolled", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_identity_metrics_table(
    frames: list[IdentityFrame], enrolled: tuple[str, ...], expected: dict[str, Any]
) -> None:
    got = scores(frames, enrolled)
    assert {k: got[k] for k in expected} == expected


# --- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: TruthFace(person="", box=box(0)), ValueError, "person: expected a non-empty str, got ''"),
        (lambda: TruthFace(person="a", box=(0, 0, 1)), ValueError, "box: expected shape [4]"),
        (lambda: TruthFace(person="a", box=box(0), visible=1), ValueError, "visible: expected a bool, got 1"),
        (lambda: HypFace(box=box(0), track_id=""), ValueError, "track_id: expected a non-empty str"),
        (lambda: HypFace(box=box(0), track_id="t", identity_id=""), ValueError, "identity_id: expected"),
        (lambda: IdentityFrame(key=0, t=math.nan, truth=None), ValueError, "t: expected a finite number"),
        (
            lambda: IdentityFrame(key=0, t=0.0, truth=[gt("a", 0), gt("a", 100)]),
            ValueError,
            "truth[1]: expected each person at most once a frame, got 'a' twice",
        ),
        (lambda: IdentityFrame(key=0, t=0.0, truth=None, hyps=[1]), TypeError, "hyps[0]: expected a HypFace"),
        (lambda: identity_metrics([{}], enrolled=()), TypeError, "frames[0]: expected an IdentityFrame"),
        (lambda: identity_metrics([], enrolled="alice"), TypeError, "enrolled: expected a collection"),
        (lambda: identity_metrics([], enrolled=(), iou_threshold=0), ValueError, "iou_threshold"),
        (lambda: pool_identity_metrics({}), ValueError, "expected the metrics of at least one stream"),
        (lambda: IdentityFrame(key=0, t=0.0, truth=None), None, None),
    ],
)
def test_validation(build: Any, error: type[Exception] | None, message: str | None) -> None:
    if error is None:
        build()
        return
    with pytest.raises(error, match=re.escape(message or "")):
        build()


# --- IDF1 -----------------------------------------------------------------------------------------------


def test_identity_idf1_agrees_with_evaluate_when_ids_are_unique_in_each_frame() -> None:
    rng = np.random.default_rng(7)
    frames, eval_frames = [], []
    for k in range(40):
        truth = [gt(p, 150.0 * i + rng.normal(0, 3)) for i, p in enumerate(("alice", "bob", "carol"))]
        labels = (
            rng.permutation(["anon-1", "anon-2", "anon-3"]) if k % 9 == 0 else ["anon-1", "anon-2", "anon-3"]
        )
        hyps = [
            hyp(150.0 * i + rng.normal(0, 6), f"t{i}", str(labels[i])) for i in range(3) if rng.random() > 0.1
        ]
        frames.append(frame(k, truth, hyps))
        eval_frames.append(
            EvalFrame(
                key=k,
                gt=[(f.person, f.box) for f in truth],
                hyp=[(h.identity_id or "", h.box) for h in hyps],
            )
        )
    got = identity_metrics(frames, enrolled=())
    want = evaluate(eval_frames)
    assert (got.idtp, got.id_num_gt, got.id_num_hyp) == (want.idtp, want.num_gt, want.num_hyp)
    assert got.idf1 == pytest.approx(want.idf1)


def test_identity_idf1_takes_one_identity_on_two_faces_and_faces_without_one() -> None:
    frames = [
        frame(0, [gt("alice", 0), gt("bob", 200)], [hyp(0, "t1", "x"), hyp(200, "t2", "x")]),
        frame(1, [gt("alice", 0), gt("bob", 200)], [hyp(0, "t1", "x"), hyp(200, "t2")]),
    ]
    m = identity_metrics(frames, enrolled=())
    # x <-> alice in both frames; bob's faces (one "x", one without identity) are never true positives
    assert (m.idtp, m.id_num_gt, m.id_num_hyp) == (2, 4, 4)
    assert m.idf1 == pytest.approx(0.5)


def test_tracking_idf1_is_evaluate_over_appearances() -> None:
    frames = [frame(k, [gt("alice", 0, appearance=f"alice/{1 + k // 5}")], [hyp(0, "t1")]) for k in range(10)]
    m = identity_metrics(frames, enrolled=())
    assert (m.tracking_idtp, m.tracking_num_gt, m.tracking_num_hyp) == (5, 10, 10)
    assert m.tracking_idf1 == pytest.approx(0.5)


# --- time to name ------------------------------------------------------------------------------------


def test_time_to_name_per_track_of_an_enrolled_person() -> None:
    frames = []
    for k in range(10):
        alice = hyp(0, "t1", "id-a" if k >= 3 else "anon-1", "alice" if k >= 3 else "")
        carol = hyp(200, "t2", "id-c", "carol") if k >= 2 else hyp(200, "t2")
        stranger = hyp(400, "t3", "anon-3")
        frames.append(frame(k, [gt("alice", 0), gt("carol", 200), gt("zed", 400)], [alice, carol, stranger]))
    frames.append(frame(10, [gt("alice", 0)], [hyp(0, "t4")]))  # alice again, never named
    m = identity_metrics(frames, enrolled=("alice", "carol"))
    per_track = {t.track_id: (t.person, t.seconds) for t in m.tracks_to_name}
    assert per_track["t1"] == ("alice", pytest.approx(0.3))
    assert per_track["t2"] == ("carol", pytest.approx(0.2))
    assert per_track["t4"] == ("alice", None)
    assert "t3" not in per_track  # a stranger's track is not waiting for a name
    d = m.as_dict()["time_to_name"]
    assert d["median"] == pytest.approx(0.25) and d["max"] == pytest.approx(0.3)
    assert (d["tracks"], d["never_named"]) == (3, 1)


# --- pooling and JSON ---------------------------------------------------------------------------------


def test_pooling_sums_counts_instead_of_averaging_rates() -> None:
    a = identity_metrics([frame(0, [gt("alice", 0)], [hyp(0, "t1", "id-a", "alice")])], enrolled=("alice",))
    b = identity_metrics(
        [frame(k, [gt("alice", 0)], [hyp(0, "t1", f"anon-{k}")]) for k in range(3)], enrolled=("alice",)
    )
    pooled = pool_identity_metrics({"cam1": a, "cam2": b})
    assert (a.named_recall, b.named_recall) == (1.0, 0.0)
    assert pooled.named_recall == pytest.approx(1 / 4)  # not (1 + 0) / 2
    assert pooled.identities_by_person == {"cam1/alice": 1, "cam2/alice": 3}
    assert pooled.identities_per_person == pytest.approx(2.0)
    assert pooled.idtp == a.idtp + b.idtp and pooled.id_num_gt == 4
    assert pooled.frames == 4 and [t.track_id for t in pooled.tracks_to_name] == ["cam1/t1", "cam2/t1"]
    alone = pool_identity_metrics({"cam1": a})
    for rate in ("named_recall", "false_name_rate", "identities_per_person", "persons_per_identity", "idf1"):
        assert getattr(alone, rate) == getattr(a, rate), rate


def test_pooling_refuses_streams_scored_differently() -> None:
    a = identity_metrics([], enrolled=("alice",))
    b = identity_metrics([], enrolled=("bob",))
    with pytest.raises(ValueError, match=re.escape("per_stream['cam2']: expected the settings of 'cam1'")):
        pool_identity_metrics({"cam1": a, "cam2": b})


def test_empty_is_json_with_nulls() -> None:
    m = identity_metrics([], enrolled=())
    assert isinstance(m, IdentityMetrics)
    d = json.loads(json.dumps(m.as_dict(), allow_nan=False))
    assert d["named_recall"] is None and d["idf1"] is None and d["time_to_name"]["median"] is None
    assert d["same_frame_shared_identity"] == 0 and d["frames"] == 0
