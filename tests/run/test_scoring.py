"""Tests for faceflow.run.scoring (events + ground truth -> scores, pooled over streams) and for
``--ground-truth [ID=]FILE`` (faceflow.run.orchestrate.assign_ground_truths)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import support_run as sr

from faceflow.run.democlip_types import GroundTruth, GTFace, GTFrame
from faceflow.run.events_json import event_to_json
from faceflow.run.orchestrate import RunError, RunSource, assign_ground_truths
from faceflow.run.scoring import IDENTITY_HEADLINE, headline, identity_frames, score_stream, score_streams
from faceflow.run.summary import build_summary, format_summary

FPS = sr.FPS


def face(person: str, x: float, *, size: float = 60.0, appearance: int = 1, visible: float = 1.0) -> GTFace:
    return GTFace(
        person=person,
        instance=person,
        appearance=f"{person}/{appearance}",
        box=(x, 10.0, x + size, 10.0 + size),
        visible=visible,
        occluded=visible < 0.5,
    )


def truth(frames: list[list[GTFace]]) -> GroundTruth:
    people = sorted({f.person for faces in frames for f in faces})
    return GroundTruth(
        clip="test.mp4",
        width=640,
        height=360,
        fps=FPS,
        frame_count=len(frames),
        people={p: f"test.{p}" for p in people},
        instances={p: p for p in people},
        frames=tuple(GTFrame(index=i, pts=i / FPS, faces=tuple(faces)) for i, faces in enumerate(frames)),
    )


def obs(stream: str, seq: int, track: str, x: float, identity: str = "", name: str = "") -> dict[str, Any]:
    box = (x, 10.0, x + 60.0, 70.0)
    return event_to_json(sr.observation(stream, seq, track, box, identity_id=identity, identity_name=name))


def two_people(stream: str = "cam1", frames: int = 10) -> tuple[list[dict[str, Any]], GroundTruth]:
    """alice (enrolled) named from frame 3 on; bob a stranger, anonymous; at frame 5 both faces get
    alice's identity (a same-frame violation and a false name)."""
    events = []
    for k in range(frames):
        alice = ("id-alice", "alice") if k >= 3 else ("anon-a", "")
        bob = ("id-alice", "alice") if k == 5 else ("anon-b", "")
        events.append(obs(stream, k, "t1", 0.0, *alice))
        events.append(obs(stream, k, "t2", 200.0, *bob))
    return events, truth([[face("alice", 0.0), face("bob", 200.0)] for _ in range(frames)])


def test_score_stream_keeps_its_keys_and_adds_identity_metrics() -> None:
    events, gt = two_people()
    scores = score_stream(events, gt, enrolled={"alice"})
    assert set(scores) == {
        "frames_scored",
        "tracking",
        "identities",
        "returns_keep_identity",
        "identity_metrics",
    }
    m = scores["identity_metrics"]
    assert m["enrolled"] == ["alice"] and m["frames"] == 10 and m["frames_scored"] == 10
    assert (m["named_correct"], m["recall_faces"]) == (7, 10)
    assert (m["false_names"], m["matched_faces"], m["stranger_faces_named"]) == (1, 20, 1)
    assert m["same_frame_shared_identity"] == 1
    assert m["same_frame_shared_examples"] == [
        {"key": 5, "t": 0.5, "identity_id": "id-alice", "observations": 2}
    ]
    assert m["identities_by_person"] == {"alice": 2, "bob": 2}
    assert m["persons_by_identity"] == {"anon-a": 1, "anon-b": 1, "id-alice": 2}
    (track,) = m["time_to_name"]["per_track"]
    assert (track["track_id"], track["person"], track["first_t"], track["named_t"]) == (
        "t1",
        "alice",
        0.0,
        0.3,
    )
    assert track["seconds"] == pytest.approx(0.3)
    assert json.loads(json.dumps(scores, allow_nan=False)) == scores


def test_frames_analysed_without_a_face_are_misses_for_the_identity_metrics() -> None:
    events, gt = two_people(frames=4)
    gt = truth([[face("alice", 0.0), face("bob", 200.0)] for _ in range(6)])
    seen = score_stream(events, gt, enrolled={"alice"})["identity_metrics"]
    analysed = {k: k / FPS for k in range(6)}
    all_frames = score_stream(events, gt, enrolled={"alice"}, analyzed_frames=analysed)["identity_metrics"]
    assert (seen["frames"], seen["recall_faces"]) == (4, 4)
    assert (all_frames["frames"], all_frames["recall_faces"], all_frames["gt_faces"]) == (6, 6, 12)
    assert all_frames["named_correct"] == seen["named_correct"] == 1


def test_identity_frames_keep_frames_without_ground_truth() -> None:
    events = [
        obs("cam1", 0, "t1", 0.0, "x"),
        obs("cam1", 50, "t1", 0.0, "x"),
        obs("cam1", 50, "t2", 200.0, "x"),
    ]
    frames = identity_frames(events, truth([[face("alice", 0.0)]]))
    assert [(f.key, f.truth is None, len(f.hyps)) for f in frames] == [(0, False, 1), (50, True, 2)]
    assert frames[0].truth is not None and frames[0].truth[0].name == "alice"


def test_score_streams_pools_counts_and_the_headline_comes_from_the_pool() -> None:
    a_events, a_truth = two_people("cam1")
    b_events = [obs("cam2", k, "t9", 0.0) for k in range(30)]  # alice never named on cam2
    b_truth = truth([[face("alice", 0.0)] for _ in range(30)])
    scores = score_streams(a_events + b_events, {"cam1": a_truth, "cam2": b_truth}, enrolled={"alice"})
    pooled = scores["pooled"]["identity_metrics"]
    assert (pooled["named_correct"], pooled["recall_faces"]) == (7, 40)
    assert pooled["named_recall"] == pytest.approx(7 / 40)  # not the mean of 0.7 and 0.0
    per = scores["per_stream"]
    assert per["cam1"]["identity_metrics"]["named_recall"] == pytest.approx(0.7)
    assert per["cam2"]["identity_metrics"]["named_recall"] == 0.0
    assert scores["named_recall"] == pooled["named_recall"]
    assert set(IDENTITY_HEADLINE) <= set(scores)
    tracking = scores["pooled"]["tracking"]
    assert tracking["num_gt"] == per["cam1"]["tracking"]["num_gt"] + per["cam2"]["tracking"]["num_gt"]
    assert scores["idf1"] == tracking["idf1"]


def test_one_stream_pooled_headline_is_that_streams_headline() -> None:
    events, gt = two_people()
    scores = score_streams(events, {"cam1": gt}, enrolled={"alice"})
    alone = headline(scores["per_stream"]["cam1"])
    assert {k: scores[k] for k in alone} == alone
    assert score_streams(events, {}) == {}


def test_the_summary_prints_the_pooled_names_line() -> None:
    events, gt = two_people()
    scores = score_streams(events, {"cam1": gt}, enrolled={"alice"})
    summary = build_summary(
        events=events,
        streams={"cam1": {"frames": 10}},
        latencies={},
        wall_seconds=2.0,
        ground_truth_scores=scores,
    )
    assert summary["scores"]["per_stream"]["cam1"]["identity_metrics"]["same_frame_shared_identity"] == 1
    text = format_summary(summary)
    names = next(line for line in text.splitlines() if line.startswith("  names"))
    assert "recall 0.700 (7/10)" in names and "false names 0.050 (1/20)" in names
    assert "same-frame shared 1 frame(s)" in names and "time to name 0.30 s (0 of 1 never)" in names
    idf1_line = next(line for line in text.splitlines() if line.startswith("  IDF1"))
    assert "named_recall" not in idf1_line and "mota" in idf1_line


# --- --ground-truth [ID=]FILE ---------------------------------------------------------------------


def sources(*ids: str) -> tuple[RunSource, ...]:
    return tuple(RunSource(i, f"/videos/{i}.mp4", live=False, expected_frames=10) for i in ids)


@pytest.fixture
def gt_file(tmp_path: Path) -> Path:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(truth([[face("alice", 0.0)]]).to_json()))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "wrong.json").write_text(json.dumps({"version": 1}))
    return path


@pytest.mark.parametrize(
    ("ids", "values", "expected", "message"),
    [
        (("cam1",), ["{dir}/a.json"], {"cam1": "a.json"}, None),
        (("cam1", "cam2"), ["cam2={dir}/a.json"], {"cam1": None, "cam2": "a.json"}, None),
        (
            ("cam1", "cam2"),
            ["cam1={dir}/a.json", "cam2={dir}/a.json"],
            {"cam1": "a.json", "cam2": "a.json"},
            None,
        ),
        (("cam1",), [], {"cam1": None}, None),
        (
            ("cam1", "cam2"),
            ["{dir}/a.json"],
            None,
            "--ground-truth {dir}/a.json: expected ID=FILE with 2 streams",
        ),
        (
            ("cam1",),
            ["cam9={dir}/a.json"],
            None,
            "no stream 'cam9' in this run; expected ID=FILE with ID one of: cam1",
        ),
        (
            ("cam1", "cam2"),
            ["cam1={dir}/a.json", "cam1={dir}/a.json"],
            None,
            "stream 'cam1' is given a ground truth twice",
        ),
        (("cam1",), ["{dir}/missing.json"], None, "expected a readable ground-truth file"),
        (("cam1",), ["cam1={dir}/broken.json"], None, "expected JSON, got an error at line 1"),
        (("cam1",), ["cam1={dir}/wrong.json"], None, "wrong.json: people: expected a field, got none"),
    ],
)
def test_assign_ground_truths(
    ids: tuple[str, ...],
    values: list[str],
    expected: dict[str, str | None] | None,
    message: str | None,
    gt_file: Path,
) -> None:
    args = [v.replace("{dir}", str(gt_file.parent)) for v in values]
    if expected is None:
        with pytest.raises(RunError, match=re.escape((message or "").replace("{dir}", str(gt_file.parent)))):
            assign_ground_truths(sources(*ids), args)
        return
    got = assign_ground_truths(sources(*ids), args)
    assert {s.stream_id: (s.ground_truth.name if s.ground_truth else None) for s in got} == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["a={video}", "b={video}", "--ground-truth", "{dir}/a.json"], "expected ID=FILE with 2 streams"),
        (["a={video}", "--ground-truth", "x={dir}/a.json"], "no stream 'x' in this run"),
        (["a={video}", "--ground-truth", "a={dir}/nothing.json"], "expected a readable ground-truth file"),
        (["a={video}", "--ground-truth", "{dir}/broken.json"], "expected JSON"),
    ],
)
def test_bad_ground_truth_arguments_are_one_clear_line_before_anything_starts(
    argv: list[str], message: str, gt_file: Path, tmp_path: Path
) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not really a video: the ground truth is refused before it is read")
    args = [a.replace("{video}", str(video)).replace("{dir}", str(gt_file.parent)) for a in argv]
    faceflow = str(Path(sys.executable).parent / "faceflow")
    result = subprocess.run(
        [faceflow, "run", *args, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "FACEFLOW_HOME": str(tmp_path / "home")},
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("faceflow: error: --ground-truth ") and message in lines[0]
    assert not (tmp_path / "home").exists(), "nothing was started"
