"""Tests for faceflow.ingest.sources_file: the YAML file of sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceflow.ingest.config import IngestConfig
from faceflow.ingest.errors import IngestConfigError
from faceflow.ingest.sources_file import load_sources_file, parse_sources

DEFAULTS = IngestConfig(target_fps=5.0, max_side=1280, jpeg_quality=85)


def test_load_resolves_defaults_and_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        """
defaults:
  fps: 2
  jpeg_quality: 70
sources:
  - stream_id: lobby
    uri: rtsp://admin:pw@camera-1/stream1
  - stream_id: archive
    uri: clips/a.mp4
    fps: 0
    max_side: 0
  - stream_id: photos
    uri: /data/photos
    folder_fps: 3
    live: false
"""
    )
    lobby, archive, photos = load_sources_file(path, DEFAULTS)
    assert (lobby.stream_id, lobby.target_fps, lobby.jpeg_quality, lobby.max_side) == ("lobby", 2.0, 70, 1280)
    assert lobby.is_live
    assert archive.uri == str(tmp_path / "clips" / "a.mp4")
    assert (archive.target_fps, archive.max_side) == (0.0, None)
    assert (photos.folder_fps, photos.live) == (3.0, False)


@pytest.mark.parametrize(
    ("document", "message_part"),
    [
        ([], "expected a mapping with a 'sources' list, got list"),
        ({"sources": []}, "sources: expected a non-empty list"),
        ({"source": [{}]}, "expected keys 'defaults' and 'sources'"),
        (
            {"defaults": {"uri": "x"}, "sources": [{"stream_id": "a", "uri": "/a"}]},
            "defaults: expected a mapping",
        ),
        ({"sources": ["a"]}, r"sources\[0\]: expected a mapping, got str"),
        ({"sources": [{"stream_id": "a"}]}, r"sources\[0\]: expected 'stream_id' and 'uri'"),
        ({"sources": [{"stream_id": "a", "uri": "/a", "colour": 1}]}, r"sources\[0\]: expected keys among"),
        ({"sources": [{"stream_id": "a b", "uri": "/a"}]}, r"sources\[0\]: stream id: expected"),
        ({"sources": [{"stream_id": "a", "uri": "/a", "jpeg_quality": 0}]}, r"sources\[0\]: jpeg_quality"),
        ({"sources": [{"stream_id": "a", "uri": "/a", "fps": True}]}, r"sources\[0\]: target_fps"),
        (
            {"sources": [{"stream_id": "a", "uri": "/a"}, {"stream_id": "a", "uri": "/b"}]},
            r"sources\[1\]: stream id 'a' appears twice",
        ),
    ],
)
def test_invalid_documents_name_the_entry(document: object, message_part: str) -> None:
    with pytest.raises(IngestConfigError, match=message_part):
        parse_sources(document, DEFAULTS, origin="s.yaml")


@pytest.mark.parametrize(
    ("content", "message_part"),
    [(None, "cannot read the sources file"), ("sources: [a, {", "not valid YAML")],
)
def test_unreadable_files(tmp_path: Path, content: str | None, message_part: str) -> None:
    path = tmp_path / "s.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(IngestConfigError, match=message_part):
        load_sources_file(path, DEFAULTS)
