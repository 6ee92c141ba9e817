"""``faceflow models fetch``: the authors' released FaceXFormer checkpoint, pinned, verified, recorded.

Downloads ``ckpts/model.pt`` of the hub repository ``kartiknarayan/facexformer`` with
``huggingface_hub`` (which honours ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``) into the
weights folder (default ``build/weights``), and writes next to it:

* ``facexformer-<sha12>.pt``: the checkpoint, named by the first 12 hex digits of its sha256;
* ``facexformer.json``: what was fetched: repository, file, requested and resolved revision (the
  commit hash), sha256, size, source URL and when.

``faceflow models build`` uses :func:`fetched_checkpoint` as its default weights, so "fetch, then
build" needs no path. A download that breaks off is resumed from its partial file (within one run
by ``huggingface_hub``'s own retries with an HTTP Range, across runs from ``.partial/<etag>.part``).
The result is checked against ``--sha256`` when given, else against the hub's LFS ETag (which is
the file's sha256); a mismatch moves the file to ``quarantine/`` and fails. Nothing else in
faceflow downloads weights, and nothing downloads them at run time (DESIGN.md, "Real components").
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Final

from faceflow.errors import FaceflowError
from faceflow.files import atomic_write_text, file_sha256

__all__ = [
    "DEFAULT_FILENAME",
    "DEFAULT_REPO_ID",
    "DEFAULT_WEIGHTS_DIR",
    "RECORD_NAME",
    "CheckpointRecord",
    "ChecksumError",
    "FetchError",
    "FetchOfflineError",
    "FetchRequest",
    "fetch_checkpoint",
    "fetched_checkpoint",
    "read_record",
    "register_fetch",
]

DEFAULT_REPO_ID: Final[str] = "kartiknarayan/facexformer"
DEFAULT_FILENAME: Final[str] = "ckpts/model.pt"
DEFAULT_WEIGHTS_DIR: Final[Path] = Path("build/weights")
RECORD_NAME: Final[str] = "facexformer.json"
PARTIAL_DIR: Final[str] = ".partial"
QUARANTINE_DIR: Final[str] = "quarantine"
DEFAULT_ENDPOINT: Final[str] = "https://huggingface.co"
#: sha256 of the released ``kartiknarayan/facexformer`` ``ckpts/model.pt``, from a public record
#: independent of the hub. ``faceflow models fetch`` pins it by default, so a hub that serves other
#: bytes under that name (a moved branch, a compromised account) is refused before any download.
RELEASED_SHA256: Final[str] = "327a755849ba64d336fb96589ff87b27e84a12be1ecf8bcfaa503d66f803286d"
#: ``--sha256 hub``: trust the hub's LFS ETag instead of a pin (another file, a new release).
TRUST_HUB: Final[str] = "hub"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_TRUE = frozenset({"1", "ON", "YES", "TRUE"})

Say = Callable[[str], None]


class FetchError(FaceflowError):
    """The checkpoint could not be fetched (the message says why and what to do)."""


class FetchOfflineError(FetchError):
    """The hub cannot be reached (no network, HF_HUB_OFFLINE, a wrong HF_ENDPOINT)."""


class ChecksumError(FetchError):
    """The downloaded bytes do not have the expected sha256."""


@dataclass(frozen=True, kw_only=True)
class FetchRequest:
    """What to fetch, and where to."""

    out: Path = DEFAULT_WEIGHTS_DIR
    repo_id: str = DEFAULT_REPO_ID
    filename: str = DEFAULT_FILENAME
    revision: str | None = None  # branch, tag or commit; None: the recorded one, else "main"
    sha256: str | None = None  # the pin; None: trust the hub's LFS ETag (and record what came)
    refresh: bool = False  # resolve the revision again even when a matching record exists

    def __post_init__(self) -> None:
        if not _REPO_ID.fullmatch(self.repo_id):
            raise FetchError(f"--repo-id: expected OWNER/NAME, got {self.repo_id!r}")
        if not self.filename or self.filename.startswith("/") or ".." in Path(self.filename).parts:
            raise FetchError(f"--filename: expected a path inside the repository, got {self.filename!r}")
        if self.revision is not None and not self.revision.strip():
            raise FetchError("--revision: expected a branch, tag or commit hash, got ''")
        if self.sha256 is not None:
            pin = self.sha256.strip().lower()
            if not _SHA256.fullmatch(pin):
                raise FetchError(f"--sha256: expected 64 hex digits, got {self.sha256!r}")
            object.__setattr__(self, "sha256", pin)


@dataclass(frozen=True, kw_only=True)
class CheckpointRecord:
    """The JSON written next to a fetched checkpoint (``facexformer.json``)."""

    repo_id: str
    filename: str
    requested_revision: str
    revision: str  # the resolved commit hash
    sha256: str
    size: int
    endpoint: str
    source: str  # the resolve URL at the commit
    file: str  # the checkpoint's name inside the weights folder
    fetched_at: str
    huggingface_hub: str

    def __post_init__(self) -> None:
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"sha256: expected 64 hex digits, got {self.sha256!r}")
        if not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"size: expected a byte count >= 0, got {self.size!r}")
        if not self.file or Path(self.file).name != self.file:
            raise ValueError(f"file: expected a file name inside the weights folder, got {self.file!r}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckpointRecord:
        names = set(cls.__dataclass_fields__)
        missing = sorted(names - set(data))
        if missing:
            raise ValueError(f"expected the keys {sorted(names)}, missing {missing}")
        return cls(**{k: data[k] for k in names})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def matches(self, request: FetchRequest) -> bool:
        """Whether this record satisfies ``request`` without asking the hub."""
        return (
            self.repo_id == request.repo_id
            and self.filename == request.filename
            and request.sha256 in (None, self.sha256)
            and request.revision in (None, self.requested_revision, self.revision)
        )


def read_record(weights_dir: Path) -> CheckpointRecord | None:
    """The record in ``weights_dir``, None when there is none; FetchError when it is unreadable."""
    path = weights_dir / RECORD_NAME
    if not path.is_file():
        return None
    try:
        return CheckpointRecord.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise FetchError(
            f"{path}: not a checkpoint record ({exc}); delete it and run `faceflow models fetch` again"
        ) from exc


def fetched_checkpoint(weights_dir: Path, *, verify_sha256: bool = False) -> Path | None:
    """The checkpoint that ``faceflow models fetch`` recorded in ``weights_dir``, or None.

    ``faceflow models build`` uses it as its default weights. A record whose file is gone or has
    the wrong size raises :class:`FetchError` rather than silently falling back to random weights.
    ``verify_sha256`` also hashes the file (about a second for the released checkpoint).
    """
    record = read_record(weights_dir)
    if record is None:
        return None
    path = weights_dir / record.file
    record_path = weights_dir / RECORD_NAME
    if not path.is_file():
        raise FetchError(
            f"{record_path} records {record.file}, which is missing: run `faceflow models fetch` again"
        )
    size = path.stat().st_size
    if size != record.size:
        raise FetchError(
            f"{path}: expected {record.size} bytes as {record_path} records, got {size}: "
            "run `faceflow models fetch` again"
        )
    if verify_sha256 and (actual := file_sha256(path)) != record.sha256:
        raise ChecksumError(
            f"{path}: expected sha256 {record.sha256} as {record_path} records, got {actual}: "
            "run `faceflow models fetch` again"
        )
    return path


# -- fetching ---------------------------------------------------------------------------------------


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in _TRUE


def _endpoint() -> str:
    """The hub's address: ``HF_ENDPOINT`` read now (huggingface_hub reads it once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _progress_class() -> type[Any]:
    """A tqdm that always shows (TTY or not: a Job's log gets a line every 10 s)."""
    from tqdm import tqdm  # noqa: PLC0415

    interactive = sys.stderr.isatty()

    class Progress(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("file", sys.stderr)
            kwargs.setdefault("mininterval", 0.2 if interactive else 10.0)
            kwargs.setdefault("ascii", not interactive)
            kwargs.pop("name", None)
            super().__init__(*args, **kwargs)

    return Progress


def _mb(size: int | None) -> str:
    return "unknown size" if size is None else f"{size / 1e6:.1f} MB"


@contextlib.contextmanager
def _hub_errors(request: FetchRequest, endpoint: str, revision: str) -> Iterator[None]:
    """Turn huggingface_hub / httpx failures into one-line FetchErrors that say what to do."""
    import httpx2  # noqa: PLC0415 - huggingface_hub's HTTP client
    from huggingface_hub import errors  # noqa: PLC0415

    where = f"{request.repo_id}@{revision}"
    try:
        yield
    except errors.OfflineModeIsEnabled as exc:
        raise FetchOfflineError(_offline_message(request, endpoint, "HF_HUB_OFFLINE is set")) from exc
    except (httpx2.ConnectError, httpx2.TimeoutException) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FetchOfflineError(_offline_message(request, endpoint, reason)) from exc
    except errors.RevisionNotFoundError as exc:
        raise FetchError(
            f"{request.repo_id} has no revision {revision!r} at {endpoint}: "
            "pass an existing branch, tag or commit hash with --revision"
        ) from exc
    except errors.RemoteEntryNotFoundError as exc:
        raise FetchError(
            f"{where} has no file {request.filename!r} at {endpoint}: check --filename and --revision"
        ) from exc
    except (errors.GatedRepoError, errors.RepositoryNotFoundError) as exc:
        raise FetchError(
            f"{request.repo_id} is not accessible at {endpoint} "
            f"(HTTP {exc.response.status_code if exc.response is not None else '?'}): "
            "check --repo-id, and set HF_TOKEN if the repository is gated or private"
        ) from exc
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise FetchError(
            f"the hub at {endpoint} answered HTTP {status} for {where} {request.filename}"
        ) from exc


def _offline_message(request: FetchRequest, endpoint: str, reason: str) -> str:
    return (
        f"cannot reach the model hub at {endpoint} to fetch {request.repo_id} {request.filename} "
        f"({reason}): check the network, set HF_ENDPOINT to a reachable mirror, or copy the "
        "checkpoint here and pass it to `faceflow models build --facexformer-weights`"
    )


def _quarantine(out: Path, partial: Path, actual: str) -> Path:
    """Move a bad download aside (one kept at a time: it may be large)."""
    folder = out / QUARANTINE_DIR
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    target = folder / f"facexformer-{actual[:12]}.pt"
    os.replace(partial, target)
    return target


def _write_record(out: Path, record: CheckpointRecord) -> None:
    atomic_write_text(out / RECORD_NAME, record.to_json())


def fetch_checkpoint(request: FetchRequest, *, say: Say = lambda _msg: None) -> CheckpointRecord:
    """Fetch (or find already fetched) the checkpoint ``request`` names; returns its record."""
    out = request.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create the weights folder {out}: {exc}") from exc
    existing = read_record(out)
    if existing is not None and not request.refresh and existing.matches(request):
        path = out / existing.file
        if path.is_file() and path.stat().st_size == existing.size and file_sha256(path) == existing.sha256:
            say(f"  facexformer checkpoint: up to date ({path}, {existing.repo_id}@{existing.revision[:12]})")
            return existing
        say(f"  facexformer checkpoint: {path} is missing or damaged; fetching it again")

    endpoint = _endpoint()
    revision = request.revision or (
        existing.requested_revision
        if existing is not None and existing.repo_id == request.repo_id and not request.refresh
        else "main"
    )
    if _env_true("HF_HUB_OFFLINE"):
        raise FetchOfflineError(
            _offline_message(
                request, endpoint, f"HF_HUB_OFFLINE is set and {out} holds no matching checkpoint"
            )
        )
    try:
        import huggingface_hub  # noqa: PLC0415 - optional until `models fetch` runs
        from huggingface_hub.file_download import get_hf_file_metadata, hf_hub_url, http_get  # noqa: PLC0415
        from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]  # noqa: PLC0415
    except ImportError as exc:
        raise FetchError(
            f"`faceflow models fetch` needs huggingface_hub ({exc}): pip install 'huggingface_hub>=2.4,<3'"
        ) from exc

    url = hf_hub_url(request.repo_id, request.filename, revision=revision, endpoint=endpoint)
    with _hub_errors(request, endpoint, revision):
        meta = get_hf_file_metadata(url, endpoint=endpoint)
    commit = meta.commit_hash
    if not commit or meta.etag is None:
        raise FetchError(
            f"{endpoint} did not answer like a Hugging Face hub (no X-Repo-Commit / ETag header on "
            f"{url}): check HF_ENDPOINT"
        )
    hub_sha = meta.etag.lower() if _SHA256.fullmatch(meta.etag.lower()) else None
    if request.sha256 is not None and hub_sha is not None and hub_sha != request.sha256:
        raise ChecksumError(
            f"{request.repo_id} {request.filename} at {commit[:12]} has sha256 {hub_sha} on the hub, but "
            f"{_pin_words(request.sha256)}"
        )

    partial = out / PARTIAL_DIR / f"{re.sub(r'[^A-Za-z0-9]', '_', meta.etag)}.part"
    partial.parent.mkdir(parents=True, exist_ok=True)
    resume = partial.stat().st_size if partial.exists() else 0
    if meta.size is not None and resume > meta.size:
        partial.unlink()
        resume = 0
    say(
        f"  facexformer checkpoint: downloading {request.repo_id} {request.filename} at {commit[:12]} "
        f"({_mb(meta.size)}) from {endpoint}" + (f", resuming after {resume} bytes" if resume else "")
    )
    same_origin = meta.location.startswith(endpoint + "/")
    headers = build_hf_headers() if same_origin else {}
    import httpx2  # noqa: PLC0415

    try:
        with partial.open("ab") as fh, _hub_errors(request, endpoint, revision):
            http_get(
                meta.location,
                fh,
                resume_size=resume,
                headers=headers,
                expected_size=meta.size,
                displayed_filename=Path(request.filename).name,
                tqdm_class=_progress_class(),
            )
    except FetchError:
        raise
    except (httpx2.TransportError, OSError) as exc:
        got = partial.stat().st_size if partial.exists() else 0
        total = meta.size if meta.size is not None else "?"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FetchError(
            f"the download of {request.repo_id} {request.filename} broke off at {got} of {total} bytes "
            f"({reason}): run the same command again to resume it"
        ) from exc

    actual = file_sha256(partial)
    expected, source = (request.sha256, "--sha256") if request.sha256 else (hub_sha, "the hub's LFS ETag")
    if expected is not None and actual != expected:
        moved = _quarantine(out, partial, actual)
        raise ChecksumError(
            f"sha256 mismatch for {request.repo_id} {request.filename} at {commit[:12]}: expected {expected} "
            f"({source}), got {actual}; the download was moved to {moved}: run the command again to download "
            "it afresh"
        )
    final = out / f"facexformer-{actual[:12]}.pt"
    os.replace(partial, final)
    record = CheckpointRecord(
        repo_id=request.repo_id,
        filename=request.filename,
        requested_revision=revision,
        revision=commit,
        sha256=actual,
        size=final.stat().st_size,
        endpoint=endpoint,
        source=hf_hub_url(request.repo_id, request.filename, revision=commit, endpoint=endpoint),
        file=final.name,
        fetched_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        huggingface_hub=huggingface_hub.__version__,
    )
    _write_record(out, record)
    if existing is not None and existing.file != final.name:
        (out / existing.file).unlink(missing_ok=True)
        say(f"  facexformer checkpoint: removed the previous one ({existing.file})")
    if request.sha256 is None:
        say(f"  facexformer checkpoint: not pinned; pin it with --revision {commit} --sha256 {actual}")
    say(f"  facexformer checkpoint: {final} (sha256 {actual}, {request.repo_id}@{commit})")
    return record


# -- CLI --------------------------------------------------------------------------------------------


def register_fetch(models_subparsers: Any) -> None:
    """Add ``fetch`` to the ``faceflow models`` subcommands (called from ``models.build.register``)."""
    env = os.environ
    p = models_subparsers.add_parser(
        "fetch",
        help="download the released FaceXFormer checkpoint (pinned, verified, recorded)",
        description="Download the authors' FaceXFormer checkpoint from the Hugging Face hub into the "
        "weights folder, verify its sha256, and record revision + sha256 + source in facexformer.json; "
        "`faceflow models build` then uses it by default. Honours HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path(env.get("FACEFLOW_WEIGHTS_DIR") or DEFAULT_WEIGHTS_DIR),
        help="weights folder (default $FACEFLOW_WEIGHTS_DIR or build/weights)",
    )
    p.add_argument("--repo-id", default=DEFAULT_REPO_ID, help=f"hub repository (default {DEFAULT_REPO_ID})")
    p.add_argument("--filename", default=DEFAULT_FILENAME, help=f"file in it (default {DEFAULT_FILENAME})")
    p.add_argument(
        "--revision",
        default=env.get("FACEFLOW_FACEXFORMER_REVISION") or None,
        help="branch, tag or commit hash (default $FACEFLOW_FACEXFORMER_REVISION, else the recorded "
        "one, else main)",
    )
    p.add_argument(
        "--sha256",
        default=env.get("FACEFLOW_FACEXFORMER_SHA256") or None,
        help="expected sha256 of the file (default $FACEFLOW_FACEXFORMER_SHA256, else the released "
        f"checkpoint's {RELEASED_SHA256[:12]}... for the default repository and file); "
        f"'{TRUST_HUB}': check the hub's LFS ETag instead and record what came",
    )
    p.add_argument("--refresh", action="store_true", help="resolve the revision again (e.g. a moved main)")
    p.add_argument(
        "--print-path",
        action="store_true",
        help="print only the checkpoint's path on stdout (messages go to stderr)",
    )
    p.set_defaults(handler=_fetch)


def _pin_words(pin: str) -> str:
    """What a mismatch says about where the pin came from and how to get past it."""
    if pin == RELEASED_SHA256:
        return (
            f"the released checkpoint is pinned to {pin}: pass the --revision that holds it, or "
            f"--sha256 {TRUST_HUB} to trust the hub's file (another release), or --sha256 <hex> to pin it"
        )
    return f"--sha256 pins {pin}: pass the --revision that holds the pinned file, or fix the pin"


def cli_pin(sha256: str | None, *, repo_id: str, filename: str) -> str | None:
    """The pin the CLI fetches with: the one given; ``hub`` -> none; none -> the released one
    when the default repository and file are asked for."""
    if sha256 is not None and sha256.strip().lower() == TRUST_HUB:
        return None
    if sha256 is None and (repo_id, filename) == (DEFAULT_REPO_ID, DEFAULT_FILENAME):
        return RELEASED_SHA256
    return sha256


def _fetch(args: argparse.Namespace) -> int:
    stream: IO[str] = sys.stderr if args.print_path else sys.stdout

    def say(message: str) -> None:
        print(message, file=stream, flush=True)

    request = FetchRequest(
        out=args.out,
        repo_id=args.repo_id,
        filename=args.filename,
        revision=args.revision,
        sha256=cli_pin(args.sha256, repo_id=args.repo_id, filename=args.filename),
        refresh=args.refresh,
    )
    record = fetch_checkpoint(request, say=say)
    if args.print_path:
        print(request.out / record.file)  # noqa: T201
    return 0
