"""The aggregator's changelog on faceflow.aggregator.state.v1 (compacted; key = stream id).

A checkpoint holds a stream's whole :class:`~faceflow.core.stream.StreamAnalytics` snapshot and the
analyses-topic position it is valid at (``next_offset``: every record before it is applied). It is
written to the state topic's partition with the same number as the stream's analyses partition, so
the owner of analyses partition ``p`` restores by reading state partition ``p`` only. The value is
zlib-compressed JSON (schema ``version``); an empty value (tombstone) forgets a stream.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition

from faceflow.errors import FatalError
from faceflow.kafka.clients import make_consumer

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    stream_id: str
    partition: int
    next_offset: int
    snapshot: dict[str, Any]


def encode_checkpoint(stream_id: str, snapshot: dict[str, Any], *, partition: int, next_offset: int) -> bytes:
    document = {
        "version": CHECKPOINT_VERSION,
        "stream_id": stream_id,
        "partition": partition,
        "next_offset": next_offset,
        "written_ns": time.time_ns(),
        "stream": snapshot,
    }
    return zlib.compress(json.dumps(document, separators=(",", ":")).encode(), 3)


def decode_checkpoint(value: bytes) -> Checkpoint:
    """Raises ValueError for a value that is not a checkpoint of this version."""
    try:
        document = json.loads(zlib.decompress(value))
    except (zlib.error, ValueError) as exc:
        raise ValueError(f"not an aggregator checkpoint: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError(f"checkpoint: expected a JSON object, got {type(document).__name__}")
    if document.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint: expected version {CHECKPOINT_VERSION}, got {document.get('version')!r}"
        )
    try:
        return Checkpoint(
            stream_id=str(document["stream_id"]),
            partition=int(document["partition"]),
            next_offset=int(document["next_offset"]),
            snapshot=document["stream"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint: malformed ({type(exc).__name__}: {exc})") from exc


def read_partition(
    bootstrap: str, topic: str, partition: int, *, timeout_s: float = 60.0
) -> dict[str, Checkpoint]:
    """The latest checkpoint of every stream in one state partition (tombstones remove).

    Raises:
        FatalError: the partition could not be read to its end within ``timeout_s`` (the owner must
            not start without its state: it would hand out new track ids).
    """
    out: dict[str, Checkpoint] = {}
    tp = TopicPartition(topic, partition)
    with closing(
        make_consumer(bootstrap, group_id=None, client_id="faceflow-aggregator-restore")
    ) as consumer:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        deadline = time.monotonic() + timeout_s
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise FatalError(
                    f"could not read {topic}/{partition} to its end ({end}) within {timeout_s:.0f} s"
                )
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    key = (r.key or b"").decode("utf-8", "replace")
                    if r.value is None:
                        out.pop(key, None)
                        continue
                    try:
                        out[key] = decode_checkpoint(r.value)
                    except ValueError as exc:
                        logger.error("state %s/%d@%d (%s): skipped: %s", topic, partition, r.offset, key, exc)
    logger.info("restored %d stream checkpoints from %s/%d", len(out), topic, partition)
    return out
