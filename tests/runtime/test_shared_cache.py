"""A fresh ``--home`` reuses the shared download cache: nothing fetched, no file in it rewritten.

The cache (the broker's jars and Maven repository, the unpacked tritonserver wheel, Triton's model
venv) is gigabytes that a harness starting stacks in fresh homes must not fetch again. These tests
record every cache file's inode, mtime and size, run ``faceflow dev prepare`` / ``dev up`` with a
new home, and compare. The built models (the Triton model repository) are checked the same way.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support_runtime import REPO, free_port_settings, shared_cache

from faceflow.cli import build_parser
from faceflow.runtime import kafka_broker, triton_server
from faceflow.runtime.cli import settings_from_args
from faceflow.runtime.settings import DevSettings

Snapshot = dict[str, tuple[int, int, int]]
#: Progress lines that mean something was fetched or built (kafka_broker / triton_server).
FETCHING = ("fetching", "installing the tritonserver", "creating the environment")


def _runtime_entries(cache: Path) -> list[Path]:
    """The cache's runtime parts only: other tools keep folders of their own beside them."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = f"triton-model-env-py{version}"
    names = [f"kafka-{kafka_broker.KAFKA_VERSION}", "m2", f"pytriton-{triton_server.PYTRITON_VERSION}", env]
    return [cache / name for name in [*names, f"{env}.requirements.txt"]]


def snapshot(roots: list[Path], *, skip_bytecode: bool = False) -> Snapshot:
    """``{path: (inode, mtime_ns, size)}`` of every file and link below ``roots``."""
    found: Snapshot = {}
    for root in roots:
        paths = [root] if root.is_file() else root.rglob("*")
        for path in paths:
            if skip_bytecode and "__pycache__" in path.parts:
                continue  # Triton's python stub compiles model.py: bytecode, not a built model
            st = path.lstat()
            if not path.is_dir() or path.is_symlink():
                found[str(path)] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return found


def _changes(before: Snapshot, after: Snapshot) -> list[str]:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    rewritten = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    return (
        [f"added {p}" for p in added]
        + [f"removed {p}" for p in removed]
        + [f"rewritten {p}" for p in rewritten]
    )


def _faceflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceflow", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
        check=False,
    )


def _env_without_faceflow(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEFLOW_")}
    return env | extra


def _complete_cache() -> Path:
    cache: Path = shared_cache()
    missing = [p for p in _runtime_entries(cache) if not p.exists()]
    assert not missing, f"the shared cache is not filled (run `faceflow dev prepare` once): {missing}"
    return cache


# -- where the cache is (no runtime) ---------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["dev", "status", *argv])


@pytest.mark.parametrize(
    ("env", "argv", "home", "cache"),
    [
        ({}, ["--home", "/srv/a"], "/srv/a", "{cwd}/.faceflow/cache"),
        ({"FACEFLOW_HOME": "/srv/shared"}, ["--home", "/srv/b"], "/srv/b", "/srv/shared/cache"),
        ({"FACEFLOW_CACHE": "/srv/cache"}, ["--home", "/srv/c"], "/srv/c", "/srv/cache"),
        ({"FACEFLOW_CACHE": "/srv/cache"}, ["--home", "/srv/d", "--cache", "/srv/x"], "/srv/d", "/srv/x"),
        ({"FACEFLOW_HOME": "/srv/e"}, [], "/srv/e", "/srv/e/cache"),
    ],
)
def test_home_flag_keeps_the_shared_cache_and_cache_flag_moves_it(
    env: dict[str, str], argv: list[str], home: str, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FACEFLOW_HOME", "FACEFLOW_CACHE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = settings_from_args(_args(*argv))
    assert settings.home == Path(home)
    assert settings.cache == Path(cache.format(cwd=Path.cwd()))
    assert settings.run_dir == Path(home) / "run"


@pytest.mark.integration
def test_an_unchanged_cache_file_is_not_rewritten() -> None:
    """``ensure_jars`` on a complete install writes nothing (it used to rewrite log4j2.properties)."""
    cache = _complete_cache()
    before = snapshot(_runtime_entries(cache)[:1])
    first = kafka_broker.ensure_jars(cache)
    second = kafka_broker.ensure_jars(cache)
    assert first == second
    assert _changes(before, snapshot(_runtime_entries(cache)[:1])) == []


# -- a fresh home against the real cache -----------------------------------------------------------


@pytest.mark.integration
def test_prepare_in_a_fresh_home_reuses_the_cache(tmp_path: Path) -> None:
    cache = _complete_cache()
    before = snapshot(_runtime_entries(cache))
    home = tmp_path / "fresh-home"
    result = _faceflow(
        "dev", "prepare", "--home", str(home), "--cache", str(cache), env=_env_without_faceflow()
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"preparing the local runtime in {cache}" in result.stdout
    assert not [line for line in result.stdout.splitlines() if line.strip().startswith(FETCHING)], (
        result.stdout
    )
    assert _changes(before, snapshot(_runtime_entries(cache))) == []
    assert not (home / "cache").exists()


@pytest.mark.integration
@pytest.mark.slow
def test_up_in_a_fresh_home_reuses_the_cache_and_the_built_models(tmp_path: Path) -> None:
    """A whole stack (broker and Triton) in a new home: it starts from the cache and writes there nothing."""
    cache = _complete_cache()
    settings: DevSettings = free_port_settings(tmp_path / "fresh-home")
    if settings.external_kafka or settings.external_triton:
        pytest.fail("FACEFLOW_TEST_KAFKA_BOOTSTRAP / _TRITON_URL set: this test starts its own stack")
    models = [settings.model_repository]
    cache_before = snapshot(_runtime_entries(cache))
    models_before = snapshot(models, skip_bytecode=True)
    args = [
        f"--home={settings.home}",
        f"--kafka-port={settings.kafka_port}",
        f"--controller-port={settings.controller_port}",
        f"--triton-http-port={settings.triton_http_port}",
        f"--triton-grpc-port={settings.triton_grpc_port}",
        f"--triton-metrics-port={settings.triton_metrics_port}",
        f"--model-repository={settings.model_repository}",
    ]
    env = _env_without_faceflow(FACEFLOW_CACHE=str(cache))  # the variable this time, not the flag
    try:
        up = _faceflow("dev", "up", *args, env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "kafka: ready" in up.stdout and "triton: ready" in up.stdout, up.stdout
        assert not [line for line in up.stdout.splitlines() if line.strip().startswith(FETCHING)], up.stdout
    finally:
        down = _faceflow("dev", "down", *args, env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _changes(cache_before, snapshot(_runtime_entries(cache))) == []
    assert _changes(models_before, snapshot(models, skip_bytecode=True)) == []
    assert (settings.run_dir / "state.json").exists() and not (settings.home / "cache").exists()
