"""Helpers for the aggregator's tests: synthetic analyses, topics, a running service, a gRPC stub."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import grpc
import numpy as np

from faceflow import topics
from faceflow.aggregator.config import AggregatorConfig
from faceflow.aggregator.service import AggregatorService
from faceflow.kafka import admin
from faceflow.kafka.clients import make_producer
from faceflow.kafka.headers import TraceParent, message_headers
from faceflow.models.contract import AGE_BINS, ATTRIBUTES, GENDERS, RACES, VISIBILITY_POINTS
from faceflow.v1 import aggregator_pb2_grpc, analysis_pb2, common_pb2

TIMEOUT = 30
RNG = np.random.default_rng(11)
PEOPLE = {
    name: (RNG.standard_normal(128) * 0.09).astype(np.float32) for name in ("ann", "bob", "cy", "dee", "eve")
}


@dataclass(frozen=True)
class AggTopics:
    analyses: str
    faces: str
    state: str
    identities: str
    dlq: str
    audit: str


def make_topics(bootstrap: str, name: str, *, partitions: int = 3, compact_fast: bool = False) -> AggTopics:
    t = AggTopics(
        *(f"{name}.{kind}" for kind in ("analyses", "faces", "state", "identities", "dlq", "audit"))
    )
    identities = topics.IDENTITIES.renamed(t.identities)
    state = topics.AGGREGATOR_STATE.renamed(t.state)
    if compact_fast:  # an overwritten record disappears within seconds, not within the hour
        fast = {"segment.ms": "500", "delete.retention.ms": "500", "min.cleanable.dirty.ratio": "0.01"}
        identities = replace(identities, configs=dict(identities.configs) | fast)
        state = replace(state, configs=dict(state.configs) | fast)
    admin.ensure_topics(
        bootstrap,
        [
            topics.TopicSpec(name=t.analyses, partitions=partitions, configs=topics.ANALYSES.configs),
            topics.TopicSpec(name=t.faces, partitions=partitions, configs=topics.FACES.configs),
            replace(state, partitions=partitions),
            identities,
            topics.FRAMES_DLQ.renamed(t.dlq),
            topics.IDENTITIES_AUDIT.renamed(t.audit),
        ],
    )
    return t


def config(
    bootstrap: str, triton_url: str, t: AggTopics, group: str, **overrides: object
) -> AggregatorConfig:
    base = AggregatorConfig(
        kafka_bootstrap=bootstrap,
        triton_url=triton_url,
        analyses_topic=t.analyses,
        faces_topic=t.faces,
        state_topic=t.state,
        identities_topic=t.identities,
        dlq_topic=t.dlq,
        audit_topic=t.audit,
        group_id=group,
        grpc_port=0,
        metrics_port=0,
        checkpoint_frames=5,
    )
    return base.with_overrides(**overrides)


def face(
    person: str, x: float, seq: int, *, analyzed: bool, index: int = 0, results_seq: int | None = None
) -> analysis_pb2.FaceAnalysis:
    """A face of ``person`` whose box starts at ``x`` (analyzed: with tasks and an embedding)."""
    f = analysis_pb2.FaceAnalysis(
        face_index=index,
        box=common_pb2.BoundingBox(x1=x, y1=40, x2=x + 100, y2=160),
        score=0.95,
        keypoints5=[
            common_pb2.Point(x=x + 30, y=80),
            common_pb2.Point(x=x + 70, y=80),
            common_pb2.Point(x=x + 50, y=105),
            common_pb2.Point(x=x + 35, y=130),
            common_pb2.Point(x=x + 65, y=130),
        ],
        analyzed=analyzed,
        results_seq=seq if results_seq is None else results_seq,
    )
    if analyzed:
        noise = np.random.default_rng(seq * 100 + index).standard_normal(128).astype(np.float32) * 0.01
        f.landmarks68.extend(common_pb2.Point(x=x + 50, y=100) for _ in range(68))
        f.head_pose.CopyFrom(common_pb2.HeadPose(pitch=0.0, yaw=0.05, roll=0.0))
        f.attributes.extend([0.2] * len(ATTRIBUTES))
        f.visibility.extend([0.1] * len(VISIBILITY_POINTS))
        age = [0.02] * len(AGE_BINS)
        age[3] = 1 - 0.02 * (len(AGE_BINS) - 1)
        f.age.extend(age)
        f.gender.extend([0.7, 0.3][: len(GENDERS)])
        f.race.extend([1 / len(RACES)] * len(RACES))
        f.embedding.extend((PEOPLE[person] + noise).tolist())
    return f


def analysis(
    stream: str, seq: int, faces: Sequence[analysis_pb2.FaceAnalysis], *, eos: bool = False, fps: float = 5.0
) -> analysis_pb2.FrameAnalysis:
    a = analysis_pb2.FrameAnalysis(
        stream_id=stream, seq=seq, faces=list(faces), end_of_stream=eos, schedule="adaptive"
    )
    a.pts.FromNanoseconds(round(seq / fps * 1e9))
    a.capture_time.FromNanoseconds(time.time_ns())
    a.models.append(common_pb2.ModelInfo(name="facexformer", weights="random-init", random_init=True))
    return a


def walking(
    stream: str, person: str, seqs: range, *, every: int = 5, x0: float = 10.0
) -> list[analysis_pb2.FrameAnalysis]:
    """``person`` walking right 4 px per frame, analyzed every ``every`` frames (as the analyzer's
    adaptive schedule does: a skipped face names the seq of its last analysis)."""
    out = []
    for s in seqs:
        k = s - seqs.start
        last = seqs.start + (k // every) * every
        out.append(
            analysis(stream, s, [face(person, x0 + 4 * k, s, analyzed=k % every == 0, results_seq=last)])
        )
    return out


def produce(bootstrap: str, topic: str, messages: Sequence[analysis_pb2.FrameAnalysis]) -> None:
    producer = make_producer(bootstrap, client_id="test-analyses")
    try:
        for m in messages:
            producer.send(
                topic,
                key=m.stream_id.encode(),
                value=m.SerializeToString(),
                headers=message_headers("faceflow.v1.FrameAnalysis", TraceParent.new()),
            )
        producer.flush(30)
    finally:
        producer.close(5)


@contextmanager
def running(cfg: AggregatorConfig) -> Iterator[tuple[AggregatorService, aggregator_pb2_grpc.AggregatorStub]]:
    service = AggregatorService(cfg)
    service.start()
    assert service.server is not None and service.loop is not None
    channel = grpc.insecure_channel(f"127.0.0.1:{service.server.port}")
    try:
        deadline = time.monotonic() + 30
        while not service.loop.assignment() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield service, aggregator_pb2_grpc.AggregatorStub(channel)
    finally:
        channel.close()
        service.stop(5)


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"
