"""``faces.jsonl``: one :class:`~faceflow.v1.face_event_pb2.FaceEvent` per line, readable without the protos.

:func:`event_to_json` turns a FaceEvent (the value of topic ``faceflow.faces.v1``) into a plain
JSON object with the same content; :class:`JsonlWriter` / :func:`write_jsonl` append such objects
one line each. ``face_event.schema.json`` (JSON Schema draft 2020-12, next to this module, read by
:func:`load_schema`) describes exactly what :func:`event_to_json` writes.

Conventions of the JSON form:

* ``type`` is the enum name without its prefix, lower case: ``observation``, ``track_started``,
  ``track_lost``, ``track_ended``, ``identity_resolved``, ``stream_ended``.
* Times: ``pts_seconds`` (media time, float seconds), ``capture_time`` (RFC 3339 UTC string, or
  null when the event carries none).
* A field the message leaves unset becomes ``null`` (never a zero that could be read as data):
  ``track_id`` (stream_ended), ``identity``, ``box``, ``raw`` / ``fused`` (empty results),
  ``best_shot``, ``summary``; ``face_index`` and ``results_seq`` are null except on observations.
* Label names come from :mod:`faceflow.models.contract` through the message (the aggregator writes
  them from there); the schema's label enums are checked against the contract by
  :func:`load_schema`, so neither drifts.
* Floats of the wire's float32 fields are written with 7 significant digits (float32 holds about
  7.2), so ``0.3`` reads ``0.3`` and not ``0.30000001192092896``. A NaN or infinity is not JSON:
  it raises :class:`EventJsonError` naming the field.
* Privacy (DESIGN.md "Privacy defaults"): ``embedding`` is written only with
  ``include_embedding=True``; the parsing mask (``parsing_mask`` in ``raw`` / ``fused``) only with
  ``include_parsing_mask=True``, decompressed and base64-encoded.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import zlib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from faceflow.errors import FaceflowError
from faceflow.models.contract import (
    AGE_BINS,
    ATTRIBUTES,
    GENDERS,
    HEAD_POSE,
    PARSING_CLASSES,
    PRESENCE_THRESHOLD,
    RACES,
    VISIBILITY_POINTS,
)
from faceflow.v1 import common_pb2, face_event_pb2

logger = logging.getLogger(__name__)

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_RESOURCE",
    "EventJsonError",
    "JsonlWriter",
    "event_to_json",
    "event_type_name",
    "load_schema",
    "write_jsonl",
]

_TYPE_PREFIX: Final[str] = "FACE_EVENT_TYPE_"
_UNSPECIFIED: Final[int] = face_event_pb2.FACE_EVENT_TYPE_UNSPECIFIED

#: The JSON names of the event types, in enum order (from the generated enum, never re-typed).
EVENT_TYPES: Final[tuple[str, ...]] = tuple(
    name.removeprefix(_TYPE_PREFIX).lower()
    for name, number in face_event_pb2.FaceEventType.items()
    if number != _UNSPECIFIED
)

#: File name of the JSON Schema, package data of ``faceflow.run``.
SCHEMA_RESOURCE: Final[str] = "face_event.schema.json"

#: Schema ``$defs`` whose ``enum`` must equal a contract label list.
_SCHEMA_LABELS: Final[dict[str, tuple[str, ...]]] = {
    "event_type": EVENT_TYPES,
    "attribute_label": ATTRIBUTES,
    "occlusion_label": VISIBILITY_POINTS,
    "age_label": AGE_BINS,
    "gender_label": GENDERS,
    "race_label": RACES,
    "parsing_class": PARSING_CLASSES,
}

#: A decompressed parsing mask larger than this is refused (a 224x224 mask is 50 KB).
_MAX_MASK_BYTES: Final[int] = 4096 * 4096


class EventJsonError(FaceflowError, ValueError):
    """A FaceEvent cannot be written as JSON (non-finite number, corrupt parsing mask, unknown type)."""


def event_type_name(value: int) -> str:
    """The JSON name of a ``FaceEventType`` number (``1`` -> ``"observation"``)."""
    if value == _UNSPECIFIED:
        raise EventJsonError(
            "type: expected a FaceEventType other than UNSPECIFIED, got FACE_EVENT_TYPE_UNSPECIFIED"
        )
    try:
        name = face_event_pb2.FaceEventType.Name(face_event_pb2.FaceEventType.ValueType(value))
    except ValueError:
        raise EventJsonError(f"type: expected a FaceEventType number, got {value}") from None
    return name.removeprefix(_TYPE_PREFIX).lower()


def _num(value: float, where: str) -> float:
    """A float32 wire value as a short JSON number; raise for NaN / infinity."""
    if not math.isfinite(value):
        raise EventJsonError(f"{where}: expected a finite number, got {value}")
    return float(f"{value:.7g}")


def _seconds(seconds: int, nanos: int) -> float:
    return round(seconds + nanos / 1e9, 9)


def _box(box: common_pb2.BoundingBox, where: str) -> dict[str, float]:
    return {
        "x1": _num(box.x1, f"{where}.x1"),
        "y1": _num(box.y1, f"{where}.y1"),
        "x2": _num(box.x2, f"{where}.x2"),
        "y2": _num(box.y2, f"{where}.y2"),
    }


def _scores(items: Iterable[face_event_pb2.LabelScore], where: str) -> dict[str, float]:
    return {s.label: _num(s.probability, f"{where}.{s.label}") for s in items}


def _distribution(dist: face_event_pb2.Distribution, where: str) -> dict[str, Any] | None:
    if not dist.scores and not dist.top_label:
        return None
    return {
        "label": dist.top_label,
        "probability": _num(dist.top_probability, f"{where}.probability"),
        "confidence": _num(dist.confidence, f"{where}.confidence"),
        "distribution": _scores(dist.scores, f"{where}.distribution"),
    }


def _mask_json(mask: common_pb2.ParsingMask, where: str) -> dict[str, Any]:
    expected = mask.width * mask.height
    if mask.width == 0 or mask.height == 0 or expected > _MAX_MASK_BYTES:
        raise EventJsonError(
            f"{where}: expected a mask size in 1..{_MAX_MASK_BYTES} pixels, got {mask.width}x{mask.height}"
        )
    ids = mask.class_ids
    if mask.compression == common_pb2.MASK_COMPRESSION_ZLIB:
        inflater = zlib.decompressobj()
        try:
            ids = inflater.decompress(ids, expected + 1)
        except zlib.error as exc:
            raise EventJsonError(
                f"{where}: expected zlib-compressed class ids, got a corrupt stream ({exc})"
            ) from exc
    if len(ids) != expected:
        raise EventJsonError(
            f"{where}: expected {mask.width}x{mask.height} = {expected} class ids, got {len(ids)} bytes"
        )
    return {
        "width": mask.width,
        "height": mask.height,
        "crop_box": _box(mask.crop_box, f"{where}.crop_box"),
        "class_ids_base64": base64.b64encode(ids).decode("ascii"),
    }


def _is_empty(results: face_event_pb2.FaceResults) -> bool:
    return results.ByteSize() == 0


def _results(
    results: face_event_pb2.FaceResults, where: str, *, fused: bool, include_parsing_mask: bool
) -> dict[str, Any] | None:
    if _is_empty(results):
        return None
    attributes = _scores(results.attributes, f"{where}.attributes")
    confidence: dict[str, float] | None = None  # raw results carry none (the wire's 0 means "not fused")
    if fused and results.attributes:
        confidence = {
            s.label: _num(s.confidence, f"{where}.attributes.{s.label}.confidence")
            for s in results.attributes
        }
    head_pose: dict[str, Any] | None = None
    if results.HasField("head_pose"):
        radians = {
            name: _num(getattr(results.head_pose, name), f"{where}.head_pose.{name}") for name in HEAD_POSE
        }
        head_pose = {**radians, "degrees": {k: round(math.degrees(v), 3) for k, v in radians.items()}}
    out: dict[str, Any] = {
        "landmarks68": (
            [
                [_num(p.x, f"{where}.landmarks68[{i}].x"), _num(p.y, f"{where}.landmarks68[{i}].y")]
                for i, p in enumerate(results.landmarks68)
            ]
            or None
        ),
        "head_pose": head_pose,
        "attributes": attributes or None,
        "present_attributes": [label for label, p in attributes.items() if p >= PRESENCE_THRESHOLD],
        "attribute_confidence": confidence,
        "occlusion": _scores(results.occlusion, f"{where}.occlusion") or None,
        "age": _distribution(results.age, f"{where}.age"),
        "gender": _distribution(results.gender, f"{where}.gender"),
        "race": _distribution(results.race, f"{where}.race"),
        "parsing_areas": _scores(results.parsing_areas, f"{where}.parsing_areas") or None,
        "evidence": results.evidence,
        "weight": _num(results.weight, f"{where}.weight"),
    }
    if include_parsing_mask:
        out["parsing_mask"] = (
            _mask_json(results.parsing, f"{where}.parsing") if results.HasField("parsing") else None
        )
    return out


def _model(info: common_pb2.ModelInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "version": info.version,
        "weights": info.weights,
        "random_init": info.random_init,
        "variant": info.variant,
    }


def event_to_json(
    event: face_event_pb2.FaceEvent, *, include_parsing_mask: bool = False, include_embedding: bool = False
) -> dict[str, Any]:
    """One ``faces.jsonl`` object for ``event`` (see the module docstring for the conventions).

    Raises :class:`EventJsonError` for an event that cannot be written faithfully: type
    UNSPECIFIED, a NaN / infinite number, a parsing mask whose size does not match its bytes.
    """
    if not isinstance(event, face_event_pb2.FaceEvent):
        raise EventJsonError(f"expected a faceflow.v1.FaceEvent, got {type(event).__name__}")
    kind = event_type_name(event.type)
    observation = event.type == face_event_pb2.FACE_EVENT_TYPE_OBSERVATION
    identity: dict[str, Any] | None = None
    if event.identity_id:
        identity = {
            "id": event.identity_id,
            "name": event.identity_name or None,
            "distance": _num(event.identity_distance, "identity_distance"),
        }
    best_shot: dict[str, Any] | None = None
    if event.HasField("best_shot"):
        shot = event.best_shot
        best_shot = {
            "stream_id": shot.stream_id,
            "seq": shot.seq,
            "pts_seconds": _seconds(shot.pts.seconds, shot.pts.nanos),
            "box": _box(shot.box, "best_shot.box"),
            "quality": _num(shot.quality, "best_shot.quality"),
        }
    summary: dict[str, Any] | None = None
    if event.HasField("summary"):
        s = event.summary
        summary = {
            "first_seq": s.first_seq,
            "last_seq": s.last_seq,
            "first_pts_seconds": _seconds(s.first_pts.seconds, s.first_pts.nanos),
            "last_pts_seconds": _seconds(s.last_pts.seconds, s.last_pts.nanos),
            "observations": s.observations,
            "analyzed_observations": s.analyzed_observations,
            "end_reason": s.end_reason or None,
        }
    out: dict[str, Any] = {
        "type": kind,
        "stream_id": event.stream_id,
        "seq": event.seq,
        "pts_seconds": _seconds(event.pts.seconds, event.pts.nanos),
        "capture_time": event.capture_time.ToJsonString() if event.HasField("capture_time") else None,
        "track_id": event.track_id or None,
        "identity": identity,
        "face_index": event.face_index if observation else None,
        "box": _box(event.box, "box") if event.HasField("box") else None,
        "detector_score": _num(event.detector_score, "detector_score"),
        "quality": _num(event.quality, "quality"),
        "analyzed": event.analyzed,
        "results_seq": event.results_seq if observation else None,
        "raw": _results(event.raw, "raw", fused=False, include_parsing_mask=include_parsing_mask),
        "fused": _results(event.fused, "fused", fused=True, include_parsing_mask=include_parsing_mask),
        "best_shot": best_shot,
        "summary": summary,
        "models": [_model(m) for m in event.models],
        "track_observations": event.track_observations,
    }
    if include_embedding:
        out["embedding"] = [_num(v, f"embedding[{i}]") for i, v in enumerate(event.embedding)] or None
    return out


def dumps_line(obj: Mapping[str, Any]) -> str:
    """``obj`` as one compact JSON line (no trailing newline); NaN / infinity are refused."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class JsonlWriter:
    """Writes JSON objects to a file, one line each, flushed per line (a crash loses no written line).

    Use as a context manager, or call :meth:`close`. The parent folder is created. Lines are UTF-8.
    An existing file is replaced unless ``append``: a second ``faceflow run --out DIR`` must not leave
    the first run's events in front of its own (the report and summary count only this run's).
    """

    def __init__(self, path: str | Path, *, append: bool = False) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self._path.open("a" if append else "w", encoding="utf-8")
        self._lines = 0

    @property
    def path(self) -> Path:
        """The file written to."""
        return self._path

    @property
    def lines(self) -> int:
        """Lines written by this writer."""
        return self._lines

    def write(self, obj: Mapping[str, Any]) -> None:
        """Append ``obj`` (a dict from :func:`event_to_json`, or any JSON object) as one line."""
        if self._file is None:
            raise EventJsonError(f"{self._path}: expected an open JsonlWriter, got a closed one")
        if not isinstance(obj, Mapping):
            raise EventJsonError(f"{self._path}: expected a JSON object (mapping), got {type(obj).__name__}")
        self._file.write(dumps_line(obj) + "\n")
        self._file.flush()
        self._lines += 1

    def write_event(
        self,
        event: face_event_pb2.FaceEvent,
        *,
        include_parsing_mask: bool = False,
        include_embedding: bool = False,
    ) -> dict[str, Any]:
        """Convert ``event`` with :func:`event_to_json`, append it, and return the object written."""
        obj = event_to_json(
            event, include_parsing_mask=include_parsing_mask, include_embedding=include_embedding
        )
        self.write(obj)
        return obj

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            logger.debug("closed %s after %d line(s)", self._path, self._lines)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_jsonl(
    path: str | Path,
    events: Iterable[face_event_pb2.FaceEvent | Mapping[str, Any]],
    *,
    include_parsing_mask: bool = False,
    include_embedding: bool = False,
) -> int:
    """Append ``events`` (FaceEvents, converted with :func:`event_to_json`, or JSON dicts) to ``path``.

    Returns the number of lines written.
    """
    with JsonlWriter(path, append=True) as writer:
        for event in events:
            if isinstance(event, face_event_pb2.FaceEvent):
                writer.write_event(
                    event, include_parsing_mask=include_parsing_mask, include_embedding=include_embedding
                )
            else:
                writer.write(event)
        return writer.lines


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one ``faces.jsonl`` line, from the package data.

    Its label enums are checked against :mod:`faceflow.models.contract` and the generated event
    enum; a mismatch raises :class:`EventJsonError` (the schema file must be corrected).
    """
    text = resources.files("faceflow.run").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    defs = schema.get("$defs", {})
    for name, labels in _SCHEMA_LABELS.items():
        got = tuple(defs.get(name, {}).get("enum", ()))
        if got != labels:
            raise EventJsonError(
                f"{SCHEMA_RESOURCE}: $defs.{name}.enum: expected {list(labels)} (faceflow.models.contract), "
                f"got {list(got)}"
            )
    return schema
