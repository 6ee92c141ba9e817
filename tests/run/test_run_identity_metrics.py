"""``faceflow run --ground-truth ID=FILE`` end to end on the demo clip: real processes on the real
broker and Triton write the identity metrics into summary.json and report.html. Their values depend
on the naming's tuning, so the test checks their structure and that they agree with faces.jsonl,
the ground truth and each other, not thresholds."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from support_run import parse, run_env

from faceflow.run.democlip import DEMO, GroundTruth, generate_clip
from faceflow.run.scoring import IDENTITY_HEADLINE
from faceflow.runtime.settings import DevSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FACEFLOW = str(Path(sys.executable).parent / "faceflow")


def test_run_with_ground_truth_writes_identity_metrics(runtime: DevSettings, tmp_path: Path) -> None:
    clip = generate_clip(DEMO, tmp_path / "clips")
    out = tmp_path / "run"
    result = subprocess.run(
        [
            FACEFLOW,
            "run",
            f"demo={clip.video}",
            "--out",
            str(out),
            "--enroll",
            f"astronaut={clip.enroll['astronaut']}",
            "--ground-truth",
            f"demo={clip.ground_truth}",
            "--no-video",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=run_env(runtime),
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    scores = summary["scores"]
    m = scores["per_stream"]["demo"]["identity_metrics"]
    assert scores["pooled"]["identity_metrics"]["idf1"] == m["idf1"]  # one stream: the pool is that stream
    assert set(IDENTITY_HEADLINE) <= set(scores) and scores["named_recall"] == m["named_recall"]
    assert m["enrolled"] == ["astronaut"] and m["min_face_px"] == 40.0

    events = [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]
    observations = [e for e in events if e["type"] == "observation" and e["stream_id"] == "demo"]
    # every analysed frame is scored, with or without a face
    assert m["frames"] == summary["counts"]["frames"] == summary["streams"]["demo"]["frames"] > 0
    assert m["frames_scored"] == m["frames"]
    # same-frame shared identities, recounted from the events themselves
    per_frame: dict[int, Counter[str]] = {}
    for e in observations:
        if e["identity"]:
            per_frame.setdefault(e["seq"], Counter())[e["identity"]["id"]] += 1
    shared = sorted(seq for seq, ids in per_frame.items() if max(ids.values()) >= 2)
    assert m["same_frame_shared_identity"] == len(shared)
    assert [x["key"] for x in m["same_frame_shared_examples"]] == sorted(
        {x["key"] for x in m["same_frame_shared_examples"]}
    )
    assert {x["key"] for x in m["same_frame_shared_examples"]} <= set(shared)

    # counts bounded by faces.jsonl and the ground truth
    named = [e for e in observations if e["identity"] and e["identity"]["name"]]
    assert m["matched_faces"] <= len(observations) and m["matched_faces"] <= m["gt_faces"]
    assert m["named_faces"] + m["unmatched_named"] <= len(named)
    assert m["false_names"] <= m["named_faces"] and m["stranger_faces_named"] <= m["false_names"]
    truth = GroundTruth.load(clip.ground_truth)
    astronaut_faces = sum(
        1 for f in truth.frames for face in f.faces if face.person == "astronaut" and not face.occluded
    )
    assert 0 < m["recall_faces"] <= astronaut_faces and 0 <= m["named_correct"] <= m["recall_faces"]
    for rate in ("named_recall", "false_name_rate", "false_name_share_of_named", "idf1", "tracking_idf1"):
        assert m[rate] is None or 0.0 <= m[rate] <= 1.0, rate
    # identities per person and persons per identity count the same (person, identity) pairs
    assert set(m["identities_by_person"]) <= set(truth.instances)
    assert sum(m["identities_by_person"].values()) == sum(m["persons_by_identity"].values()) > 0
    identity_ids = {e["identity"]["id"] for e in observations if e["identity"]}
    assert set(m["persons_by_identity"]) <= identity_ids
    assert m["identities_per_person"] >= 1.0 and m["persons_per_identity"] >= 1.0
    # time to name: the enrolled person's tracks, which are tracks of faces.jsonl
    ttn = m["time_to_name"]
    assert ttn["tracks"] == len(ttn["per_track"]) >= 1
    assert {t["person"] for t in ttn["per_track"]} == {"astronaut"}
    assert {t["track_id"] for t in ttn["per_track"]} <= {e["track_id"] for e in observations}
    assert ttn["never_named"] == sum(1 for t in ttn["per_track"] if t["seconds"] is None)

    page = parse((out / "report.html").read_text())
    assert [row[0] for row in page.tables["identity-metrics"]] == ["demo"]
    assert any(line.startswith("  names ") for line in result.stdout.splitlines()), result.stdout[-2000:]
