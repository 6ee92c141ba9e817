"""``faceflow run``'s source arguments: a ``file://`` URL is a local, finite file, not a live URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceflow.run.orchestrate import RunError, parse_sources


def test_a_file_url_is_the_local_file_and_finite(tmp_path: Path) -> None:
    clip = tmp_path / "my clip.mp4"
    clip.write_bytes(b"")  # parse_sources only checks that it exists (frames are estimated from it)
    for value in (clip.as_uri(), f"cam=file://{clip.as_posix().replace(' ', '%20')}"):
        (source,) = parse_sources([value], fps=5.0)
        assert source.uri == str(clip) and source.live is False, value
    assert parse_sources([clip.as_uri()], fps=5.0)[0].stream_id == "my-clip"


def test_a_missing_file_url_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such file or folder"):
        parse_sources([(tmp_path / "gone.mp4").as_uri()], fps=5.0)


def test_an_rtsp_url_stays_live() -> None:
    (source,) = parse_sources(["rtsp://cam.local/stream"], fps=5.0)
    assert source.live is True
