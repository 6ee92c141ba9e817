from __future__ import annotations

from pathlib import Path

import pytest

from faceflow.errors import ConfigError
from faceflow.runtime.settings import DevSettings


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({}, None),
        ({"FACEFLOW_DEV_KAFKA_PORT": "19092"}, None),
        ({"FACEFLOW_DEV_KAFKA_PORT": "kafka"}, "expected FACEFLOW_DEV_KAFKA_PORT to be a port number"),
        ({"FACEFLOW_DEV_KAFKA_PORT": "70000"}, "expected kafka_port in 1..65535"),
        ({"FACEFLOW_DEV_TRITON_GRPC_PORT": "9092"}, "expected five different ports"),
        ({"FACEFLOW_KAFKA_BOOTSTRAP": "broker:9092,other:9093"}, None),
        ({"FACEFLOW_KAFKA_BOOTSTRAP": "no-port"}, "expected FACEFLOW_KAFKA_BOOTSTRAP as host:port"),
        ({"FACEFLOW_TRITON_URL": "http://triton:8001"}, "expected FACEFLOW_TRITON_URL as the gRPC host:port"),
        ({"FACEFLOW_DEV_KAFKA_HEAP": "lots"}, "expected a JVM heap size"),
    ],
)
def test_from_env(env: dict[str, str], error: str | None) -> None:
    if error:
        with pytest.raises(ConfigError, match=error):
            DevSettings.from_env(env)
    else:
        DevSettings.from_env(env)


def test_defaults_and_addresses(tmp_path: Path) -> None:
    s = DevSettings.from_env({"FACEFLOW_HOME": str(tmp_path)})
    assert s.home == tmp_path and s.cache == tmp_path / "cache" and s.run_dir == tmp_path / "run"
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.triton_grpc_url == "127.0.0.1:8001" and s.triton_http_url == "127.0.0.1:8000"


def test_external_components_replace_local_addresses() -> None:
    s = DevSettings.from_env({"FACEFLOW_KAFKA_BOOTSTRAP": "k:9092", "FACEFLOW_TRITON_URL": "t:8001"})
    assert s.kafka_bootstrap == "k:9092" and s.triton_grpc_url == "t:8001" and s.triton_http_url is None


def test_overrides_are_validated() -> None:
    s = DevSettings.from_env({})
    assert s.with_overrides(kafka_port=None).kafka_port == 9092
    with pytest.raises(ConfigError):
        s.with_overrides(kafka_port=0)
