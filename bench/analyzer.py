"""Analyzer benchmark: frames/s through the analyzer (topic to topic) vs direct face_pipeline calls.

The cost of the Kafka hop: the same frames, the same batch size, the same run, alternating rounds of

* **baseline**: ``face_pipeline`` called directly with :class:`TritonClient`, in batches of
  ``--batch`` frames, one call after the other (what a client without Kafka would do);
* **analyzer**: an :class:`AnalyzerService` (``--schedule all``, so it calls ``face_pipeline`` too,
  with ``max_batch_frames`` = ``--batch``) in this process, consuming a fresh frames topic and
  producing a fresh analyses topic through a real broker; the time runs from the first frame
  produced to the last analysis read back, so it includes Kafka both ways, protobuf encoding of
  every face and every task, and the commits.

Frames: the generated demo clip (faces from real photos, 640x360), JPEG, the first ``--frames``.
Ratio = median over rounds of (analyzer frames/s / baseline frames/s of the same round); target
>= 0.95 (the hop costs under 5% of the model's own throughput). Triton and Kafka are
``$FACEFLOW_TRITON_URL`` / ``$FACEFLOW_KAFKA_BOOTSTRAP`` if set, else a private runtime started for
the run (``build/triton_repo/cpu`` must exist: ``faceflow models build``).

    .venv/bin/python bench/analyzer.py [--quick]     # --quick: < 5 minutes on 2 cores

Writes bench/results/analyzer.json; the last line printed is ``analyzer: ratio=<x>``.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import benchlib
from kafka import TopicPartition

from faceflow import topics
from faceflow.analyzer.config import AnalyzerConfig
from faceflow.analyzer.service import AnalyzerService
from faceflow.kafka import admin
from faceflow.kafka.clients import make_consumer, make_producer
from faceflow.kafka.headers import message_headers
from faceflow.run.democlip import DEMO, generate_clip
from faceflow.service.triton import TritonClient
from faceflow.v1 import analysis_pb2, frame_pb2

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "analyzer.json"


def clip_frames(count: int) -> list[bytes]:
    clip = generate_clip(DEMO, REPO / "out" / "clips")
    frames: list[bytes] = []
    with av.open(str(clip.video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 2:
                continue  # 5 fps of the 10 fps clip, as ingest samples it by default
            buf = io.BytesIO()
            frame.to_image().save(buf, format="JPEG", quality=85)
            frames.append(buf.getvalue())
            if len(frames) == count:
                break
    return frames


def baseline(client: TritonClient, frames: list[bytes], batch: int) -> tuple[float, int]:
    faces = 0
    started = time.perf_counter()
    for i in range(0, len(frames), batch):
        faces += len(client.pipeline(frames[i : i + batch]).detected)
    return len(frames) / (time.perf_counter() - started), faces


def through_analyzer(
    bootstrap: str, triton: str, frames: list[bytes], batch: int, concurrency: int
) -> tuple[float, int]:
    name = f"bench.analyzer.{uuid.uuid4().hex[:8]}"
    frames_topic, analyses_topic, dlq_topic = f"{name}.frames", f"{name}.analyses", f"{name}.dlq"
    admin.ensure_topics(
        bootstrap,
        [
            topics.TopicSpec(name=frames_topic, partitions=1, configs=topics.FRAMES.configs),
            topics.TopicSpec(name=analyses_topic, partitions=1, configs=topics.ANALYSES.configs),
            topics.FRAMES_DLQ.renamed(dlq_topic),
        ],
    )
    config = AnalyzerConfig(
        kafka_bootstrap=bootstrap,
        triton_url=triton,
        frames_topic=frames_topic,
        analyses_topic=analyses_topic,
        dlq_topic=dlq_topic,
        group_id=name,
        grpc_port=0,
        metrics_port=0,
        schedule="all",  # type: ignore[arg-type]
        max_batch_frames=batch,
        concurrency=concurrency,
        max_wait_ms=5,
        max_pending=max(64, 4 * batch),
    )
    service = AnalyzerService(config)
    service.start()
    try:
        assert service.loop is not None
        deadline = time.monotonic() + 30
        while not service.loop.assignment() and time.monotonic() < deadline:
            time.sleep(0.05)
        producer = make_producer(bootstrap, client_id="bench-frames")
        consumer = make_consumer(bootstrap, group_id=None, client_id="bench-reader")
        consumer.assign([TopicPartition(analyses_topic, 0)])
        consumer.seek_to_beginning()
        started = time.perf_counter()
        for seq, image in enumerate(frames):
            message = frame_pb2.Frame(stream_id="bench", seq=seq, image=image, content_type="image/jpeg")
            message.pts.FromNanoseconds(seq * 200_000_000)
            producer.send(
                frames_topic,
                key=b"bench",
                value=message.SerializeToString(),
                headers=message_headers("faceflow.v1.Frame"),
            )
        producer.flush(60)
        seen: set[int] = set()
        faces = 0
        while len(seen) < len(frames):
            for records in consumer.poll(timeout_ms=200).values():
                for r in records:
                    a = analysis_pb2.FrameAnalysis.FromString(r.value)
                    if a.seq not in seen:
                        seen.add(a.seq)
                        faces += len(a.faces)
            if time.perf_counter() - started > 900:
                raise RuntimeError(f"only {len(seen)} of {len(frames)} analyses within 900 s")
        elapsed = time.perf_counter() - started
        producer.close(5)
        consumer.close()
        return len(frames) / elapsed, faces
    finally:
        service.stop(5)


@contextmanager
def runtime() -> Iterator[tuple[str, str]]:
    kafka, triton = os.environ.get("FACEFLOW_KAFKA_BOOTSTRAP"), os.environ.get("FACEFLOW_TRITON_URL")
    if kafka and triton:
        yield kafka, triton
        return
    print("starting a private runtime", flush=True)
    with benchlib.private_runtime(
        model_repository=(REPO / "build" / "triton_repo" / "cpu").absolute(),
        external_kafka=kafka or None,
        external_triton=triton or None,
    ) as settings:
        print(f"runtime: Kafka {settings.kafka_bootstrap}, Triton {settings.triton_grpc_url}", flush=True)
        yield settings.kafka_bootstrap, settings.triton_grpc_url


def main(argv: list[str] | None = None) -> int:
    benchlib.stop_on_sigterm()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 30 frames (< 5 minutes)")
    parser.add_argument("--frames", type=int, help="frames per round (default 60, --quick 30)")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 3, --quick 2)")
    parser.add_argument(
        "--batch", type=int, default=4, help="frames per Triton call on both sides (default 4)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="the analyzer's Triton calls in flight (default 1)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    count = args.frames or (30 if args.quick else 60)
    rounds = args.rounds or (2 if args.quick else 3)
    frames = clip_frames(count)
    print(f"{len(frames)} frames of the demo clip, batch {args.batch}, {rounds} rounds")
    with runtime() as (bootstrap, triton):
        client = TritonClient(triton, timeout_s=600)
        # Warm-up, not counted: Triton's first calls at this batch size and a first analyzer
        # (imports, topic creation, group join) are slower than steady state.
        baseline(client, frames[: 2 * args.batch], args.batch)
        through_analyzer(bootstrap, triton, frames[: 2 * args.batch], args.batch, args.concurrency)
        base_fps: list[float] = []
        hop_fps: list[float] = []
        ratios: list[float] = []
        faces = 0
        for r in range(rounds):
            b, faces = baseline(client, frames, args.batch)
            a, hop_faces = through_analyzer(bootstrap, triton, frames, args.batch, args.concurrency)
            if hop_faces != faces:
                raise RuntimeError(f"the analyzer saw {hop_faces} faces, direct calls {faces}")
            base_fps.append(b)
            hop_fps.append(a)
            ratios.append(a / b)
            print(
                f"round {r + 1}: direct {b:.2f} frames/s, through the analyzer {a:.2f} frames/s, "
                f"ratio {a / b:.3f} ({faces} faces)",
                flush=True,
            )
        client.close()
    ratio = statistics.median(ratios)
    benchlib.write_results(
        RESULTS,
        {
            "benchmark": "analyzer",
            "ratio": round(ratio, 4),
            "target": 0.95,
            "frames": len(frames),
            "faces_per_round": faces,
            "batch": args.batch,
            "concurrency": args.concurrency,
            "direct_fps": [round(x, 3) for x in base_fps],
            "analyzer_fps": [round(x, 3) for x in hop_fps],
            "ratio_rounds": [round(x, 4) for x in ratios],
            "machine": benchlib.machine(),
        },
    )
    print(f"analyzer: ratio={ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
