"""Helpers for the analyzer's tests against the real broker and Triton (tests/ is on the pythonpath)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from kafka import TopicPartition
from PIL import Image
from skimage import data as skdata

from faceflow import topics
from faceflow.kafka import admin
from faceflow.kafka.clients import make_consumer, make_producer
from faceflow.kafka.headers import TraceParent, message_headers
from faceflow.v1 import analysis_pb2, frame_pb2

REPO = Path(__file__).resolve().parents[1]
FACEFLOW = str(Path(sys.executable).parent / "faceflow")


@dataclass(frozen=True)
class Topics:
    frames: str
    analyses: str
    dlq: str


def make_topics(bootstrap: str, name: str, *, partitions: int = 3) -> Topics:
    t = Topics(frames=f"{name}.frames", analyses=f"{name}.analyses", dlq=f"{name}.dlq")
    specs = [
        topics.TopicSpec(name=t.frames, partitions=partitions, configs=topics.FRAMES.configs),
        topics.TopicSpec(name=t.analyses, partitions=partitions, configs=topics.ANALYSES.configs),
        topics.FRAMES_DLQ.renamed(t.dlq),
    ]
    admin.ensure_topics(bootstrap, specs)
    return t


def jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


#: A small picture with no face (cheap to analyze) and one with a face (the astronaut).
BLANK = jpeg(np.full((64, 96, 3), 120, np.uint8))
FACE = jpeg(np.asarray(Image.fromarray(skdata.astronaut()).resize((256, 256))))


def frame_message(
    stream: str, seq: int, image: bytes, *, eos: bool = False, shot: int = 0
) -> frame_pb2.Frame:
    f = frame_pb2.Frame(
        stream_id=stream,
        seq=seq,
        image=b"" if eos else image,
        content_type="image/jpeg",
        width=96,
        height=64,
        end_of_stream=eos,
        source_uri="test",
        shot_start_seq=shot,
    )
    f.pts.FromNanoseconds(seq * 200_000_000)
    f.capture_time.FromNanoseconds(time.time_ns())
    return f


def produce_frames(
    bootstrap: str,
    topic: str,
    streams: Iterable[str],
    count: int,
    *,
    image: Callable[[str, int], bytes] = lambda _s, _i: BLANK,
    start: int = 0,
    eos: bool = False,
    shot: Callable[[str, int], int] = lambda _s, _i: 0,
) -> set[tuple[str, int]]:
    """``count`` frames per stream (seq start..start+count-1), plus an end marker when ``eos``;
    ``shot(stream, seq)`` is each frame's ``shot_start_seq``."""
    sent: set[tuple[str, int]] = set()
    producer = make_producer(bootstrap, client_id="test-frames")
    try:
        for seq in range(start, start + count + (1 if eos else 0)):
            for stream in streams:
                last = eos and seq == start + count
                message = frame_message(stream, seq, image(stream, seq), eos=last, shot=shot(stream, seq))
                producer.send(
                    topic,
                    key=stream.encode(),
                    value=message.SerializeToString(),
                    headers=message_headers("faceflow.v1.Frame", TraceParent.new()),
                )
                sent.add((stream, seq))
        producer.flush(30)
    finally:
        producer.close(5)
    return sent


def read_all(
    bootstrap: str, topic: str, *, until: Callable[[list[object]], bool], timeout_s: float = 120
) -> list:
    """Every record of ``topic`` from the start, until ``until(records)`` or the timeout."""
    got: list = []
    with closing(make_consumer(bootstrap, group_id=None, client_id="test-reader")) as consumer:
        deadline = time.monotonic() + 10
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions or [])])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while not until(got) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                got.extend(batch)
    return got


def analyses_of(records: list) -> list[analysis_pb2.FrameAnalysis]:
    return [analysis_pb2.FrameAnalysis.FromString(r.value) for r in records]


def keys_of(records: list) -> list[tuple[str, int]]:
    return [(a.stream_id, a.seq) for a in analyses_of(records)]


def covers(expected: set[tuple[str, int]]) -> Callable[[list], bool]:
    return lambda records: expected <= set(keys_of(records))


class AnalyzerProcess:
    """A real ``faceflow analyzer`` process with its log in ``log``."""

    def __init__(
        self, bootstrap: str, triton_url: str, t: Topics, group: str, log: Path, *extra: str
    ) -> None:
        self.log = log
        env = dict(os.environ, FACEFLOW_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [
                FACEFLOW, "--log-level", "INFO", "analyzer",
                "--kafka-bootstrap", bootstrap, "--triton-url", triton_url,
                "--frames-topic", t.frames, "--analyses-topic", t.analyses, "--dlq-topic", t.dlq,
                "--group-id", group, "--grpc-port", "0", "--metrics-port", "0", "--max-wait-ms", "20",
                *extra,
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip

    def wait_started(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"analyzer exited with {self.proc.returncode}:\n{self.tail()}")
            if "assigned" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise AssertionError(f"analyzer got no partitions within {timeout_s} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = 15, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout_s)
