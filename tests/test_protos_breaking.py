"""`buf breaking` against the released contract: what `make lint` runs, shown to catch a real break.

The baseline is ``PROTO_BASELINE`` in the Makefile (``protos/releases/v0.1.0.binpb``), a buf image
of ``protos/`` as released at 0.1.0 (``make protos-release`` writes the next one). These tests run
the real buf that ``make tools`` installs: the current tree passes, and a copy of it with one field
renumbered fails, naming it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def baseline() -> Path:
    """The image `make lint` checks against (PROTO_BASELINE in the Makefile), so the two cannot drift."""
    found = re.search(r"^PROTO_BASELINE := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert found, "the Makefile no longer sets PROTO_BASELINE"
    path = ROOT / found.group(1)
    assert path.is_file(), f"PROTO_BASELINE {path} does not exist: `make protos-release VERSION=...`"
    return path


def buf() -> str:
    """The buf binary `make tools` installs (or one on PATH); missing fails: `make test` installs it."""
    found = ROOT / ".cache" / "bin" / "buf"
    path = str(found) if found.exists() else shutil.which("buf")
    if path is None:
        pytest.fail("buf is not installed: `make tools` installs it into .cache/bin")
    return path


def breaking(workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [buf(), "breaking", "--against", str(baseline())],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_the_released_contract() -> None:
    result = breaking(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_renumbered_field_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "protos", tmp_path / "protos", ignore=shutil.ignore_patterns("releases"))
    proto = tmp_path / "protos" / "faceflow" / "v1" / "frame.proto"
    text = proto.read_text()
    assert "string stream_id = 1;" in text, "the test's edit no longer applies: pick another field"
    proto.write_text(text.replace("string stream_id = 1;", "string stream_id = 99;", 1))
    result = breaking(tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "frame.proto" in result.stdout and "stream_id" in result.stdout, result.stdout
