"""Topic administration against a real broker: readiness, idempotent creation, config read-back.

Every function connects as its ``security`` argument says; None means the environment's
(:func:`faceflow.kafka.clients.kafka_security_from_env`), as for producers and consumers.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Literal

from kafka import errors as kafka_errors
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from faceflow.errors import FaceflowError
from faceflow.kafka.clients import KafkaSecurity, client_settings
from faceflow.topics import IDENTITIES, IDENTITIES_AUDIT, TopicSpec, run_topics

logger = logging.getLogger(__name__)


class KafkaAdminError(FaceflowError):
    """The broker refused or failed an administrative request."""


def admin_client(
    bootstrap: str, *, timeout_ms: int = 10_000, security: KafkaSecurity | None = None
) -> KafkaAdminClient:
    """An admin client for ``bootstrap``, connecting as ``security`` says (default: the environment's)."""
    return KafkaAdminClient(
        **client_settings(bootstrap, security),
        client_id="faceflow-admin",
        request_timeout_ms=timeout_ms,
    )


def broker_answers_metadata(
    bootstrap: str, *, timeout_ms: int = 3_000, security: KafkaSecurity | None = None
) -> bool:
    """True when the broker answers a metadata request and reports a controller."""
    if not any(_accepts_connections(address) for address in bootstrap.split(",")):
        return False  # fast path: kafka-python would retry a refused bootstrap for its whole timeout
    try:
        with closing(admin_client(bootstrap, timeout_ms=timeout_ms, security=security)) as admin:
            cluster = admin.describe_cluster()
    except KafkaError as exc:
        logger.debug("broker %s not answering yet: %s", bootstrap, exc)
        return False
    return bool(cluster.get("brokers")) and cluster.get("controller_id", -1) != -1


def _accepts_connections(address: str) -> bool:
    host, _, port = address.strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def cluster_info(bootstrap: str, *, security: KafkaSecurity | None = None) -> dict[str, Any]:
    with closing(admin_client(bootstrap, security=security)) as admin:
        info: dict[str, Any] = admin.describe_cluster()
        return info


def ensure_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = 1,
    security: KafkaSecurity | None = None,
) -> dict[str, str]:
    """Create each topic that does not exist yet; report ``{name: "created" | "exists"}``.

    An existing topic is left as it is (its configs are not overwritten): read them back with
    :func:`topic_configs` to check.
    """
    outcome: dict[str, str] = {}
    with closing(admin_client(bootstrap, security=security)) as admin:
        existing = set(admin.list_topics())
        wanted = [s for s in specs if s.name not in existing]
        for spec in specs:
            if spec.name in existing:
                outcome[spec.name] = "exists"
        if not wanted:
            return outcome
        request = {
            s.name: {
                "num_partitions": s.partitions,
                "replication_factor": replication_factor,
                "configs": dict(s.configs),
            }
            for s in wanted
        }
        try:
            result = admin.create_topics(request, timeout_ms=30_000, raise_errors=False)
            refused = _refusals(result)
            if refused:
                # the broker's own reason per topic, not kafka-python's dump of request and response
                raise KafkaAdminError(f"creating topics on {bootstrap} failed: {'; '.join(refused)}")
            admin.wait_for_topics(list(request))
        except KafkaError as exc:
            raise KafkaAdminError(f"creating topics {sorted(request)} on {bootstrap} failed: {exc}") from exc
        for s in wanted:
            outcome[s.name] = "created"
            logger.info("created topic %s (%d partitions, %s)", s.name, s.partitions, dict(s.configs))
    return outcome


@dataclass(frozen=True, kw_only=True)
class TopicState:
    """One topic of a set after :func:`ensure_topic_set`: created now, or there already as asked."""

    name: str
    kind: str
    state: Literal["created", "exists"]
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the person at the terminal."""
        return (
            f"{self.state:7} {self.name} ({self.kind}: {self.partitions} partitions, "
            f"replication factor {self.replication_factor})"
        )


def create_run_topics(
    bootstrap: str,
    prefix: str,
    *,
    partitions: int | None = None,
    replication_factor: int = 1,
    security: KafkaSecurity | None = None,
) -> list[TopicState]:
    """The topics of a run under ``prefix`` (:func:`faceflow.topics.run_topics`), the shared
    gallery and its audit topic, created or checked by :func:`ensure_topic_set`: what ``faceflow
    run`` does before it starts the mesh, and what ``faceflow topics create --prefix`` does for a
    script. ``partitions`` applies to the run's own topics, never to the shared ones.

    Raises:
        KafkaAdminError: no broker answers, the broker refuses, or a topic exists with other settings.
        ValueError: a bad prefix or partition count.
    """
    own = run_topics(prefix, partitions=partitions)
    shared = {IDENTITIES.name: "identities", IDENTITIES_AUDIT.name: "audit"}
    kinds = {spec.name: kind for kind, spec in own.items()} | shared
    return ensure_topic_set(
        bootstrap,
        [*own.values(), IDENTITIES, IDENTITIES_AUDIT],
        kinds=kinds,
        replication_factor=replication_factor,
        security=security,
    )


def ensure_topic_set(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    *,
    kinds: Mapping[str, str] | None = None,
    replication_factor: int = 1,
    security: KafkaSecurity | None = None,
) -> list[TopicState]:
    """Create the topics of ``specs`` that are missing; check that those already there have the
    spec's partitions, the replication factor and every config of the spec. Idempotent: a second
    call reports every topic as ``exists``.

    Raises:
        KafkaAdminError: no broker answers at ``bootstrap``; the broker refuses; or a topic exists
            with other settings (one line naming each difference: the topic is never altered).
    """
    if replication_factor < 1:
        raise ValueError(f"replication_factor: expected >= 1, got {replication_factor}")
    if not any(_accepts_connections(address) for address in bootstrap.split(",")):
        raise KafkaAdminError(f"no Kafka broker accepts connections at {bootstrap}")
    names = [spec.name for spec in specs]
    try:
        outcome = ensure_topics(bootstrap, specs, replication_factor=replication_factor, security=security)
        existing = [spec for spec in specs if outcome[spec.name] == "exists"]
        if existing:
            _check_existing(bootstrap, existing, replication_factor, security)
    except KafkaAdminError:
        raise
    except KafkaError as exc:
        raise KafkaAdminError(f"topics {', '.join(names)} on {bootstrap}: {exc}") from exc
    return [
        TopicState(
            name=spec.name,
            kind=(kinds or {}).get(spec.name, spec.name),
            state="created" if outcome[spec.name] == "created" else "exists",
            partitions=spec.partitions,
            replication_factor=replication_factor,
            configs=dict(spec.configs),
        )
        for spec in specs
    ]


def _check_existing(
    bootstrap: str, specs: Sequence[TopicSpec], replication_factor: int, security: KafkaSecurity | None
) -> None:
    names = [spec.name for spec in specs]
    with closing(admin_client(bootstrap, security=security)) as admin:
        described = {t["name"]: t for t in admin.describe_topics(names)}
        result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    problems = []
    for spec in specs:
        topic = described.get(spec.name, {})
        partitions = topic.get("partitions") or []
        if len(partitions) != spec.partitions:
            problems.append(f"{spec.name} has {len(partitions)} partitions, expected {spec.partitions}")
        # kafka-python 3 names a partition's replicas as the protocol does (replica_nodes)
        factors = {len(p.get("replica_nodes") or p.get("replicas") or []) for p in partitions}
        if partitions and factors != {replication_factor}:
            found = "/".join(str(f) for f in sorted(factors))
            problems.append(f"{spec.name} has replication factor {found}, expected {replication_factor}")
        configs = _config_values(result, spec.name)
        for key, wanted in spec.configs.items():
            if configs.get(key) != wanted:
                problems.append(f"{spec.name} has {key}={configs.get(key)}, expected {wanted}")
    if problems:
        raise KafkaAdminError(
            "topics exist with other settings (left as they are; delete them or use another prefix): "
            + "; ".join(problems)
        )


def topics_with_prefix(
    bootstrap: str, prefix: str, *, security: KafkaSecurity | None = None
) -> dict[str, int]:
    """``{name: partitions}`` of every topic named ``<prefix>.<something>``, sorted by name.

    Raises:
        KafkaAdminError: no broker answers at ``bootstrap``.
    """
    if not any(_accepts_connections(address) for address in bootstrap.split(",")):
        raise KafkaAdminError(f"no Kafka broker accepts connections at {bootstrap}")
    try:
        with closing(admin_client(bootstrap, security=security)) as admin:
            names = sorted(n for n in admin.list_topics() if n.startswith(prefix + "."))
            described = admin.describe_topics(names) if names else []
    except KafkaError as exc:
        raise KafkaAdminError(f"listing topics on {bootstrap}: {exc}") from exc
    counts = {t["name"]: len(t["partitions"]) for t in described}
    return {name: counts.get(name, 0) for name in names}


def topic_configs(
    bootstrap: str, names: Iterable[str], *, security: KafkaSecurity | None = None
) -> dict[str, dict[str, str]]:
    """The non-default configs of each topic, as the broker reports them."""
    names = list(names)
    with closing(admin_client(bootstrap, security=security)) as admin:
        result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    return {name: _config_values(result, name) for name in names}


def topic_partitions(
    bootstrap: str, names: Iterable[str], *, security: KafkaSecurity | None = None
) -> dict[str, int]:
    with closing(admin_client(bootstrap, security=security)) as admin:
        described = admin.describe_topics(list(names))
    return {t["name"]: len(t["partitions"]) for t in described}


def delete_topics(bootstrap: str, names: Iterable[str], *, security: KafkaSecurity | None = None) -> None:
    with closing(admin_client(bootstrap, security=security)) as admin:
        admin.delete_topics(list(names), timeout_ms=30_000)


def _refusals(result: Mapping[str, Any]) -> list[str]:
    """``"<topics>: <ErrorName>: <broker's message>"`` for the topics the broker did not create, by
    reason; a topic that already exists is no refusal (another process won the race)."""
    by_reason: dict[str, list[str]] = {}
    for topic in result.get("topics", []):
        error = kafka_errors.for_code(int(topic.get("error_code") or 0))
        if error is kafka_errors.NoError or error is TopicAlreadyExistsError:
            continue
        reason = f"{error.__name__}: {topic.get('error_message') or error.description}"
        by_reason.setdefault(reason, []).append(str(topic.get("name")))
    return [f"{', '.join(names)}: {reason}" for reason, names in by_reason.items()]


def _config_values(result: Mapping[str, Any], name: str) -> dict[str, str]:
    """Flatten kafka-python 3's ``{type: {name: {key: {value: ...}}}}`` answer."""
    by_type = result.get("topic") or result.get("TOPIC") or {}
    entries = by_type.get(name, {})
    values: dict[str, str] = {}
    for key, data in entries.items():
        values[key] = str(data.get("value") if isinstance(data, Mapping) else data)
    return values
