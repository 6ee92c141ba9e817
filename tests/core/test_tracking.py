"""Tests for faceflow.core.tracking."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from faceflow.core.evaluation import EvalFrame, evaluate
from faceflow.core.tracking import (
    SNAPSHOT_VERSION,
    Observation,
    StreamTracker,
    TrackerConfig,
    TrackState,
    TrackUpdate,
)
from faceflow.models.contract import IDENTITY_DIM

FPS = 5.0
SIZE = 80.0

# --- builders --------------------------------------------------------------------------------------


def box(cx: float, cy: float, size: float = SIZE) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def person(k: int) -> np.ndarray:
    """A seeded 'dlib-like' descriptor: different persons are ~0.85 apart."""
    rng = np.random.default_rng(1000 + k)
    out: np.ndarray = (rng.standard_normal(IDENTITY_DIM) * 0.6 / np.sqrt(IDENTITY_DIM)).astype(np.float32)
    return out


def shot(k: int, seed: int) -> np.ndarray:
    """Person ``k`` seen once: about 0.15 from their descriptor."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(IDENTITY_DIM) * 0.15 / np.sqrt(IDENTITY_DIM)
    out: np.ndarray = (person(k) + noise).astype(np.float32)
    return out


def obs(
    cx: float,
    cy: float,
    *,
    index: int = 0,
    score: float = 0.9,
    embedding: np.ndarray | None = None,
    quality: float = 1.0,
    size: float = SIZE,
) -> Observation:
    return Observation.create(index, box(cx, cy, size), score, quality, embedding)


def run(
    tracker: StreamTracker, frames: list[list[Observation]], t0: float = 0.0, seq0: int = 0
) -> list[TrackUpdate]:
    return [tracker.update(f, t=t0 + k / FPS, seq=seq0 + k) for k, f in enumerate(frames)]


def ids_of(updates: list[TrackUpdate], index: int) -> set[str]:
    return {u.assignments[index] for u in updates if len(u.assignments) > index}


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({}, None, None),
        ({"min_hits": 3, "max_tracks": 1, "lost_after_s": 1.0}, None, None),
        ({"low_score": 0.6, "high_score": 0.6}, None, None),
        ({"high_score": 1.5}, ValueError, "high_score: expected a float in [0.0, 1.0], got 1.5"),
        ({"low_score": 0.7}, ValueError, "low_score: expected <= high_score (0.6), got 0.7"),
        ({"iou_gate": 0.0}, ValueError, "iou_gate: expected a float in (0.0, 1.0], got 0.0"),
        ({"reid_distance": 1.0}, ValueError, "reid_distance: expected a float in (0.0, 1.0), got 1.0"),
        ({"embedding_weight": -0.1}, ValueError, "embedding_weight: expected a float in [0.0, 1.0]"),
        ({"min_hits": 0}, ValueError, "min_hits: expected an int >= 1, got 0"),
        ({"min_hits": 1.0}, TypeError, "min_hits: expected an int >= 1, got float"),
        ({"max_tracks": True}, TypeError, "max_tracks: expected an int >= 1, got bool"),
        ({"max_lost_s": float("nan")}, ValueError, "max_lost_s: expected a float in [0.0, inf), got nan"),
        ({"max_lost_s": -1.0}, ValueError, "max_lost_s: expected a float in [0.0, inf)"),
        ({"lost_after_s": 3.0}, ValueError, "lost_after_s: expected <= max_lost_s (2.0), got 3.0"),
        (
            {"track_embedding_momentum": 1.0},
            ValueError,
            "track_embedding_momentum: expected a float in [0.0, 1.0)",
        ),
        ({"measurement_noise": 0.0}, ValueError, "measurement_noise: expected a float in (0.0, inf)"),
        ({"acceleration_noise": "1"}, TypeError, "acceleration_noise: expected a float, got str"),
        ({"max_extrapolation_s": -0.5}, ValueError, "max_extrapolation_s: expected a float in [0.0, inf)"),
    ],
)
def test_config_validation(
    changes: dict[str, Any], error: type[Exception] | None, message: str | None
) -> None:
    if error is None:
        config = TrackerConfig(**changes)
        for key, value in changes.items():
            assert getattr(config, key) == value
        return
    with pytest.raises(error, match=re.escape(message or "")):
        TrackerConfig(**changes)


def test_config_is_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        TrackerConfig(0.6)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrackerConfig().iou_gate = 0.5  # type: ignore[misc]


def observation_kwargs(**changes: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "face_index": 0,
        "box": np.array([0, 0, 10, 10], np.float32),
        "score": 0.9,
        "quality": 0.5,
        "embedding": np.zeros(IDENTITY_DIM, np.float32),
    }
    kwargs.update(changes)
    return kwargs


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({}, None, None),
        ({"embedding": None}, None, None),
        ({"score": 0, "quality": 1}, None, None),
        ({"face_index": -1}, ValueError, "face_index: expected an int >= 0, got -1"),
        ({"face_index": 1.0}, TypeError, "face_index: expected an int >= 0, got float"),
        ({"box": [0, 0, 10, 10]}, TypeError, "box: expected a float32 numpy array [4], got list"),
        ({"box": np.array([0, 0, 10, 10], np.float64)}, ValueError, "got float64 (4,)"),
        ({"box": np.zeros((1, 4), np.float32)}, ValueError, "box: expected a float32 array of shape (4,)"),
        (
            {"box": np.array([5, 0, 5, 10], np.float32)},
            ValueError,
            "x2 > x1, y2 > y1, got [5.0, 0.0, 5.0, 10.0]",
        ),
        ({"box": np.array([0, 0, np.nan, 10], np.float32)}, ValueError, "box: expected finite"),
        ({"score": 1.5}, ValueError, "score: expected a float in [0, 1], got 1.5"),
        ({"score": True}, ValueError, "score: expected a float in [0, 1], got True"),
        ({"quality": float("nan")}, ValueError, "quality: expected a float in [0, 1], got nan"),
        ({"embedding": np.zeros(64, np.float32)}, ValueError, "got float32 (64,)"),
        ({"embedding": np.full(IDENTITY_DIM, np.inf, np.float32)}, ValueError, "embedding: expected finite"),
        (
            {"embedding": [0.0] * IDENTITY_DIM},
            TypeError,
            "embedding: expected a float32 numpy array, got list",
        ),
    ],
)
def test_observation_validation(
    changes: dict[str, Any], error: type[Exception] | None, message: str | None
) -> None:
    if error is None:
        Observation(**observation_kwargs(**changes))
        return
    with pytest.raises(error, match=re.escape(message or "")):
        Observation(**observation_kwargs(**changes))


def test_observation_create_converts() -> None:
    o = Observation.create(2, [1, 2, 3, 4], 0.5, embedding=[0.25] * IDENTITY_DIM)
    assert o.box.dtype == np.float32 and o.embedding is not None and o.embedding.dtype == np.float32
    assert o.quality == 1.0


@pytest.mark.parametrize(
    ("t", "seq", "error", "message"),
    [
        (1.0, 11, None, None),
        (1.0 + 1e-9, 12, None, None),  # same frame time as before is fine (non-decreasing)
        (0.99, 11, ValueError, "t: expected media time >= 1.0 (seq 10), got 0.99 (seq 11)"),
        (float("nan"), 11, ValueError, "t: expected a finite media time in seconds, got nan"),
        ("1.5", 11, ValueError, "t: expected a finite media time"),
        (1.5, 10, ValueError, "seq: expected > the previous frame's seq 10, got 10"),
        (1.5, -1, ValueError, "seq: expected an int >= 0, got -1"),
        (1.5, 11.0, ValueError, "seq: expected an int >= 0, got 11.0"),
    ],
)
def test_update_time_and_seq(t: Any, seq: Any, error: type[Exception] | None, message: str | None) -> None:
    tracker = StreamTracker(TrackerConfig())
    tracker.update([obs(100, 100)], t=1.0, seq=10)
    if error is None:
        assert tracker.update([obs(100, 100)], t=t, seq=seq).assignments == ("t1",)
        return
    before = tracker.snapshot()
    with pytest.raises(error, match=re.escape(message or "")):
        tracker.update([obs(100, 100)], t=t, seq=seq)
    assert tracker.snapshot() == before  # a rejected frame changes nothing


def test_update_rejects_non_observations() -> None:
    tracker = StreamTracker()
    with pytest.raises(TypeError, match=re.escape("observations[1]: expected an Observation, got dict")):
        tracker.update([obs(1, 1), {"box": [0, 0, 1, 1]}], t=0.0, seq=0)  # type: ignore[list-item]
    assert tracker.last_t is None and len(tracker) == 0


# --- behaviour -----------------------------------------------------------------------------------------


def test_single_face_moving_linearly_keeps_one_id() -> None:
    tracker = StreamTracker(TrackerConfig())
    frames = [[obs(100 + 30 * k, 200 + 5 * k)] for k in range(50)]
    updates = run(tracker, frames)
    assert ids_of(updates, 0) == {"t1"}
    assert updates[0].started == ("t1",)
    assert all(not (u.started or u.lost or u.recovered or u.ended) for u in updates[1:])
    view = tracker.track("t1")
    assert view is not None
    assert (view.state, view.hits, view.first_seq, view.last_seq) == (TrackState.CONFIRMED, 50, 0, 49)
    assert view.first_t == 0.0 and view.last_t == pytest.approx(49 / FPS)
    assert view.box == pytest.approx(tuple(box(100 + 30 * 49, 200 + 5 * 49)))
    # The filter learned the velocity: 150 px/s in x, 25 px/s in y.
    np.testing.assert_allclose(view.predicted, box(100 + 30 * 49, 200 + 5 * 49), atol=1.0)
    nxt = tracker.update([obs(100 + 30 * 52, 200 + 5 * 52)], t=52 / FPS, seq=52)  # two frames skipped
    assert nxt.assignments == ("t1",)


def crossing(dy: float, hide_b: bool, embed_every: int) -> list[list[Observation]]:
    """A walks right, B walks left, they cross at frame 10; B may hide behind A for 3 frames."""
    frames = []
    for k in range(30):
        a_emb = shot(0, k) if embed_every and k % embed_every == 0 else None
        b_emb = shot(1, 100 + k) if embed_every and k % embed_every == 2 else None
        frame = [obs(100 + 30 * k, 200, index=0, embedding=a_emb)]
        if not (hide_b and 9 <= k <= 11):
            frame.append(obs(700 - 30 * k, 200 + dy, index=1, embedding=b_emb))
        frames.append(frame)
    return frames


@pytest.mark.parametrize(
    ("dy", "hide_b", "embed_every"),
    [
        (10.0, False, 0),  # both visible, boxes overlapping up to IoU ~0.8
        (10.0, False, 5),  # ... with an embedding on 20% of the observations
        (0.0, True, 0),  # B fully hidden behind A for 0.6 s: lost, then recovered by motion
        (25.0, True, 5),
    ],
)
def test_crossing_faces_keep_their_ids(dy: float, hide_b: bool, embed_every: int) -> None:
    tracker = StreamTracker(TrackerConfig())
    updates = run(tracker, crossing(dy, hide_b, embed_every))
    a_ids = {u.assignments[0] for u in updates}
    b_ids = {u.assignments[1] for u in updates if len(u.assignments) == 2}
    assert a_ids == {"t1"}
    assert b_ids == {"t2"}
    lost = [k for k, u in enumerate(updates) if u.lost]
    recovered = [k for k, u in enumerate(updates) if u.recovered]
    if hide_b:
        assert (lost, recovered) == ([9], [12])
        assert updates[9].lost == ("t2",) and updates[12].recovered == ("t2",)
    else:
        assert (lost, recovered) == ([], [])
    # The same clip scored with the evaluation module: perfect identity.
    frames = []
    for k, (frame, update) in enumerate(zip(crossing(dy, hide_b, embed_every), updates, strict=True)):
        gt = [(("A", "B")[o.face_index], o.box) for o in frame]
        hyp = list(zip(update.assignments, [o.box for o in frame], strict=True))
        frames.append(EvalFrame(key=k, gt=gt, hyp=hyp))
    scores = evaluate(frames)
    assert (scores.idf1, scores.id_switches, scores.mota) == (1.0, 0, 1.0)


@pytest.mark.parametrize(
    ("gap_s", "empty_frames", "same_id", "events"),
    [
        # Missing for 1 s with frames arriving: lost at once (lost_after_s=0), recovered on return.
        (1.0, True, True, {"lost": 1, "recovered": 1}),
        # Missing for 1 s with no frames at all (a paused source): simply continues.
        (1.0, False, True, {}),
        (1.8, True, True, {"lost": 1, "recovered": 1}),
        # Missing for 3 s: ends (reason "lost") after max_lost_s, then comes back as a new track.
        (3.0, True, False, {"lost": 1, "ended": 1}),
        (3.0, False, False, {"ended": 1}),
    ],
)
def test_face_missing_for_a_while(
    gap_s: float, empty_frames: bool, same_id: bool, events: dict[str, int]
) -> None:
    tracker = StreamTracker(TrackerConfig())
    updates = [tracker.update([obs(300 + 10 * k, 200)], t=k / FPS, seq=k) for k in range(10)]
    t_last = 9 / FPS
    seq = 10
    gap: list[TrackUpdate] = []
    if empty_frames:
        for k in range(1, round(gap_s * FPS)):
            gap.append(tracker.update([], t=t_last + k / FPS, seq=seq))
            seq += 1
    back_t = t_last + gap_s
    back = tracker.update([obs(300 + 10 * 9 + 50 * gap_s, 200)], t=back_t, seq=seq)
    after = [
        tracker.update([obs(300 + 10 * 9 + 50 * gap_s + 10 * k, 200)], t=back_t + k / FPS, seq=seq + k)
        for k in range(1, 4)
    ]
    everything = [*updates[1:], *gap, back, *after]
    counts = {
        name: sum(len(getattr(u, name)) for u in everything)
        for name in ("started", "lost", "recovered", "ended")
    }
    expected = {"started": 0 if same_id else 1, "lost": 0, "recovered": 0, "ended": 0} | events
    assert counts == expected
    assert back.assignments == (("t1",) if same_id else ("t2",))
    assert {u.assignments[0] for u in after} == set(back.assignments)
    if not same_id:
        ended = [e for u in everything for e in u.ended]
        assert ended == [("t1", "lost")]
        assert tracker.track("t1") is None
        if empty_frames:  # ended by the frame in which the 2 s ran out, before the face returned
            assert [u.ended for u in gap if u.ended] == [(("t1", "lost"),)]


@pytest.mark.parametrize(
    ("returning_embedding", "expected_id"),
    [
        (shot(7, 99), "t1"),  # the same person far away: re-acquired by appearance alone
        (shot(8, 99), "t2"),  # someone else there: a new track
        (None, "t2"),  # no appearance to go by, no overlap: a new track
    ],
)
def test_reacquisition_by_embedding_after_a_jump(
    returning_embedding: np.ndarray | None, expected_id: str
) -> None:
    tracker = StreamTracker(TrackerConfig())
    frames = [[obs(100, 100, embedding=shot(7, k) if k % 2 == 0 else None)] for k in range(6)]
    run(tracker, frames)
    tracker.update([], t=6 / FPS, seq=6)  # lost
    update = tracker.update([obs(900, 500, embedding=returning_embedding)], t=7 / FPS, seq=7)
    assert update.assignments == (expected_id,)
    assert update.recovered == (("t1",) if expected_id == "t1" else ())
    embedding = tracker.track_embedding("t1")
    assert embedding is not None and embedding.shape == (IDENTITY_DIM,)
    assert float(np.linalg.norm(embedding - person(7))) < 0.15


def test_observations_without_embeddings_track_and_embeddings_blend() -> None:
    config = TrackerConfig(track_embedding_momentum=0.5)
    tracker = StreamTracker(config)
    e1, e2 = shot(3, 1), shot(3, 2)
    tracker.update([obs(100, 100)], t=0.0, seq=0)
    assert tracker.track_embedding("t1") is None
    tracker.update([obs(102, 100, embedding=e1)], t=0.2, seq=1)
    np.testing.assert_allclose(tracker.track_embedding("t1"), e1)  # the first one is taken as is
    tracker.update([obs(104, 100, embedding=e2, quality=1.0)], t=0.4, seq=2)
    np.testing.assert_allclose(tracker.track_embedding("t1"), 0.5 * e1 + 0.5 * e2, rtol=1e-6)
    tracker.update(
        [obs(106, 100, embedding=shot(9, 3), quality=0.0)], t=0.6, seq=3
    )  # zero quality: no effect
    np.testing.assert_allclose(tracker.track_embedding("t1"), 0.5 * e1 + 0.5 * e2, rtol=1e-6)
    assert tracker.track_embedding("t9") is None and tracker.track_embedding("bogus") is None


def test_association_stages_and_low_scores() -> None:
    tracker = StreamTracker(TrackerConfig())
    tracker.update([obs(100, 100, score=0.9)], t=0.0, seq=0)
    # A blurred frame: the face comes with a low score; it continues the track (stage b).
    u = tracker.update([obs(105, 100, score=0.4, index=0), obs(500, 100, score=0.2, index=1)], t=0.2, seq=1)
    assert u.assignments == ("t1", "t2")
    assert u.started == ()  # below low_score: t2 is born tentative
    assert tracker.track("t2").state is TrackState.TENTATIVE  # type: ignore[union-attr]
    u = tracker.update([], t=0.4, seq=2)
    assert (u.lost, u.ended) == (("t1",), (("t2", "unconfirmed"),))
    # A face that comes back blurred recovers its lost track (stage d) ...
    u = tracker.update([obs(900, 100, score=0.9, index=0), obs(110, 100, score=0.4, index=1)], t=0.6, seq=3)
    assert (u.assignments, u.recovered, u.started) == (("t3", "t1"), ("t1",), ("t3",))


def test_active_tracks_are_matched_before_lost_ones() -> None:
    # A walks right into B, who stands still, and disappears behind B: A's lost track is predicted
    # exactly where B is, but B's observation goes to B's active track.
    tracker = StreamTracker(TrackerConfig())
    for k in range(4):
        u = tracker.update([obs(100 + 50 * k, 100, index=0), obs(300, 100, index=1)], t=k / FPS, seq=k)
        assert u.assignments == ("t1", "t2")
    predicted_a = tracker.update([obs(300, 100)], t=4 / FPS, seq=4)
    assert predicted_a.assignments == ("t2",) and predicted_a.lost == ("t1",)
    view = tracker.track("t1")
    assert view is not None and view.predicted[0] == pytest.approx(300 - SIZE / 2, abs=15)


def test_min_hits_confirms_late_and_tentative_tracks_end() -> None:
    tracker = StreamTracker(TrackerConfig(min_hits=3))
    updates = run(tracker, [[obs(100 + 5 * k, 100)] for k in range(4)])
    assert [u.started for u in updates] == [(), (), ("t1",), ()]
    u = tracker.update([obs(600, 400)], t=1.0, seq=4)  # t1 lost, t2 tentative
    assert (u.assignments, u.lost) == (("t2",), ("t1",))
    u = tracker.update([], t=1.2, seq=5)
    assert u.ended == (("t2", "unconfirmed"),)
    assert [v.track_id for v in tracker.tracks()] == ["t1"]


def test_lost_after_s_delays_the_lost_state() -> None:
    tracker = StreamTracker(TrackerConfig(lost_after_s=0.5))
    tracker.update([obs(100, 100)], t=0.0, seq=0)
    assert tracker.update([], t=0.2, seq=1).lost == ()
    assert tracker.track("t1").state is TrackState.CONFIRMED  # type: ignore[union-attr]
    assert tracker.update([], t=0.4, seq=2).lost == ()
    assert tracker.update([], t=0.6, seq=3).lost == ("t1",)
    assert tracker.update([], t=0.8, seq=4).lost == ()  # reported once


def test_max_tracks_evicts_the_longest_lost() -> None:
    tracker = StreamTracker(TrackerConfig(max_tracks=3))
    far = [(100, 100), (500, 100), (900, 100)]
    tracker.update([obs(x, y, index=i) for i, (x, y) in enumerate(far)], t=0.0, seq=0)
    tracker.update([obs(*far[1], index=0), obs(*far[2], index=1)], t=0.2, seq=1)  # t1 lost
    tracker.update([obs(*far[2], index=0)], t=0.4, seq=2)  # t2 lost
    u = tracker.update([obs(*far[2], index=0), obs(100, 600, index=1), obs(500, 600, index=2)], t=0.6, seq=3)
    assert u.assignments == ("t3", "t4", "t5")
    assert u.ended == (("t1", "evicted"), ("t2", "evicted"))
    assert [v.track_id for v in tracker.tracks()] == ["t3", "t4", "t5"]
    # More faces in one frame than max_tracks: every face still gets an id; the newest are evicted.
    u = tracker.update([obs(100 + 200 * i, 900, index=i) for i in range(5)], t=0.8, seq=4)
    assert len(set(u.assignments)) == 5 and len(tracker) == 3
    assert all(reason == "evicted" for _, reason in u.ended)


def test_end_all_and_ids_are_never_reused() -> None:
    tracker = StreamTracker()
    tracker.update([obs(100, 100, index=0), obs(400, 100, index=1)], t=0.0, seq=0)
    assert tracker.end_all("stream ended") == (("t1", "stream ended"), ("t2", "stream ended"))
    assert tracker.tracks() == [] and tracker.end_all("again") == ()
    assert tracker.update([obs(100, 100)], t=0.2, seq=1).assignments == ("t3",)
    with pytest.raises(ValueError, match="reason: expected a non-empty str"):
        tracker.end_all("")


def test_every_observation_gets_an_id_in_input_order() -> None:
    tracker = StreamTracker()
    u = tracker.update([obs(100 * i, 100, index=i) for i in range(4)], t=0.0, seq=0)
    assert u.assignments == ("t1", "t2", "t3", "t4") and u.started == u.assignments
    u = tracker.update([obs(100 * i, 100, index=i) for i in (3, 1, 0, 2)], t=0.2, seq=1)
    assert u.assignments == ("t4", "t2", "t1", "t3")
    assert tracker.update([], t=0.4, seq=2).lost == ("t1", "t2", "t3", "t4")


# --- state ----------------------------------------------------------------------------------------------


def scenario(seed: int, n_frames: int) -> Iterator[list[Observation]]:
    """Seeded random walkers: arrivals, departures, missed detections, low scores, 20% embeddings."""
    rng = np.random.default_rng(seed)
    walkers: dict[int, list[float]] = {}
    next_person = 0
    for _ in range(n_frames):
        if rng.random() < 0.3 or not walkers:
            walkers[next_person] = [
                *rng.uniform(50, 1200, 2),
                *rng.uniform(-120, 120, 2),
                rng.uniform(40, 120),
            ]
            next_person += 1
        for p in [p for p in walkers if rng.random() < 0.03]:
            del walkers[p]
        frame: list[Observation] = []
        for p, w in walkers.items():
            w[0] += w[2] / FPS + rng.normal(0, 2)
            w[1] += w[3] / FPS + rng.normal(0, 2)
            if rng.random() < 0.1:
                continue  # missed detection
            emb = shot(p, int(rng.integers(1 << 30))) if rng.random() < 0.2 else None
            score = float(rng.uniform(0.2, 1.0))
            frame.append(obs(w[0], w[1], index=len(frame), score=score, embedding=emb, size=w[4]))
        yield frame


@pytest.mark.parametrize(("seed", "cut"), [(1, 20), (2, 37), (3, 1)])
def test_snapshot_restore_continues_exactly(seed: int, cut: int) -> None:
    config = TrackerConfig(min_hits=2, max_tracks=12, max_lost_s=1.0)
    frames = list(scenario(seed, 80))
    original = StreamTracker(config)
    run(original, frames[:cut])
    snap = original.snapshot()
    restored = StreamTracker.restore(config, json.loads(json.dumps(snap)))
    assert restored.tracks() == original.tracks()
    rest_a = run(original, frames[cut:], t0=cut / FPS, seq0=cut)
    rest_b = run(restored, frames[cut:], t0=cut / FPS, seq0=cut)
    assert rest_a == rest_b
    assert any(u.ended for u in rest_a) and any(u.lost for u in rest_a)  # the scenario exercises them
    assert restored.tracks() == original.tracks()
    assert restored.snapshot() == original.snapshot()


def check_json_types(value: Any, where: str = "snapshot") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), where
            check_json_types(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_json_types(v, f"{where}[{i}]")
    else:
        assert value is None or type(value) in (str, int, float, bool), f"{where}: {type(value)}"


def test_snapshot_is_plain_json() -> None:
    tracker = StreamTracker()
    assert tracker.snapshot()["version"] == SNAPSHOT_VERSION
    run(tracker, list(scenario(5, 30)))
    snap = tracker.snapshot()
    check_json_types(snap)
    assert json.loads(json.dumps(snap, allow_nan=False)) == snap
    empty = StreamTracker.restore(TrackerConfig(), StreamTracker().snapshot())
    assert empty.tracks() == [] and empty.last_t is None


def valid_snapshot() -> dict[str, Any]:
    tracker = StreamTracker()
    tracker.update([obs(100, 100, index=0, embedding=shot(1, 1)), obs(400, 100, index=1)], t=0.0, seq=0)
    tracker.update([obs(110, 100)], t=0.2, seq=1)
    return tracker.snapshot()


def mutate(path: str, value: Any) -> dict[str, Any]:
    snap = copy.deepcopy(valid_snapshot())
    *parents, last = path.split(".")
    target: Any = snap
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return snap


@pytest.mark.parametrize(
    ("snapshot", "message"),
    [
        (mutate("version", 2), "snapshot: version: expected 1, got 2"),
        (mutate("next_id", KeyError), "snapshot: expected a mapping with keys"),
        (mutate("next_id", 2), "snapshot: tracks.id[1]: expected an id below t2 (next_id), got 't2'"),
        (mutate("last_t", "soon"), "snapshot: last_t: expected a finite number or None"),
        (mutate("last_seq", None), "snapshot: last_t, last_seq: expected numbers when there are tracks"),
        (mutate("tracks.id", ["t1", "t1"]), "snapshot: tracks.id: expected unique ids"),
        (mutate("tracks.id", ["t1", "x2"]), "snapshot: tracks.id: expected a list of 't<n>' ids"),
        (mutate("tracks.state", ["confirmed", "gone"]), "snapshot: tracks.state: expected 2 of"),
        (mutate("tracks.hits", [1]), "snapshot: tracks.hits: expected a list of ints of shape (2,)"),
        (mutate("tracks.hits", [2, 0]), "snapshot: tracks.hits[1]: expected an int >= 1, got 0"),
        (mutate("tracks.hits", [2.0, 1]), "snapshot: tracks.hits: expected a list of ints"),
        (
            mutate("tracks.mean", [[0.0] * 8, [0.0] * 7]),
            "snapshot: tracks.mean: expected a list of finite numbers",
        ),
        (mutate("tracks.last_t", [0.2, 9.0]), "snapshot: tracks.last_t[1]: expected a time <= 0.2, got 9.0"),
        (mutate("tracks.last_seq", [1, 5]), "snapshot: tracks.last_seq[1]: expected an int <= 1, got 5"),
        (mutate("tracks.embedding", [[0.0] * 3, None]), "snapshot: tracks.embedding[0]: expected a list"),
        (mutate("tracks.box", KeyError), "snapshot: tracks: expected a mapping with keys"),
        ([], "snapshot: expected a mapping"),
    ],
)
def test_restore_rejects_malformed_snapshots(snapshot: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        StreamTracker.restore(TrackerConfig(), snapshot)


def test_restore_accepts_the_valid_snapshot() -> None:
    restored = StreamTracker.restore(TrackerConfig(), valid_snapshot())
    assert [(v.track_id, v.state) for v in restored.tracks()] == [
        ("t1", TrackState.CONFIRMED),
        ("t2", TrackState.LOST),
    ]
    assert restored.last_seq == 1 and restored.update([obs(120, 100)], t=0.4, seq=2).assignments == ("t1",)


@pytest.mark.parametrize(
    "module",
    [
        "faceflow.core.geometry",
        "faceflow.core.motion",
        "faceflow.core.association",
        "faceflow.core.tracking",
        "faceflow.core.evaluation",
    ],
)
def test_core_modules_import_nothing_impure(module: str) -> None:
    forbidden = "kafka grpc google PIL torch torchvision onnx onnxruntime dlib av tritonclient opentelemetry"
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({module!r})\n"
        "top = {m.split('.')[0] for m in sys.modules}\n"
        f"print(sorted(top & set({forbidden.split()!r})))\n"
        "print(sorted(m for m in sys.modules if m.startswith('faceflow.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    impure, ours = out.splitlines()
    assert impure == "[]"
    for name in json.loads(ours.replace("'", '"')):
        assert name.startswith("faceflow.core") or name in ("faceflow.models", "faceflow.models.contract"), (
            name
        )


@pytest.mark.parametrize(("other", "same_track"), [(False, True), (True, False)])
def test_another_person_at_the_same_place_is_never_the_same_track(other: bool, same_track: bool) -> None:
    # a cut the shot detector missed: the boxes overlap fully, the descriptors say who it is
    rng = np.random.default_rng(3)
    a = rng.normal(size=128).astype(np.float32) * 0.09  # dlib-like: two people ~1.4 apart
    b = rng.normal(size=128).astype(np.float32) * 0.09
    tracker = StreamTracker(TrackerConfig())
    box = [100, 100, 200, 220]
    first = tracker.update([Observation.create(0, box, 0.9, embedding=a)], t=0.0, seq=0)
    second = tracker.update(
        [Observation.create(0, box, 0.9, embedding=b if other else a + 0.001)], t=0.2, seq=1
    )
    assert (first.assignments[0] == second.assignments[0]) is same_track
