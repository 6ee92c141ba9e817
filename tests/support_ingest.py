"""Helpers for the ingest service tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass

from kafka import TopicPartition
from PIL import Image
from skimage import data as skdata

from faceflow import topics
from faceflow.ingest.config import IngestConfig
from faceflow.ingest.service import IngestService
from faceflow.kafka import admin
from faceflow.kafka.clients import header_dict, make_consumer
from faceflow.v1 import frame_pb2


@dataclass(frozen=True)
class Consumed:
    """One record of the frames topic, decoded."""

    key: bytes
    frame: frame_pb2.Frame
    headers: dict[str, bytes]
    partition: int


def create_frames_topic(bootstrap: str, name: str) -> str:
    admin.ensure_topics(bootstrap, [topics.FRAMES.renamed(name)])
    return name


def consume(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[Consumed]], bool],
    timeout_s: float = 60.0,
) -> list[Consumed]:
    """Read ``topic`` from the start until ``until(records)`` holds or ``timeout_s`` passes."""
    got: list[Consumed] = []
    with closing(make_consumer(bootstrap, group_id=None, client_id="test-consumer")) as consumer:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while not until(got) and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=300).items():
                got += [
                    Consumed(
                        r.key, frame_pb2.Frame.FromString(r.value), dict(header_dict(r.headers)), tp.partition
                    )
                    for r in batch
                ]
    return got


def of_stream(records: list[Consumed], stream_id: str) -> list[frame_pb2.Frame]:
    return [r.frame for r in records if r.key == stream_id.encode()]


def has_end(stream_id: str) -> Callable[[list[Consumed]], bool]:
    return lambda records: any(f.end_of_stream for f in of_stream(records, stream_id))


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def running_service(config: IngestConfig, **kwargs: object) -> Iterator[IngestService]:
    service = IngestService(config, **kwargs)  # type: ignore[arg-type]
    service.start(serve_metrics=False)
    try:
        yield service
    finally:
        service.stop(5)


def ingest_config(bootstrap: str, topic: str, **overrides: object) -> IngestConfig:
    """A config for tests: the given broker and topic, free ports, fast reconnects."""
    base = IngestConfig(
        kafka_bootstrap=bootstrap,
        topic=topic,
        grpc_port=0,
        metrics_port=0,
        reconnect_initial_s=0.1,
        reconnect_max_s=0.5,
        open_timeout_s=5.0,
        read_timeout_s=5.0,
        drop_log_interval_s=1.0,
    )
    return base.with_overrides(**overrides)


def jpeg_of(rgb: object, kind: str = "JPEG") -> bytes:
    """``rgb`` (an HxWx3 or HxW uint8 array) encoded with Pillow."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=kind)  # type: ignore[arg-type]
    return buffer.getvalue()


def astronaut_jpeg() -> bytes:
    """scikit-image's astronaut photo (512x512 RGB) as a JPEG."""
    return jpeg_of(skdata.astronaut())
