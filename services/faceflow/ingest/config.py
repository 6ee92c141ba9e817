"""The ingest service's one config object (STYLE.md #4): environment variables, then flags.

Every setting has a ``FACEFLOW_INGEST_<NAME>`` variable (see :data:`ENV_VARS`); the broker address
is the mesh-wide ``FACEFLOW_KAFKA_BOOTSTRAP``. Flags of ``faceflow ingest`` override the
environment through :meth:`IngestConfig.with_overrides`. Every value is checked on construction,
with messages of the form "name: expected X, got Y", and the resolved config is logged at
start-up (:meth:`IngestConfig.describe`, passwords in source URLs redacted).

A :class:`SourceConfig` is one source with every sampling setting resolved; it is built from a
``--source ID=URI`` flag, a YAML entry (:mod:`faceflow.ingest.sources_file`) or a gRPC
``SourceSpec`` (:meth:`SourceConfig.from_proto`), always against the service defaults.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path

from faceflow.ingest.backpressure import QueuePolicy
from faceflow.ingest.checks import check_int, check_number
from faceflow.ingest.errors import IngestConfigError, client_text
from faceflow.ingest.policy import DEFAULT_FILE_ROOTS, DEFAULT_HOSTS, DEFAULT_SCHEMES, SourcePolicy
from faceflow.ingest.sources_file import load_sources_file
from faceflow.ingest.uris import URL_SCHEMES, is_supported_scheme, redact_uri, url_scheme
from faceflow.service.config import (
    DEFAULT_BOOTSTRAP,
    KAFKA_BOOTSTRAP_ENV,
    MIN_SESSION_TIMEOUT_MS,
    ConfigMixin,
    load_env,
)
from faceflow.streams import validate_stream_id
from faceflow.topics import FRAMES, FRAMES_MAX_MESSAGE_BYTES
from faceflow.v1 import ingest_pb2

ENV_PREFIX = "FACEFLOW_INGEST_"
#: The consumer group in which ingest replicas split the sources topic's partitions.
DEFAULT_SOURCES_GROUP = "faceflow-ingest-sources"
_MODES = {
    None: ingest_pb2.SOURCE_MODE_UNSPECIFIED,
    True: ingest_pb2.SOURCE_MODE_LIVE,
    False: ingest_pb2.SOURCE_MODE_FINITE,
}
_HOSTPORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


class SeqStart(StrEnum):
    """Where a stream's ``seq`` starts when this process first sees the stream.

    ``clock`` (default): the wall clock in microseconds (:meth:`SeqCounter.starting_now`), so a
    restarted ingest continues above anything it produced before and consumers' ``(stream_id,
    seq)`` de-duplication never mistakes new frames for old ones. ``zero``: from 0, only for
    one-shot runs where nothing downstream remembers a stream across ingest restarts.
    """

    CLOCK = "clock"
    ZERO = "zero"


class PolicyChoice(StrEnum):
    """The queue policy setting: ``auto`` is drop-oldest for live sources, block for files."""

    AUTO = "auto"
    DROP_OLDEST = QueuePolicy.DROP_OLDEST.value
    BLOCK = QueuePolicy.BLOCK.value


def uri_is_live(uri: str) -> bool:
    """A URL (other than ``file://``) is a live source; a path (file or folder) is not."""
    scheme = url_scheme(uri)
    return scheme is not None and scheme != "file"


def _check_uri(uri: object) -> str:
    if not isinstance(uri, str) or not uri.strip():
        raise IngestConfigError(f"uri: expected a file path, folder or URL, got {client_text(repr(uri), 80)}")
    scheme = url_scheme(uri)
    if scheme is not None and not is_supported_scheme(scheme):
        raise IngestConfigError(
            f"uri: expected a path or a URL with one of {sorted(URL_SCHEMES)}, "
            f"got scheme {client_text(repr(scheme), 40)}"
        )
    return uri


def _check_quality(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise IngestConfigError(f"jpeg_quality: expected an int in 1..100, got {value!r}")
    return value


def _check_port(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise IngestConfigError(f"{name}: expected a port in 0..65535 (0 picks a free one), got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    """One source to pull, with its sampling settings resolved.

    Attributes:
        stream_id: the Kafka key of its frames (see :mod:`faceflow.streams`).
        uri: a video file, a folder of images, or an RTSP / HTTP(S) / HLS ... URL.
        target_fps: frames per second to keep, by timestamp; 0 keeps every frame.
        max_side: longest side in pixels after resizing; None keeps the size.
        jpeg_quality: JPEG quality 1..100 of a first encode attempt.
        folder_fps: for a folder of images, the frame rate of its timeline.
        live: whether disconnects (and the end) are retried; None: decided when the source opens,
            by its container (:func:`faceflow.ingest.sources.open_source`).
    """

    stream_id: str
    uri: str
    target_fps: float = 5.0
    max_side: int | None = 1280
    jpeg_quality: int = 85
    folder_fps: float = 1.0
    live: bool | None = None

    def __post_init__(self) -> None:
        validate_stream_id(self.stream_id)
        _check_uri(self.uri)
        check_number("target_fps", self.target_fps, minimum=0.0)
        if self.max_side is not None:
            check_int("max_side", self.max_side, minimum=16)
        _check_quality(self.jpeg_quality)
        check_number("folder_fps", self.folder_fps, minimum=0.0, inclusive=False)
        if self.live is not None and not isinstance(self.live, bool):
            raise IngestConfigError(f"live: expected true, false or unset, got {self.live!r}")

    @property
    def is_live(self) -> bool:
        """The guess before the source opens (URLs other than ``file://`` are live); the runner
        takes the decision of the opened source when ``live`` is None."""
        return uri_is_live(self.uri) if self.live is None else self.live

    @property
    def safe_uri(self) -> str:
        """The URI with any password replaced by ``***`` (for logs and status replies)."""
        return redact_uri(self.uri)

    @classmethod
    def from_proto(cls, spec: ingest_pb2.SourceSpec, defaults: IngestConfig) -> SourceConfig:
        """A source from a gRPC ``SourceSpec``; a field left at 0 takes the service default.

        Raises:
            InvalidStreamId, IngestConfigError: a field is invalid.
        """
        return defaults.source(
            spec.stream_id,
            spec.uri,
            target_fps=spec.target_fps,  # 0 keeps every frame (the proto's meaning)
            max_side=spec.max_side,  # 0 keeps the size
            jpeg_quality=spec.jpeg_quality or None,  # 0 means the default
            folder_fps=spec.folder_fps or None,
            live=_live_of_mode(spec.mode),
        )

    @classmethod
    def from_record(cls, spec: ingest_pb2.SourceSpec) -> SourceConfig:
        """A source exactly as a sources-topic record holds it (every field resolved already, so no
        service defaults apply: another replica's defaults must not change what was asked for).

        Raises:
            InvalidStreamId, IngestConfigError: a field is invalid.
        """
        return cls(
            stream_id=spec.stream_id,
            uri=spec.uri,
            target_fps=spec.target_fps,
            max_side=spec.max_side or None,
            jpeg_quality=spec.jpeg_quality,
            folder_fps=spec.folder_fps,
            live=_live_of_mode(spec.mode),
        )

    def to_proto(self, *, redact: bool = True) -> ingest_pb2.SourceSpec:
        """The spec as a ``SourceSpec``, with the password of a URL redacted (``redact=False`` only
        for the sources topic, whose reader has to open the URL)."""
        return ingest_pb2.SourceSpec(
            stream_id=self.stream_id,
            uri=self.safe_uri if redact else self.uri,
            target_fps=self.target_fps,
            max_side=self.max_side or 0,
            jpeg_quality=self.jpeg_quality,
            folder_fps=self.folder_fps,
            mode=_MODES[self.live],
        )


def _live_of_mode(mode: int) -> bool | None:
    if mode == ingest_pb2.SOURCE_MODE_LIVE:
        return True
    if mode == ingest_pb2.SOURCE_MODE_FINITE:
        return False
    if mode == ingest_pb2.SOURCE_MODE_UNSPECIFIED:
        return None
    raise IngestConfigError(f"mode: expected a SourceMode (0, 1 or 2), got {mode}")


@dataclass(frozen=True, kw_only=True)
class IngestConfig(ConfigMixin):
    """Everything ``faceflow ingest`` needs, validated on construction.

    See ``docs/ingest.md`` for the table of settings; each field is also the variable
    ``FACEFLOW_INGEST_<FIELD>`` (upper case), except ``kafka_bootstrap``.
    """

    kafka_bootstrap: str = DEFAULT_BOOTSTRAP
    topic: str = FRAMES.name
    client_id: str = "faceflow-ingest"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    grpc_workers: int = 16
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    # Defaults of every source (a source may override them).
    target_fps: float = 5.0
    max_side: int | None = field(default=1280, metadata={"zero_is_none": True})
    jpeg_quality: int = 85
    folder_fps: float = 1.0
    # Backpressure between decoding and the producer.
    queue_size: int = 32
    queue_policy: PolicyChoice = PolicyChoice.AUTO
    block_timeout_s: float = 2.0
    # The Kafka producer: how long start-up waits for the broker, how long a send may block, how
    # much may wait for acks.
    broker_timeout_s: float = 30.0
    produce_block_s: float = 2.0
    linger_ms: int = 20
    max_in_flight_bytes: int = 64 * 1024 * 1024
    delivery_timeout_s: float = 120.0
    # Sources: timeouts and reconnects.
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_reconnect_attempts: int = 10
    seq_start: SeqStart = SeqStart.CLOCK
    # Housekeeping.
    grace_s: float = 10.0
    drop_log_interval_s: float = 10.0
    max_finished_sources: int = 256
    max_push_streams: int = 1024
    # The source policy of StartSource (faceflow.ingest.policy): comma-separated, "none" for an
    # empty list. Sources given by the operator (flags, FACEFLOW_INGEST_SOURCES, the sources file)
    # are not subject to it.
    allow_schemes: str = DEFAULT_SCHEMES
    allow_hosts: str = DEFAULT_HOSTS
    allow_file_roots: str = DEFAULT_FILE_ROOTS
    # Sources shared by replicas (faceflow.ingest.assignments): empty keeps pulled sources in this
    # process only. With a topic, StartSource records sources there and the replicas of
    # sources_group split them; max_sources caps how many one replica runs (the rest wait).
    sources_topic: str = ""
    sources_group: str = DEFAULT_SOURCES_GROUP
    instance_id: str = ""
    session_timeout_ms: int = 10_000
    max_sources: int = 16
    #: ``host`` or ``host:port`` other replicas reach this one's gRPC on (they ask it for its
    #: sources' counters). Empty: ``$POD_IP``, else ``grpc_host`` unless a wildcard, else the host name.
    advertise_address: str = ""
    sources: tuple[SourceConfig, ...] = field(default=())

    def __post_init__(self) -> None:
        if not all(_HOSTPORT.match(part.strip()) for part in self.kafka_bootstrap.split(",")):
            raise IngestConfigError(
                f"kafka_bootstrap: expected host:port[,host:port...], got {self.kafka_bootstrap!r}"
            )
        if not self.topic or len(self.topic) > 249:
            raise IngestConfigError(f"topic: expected a topic name of 1..249 characters, got {self.topic!r}")
        if not self.client_id:
            raise IngestConfigError("client_id: expected a non-empty string, got ''")
        _check_port("grpc_port", self.grpc_port)
        _check_port("metrics_port", self.metrics_port)
        check_int("grpc_workers", self.grpc_workers, minimum=2)
        check_number("target_fps", self.target_fps, minimum=0.0)
        if self.max_side is not None:
            check_int("max_side", self.max_side, minimum=16)
        _check_quality(self.jpeg_quality)
        check_number("folder_fps", self.folder_fps, minimum=0.0, inclusive=False)
        check_int("queue_size", self.queue_size, minimum=1)
        for name, enum in (("queue_policy", PolicyChoice), ("seq_start", SeqStart)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                raise IngestConfigError(
                    f"{name}: expected one of {[e.value for e in enum]}, got {value!r}"
                ) from None
        for name in (
            "block_timeout_s",
            "broker_timeout_s",
            "produce_block_s",
            "open_timeout_s",
            "read_timeout_s",
        ):
            check_number(name, getattr(self, name), minimum=0.0, inclusive=False)
        check_number("delivery_timeout_s", self.delivery_timeout_s, minimum=1.0)
        check_int("linger_ms", self.linger_ms, minimum=0)
        check_int("max_in_flight_bytes", self.max_in_flight_bytes, minimum=FRAMES_MAX_MESSAGE_BYTES)
        check_number("reconnect_initial_s", self.reconnect_initial_s, minimum=0.0, inclusive=False)
        check_number("reconnect_max_s", self.reconnect_max_s, minimum=self.reconnect_initial_s)
        check_int("max_reconnect_attempts", self.max_reconnect_attempts, minimum=0)
        check_number("grace_s", self.grace_s, minimum=0.0)
        check_number("drop_log_interval_s", self.drop_log_interval_s, minimum=0.0)
        check_int("max_finished_sources", self.max_finished_sources, minimum=1)
        check_int("max_push_streams", self.max_push_streams, minimum=1)
        if len(self.sources_topic) > 249:
            raise IngestConfigError(
                f"sources_topic: expected a topic name of up to 249 characters (empty: no sources topic), "
                f"got {self.sources_topic!r}"
            )
        if self.sources_topic and not self.sources_group:
            raise IngestConfigError("sources_group: expected a consumer group name, got ''")
        check_int(
            "session_timeout_ms", self.session_timeout_ms, minimum=MIN_SESSION_TIMEOUT_MS
        )  # the broker's floor
        check_int("max_sources", self.max_sources, minimum=1)
        self.source_policy()
        seen: set[str] = set()
        for source in self.sources:
            if not isinstance(source, SourceConfig):
                raise IngestConfigError(f"sources: expected SourceConfig items, got {type(source).__name__}")
            if source.stream_id in seen:
                raise IngestConfigError(
                    f"sources: expected unique stream ids, got {source.stream_id!r} twice"
                )
            seen.add(source.stream_id)

    def source(
        self,
        stream_id: str,
        uri: str,
        *,
        target_fps: float | None = None,
        max_side: int | None = None,
        jpeg_quality: int | None = None,
        folder_fps: float | None = None,
        live: bool | None = None,
    ) -> SourceConfig:
        """A :class:`SourceConfig` with these settings, the service defaults for the others
        (None); ``max_side=0`` keeps the source's size."""
        return SourceConfig(
            stream_id=stream_id,
            uri=uri,
            target_fps=self.target_fps if target_fps is None else target_fps,
            max_side=self.max_side if max_side is None else (max_side or None),
            jpeg_quality=self.jpeg_quality if jpeg_quality is None else jpeg_quality,
            folder_fps=self.folder_fps if folder_fps is None else folder_fps,
            live=live,
        )

    def source_policy(self) -> SourcePolicy:
        """The policy of sources started over gRPC, from ``allow_schemes``, ``allow_hosts`` and
        ``allow_file_roots`` (relative roots taken against the working folder now).

        Raises:
            IngestConfigError: an entry does not parse.
        """
        return SourcePolicy.parse(
            schemes=self.allow_schemes, hosts=self.allow_hosts, file_roots=self.allow_file_roots
        )

    def policy_for(self, live: bool) -> QueuePolicy:
        """The queue policy of a source: ``auto`` drops the oldest frame of a live source and
        makes a file wait (it is read faster than real time, so dropping would only lose frames)."""
        if self.queue_policy is PolicyChoice.AUTO:
            return QueuePolicy.DROP_OLDEST if live else QueuePolicy.BLOCK
        return QueuePolicy(self.queue_policy.value)

    def describe(self) -> dict[str, str]:
        """Every setting as text, for the start-up log (URL passwords redacted)."""
        out = {f.name: str(getattr(self, f.name)) for f in fields(self) if f.name != "sources"}
        out["sources"] = ", ".join(f"{s.stream_id}={s.safe_uri}" for s in self.sources) or "(none)"
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestConfig:
        """The config from ``FACEFLOW_KAFKA_BOOTSTRAP`` and ``FACEFLOW_INGEST_*`` variables.

        ``FACEFLOW_INGEST_SOURCES`` holds ``ID=URI`` pairs separated by whitespace and
        ``FACEFLOW_INGEST_SOURCES_FILE`` a YAML file of sources (both are added).

        Raises:
            IngestConfigError: a variable cannot be parsed or a value is out of range.
        """
        env = os.environ if env is None else env
        values = load_env(cls, env, prefix=ENV_PREFIX, skip=("kafka_bootstrap",), error=IngestConfigError)
        bootstrap = env.get(KAFKA_BOOTSTRAP_ENV)
        if bootstrap:
            values["kafka_bootstrap"] = bootstrap
        config = cls(**values)
        sources: list[SourceConfig] = []
        for pair in env.get(ENV_PREFIX + "SOURCES", "").split():
            sources.append(config.source(*parse_source_flag(pair)))
        sources_file = env.get(ENV_PREFIX + "SOURCES_FILE")
        if sources_file:
            sources.extend(load_sources_file(Path(sources_file), config))
        return config.with_overrides(sources=tuple(sources)) if sources else config


def parse_source_flag(text: str) -> tuple[str, str]:
    """Split ``STREAM_ID=URI`` (the ``--source`` flag); the stream id is checked.

    Raises:
        IngestConfigError: no ``=`` or an empty URI.
        InvalidStreamId: the stream id breaks the naming rule.
    """
    stream_id, sep, uri = text.partition("=")
    if not sep or not uri:
        raise IngestConfigError(f"--source: expected STREAM_ID=URI, got {text!r}")
    return validate_stream_id(stream_id), uri
