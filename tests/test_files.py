"""faceflow.files: content hashes and atomic writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from faceflow.files import atomic_write, atomic_write_text, file_sha256


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = bytes(range(256)) * 9000  # more than one chunk
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_atomic_write_leaves_an_ordinary_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    atomic_write_text(target, "ünïcode\n")
    assert target.read_text(encoding="utf-8") == "ünïcode\n"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    target.write_text("old")
    seen: list[str] = []

    def fail(tmp: Path) -> None:
        seen.append(tmp.suffix)
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert seen == [".mp4"]  # the extension is kept: PyAV picks the container from it
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
