"""The aggregator promises no more subscribers than it has gRPC threads for."""

from __future__ import annotations

import pytest

from faceflow.aggregator.config import AggregatorConfig
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
