"""Topic administration against a real broker: readiness, idempotent creation, config read-back.

Every function connects as its ``security`` argument says; None means the environment's
(:func:`faceflow.kafka.clients.kafka_security_from_env`), as for producers and consumers.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Mapping
from contextlib import closing
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from faceflow.errors import FaceflowError
from faceflow.kafka.clients import KafkaSecurity, client_settings
from faceflow.topics import TopicSpec

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
            admin.create_topics(request, timeout_ms=30_000, wait_for_metadata=True)
        except TopicAlreadyExistsError:
            pass  # another process won the race; fine
        except KafkaError as exc:
            raise KafkaAdminError(f"creating topics {sorted(request)} on {bootstrap} failed: {exc}") from exc
        for s in wanted:
            outcome[s.name] = "created"
            logger.info("created topic %s (%d partitions, %s)", s.name, s.partitions, dict(s.configs))
    return outcome


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


def _config_values(result: Mapping[str, Any], name: str) -> dict[str, str]:
    """Flatten kafka-python 3's ``{type: {name: {key: {value: ...}}}}`` answer."""
    by_type = result.get("topic") or result.get("TOPIC") or {}
    entries = by_type.get(name, {})
    values: dict[str, str] = {}
    for key, data in entries.items():
        values[key] = str(data.get("value") if isinstance(data, Mapping) else data)
    return values
