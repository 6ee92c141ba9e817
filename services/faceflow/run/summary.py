"""``summary.json`` and the closing text of ``faceflow run`` / ``make demo``.

:func:`build_summary` counts a run from its faces.jsonl objects (:mod:`faceflow.run.events_json`),
the orchestration's per-stream facts, the per-hop latencies it measured and the wall time;
:func:`format_summary` turns the result into the short text printed at the end; :func:`write_summary`
writes it as JSON. Pure: standard library and numpy.

Definitions (the numbers a reader compares between runs):

* ``frames``: frames the orchestration fed, per stream (``streams[sid]["frames"]``); frames with
  no face produce no event, so events cannot count them.
* ``faces``: observation events (one face in one frame); ``analyzed`` of them ran the face model,
  ``skipped`` reused an earlier frame's results (face-aware scheduling).
* ``tracks``: distinct ``(stream_id, track_id)``; ``identities``: distinct identity ids that a
  track holds at its last event (or that carry a name), ``named`` when their latest event gives a
  name, else ``anonymous``; ``identities_transient``: ids seen only before a track moved on (a
  returning person's first, merged-away anonymous identity).
* ``throughput``: per second of wall time (``wall_seconds``), the whole run including start-up of
  nothing that was already running (the orchestration chooses where the clock starts).
* ``latency_seconds``: per hop, ``count``, ``mean``, ``p50``, ``p90``, ``p99`` (linear interpolation
  between order statistics, numpy's default) and ``max``; null numbers for a hop without samples.
* ``scores`` (with a ground truth, :mod:`faceflow.run.scoring`): the headline numbers of the pool of
  every scored stream, ``per_stream`` (tracking, identities, ``identity_metrics``) and ``pooled``
  (the same from summed counts). ``identity_metrics`` (defined in
  :mod:`faceflow.core.identity_metrics`): named recall, false-name rate, identities per person,
  persons per identity, same-frame shared identities, identity IDF1 and time to name; the closing
  text prints the pooled ones on the ``names`` line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from faceflow.errors import FaceflowError
from faceflow.files import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_HINT",
    "PERCENTILES",
    "SUMMARY_SCHEMA",
    "SummaryError",
    "build_summary",
    "format_summary",
    "latency_stats",
    "random_init_models",
    "write_summary",
]

#: Identifies the layout of summary.json (bump on an incompatible change).
SUMMARY_SCHEMA: Final[str] = "faceflow.run.summary/1"
#: Percentiles reported per hop.
PERCENTILES: Final[tuple[int, ...]] = (50, 90, 99)
#: How to replace random face-model weights with the released checkpoint.
CHECKPOINT_HINT: Final[str] = (
    "get the released checkpoint with `faceflow models fetch`, then `faceflow models build`"
)


class SummaryError(FaceflowError, ValueError):
    """An input of :func:`build_summary` is malformed."""


def _finite(value: object, where: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SummaryError(f"{where}: expected a finite number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise SummaryError(f"{where}: expected a finite number{bound}, got {value}")
    return float(value)


def _jsonable(value: Any) -> Any:
    """``value`` with paths as strings, tuples as lists, non-finite floats as null."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _stream_info(stream_id: str, info: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(info) and not isinstance(info, type):
        info = dataclasses.asdict(info)
    if not isinstance(info, Mapping):
        raise SummaryError(
            f"streams[{stream_id!r}]: expected a mapping or a dataclass, got {type(info).__name__}"
        )
    frames = info.get("frames")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
        raise SummaryError(f"streams[{stream_id!r}]: frames: expected an int >= 0, got {frames!r}")
    out: dict[str, Any] = _jsonable(info)
    return out


def latency_stats(values: Sequence[float], where: str = "latency") -> dict[str, Any]:
    """``count``, ``mean``, ``p50``, ``p90``, ``p99``, ``max`` of ``values`` in seconds (null when empty)."""
    checked = [_finite(v, f"{where}[{i}]") for i, v in enumerate(values)]
    if not checked:
        return {"count": 0, "mean": None, **{f"p{p}": None for p in PERCENTILES}, "max": None}
    arr = np.asarray(checked, dtype=np.float64)
    quantiles = np.percentile(arr, PERCENTILES)
    return {
        "count": len(checked),
        "mean": float(arr.mean()),
        **{f"p{p}": float(q) for p, q in zip(PERCENTILES, quantiles, strict=True)},
        "max": float(arr.max()),
    }


def _models(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for event in events:
        for model in event.get("models") or ():
            key = tuple(model.get(k) for k in ("name", "version", "weights", "random_init", "variant"))
            seen.setdefault(key, dict(model))
    return sorted(seen.values(), key=lambda m: (str(m.get("name")), str(m.get("version"))))


def random_init_models(models: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of the models (``summary["models"]`` or events' ``models``) whose weights are random."""
    return sorted({str(m.get("name")) for m in models if m.get("random_init")})


def build_summary(
    *,
    events: Sequence[Mapping[str, Any]],
    streams: Mapping[str, Any],
    latencies: Mapping[str, Sequence[float]],
    wall_seconds: float,
    ground_truth_scores: Mapping[str, Any] | None = None,
    outputs: Mapping[str, str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """The run's summary (the content of summary.json; see the module docstring for each number).

    Args:
        events: the run's faces.jsonl objects, every stream.
        streams: per stream id, the orchestration's facts about it: a mapping (or dataclass) with
            ``frames`` (int, frames fed) and whatever else it knows (``source``, ``fps``, ...),
            copied into ``streams[sid]["info"]``.
        latencies: per hop name (e.g. ``"ingest->faces"``), the measured latencies in seconds.
        wall_seconds: wall time of the run, > 0.
        ground_truth_scores: tracking / identity scores against ground truth (``idf1``, ...), if any.
        outputs: what was written where (``{"faces.jsonl": path, ...}``), for the closing text.
    """
    wall = _finite(wall_seconds, "wall_seconds", minimum=0.0)
    if wall <= 0:
        raise SummaryError(f"wall_seconds: expected a finite number > 0, got {wall_seconds}")
    if not isinstance(streams, Mapping):
        raise SummaryError(f"streams: expected a mapping of stream id -> info, got {type(streams).__name__}")
    infos = {str(sid): _stream_info(str(sid), info) for sid, info in streams.items()}

    by_type: Counter[str] = Counter()
    per_stream: dict[str, dict[str, Any]] = {
        sid: {"faces": 0, "analyzed": 0, "tracks": set(), "frames_with_faces": set()} for sid in infos
    }
    identity_names: dict[str, str | None] = {}
    #: the identity each track holds at its last event: what the run found, without the ids a track
    #: held briefly before it was merged into an older identity (a returning person)
    held_last: dict[tuple[str, str], str] = {}
    tracks: set[tuple[str, str]] = set()
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise SummaryError(f"events[{i}]: expected a faces.jsonl object, got {type(event).__name__}")
        kind, sid = str(event.get("type")), str(event.get("stream_id"))
        by_type[kind] += 1
        stats = per_stream.setdefault(
            sid, {"faces": 0, "analyzed": 0, "tracks": set(), "frames_with_faces": set()}
        )
        if event.get("track_id"):
            tracks.add((sid, str(event["track_id"])))
            stats["tracks"].add(str(event["track_id"]))
        identity = event.get("identity")
        if identity and identity.get("id"):
            identity_names[str(identity["id"])] = identity.get("name") or None
            if event.get("track_id"):
                held_last[(sid, str(event["track_id"]))] = str(identity["id"])
        if kind == "observation":
            stats["faces"] += 1
            stats["analyzed"] += bool(event.get("analyzed"))
            stats["frames_with_faces"].add(event.get("seq"))

    for sid in per_stream:
        if sid not in infos:
            logger.warning("stream %s: events but no stream info; counting its frames as 0", sid)
    faces = sum(s["faces"] for s in per_stream.values())
    analyzed = sum(s["analyzed"] for s in per_stream.values())
    frames = sum(int(info["frames"]) for info in infos.values())
    final = set(held_last.values()) | {i for i, name in identity_names.items() if name}
    named = sorted(name for name in identity_names.values() if name)
    models = _models(events)
    scores = None if ground_truth_scores is None else _jsonable(dict(ground_truth_scores))
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "wall_seconds": wall,
        "counts": {
            "streams": len(per_stream),
            "frames": frames,
            "frames_with_faces": sum(len(s["frames_with_faces"]) for s in per_stream.values()),
            "faces": faces,
            "observations_analyzed": analyzed,
            "observations_skipped": faces - analyzed,
            "analyzed_share": analyzed / faces if faces else None,
            "tracks": len(tracks),
            "identities": len(final),
            "identities_named": sum(1 for i in final if identity_names.get(i)),
            "identities_anonymous": sum(1 for i in final if not identity_names.get(i)),
            "identities_transient": len(identity_names) - len(final),
            "events": dict(sorted(by_type.items())),
        },
        "identity_names": named,
        "throughput": {
            "frames_per_second": frames / wall,
            "faces_per_second": faces / wall,
            "analyzed_faces_per_second": analyzed / wall,
        },
        "latency_seconds": {
            str(hop): latency_stats(values, f"latencies[{hop!r}]") for hop, values in latencies.items()
        },
        "streams": {
            sid: {
                "frames": int(infos[sid]["frames"]) if sid in infos else 0,
                "faces": s["faces"],
                "observations_analyzed": s["analyzed"],
                "tracks": len(s["tracks"]),
                "info": infos.get(sid, {}),
            }
            for sid, s in sorted(per_stream.items())
        },
        "models": models,
        "random_init_models": random_init_models(models),
        "scores": scores,
        "outputs": {str(k): str(v) for k, v in (outputs or {}).items()},
    }
    logger.info(
        "summary: %d stream(s), %d frame(s), %d face(s) (%d analyzed), %d track(s), %d identities in %.1f s",
        len(per_stream),
        frames,
        faces,
        analyzed,
        len(tracks),
        len(identity_names),
        wall,
    )
    return summary


def _safe(text: object) -> str:
    """``text`` with control characters escaped (names come from clients; keep terminals sane)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.0f}"


def _score_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _safe(value)
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _rate(value: Any, num: Any, den: Any) -> str:
    shown = "-" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.3f}"
    return f"{shown} ({_safe(num)}/{_safe(den)})"


def _names_line(m: Mapping[str, Any]) -> str:
    """The pooled identity metrics in one line."""
    ttn = m.get("time_to_name") or {}
    median = ttn.get("median")
    recall = _rate(m.get("named_recall"), m.get("named_correct"), m.get("recall_faces"))
    return (
        f"  names        recall {recall}, "
        f"false names {_rate(m.get('false_name_rate'), m.get('false_names'), m.get('matched_faces'))}, "
        f"identities/person {_score_value(m.get('identities_per_person') or '-')}, "
        f"persons/identity {_score_value(m.get('persons_per_identity') or '-')}, "
        f"same-frame shared {_score_value(m.get('same_frame_shared_identity'))} frame(s), "
        f"identity IDF1 {_score_value(m.get('idf1') if m.get('idf1') is not None else '-')}, "
        f"time to name {'-' if median is None else f'{float(median):.2f} s'} "
        f"({_safe(ttn.get('never_named', 0))} of {_safe(ttn.get('tracks', 0))} never)"
    )


def format_summary(summary: Mapping[str, Any]) -> str:
    """The closing text of a run: tracks, identities, IDF1, throughput, latencies, where the files are."""
    counts = summary["counts"]
    thr = summary["throughput"]
    lines = [
        f"faceflow run: {counts['streams']} stream(s), {counts['frames']} frame(s) "
        f"in {summary['wall_seconds']:.1f} s "
        f"({thr['frames_per_second']:.1f} frames/s, {thr['faces_per_second']:.1f} faces/s)"
    ]
    per_stream = ", ".join(f"{_safe(sid)}: {s['tracks']}" for sid, s in summary.get("streams", {}).items())
    lines.append(f"  tracks       {counts['tracks']}" + (f"  ({per_stream})" if per_stream else ""))
    names = summary.get("identity_names") or []
    shown = ", ".join(_safe(n) for n in names[:5]) + (f", +{len(names) - 5} more" if len(names) > 5 else "")
    lines.append(
        f"  identities   {counts['identities']}  ({counts['identities_named']} named"
        + (f": {shown}" if shown else "")
        + f"; {counts['identities_anonymous']} anonymous"
        + (
            f"; {counts['identities_transient']} more held briefly before a merge"
            if counts.get("identities_transient")
            else ""
        )
        + ")"
    )
    share = counts.get("analyzed_share")
    lines.append(
        f"  faces        {counts['faces']}  ({counts['observations_analyzed']} analyzed, "
        f"{counts['observations_skipped']} reused an earlier analysis"
        + (f"; {share:.0%} analyzed)" if share is not None else ")")
    )
    scores = summary.get("scores")
    if scores:
        metrics = (
            (scores.get("pooled") or {}).get("identity_metrics") if isinstance(scores, Mapping) else None
        )
        from faceflow.run.scoring import IDENTITY_HEADLINE  # noqa: PLC0415 - scipy only when printing

        hidden = set(IDENTITY_HEADLINE) if metrics else set()
        idf1 = next((v for k, v in scores.items() if str(k).lower() == "idf1"), None)
        others = ", ".join(
            f"{_safe(k)} {_score_value(v)}"
            for k, v in scores.items()
            if str(k).lower() != "idf1" and k not in hidden and not isinstance(v, (Mapping, list))
        )
        head = f"  IDF1         {_score_value(idf1)}" if idf1 is not None else "  scores      "
        lines.append(head + (f"  ({others})" if others else ""))
        if metrics:
            lines.append(_names_line(metrics))
    hops = summary.get("latency_seconds") or {}
    if hops:
        width = max(len(_safe(h)) for h in hops)
        lines.append(f"  latency, ms  {'hop':<{width}}  p50 / p90 / p99 / max  (samples)")
        for hop, s in hops.items():
            lines.append(
                f"               {_safe(hop):<{width}}  "
                f"{_ms(s['p50'])} / {_ms(s['p90'])} / {_ms(s['p99'])} / {_ms(s['max'])}  ({s['count']})"
            )
    for name in summary.get("random_init_models") or ():
        lines.append(
            f"  !! {_safe(name)}: RANDOM-INIT weights: attributes, landmarks, head pose, age/gender/race "
            "and parsing are meaningless"
        )
        lines.append(f"     {CHECKPOINT_HINT}")
    outputs = summary.get("outputs") or {}
    if outputs:
        width = max(len(_safe(k)) for k in outputs)
        lines.append("  where to look")
        lines.extend(f"    {_safe(k):<{width}}  {_safe(v)}" for k, v in outputs.items())
    return "\n".join(lines)


def write_summary(path: str | os.PathLike[str], summary: Mapping[str, Any]) -> Path:
    """Write ``summary`` as indented JSON to ``path`` (atomically: a reader never sees half a file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    atomic_write_text(target, text)
    logger.info("wrote %s", target)
    return target
