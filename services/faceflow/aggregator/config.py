"""The aggregator's one config object: ``FACEFLOW_AGGREGATOR_*`` variables, then flags.

Every field is also the variable ``FACEFLOW_AGGREGATOR_<FIELD>`` (upper case), except the mesh-wide
``FACEFLOW_KAFKA_BOOTSTRAP`` and ``FACEFLOW_TRITON_URL`` (Triton is used for enrolment from photos).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from faceflow import topics
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
from faceflow.service.grpc_server import RESERVED_WORKERS

ENV_PREFIX = "FACEFLOW_AGGREGATOR_"
#: ``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address (no port).
_ADVERTISE = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9._-]*)(?::(\d{1,5}))?|[0-9A-Fa-f]*:[0-9A-Fa-f:.]+"
)


def _valid_advertise(value: str) -> bool:
    match = _ADVERTISE.fullmatch(value)
    return match is not None and (match.group(1) is None or 0 < int(match.group(1)) < 65536)


class AggregatorConfigError(ConfigError, ValueError):
    """An aggregator setting is invalid."""


@dataclass(frozen=True, kw_only=True)
class AggregatorConfig(ConfigMixin):
    """Everything ``faceflow aggregator`` needs; see docs/aggregator.md for what each setting trades."""

    kafka_bootstrap: str = DEFAULT_BOOTSTRAP
    triton_url: str = DEFAULT_TRITON_URL
    analyses_topic: str = topics.ANALYSES.name
    faces_topic: str = topics.FACES.name
    #: Also write every faces record, same key and headers, as canonical proto3 JSON to
    #: ``faces_json_topic`` (for consumers with no registry or descriptors: docs/consumers.md).
    faces_json_mirror: bool = False
    faces_json_topic: str = topics.FACES_JSON.name
    state_topic: str = topics.AGGREGATOR_STATE.name
    identities_topic: str = topics.IDENTITIES.name
    #: Every gallery change made over gRPC is recorded here: who, what, which identity, when
    #: (append-only, no descriptors; docs/aggregator.md "Audit").
    audit_topic: str = topics.IDENTITIES_AUDIT.name
    #: Analyses that are not one (poison) go here with the reason, as the analyzer's poison frames do.
    dlq_topic: str = topics.FRAMES_DLQ.name
    group_id: str = "faceflow-aggregator"
    instance_id: str = ""
    client_id: str = "faceflow-aggregator"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50053
    #: ``host`` or ``host:port`` the other replicas reach this one's gRPC on (advertised to the
    #: consumer group; they forward calls for this replica's streams there). Empty: ``$POD_IP``,
    #: else ``grpc_host`` unless it is a wildcard, else the host name; with the bound gRPC port.
    advertise_address: str = ""
    grpc_workers: int = 32
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9466
    #: Link anonymous identities across streams (a person seen on camera A is known on camera B).
    cross_stream: bool = False
    #: Put embeddings on the public faces topic (privacy default: off).
    publish_embeddings: bool = False
    #: The naming operating point: the largest evidence distance at which a track is named as an
    #: enrolled or named person (calibrated on eval/: see docs/aggregator.md for the trade-off).
    match_threshold: float = 0.55
    #: The nearest other name must be at least this much farther, or the track stays unnamed.
    name_margin: float = 0.05
    #: Largest distance at which a track joins an anonymous identity (a returning stranger).
    anon_threshold: float = 0.5
    #: A partition's streams are checkpointed after this many frames or seconds, whichever first.
    checkpoint_frames: int = 50
    checkpoint_interval_s: float = 5.0
    #: Streams whose state a replica keeps; beyond, the least recently seen is checkpointed, dropped.
    max_streams: int = 2048
    max_batch: int = 64
    #: Events queued per subscriber before the oldest are dropped (and a Gap reports how many).
    subscriber_queue: int = 1000
    #: Live subscribers of this replica; each holds a gRPC thread, so at most grpc_workers - 4.
    max_subscribers: int = 28
    grace_s: float = 10.0
    #: How long a silent member keeps its partitions: the failover time after a kill, against
    #: needless rebalances on a pause (docs/kubernetes.md, "Consumer session timeout").
    session_timeout_ms: int = 30_000
    #: Longest gap between two polls before the member is ejected.
    max_poll_interval_ms: int = 300_000

    def __post_init__(self) -> None:
        check_hostports(self, ("kafka_bootstrap", "triton_url"), error=AggregatorConfigError)
        error = AggregatorConfigError
        names = (
            "analyses_topic",
            "faces_topic",
            "faces_json_topic",
            "state_topic",
            "identities_topic",
            "audit_topic",
            "group_id",
            "client_id",
        )
        check_names(self, names, error=error)
        if self.audit_topic == self.identities_topic:
            raise AggregatorConfigError(
                f"audit_topic: expected a topic other than identities_topic (audit records would land "
                f"in the compacted gallery), got {self.audit_topic!r}"
            )
        if self.faces_json_mirror and self.faces_json_topic == self.faces_topic:
            raise AggregatorConfigError(
                f"faces_json_topic: expected a topic other than faces_topic (JSON would land among the "
                f"protobuf records), got {self.faces_json_topic!r}"
            )
        check_ports(self, ("grpc_port", "metrics_port"), error=error)
        if self.advertise_address and not _valid_advertise(self.advertise_address):
            raise AggregatorConfigError(
                f"advertise_address: expected host or host:port (e.g. 10.0.0.7:50053), got "
                f"{self.advertise_address!r}"
            )
        minimums = (
            ("grpc_workers", 4),
            ("checkpoint_frames", 1),
            ("max_streams", 1),
            ("max_batch", 1),
            ("subscriber_queue", 10),
            ("max_subscribers", 1),
        )
        check_ints(self, minimums, error=error)
        check_consumer_timeouts(self, error=error)
        if self.max_subscribers > self.grpc_workers - RESERVED_WORKERS:
            raise AggregatorConfigError(
                f"max_subscribers: expected at most grpc_workers - {RESERVED_WORKERS} = "
                f"{self.grpc_workers - RESERVED_WORKERS} (each subscriber holds a gRPC thread; raise "
                f"grpc_workers for more), got {self.max_subscribers}"
            )
        for name in ("match_threshold", "anon_threshold"):
            if not 0 < getattr(self, name) < 2:
                raise AggregatorConfigError(
                    f"{name}: expected a distance in (0, 2), got {getattr(self, name)!r}"
                )
        if not 0 <= self.name_margin < 2:
            raise AggregatorConfigError(
                f"name_margin: expected a distance in [0, 2), got {self.name_margin!r}"
            )
        check_positive(self, ("checkpoint_interval_s", "grace_s"), error=AggregatorConfigError)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AggregatorConfig:
        """The config from ``FACEFLOW_AGGREGATOR_*`` and the mesh-wide variables.

        Raises:
            AggregatorConfigError: a variable cannot be parsed or a value is out of range.
        """
        env = os.environ if env is None else env
        values = load_env(
            cls, env, prefix=ENV_PREFIX, skip=("kafka_bootstrap", "triton_url"), error=AggregatorConfigError
        )
        if env.get(KAFKA_BOOTSTRAP_ENV):
            values["kafka_bootstrap"] = env[KAFKA_BOOTSTRAP_ENV]
        if env.get(TRITON_URL_ENV):
            values["triton_url"] = env[TRITON_URL_ENV]
        return cls(**values)
