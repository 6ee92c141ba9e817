"""Tests for faceflow.core.scheduling: the analyzer's face-aware scheduling policy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from faceflow.core.scheduling import REASONS, FaceDecision, ScheduleMode, SchedulePolicy, Scheduler


def face(x: float, y: float = 100.0, side: float = 80.0) -> list[float]:
    return [x, y, x + side, y + side]


def run(
    scheduler: Scheduler,
    frames: Sequence[tuple[float, Sequence[list[float]], Sequence[float]]],
    stream: str = "cam-1",
    first_seq: int = 0,
) -> list[list[FaceDecision]]:
    """Feed (t, boxes, qualities) frames with consecutive seqs; return every frame's decisions."""
    out = []
    for k, (t, boxes, qualities) in enumerate(frames):
        out.append(
            scheduler.decide(
                stream, seq=first_seq + k, t=t, boxes=np.array(boxes).reshape(-1, 4), qualities=qualities
            )
        )
    return out


def reasons(decisions: list[list[FaceDecision]]) -> list[list[str]]:
    return [[d.reason for d in frame] for frame in decisions]


def test_a_static_face_at_5_fps_is_analyzed_once_per_max_age() -> None:
    s = Scheduler(SchedulePolicy(max_age_s=1.0))
    frames = [(k / 5, [face(100)], [0.6]) for k in range(50)]  # 10 s
    decisions = run(s, frames)
    analyzed = [k for k, frame in enumerate(decisions) if frame[0].analyze]
    assert analyzed == list(range(0, 50, 6))  # strictly older than 1 s: every sixth frame
    assert decisions[0][0].reason == "new"
    assert {decisions[k][0].reason for k in analyzed[1:]} == {"stale"}
    # a skipped face points at the analysis that stands for it
    assert decisions[7][0] == FaceDecision(analyze=False, results_seq=6, reason="fresh")
    assert s.stats()["analyzed"] == 9 and s.stats()["fresh"] == 41


def test_a_moving_face_keeps_being_recognised() -> None:
    s = Scheduler(SchedulePolicy(max_age_s=100.0))
    # 12 px per frame on an 80 px face: IoU ~0.74 frame to frame, 600 px in total
    frames = [(k / 10, [face(50 + 12 * k)], [0.6]) for k in range(50)]
    decisions = run(s, frames)
    assert decisions[0][0].reason == "new"
    assert all(frame[0].reason == "fresh" and frame[0].results_seq == 0 for frame in decisions[1:])
    assert s.remembered_faces("cam-1") == 1


def test_a_jump_larger_than_the_iou_gate_is_a_new_face() -> None:
    s = Scheduler()
    decisions = run(s, [(0.0, [face(100)], [0.6]), (0.1, [face(300)], [0.6])])
    assert reasons(decisions) == [["new"], ["new"]]


def test_a_new_face_entering_is_analyzed_immediately() -> None:
    s = Scheduler()
    frames = [
        (0.0, [face(100)], [0.6]),
        (0.2, [face(100)], [0.6]),
        (0.4, [face(100), face(400)], [0.6, 0.5]),
        (0.6, [face(400), face(100)], [0.5, 0.6]),  # detection order does not matter
    ]
    decisions = run(s, frames)
    assert reasons(decisions) == [["new"], ["fresh"], ["fresh", "new"], ["fresh", "fresh"]]
    assert decisions[2][1].results_seq == 2
    assert [d.results_seq for d in decisions[3]] == [2, 0]


def test_a_better_shot_triggers_analysis() -> None:
    s = Scheduler(SchedulePolicy(quality_margin=0.15))
    frames = [
        (0.0, [face(100)], [0.40]),
        (0.1, [face(100)], [0.50]),  # +0.10: not enough
        (0.2, [face(100)], [0.56]),  # +0.16: better
        (0.3, [face(100)], [0.60]),  # +0.04 over the new best
        (0.4, [face(100)], [0.30]),  # worse
        (0.5, [face(100)], [0.72]),  # +0.16 over 0.56
    ]
    assert reasons(run(s, frames)) == [["new"], ["fresh"], ["better"], ["fresh"], ["fresh"], ["better"]]


def test_a_stale_reanalysis_at_lower_quality_keeps_the_best_quality() -> None:
    s = Scheduler(SchedulePolicy(max_age_s=1.0, quality_margin=0.15))
    frames = [
        (0.0, [face(100)], [0.80]),
        (1.2, [face(100)], [0.30]),  # stale: older than max_age
        (1.3, [face(100)], [0.50]),  # better than 0.30 by 0.2, but not than the best 0.80
    ]
    assert reasons(run(s, frames)) == [["new"], ["stale"], ["fresh"]]


def test_mode_all_analyzes_everything_and_keeps_no_state() -> None:
    s = Scheduler(SchedulePolicy(mode=ScheduleMode.ALL))
    frames = [(k / 5, [face(100), face(300)], [0.6, 0.6]) for k in range(10)]
    decisions = run(s, frames)
    assert all(
        d == FaceDecision(analyze=True, results_seq=k, reason="all")
        for k, f in enumerate(decisions)
        for d in f
    )
    assert len(s) == 0 and s.stats()["all"] == 20 and s.stats()["analyzed"] == 20


def test_crossing_faces_are_analyzed_rather_than_silently_swapped() -> None:
    s = Scheduler(SchedulePolicy(max_age_s=100.0))
    # A moves right, B moves left; they cross around x = 200.
    frames = []
    for k in range(21):
        a, b = 100 + 10 * k, 300 - 10 * k
        frames.append((k / 10, [face(a), face(b)], [0.6, 0.6]))
    decisions = run(s, frames)
    analyzed_frames = [k for k, f in enumerate(decisions) if any(d.analyze for d in f)]
    assert analyzed_frames[0] == 0
    crossing = [k for k in analyzed_frames if k > 0]
    assert crossing, "the crossing must trigger analyses"
    for k in crossing:
        assert all(d.analyze and d.reason == "new" and d.results_seq == k for d in decisions[k])
    # far from the crossing, nothing is analyzed
    assert all(not d.analyze for k in (1, 2, 19, 20) for d in decisions[k])


def test_no_ambiguity_rule_means_no_crossing_analyses() -> None:
    s = Scheduler(SchedulePolicy(max_age_s=100.0, ambiguity_margin=0.0))
    frames = [(k / 10, [face(100 + 10 * k), face(300 - 10 * k)], [0.6, 0.6]) for k in range(21)]
    decisions = run(s, frames)
    assert sum(d.analyze for f in decisions for d in f) == 2


def test_a_detection_overlapping_two_remembered_faces_equally_is_analyzed() -> None:
    s = Scheduler(SchedulePolicy(max_age_s=100.0, match_iou=0.3))
    run(s, [(0.0, [face(100), face(140)], [0.6, 0.6])])  # two heavily overlapping faces
    [d] = s.decide("cam-1", seq=1, t=0.1, boxes=[face(120)], qualities=[0.6])
    assert d.analyze and d.reason == "new" and d.results_seq == 1


def test_faces_unseen_for_forget_after_are_forgotten() -> None:
    s = Scheduler(SchedulePolicy(max_age_s=100.0, forget_after_s=3.0))
    frames = [
        (0.0, [face(100)], [0.6]),
        (2.0, [], []),
        (3.0, [face(100)], [0.6]),  # unseen for exactly 3 s: still remembered
        (6.5, [face(100)], [0.6]),  # unseen for 3.5 s: forgotten, a returning face
    ]
    assert reasons(run(s, frames)) == [["new"], [], ["fresh"], ["new"]]


def test_time_going_backwards_resets_the_stream_without_raising() -> None:
    s = Scheduler()
    run(s, [(10.0, [face(100)], [0.6]), (10.2, [face(100)], [0.6])])
    [d] = s.decide("cam-1", seq=2, t=0.0, boxes=[face(100)], qualities=[0.6])  # a replay after restart
    assert d.reason == "new" and d.results_seq == 2
    [d] = s.decide("cam-1", seq=1, t=0.5, boxes=[face(100)], qualities=[0.6])  # seq back too
    assert d.reason == "new"
    assert s.stats()["resets"] == 2
    [d] = s.decide("cam-1", seq=1, t=0.5, boxes=[face(100)], qualities=[0.6])  # same t and seq: fine
    assert d.reason == "fresh"


def shots(
    scheduler: Scheduler, frames: Sequence[tuple[int, Sequence[list[float]]]], stream: str = "cam-1"
) -> list[list[str]]:
    """Feed (shot_start_seq, boxes) frames at 5 fps with consecutive seqs; return the reasons."""
    return [
        [
            d.reason
            for d in scheduler.decide(
                stream, seq=k, t=k / 5, boxes=boxes, qualities=[0.6] * len(boxes), shot_start_seq=shot
            )
        ]
        for k, (shot, boxes) in enumerate(frames)
    ]


def test_a_new_shot_makes_every_face_new() -> None:
    s = Scheduler(SchedulePolicy(max_age_s=100.0))
    two = [face(100), face(400)]
    # the same boxes before and after a cut at seq 3 (shot / reverse shot at the same places)
    assert shots(s, [(0, two), (0, two), (0, two), (3, two), (3, two), (3, [face(100)])]) == [
        ["new", "new"],
        ["fresh", "fresh"],
        ["fresh", "fresh"],
        ["new", "new"],
        ["fresh", "fresh"],
        ["fresh"],
    ]
    assert s.stats()["cuts"] == 1 and s.stats()["resets"] == 0


def test_any_change_of_shot_is_a_cut_even_to_or_from_unknown() -> None:
    s = Scheduler(SchedulePolicy(max_age_s=100.0))
    one = [face(100)]
    assert shots(s, [(0, one), (0, one), (5, one), (5, one), (0, one)]) == [
        ["new"],
        ["fresh"],
        ["new"],  # 0 (unknown) to 5
        ["fresh"],
        ["new"],  # back to unknown: a producer without a detector took over
    ]
    assert s.stats()["cuts"] == 2


def test_a_cut_in_one_stream_leaves_the_others_alone() -> None:
    s = Scheduler(SchedulePolicy(max_age_s=100.0))
    one = [face(100)]
    shots(s, [(0, one)], stream="a")
    shots(s, [(0, one)], stream="b")
    assert s.decide("a", seq=1, t=0.2, boxes=one, qualities=[0.6], shot_start_seq=1)[0].reason == "new"
    assert s.decide("b", seq=1, t=0.2, boxes=one, qualities=[0.6])[0].reason == "fresh"


def test_mode_all_ignores_shots() -> None:
    s = Scheduler(SchedulePolicy(mode=ScheduleMode.ALL))
    assert shots(s, [(0, [face(100)]), (1, [face(100)])]) == [["all"], ["all"]]
    assert s.stats()["cuts"] == 0


def test_forget_stream_drops_the_state() -> None:
    s = Scheduler()
    run(s, [(0.0, [face(100)], [0.6])], stream="a")
    run(s, [(0.0, [face(100)], [0.6])], stream="b")
    assert s.forget_stream("a") and not s.forget_stream("a") and not s.forget_stream("never")
    assert len(s) == 1 and s.remembered_faces("a") == 0
    assert run(s, [(0.2, [face(100)], [0.6])], stream="a", first_seq=1)[0][0].reason == "new"
    assert run(s, [(0.2, [face(100)], [0.6])], stream="b", first_seq=1)[0][0].reason == "fresh"


def test_streams_are_bounded_lru() -> None:
    s = Scheduler(SchedulePolicy(max_streams=2))
    for name in ("a", "b"):
        run(s, [(0.0, [face(100)], [0.6])], stream=name)
    run(s, [(0.1, [face(100)], [0.6])], stream="a", first_seq=1)  # a is now the most recent
    run(s, [(0.0, [face(100)], [0.6])], stream="c")  # evicts b
    assert len(s) == 2 and s.stats()["streams_evicted"] == 1 and s.stats()["streams"] == 2
    assert run(s, [(0.2, [face(100)], [0.6])], stream="a", first_seq=2)[0][0].reason == "fresh"
    assert run(s, [(0.2, [face(100)], [0.6])], stream="b", first_seq=2)[0][0].reason == "new"
    for k in range(200):
        s.decide(f"s{k}", seq=0, t=0.0, boxes=[face(100)], qualities=[0.6])
    assert len(s) == 2


def test_faces_per_stream_are_bounded() -> None:
    s = Scheduler(SchedulePolicy(max_faces_per_stream=3, max_age_s=100.0))
    boxes = [face(100 * i) for i in range(5)]  # disjoint faces
    first = s.decide("cam-1", seq=0, t=0.0, boxes=boxes, qualities=[0.6] * 5)
    assert [d.reason for d in first] == ["new"] * 5
    assert s.remembered_faces("cam-1") == 3
    second = s.decide("cam-1", seq=1, t=0.1, boxes=boxes, qualities=[0.6] * 5)
    assert [d.reason for d in second] == ["fresh"] * 3 + ["new"] * 2  # over the bound: analyzed again
    assert s.remembered_faces("cam-1") == 3
    assert s.stats()["faces_dropped"] == 4


def test_decisions_are_deterministic() -> None:
    rng = np.random.default_rng(1)
    frames = []
    for k in range(100):
        n = int(rng.integers(0, 5))
        xs = rng.uniform(0, 800, n)
        frames.append((k / 10, [face(float(x)) for x in xs], list(rng.uniform(0, 1, n))))
    a = run(Scheduler(), frames)
    b = run(Scheduler(), frames)
    assert a == b
    assert {r for f in a for r in (d.reason for d in f)} <= set(REASONS)


def test_stats_count_every_decision_with_a_fixed_key_set() -> None:
    s = Scheduler()
    run(s, [(k / 5, [face(100)], [0.6]) for k in range(10)])
    stats = s.stats()
    assert stats["frames"] == 10 and stats["faces"] == 10
    assert stats["new"] + stats["stale"] + stats["better"] + stats["fresh"] == 10
    assert stats["new"] == 1 and stats["stale"] == 1 and stats["fresh"] == 8
    for k in range(50):
        s.decide(f"stream-{k}", seq=0, t=0.0, boxes=[], qualities=[])
    assert s.stats().keys() == stats.keys()


def test_no_faces_is_fine() -> None:
    s = Scheduler()
    assert s.decide("cam-1", seq=0, t=0.0, boxes=np.zeros((0, 4)), qualities=np.zeros(0)) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "all"}, TypeError, "mode: expected a ScheduleMode"),
        ({"max_age_s": 0.0}, ValueError, "max_age_s: expected a number > 0"),
        ({"max_age_s": math.inf}, ValueError, "max_age_s: expected a finite number"),
        ({"quality_margin": 0.0}, ValueError, "quality_margin"),
        ({"quality_margin": 1.5}, ValueError, r"quality_margin: expected a number > 0 and <= 1.0"),
        ({"match_iou": 0.0}, ValueError, "match_iou"),
        ({"match_iou": 1.2}, ValueError, "match_iou"),
        ({"ambiguity_margin": -0.1}, ValueError, "ambiguity_margin: expected a number >= 0"),
        ({"forget_after_s": -1.0}, ValueError, "forget_after_s"),
        ({"max_faces_per_stream": 0}, ValueError, "max_faces_per_stream: expected an int >= 1"),
        ({"max_streams": 2.5}, ValueError, "max_streams"),
        ({"max_streams": True}, ValueError, "max_streams"),
        ({"max_age_s": True}, ValueError, "max_age_s"),
    ],
)
def test_policy_validation(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        SchedulePolicy(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"stream_id": 3}, TypeError, "stream_id: expected a str"),
        ({"seq": -1}, ValueError, "seq: expected an int >= 0"),
        ({"seq": 1.0}, ValueError, "seq"),
        ({"t": math.nan}, ValueError, "t: expected finite media seconds"),
        ({"boxes": [[0, 0, 10]]}, ValueError, "boxes"),
        ({"boxes": [[0, 0, math.inf, 10]]}, ValueError, "boxes: expected finite"),
        ({"qualities": [0.5, 0.5]}, ValueError, r"qualities: expected shape \[1\]"),
        ({"qualities": [1.5]}, ValueError, r"qualities: expected finite values in \[0, 1\]"),
        ({"qualities": [math.nan]}, ValueError, "qualities"),
        ({"qualities": ["high"]}, TypeError, "qualities: expected an array"),
        ({"shot_start_seq": -1}, ValueError, "shot_start_seq: expected an int >= 0, got -1"),
        ({"shot_start_seq": True}, ValueError, "shot_start_seq: expected an int >= 0, got True"),
    ],
)
def test_decide_validation(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"stream_id": "cam-1", "seq": 0, "t": 0.0, "boxes": [face(0)], "qualities": [0.5]}
    args.update(kwargs)
    stream_id = args.pop("stream_id")
    with pytest.raises(error, match=match):
        Scheduler().decide(stream_id, **args)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"analyze": 1}, TypeError, "analyze: expected a bool"),
        ({"results_seq": -2}, ValueError, "results_seq"),
        ({"reason": "maybe"}, ValueError, "reason: expected one of"),
        ({"analyze": False, "reason": "new"}, ValueError, "'fresh' exactly when analyze is False"),
        ({"analyze": True, "reason": "fresh"}, ValueError, "'fresh' exactly when analyze is False"),
    ],
)
def test_face_decision_validation(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"analyze": True, "results_seq": 0, "reason": "new", **kwargs}
    with pytest.raises(error, match=match):
        FaceDecision(**args)


def test_scheduler_rejects_a_non_policy() -> None:
    with pytest.raises(TypeError, match="policy: expected a SchedulePolicy"):
        Scheduler({"mode": "all"})  # type: ignore[arg-type]
