"""``faceflow topics create | list --prefix``: a run's topic set for scripts, against the real broker."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from faceflow import topics
from faceflow.cli import main
from faceflow.kafka import admin
from faceflow.run import orchestrate
from faceflow.runtime.settings import DevSettings

KINDS = ("frames", "analyses", "faces", "state", "dlq")


def _faceflow(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the names and the shared function (no broker) -------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "partitions", "error"),
    [
        ("faceflow.run.ci-42", None, None),
        ("p_1", 2, None),
        ("", None, "prefix: expected letters"),
        ("has space", None, "prefix: expected letters"),
        ("ends.", None, "not ending in '.'"),
        ("ok", 0, "expected partitions >= 1"),
    ],
)
def test_run_topics_names_and_partitions(prefix: str, partitions: int | None, error: str | None) -> None:
    if error:
        with pytest.raises(ValueError, match=error):
            topics.run_topics(prefix, partitions=partitions)
        return
    specs = topics.run_topics(prefix, partitions=partitions)
    assert list(specs) == list(KINDS)
    for kind, spec in specs.items():
        source = topics.RUN_TOPIC_KINDS[kind]
        assert spec.name == f"{prefix}.{kind}"
        assert dict(spec.configs) == dict(source.configs)
        assert spec.partitions == (source.partitions if partitions is None else partitions)


def test_faceflow_run_creates_its_topics_with_the_same_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(admin, "create_run_topics", lambda b, p, **_: calls.append((b, p)))
    run = orchestrate.Run(
        orchestrate.RunOptions(sources=(), out_dir=tmp_path), settings=DevSettings.from_env({}), say=None
    )
    run._create_topics("broker:9092")
    assert calls == [("broker:9092", run.topic_prefix)]
    assert run.topics == {kind: f"{run.topic_prefix}.{kind}" for kind in KINDS}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bootstrap", "no-port"], "--bootstrap: expected host:port[,host:port...], got 'no-port'"),
        (["--bootstrap", "127.0.0.1:1", "--prefix", "a b"], "prefix: expected letters"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if "--prefix" not in argv:
        argv = [*argv, "--prefix", "ok"]
    code, out, err = _faceflow(capsys, "topics", "create", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("action", ["create", "list"])
def test_a_bootstrap_where_no_broker_listens_is_a_one_line_error(
    action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = f"127.0.0.1:{_closed_port()}"
    code, out, err = _faceflow(capsys, "topics", action, "--prefix", "nobody", "--bootstrap", bootstrap)
    assert code == 2 and out == ""
    assert err == f"faceflow: error: no Kafka broker accepts connections at {bootstrap}\n"


# -- against the real broker -----------------------------------------------------------------------


@pytest.mark.integration
def test_create_twice_is_idempotent_and_matches_the_specs(
    kafka_bootstrap: str, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _faceflow(
        capsys, "topics", "create", "--prefix", unique_name, "--bootstrap", kafka_bootstrap
    )
    assert code == 0, err
    lines = out.splitlines()
    names = [f"{unique_name}.{kind}" for kind in KINDS]
    assert len(lines) == len(KINDS) + 2
    for line, name in zip(lines, names, strict=False):
        assert line.startswith(f"created {name} (")
    # the shared gallery and its audit trail: created or already there
    assert topics.IDENTITIES.name in lines[-2] and topics.IDENTITIES_AUDIT.name in lines[-1]

    assert admin.topic_partitions(kafka_bootstrap, names) == {
        f"{unique_name}.{kind}": topics.RUN_TOPIC_KINDS[kind].partitions for kind in KINDS
    }
    configs = admin.topic_configs(kafka_bootstrap, names)
    for kind in KINDS:
        for key, value in topics.RUN_TOPIC_KINDS[kind].configs.items():
            assert configs[f"{unique_name}.{kind}"][key] == value, (kind, key)

    again, out, err = _faceflow(
        capsys, "topics", "create", "--prefix", unique_name, "--bootstrap", kafka_bootstrap, "--json"
    )
    assert again == 0, err
    listed = json.loads(out)
    assert [t["name"] for t in listed] == [*names, topics.IDENTITIES.name, topics.IDENTITIES_AUDIT.name]
    assert [t["kind"] for t in listed] == [*KINDS, "identities", "audit"]
    assert {t["state"] for t in listed} == {"exists"}
    assert listed[0]["partitions"] == topics.FRAMES.partitions and listed[0]["replication_factor"] == 1
    assert listed[0]["configs"] == dict(topics.FRAMES.configs)

    code, out, _ = _faceflow(
        capsys, "topics", "list", "--prefix", unique_name, "--bootstrap", kafka_bootstrap
    )
    assert code == 0
    expected = {f"{unique_name}.{kind}": topics.RUN_TOPIC_KINDS[kind].partitions for kind in KINDS}
    assert out.splitlines() == [f"{name} ({count} partitions)" for name, count in sorted(expected.items())]


@pytest.mark.integration
def test_partitions_flag_and_a_mismatch_on_the_next_run(
    kafka_bootstrap: str, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("topics", "create", "--prefix", unique_name, "--bootstrap", kafka_bootstrap)
    code, _, err = _faceflow(capsys, *base, "--partitions", "2")
    assert code == 0, err
    names = [f"{unique_name}.{kind}" for kind in KINDS]
    assert set(admin.topic_partitions(kafka_bootstrap, names).values()) == {2}
    assert topics.IDENTITIES.partitions == 1  # the gallery keeps its own count

    code, out, err = _faceflow(capsys, *base)  # the default counts (6, 1) differ from what is there
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{unique_name}.frames has 2 partitions, expected 6" in err
    assert f"{unique_name}.dlq has 2 partitions, expected 1" in err
    assert set(admin.topic_partitions(kafka_bootstrap, names).values()) == {2}  # never altered


@pytest.mark.integration
def test_an_existing_topic_with_other_configs_is_an_error_and_left_alone(
    kafka_bootstrap: str, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    faces = f"{unique_name}.faces"
    short = topics.TopicSpec(
        name=faces,
        partitions=topics.FACES.partitions,
        configs=dict(topics.FACES.configs) | {"retention.ms": "60000"},
    )
    admin.ensure_topics(kafka_bootstrap, [short])
    code, out, err = _faceflow(
        capsys, "topics", "create", "--prefix", unique_name, "--bootstrap", kafka_bootstrap
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert f"{faces} has retention.ms=60000, expected {topics.FACES.configs['retention.ms']}" in err
    assert admin.topic_configs(kafka_bootstrap, [faces])[faces]["retention.ms"] == "60000"


@pytest.mark.integration
def test_a_refused_creation_is_a_one_line_error(
    kafka_bootstrap: str, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One broker cannot hold two replicas: the broker's refusal, in one line, and nothing created."""
    code, out, err = _faceflow(
        capsys,
        "topics",
        "create",
        "--prefix",
        unique_name,
        "--bootstrap",
        kafka_bootstrap,
        "--replication-factor",
        "2",
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{unique_name}.frames" in err and "InvalidReplicationFactorError" in err
    code, out, _ = _faceflow(
        capsys, "topics", "list", "--prefix", unique_name, "--bootstrap", kafka_bootstrap
    )
    assert code == 0 and out == ""
