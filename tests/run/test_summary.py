"""Tests for faceflow.run.summary: the numbers of a hand-built run, the closing text, the file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import support_run as sr

from faceflow.run.summary import (
    CHECKPOINT_HINT,
    SummaryError,
    build_summary,
    format_summary,
    latency_stats,
    write_summary,
)

STREAMS = {"cam1": {"frames": 20, "source": "file:///clips/a.mp4", "fps": 10.0}, "cam2": {"frames": 10}}
LATENCIES = {"ingest->analyzer": [i / 1000 for i in range(1, 101)], "analyzer->faces": [0.5], "idle": []}


def summary_of(**changes: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "events": sr.scene(),
        "streams": STREAMS,
        "latencies": LATENCIES,
        "wall_seconds": 5.0,
        "ground_truth_scores": None,
    }
    kwargs.update(changes)
    return build_summary(**kwargs)


def test_counts_of_the_scene() -> None:
    counts = summary_of()["counts"]
    assert counts == {
        "streams": 2,
        "frames": 30,
        "frames_with_faces": 15 + 5,
        "faces": 25,
        "observations_analyzed": 6,
        "observations_skipped": 19,
        "analyzed_share": pytest.approx(6 / 25),
        "tracks": 3,
        "identities": 2,
        "identities_named": 1,
        "identities_anonymous": 1,
        "identities_transient": 0,
        "events": {
            "identity_resolved": 3,
            "observation": 25,
            "stream_ended": 2,
            "track_ended": 3,
            "track_started": 3,
        },
    }


def test_per_stream_and_throughput() -> None:
    summary = summary_of()
    assert summary["streams"]["cam1"] == {
        "frames": 20,
        "faces": 20,
        "observations_analyzed": 5,
        "tracks": 2,
        "info": {"frames": 20, "source": "file:///clips/a.mp4", "fps": 10.0},
    }
    assert summary["streams"]["cam2"]["faces"] == 5
    assert summary["streams"]["cam2"]["tracks"] == 1
    assert summary["throughput"] == {
        "frames_per_second": 6.0,
        "faces_per_second": 5.0,
        "analyzed_faces_per_second": pytest.approx(1.2),
    }
    assert summary["identity_names"] == ["Alice"]


def test_latency_percentiles() -> None:
    hops = summary_of()["latency_seconds"]
    assert hops["ingest->analyzer"] == {
        "count": 100,
        "mean": pytest.approx(0.0505),
        "p50": pytest.approx(0.0505),
        "p90": pytest.approx(0.0901),
        "p99": pytest.approx(0.09901),
        "max": pytest.approx(0.1),
    }
    assert hops["analyzer->faces"]["p99"] == 0.5
    assert hops["idle"] == {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}


@pytest.mark.parametrize("random_init", [True, False])
def test_model_provenance(random_init: bool) -> None:
    summary = summary_of(events=sr.scene(random_init=random_init))
    assert [m["name"] for m in summary["models"]] == ["face_detector", "face_embedder", "facexformer"]
    face_model = summary["models"][2]
    assert face_model["random_init"] is random_init
    assert face_model["weights"] == ("random-init" if random_init else "sha256:" + "f" * 64)
    assert summary["random_init_models"] == (["facexformer"] if random_init else [])


def test_scores_and_outputs_are_carried() -> None:
    summary = summary_of(
        ground_truth_scores={"idf1": 0.8312, "mota": 0.7, "id_switches": 2},
        outputs={"faces.jsonl": Path("out/demo/faces.jsonl")},
    )
    assert summary["scores"] == {"idf1": 0.8312, "mota": 0.7, "id_switches": 2}
    assert summary["outputs"] == {"faces.jsonl": "out/demo/faces.jsonl"}
    assert summary_of()["scores"] is None


def test_stream_info_may_be_a_dataclass() -> None:
    @dataclasses.dataclass(frozen=True)
    class Info:
        frames: int
        source: Path

    summary = summary_of(streams={"cam1": Info(20, Path("/a.mp4")), "cam2": Info(10, Path("/b.mp4"))})
    assert summary["streams"]["cam1"]["info"] == {"frames": 20, "source": "/a.mp4"}
    assert summary["counts"]["frames"] == 30


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"wall_seconds": 0}, "wall_seconds: expected a finite number > 0, got 0"),
        ({"wall_seconds": float("nan")}, "wall_seconds: expected a finite number >= 0.0, got nan"),
        ({"wall_seconds": "5"}, "wall_seconds: expected a finite number, got str"),
        (
            {"streams": {"cam1": {"source": "x"}}},
            r"streams\['cam1'\]: frames: expected an int >= 0, got None",
        ),
        ({"streams": {"cam1": {"frames": -1}}}, "got -1"),
        ({"streams": {"cam1": 20}}, "expected a mapping or a dataclass, got int"),
        (
            {"latencies": {"hop": [0.1, float("inf")]}},
            r"latencies\['hop'\]\[1\]: expected a finite number, got inf",
        ),
        ({"events": ["x"]}, r"events\[0\]: expected a faces.jsonl object, got str"),
    ],
)
def test_invalid_inputs_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SummaryError, match=message):
        summary_of(**changes)


def test_latency_stats_of_one_value() -> None:
    assert latency_stats([0.25]) == {
        "count": 1,
        "mean": 0.25,
        "p50": 0.25,
        "p90": 0.25,
        "p99": 0.25,
        "max": 0.25,
    }


def test_format_summary_text() -> None:
    summary = summary_of(
        ground_truth_scores={"IDF1": 0.8312, "mota": 0.7},
        outputs={"faces.jsonl": "out/demo/faces.jsonl", "report.html": "out/demo/report.html"},
    )
    text = format_summary(summary)
    lines = text.splitlines()
    assert lines[0] == "faceflow run: 2 stream(s), 30 frame(s) in 5.0 s (6.0 frames/s, 5.0 faces/s)"
    assert "  tracks       3  (cam1: 2, cam2: 1)" in lines
    assert "  identities   2  (1 named: Alice; 1 anonymous)" in lines
    assert "  faces        25  (6 analyzed, 19 reused an earlier analysis; 24% analyzed)" in lines
    assert "  IDF1         0.831  (mota 0.700)" in lines
    assert any(line.split()[:2] == ["ingest->analyzer", "50"] for line in lines), text  # p50 in ms
    assert any("ingest->analyzer" in line and "50 / 90 / 99 / 100  (100)" in line for line in lines)
    assert any("idle" in line and "- / - / - / -  (0)" in line for line in lines)
    assert "!! facexformer: RANDOM-INIT weights" in text
    assert CHECKPOINT_HINT in text
    assert "    report.html  out/demo/report.html" in lines


def test_format_summary_without_random_weights_or_scores() -> None:
    text = format_summary(summary_of(events=sr.scene(random_init=False)))
    assert "RANDOM-INIT" not in text
    assert "IDF1" not in text


def test_format_summary_escapes_control_characters_in_names() -> None:
    events = sr.scene()
    for event in events:
        if event["identity"] and event["identity"]["name"]:
            event["identity"]["name"] = "Eve\x1b[2J"
    text = format_summary(summary_of(events=events))
    assert "\x1b" not in text
    assert "Eve\\x1b[2J" in text


def test_write_summary_is_json(tmp_path: Path) -> None:
    summary = summary_of(ground_truth_scores={"idf1": 0.5})
    path = write_summary(tmp_path / "run" / "summary.json", summary)
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(summary))
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temporary left
    with pytest.raises(ValueError, match="Out of range float"):
        write_summary(tmp_path / "bad.json", {"x": float("nan")})
    assert not list(tmp_path.glob(".bad.json.*"))


def test_an_identity_a_track_held_only_before_a_merge_is_transient_not_a_person() -> None:
    def obs(seq: int, identity: str) -> dict[str, Any]:
        box = {"x1": 0.0, "y1": 0.0, "x2": 10.0, "y2": 10.0}
        return {"type": "observation", "stream_id": "cam1", "seq": seq, "track_id": "t1", "box": box,
                "identity": {"id": identity, "name": None, "distance": 0.1}, "analyzed": True}  # fmt: skip

    counts = summary_of(events=[obs(1, "anon-first"), obs(2, "anon-older"), obs(3, "anon-older")])["counts"]
    assert (counts["identities"], counts["identities_anonymous"], counts["identities_transient"]) == (1, 1, 1)
    text = format_summary(summary_of(events=[obs(1, "anon-first"), obs(2, "anon-older")]))
    assert "identities   1  (0 named; 1 anonymous; 1 more held briefly before a merge)" in text
