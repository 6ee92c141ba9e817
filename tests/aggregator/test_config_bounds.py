"""The aggregator's config bounds: subscribers within its gRPC threads, the naming operating point."""

from __future__ import annotations

import threading

import pytest

from faceflow.aggregator.config import AggregatorConfig
from faceflow.aggregator.processor import AggregatorProcessor
from faceflow.core.identity import Gallery
from faceflow.errors import ConfigError
from faceflow.service.grpc_server import RESERVED_WORKERS, ServerSettings


def test_the_default_subscriber_bound_fits_the_default_stream_bound() -> None:
    config = AggregatorConfig()
    max_streams, _ = ServerSettings(workers=config.grpc_workers).stream_bounds({})
    assert config.max_subscribers == max_streams == config.grpc_workers - RESERVED_WORKERS


def test_more_subscribers_than_threads_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"max_subscribers: expected at most grpc_workers - 4 = 28"):
        AggregatorConfig(max_subscribers=256)
    assert AggregatorConfig(grpc_workers=260, max_subscribers=256).max_subscribers == 256


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("match_threshold", 0.0, r"match_threshold: expected a distance in \(0, 2\)"),
        ("anon_threshold", 2.5, r"anon_threshold: expected a distance in \(0, 2\)"),
        ("name_margin", -0.1, r"name_margin: expected a distance in \[0, 2\)"),
    ],
)
def test_naming_operating_point_is_validated(field: str, value: float, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        AggregatorConfig(**{field: value})


def test_the_naming_operating_point_reaches_every_stream() -> None:
    config = AggregatorConfig(match_threshold=0.5, name_margin=0.08, anon_threshold=0.45)
    processor = AggregatorProcessor(config, gallery=Gallery(), lock=threading.RLock(), restore=lambda _p: {})
    policy = processor.stream_config.naming_policy()
    assert (policy.name_threshold, policy.name_margin, policy.anon_threshold) == (0.5, 0.08, 0.45)
