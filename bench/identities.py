"""Identity metrics on real footage, and the naming operating point's trade-off.

1. **The mesh, once** (exactly ``faceflow run``: ingest, analyzer and aggregator as real processes
   on a private broker and Triton) over every clip of ``eval/manifest.json`` at once, one stream
   per clip (``ID=FILE``), with every enrolment of the manifest, ``--schedule adaptive`` unless told
   otherwise, each clip sampled at its own ``fps`` from the manifest (5 when it has none) unless
   ``--fps`` says one rate for all. Every clip is scored against its ground truth and the clips are
   pooled (counts summed): :mod:`faceflow.core.identity_metrics`.
2. **The replay**: the run's analyses topic (kept) goes through
   :class:`faceflow.core.stream.StreamAnalytics` offline, converted exactly as the aggregator does
   (:func:`faceflow.aggregator.events.frame_in`, then :func:`~faceflow.aggregator.events.face_events`
   and the faces.jsonl form), once per naming operating point ``match_threshold`` from 0.40 to 0.70
   in steps of 0.025 (``dataclasses.replace`` on the aggregator's own ``StreamConfig``), each time
   with a fresh gallery holding the enrolled identities as the run's identities topic has them.
   It prints the false-name / named-recall / identities-per-person / persons-per-identity table.
   The replay at the run's own threshold must reproduce the live run's numbers; it says so.
3. **The baseline**, from the same analyses: per-frame naming, no tracking and no accumulation:
   each analyzed face is named by its own descriptor's nearest enrolled identity when within dlib's
   documented 0.6; a face that was not analyzed (adaptive scheduling) has no descriptor and no name.

The last line is ``identities: ratio=<x>``: the live run's pooled identity IDF1 (track-level
naming) over the baseline's. ``ratio_analyzed_only`` in the JSON compares both on the analyzed
faces only (with ``--schedule all`` the two ratios are one). Without ``eval/manifest.json`` (or with
``--demo``) it runs on the generated demo clip, enrolling the astronaut as ``faceflow demo`` does.
``--quick``: at most 5 frames/s per clip and a sweep in steps of 0.05. Results are written to
bench/results/identities.json.

    .venv/bin/python bench/identities.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib

from faceflow import topics
from faceflow.aggregator.config import AggregatorConfig
from faceflow.aggregator.events import AnalysisError, face_events, frame_in
from faceflow.aggregator.gallery import from_record
from faceflow.aggregator.processor import AggregatorProcessor
from faceflow.core.identity import Gallery, IdentityEntry, IdentityKind
from faceflow.core.stream import StreamAnalytics, StreamConfig
from faceflow.kafka.clients import make_consumer
from faceflow.run.democlip import DEMO, GroundTruth, generate_clip
from faceflow.run.events_json import event_to_json
from faceflow.run.orchestrate import Run, RunOptions, assign_ground_truths, parse_sources, with_stream_fps
from faceflow.run.scoring import score_streams
from faceflow.runtime.settings import DevSettings
from faceflow.streams import InvalidStreamId, validate_stream_id
from faceflow.v1 import analysis_pb2, identity_pb2

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "eval" / "manifest.json"
RESULTS = REPO / "bench" / "results" / "identities.json"
#: The run's own outputs (report.html to look at by eye); replaced by each run.
OUT = REPO / "out" / "bench-identities"
#: dlib's documented operating point for its face descriptors (same person below it).
DLIB_THRESHOLD = 0.6
DEFAULT_FPS = 5.0
QUICK_MAX_FPS = 5.0


class ManifestError(ValueError):
    """eval/manifest.json is missing a field or has one of the wrong type."""


@dataclass(frozen=True)
class Clip:
    id: str
    video: Path
    ground_truth: Path
    fps: float | None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalSet:
    source: str  # the manifest's path, or "generated demo clip"
    enroll: Mapping[str, tuple[Path, ...]]
    clips: tuple[Clip, ...]
    licence: str | None = None


def _field(obj: object, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ManifestError(f"{where}: expected a field {key!r}, got none")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ManifestError(f"{where}.{key}: expected {kind}, got {type(value).__name__} {value!r:.60}")
    return value


def _file(root: Path, value: object, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: expected a path relative to {root}, got {value!r:.60}")
    path = (root / value).resolve()
    if not path.is_file():
        raise ManifestError(f"{where}: {path}: no such file")
    return path


def load_manifest(path: Path) -> EvalSet:
    """The evaluation set of ``path`` (format in bench/README.md); paths are relative to its folder.

    Raises:
        ManifestError: not JSON, a missing or mistyped field, a file that is not there.
    """
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: expected a readable JSON manifest, got {exc}") from None
    where = path.name
    if _field(doc, "version", int, where) != 1:
        raise ManifestError(f"{where}.version: expected 1, got {doc['version']!r}")
    root = path.parent
    enroll = {}
    for name, photos in _field(doc, "enroll", dict, where).items():
        if not isinstance(photos, list) or not photos:
            raise ManifestError(
                f"{where}.enroll.{name}: expected a non-empty list of photos, got {photos!r:.60}"
            )
        enroll[name] = tuple(_file(root, p, f"{where}.enroll.{name}[{i}]") for i, p in enumerate(photos))
    clips = []
    for i, raw in enumerate(_field(doc, "clips", list, where)):
        at = f"{where}.clips[{i}]"
        fps = raw.get("fps") if isinstance(raw, dict) else None
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0):
            raise ManifestError(f"{at}.fps: expected a number > 0, got {fps!r}")
        clips.append(
            Clip(
                id=_field(raw, "id", str, at),
                video=_file(root, raw.get("video"), f"{at}.video"),
                ground_truth=_file(root, raw.get("ground_truth"), f"{at}.ground_truth"),
                fps=None if fps is None else float(fps),
                tags=tuple(str(t) for t in raw.get("tags") or ()),
            )
        )
    if not clips:
        raise ManifestError(f"{where}.clips: expected at least one clip, got none")
    licence = doc.get("licence")
    return EvalSet(source=str(path), enroll=enroll, clips=tuple(clips), licence=licence)


def demo_set() -> EvalSet:
    clip = generate_clip(DEMO, REPO / "out" / "clips")
    truth = GroundTruth.load(clip.ground_truth)
    return EvalSet(
        source="generated demo clip",
        enroll={"astronaut": (clip.enroll["astronaut"],)},
        clips=(Clip(id="demo", video=clip.video, ground_truth=clip.ground_truth, fps=float(truth.fps)),),
    )


# --- the live run ------------------------------------------------------------------------------------


def run_mesh(
    settings: DevSettings, evalset: EvalSet, *, fps: float | None, quick: bool, schedule: str, out: Path
) -> Run:
    """``faceflow run`` over every clip at once, its topics kept for the replay (``out`` is emptied)."""
    rates = {c.id: c.fps or DEFAULT_FPS for c in evalset.clips} if fps is None else {}
    if quick:
        rates = {c.id: min(QUICK_MAX_FPS, rates.get(c.id, fps or DEFAULT_FPS)) for c in evalset.clips}
    default = fps if fps is not None else DEFAULT_FPS
    sources = parse_sources([f"{c.id}={c.video}" for c in evalset.clips], fps=default)
    sources = assign_ground_truths(sources, [f"{c.id}={c.ground_truth}" for c in evalset.clips])
    sources = with_stream_fps(sources, rates)
    shutil.rmtree(out, ignore_errors=True)  # faces.jsonl is appended to: start from nothing
    options = RunOptions(
        sources=sources,
        out_dir=out,
        enroll=tuple((name, photo) for name, photos in evalset.enroll.items() for photo in photos),
        fps=default,
        schedule=schedule,
        video=False,
        progress=False,
        keep_topics=True,
        keep_runtime=True,
    )
    run = Run(options, settings=settings, say=lambda line: print(f"   {line.strip()}", flush=True))
    run.execute()
    return run


def read_topic(bootstrap: str, topic: str, timeout_s: float = 120.0) -> list[Any]:
    """Every record of ``topic`` up to its end offsets now, in (timestamp, partition, offset) order."""
    from kafka import TopicPartition  # noqa: PLC0415

    consumer = make_consumer(bootstrap, group_id=None, client_id=f"bench-identities-{threading.get_ident()}")
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic}: could not read to its end within {timeout_s:.0f} s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)])
    finally:
        consumer.close()
    return sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset))


def enrolled_identities(bootstrap: str, names: Sequence[str]) -> list[IdentityEntry]:
    """The enrolled identities of ``names`` as the identities topic holds them now (latest per key)."""
    latest: dict[str, bytes | None] = {}
    for record in read_topic(bootstrap, topics.IDENTITIES.name):
        latest[(record.key or b"").decode()] = record.value
    out = []
    for value in latest.values():
        if value is None:
            continue
        entry = from_record(identity_pb2.IdentityRecord.FromString(value))
        if entry.kind is IdentityKind.ENROLLED and entry.name in names:
            out.append(entry)
    missing = sorted(set(names) - {e.name for e in out})
    if missing:
        raise RuntimeError(f"the identities topic has no enrolled identity for {missing}")
    return sorted(out, key=lambda e: e.identity_id)


def _analyses(records: Sequence[Any]) -> list[analysis_pb2.FrameAnalysis]:
    """The records the aggregator would apply (the others go to its DLQ)."""
    out = []
    for record in records:
        if record.value is None:
            continue
        message = analysis_pb2.FrameAnalysis.FromString(record.value)
        try:
            validate_stream_id(message.stream_id)
        except InvalidStreamId:
            continue
        out.append(message)
    return out


def analyzed_frames(messages: Sequence[analysis_pb2.FrameAnalysis]) -> dict[str, dict[int, float]]:
    frames: dict[str, dict[int, float]] = {}
    for m in messages:
        if not m.end_of_stream:
            frames.setdefault(m.stream_id, {})[m.seq] = m.pts.ToNanoseconds() / 1e9
    return frames


# --- the replay and the baseline -----------------------------------------------------------------------


def aggregator_stream_config() -> StreamConfig:
    """The StreamConfig the aggregator builds from its config (``FACEFLOW_AGGREGATOR_*`` as the run's)."""
    processor = AggregatorProcessor(
        AggregatorConfig.from_env(), gallery=Gallery(), lock=threading.RLock(), restore=lambda _p: {}
    )
    return processor.stream_config


def replay(
    messages: Sequence[analysis_pb2.FrameAnalysis], enrolled: Sequence[IdentityEntry], config: StreamConfig
) -> list[dict[str, Any]]:
    """The faces.jsonl objects the aggregator would have written with ``config`` and a fresh gallery."""
    gallery = Gallery()
    for entry in enrolled:
        gallery.put(entry)
    streams: dict[str, StreamAnalytics] = {}
    events: list[dict[str, Any]] = []
    for message in messages:
        try:
            frame = frame_in(message)
        except AnalysisError:
            continue  # the aggregator's DLQ
        analytics = streams.get(message.stream_id)
        if analytics is None:
            analytics = streams[message.stream_id] = StreamAnalytics(message.stream_id, config, gallery)
        out = analytics.apply(frame)
        if out.repeat:
            continue
        events.extend(event_to_json(e) for e in face_events(message, out, publish_embeddings=False))
    return events


def per_frame_baseline(
    messages: Sequence[analysis_pb2.FrameAnalysis], enrolled: Sequence[IdentityEntry]
) -> list[dict[str, Any]]:
    """Observations named face by face: the nearest enrolled identity within dlib's 0.6, no memory."""
    gallery = Gallery()
    for entry in enrolled:
        gallery.put(entry)
    names = {e.identity_id: e.name for e in enrolled}
    events: list[dict[str, Any]] = []
    for message in messages:
        try:
            frame = frame_in(message)
        except AnalysisError:
            continue
        for face in frame.faces:
            identity = None
            if face.analyzed and face.embedding is not None:
                distances = gallery.distances(face.embedding)
                best = min(distances, key=lambda i: (distances[i], i)) if distances else None
                if best is not None and distances[best] <= DLIB_THRESHOLD:
                    identity = {"id": best, "name": names[best], "distance": distances[best]}
            x1, y1, x2, y2 = (float(v) for v in face.box)
            events.append(
                {
                    "type": "observation",
                    "stream_id": message.stream_id,
                    "seq": frame.seq,
                    "pts_seconds": frame.t,
                    "track_id": f"face-{frame.seq}-{face.face_index}",
                    "identity": identity,
                    "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
                    "analyzed": face.analyzed,
                    "face_index": face.face_index,
                }
            )
    return events


def _analyzed_only(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in events if e.get("type") != "observation" or e.get("analyzed")]


def sweep_points(quick: bool) -> list[float]:
    step = 0.05 if quick else 0.025
    return [round(0.40 + i * step, 3) for i in range(round(0.30 / step) + 1)]


# --- printing -------------------------------------------------------------------------------------------


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _row(label: str, m: Mapping[str, Any]) -> str:
    return (
        f"{label:>10}  {_f(m['false_name_rate']):>5} ({m['false_names']:>3}/{m['matched_faces']:<4})  "
        f"{_f(m['named_recall']):>5} ({m['named_correct']:>3}/{m['recall_faces']:<4})  "
        f"{_f(m['identities_per_person'], 2):>6}  {_f(m['persons_per_identity'], 2):>6}  "
        f"{_f(m['idf1']):>5}  {m['same_frame_shared_identity']:>6}"
    )


HEADER = (
    f"{'threshold':>10}  {'false names':<17}  {'named recall':<17}  {'id/prs':>6}  {'prs/id':>6}  "
    f"{'IDF1':>5}  {'shared':>6}"
)


def _headline(scores: Mapping[str, Any]) -> dict[str, Any]:
    m = scores["pooled"]["identity_metrics"]
    keys = (
        "named_recall",
        "named_correct",
        "recall_faces",
        "false_name_rate",
        "false_names",
        "matched_faces",
        "named_faces",
        "false_name_share_of_named",
        "stranger_faces_named",
        "identities_per_person",
        "persons_per_identity",
        "same_frame_shared_identity",
        "idf1",
        "tracking_idf1",
    )
    return {k: m[k] for k in keys} | {
        "time_to_name": {k: v for k, v in m["time_to_name"].items() if k != "per_track"}
    }


def main(argv: list[str] | None = None) -> int:
    benchlib.stop_on_sigterm()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="at most 5 frames/s per clip, sweep steps of 0.05"
    )
    parser.add_argument(
        "--fps", type=float, help="one sampling rate for every clip (default: each clip's own)"
    )
    parser.add_argument(
        "--schedule", choices=("adaptive", "all"), default="adaptive", help="default adaptive"
    )
    parser.add_argument(
        "--manifest", type=Path, default=MANIFEST, help=f"default {MANIFEST.relative_to(REPO)}"
    )
    parser.add_argument("--demo", action="store_true", help="the generated demo clip instead of the manifest")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--out",
        type=Path,
        default=OUT,
        help="the run's faces.jsonl, report.html, summary.json (default out/...)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in ("kafka", "faceflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.fps is not None and not args.fps >= 0:
        parser.error(f"--fps: expected a number >= 0, got {args.fps}")
    if args.demo or not args.manifest.exists():
        if not args.demo:
            print(f"{args.manifest} does not exist (yet): the generated demo clip instead", flush=True)
        evalset = demo_set()
    else:
        try:
            evalset = load_manifest(args.manifest)
        except ManifestError as exc:
            parser.exit(2, f"identities: {exc}\n")
    names = sorted(evalset.enroll)
    truths = {c.id: GroundTruth.load(c.ground_truth) for c in evalset.clips}
    print(
        f"evaluation set: {evalset.source}: {len(evalset.clips)} clip(s), enrolled {', '.join(names)}",
        flush=True,
    )
    started = time.monotonic()
    with benchlib.private_runtime(
        model_repository=(REPO / "build" / "triton_repo" / "cpu").absolute(),
        external_kafka=os.environ.get("FACEFLOW_KAFKA_BOOTSTRAP") or None,
        external_triton=os.environ.get("FACEFLOW_TRITON_URL") or None,
    ) as settings:
        print(f"runtime: Kafka {settings.kafka_bootstrap}, Triton {settings.triton_grpc_url}", flush=True)
        run = run_mesh(
            settings,
            evalset,
            fps=args.fps,
            quick=args.quick,
            schedule=args.schedule,
            out=args.out,
        )
        live_events = [
            json.loads(line) for line in (run.options.out_dir / "faces.jsonl").read_text().splitlines()
        ]
        messages = _analyses(read_topic(settings.kafka_bootstrap, run.topics["analyses"]))
        enrolled = enrolled_identities(settings.kafka_bootstrap, names)
    run_seconds = time.monotonic() - started
    frames = analyzed_frames(messages)
    rates = {s.stream_id: s.sampling_fps(run.options.fps) for s in run.options.sources}

    def score(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return score_streams(events, truths, enrolled=names, analyzed_frames=frames)

    live = score(live_events)
    base_config = aggregator_stream_config()
    sweep = []
    print(
        f"\nnaming operating point (replayed offline; * = the run's, {base_config.match_threshold:g})",
        flush=True,
    )
    print(HEADER, flush=True)
    for threshold in sweep_points(args.quick):
        scores = score(
            replay(messages, enrolled, dataclasses.replace(base_config, match_threshold=threshold))
        )
        mark = "*" if math.isclose(threshold, base_config.match_threshold) else " "
        print(_row(f"{mark}{threshold:.3f}", scores["pooled"]["identity_metrics"]), flush=True)
        sweep.append(
            {
                "match_threshold": threshold,
                "pooled": _headline(scores),
                "per_clip": {sid: _headline({"pooled": s}) for sid, s in scores["per_stream"].items()},
            }
        )
    at_run = score(replay(messages, enrolled, base_config))
    counts = ("idtp", "named_correct", "false_names", "matched_faces", "same_frame_shared_identity")
    reproduced = all(
        at_run["pooled"]["identity_metrics"][k] == live["pooled"]["identity_metrics"][k] for k in counts
    )
    baseline_events = per_frame_baseline(messages, enrolled)
    baseline = score(baseline_events)
    live_m, base_m = live["pooled"]["identity_metrics"], baseline["pooled"]["identity_metrics"]
    print(f"\nper clip, the live run (match_threshold {base_config.match_threshold:g}):", flush=True)
    print(HEADER.replace("threshold", "     clip"), flush=True)
    for sid, s in live["per_stream"].items():
        print(_row(sid[:10], s["identity_metrics"]), flush=True)
    print(_row("pooled", live_m), flush=True)
    print(
        _row("per-frame", base_m) + "   <- baseline: each analyzed face, nearest enrolled within 0.6",
        flush=True,
    )
    ttn = live_m["time_to_name"]
    print(
        f"time to name (live): median {_f(ttn['median'], 2)} s, max {_f(ttn['max'], 2)} s, "
        f"{ttn['never_named']} of {ttn['tracks']} enrolled tracks never named",
        flush=True,
    )
    print(
        f"replay at the run's threshold: identity IDF1 {_f(at_run['pooled']['identity_metrics']['idf1'])} "
        f"(live {_f(live_m['idf1'])}){'' if reproduced else '  !! the replay does not reproduce the run'}",
        flush=True,
    )
    live_an = score(_analyzed_only(live_events))["pooled"]["identity_metrics"]
    base_an = score(_analyzed_only(baseline_events))["pooled"]["identity_metrics"]
    ratio = live_m["idf1"] / base_m["idf1"] if live_m["idf1"] and base_m["idf1"] else math.nan
    ratio_an = live_an["idf1"] / base_an["idf1"] if live_an["idf1"] and base_an["idf1"] else math.nan
    print(
        f"baseline (per-frame naming): named recall {_f(base_m['named_recall'])}, false-name rate "
        f"{_f(base_m['false_name_rate'])}, identity IDF1 {_f(base_m['idf1'])}; on analyzed faces only: "
        f"track-level IDF1 {_f(live_an['idf1'])} vs {_f(base_an['idf1'])} (ratio {_f(ratio_an, 2)})",
        flush=True,
    )
    benchlib.write_results(
        args.results,
        {
            "benchmark": "identities",
            "ratio": None if math.isnan(ratio) else round(ratio, 3),
            "ratio_analyzed_only": None if math.isnan(ratio_an) else round(ratio_an, 3),
            "evaluation_set": {
                "source": evalset.source,
                "licence": evalset.licence,
                "enrolled": {n: [str(p) for p in ps] for n, ps in evalset.enroll.items()},
                "clips": {
                    c.id: {"video": str(c.video), "fps": rates.get(c.id), "tags": list(c.tags)}
                    for c in evalset.clips
                },
            },
            "schedule": args.schedule,
            "quick": args.quick,
            "run": {
                "id": run.run_id,
                "seconds": round(run_seconds, 1),
                "analysis_seconds": round(run.analysis_seconds, 3),
            },
            "match_threshold": base_config.match_threshold,
            "live": {
                "pooled": _headline(live),
                "per_clip": {sid: s["identity_metrics"] for sid, s in live["per_stream"].items()},
                "scores": {k: v for k, v in live.items() if k not in ("per_stream", "pooled")},
            },
            "replay_reproduces_run": reproduced,
            "baseline": {
                "what": f"per-frame naming: the nearest enrolled identity within {DLIB_THRESHOLD} (dlib), "
                "no tracking, no accumulation",
                "pooled": _headline(baseline),
                "analyzed_only_idf1": base_an["idf1"],
            },
            "live_analyzed_only_idf1": live_an["idf1"],
            "sweep": sweep,
            "machine": benchlib.machine(),
        },
    )
    print(f"identities: ratio={ratio:.2f}")
    return 0 if not math.isnan(ratio) else 1


if __name__ == "__main__":
    raise SystemExit(main())
