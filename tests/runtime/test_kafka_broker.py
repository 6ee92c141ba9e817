from __future__ import annotations

from pathlib import Path

import pytest

from faceflow.errors import PrerequisiteError
from faceflow.runtime import kafka_broker
from faceflow.runtime.settings import DevSettings


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "25.0.1" 2025-10-21 LTS', 25),
        ("something else", None),
    ],
)
def test_parse_java_major(output: str, major: int | None) -> None:
    assert kafka_broker.parse_java_major(output) == major


def test_missing_java_is_a_clear_prerequisite_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrerequisiteError, match="Java 17\\+ is needed"):
        kafka_broker.find_java()


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "java"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'java version \"1.8.0_392\"' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(PrerequisiteError, match=r"needs Java 17 or newer; .* is Java 8"):
        kafka_broker.find_java()


def test_missing_maven_is_a_clear_prerequisite_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = kafka_broker.find_java()  # the real one: only Maven is missing
    monkeypatch.setenv("JAVA_HOME", str(java.parent.parent))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrerequisiteError, match="Maven"):
        kafka_broker.ensure_jars(tmp_path / "empty-cache")


def test_broker_properties_single_node_kraft_on_loopback(tmp_path: Path) -> None:
    s = DevSettings(home=tmp_path, cache=tmp_path, kafka_port=19092, controller_port=19093)
    props = dict(
        line.split("=", 1) for line in kafka_broker.broker_properties(s, tmp_path / "d").splitlines()
    )
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.dirs"] == str(tmp_path / "d")


def test_a_cluster_id_never_starts_with_a_dash(tmp_path: Path) -> None:
    """The storage tool reads ``-t -abc...`` as an option (formatting failed one time in 64)."""
    (tmp_path / "cluster.id").write_text("-stale0000000000000000\n")
    fresh = kafka_broker._cluster_id(tmp_path)
    assert not fresh.startswith("-") and len(fresh) == 22
    assert kafka_broker._cluster_id(tmp_path) == fresh  # stable once written
    for i in range(200):
        (tmp_path / "cluster.id").unlink()
        assert not kafka_broker._cluster_id(tmp_path).startswith("-"), i
