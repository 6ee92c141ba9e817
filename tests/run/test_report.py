"""Tests for faceflow.run.report: the rendered HTML (html.parser) and the page in a real headless browser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import support_run as sr
from support_run import CHROMIUM, INSTALL_HINT, Page, parse

from faceflow.run.events_json import event_to_json
from faceflow.run.report import ReportError, collect_rows, render_report, timeline_svg, write_report
from faceflow.run.summary import build_summary
from faceflow.v1 import face_event_pb2

EVIL = "<script>alert('x')</script> & Co"


def scene_summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    return build_summary(
        events=events,
        streams={"cam1": {"frames": 20, "source": "file:///a.mp4", "fps": 10.0}, "cam2": {"frames": 10}},
        latencies={"ingest->faces": [0.1, 0.2, 0.4]},
        wall_seconds=4.0,
        ground_truth_scores={"idf1": 0.83},
    )


def evil_scene(*, random_init: bool = True) -> list[dict[str, Any]]:
    events = sr.scene(random_init=random_init)
    for event in events:
        if event["identity"] and event["identity"]["name"]:
            event["identity"]["name"] = EVIL
    return events


def render(events: list[dict[str, Any]] | None = None, **kwargs: Any) -> Page:
    events = evil_scene() if events is None else events
    return parse(render_report(events=events, summary=scene_summary(events), **kwargs))


def test_identity_rows_named_first_with_fused_results() -> None:
    page = render()
    rows = page.tables["identities"]
    assert len(rows) == 2
    alice, anon = rows
    assert alice[0] == "id-alice"
    assert alice[1] == EVIL  # the text, unescaped by the parser: it was escaped in the HTML
    assert alice[2] == "cam1/t1, cam2/t1"
    assert alice[3] == "cam1 @ 0.00 s"
    assert alice[4] == "cam1 @ 0.90 s"
    assert alice[5].startswith("30-39 p 0.60, conf 0.80")
    assert "from cam1/t1" in alice[5]  # the track with the most evidence
    assert alice[6] == "female p 0.60, conf 0.80"
    assert alice[7] == "white p 0.60, conf 0.80"
    assert alice[8].startswith("No_Beard 0.90, conf 0.80")
    assert anon[:3] == ["anon-7f3e9a", "anonymous", "cam1/t2"]
    assert [a["data-identity"] for a in page.row_attrs["identities"]] == ["id-alice", "anon-7f3e9a"]


def test_track_rows() -> None:
    page = render()
    rows = page.tables["tracks"]
    assert [r[:2] for r in rows] == [["cam1", "t1"], ["cam1", "t2"], ["cam2", "t1"]]
    assert [r[3:5] for r in rows] == [["10", "3"], ["10", "2"], ["5", "1"]]  # observed, analyzed
    assert rows[0][5:8] == ["0.00 s", "0.90 s", "end_of_stream"]
    assert rows[1][2] == "anonymous anon-7f3e9a"
    assert rows[0][9] == "cam1 seq 9 @ 0.90 s box [56, 60, 116, 140], quality 0.70"


def test_strings_from_events_are_escaped() -> None:
    events = evil_scene()
    for event in events:
        event["stream_id"] = event["stream_id"].replace("cam1", 'cam"1<b>')
    document = render_report(events=events, summary=scene_summary(events))
    page = parse(document)
    assert "script" not in {tag for tag, _ in page.tags}
    assert "b" not in {tag for tag, _ in page.tags}
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Co" in document
    assert "cam&quot;1&lt;b&gt;" in document
    assert any(r[0] == 'cam"1<b>' for r in page.tables["tracks"])


def test_random_init_banner_is_loud_and_says_how_to_fix() -> None:
    page = render()
    banner = [a for tag, a in page.tags if a.get("id") == "random-init-banner"]
    assert len(banner) == 1
    text = " ".join(page.text)
    assert "RANDOM-INIT WEIGHTS" in text
    assert "faceflow models fetch" in text
    assert "faceflow models build" in text
    trained = render(evil_scene(random_init=False))
    assert not [a for tag, a in trained.tags if a.get("id") == "random-init-banner"]
    assert "RANDOM-INIT" not in " ".join(trained.text)


def test_header_shows_the_run() -> None:
    page = render()
    text = " ".join(" ".join(page.text).split())
    assert page.tables["sources"] == [
        ["cam1", "file:///a.mp4", "20", "20", "2"],
        ["cam2", "\u2013", "10", "5", "1"],
    ]
    assert page.tables["latency"] == [["ingest->faces", "200.0", "360.0", "396.0", "400.0", "3"]]
    assert ["facexformer", "1", "swin_b", "random-init", "RANDOM"] in page.tables["models"]
    for snippet in (
        "30 frames",
        "25 face observations",
        "4.0 s duration (wall)",
        "7.5 frames / s",
        "0.830 idf1",
    ):
        assert snippet in text, snippet


def test_thumbnails_inline_as_data_urls() -> None:
    jpeg = sr.jpeg(sr.parsing_ids().repeat(3).reshape(224, 224, 3) * 20)
    page = render(thumbnails={"cam1/t1": jpeg, "cam9/t9": jpeg, "cam1/t2": b"not an image"})
    images = [a for tag, a in page.tags if tag == "img"]
    assert len(images) == 1
    assert (images[0].get("src") or "").startswith("data:image/jpeg;base64,/9j/")
    assert images[0]["alt"] == "best shot of cam1/t1"
    with pytest.raises(ReportError, match="thumbnails: expected str 'stream_id/track_id' -> bytes"):
        render(thumbnails={"cam1/t1": "base64text"})  # type: ignore[dict-item]


def test_page_is_self_contained() -> None:
    jpeg = sr.jpeg(sr.parsing_ids().repeat(3).reshape(224, 224, 3))
    page = render(thumbnails={"cam1/t1": jpeg})
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "link", "iframe", "object", "embed"}
    for _tag, attrs in page.tags:
        for name in ("src", "href"):
            if name in attrs:
                assert (attrs[name] or "").startswith("data:"), attrs
    csp = [
        a["content"]
        for tag, a in page.tags
        if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert csp == ["default-src 'none'; img-src data:; style-src 'unsafe-inline'"]


def test_timeline_bars_and_dots() -> None:
    page = render()
    svgs = [a for tag, a in page.tags if tag == "svg"]
    assert [a["aria-label"] for a in svgs] == ["timeline of stream cam1", "timeline of stream cam2"]
    # scene: every track is continuous (one bar each); dots = analyzed observations (3 + 2, then 1)
    rects = [tag for tag, _ in page.tags if tag == "rect"]
    circles = [tag for tag, _ in page.tags if tag == "circle"]
    assert len(rects) == 3
    assert len(circles) == 6


def test_timeline_splits_bars_at_gaps_and_colours_by_identity() -> None:
    box = (10.0, 10.0, 50.0, 50.0)
    seqs = [0, 1, 2, 3, 10, 11, 12]
    events = [
        event_to_json(sr.observation("cam1", s, "t1", box, identity_id="anon-1", analyzed=s in (0, 10)))
        for s in seqs
    ]
    _identities, tracks = collect_rows(events)
    svg = parse(timeline_svg("cam1", tracks, fps=10.0))
    rects = [a for tag, a in svg.tags if tag == "rect"]
    assert len(rects) == 2
    assert len({a["fill"] for a in rects}) == 1
    assert len([tag for tag, _ in svg.tags if tag == "circle"]) == 2
    # without fps the frame interval comes from the observations themselves
    assert len([a for tag, a in parse(timeline_svg("cam1", tracks)).tags if tag == "rect"]) == 2


def test_empty_run_still_renders() -> None:
    events = [event_to_json(sr.lifecycle(face_event_pb2.FACE_EVENT_TYPE_STREAM_ENDED, "cam1", 5))]
    page = parse(render_report(events=events, summary=scene_summary(events)))
    assert page.tables["identities"] == [["no identity was assigned in this run"]]
    assert page.tables["tracks"] == [["no face was tracked in this run"]]


def _metrics(recall: float | None, named: int, faces: int, shared: int, **extra: Any) -> dict[str, Any]:
    return {
        "enrolled": ["alice", EVIL],
        "min_face_px": 40.0,
        "named_recall": recall,
        "named_correct": named,
        "recall_faces": faces,
        "false_name_rate": 0.05,
        "false_names": 1,
        "matched_faces": 20,
        "identities_per_person": 1.5,
        "persons_per_identity": 1.0,
        "same_frame_shared_identity": shared,
        "same_frame_shared_examples": [{"key": 5, "t": 0.5, "identity_id": "id-alice", "observations": 2}]
        if shared
        else [],
        "idf1": 0.8,
        "tracking_idf1": 0.9,
        "time_to_name": {"median": 0.3, "max": 0.5, "tracks": 2, "never_named": 1},
        **extra,
    }


def test_identity_metrics_table_per_stream_and_pooled() -> None:
    events = evil_scene()
    scores = {
        "idf1": 0.8,
        "named_recall": 0.25,
        "per_stream": {
            "cam1": {"identity_metrics": _metrics(0.7, 7, 10, 1)},
            "cam2": {"identity_metrics": _metrics(None, 0, 0, 0)},
        },
        "pooled": {"identity_metrics": _metrics(0.7, 7, 10, 1)},
    }
    summary = {**scene_summary(events), "scores": scores}
    page = parse(render_report(events=events, summary=summary))
    rows = page.tables["identity-metrics"]
    assert [r[0] for r in rows] == ["cam1", "cam2", "pooled"]
    assert rows[0][1:] == [
        "0.700 7/10",
        "0.050 1/20",
        "1.50",
        "1.00",
        "1",
        "0.80",
        "0.90",
        "0.30 s / 0.50 s 1 of 2 never",
    ]
    assert rows[1][1] == "\u2013 0/0"  # no enrolled face in the stream: no recall
    text = "".join(page.text)
    assert EVIL in text  # enrolled names are shown, escaped
    assert "id-alice on 2 faces" in text
    assert "named_recall" in text  # the headline numbers are cards too


def test_no_identity_metrics_table_without_ground_truth() -> None:
    page = render()
    assert "identity-metrics" not in page.tables


def test_collect_rows_refuses_non_objects() -> None:
    with pytest.raises(ReportError, match=r"events\[0\]: expected a faces.jsonl object, got str"):
        collect_rows(["x"])  # type: ignore[list-item]


def test_write_report_writes_one_file(tmp_path: Path) -> None:
    events = evil_scene()
    path = write_report(tmp_path / "out" / "report.html", events=events, summary=scene_summary(events))
    assert path == tmp_path / "out" / "report.html"
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.slow
def test_identity_rows_render_in_a_real_headless_browser(tmp_path: Path) -> None:
    """Debian's chromium loads the file offline and its DOM holds the identity and track rows."""
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if chromium is None:
        pytest.fail(f"chromium is missing ({CHROMIUM}): {INSTALL_HINT}")
    events = evil_scene()
    jpeg = sr.jpeg(sr.parsing_ids().repeat(3).reshape(224, 224, 3) * 20)
    path = write_report(
        tmp_path / "report.html", events=events, summary=scene_summary(events), thumbnails={"cam1/t1": jpeg}
    )
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
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = parse(result.stdout)
    assert [r[:3] for r in dom.tables["identities"]] == [
        ["id-alice", EVIL, "cam1/t1, cam2/t1"],
        ["anon-7f3e9a", "anonymous", "cam1/t2"],
    ]
    assert len(dom.tables["tracks"]) == 3
    assert "script" not in {tag for tag, _ in dom.tags}  # the name stayed text in the live DOM too
    assert len([tag for tag, _ in dom.tags if tag == "rect"]) == 3  # the inline SVG timelines were parsed
