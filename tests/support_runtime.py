"""Helpers for tests that run a private local runtime (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import os
from pathlib import Path

from faceflow.runtime.settings import DevSettings

REPO = Path(__file__).resolve().parents[1]


def shared_cache() -> Path:
    return Path(os.environ.get("FACEFLOW_CACHE", REPO / ".faceflow" / "cache")).absolute()


def free_port_settings(home: Path, **overrides: object) -> DevSettings:
    """Settings for a private runtime in ``home`` on five free ports."""
    return DevSettings.on_free_ports(
        home,
        shared_cache(),
        model_repository=Path(
            os.environ.get("FACEFLOW_TRITON_REPOSITORY", REPO / "build" / "triton_repo" / "cpu")
        ),
        external_kafka=os.environ.get("FACEFLOW_TEST_KAFKA_BOOTSTRAP") or None,
        external_triton=os.environ.get("FACEFLOW_TEST_TRITON_URL") or None,
    ).with_overrides(**overrides)
