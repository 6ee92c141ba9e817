"""Builders of FaceEvents and frames for the tests of faceflow.run (events_json, video, report, summary).

Small functions, each returning a new protobuf message or plain value; labels come from
faceflow.models.contract. ``scene()`` builds a short, fully specified run (two streams, three
tracks, one named and one anonymous identity) whose counts the tests know.
"""

from __future__ import annotations

import io
import math
import os
import zlib
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import Any

import numpy as np
from PIL import Image

from faceflow.models.contract import (
    AGE_BINS,
    ATTRIBUTES,
    CROP_MARGIN,
    CROP_SIZE,
    GENDERS,
    PARSING_CLASSES,
    RACES,
    VISIBILITY_POINTS,
)
from faceflow.run.events_json import event_to_json
from faceflow.runtime.settings import DevSettings
from faceflow.v1 import common_pb2, face_event_pb2

Box = tuple[float, float, float, float]

FPS = 10.0


def models(*, random_init: bool = True) -> list[common_pb2.ModelInfo]:
    """The three models of the face pipeline; the face model's weights are random when asked."""
    return [
        common_pb2.ModelInfo(
            name="face_detector", version="1", weights="sha256:" + "c" * 64, variant="centerface"
        ),
        common_pb2.ModelInfo(
            name="facexformer",
            version="1",
            weights="random-init" if random_init else "sha256:" + "f" * 64,
            random_init=random_init,
            variant="swin_b",
        ),
        common_pb2.ModelInfo(
            name="face_embedder", version="1", weights="sha256:" + "d" * 64, variant="dlib_resnet"
        ),
    ]


def crop_box_of(box: Box, width: int = 10_000, height: int = 10_000) -> Box:
    """The face model's crop for ``box`` (grown by CROP_MARGIN, clamped to the frame)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return (
        max(0.0, x1 - CROP_MARGIN * w),
        max(0.0, y1 - CROP_MARGIN * h),
        min(float(width), x2 + CROP_MARGIN * w),
        min(float(height), y2 + CROP_MARGIN * h),
    )


def landmarks68(box: Box) -> list[tuple[float, float]]:
    """68 points roughly like a frontal face in ``box`` (iBUG order: jaw, brows, nose, eyes, mouth)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    unit = [
        (0.5 - 0.45 * math.cos(math.pi * i / 16), 0.45 + 0.5 * math.sin(math.pi * i / 16)) for i in range(17)
    ]
    unit += [(0.15 + 0.06 * i, 0.33 - 0.03 * math.sin(math.pi * i / 4)) for i in range(5)]  # right brow
    unit += [(0.61 + 0.06 * i, 0.33 - 0.03 * math.sin(math.pi * i / 4)) for i in range(5)]  # left brow
    unit += [(0.5, 0.42 + 0.05 * i) for i in range(4)]  # nose bridge; 30 = tip
    unit += [(0.42 + 0.04 * i, 0.65) for i in range(5)]  # nostrils
    for cx in (0.32, 0.68):  # eyes, 6 points each
        unit += [
            (cx + 0.07 * math.cos(a), 0.42 + 0.03 * math.sin(a))
            for a in np.linspace(math.pi, -math.pi, 6, False)
        ]
    unit += [
        (0.5 + 0.16 * math.cos(a), 0.8 + 0.06 * math.sin(a))
        for a in np.linspace(math.pi, -math.pi, 12, False)
    ]
    unit += [
        (0.5 + 0.1 * math.cos(a), 0.8 + 0.03 * math.sin(a)) for a in np.linspace(math.pi, -math.pi, 8, False)
    ]
    assert len(unit) == 68, len(unit)
    return [(x1 + u * w, y1 + v * h) for u, v in unit]


def parsing_ids(size: int = CROP_SIZE) -> np.ndarray:
    """A size x size class-id mask: hair on top, an elliptic face of skin with brows, eyes, nose, lips."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    ids = np.zeros((size, size), np.uint8)
    cls = {name: i for i, name in enumerate(PARSING_CLASSES)}
    face = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.52) / 0.36) ** 2 <= 1.0
    hair = (((xx - 0.5) / 0.36) ** 2 + ((yy - 0.4) / 0.36) ** 2 <= 1.0) & (yy < 0.32)
    ids[hair] = cls["hair"]
    ids[face] = cls["skin"]
    ids[(np.abs(yy - 0.38) < 0.015) & (np.abs(xx - 0.38) < 0.06)] = cls["r_brow"]
    ids[(np.abs(yy - 0.38) < 0.015) & (np.abs(xx - 0.62) < 0.06)] = cls["l_brow"]
    ids[((xx - 0.38) / 0.05) ** 2 + ((yy - 0.45) / 0.02) ** 2 <= 1] = cls["r_eye"]
    ids[((xx - 0.62) / 0.05) ** 2 + ((yy - 0.45) / 0.02) ** 2 <= 1] = cls["l_eye"]
    ids[(np.abs(xx - 0.5) < 0.03) & (yy > 0.45) & (yy < 0.6)] = cls["nose"]
    ids[(np.abs(yy - 0.68) < 0.012) & (np.abs(xx - 0.5) < 0.08)] = cls["upper_lip"]
    ids[(np.abs(yy - 0.70) < 0.008) & (np.abs(xx - 0.5) < 0.07)] = cls["inner_mouth"]
    ids[(np.abs(yy - 0.72) < 0.012) & (np.abs(xx - 0.5) < 0.08)] = cls["lower_lip"]
    return ids


def parsing_mask(
    crop_box: Box, *, compress: bool = True, ids: np.ndarray | None = None
) -> common_pb2.ParsingMask:
    """A ParsingMask message over ``crop_box`` holding :func:`parsing_ids` (or ``ids``)."""
    data = (parsing_ids() if ids is None else ids).astype(np.uint8)
    raw = data.tobytes()
    return common_pb2.ParsingMask(
        width=data.shape[1],
        height=data.shape[0],
        class_ids=zlib.compress(raw) if compress else raw,
        compression=common_pb2.MASK_COMPRESSION_ZLIB if compress else common_pb2.MASK_COMPRESSION_NONE,
        crop_box=bbox(crop_box),
    )


def bbox(box: Box) -> common_pb2.BoundingBox:
    return common_pb2.BoundingBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3])


def _distribution(labels: Sequence[str], top: int, *, confidence: float = 0.0) -> face_event_pb2.Distribution:
    rest = 0.4 / (len(labels) - 1)
    probs = [0.6 if i == top else rest for i in range(len(labels))]
    return face_event_pb2.Distribution(
        scores=[
            face_event_pb2.LabelScore(label=lab, probability=p) for lab, p in zip(labels, probs, strict=True)
        ],
        top_label=labels[top],
        top_probability=0.6,
        confidence=confidence,
    )


def results(
    box: Box,
    *,
    fused: bool = False,
    present: Sequence[str] = ("Smiling", "Young", "No_Beard"),
    pose: tuple[float, float, float] = (0.1, -0.2, 0.05),
    mask: bool = False,
    evidence: int = 1,
    age: int = 3,
    gender: int = 1,
    race: int = 0,
) -> face_event_pb2.FaceResults:
    """A complete FaceResults for a face in ``box`` (every contract label present)."""
    conf = 0.8 if fused else 0.0
    crop = crop_box_of(box)
    out = face_event_pb2.FaceResults(
        landmarks68=[common_pb2.Point(x=x, y=y) for x, y in landmarks68(box)],
        head_pose=common_pb2.HeadPose(pitch=pose[0], yaw=pose[1], roll=pose[2]),
        attributes=[
            face_event_pb2.LabelScore(label=lab, probability=0.9 if lab in present else 0.1, confidence=conf)
            for lab in ATTRIBUTES
        ],
        occlusion=[face_event_pb2.LabelScore(label=lab, probability=0.05) for lab in VISIBILITY_POINTS],
        age=_distribution(AGE_BINS, age, confidence=conf),
        gender=_distribution(GENDERS, gender, confidence=conf),
        race=_distribution(RACES, race, confidence=conf),
        parsing_areas=[
            face_event_pb2.LabelScore(label=lab, probability=share)
            for lab, share in zip(PARSING_CLASSES, _areas(), strict=True)
        ],
        evidence=evidence,
        weight=0.75 * evidence,
    )
    if mask:
        out.parsing.CopyFrom(parsing_mask(crop))
    return out


def _areas() -> list[float]:
    ids = parsing_ids()
    counts = np.bincount(ids.ravel(), minlength=len(PARSING_CLASSES)) / ids.size
    return [float(c) for c in counts]


def _stamp(event: face_event_pb2.FaceEvent, seq: int, fps: float) -> None:
    pts = seq / fps
    event.pts.FromNanoseconds(round(pts * 1e9))
    event.capture_time.FromNanoseconds(1_767_225_600_000_000_000 + round(pts * 1e9))  # 2026-01-01T00:00:00Z


def observation(
    stream_id: str,
    seq: int,
    track_id: str,
    box: Box,
    *,
    analyzed: bool = True,
    results_seq: int | None = None,
    identity_id: str = "",
    identity_name: str = "",
    distance: float = 0.0,
    face_index: int = 0,
    quality: float = 0.7,
    mask: bool = False,
    random_init: bool = True,
    track_observations: int = 1,
    evidence: int = 1,
    fps: float = FPS,
    embedding: bool = False,
) -> face_event_pb2.FaceEvent:
    """An OBSERVATION event; raw results only when ``analyzed``; fused results always."""
    event = face_event_pb2.FaceEvent(
        type=face_event_pb2.FACE_EVENT_TYPE_OBSERVATION,
        stream_id=stream_id,
        seq=seq,
        track_id=track_id,
        identity_id=identity_id,
        identity_name=identity_name,
        identity_distance=distance,
        face_index=face_index,
        box=bbox(box),
        detector_score=0.93,
        quality=quality,
        models=models(random_init=random_init),
        track_observations=track_observations,
        analyzed=analyzed,
        results_seq=seq if results_seq is None else results_seq,
        best_shot=face_event_pb2.BestShot(stream_id=stream_id, seq=seq, box=bbox(box), quality=quality),
    )
    _stamp(event, seq, fps)
    event.best_shot.pts.CopyFrom(event.pts)
    if analyzed:
        event.raw.CopyFrom(results(box, mask=mask))
    event.fused.CopyFrom(results(box, fused=True, evidence=evidence))
    if embedding:
        event.embedding.extend([0.01 * i for i in range(128)])
    return event


def lifecycle(
    kind: int,
    stream_id: str,
    seq: int,
    track_id: str = "",
    *,
    identity_id: str = "",
    identity_name: str = "",
    distance: float = 0.0,
    box: Box | None = None,
    first_seq: int = 0,
    observations: int = 0,
    analyzed_observations: int = 0,
    end_reason: str = "",
    fused_box: Box | None = None,
    random_init: bool = True,
    fps: float = FPS,
) -> face_event_pb2.FaceEvent:
    """A TRACK_STARTED / TRACK_LOST / TRACK_ENDED / IDENTITY_RESOLVED / STREAM_ENDED event."""
    event = face_event_pb2.FaceEvent(
        type=kind,
        stream_id=stream_id,
        seq=seq,
        track_id=track_id,
        identity_id=identity_id,
        identity_name=identity_name,
        identity_distance=distance,
        models=models(random_init=random_init),
        track_observations=observations,
    )
    _stamp(event, seq, fps)
    if box is not None:
        event.box.CopyFrom(bbox(box))
    if kind in (face_event_pb2.FACE_EVENT_TYPE_TRACK_LOST, face_event_pb2.FACE_EVENT_TYPE_TRACK_ENDED):
        s = event.summary
        s.first_seq, s.last_seq = first_seq, seq
        s.first_pts.FromNanoseconds(round(first_seq / fps * 1e9))
        s.last_pts.FromNanoseconds(round(seq / fps * 1e9))
        s.observations, s.analyzed_observations, s.end_reason = (
            observations,
            analyzed_observations,
            end_reason,
        )
    if fused_box is not None:
        event.fused.CopyFrom(results(fused_box, fused=True, evidence=max(1, analyzed_observations)))
    return event


def one_of_each(*, random_init: bool = True) -> dict[str, face_event_pb2.FaceEvent]:
    """One event of every type (and the variants that matter), keyed by a short description."""
    box = (100.0, 80.0, 180.0, 180.0)
    T = face_event_pb2  # noqa: N806
    return {
        "observation_analyzed": observation(
            "cam1",
            3,
            "t1",
            box,
            identity_id="id-aa11",
            identity_name="Alice",
            distance=0.31,
            mask=True,
            random_init=random_init,
        ),
        "observation_skipped": observation(
            "cam1",
            4,
            "t1",
            box,
            analyzed=False,
            results_seq=3,
            identity_id="anon-1a2b3c4d5e",
            random_init=random_init,
        ),
        "observation_no_identity": observation("cam1", 1, "t2", box, random_init=random_init),
        "track_started": lifecycle(T.FACE_EVENT_TYPE_TRACK_STARTED, "cam1", 1, "t1", box=box),
        "track_lost": lifecycle(
            T.FACE_EVENT_TYPE_TRACK_LOST,
            "cam1",
            9,
            "t1",
            first_seq=1,
            observations=8,
            analyzed_observations=3,
            end_reason="lost",
            fused_box=box,
        ),
        "track_ended": lifecycle(
            T.FACE_EVENT_TYPE_TRACK_ENDED,
            "cam1",
            20,
            "t1",
            identity_id="id-aa11",
            identity_name="Alice",
            distance=0.3,
            first_seq=1,
            observations=8,
            analyzed_observations=3,
            end_reason="end_of_stream",
            fused_box=box,
        ),
        "identity_resolved": lifecycle(
            T.FACE_EVENT_TYPE_IDENTITY_RESOLVED, "cam1", 5, "t1", identity_id="anon-1a2b3c4d5e", distance=0.22
        ),
        "stream_ended": lifecycle(T.FACE_EVENT_TYPE_STREAM_ENDED, "cam1", 21),
    }


def scene(*, random_init: bool = True) -> list[dict[str, Any]]:
    """A short run as faces.jsonl objects: what the report and summary tests count on.

    Stream ``cam1`` (frames 0..19): track ``t1`` (Alice, id-alice) seen at seqs 0..9, analyzed at
    0, 4, 8; track ``t2`` (anonymous anon-7f3e9a) at 5..14, analyzed at 5, 10, then lost and ended.
    Stream ``cam2`` (frames 0..9): track ``t1`` (Alice again) at 2..6, analyzed at 2 only.
    Totals: 10 + 10 + 5 = 25 observations, 3 + 2 + 1 = 6 analyzed, 3 tracks, 2 identities
    (1 named, 1 anonymous).
    """
    T = face_event_pb2  # noqa: N806
    events: list[face_event_pb2.FaceEvent] = []

    def track(
        stream: str, tid: str, seqs: range, analyzed: set[int], ident: str, name: str, x0: float
    ) -> None:
        events.append(
            lifecycle(T.FACE_EVENT_TYPE_TRACK_STARTED, stream, seqs[0], tid, random_init=random_init)
        )
        if ident:
            events.append(
                lifecycle(
                    T.FACE_EVENT_TYPE_IDENTITY_RESOLVED,
                    stream,
                    seqs[0],
                    tid,
                    identity_id=ident,
                    identity_name=name,
                    distance=0.3,
                    random_init=random_init,
                )
            )
        last = seqs[0]
        n_an = 0
        for k, seq in enumerate(seqs):
            box = (x0 + 4 * k, 60.0, x0 + 4 * k + 60, 140.0)
            if seq in analyzed:
                last, n_an = seq, n_an + 1
            events.append(
                observation(
                    stream,
                    seq,
                    tid,
                    box,
                    analyzed=seq in analyzed,
                    results_seq=last,
                    identity_id=ident,
                    identity_name=name,
                    distance=0.3,
                    track_observations=k + 1,
                    evidence=n_an,
                    random_init=random_init,
                )
            )
        events.append(
            lifecycle(
                T.FACE_EVENT_TYPE_TRACK_ENDED,
                stream,
                seqs[-1] + 1,
                tid,
                identity_id=ident,
                identity_name=name,
                distance=0.3,
                first_seq=seqs[0],
                observations=len(seqs),
                analyzed_observations=len(analyzed),
                end_reason="end_of_stream",
                fused_box=(x0, 60.0, x0 + 60, 140.0),
                random_init=random_init,
            )
        )

    track("cam1", "t1", range(10), {0, 4, 8}, "id-alice", "Alice", 20.0)
    track("cam1", "t2", range(5, 15), {5, 10}, "anon-7f3e9a", "", 160.0)
    track("cam2", "t1", range(2, 7), {2}, "id-alice", "Alice", 40.0)
    events.append(lifecycle(T.FACE_EVENT_TYPE_STREAM_ENDED, "cam1", 20, random_init=random_init))
    events.append(lifecycle(T.FACE_EVENT_TYPE_STREAM_ENDED, "cam2", 10, random_init=random_init))
    return [event_to_json(e) for e in events]


def jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def flat_frames(
    n: int, width: int = 320, height: int = 240, value: int = 128
) -> list[tuple[int, float, bytes]]:
    """``n`` uniform grey frames as (seq, pts_seconds, jpeg)."""
    image = jpeg(np.full((height, width, 3), value, np.uint8))
    return [(seq, seq / FPS, image) for seq in range(n)]


def textured_frames(n: int, width: int = 320, height: int = 240) -> list[tuple[int, float, bytes]]:
    """``n`` frames of a fixed high-frequency pattern (so blur shows) as (seq, pts_seconds, jpeg)."""
    yy, xx = np.mgrid[0:height, 0:width]
    checker = (((xx // 4) + (yy // 4)) % 2 * 200 + 28).astype(np.uint8)
    image = jpeg(np.stack([checker, checker, checker], axis=2))
    return [(seq, seq / FPS, image) for seq in range(n)]


# --- reading report.html back (the browser tests) ------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = (
    "install it with `apt-get update && apt-get install -y chromium` (the Makefile's test setup does)"
)


class Page(HTMLParser):
    """Tags, table rows (cell texts) by table id, and attributes of every tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.row_attrs: dict[str, list[dict[str, str | None]]] = {}
        self.text: list[str] = []
        self._table: list[str] = []
        self._cell: list[str] | None = None
        self._in_tbody = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self._table.append(a.get("id") or f"table{len(self.tables)}")
            self.tables.setdefault(self._table[-1], [])
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody and self._table:
            self.tables[self._table[-1]].append([])
            self.row_attrs.setdefault(self._table[-1], []).append(a)
        elif tag == "td" and self._in_tbody:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._table:
            self._table.pop()
        elif tag == "tbody":
            self._in_tbody = False
        elif tag == "td" and self._cell is not None and self._table:
            self.tables[self._table[-1]][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(document: str) -> Page:
    page = Page()
    page.feed(document)
    page.close()
    return page


def run_env(runtime: DevSettings) -> dict[str, str]:
    """The environment of a ``faceflow run`` subprocess that uses the test session's broker and
    Triton as external components and its home (so nothing else is started or downloaded)."""
    return dict(
        os.environ,
        FACEFLOW_KAFKA_BOOTSTRAP=runtime.kafka_bootstrap,
        FACEFLOW_TRITON_URL=runtime.triton_grpc_url,
        FACEFLOW_HOME=str(runtime.home),
    )
