"""The constraints users judge identities by, on real footage, through the real mesh.

``faceflow run`` (ingest, analyzer and aggregator as real processes on the test session's real
broker and Triton, the real CenterFace and dlib models) on ``eval/clips/interview.mp4``: real
people filmed by a real camera (CC-BY 4.0, see eval/README.md), edited with six hard cuts, among
them shot / reverse shot of two people at the same place in front of the same wall. The man and
the woman are enrolled from frames that are not in the clip. The ground truth was checked by eye.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support_run import run_env

from faceflow.runtime.settings import DevSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FACEFLOW = str(Path(sys.executable).parent / "faceflow")
EVAL = Path(__file__).resolve().parents[2] / "eval"
CUTS = 6  # shots: man | woman | man | both | three walking in | woman in profile | both


@pytest.fixture(scope="module")
def interview(runtime: DevSettings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("interview")
    enroll = [
        arg
        for name in ("man", "woman")
        for n in (1, 2)
        for arg in ("--enroll", f"{name}={EVAL / 'enroll' / f'{name}-{n}.png'}")
    ]
    result = subprocess.run(
        [
            FACEFLOW,
            "run",
            f"interview={EVAL / 'clips' / 'interview.mp4'}",
            "--out",
            str(out),
            *enroll,
            "--ground-truth",
            f"interview={EVAL / 'truth' / 'interview.json'}",
            "--fps",
            "6",
            "--no-video",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=run_env(runtime),
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    events = [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    return {"events": events, "metrics": summary["scores"]["per_stream"]["interview"]["identity_metrics"]}


def test_two_faces_of_one_frame_never_share_an_identity(interview: dict[str, Any]) -> None:
    per_frame: dict[int, Counter[str]] = {}
    for e in interview["events"]:
        if e["type"] == "observation" and e["identity"]:
            per_frame.setdefault(e["seq"], Counter())[e["identity"]["id"]] += 1
    assert sum(len(ids) >= 2 for ids in per_frame.values()) > 10  # the clip does test it
    assert [seq for seq, ids in per_frame.items() if max(ids.values()) >= 2] == []
    assert interview["metrics"]["same_frame_shared_identity"] == 0


def test_every_cut_ends_the_tracks_and_no_track_spans_two_people(interview: dict[str, Any]) -> None:
    cut_seqs = {
        e["seq"]
        for e in interview["events"]
        if e["type"] == "track_ended" and (e.get("summary") or {}).get("end_reason") == "cut"
    }
    assert len(cut_seqs) == CUTS, sorted(cut_seqs)
    m = interview["metrics"]
    assert m["persons_per_identity"] <= 1.05, m["persons_by_identity"]


def test_the_enrolled_people_are_named_and_nobody_is_named_wrongly(interview: dict[str, Any]) -> None:
    m = interview["metrics"]
    assert m["false_names"] == 0, m
    assert m["named_recall"] >= 0.8, m
    named = {
        (e["identity"] or {}).get("name")
        for e in interview["events"]
        if e["type"] == "observation" and e["identity"]
    }
    assert {"man", "woman"} <= named
