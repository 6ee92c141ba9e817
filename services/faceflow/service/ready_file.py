"""``--ready-file PATH`` (``FACEFLOW_READY_FILE``): tell a script where a service listens, once it is ready.

A test harness or an operator's script starts a service with ``--grpc-port 0 --metrics-port 0``
and cannot know the ports it bound, nor when it may connect, without scraping the banner. With a
ready file, the service writes one JSON object the first time it is ready (its gRPC health reports
SERVING: ingest's producer has found its topic; the analyzer's consumer runs and a real Triton
inference succeeded; the aggregator's consumer runs and its gallery is loaded)::

    {"service": "aggregator", "pid": 4242, "ready": true, "grpc_host": "127.0.0.1",
     "grpc_port": 40571, "metrics_host": "127.0.0.1", "metrics_port": 40573}

The file is written atomically (a reader never sees half of it). A stale file from an earlier run
is removed at start, and the file is removed as soon as the service starts stopping, so that it
exists exactly while the service has been ready and has not begun to stop. A process killed with
SIGKILL leaves it behind: its ``pid`` tells a reader whether the writer still runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from faceflow.errors import ConfigError
from faceflow.files import atomic_write_text

logger = logging.getLogger(__name__)

READY_FILE_ENV = "FACEFLOW_READY_FILE"


def add_ready_file_argument(parser: argparse.ArgumentParser) -> None:
    """``--ready-file PATH`` on a service's subcommand (the same flag on every deployable)."""
    parser.add_argument(
        "--ready-file",
        type=Path,
        metavar="PATH",
        help="once ready, write the bound ports, pid and service name here as JSON; removed when "
        f"stopping (default ${READY_FILE_ENV})",
    )


@dataclass(frozen=True, kw_only=True)
class Endpoints:
    """Where a started service listens (the bound ports: never 0)."""

    grpc_host: str
    grpc_port: int
    metrics_host: str
    metrics_port: int


def ready_file_path(flag: Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """The ready file from ``--ready-file``, else ``$FACEFLOW_READY_FILE``; None when neither is set.

    Raises:
        ConfigError: its folder does not exist (said at start, not when the service becomes ready).
    """
    environ = os.environ if env is None else env
    raw = flag
    if raw is None and environ.get(READY_FILE_ENV):
        raw = Path(environ[READY_FILE_ENV])
    if raw is None:
        return None
    path = raw.expanduser().absolute()
    if not path.parent.is_dir():
        raise ConfigError(f"--ready-file {raw}: expected a file in an existing folder; {path.parent} is none")
    if path.is_dir():
        raise ConfigError(f"--ready-file {raw}: expected a file, got a folder")
    return path


class ReadyFile:
    """The ready file of one service process (see the module docstring)."""

    def __init__(self, path: Path, *, service: str) -> None:
        self.path = path
        self.service = service
        self._written = False

    def clear_stale(self) -> None:
        """Remove a file left by an earlier process, so that no reader takes it for this one's."""
        if self.path.exists():
            logger.info("%s: removing the stale ready file %s", self.service, self.path)
            self.path.unlink(missing_ok=True)

    def write(self, endpoints: Endpoints) -> None:
        payload = {
            "service": self.service,
            "pid": os.getpid(),
            "ready": True,
            "grpc_host": endpoints.grpc_host,
            "grpc_port": endpoints.grpc_port,
            "metrics_host": endpoints.metrics_host,
            "metrics_port": endpoints.metrics_port,
        }
        atomic_write_text(self.path, json.dumps(payload) + "\n")
        self._written = True
        logger.info("%s: ready; wrote %s", self.service, self.path)

    def remove(self) -> None:
        """Remove the file if this process wrote it (idempotent)."""
        if self._written:
            self.path.unlink(missing_ok=True)
            self._written = False
