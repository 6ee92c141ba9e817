"""The consumer session timeout and poll interval: one rule for the analyzer and the aggregator,
settable by flag and variable, and passed to the real consumer."""

from __future__ import annotations

from typing import Any

import pytest
from support_aggregator import config as aggregator_config
from support_aggregator import make_topics, running

from faceflow.aggregator import cli as aggregator_cli
from faceflow.aggregator.config import AggregatorConfig
from faceflow.analyzer import cli as analyzer_cli
from faceflow.analyzer.config import AnalyzerConfig
from faceflow.cli import build_parser
from faceflow.errors import ConfigError

CONFIGS: dict[str, Any] = {"analyzer": AnalyzerConfig, "aggregator": AggregatorConfig}
CLIS: dict[str, Any] = {"analyzer": analyzer_cli, "aggregator": aggregator_cli}


@pytest.mark.parametrize("service", sorted(CONFIGS))
@pytest.mark.parametrize(
    ("session", "max_poll", "error"),
    [
        (30_000, 300_000, None),
        (6_000, 6_000, None),
        (10_000, 10_000, None),
        (5_999, 300_000, r"session_timeout_ms: expected an int >= 6000, got 5999"),
        (0, 300_000, r"session_timeout_ms: expected an int >= 6000, got 0"),
        (60_000, 30_000, r"expected 6000 <= session <= max_poll, got 60000 / 30000"),
        (True, 300_000, r"session_timeout_ms: expected an int >= 6000, got True"),
        (30_000, 5_000, r"max_poll_interval_ms: expected an int >= 6000, got 5000"),
    ],
)
def test_session_and_poll_bounds(service: str, session: Any, max_poll: Any, error: str | None) -> None:
    cls = CONFIGS[service]
    if error:
        with pytest.raises(ConfigError, match=error):
            cls(session_timeout_ms=session, max_poll_interval_ms=max_poll)
    else:
        c = cls(session_timeout_ms=session, max_poll_interval_ms=max_poll)
        assert (c.session_timeout_ms, c.max_poll_interval_ms) == (session, max_poll)


@pytest.mark.parametrize("service", sorted(CONFIGS))
@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"SESSION_TIMEOUT_MS": "12000"}, None),
        ({"SESSION_TIMEOUT_MS": "12000", "MAX_POLL_INTERVAL_MS": "12000"}, None),
        ({"SESSION_TIMEOUT_MS": "soon"}, r"_SESSION_TIMEOUT_MS: expected an integer, got 'soon'"),
        ({"SESSION_TIMEOUT_MS": "400000"}, r"expected 6000 <= session <= max_poll, got 400000 / 300000"),
    ],
)
def test_from_the_environment(service: str, env: dict[str, str], error: str | None) -> None:
    prefix = f"FACEFLOW_{service.upper()}_"
    environ = {prefix + key: value for key, value in env.items()}
    cls = CONFIGS[service]
    if error:
        with pytest.raises(ConfigError, match=error):
            cls.from_env(environ)
    else:
        c = cls.from_env(environ)
        assert c.session_timeout_ms == int(env["SESSION_TIMEOUT_MS"])
        assert c.max_poll_interval_ms == int(env.get("MAX_POLL_INTERVAL_MS", "300000"))


@pytest.mark.parametrize("service", sorted(CONFIGS))
def test_flags_override_the_environment(service: str) -> None:
    prefix = f"FACEFLOW_{service.upper()}_"
    env = {prefix + "SESSION_TIMEOUT_MS": "20000", prefix + "MAX_POLL_INTERVAL_MS": "90000"}
    args = build_parser().parse_args([service, "--session-timeout-ms", "8000"])
    c = CLIS[service].config_from_args(args, env)
    assert (c.session_timeout_ms, c.max_poll_interval_ms) == (8000, 90000)
    args = build_parser().parse_args(
        [service, "--session-timeout-ms", "100000", "--max-poll-interval-ms", "50000"]
    )
    with pytest.raises(ConfigError, match="expected 6000 <= session <= max_poll, got 100000 / 50000"):
        CLIS[service].config_from_args(args, env)


@pytest.mark.integration
def test_the_aggregator_gives_both_to_its_consumer(
    kafka_bootstrap: str, triton_url: str, unique_name: str
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=1)
    cfg = aggregator_config(
        kafka_bootstrap, triton_url, t, unique_name, session_timeout_ms=7000, max_poll_interval_ms=45_000
    )
    with running(cfg) as (service, _stub):
        assert service.loop is not None
        consumer_config = service.loop.consumer.config
    assert consumer_config["session_timeout_ms"] == 7000
    assert consumer_config["max_poll_interval_ms"] == 45_000
    assert consumer_config["heartbeat_interval_ms"] == 1000  # a tenth of the session, at least 1 s
