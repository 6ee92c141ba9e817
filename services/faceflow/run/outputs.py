"""The end of a run: annotated videos, best-shot thumbnails, scores, report.html and summary.json."""

from __future__ import annotations

import io
import logging
import shutil
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from faceflow.errors import ConfigError
from faceflow.run.collect import Collected
from faceflow.run.democlip import GroundTruth
from faceflow.run.report import write_report
from faceflow.run.scoring import score_streams
from faceflow.run.summary import format_summary, write_summary
from faceflow.run.video import RANDOM_INIT_NOTE, AnnotatedVideoWriter

if TYPE_CHECKING:
    from faceflow.run.orchestrate import Run, RunSource

logger = logging.getLogger(__name__)

THUMBNAIL_SIDE = 112


def _thumbnails(data: Collected, events: list[dict[str, Any]]) -> dict[str, bytes]:
    best: dict[str, dict[str, Any]] = {}
    for event in events:
        shot = event.get("best_shot")
        if shot and event.get("track_id"):
            best[f"{event['stream_id']}/{event['track_id']}"] = shot
    out: dict[str, bytes] = {}
    for key, shot in best.items():
        stream_id = key.split("/", 1)[0]
        found = data.frames_on_disk.get(stream_id, {}).get(int(shot["seq"]))
        if found is None:
            continue
        box = shot["box"]
        try:
            with Image.open(found[1]) as img:
                w, h = img.size
                pad_x, pad_y = 0.2 * (box["x2"] - box["x1"]), 0.2 * (box["y2"] - box["y1"])
                crop = img.convert("RGB").crop(
                    (
                        max(0, int(box["x1"] - pad_x)),
                        max(0, int(box["y1"] - pad_y)),
                        min(w, int(box["x2"] + pad_x)),
                        min(h, int(box["y2"] + pad_y)),
                    )
                )
                crop.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                buf = io.BytesIO()
                crop.save(buf, format="JPEG", quality=85)
                out[key] = buf.getvalue()
        except OSError as exc:
            logger.warning("thumbnail of %s: %s", key, exc)
    return out


def _videos(run: Run, data: Collected, events: list[dict[str, Any]], random_init: bool) -> dict[str, str]:
    from tqdm import tqdm  # noqa: PLC0415

    o = run.options
    by_stream_seq: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for event in events:
        if event.get("type") == "observation":
            by_stream_seq[event["stream_id"]][int(event["seq"])].append(event)
    written: dict[str, str] = {}
    for source in o.sources:
        frames = data.frames_on_disk.get(source.stream_id, {})
        if not frames:
            continue
        path = o.out_dir / f"annotated-{source.stream_id}.mp4"
        writer = AnnotatedVideoWriter(
            path,
            fps=source.sampling_fps(o.fps) or 25.0,
            blur=o.blur,
            parsing_overlay=o.parsing_overlay,
            random_init_note=RANDOM_INIT_NOTE if random_init else None,
        )
        interval = 0.5 if sys.stderr.isatty() else 10.0
        rows = tqdm(
            sorted(frames),
            desc=f"video {source.stream_id}",
            unit="frame",
            disable=not o.progress,
            mininterval=interval,
        )
        for seq in rows:
            pts, jpeg_path = frames[seq]
            writer.write(seq, pts, jpeg_path.read_bytes(), by_stream_seq[source.stream_id].get(seq, []))
        writer.close()
        written[f"annotated-{source.stream_id}.mp4"] = str(path)
    return written


def write_outputs(run: Run, data: Collected, *, wall_seconds: float, interrupted: bool) -> dict[str, Any]:
    """Write every output of ``run`` into its folder and print the closing summary."""

    o = run.options
    with data.lock:
        events = list(data.events)
        streams = {s.stream_id: data.streams[s.stream_id] for s in o.sources}
        latencies = {k: list(v) for k, v in data.latencies.items()}
        random_init = data.random_init
        analyzed_frames = {sid: dict(frames) for sid, frames in data.analyzed_frames.items()}
    outputs: dict[str, str] = {"faces.jsonl": str(o.out_dir / "faces.jsonl")}
    if o.video:
        outputs.update(_videos(run, data, events, random_init))
    # pooled over every stream with a ground truth; the names enrolled for this run are the
    # enrolled persons of the identity metrics (repeated --enroll NAME=IMAGE adds photos to NAME)
    scores = (
        score_streams(
            events,
            ground_truths(o.sources),
            enrolled={name for name, _ in o.enroll},
            analyzed_frames=analyzed_frames,
        )
        or None
    )
    summary_streams = {
        s.stream_id: {
            "frames": streams[s.stream_id].frames,
            "source": s.uri,
            "fps": s.sampling_fps(o.fps),
            "live": s.live,
            "ended": streams[s.stream_id].ended,
        }
        for s in o.sources
    }
    outputs["report.html"] = str(o.out_dir / "report.html")
    outputs["summary.json"] = str(o.out_dir / "summary.json")
    from faceflow.run.summary import build_summary  # noqa: PLC0415

    summary = build_summary(
        events=events,
        streams=summary_streams,
        latencies=latencies,
        wall_seconds=max(wall_seconds, 1e-3),
        ground_truth_scores=scores,
        outputs=outputs,
    )
    summary["run"] = {
        "id": run.run_id,
        "schedule": o.schedule,
        "interrupted": interrupted,
        "analysis_seconds": round(run.analysis_seconds, 3),
        "logs": str(o.out_dir / "logs"),
        "errors": data.errors[:20],
    }
    write_summary(o.out_dir / "summary.json", summary)
    write_report(
        o.out_dir / "report.html", events=events, summary=summary, thumbnails=_thumbnails(data, events)
    )
    shutil.rmtree(o.out_dir / ".frames", ignore_errors=True)
    run.say(format_summary(summary))
    return summary


def ground_truths(sources: Sequence[RunSource]) -> dict[str, GroundTruth]:
    """The ground truth of every source that has one, by stream id.

    Raises:
        ConfigError: a ground-truth file that does not load (the message names it).
    """
    out = {}
    for source in sources:
        if source.ground_truth is not None:
            try:
                out[source.stream_id] = GroundTruth.load(source.ground_truth)
            except ValueError as exc:
                raise ConfigError(f"{source.ground_truth}: {exc}") from exc
    return out
