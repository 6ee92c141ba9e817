"""Tests for faceflow.ingest.config: validation, environment, flags, proto specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from faceflow.cli import build_parser
from faceflow.ingest.backpressure import QueuePolicy
from faceflow.ingest.cli import QUEUE_POLICIES, SEQ_STARTS, config_from_args
from faceflow.ingest.config import (
    IngestConfig,
    PolicyChoice,
    SeqStart,
    SourceConfig,
    parse_source_flag,
    uri_is_live,
)
from faceflow.ingest.errors import IngestConfigError
from faceflow.ingest.policy import SourcePolicy
from faceflow.streams import InvalidStreamId
from faceflow.v1 import ingest_pb2


@pytest.mark.parametrize(
    ("overrides", "error", "message_part"),
    [
        ({}, None, None),
        ({"kafka_bootstrap": "a:1,b:2"}, None, None),
        ({"kafka_bootstrap": "nohost"}, IngestConfigError, "kafka_bootstrap: expected host:port"),
        ({"grpc_port": 70000}, IngestConfigError, "grpc_port: expected a port in 0..65535"),
        ({"metrics_port": -1}, IngestConfigError, "metrics_port"),
        ({"target_fps": -1.0}, IngestConfigError, "target_fps: expected a finite number >= 0"),
        ({"target_fps": float("nan")}, IngestConfigError, "target_fps"),
        ({"jpeg_quality": 101}, IngestConfigError, "jpeg_quality: expected an int in 1..100, got 101"),
        ({"max_side": 8}, IngestConfigError, "max_side: expected an int >= 16"),
        ({"queue_size": 0}, IngestConfigError, "queue_size: expected an int >= 1, got 0"),
        ({"queue_policy": "random"}, IngestConfigError, "queue_policy: expected one of"),
        ({"seq_start": "one"}, IngestConfigError, "seq_start: expected one of"),
        ({"produce_block_s": 0.0}, IngestConfigError, "produce_block_s: expected a finite number > 0"),
        ({"max_in_flight_bytes": 1024}, IngestConfigError, "max_in_flight_bytes"),
        ({"reconnect_max_s": 0.1, "reconnect_initial_s": 1.0}, IngestConfigError, "reconnect_max_s"),
        ({"topic": ""}, IngestConfigError, "topic: expected a topic name"),
        ({"allow_schemes": "rtsp,gopher"}, IngestConfigError, "allow_schemes: expected some of"),
        ({"allow_hosts": "10.0.0.1/8"}, IngestConfigError, "allow_hosts: expected a CIDR network"),
        ({"allow_hosts": "cam example"}, IngestConfigError, "allow_hosts: expected a host name"),
        ({"allow_file_roots": ""}, IngestConfigError, "allow_file_roots: expected comma-separated entries"),
        ({"allow_file_roots": ("/data",)}, IngestConfigError, "allow_file_roots: expected a comma-separated"),
    ],
)
def test_config_validation(
    overrides: dict[str, Any], error: type[Exception] | None, message_part: str | None
) -> None:
    if error is None:
        IngestConfig(**overrides)
        return
    with pytest.raises(error, match=message_part):
        IngestConfig(**overrides)


@pytest.mark.parametrize(
    ("stream_id", "uri", "kwargs", "error", "message_part"),
    [
        ("cam-1", "/data/a.mp4", {}, None, None),
        ("cam-1", "rtsp://u:p@cam/stream", {}, None, None),
        ("bad id", "/data/a.mp4", {}, InvalidStreamId, "stream id: expected"),
        ("-cam", "/data/a.mp4", {}, InvalidStreamId, "starting with a letter or digit"),
        ("cam-1", "", {}, IngestConfigError, "uri: expected a file path"),
        ("cam-1", "gopher://x/y", {}, IngestConfigError, "got scheme 'gopher'"),
        ("cam-1", "/a.mp4", {"jpeg_quality": 0}, IngestConfigError, "jpeg_quality"),
        (
            "cam-1",
            "/a.mp4",
            {"folder_fps": 0.0},
            IngestConfigError,
            "folder_fps: expected a finite number > 0",
        ),
    ],
)
def test_source_config_validation(
    stream_id: str, uri: str, kwargs: dict[str, Any], error: type[Exception] | None, message_part: str | None
) -> None:
    if error is None:
        SourceConfig(stream_id=stream_id, uri=uri, **kwargs)
        return
    with pytest.raises(error, match=message_part):
        SourceConfig(stream_id=stream_id, uri=uri, **kwargs)


def test_duplicate_stream_ids_are_refused() -> None:
    config = IngestConfig()
    with pytest.raises(IngestConfigError, match="unique stream ids, got 'a' twice"):
        IngestConfig(sources=(config.source("a", "/x.mp4"), config.source("a", "/y.mp4")))


@pytest.mark.parametrize(
    ("uri", "live"),
    [
        ("/data/a.mp4", False),
        ("file:///data/a.mp4", False),
        ("rtsp://cam/s", True),
        ("https://x/a.m3u8", True),
    ],
)
def test_uri_is_live(uri: str, live: bool) -> None:
    assert uri_is_live(uri) is live
    assert SourceConfig(stream_id="s", uri=uri).is_live is live
    assert SourceConfig(stream_id="s", uri=uri, live=not live).is_live is (not live)


@pytest.mark.parametrize(
    ("choice", "live", "expected"),
    [
        ("auto", True, QueuePolicy.DROP_OLDEST),
        ("auto", False, QueuePolicy.BLOCK),
        ("drop-oldest", False, QueuePolicy.DROP_OLDEST),
        ("block", True, QueuePolicy.BLOCK),
    ],
)
def test_policy_for(choice: str, live: bool, expected: QueuePolicy) -> None:
    assert IngestConfig(queue_policy=PolicyChoice(choice)).policy_for(live) is expected


def test_from_env_reads_prefixed_variables_and_sources(tmp_path: Any) -> None:
    sources_file = tmp_path / "s.yaml"
    sources_file.write_text("sources:\n  - {stream_id: lobby, uri: rtsp://cam/1, fps: 2}\n")
    env = {
        "FACEFLOW_KAFKA_BOOTSTRAP": "broker:9092",
        "FACEFLOW_INGEST_GRPC_PORT": "6000",
        "FACEFLOW_INGEST_TARGET_FPS": "2.5",
        "FACEFLOW_INGEST_MAX_SIDE": "0",
        "FACEFLOW_INGEST_QUEUE_POLICY": "block",
        "FACEFLOW_INGEST_SEQ_START": "zero",
        "FACEFLOW_INGEST_SOURCES": "a=/x.mp4 b=http://h/v.ts",
        "FACEFLOW_INGEST_SOURCES_FILE": str(sources_file),
        "FACEFLOW_INGEST_TOPIC": "",  # empty: the default
    }
    config = IngestConfig.from_env(env)
    assert config.kafka_bootstrap == "broker:9092"
    assert config.grpc_port == 6000
    assert config.target_fps == 2.5
    assert config.max_side is None
    assert config.queue_policy is PolicyChoice.BLOCK
    assert config.seq_start is SeqStart.ZERO
    assert config.topic == "faceflow.frames.v1"
    assert [(s.stream_id, s.uri, s.target_fps) for s in config.sources] == [
        ("a", "/x.mp4", 2.5),
        ("b", "http://h/v.ts", 2.5),
        ("lobby", "rtsp://cam/1", 2.0),
    ]


@pytest.mark.parametrize(
    ("env", "message_part"),
    [
        ({"FACEFLOW_INGEST_GRPC_PORT": "http"}, "FACEFLOW_INGEST_GRPC_PORT: expected an integer, got 'http'"),
        ({"FACEFLOW_INGEST_TARGET_FPS": "inf"}, "FACEFLOW_INGEST_TARGET_FPS: expected a finite number"),
        ({"FACEFLOW_INGEST_SOURCES": "nocolon"}, "--source: expected STREAM_ID=URI"),
        ({"FACEFLOW_INGEST_SOURCES_FILE": "/nonexistent/s.yaml"}, "cannot read the sources file"),
    ],
)
def test_from_env_errors(env: dict[str, str], message_part: str) -> None:
    with pytest.raises(IngestConfigError, match=message_part):
        IngestConfig.from_env(env)


def test_the_source_policy_from_the_environment(tmp_path: Any) -> None:
    env = {
        "FACEFLOW_INGEST_ALLOW_SCHEMES": "rtsp",
        "FACEFLOW_INGEST_ALLOW_HOSTS": "cam.example.com, *.cams.example.org, 10.0.0.0/8",
        "FACEFLOW_INGEST_ALLOW_FILE_ROOTS": f"{tmp_path},/srv/media",
        "FACEFLOW_INGEST_SOURCES": "ops=/etc/faceflow/lobby.mp4 cam=rtsp://127.0.0.1/x",
    }
    config = IngestConfig.from_env(env)
    policy = config.source_policy()
    assert policy.schemes == frozenset({"rtsp"})
    assert policy.host_names == frozenset({"cam.example.com"})
    assert policy.host_suffixes == (".cams.example.org",)
    assert [str(n) for n in policy.networks] == ["10.0.0.0/8"]
    assert policy.file_roots == (str(tmp_path), "/srv/media")
    # The operator's own sources are not subject to the policy.
    assert [s.uri for s in config.sources] == ["/etc/faceflow/lobby.mp4", "rtsp://127.0.0.1/x"]
    assert config.describe()["allow_hosts"] == "cam.example.com, *.cams.example.org, 10.0.0.0/8"


def test_the_defaults_and_the_kubernetes_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)
    local = IngestConfig().source_policy()
    assert (local.schemes, local.file_roots) == (
        frozenset({"rtsp", "rtsps", "http", "https"}),
        (str(tmp_path),),
    )
    assert (local.host_names, local.host_suffixes, local.networks) == (frozenset(), (), ())
    env_file = Path(__file__).resolve().parents[2] / "k8s" / "base" / "ingest" / "config.env"
    lines = [line for line in env_file.read_text().splitlines() if line and not line.startswith("#")]
    env = dict(line.split("=", 1) for line in lines)
    assert SourcePolicy() == IngestConfig.from_env(env).source_policy()  # nothing on Kubernetes


def test_policy_flags_override_the_environment() -> None:
    args = build_parser().parse_args(
        ["ingest", "--allow-schemes", "https", "--allow-hosts", "none", "--allow-file-roots", "/srv/a,/srv/b"]
    )
    config = config_from_args(args, {"FACEFLOW_INGEST_ALLOW_HOSTS": "cam.example.com"})
    policy = config.source_policy()
    assert (policy.schemes, policy.host_names, policy.file_roots) == (
        frozenset({"https"}),
        frozenset(),
        ("/srv/a", "/srv/b"),
    )


def test_describe_redacts_passwords() -> None:
    config = IngestConfig()
    config = config.with_overrides(sources=(config.source("cam", "rtsp://admin:secret@cam/s"),))
    text = str(config.describe())
    assert "secret" not in text
    assert "cam=rtsp://admin:***@cam/s" in text


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (ingest_pb2.SourceSpec(stream_id="s", uri="/a.mp4"), (0.0, None, 85, 1.0)),
        (
            ingest_pb2.SourceSpec(
                stream_id="s", uri="/a.mp4", target_fps=2, max_side=640, jpeg_quality=70, folder_fps=4
            ),
            (2.0, 640, 70, 4.0),
        ),
    ],
)
def test_from_proto_zero_fields_follow_the_proto(
    spec: ingest_pb2.SourceSpec, expected: tuple[Any, ...]
) -> None:
    """0 fps keeps every frame and 0 max side keeps the size (the proto's words); 0 quality is the default."""
    source = SourceConfig.from_proto(spec, IngestConfig())
    assert (source.target_fps, source.max_side, source.jpeg_quality, source.folder_fps) == expected


def test_to_proto_redacts_the_password() -> None:
    spec = SourceConfig(stream_id="s", uri="rtsp://u:pw@cam/x").to_proto()
    assert spec.uri == "rtsp://u:***@cam/x"


@pytest.mark.parametrize(
    ("text", "expected", "error"),
    [
        ("cam-1=/a.mp4", ("cam-1", "/a.mp4"), None),
        ("cam=rtsp://h/s?a=b", ("cam", "rtsp://h/s?a=b"), None),
        ("cam", None, IngestConfigError),
        ("cam=", None, IngestConfigError),
        ("bad id=/a.mp4", None, InvalidStreamId),
    ],
)
def test_parse_source_flag(
    text: str, expected: tuple[str, str] | None, error: type[Exception] | None
) -> None:
    if error is not None:
        with pytest.raises(error):
            parse_source_flag(text)
        return
    assert parse_source_flag(text) == expected


def test_cli_choices_match_the_enums() -> None:
    assert tuple(c.value for c in PolicyChoice) == QUEUE_POLICIES
    assert tuple(s.value for s in SeqStart) == SEQ_STARTS
