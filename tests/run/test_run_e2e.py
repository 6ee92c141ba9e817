"""``faceflow run`` end to end, as a user runs it: real processes (ingest, analyzer, aggregator) on
the real broker and Triton, on the generated demo clip. Its outputs are checked as a person would:
the video decodes with the expected frames, every jsonl line validates against the schema, the
report renders in a real headless browser, the summary has the IDF1 against the ground truth, and
one frame's trace runs through every process."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import av
import jsonschema
import pytest
from support_run import CHROMIUM, INSTALL_HINT, parse, run_env

from faceflow.run.democlip import DEMO, generate_clip
from faceflow.run.events_json import load_schema
from faceflow.runtime.settings import DevSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FACEFLOW = str(Path(sys.executable).parent / "faceflow")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> object:
    return generate_clip(DEMO, tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def finished(
    runtime: DevSettings, clip: object, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("run")
    result = subprocess.run(
        [
            FACEFLOW,
            "run",
            f"demo={clip.video}",
            "--out",
            str(out),  # type: ignore[attr-defined]
            "--enroll",
            f"astronaut={clip.enroll['astronaut']}",
            "--trace-file",
            str(out / "traces.jsonl"),  # type: ignore[attr-defined]
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=run_env(runtime),
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


def test_summary_scores_the_run_against_the_ground_truth(finished: tuple[Path, str]) -> None:
    out, stdout = finished
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["frames"] == 75
    assert summary["scores"]["idf1"] >= 0.9, summary["scores"]
    assert summary["scores"]["identity_accuracy"] >= 0.9
    assert summary["counts"]["identities_named"] == 1 and "astronaut" in summary["identity_names"]
    assert "IDF1" in stdout and "where to look" in stdout
    # Whatever FaceXFormer weights the machine has built (random-init, or the released checkpoint
    # fetched with `faceflow models fetch`), the summary says which, and random ones loudly.
    facexformer = next(m for m in summary["models"] if m["name"] == "facexformer")
    assert facexformer["random_init"] == (facexformer["weights"] == "random-init"), facexformer
    assert facexformer["random_init"] or facexformer["weights"].startswith("sha256:"), facexformer
    assert ("facexformer" in summary["random_init_models"]) == facexformer["random_init"]
    assert ("RANDOM-INIT weights" in stdout) == bool(summary["random_init_models"]), stdout[-2000:]


def test_every_jsonl_line_validates_and_the_enrolled_person_is_named(finished: tuple[Path, str]) -> None:
    out, _ = finished
    validator = jsonschema.Draft202012Validator(load_schema())
    lines = [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]
    assert len(lines) > 150
    for line in lines:
        validator.validate(line)
    observations = [e for e in lines if e["type"] == "observation"]
    assert {e["identity"]["name"] for e in observations if e["identity"] and e["identity"]["name"]} == {
        "astronaut"
    }
    assert any(e["analyzed"] for e in observations) and any(not e["analyzed"] for e in observations)
    assert any(e["type"] == "stream_ended" for e in lines)
    assert all("embedding" not in e for e in lines), "embeddings stay out of faces.jsonl by default"


def test_the_annotated_video_decodes_with_one_frame_per_sampled_frame(finished: tuple[Path, str]) -> None:
    out, _ = finished
    with av.open(str(out / "annotated-demo.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 75


def test_the_report_renders_its_identity_table_in_a_real_browser(
    finished: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = finished
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if chromium is None:
        pytest.fail(f"chromium is missing ({CHROMIUM}): {INSTALL_HINT}")
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = parse(result.stdout)
    names = [row[1] for row in dom.tables["identities"]]
    assert "astronaut" in names and "anonymous" in names


def test_one_trace_per_frame_runs_through_every_process(finished: tuple[Path, str]) -> None:
    out, _ = finished
    spans = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    traces: dict[str, list[dict[str, object]]] = defaultdict(list)
    for span in spans:
        traces[str(span["trace_id"])].append(span)
    chain = ["ingest frame", "analyze frame", "aggregate frame", "deliver event"]
    complete = 0
    for trace in traces.values():
        by_id = {s["span_id"]: s for s in trace}
        names = {s["name"] for s in trace}
        if not set(chain) <= names:
            continue
        deliver = next(s for s in trace if s["name"] == "deliver event")
        path = [deliver]
        while path[-1]["parent_span_id"] in by_id:
            path.append(by_id[path[-1]["parent_span_id"]])
        assert [s["name"] for s in reversed(path)] == chain
        assert [s["service"] for s in reversed(path)] == [
            "faceflow-ingest",
            "faceflow-analyzer",
            "faceflow-aggregator",
            "faceflow-aggregator",
        ]
        triton = [s for s in trace if str(s["name"]).startswith("triton")]
        assert triton and by_id[triton[0]["parent_span_id"]]["name"] == "analyze frame"
        complete += 1
    assert complete >= 10, f"only {complete} frames have a complete trace"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "/no/such/video.mp4", "--out", "{tmp}"], "/no/such/video.mp4: no such file or folder"),
        (["run", "ftp://camera/x", "--out", "{tmp}"], "unsupported URL scheme 'ftp'"),
        (["run", "{clip}", "--out", "{tmp}", "--enroll", "nobody"], "--enroll: expected NAME=IMAGE"),
        (
            ["run", "{clip}", "--out", "{tmp}", "--enroll", "x=/no/photo.jpg"],
            "--enroll x=/no/photo.jpg: no such file",
        ),
        (["run", "a=x.mp4", "a={clip}", "--out", "{tmp}"], "no such file"),
        (["run", "{clip}", "{clip}", "--out", "{tmp}"], "is used twice"),
    ],
)
def test_bad_invocations_are_one_clear_line(
    argv: list[str], message: str, clip: object, tmp_path: Path
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)).replace("{clip}", str(clip.video)) for a in argv]  # type: ignore[attr-defined]
    result = subprocess.run([FACEFLOW, *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceflow: error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_ctrl_c_stops_cleanly_and_still_writes_what_it_has(
    runtime: DevSettings, clip: object, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [FACEFLOW, "run", str(clip.video), "--out", str(out), "--quiet"],  # type: ignore[attr-defined]
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=run_env(runtime),
    )
    deadline = time.monotonic() + 240
    while not (out / "faces.jsonl").exists() or (out / "faces.jsonl").stat().st_size < 20_000:
        assert proc.poll() is None and time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, stdout[-3000:]
    assert "interrupted" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["interrupted"] is True and summary["counts"]["faces"] > 0
    assert (out / "report.html").exists()
