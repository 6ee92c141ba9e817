"""``report.html``: one self-contained page per run, readable offline.

:func:`write_report` renders the run from its faces.jsonl objects (:mod:`faceflow.run.events_json`)
and its summary (:mod:`faceflow.run.summary`): a header with the run's numbers, a loud banner when
any model ran with random weights, the identity metrics against the ground truth (a row per stream
and the pool, when the run was scored), a table of identities, a table of tracks (with best-shot
thumbnails when given) and a timeline per stream as inline SVG.

Self-contained: inline CSS, no script, no font, no request of any kind; a Content-Security-Policy
meta tag forbids every fetch except ``data:`` images, so a stray URL could not load either. Every
string that comes from events or the summary (stream ids, identity names come from clients) is
HTML-escaped. Thumbnails are face pixels: they are in the file only when the caller passes them.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from faceflow.errors import FaceflowError
from faceflow.files import atomic_write_text
from faceflow.run.summary import random_init_models
from faceflow.run.video import palette_colour, short_identity, short_track

logger = logging.getLogger(__name__)

__all__ = [
    "IdentityRow",
    "ReportError",
    "TrackRow",
    "collect_rows",
    "render_report",
    "timeline_svg",
    "write_report",
]

_NO_IDENTITY_COLOUR: Final[str] = "#9aa3ad"
_TOP_ATTRIBUTES: Final[int] = 5
_LABEL_CHARS: Final[int] = 26  # timeline row labels (the full label is the tooltip)
_GAP_FRAMES: Final[float] = 2.5  # a gap longer than this many frame intervals splits a timeline bar
_EN_DASH: Final[str] = "\u2013"  # shown for a missing value
_DASH: Final[str] = '<span class="muted">&ndash;</span>'
_RANDOM: Final[str] = '<span class="random">RANDOM</span>'
_JPEG: Final[bytes] = b"\xff\xd8\xff"
_PNG: Final[bytes] = b"\x89PNG\r\n\x1a\n"

_CSS: Final[str] = """
:root { color-scheme: light; --fg: #1d2430; --muted: #5b6675; --line: #d8dde4; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: var(--bg); margin: 0; padding: 24px 32px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 32px 0 8px; }
h3 { font-size: 14px; margin: 18px 0 6px; color: var(--muted); }
.sub { color: var(--muted); margin: 0 0 16px; }
.banner { background: #b00020; color: #fff; border: 4px solid #6d0014; border-radius: 6px;
          padding: 14px 18px; margin: 16px 0; font-size: 16px; }
.banner strong { font-size: 20px; display: block; margin-bottom: 4px; letter-spacing: .02em; }
.banner code { background: rgba(255,255,255,.18); padding: 1px 5px; border-radius: 3px; color: #fff; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px;
        min-width: 130px; }
.card .v { font-size: 20px; font-weight: 600; } .card .k { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); margin: 6px 0 12px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 10px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; font-size: 13px; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: var(--muted); } .anon { color: var(--muted); font-style: italic; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 5px;
          vertical-align: -1px; border: 1px solid rgba(0,0,0,.25); }
img.thumb { display: block; max-width: 96px; max-height: 96px; border-radius: 4px; margin-top: 4px; }
.random { color: #b00020; font-weight: 600; }
svg.timeline { background: #fff; border: 1px solid var(--line); border-radius: 6px; }
svg text { font: 12px system-ui, "DejaVu Sans", sans-serif; fill: #1d2430; }
svg .tick { fill: #5b6675; font-size: 11px; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
"""


class ReportError(FaceflowError, ValueError):
    """An input of :func:`write_report` is malformed."""


def _e(value: object) -> str:
    """HTML-escape ``value`` (text and attribute values alike)."""
    return html.escape(str(value), quote=True)


@dataclass(frozen=True, slots=True)
class TrackRow:
    """One track as the report shows it (from its events; the latest value of each field wins)."""

    stream_id: str
    track_id: str
    identity_id: str | None
    identity_name: str | None
    observations: int
    analyzed: int
    first_pts: float | None
    last_pts: float | None
    observed_pts: tuple[float, ...]
    analyzed_pts: tuple[float, ...]
    best_shot: Mapping[str, Any] | None
    fused: Mapping[str, Any] | None
    end_reason: str | None

    @property
    def key(self) -> str:
        """``stream_id/track_id``, the key of its thumbnail."""
        return f"{self.stream_id}/{self.track_id}"


@dataclass(frozen=True, slots=True)
class IdentityRow:
    """One identity: its tracks, when it was seen, and the fused results of its best-evidenced track."""

    identity_id: str
    name: str | None
    tracks: tuple[TrackRow, ...]
    fused: Mapping[str, Any] | None
    fused_from: str | None

    @property
    def first_seen(self) -> TrackRow | None:
        """The track seen first (by pts), if any was observed."""
        seen = [t for t in self.tracks if t.first_pts is not None]
        return min(seen, key=lambda t: (t.first_pts or 0.0, t.stream_id)) if seen else None

    @property
    def last_seen(self) -> TrackRow | None:
        """The track seen last (by pts), if any was observed."""
        seen = [t for t in self.tracks if t.last_pts is not None]
        return max(seen, key=lambda t: (t.last_pts or 0.0, t.stream_id)) if seen else None


def collect_rows(events: Iterable[Mapping[str, Any]]) -> tuple[list[IdentityRow], list[TrackRow]]:
    """Group the events into identity rows (named first) and track rows (by stream, first pts)."""
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise ReportError(f"events[{i}]: expected a faces.jsonl object, got {type(event).__name__}")
        if not event.get("track_id"):
            continue
        key = (str(event.get("stream_id")), str(event["track_id"]))
        t = acc.setdefault(
            key, {"identity": None, "obs": [], "an": [], "best": None, "fused": None, "end": None}
        )
        if event.get("identity"):
            t["identity"] = event["identity"]
        if event.get("best_shot"):
            t["best"] = event["best_shot"]
        if event.get("fused"):
            t["fused"] = event["fused"]
        if event.get("summary") and event["summary"].get("end_reason"):
            t["end"] = event["summary"]["end_reason"]
        if event.get("type") == "observation":
            pts = float(event.get("pts_seconds") or 0.0)
            t["obs"].append(pts)
            if event.get("analyzed"):
                t["an"].append(pts)
    tracks: list[TrackRow] = []
    for (sid, tid), t in acc.items():
        ident = t["identity"] or {}
        observed = tuple(sorted(t["obs"]))
        tracks.append(
            TrackRow(
                stream_id=sid,
                track_id=tid,
                identity_id=ident.get("id"),
                identity_name=ident.get("name") or None,
                observations=len(observed),
                analyzed=len(t["an"]),
                first_pts=observed[0] if observed else None,
                last_pts=observed[-1] if observed else None,
                observed_pts=observed,
                analyzed_pts=tuple(sorted(t["an"])),
                best_shot=t["best"],
                fused=t["fused"],
                end_reason=t["end"],
            )
        )
    tracks.sort(key=lambda r: (r.stream_id, math.inf if r.first_pts is None else r.first_pts, r.track_id))
    by_identity: dict[str, list[TrackRow]] = {}
    for row in tracks:
        if row.identity_id:
            by_identity.setdefault(row.identity_id, []).append(row)
    identities: list[IdentityRow] = []
    for iid, rows in by_identity.items():
        name = next((r.identity_name for r in reversed(rows) if r.identity_name), None)
        with_fused = [r for r in rows if r.fused]
        best = max(
            with_fused, key=lambda r: float(r.fused.get("weight") or 0.0) if r.fused else 0.0, default=None
        )
        identities.append(
            IdentityRow(iid, name, tuple(rows), best.fused if best else None, best.key if best else None)
        )
    identities.sort(
        key=lambda r: (r.name is None, (r.first_seen.first_pts if r.first_seen else math.inf) or 0.0)
    )
    return identities, tracks


# --- cells -----------------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return _EN_DASH if value is None else f"{value:.2f}&nbsp;s"


def _identity_cell(identity_id: str | None, name: str | None) -> str:
    if not identity_id:
        return '<span class="muted">none</span>'
    swatch = f'<span class="swatch" style="background:{_identity_colour(identity_id)}"></span>'
    if name:
        return f'{swatch}{_e(name)} <span class="muted">{_e(short_identity(identity_id, 12))}</span>'
    short = _e(short_identity(identity_id, 12))
    return f'{swatch}<span class="anon">anonymous</span> <span class="muted">{short}</span>'


def _identity_colour(identity_id: str | None) -> str:
    if not identity_id:
        return _NO_IDENTITY_COLOUR
    r, g, b = palette_colour(identity_id)
    return f"#{r:02x}{g:02x}{b:02x}"


def _distribution_cell(results: Mapping[str, Any] | None, key: str) -> str:
    dist = (results or {}).get(key)
    if not dist:
        return _DASH
    return (
        f'{_e(dist.get("label"))} <span class="muted">p {float(dist.get("probability") or 0):.2f}, '
        f"conf {float(dist.get('confidence') or 0):.2f}</span>"
    )


def _attributes_cell(results: Mapping[str, Any] | None) -> str:
    if not results or not results.get("attributes"):
        return _DASH
    probs: Mapping[str, float] = results["attributes"]
    conf: Mapping[str, float] = results.get("attribute_confidence") or {}
    present = sorted(results.get("present_attributes") or (), key=lambda a: -float(probs.get(a, 0.0)))
    if not present:
        return '<span class="muted">none present</span>'
    parts = []
    for label in present[:_TOP_ATTRIBUTES]:
        c = f", conf {float(conf[label]):.2f}" if label in conf else ""
        parts.append(f'{_e(label)} <span class="muted">{float(probs.get(label, 0.0)):.2f}{c}</span>')
    more = len(present) - _TOP_ATTRIBUTES
    return "<br>".join(parts) + (f'<br><span class="muted">+{more} more</span>' if more > 0 else "")


def _box_text(box: Mapping[str, Any] | None) -> str:
    if not box:
        return _EN_DASH
    return "[" + ", ".join(f"{float(box[k]):.0f}" for k in ("x1", "y1", "x2", "y2")) + "]"


def _thumbnail(data: bytes, alt: str) -> str:
    if data.startswith(_JPEG):
        mime = "image/jpeg"
    elif data.startswith(_PNG):
        mime = "image/png"
    else:
        logger.warning("report: thumbnail for %s is neither JPEG nor PNG; left out", alt)
        return ""
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img class="thumb" alt="best shot of {_e(alt)}" src="data:{mime};base64,{encoded}">'


def _best_shot_cell(row: TrackRow, thumbnails: Mapping[str, bytes]) -> str:
    shot = row.best_shot
    if not shot:
        return _DASH
    text = (
        f"{_e(shot.get('stream_id'))} seq {_e(shot.get('seq'))} @ {_seconds(shot.get('pts_seconds'))}<br>"
        f'<span class="muted">box {_box_text(shot.get("box"))}, '
        f"quality {float(shot.get('quality') or 0):.2f}</span>"
    )
    data = thumbnails.get(row.key)
    return text + (_thumbnail(data, row.key) if data else "")


def _fused_short(results: Mapping[str, Any] | None) -> str:
    if not results:
        return _DASH
    parts = []
    for key in ("age", "gender", "race"):
        dist = results.get(key)
        if dist:
            parts.append(
                f'{_e(dist.get("label"))} <span class="muted">{float(dist.get("confidence") or 0):.2f}</span>'
            )
    evidence = f'<br><span class="muted">evidence {_e(results.get("evidence", 0))}</span>'
    return " · ".join(parts) + evidence if parts else evidence


# --- sections ----------------------------------------------------------------------------------------


def _identity_table(identities: Sequence[IdentityRow]) -> str:
    head = (
        "<tr><th>Identity</th><th>Name</th><th>Tracks</th><th>First seen</th><th>Last seen</th>"
        "<th>Age</th><th>Gender</th><th>Race</th><th>Top attributes</th></tr>"
    )
    rows = []
    for ident in identities:
        first, last = ident.first_seen, ident.last_seen
        tracks = ", ".join(f"{_e(t.stream_id)}/{_e(short_track(t.track_id))}" for t in ident.tracks)
        name = _e(ident.name) if ident.name else '<span class="anon">anonymous</span>'
        source = f'<br><span class="muted">from {_e(ident.fused_from)}</span>' if ident.fused_from else ""
        rows.append(
            f'<tr data-identity="{_e(ident.identity_id)}">'
            f'<td><span class="swatch" style="background:{_identity_colour(ident.identity_id)}"></span>'
            f"<code>{_e(ident.identity_id)}</code></td>"
            f"<td>{name}</td><td>{tracks}</td>"
            f"<td>{_e(first.stream_id) + ' @ ' + _seconds(first.first_pts) if first else _EN_DASH}</td>"
            f"<td>{_e(last.stream_id) + ' @ ' + _seconds(last.last_pts) if last else _EN_DASH}</td>"
            f"<td>{_distribution_cell(ident.fused, 'age')}{source}</td>"
            f"<td>{_distribution_cell(ident.fused, 'gender')}</td>"
            f"<td>{_distribution_cell(ident.fused, 'race')}</td>"
            f"<td>{_attributes_cell(ident.fused)}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="9" class="muted">no identity was assigned in this run</td></tr>')
    return f'<table id="identities"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _track_table(tracks: Sequence[TrackRow], thumbnails: Mapping[str, bytes]) -> str:
    head = (
        "<tr><th>Stream</th><th>Track</th><th>Identity</th><th>Frames observed</th><th>Analyzed</th>"
        "<th>First pts</th><th>Last pts</th><th>Ended</th><th>Fused age · gender · race</th>"
        "<th>Best shot</th></tr>"
    )
    rows = []
    for t in tracks:
        rows.append(
            f'<tr data-track="{_e(t.key)}"><td>{_e(t.stream_id)}</td><td>{_e(short_track(t.track_id))}</td>'
            f"<td>{_identity_cell(t.identity_id, t.identity_name)}</td>"
            f'<td class="num">{t.observations}</td><td class="num">{t.analyzed}</td>'
            f'<td class="num">{_seconds(t.first_pts)}</td><td class="num">{_seconds(t.last_pts)}</td>'
            f"<td>{_e(t.end_reason) if t.end_reason else _DASH}</td>"
            f"<td>{_fused_short(t.fused)}</td><td>{_best_shot_cell(t, thumbnails)}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="10" class="muted">no face was tracked in this run</td></tr>')
    return f'<table id="tracks"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _clip(text: str, chars: int) -> str:
    """``text`` cut to ``chars`` characters, with an ellipsis when cut."""
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _nice_step(span: float, max_ticks: int = 10) -> float:
    raw = max(span, 1e-9) / max_ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _frame_interval(tracks: Sequence[TrackRow], fps: float | None) -> float:
    if fps and fps > 0:
        return 1.0 / fps
    diffs = [b - a for t in tracks for a, b in zip(t.observed_pts, t.observed_pts[1:], strict=False) if b > a]
    return float(statistics.median(diffs)) if diffs else 0.1


def _spans(pts: Sequence[float], dt: float) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    for p in pts:
        if spans and p - spans[-1][1] <= _GAP_FRAMES * dt:
            spans[-1] = (spans[-1][0], p)
        else:
            spans.append((p, p))
    return [(a, b + dt) for a, b in spans]


def timeline_svg(
    stream_id: str, tracks: Sequence[TrackRow], *, fps: float | None = None, width: int = 960
) -> str:
    """One stream's timeline: a row per track, bars where it was observed, dots where analyzed."""
    rows = [t for t in tracks if t.stream_id == stream_id and t.observed_pts]
    dt = _frame_interval(rows, fps)
    end = max((t.observed_pts[-1] + dt for t in rows), default=1.0)
    start = min(0.0, min((t.observed_pts[0] for t in rows), default=0.0))
    left, right, top, row_h = 190, 16, 26, 24
    plot = width - left - right
    height = top + row_h * max(1, len(rows)) + 10

    def x(t: float) -> float:
        return left + (t - start) / max(end - start, 1e-9) * plot

    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline of stream {_e(stream_id)}">'
    ]
    step = _nice_step(end - start)
    tick = math.ceil(start / step) * step
    while tick <= end + 1e-9:
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{top - 4}" x2="{x(tick):.1f}" y2="{height - 6}" stroke="#e3e7ec"/>'
            f'<text class="tick" x="{x(tick):.1f}" y="{top - 9}" text-anchor="middle">{tick:g} s</text>'
        )
        tick += step
    for i, t in enumerate(rows):
        y = top + i * row_h
        colour = _identity_colour(t.identity_id)
        who = t.identity_name or (short_identity(t.identity_id) if t.identity_id else "no identity")
        label = f"{short_track(t.track_id)} · {who}"
        parts.append(
            f'<text x="8" y="{y + 16}">{_e(_clip(label, _LABEL_CHARS))}<title>{_e(label)}</title></text>'
        )
        for a, b in _spans(t.observed_pts, dt):
            parts.append(
                f'<rect x="{x(a):.1f}" y="{y + 5}" width="{max(1.5, x(b) - x(a)):.1f}" height="14" rx="3" '
                f'fill="{colour}"><title>{_e(short_track(t.track_id))} · {_e(who)}: '
                f"{a:.2f}&ndash;{b:.2f} s</title></rect>"
            )
        for p in t.analyzed_pts:
            parts.append(
                f'<circle cx="{x(p + dt / 2):.1f}" cy="{y + 12}" r="3.2" fill="#fff" stroke="#1d2430" '
                f'stroke-width="1.2"><title>analyzed at {p:.2f} s</title></circle>'
            )
    if not rows:
        parts.append(f'<text x="{left}" y="{top + 16}" class="tick">no face observed</text>')
    parts.append("</svg>")
    return "".join(parts)


def _models_from(events: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    seen: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for model in [*(summary.get("models") or ()), *(m for e in events for m in e.get("models") or ())]:
        seen.setdefault(
            tuple(model.get(k) for k in ("name", "version", "weights", "random_init", "variant")), model
        )
    return list(seen.values())


def _banner(random_models: Sequence[str]) -> str:
    if not random_models:
        return ""
    names = ", ".join(f"<code>{_e(n)}</code>" for n in random_models)
    return (
        '<div class="banner" id="random-init-banner" role="alert"><strong>RANDOM-INIT WEIGHTS: '
        "THE FACE RESULTS BELOW ARE MEANINGLESS</strong>"
        f"Model {names} ran without trained weights, so every attribute, landmark, head pose, age, gender, "
        "race and parsing result in this report is noise. Boxes, tracks and identities come from the trained "
        "detector and embedder. To get the released checkpoint run <code>faceflow models fetch</code> then "
        "<code>faceflow models build</code>, and run again.</div>"
    )


def _card(value: str, key: str) -> str:
    return f'<div class="card"><div class="v">{value}</div><div class="k">{key}</div></div>'


def _header(
    summary: Mapping[str, Any], events: Sequence[Mapping[str, Any]], models: Sequence[Mapping[str, Any]]
) -> str:
    counts = summary.get("counts") or {}
    thr = summary.get("throughput") or {}
    cards = [
        _card(_e(counts.get("frames", _EN_DASH)), "frames"),
        _card(_e(counts.get("faces", _EN_DASH)), "face observations"),
        _card(_e(counts.get("observations_analyzed", _EN_DASH)), "analyzed"),
        _card(_e(counts.get("tracks", _EN_DASH)), "tracks"),
        _card(
            f"{_e(counts.get('identities_named', 0))} + {_e(counts.get('identities_anonymous', 0))}",
            "identities named + anonymous",
        ),
        _card(f"{float(summary.get('wall_seconds') or 0):.1f} s", "duration (wall)"),
        _card(f"{float(thr.get('frames_per_second') or 0):.1f}", "frames / s"),
        _card(f"{float(thr.get('faces_per_second') or 0):.1f}", "faces / s"),
    ]
    scores = summary.get("scores") or {}
    for key, value in scores.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            cards.append(_card(f"{value:.3f}" if isinstance(value, float) else _e(value), _e(key)))
    streams = summary.get("streams") or {}
    src_rows = "".join(
        f"<tr><td>{_e(sid)}</td><td>{_e((s.get('info') or {}).get('source', _EN_DASH))}</td>"
        f'<td class="num">{_e(s.get("frames", _EN_DASH))}</td>'
        f'<td class="num">{_e(s.get("faces", _EN_DASH))}</td>'
        f'<td class="num">{_e(s.get("tracks", _EN_DASH))}</td></tr>'
        for sid, s in streams.items()
    )
    sources = (
        '<table id="sources"><thead><tr><th>Stream</th><th>Source</th><th>Frames</th><th>Faces</th>'
        f"<th>Tracks</th></tr></thead><tbody>{src_rows}</tbody></table>"
        if src_rows
        else ""
    )
    lat_rows = "".join(
        f"<tr><td>{_e(hop)}</td>"
        + "".join(
            f'<td class="num">{_EN_DASH if s.get(k) is None else f"{float(s[k]) * 1e3:.1f}"}</td>'
            for k in ("p50", "p90", "p99", "max")
        )
        + f'<td class="num">{_e(s.get("count", 0))}</td></tr>'
        for hop, s in (summary.get("latency_seconds") or {}).items()
    )
    latency = (
        '<h3>Latency per hop (ms)</h3><table id="latency"><thead><tr><th>Hop</th><th>p50</th><th>p90</th>'
        f"<th>p99</th><th>max</th><th>samples</th></tr></thead><tbody>{lat_rows}</tbody></table>"
        if lat_rows
        else ""
    )
    model_rows = "".join(
        f"<tr><td>{_e(m.get('name'))}</td><td>{_e(m.get('version'))}</td><td>{_e(m.get('variant'))}</td>"
        f'<td><code title="{_e(m.get("weights"))}">{_e(_clip(str(m.get("weights")), 24))}</code></td>'
        f"<td>{_RANDOM if m.get('random_init') else 'trained'}</td></tr>"
        for m in models
    )
    models_table = (
        '<h3>Models</h3><table id="models"><thead><tr><th>Model</th><th>Version</th><th>Variant</th>'
        f"<th>Weights</th><th>Weights kind</th></tr></thead><tbody>{model_rows}</tbody></table>"
        if model_rows
        else ""
    )
    return f'<div class="cards">{"".join(cards)}</div><h3>Sources</h3>{sources}{latency}{models_table}'


def _fraction(value: Any, num: Any, den: Any) -> str:
    shown = _EN_DASH if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.3f}"
    return f'{shown} <span class="muted">{_e(num)}/{_e(den)}</span>'


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _DASH
    return f"{value:.2f}" if isinstance(value, float) else _e(value)


def _identity_metrics_row(label: str, m: Mapping[str, Any], *, pooled: bool = False) -> str:
    ttn = m.get("time_to_name") or {}
    median, worst = ttn.get("median"), ttn.get("max")
    time_to_name = (
        f"{_seconds(median) if median is not None else _EN_DASH} / "
        f"{_seconds(worst) if worst is not None else _EN_DASH}"
        f' <span class="muted">{_e(ttn.get("never_named", 0))} of {_e(ttn.get("tracks", 0))} never</span>'
    )
    cells = [
        _fraction(m.get("named_recall"), m.get("named_correct"), m.get("recall_faces")),
        _fraction(m.get("false_name_rate"), m.get("false_names"), m.get("matched_faces")),
        _number(m.get("identities_per_person")),
        _number(m.get("persons_per_identity")),
        _number(m.get("same_frame_shared_identity")),
        _number(m.get("idf1")),
        _number(m.get("tracking_idf1")),
        time_to_name,
    ]
    name = f"<strong>{_e(label)}</strong>" if pooled else _e(label)
    return (
        f'<tr data-stream="{_e(label)}"><td>{name}</td>'
        + "".join(f'<td class="num">{c}</td>' for c in cells)
        + "</tr>"
    )


def _identity_metrics_section(summary: Mapping[str, Any]) -> str:
    """Per stream and pooled: the identity metrics against the ground truth (none without one)."""
    scores = summary.get("scores") or {}
    per_stream = {
        sid: s["identity_metrics"]
        for sid, s in (scores.get("per_stream") or {}).items()
        if isinstance(s, Mapping) and isinstance(s.get("identity_metrics"), Mapping)
    }
    if not per_stream:
        return ""
    rows = [_identity_metrics_row(sid, m) for sid, m in sorted(per_stream.items())]
    pooled = (scores.get("pooled") or {}).get("identity_metrics")
    if isinstance(pooled, Mapping) and len(per_stream) > 1:
        rows.append(_identity_metrics_row("pooled", pooled, pooled=True))
    first = next(iter(per_stream.values()))
    enrolled = ", ".join(_e(n) for n in first.get("enrolled") or ()) or "nobody"
    head = (
        "<tr><th>Stream</th><th>Named recall</th><th>False-name rate</th><th>Identities / person</th>"
        "<th>Persons / identity</th><th>Same-frame shared (frames)</th><th>Identity IDF1</th>"
        "<th>Tracking IDF1</th><th>Time to name, median / max</th></tr>"
    )
    shared = [
        f"{_e(e.get('stream') or '')}{' ' if e.get('stream') else ''}seq {_e(e.get('key'))} "
        f"@ {_seconds(e.get('t'))}: {_e(e.get('identity_id'))} on {_e(e.get('observations'))} faces"
        for m in ([pooled] if isinstance(pooled, Mapping) else per_stream.values())
        for e in (m.get("same_frame_shared_examples") or ())
    ]
    examples = (
        f'<p class="sub">One identity on several faces of a frame: {"; ".join(shared)}.</p>' if shared else ""
    )
    return (
        '<h2 id="identity-metrics-title">Identity metrics against the ground truth</h2>'
        f'<p class="sub">Enrolled: {enrolled}. Recall counts the enrolled persons\' visible faces at least '
        f"{_e(first.get('min_face_px'))} px high; a false name is a matched face carrying another person's "
        "name, over all matched faces. The pooled row sums the counts of every stream.</p>"
        f'<table id="identity-metrics"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>{examples}'
    )


def render_report(
    *,
    events: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    thumbnails: Mapping[str, bytes] | None = None,
) -> str:
    """The report as one HTML document (see :func:`write_report`)."""
    thumbs = dict(thumbnails or {})
    for key, value in thumbs.items():
        if not isinstance(key, str) or not isinstance(value, (bytes, bytearray)):
            raise ReportError(
                "thumbnails: expected str 'stream_id/track_id' -> bytes, "
                f"got {key!r} -> {type(value).__name__}"
            )
    identities, tracks = collect_rows(events)
    models = _models_from(events, summary)
    random_models = sorted(set(random_init_models(models)) | set(summary.get("random_init_models") or ()))
    stream_ids = sorted(
        {str(e.get("stream_id")) for e in events} | set((summary.get("streams") or {}).keys())
    )
    timelines = []
    for sid in stream_ids:
        info = ((summary.get("streams") or {}).get(sid) or {}).get("info") or {}
        fps = info.get("fps") if isinstance(info.get("fps"), (int, float)) else None
        timelines.append(f'<h3 id="timeline-{_e(sid)}">{_e(sid)}</h3>{timeline_svg(sid, tracks, fps=fps)}')
    legend = " ".join(
        f'<span><span class="swatch" style="background:{_identity_colour(i.identity_id)}"></span>'
        f"{_e(i.name) if i.name else _e(short_identity(i.identity_id))}</span>"
        for i in identities
    )
    title = "faceflow run report" + (f": {', '.join(stream_ids)}" if stream_ids else "")
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="sub">{len(events)} face events · {len(tracks)} tracks · {len(identities)} identities</p>'
        f"{_banner(random_models)}"
        f"{_header(summary, events, models)}"
        f"{_identity_metrics_section(summary)}"
        f'<h2 id="identities-title">Identities</h2>{_identity_table(identities)}'
        f'<h2 id="tracks-title">Tracks</h2>{_track_table(tracks, thumbs)}'
        f'<h2 id="timelines-title">Timeline per stream</h2>'
        f'<p class="sub">Bars: where a track was observed, coloured by identity. Dots: frames whose face '
        f"was analyzed (the others reuse an earlier analysis).</p><p>{legend}</p>"
        f"{''.join(timelines)}"
        "<footer>Written by faceflow run. Self-contained: no script, no external resource. "
        + ("Best-shot thumbnails are face pixels: share this file with care." if thumbs else "")
        + "</footer></body></html>\n"
    )


def write_report(
    out_path: str | os.PathLike[str],
    *,
    events: list[dict[str, Any]],
    summary: dict[str, Any],
    thumbnails: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``report.html`` (one self-contained file) and return its path.

    Args:
        out_path: the file to write (its folder is created).
        events: the run's faces.jsonl objects, every stream.
        summary: :func:`faceflow.run.summary.build_summary`'s result.
        thumbnails: best-shot JPEGs (or PNGs) keyed ``"stream_id/track_id"``, shown inline; face
            pixels, so only when the caller chooses to (privacy default: none).
    """
    target = Path(out_path)
    document = render_report(events=events, summary=summary, thumbnails=thumbnails)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, document)
    logger.info("wrote %s (%d KiB)", target, len(document) // 1024)
    return target
