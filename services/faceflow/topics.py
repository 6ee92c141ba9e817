"""The Kafka topics of the faceflow mesh: one source of truth for names and configs.

Every producer, consumer, the local runtime (``faceflow dev up``) and the Kubernetes manifests read
the topic names and their configs from here (DESIGN.md, "Data path"). Sizes are explicit because a
frame is far larger than Kafka's 1 MiB defaults, and retention is short where the payload is
biometric (privacy defaults: the frames topic keeps raw faces for one hour only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

MIB = 1024 * 1024
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

#: Largest encoded frame a topic accepts. Ingest keeps its size guard below this (see
#: ``FRAME_PAYLOAD_LIMIT``), and producers/consumers size their requests from it.
FRAMES_MAX_MESSAGE_BYTES = 8 * MIB
#: The room a Frame's protobuf envelope, key and headers may take beyond the JPEG itself.
FRAME_ENVELOPE_HEADROOM = 64 * 1024
#: Ingest re-encodes or refuses a frame whose JPEG is larger than this.
FRAME_PAYLOAD_LIMIT = FRAMES_MAX_MESSAGE_BYTES - FRAME_ENVELOPE_HEADROOM
#: Analyses carry per-face parsing masks (224x224 class ids), so they get the same room.
ANALYSES_MAX_MESSAGE_BYTES = 8 * MIB
#: A FaceEvent on the faces topic (protobuf).
FACES_MAX_MESSAGE_BYTES = 2 * MIB
#: The same event as canonical proto3 JSON (every field printed, floats as decimal text, bytes as
#: base64) takes up to about 4x its protobuf size, so the JSON mirror gets 4x the faces topic's room.
FACES_JSON_MAX_MESSAGE_BYTES = 4 * FACES_MAX_MESSAGE_BYTES
#: A stream's checkpoint (tracks, fused results, identity descriptors; zlib JSON).
AGGREGATOR_STATE_MAX_BYTES = 8 * MIB


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    """A topic's name, partition count and the configs it is created with."""

    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)
    purpose: str = ""

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 249:
            raise ValueError(f"expected a topic name of 1..249 characters, got {self.name!r}")
        if self.partitions < 1:
            raise ValueError(f"expected partitions >= 1 for {self.name}, got {self.partitions}")
        object.__setattr__(self, "configs", MappingProxyType(dict(self.configs)))

    def renamed(self, name: str) -> TopicSpec:
        """The same spec under another name (tests use unique topic names per run)."""
        return TopicSpec(name=name, partitions=self.partitions, configs=self.configs, purpose=self.purpose)


FRAMES = TopicSpec(
    name="faceflow.frames.v1",
    partitions=6,
    configs={
        "retention.ms": str(HOUR_MS),
        "max.message.bytes": str(FRAMES_MAX_MESSAGE_BYTES),
        "compression.type": "producer",
        "cleanup.policy": "delete",
    },
    purpose="ingest -> analyzer: one Frame per sampled video frame, key = stream_id",
)
FRAMES_DLQ = TopicSpec(
    name="faceflow.frames.dlq.v1",
    partitions=1,
    configs={
        "retention.ms": str(7 * DAY_MS),
        "max.message.bytes": str(FRAMES_MAX_MESSAGE_BYTES),
        "cleanup.policy": "delete",
    },
    purpose="poison input with the reason it was refused; never blocks a partition",
)
ANALYSES = TopicSpec(
    name="faceflow.analyses.v1",
    partitions=6,
    configs={
        "retention.ms": str(DAY_MS),
        "max.message.bytes": str(ANALYSES_MAX_MESSAGE_BYTES),
        "cleanup.policy": "delete",
    },
    purpose="analyzer -> aggregator: one FrameAnalysis per frame, key = stream_id",
)
FACES = TopicSpec(
    name="faceflow.faces.v1",
    partitions=6,
    configs={
        "retention.ms": str(7 * DAY_MS),
        "max.message.bytes": str(FACES_MAX_MESSAGE_BYTES),
        "cleanup.policy": "delete",
    },
    purpose="aggregator -> downstream consumers: FaceEvent per face per frame and track lifecycle",
)
#: Optional (``faces_json_mirror``): the faces topic as JSON, for consumers with no schema registry
#: and no descriptors (Kafka Connect's JsonConverter, ksqlDB, Flink). Same partitions as FACES, so a
#: stream's records land in the same partition number of both topics.
FACES_JSON = TopicSpec(
    name="faceflow.faces.json.v1",
    partitions=FACES.partitions,
    configs={
        "retention.ms": FACES.configs["retention.ms"],
        "max.message.bytes": str(FACES_JSON_MAX_MESSAGE_BYTES),
        "cleanup.policy": "delete",
    },
    purpose="optional JSON mirror of faceflow.faces.v1: the same records as canonical proto3 JSON",
)
AGGREGATOR_STATE = TopicSpec(
    name="faceflow.aggregator.state.v1",
    partitions=6,
    configs={
        "cleanup.policy": "compact",
        "max.message.bytes": str(AGGREGATOR_STATE_MAX_BYTES),
        "min.compaction.lag.ms": "0",
        "segment.ms": str(HOUR_MS),
    },
    purpose="aggregator changelog: per-stream tracker snapshot + input offset, compacted by key",
)

IDENTITIES = TopicSpec(
    name="faceflow.identities.v1",
    partitions=1,
    configs={
        "cleanup.policy": "compact",
        "max.message.bytes": str(2 * MIB),
        # Erasure (DESIGN.md "Identities"): a forgotten identity's tombstone replaces its record
        # at the next compaction, which runs once a segment rolls (segment.ms) and the record is
        # older than min.compaction.lag.ms; the tombstone itself goes after delete.retention.ms.
        # So an erased record can be read for at most about segment.ms + the cleaner's delay.
        "segment.ms": str(HOUR_MS),
        "min.compaction.lag.ms": "0",
        "delete.retention.ms": str(HOUR_MS),
        "min.cleanable.dirty.ratio": "0.01",
    },
    purpose="gallery: enrolled, named and anonymous identities (embeddings, no photos), key = identity id",
)

#: Who changed the gallery, and how: one IdentityAudit per enrolment, name or erasure made over
#: gRPC, key = identity id. Append-only (never compacted, so an erasure does not erase the record
#: of it) and kept a year, long enough for a yearly review of who enrolled, named or forgot whom.
#: It holds names and callers' subjects, never descriptors or photos (docs/privacy.md).
IDENTITIES_AUDIT = TopicSpec(
    name="faceflow.identities.audit.v1",
    partitions=1,
    configs={
        "cleanup.policy": "delete",
        "retention.ms": str(365 * DAY_MS),
        "max.message.bytes": str(MIB),
    },
    purpose="gallery audit: who enrolled, named or forgot an identity, when, from where; key = identity id",
)

#: The pulled sources ingest runs (docs/ingest.md "Sources shared by replicas"): one SourceAssignment per
#: source, key = stream id, a tombstone when it is stopped. Compacted and never expired: it is the
#: desired state that survives any replica; ingest replicas split its partitions in a consumer group.
SOURCES = TopicSpec(
    name="faceflow.sources.v1",
    partitions=6,
    configs={
        "cleanup.policy": "compact",
        "max.message.bytes": str(MIB),
        "min.compaction.lag.ms": "0",
        "segment.ms": str(HOUR_MS),
    },
    purpose="ingest sources: the desired pulled sources (SourceAssignment), key = stream id",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    FRAMES,
    FRAMES_DLQ,
    ANALYSES,
    FACES,
    FACES_JSON,
    AGGREGATOR_STATE,
    IDENTITIES,
    IDENTITIES_AUDIT,
    SOURCES,
)


def by_name(name: str) -> TopicSpec:
    """The spec of a faceflow topic, or KeyError naming the known topics."""
    for spec in ALL_TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown topic {name!r}; known: {', '.join(t.name for t in ALL_TOPICS)}")


#: The topics ``faceflow run`` gives each run, as copies of these specs named ``<prefix>.<kind>``,
#: so that runs never mix. The gallery (IDENTITIES) and its audit (IDENTITIES_AUDIT) are not among
#: them: they stay shared, so enrolments and anonymous identities persist from run to run, and so
#: does the record of who changed them.
RUN_TOPIC_KINDS: Mapping[str, TopicSpec] = MappingProxyType(
    {"frames": FRAMES, "analyses": ANALYSES, "faces": FACES, "state": AGGREGATOR_STATE, "dlq": FRAMES_DLQ}
)
_PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def run_topics(prefix: str, *, partitions: int | None = None) -> dict[str, TopicSpec]:
    """A run's own topics by kind (``frames``, ``analyses``, ``faces``, ``state``, ``dlq``), each
    named ``<prefix>.<kind>`` with its spec's configs: ``faceflow run`` and ``faceflow topics
    create`` both name them here. ``partitions`` replaces every spec's partition count.

    Raises:
        ValueError: the prefix has characters Kafka refuses in a topic name, or ``partitions < 1``.
    """
    if not prefix or not set(prefix) <= _PREFIX_CHARS or prefix.endswith("."):
        raise ValueError(
            f"prefix: expected letters, digits, '.', '_' and '-' (not ending in '.'), got {prefix!r}"
        )
    specs = {}
    for kind, spec in RUN_TOPIC_KINDS.items():
        specs[kind] = TopicSpec(
            name=f"{prefix}.{kind}",
            partitions=spec.partitions if partitions is None else partitions,
            configs=spec.configs,
            purpose=spec.purpose,
        )
    return specs
