"""Sources from a YAML file (``faceflow ingest --sources-file FILE``).

The file has an optional ``defaults`` mapping and a ``sources`` list; each source needs
``stream_id`` and ``uri`` and may set ``fps``, ``max_side``, ``jpeg_quality``, ``folder_fps`` and
``live``, which override the defaults of the file, which override the service's::

    defaults:
      fps: 5
      max_side: 1280
    sources:
      - stream_id: lobby
        uri: rtsp://camera-1.local/stream1
      - stream_id: archive-2024-05-01
        uri: /data/archive/2024-05-01.mp4
        fps: 2
      - stream_id: photos
        uri: /data/photos        # a folder of images
        folder_fps: 1

Every problem is reported with the file, the entry and the key, e.g. ``sources.yaml: sources[1]:
jpeg_quality: expected an int in 1..100, got 0``. Relative paths are taken relative to the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from faceflow.ingest.errors import IngestConfigError, IngestError
from faceflow.streams import InvalidStreamId


class _Source(Protocol):
    @property
    def stream_id(self) -> str: ...


SourceT = TypeVar("SourceT", bound=_Source)
SourceT_co = TypeVar("SourceT_co", bound=_Source, covariant=True)


class SourceDefaults(Protocol[SourceT_co]):
    """What resolves a file entry against the service defaults (``IngestConfig.source``)."""

    def source(
        self,
        stream_id: str,
        uri: str,
        *,
        target_fps: float | None = ...,
        max_side: int | None = ...,
        jpeg_quality: int | None = ...,
        folder_fps: float | None = ...,
        live: bool | None = ...,
    ) -> SourceT_co: ...


_KEYS = {"stream_id", "uri", "fps", "max_side", "jpeg_quality", "folder_fps", "live"}
_DEFAULT_KEYS = _KEYS - {"stream_id", "uri", "live"}


def load_sources_file(path: Path, defaults: SourceDefaults[SourceT]) -> list[SourceT]:
    """Read the sources of ``path``, resolved against ``defaults``.

    Raises:
        IngestConfigError: the file is missing, not YAML, or an entry is invalid (the message
            names the file and the entry).
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise IngestConfigError(f"{path}: cannot read the sources file: {exc.strerror or exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise IngestConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_sources(document, defaults, origin=str(path), base=path.parent)


def parse_sources(
    document: object, defaults: SourceDefaults[SourceT], *, origin: str = "sources", base: Path | None = None
) -> list[SourceT]:
    """The sources of an already-parsed YAML document (see the module docstring)."""
    if not isinstance(document, Mapping):
        raise IngestConfigError(
            f"{origin}: expected a mapping with a 'sources' list, got {type(document).__name__}"
        )
    unknown = set(document) - {"defaults", "sources"}
    if unknown:
        raise IngestConfigError(f"{origin}: expected keys 'defaults' and 'sources', got {sorted(unknown)}")
    file_defaults = document.get("defaults") or {}
    if not isinstance(file_defaults, Mapping) or set(file_defaults) - _DEFAULT_KEYS:
        raise IngestConfigError(
            f"{origin}: defaults: expected a mapping of {sorted(_DEFAULT_KEYS)}, got {file_defaults!r}"
        )
    entries = document.get("sources")
    if not isinstance(entries, list) or not entries:
        raise IngestConfigError(f"{origin}: sources: expected a non-empty list, got {entries!r}")
    out: list[SourceT] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{origin}: sources[{index}]"
        if not isinstance(entry, Mapping):
            raise IngestConfigError(f"{where}: expected a mapping, got {type(entry).__name__}")
        extra = set(entry) - _KEYS
        if extra:
            raise IngestConfigError(f"{where}: expected keys among {sorted(_KEYS)}, got {sorted(extra)}")
        merged: dict[str, Any] = {**file_defaults, **entry}
        if "stream_id" not in merged or "uri" not in merged:
            raise IngestConfigError(f"{where}: expected 'stream_id' and 'uri', got {sorted(entry)}")
        try:
            source = defaults.source(
                merged["stream_id"],
                _resolve_uri(merged["uri"], base),
                target_fps=_number(merged.get("fps")),
                max_side=merged.get("max_side"),
                jpeg_quality=merged.get("jpeg_quality"),
                folder_fps=_number(merged.get("folder_fps")),
                live=merged.get("live"),
            )
        except (IngestError, InvalidStreamId) as exc:
            raise IngestConfigError(f"{where}: {exc}") from exc
        if source.stream_id in seen:
            raise IngestConfigError(f"{where}: stream id {source.stream_id!r} appears twice")
        seen.add(source.stream_id)
        out.append(source)
    return out


def _number(value: object) -> Any:
    # YAML reads "5" as int: accept ints where floats are expected (bools stay invalid).
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _resolve_uri(uri: object, base: Path | None) -> Any:
    if not isinstance(uri, str) or "://" in uri or base is None:
        return uri
    path = Path(uri).expanduser()
    return str(path if path.is_absolute() else (base / path))
