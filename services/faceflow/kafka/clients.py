"""Producer and consumer factories with faceflow's delivery contract built in (DESIGN.md).

* Producers: ``acks=all``, idempotent, compressed, request size sized for the topic's
  ``max.message.bytes``. A send is complete only when its future resolves.
* Consumers: no auto-commit (we commit after our outputs are acknowledged), start from the
  earliest offset when a group is new (kafka-python defaults to ``latest``, which silently skips
  what was produced before the consumer joined), cooperative-sticky assignment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from faceflow.kafka.headers import HeaderList
from faceflow.topics import FRAMES_MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

#: Consumers read whole batches of large frames; a single fetch may return this much per partition.
CONSUMER_MAX_PARTITION_FETCH_BYTES = FRAMES_MAX_MESSAGE_BYTES + 1024 * 1024


def make_producer(
    bootstrap: str,
    *,
    client_id: str,
    max_request_size: int = FRAMES_MAX_MESSAGE_BYTES,
    linger_ms: int = 5,
    compression: str | None = "lz4",
    **overrides: Any,
) -> KafkaProducer:
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap.split(","),
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": compression,
        "linger_ms": linger_ms,
        "max_request_size": max_request_size,
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 120_000,
        "request_timeout_ms": 30_000,
        "max_block_ms": 10_000,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def make_consumer(
    bootstrap: str,
    *,
    group_id: str | None,
    client_id: str,
    topics: Iterable[str] = (),
    **overrides: Any,
) -> KafkaConsumer:
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap.split(","),
        "client_id": client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": CONSUMER_MAX_PARTITION_FETCH_BYTES,
        "fetch_max_bytes": 4 * CONSUMER_MAX_PARTITION_FETCH_BYTES,
        "isolation_level": "read_committed",
    }
    config.update(overrides)
    consumer = KafkaConsumer(**config)
    topic_list = list(topics)
    if topic_list:
        consumer.subscribe(topic_list)
    return consumer


def header_dict(headers: HeaderList | None) -> Mapping[str, bytes]:
    """Kafka record headers as a dict (the last value wins for a repeated key)."""
    return {key: value for key, value in (headers or [])}


def wait_for_topics(
    producer: KafkaProducer, topics: Iterable[str], *, bootstrap: str, timeout_s: float
) -> dict[str, int]:
    """Wait until the broker answers and every topic exists; return their partition counts.

    Raises:
        ServiceStartError: the broker did not answer, or a topic is missing, within ``timeout_s``.
    """
    import time  # noqa: PLC0415

    from kafka.errors import KafkaTimeoutError  # noqa: PLC0415

    from faceflow.errors import ServiceStartError  # noqa: PLC0415

    wanted = list(topics)
    found: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        for topic in wanted:
            if topic in found:
                continue
            try:
                partitions = producer.partitions_for(topic)
            except KafkaTimeoutError:
                partitions = None
            if partitions:
                found[topic] = len(partitions)
        if len(found) == len(wanted):
            return found
        if time.monotonic() >= deadline:
            missing = [t for t in wanted if t not in found]
            raise ServiceStartError(
                f"the Kafka broker at {bootstrap} did not report topics {missing} within {timeout_s:.0f} s: "
                "is the broker up (faceflow dev up) and are the topics created?"
            )
        time.sleep(0.2)
