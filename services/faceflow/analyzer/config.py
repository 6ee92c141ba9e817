"""The analyzer's one config object: ``FACEFLOW_ANALYZER_*`` variables, then flags.

Every field is also the variable ``FACEFLOW_ANALYZER_<FIELD>`` (upper case), except the mesh-wide
``FACEFLOW_KAFKA_BOOTSTRAP`` and ``FACEFLOW_TRITON_URL``. Values are checked on construction with
messages "name: expected X, got Y"; the resolved config is logged at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from faceflow import topics
from faceflow.core.scheduling import ScheduleMode
from faceflow.errors import ConfigError
from faceflow.service.config import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_TRITON_URL,
    KAFKA_BOOTSTRAP_ENV,
    TRITON_URL_ENV,
    ConfigMixin,
    check_consumer_timeouts,
    check_hostports,
    check_ints,
    check_names,
    check_ports,
    check_positive,
    load_env,
)

ENV_PREFIX = "FACEFLOW_ANALYZER_"


class AnalyzerConfigError(ConfigError, ValueError):
    """An analyzer setting is invalid."""


@dataclass(frozen=True, kw_only=True)
class AnalyzerConfig(ConfigMixin):
    """Everything ``faceflow analyzer`` needs; see docs/analyzer.md for what each setting trades."""

    kafka_bootstrap: str = DEFAULT_BOOTSTRAP
    triton_url: str = DEFAULT_TRITON_URL
    frames_topic: str = topics.FRAMES.name
    analyses_topic: str = topics.ANALYSES.name
    dlq_topic: str = topics.FRAMES_DLQ.name
    group_id: str = "faceflow-analyzer"
    #: Static membership (KIP-345): a restart within the session timeout keeps the assignment.
    instance_id: str = ""
    client_id: str = "faceflow-analyzer"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50052
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9465
    #: Micro-batches: at most this many frames per Triton call, waiting at most this long to fill one.
    max_batch_frames: int = 8
    max_wait_ms: int = 50
    #: Frames polled but not yet produced beyond which partitions are paused.
    max_pending: int = 64
    #: Triton calls in flight at once. 1 on a CPU Triton (two calls at once fight for the same cores:
    #: measured 0.58x); 2 or more where Triton has GPUs or several model instances.
    concurrency: int = 1
    triton_timeout_s: float = 60.0
    #: "adaptive": detect every frame, analyze a face only when it pays; "all": every face, every frame.
    schedule: ScheduleMode = ScheduleMode.ADAPTIVE
    max_age_s: float = 1.0
    quality_margin: float = 0.15
    #: Include the 11-class parsing mask of each analyzed face (zlib, a few KB each).
    include_parsing: bool = True
    #: How long a silent member keeps its partitions: the failover time after a kill, against
    #: needless rebalances on a pause (docs/kubernetes.md, "Consumer session timeout").
    session_timeout_ms: int = 30_000
    #: Longest gap between two polls before the member is ejected (the loop polls while paused).
    max_poll_interval_ms: int = 300_000
    grace_s: float = 10.0
    #: How often an idle analyzer proves Triton with a real inference (readiness).
    probe_interval_s: float = 10.0

    def __post_init__(self) -> None:
        check_hostports(self, ("kafka_bootstrap", "triton_url"), error=AnalyzerConfigError)
        error = AnalyzerConfigError
        names = ("frames_topic", "analyses_topic", "dlq_topic", "group_id", "client_id")
        check_names(self, names, error=error)
        check_ports(self, ("grpc_port", "metrics_port"), error=error)
        check_ints(
            self,
            (("max_batch_frames", 1), ("max_wait_ms", 0), ("concurrency", 1), ("max_pending", 1)),
            error=error,
        )
        if self.max_pending < self.max_batch_frames:
            raise AnalyzerConfigError(
                f"max_pending: expected >= max_batch_frames ({self.max_batch_frames}), got {self.max_pending}"
            )
        check_positive(
            self, ("triton_timeout_s", "max_age_s", "grace_s", "probe_interval_s"), error=AnalyzerConfigError
        )
        if not 0 <= self.quality_margin <= 1:
            raise AnalyzerConfigError(
                f"quality_margin: expected a number in 0..1, got {self.quality_margin!r}"
            )
        try:
            object.__setattr__(self, "schedule", ScheduleMode(self.schedule))
        except ValueError:
            raise AnalyzerConfigError(f"schedule: expected adaptive or all, got {self.schedule!r}") from None
        check_consumer_timeouts(self, error=AnalyzerConfigError)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AnalyzerConfig:
        """The config from ``FACEFLOW_ANALYZER_*``, ``FACEFLOW_KAFKA_BOOTSTRAP`` and ``FACEFLOW_TRITON_URL``.

        Raises:
            AnalyzerConfigError: a variable cannot be parsed or a value is out of range.
        """
        env = os.environ if env is None else env
        values = load_env(
            cls, env, prefix=ENV_PREFIX, skip=("kafka_bootstrap", "triton_url"), error=AnalyzerConfigError
        )
        if env.get(KAFKA_BOOTSTRAP_ENV):
            values["kafka_bootstrap"] = env[KAFKA_BOOTSTRAP_ENV]
        if env.get(TRITON_URL_ENV):
            values["triton_url"] = env[TRITON_URL_ENV]
        return cls(**values)
