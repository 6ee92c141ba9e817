"""``faceflow models fetch`` against a local server that speaks the hub's protocol (tests/models/fake_hub.py).

The real download code runs (huggingface_hub's metadata HEAD, its ranged GET with retries, our
partial file, verification and record); only the far end is local. Every user-facing error
message is asserted exactly.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from models.fake_hub import FakeHub

from faceflow.errors import FaceflowError
from faceflow.models import fetch
from faceflow.models.fetch import (
    CheckpointRecord,
    ChecksumError,
    FetchError,
    FetchOfflineError,
    FetchRequest,
    fetch_checkpoint,
    fetched_checkpoint,
    register_fetch,
)

REPO = "kartiknarayan/facexformer"
FILE = "ckpts/model.pt"
ROOT = Path(__file__).resolve().parents[2]
CHUNK = 10 * 1024 * 1024  # huggingface_hub's DOWNLOAD_CHUNK_SIZE: what reaches the disk at a time


@pytest.fixture(scope="module")
def checkpoint() -> bytes:
    """A small real torch checkpoint with the released layout, a bit over one download chunk."""
    buf = io.BytesIO()
    state = {"backbone.0.0.0.weight": torch.arange(3_000_000, dtype=torch.float32)}
    torch.save({"state_dict_backbone": state}, buf)
    data = buf.getvalue()
    assert len(data) > CHUNK
    return data


@pytest.fixture
def hub(checkpoint: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    fake = FakeHub(repo_id=REPO, filename=FILE, content=checkpoint, branches={"v1.0": "f" * 40})
    with fake.running():
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield fake


def messages() -> tuple[list[str], fetch.Say]:
    said: list[str] = []
    return said, said.append


def test_fetch_downloads_verifies_and_records(
    hub: FakeHub, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    said, say = messages()
    record = fetch_checkpoint(FetchRequest(out=tmp_path), say=say)

    final = tmp_path / f"facexformer-{hub.sha256[:12]}.pt"
    assert final.read_bytes() == hub.content
    assert record == CheckpointRecord.from_json(json.loads((tmp_path / "facexformer.json").read_text()))
    assert (record.repo_id, record.filename, record.requested_revision) == (REPO, FILE, "main")
    assert (record.revision, record.sha256, record.size, record.file) == (
        hub.commit,
        hub.sha256,
        len(hub.content),
        final.name,
    )
    assert record.endpoint == hub.endpoint
    assert record.source == f"{hub.endpoint}/{REPO}/resolve/{hub.commit}/{FILE}"
    assert said[0] == (
        f"  facexformer checkpoint: downloading {REPO} {FILE} at {hub.commit[:12]} "
        f"({len(hub.content) / 1e6:.1f} MB) from {hub.endpoint}"
    )
    assert said[-2] == (
        f"  facexformer checkpoint: not pinned; pin it with --revision {hub.commit} --sha256 {hub.sha256}"
    )
    assert said[-1] == f"  facexformer checkpoint: {final} (sha256 {hub.sha256}, {REPO}@{hub.commit})"
    assert "model.pt" in capfd.readouterr().err  # the progress bar, on stderr
    assert not list((tmp_path / ".partial").iterdir())
    assert fetched_checkpoint(tmp_path) == final
    assert fetched_checkpoint(tmp_path, verify_sha256=True) == final

    # A second run finds it: no request reaches the hub.
    before = len(hub.requests)
    said, say = messages()
    again = fetch_checkpoint(FetchRequest(out=tmp_path, revision="main", sha256=hub.sha256), say=say)
    assert again == record
    assert len(hub.requests) == before
    assert said == [f"  facexformer checkpoint: up to date ({final}, {REPO}@{hub.commit[:12]})"]


def test_pinned_revision_and_sha256(hub: FakeHub, tmp_path: Path) -> None:
    record = fetch_checkpoint(FetchRequest(out=tmp_path, revision="v1.0", sha256=hub.sha256.upper()))
    assert (record.requested_revision, record.revision) == ("v1.0", "f" * 40)
    assert hub.served("hub", "HEAD")[0].path == f"/{REPO}/resolve/v1.0/{FILE}"


def test_resume_after_a_connection_cut_mid_file(hub: FakeHub, tmp_path: Path) -> None:
    # huggingface_hub writes in 10 MiB chunks and retries from the last whole one with a Range.
    hub.cut_after = CHUNK + 4096
    record = fetch_checkpoint(FetchRequest(out=tmp_path))
    assert record.sha256 == hub.sha256
    gets = hub.served("cdn")
    assert [g.range for g in gets] == [None, f"bytes={CHUNK}-"]
    assert (tmp_path / record.file).read_bytes() == hub.content


def test_resume_after_the_process_was_killed(hub: FakeHub, tmp_path: Path) -> None:
    """A fetch killed mid-download (a Job evicted, Ctrl-C) resumes from its partial file on the next run."""
    hub.stall_after = CHUNK + 4096  # one full chunk reaches the disk, then the server hangs
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    script = (
        "import argparse, sys\n"
        "from faceflow.models.fetch import register_fetch\n"
        "p = argparse.ArgumentParser(); s = p.add_subparsers(); register_fetch(s)\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "fetch", "--out", str(tmp_path), "--sha256", "hub"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        parts = tmp_path / ".partial"
        while time.monotonic() < deadline:
            sizes = [p.stat().st_size for p in parts.glob("*.part")] if parts.exists() else []
            if sizes and sizes[0] >= CHUNK:
                break
            assert proc.poll() is None, "the fetch ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("the partial file never reached one chunk")
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        hub.release()

    said, say = messages()
    record = fetch_checkpoint(FetchRequest(out=tmp_path), say=say)
    assert record.sha256 == hub.sha256
    assert hub.served("cdn")[-1].range == f"bytes={CHUNK}-"
    assert said[0].endswith(f"from {hub.endpoint}, resuming after {CHUNK} bytes")
    assert (tmp_path / record.file).read_bytes() == hub.content


def test_corrupt_download_is_quarantined(hub: FakeHub, tmp_path: Path) -> None:
    hub.corrupt = True
    bad = hashlib.sha256(hub._body()).hexdigest()
    with pytest.raises(ChecksumError) as caught:
        fetch_checkpoint(FetchRequest(out=tmp_path))
    moved = tmp_path / "quarantine" / f"facexformer-{bad[:12]}.pt"
    assert str(caught.value) == (
        f"sha256 mismatch for {REPO} {FILE} at {hub.commit[:12]}: expected {hub.sha256} "
        f"(the hub's LFS ETag), got {bad}; the download was moved to {moved}: run the command again to "
        "download it afresh"
    )
    assert moved.read_bytes() == hub._body()
    assert not (tmp_path / "facexformer.json").exists()
    assert not list(tmp_path.glob("facexformer-*.pt"))
    assert not list((tmp_path / ".partial").iterdir())
    assert fetched_checkpoint(tmp_path) is None

    # The next run downloads afresh (no resume from the bad bytes) and succeeds.
    hub.corrupt = False
    record = fetch_checkpoint(FetchRequest(out=tmp_path))
    assert record.sha256 == hub.sha256
    assert hub.served("cdn")[-1].range is None


def test_corrupt_download_against_the_pin(hub: FakeHub, tmp_path: Path) -> None:
    hub.corrupt = True
    bad = hashlib.sha256(hub._body()).hexdigest()
    with pytest.raises(ChecksumError, match=rf"expected {hub.sha256} \(--sha256\), got {bad};"):
        fetch_checkpoint(FetchRequest(out=tmp_path, sha256=hub.sha256))


def test_pin_that_the_revision_does_not_hold_fails_before_downloading(hub: FakeHub, tmp_path: Path) -> None:
    pin = "ab" * 32
    with pytest.raises(ChecksumError) as caught:
        fetch_checkpoint(FetchRequest(out=tmp_path, sha256=pin))
    assert str(caught.value) == (
        f"{REPO} {FILE} at {hub.commit[:12]} has sha256 {hub.sha256} on the hub, but --sha256 pins {pin}: "
        "pass the --revision that holds the pinned file, or fix the pin"
    )
    assert hub.served("cdn") == []


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        (
            {"revision": "v9.9"},
            "kartiknarayan/facexformer has no revision 'v9.9' at {endpoint}: pass an existing branch, tag "
            "or commit hash with --revision",
        ),
        (
            {"filename": "ckpts/other.pt"},
            "kartiknarayan/facexformer@main has no file 'ckpts/other.pt' at {endpoint}: check --filename "
            "and --revision",
        ),
        (
            {"repo_id": "someone/else"},
            "someone/else is not accessible at {endpoint} (HTTP 404): check --repo-id, and set HF_TOKEN if "
            "the repository is gated or private",
        ),
    ],
)
def test_not_found(hub: FakeHub, tmp_path: Path, request_kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(FetchError) as caught:
        fetch_checkpoint(FetchRequest(out=tmp_path, **request_kwargs))  # type: ignore[arg-type]
    assert str(caught.value) == message.format(endpoint=hub.endpoint)
    assert not (tmp_path / "facexformer.json").exists()


def test_offline_connection_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(FetchOfflineError) as caught:
        fetch_checkpoint(FetchRequest(out=tmp_path))
    assert str(caught.value) == (
        f"cannot reach the model hub at http://127.0.0.1:{port} to fetch {REPO} {FILE} "
        "([Errno 111] Connection refused): check the network, set HF_ENDPOINT to a reachable mirror, or "
        "copy the checkpoint here and pass it to `faceflow models build --facexformer-weights`"
    )
    assert isinstance(caught.value, FaceflowError)  # the CLI prints it as one line, no traceback


def test_offline_mode(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetch_checkpoint(FetchRequest(out=tmp_path / "have"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # A recorded checkpoint is found without the network ...
    assert fetch_checkpoint(FetchRequest(out=tmp_path / "have")).sha256 == hub.sha256
    # ... a missing one is a clear error, and the hub is not asked.
    before = len(hub.requests)
    with pytest.raises(FetchOfflineError) as caught:
        fetch_checkpoint(FetchRequest(out=tmp_path / "empty"))
    assert str(caught.value) == (
        f"cannot reach the model hub at {hub.endpoint} to fetch {REPO} {FILE} (HF_HUB_OFFLINE is set and "
        f"{tmp_path / 'empty'} holds no matching checkpoint): check the network, set HF_ENDPOINT to a "
        "reachable mirror, or copy the checkpoint here and pass it to `faceflow models build "
        "--facexformer-weights`"
    )
    assert len(hub.requests) == before


def test_a_new_revision_replaces_the_old_file(hub: FakeHub, tmp_path: Path, checkpoint: bytes) -> None:
    old = fetch_checkpoint(FetchRequest(out=tmp_path))
    hub.content = checkpoint + b"\0" * 16  # a new upload on another commit
    hub.sha256 = hashlib.sha256(hub.content).hexdigest()
    hub.branches["main"] = "e" * 40
    said, say = messages()
    new = fetch_checkpoint(FetchRequest(out=tmp_path, refresh=True), say=say)
    assert new.revision == "e" * 40
    assert not (tmp_path / old.file).exists()
    assert f"  facexformer checkpoint: removed the previous one ({old.file})" in said
    assert fetched_checkpoint(tmp_path) == tmp_path / new.file


def test_fetched_checkpoint_refuses_a_broken_record(hub: FakeHub, tmp_path: Path) -> None:
    assert fetched_checkpoint(tmp_path) is None
    record = fetch_checkpoint(FetchRequest(out=tmp_path))
    (tmp_path / record.file).unlink()
    with pytest.raises(FetchError) as caught:
        fetched_checkpoint(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'facexformer.json'} records {record.file}, which is missing: "
        "run `faceflow models fetch` again"
    )
    (tmp_path / "facexformer.json").write_text("{}")
    with pytest.raises(FetchError, match=r"facexformer.json: not a checkpoint record \(expected the keys"):
        fetched_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, None),
        ({"repo_id": "nobody"}, "--repo-id: expected OWNER/NAME, got 'nobody'"),
        ({"filename": "../x.pt"}, "--filename: expected a path inside the repository, got '../x.pt'"),
        ({"revision": " "}, "--revision: expected a branch, tag or commit hash, got ''"),
        ({"sha256": "abc"}, "--sha256: expected 64 hex digits, got 'abc'"),
        ({"sha256": "AB" * 32}, None),
    ],
)
def test_request_validation(kwargs: dict[str, str], error: str | None) -> None:
    if error is None:
        request = FetchRequest(**kwargs)  # type: ignore[arg-type]
        assert request.sha256 in (None, "ab" * 32)
    else:
        with pytest.raises(FetchError) as caught:
            FetchRequest(**kwargs)  # type: ignore[arg-type]
        assert str(caught.value) == error


def test_cli_print_path(hub: FakeHub, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    register_fetch(parser.add_subparsers())
    args = parser.parse_args(
        ["fetch", "--out", str(tmp_path), "--print-path", "--revision", "v1.0", "--sha256", "HUB"]
    )
    assert args.handler(args) == 0
    out = capfd.readouterr()
    assert out.out == f"{tmp_path / ('facexformer-' + hub.sha256[:12] + '.pt')}\n"
    assert "facexformer checkpoint: downloading" in out.err


def test_cli_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEFLOW_FACEXFORMER_REVISION", "v1.0")
    monkeypatch.setenv("FACEFLOW_FACEXFORMER_SHA256", "ab" * 32)
    monkeypatch.setenv("FACEFLOW_WEIGHTS_DIR", "/models/weights")
    parser = argparse.ArgumentParser()
    register_fetch(parser.add_subparsers())
    args = parser.parse_args(["fetch"])
    assert (args.revision, args.sha256, args.out) == ("v1.0", "ab" * 32, Path("/models/weights"))


def test_cli_pins_the_released_checkpoint_by_default(hub: FakeHub, tmp_path: Path) -> None:
    """The fake hub serves other bytes under the released name: the default CLI refuses them unread."""
    parser = argparse.ArgumentParser()
    register_fetch(parser.add_subparsers())
    args = parser.parse_args(["fetch", "--out", str(tmp_path)])
    with pytest.raises(
        ChecksumError,
        match=rf"has sha256 {hub.sha256} on the hub, but the released checkpoint is pinned to "
        rf"{fetch.RELEASED_SHA256}: .* --sha256 hub",
    ):
        args.handler(args)
    assert hub.served("cdn") == []
    assert not list(tmp_path.glob("facexformer-*.pt"))


@pytest.mark.parametrize(
    ("given", "repo_id", "filename", "pin"),
    [
        (None, REPO, FILE, fetch.RELEASED_SHA256),
        ("hub", REPO, FILE, None),
        (" Hub ", REPO, FILE, None),
        ("ab" * 32, REPO, FILE, "ab" * 32),
        (None, "someone/else", FILE, None),
        (None, REPO, "ckpts/other.pt", None),
    ],
)
def test_cli_pin(given: str | None, repo_id: str, filename: str, pin: str | None) -> None:
    assert fetch.cli_pin(given, repo_id=repo_id, filename=filename) == pin
