"""What the benchmarks that run the mesh share: a private runtime, how they stop, where they ran,
how they write their results. (``facexformer_gpu.py`` stays standalone: it runs on a bare CUDA
machine without faceflow installed.)"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from faceflow.runtime.settings import DevSettings
from faceflow.runtime.stack import COMPONENTS, Component, DevStack, require_ready

REPO = Path(__file__).resolve().parents[1]


def stop_on_sigterm() -> None:
    """A SIGTERM (a CI timeout, ``kill``) unwinds like Ctrl-C, so a private runtime is stopped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


@contextmanager
def private_runtime(components: Sequence[Component] = COMPONENTS, **overrides: Any) -> Iterator[DevSettings]:
    """A runtime of its own, in a temporary home on free ports, stopped at the end (also when it
    fails to start). ``overrides`` are :class:`DevSettings` fields (an external broker, say)."""
    with tempfile.TemporaryDirectory(prefix="faceflow-bench-") as home:
        cache = Path(os.environ.get("FACEFLOW_CACHE", REPO / ".faceflow" / "cache")).absolute()
        settings = DevSettings.on_free_ports(Path(home), cache, **overrides)
        stack = DevStack(settings)
        try:
            require_ready(stack.up(components, quiet=True))
            yield settings
        finally:
            stack.down(quiet=True)


def machine(**extra: Any) -> dict[str, Any]:
    """Where the figures were measured."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **extra,
    }


def write_results(path: Path, payload: dict[str, Any]) -> None:
    """``payload`` as indented JSON at ``path`` (its folder made), and a line saying where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
