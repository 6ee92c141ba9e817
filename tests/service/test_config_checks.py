"""The field checks every service config shares, through the analyzer's and the aggregator's."""

from __future__ import annotations

from typing import Any

import pytest

from faceflow.aggregator.config import AggregatorConfig
from faceflow.analyzer.config import AnalyzerConfig
from faceflow.errors import ConfigError


@pytest.mark.parametrize("cls", [AnalyzerConfig, AggregatorConfig], ids=["analyzer", "aggregator"])
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"group_id": ""}, "group_id: expected a name of 1..249 characters, got ''"),
        ({"client_id": "x" * 250}, "client_id: expected a name of 1..249 characters"),
        ({"grpc_port": 70000}, r"grpc_port: expected a port in 0..65535 \(0 picks a free one\), got 70000"),
        ({"metrics_port": True}, "metrics_port: expected a port in 0..65535"),
    ],
)
def test_names_and_ports_are_checked_alike(cls: Any, override: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(**override)


@pytest.mark.parametrize(
    ("cls", "override", "message"),
    [
        (AnalyzerConfig, {"max_batch_frames": 0}, "max_batch_frames: expected an int >= 1, got 0"),
        (AnalyzerConfig, {"max_wait_ms": -1}, "max_wait_ms: expected an int >= 0, got -1"),
        (AnalyzerConfig, {"concurrency": True}, "concurrency: expected an int >= 1, got True"),
        (AggregatorConfig, {"subscriber_queue": 5}, "subscriber_queue: expected an int >= 10, got 5"),
        (AggregatorConfig, {"grpc_workers": 3}, "grpc_workers: expected an int >= 4, got 3"),
    ],
)
def test_counts_are_checked_with_their_minimum(cls: Any, override: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(**override)
