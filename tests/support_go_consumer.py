"""The Go consumer of faceflow's topics (tests/consumers/go): its binary, built once, and its run.

``tests/consumers/go/build.sh`` builds it with ``go build`` into ``.cache/bin/faces-consumer-go``
(``make tools`` runs it; idempotent: a binary newer than go.mod, go.sum and main.go is left alone).
:func:`ensure_go_consumer` runs the same script when the binary is missing or older than its source,
the way :func:`support_consumers.ensure_consumer_jars` fetches the Java consumer's jars: with a warm
Go module cache that needs no network, and on a fresh machine it is the one fetch, from the Go
module proxy at the versions go.sum pins.

``python tests/support_go_consumer.py`` builds it and prints its path.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from support_runtime import REPO

from faceflow.errors import PrerequisiteError, RuntimeStartError

SOURCE = REPO / "tests" / "consumers" / "go"
BUILD = SOURCE / "build.sh"
BINARY = REPO / ".cache" / "bin" / "faces-consumer-go"
#: A cold build (module download and compile) took about a minute on two cores.
BUILD_TIMEOUT_S = 900
#: What build.sh says when there is no Go on PATH (its exit status is 1 then, as for a failed build).
NO_GO = "Go is needed to build tests/consumers/go"


def _inputs() -> list[Path]:
    return [SOURCE / "go.mod", SOURCE / "go.sum", SOURCE / "main.go"]


def is_up_to_date(binary: Path = BINARY) -> bool:
    """The same test build.sh makes: the binary exists and is newer than each of its inputs."""
    if not binary.exists():
        return False
    built = binary.stat().st_mtime
    return all(p.stat().st_mtime < built for p in _inputs())


def ensure_go_consumer(binary: Path = BINARY) -> Path:
    """The built consumer; runs build.sh first when it is missing or stale (idempotent)."""
    if is_up_to_date(binary):
        return binary
    result = subprocess.run(
        ["bash", str(BUILD), str(binary)],
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT_S,
    )
    if result.returncode != 0:
        last = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        if NO_GO in result.stderr:
            raise PrerequisiteError(
                f"Go (`go`) is needed once, to build the Go consumer {binary}, and it is not on PATH: "
                "install Go (see the README's prerequisites), or run `make tools`."
            )
        raise RuntimeStartError(f"{BUILD} could not build {binary} (exit {result.returncode}):\n{last}")
    if not is_up_to_date(binary):
        raise RuntimeStartError(f"{BUILD} exited 0 but {binary} is still missing or older than its source")
    return binary


def run_go_consumer(args: Sequence[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``faces-consumer-go ARGS``; output as text (UTF-8, as the program writes it)."""
    argv = [str(ensure_go_consumer()), *args]
    return subprocess.run(
        argv, capture_output=True, text=True, encoding="utf-8", timeout=timeout, check=False
    )


def main() -> int:
    """``python tests/support_go_consumer.py``: build the Go consumer unless it is up to date."""
    try:
        print(f"Go consumer: {ensure_go_consumer()}")
    except (PrerequisiteError, RuntimeStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
