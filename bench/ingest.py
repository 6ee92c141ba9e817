"""Ingest benchmark: frames/s of the ingest service through a real broker vs the same loop without Kafka.

For each size (640x360 and 1280x720) a clip is generated with PyAV (H.264, 25 fps, scikit-image's
astronaut photo panning across the picture, so the JPEGs have real texture). Then, in the same run
and on the same frames, alternating rounds of:

* **baseline**: decode (PyAV) -> sample (FpsSampler) -> bound + JPEG (encode_frame), in one loop,
  no Kafka;
* **ingest**: the ingest service itself (:class:`IngestService` with its decode thread, bounded
  queue and Kafka producer, ``acks=all``, idempotent, lz4) pulling the clip as a source into a
  fresh frames topic; the time runs from ``start_source`` until the source is ``ENDED``, i.e. until
  the broker has acknowledged every frame and the end-of-stream marker.

Every frame is kept (target fps 0), so both paths do the same work per frame. Each round runs
the baseline and then the service on the same clip, and gives a paired ratio (service frames/s /
baseline frames/s), so that load from other processes drifting during the run cancels out. A
size's ratio is the median of its rounds; the result is the worse of the two sizes.
The broker is ``$FACEFLOW_KAFKA_BOOTSTRAP`` if set, else a private one started for the run.

    .venv/bin/python bench/ingest.py [--quick]      # --quick: < 3 minutes on 2 cores

Writes bench/results/ingest.json; the last line printed is ``ingest: ratio=<x>``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import benchlib
import numpy as np
from PIL import Image
from skimage import data as skdata

from faceflow import topics
from faceflow.ingest.config import IngestConfig
from faceflow.ingest.encode import EncodeSettings, encode_frame
from faceflow.ingest.reconnect import SeqCounter
from faceflow.ingest.runner import SourceState
from faceflow.ingest.sampling import FpsSampler
from faceflow.ingest.service import IngestService
from faceflow.ingest.sources import VideoSource
from faceflow.kafka import admin

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "ingest.json"
SIZES = ((640, 360), (1280, 720))
FPS = 25
QUALITY = 85


def make_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """H.264 at 25 fps: the astronaut photo, scaled to cover the frame, panning 4 px per frame."""
    photo = Image.fromarray(skdata.astronaut())
    side = max(width, height) + 4 * frames
    big = np.asarray(photo.resize((side, side), Image.Resampling.BILINEAR))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            x = 4 * i
            rgb = np.ascontiguousarray(big[x // 2 : x // 2 + height, x : x + width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def baseline(path: Path) -> tuple[float, int, float]:
    """Decode -> sample -> JPEG with no Kafka: (frames/s, frames, mean JPEG bytes)."""
    settings = EncodeSettings(max_side=None, quality=QUALITY)
    sampler = FpsSampler(0.0)
    seq = SeqCounter()
    sizes = 0
    started = time.perf_counter()
    with VideoSource(path, "bench") as source:
        for frame in sampler.sample(source):
            sizes += len(encode_frame(frame, seq.next(), settings).jpeg)
    elapsed = time.perf_counter() - started
    frames = seq.peek
    return frames / elapsed, frames, sizes / max(frames, 1)


def with_kafka(service: IngestService, path: Path, stream_id: str) -> tuple[float, int, int]:
    """The ingest service pulling ``path`` through the broker: (frames/s, produced, dropped)."""
    config = service.config
    started = time.perf_counter()
    service.start_source(
        config.source(stream_id, str(path), target_fps=0.0, max_side=0, jpeg_quality=QUALITY)
    )
    while service.source(stream_id).state.active:
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    status = service.source(stream_id)
    if status.state is not SourceState.ENDED:
        raise RuntimeError(f"{stream_id}: {status.state}: {status.last_error}")
    return status.frames_produced / elapsed, status.frames_produced, status.frames_dropped


@contextmanager
def broker() -> Iterator[str]:
    external = os.environ.get("FACEFLOW_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    with benchlib.private_runtime(["kafka"]) as settings:
        print(f"started a private Kafka broker at {settings.kafka_bootstrap}", flush=True)
        yield settings.kafka_bootstrap


def main(argv: list[str] | None = None) -> int:
    benchlib.stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and rounds (< 3 minutes)")
    parser.add_argument("--frames", type=int, help="frames per clip (default 300 quick, 1000 full)")
    parser.add_argument("--rounds", type=int, help="paired rounds per size (default 5 quick, 7 full)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    n_frames = args.frames or (300 if args.quick else 1000)
    rounds = args.rounds or (5 if args.quick else 7)
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="faceflow-bench-clips-") as tmp, broker() as bootstrap:
        topic = f"bench.ingest.{uuid.uuid4().hex[:8]}"
        admin.ensure_topics(bootstrap, [topics.FRAMES.renamed(topic)])
        config = IngestConfig(kafka_bootstrap=bootstrap, topic=topic, grpc_port=0, metrics_port=0)
        service = IngestService(config)
        service.start(serve_metrics=False)
        try:
            for width, height in SIZES:
                name = f"{width}x{height}"
                clip = make_clip(Path(tmp) / f"{name}.mp4", width, height, n_frames)
                baseline(clip)  # warm-up: codecs, caches, the producer's connection
                with_kafka(service, clip, f"warmup-{name}")
                base_fps: list[float] = []
                kafka_fps: list[float] = []
                ratios: list[float] = []
                jpeg_bytes = 0.0
                for r in range(rounds):
                    fps, frames, jpeg_bytes = baseline(clip)
                    kfps, produced, dropped = with_kafka(service, clip, f"bench-{name}-{r}")
                    if produced != frames or dropped:
                        raise RuntimeError(
                            f"{name}: produced {produced} of {frames} frames, {dropped} dropped"
                        )
                    base_fps.append(fps)
                    kafka_fps.append(kfps)
                    ratios.append(kfps / fps)
                    print(
                        f"{name} round {r + 1}: baseline {fps:7.1f} frames/s, with Kafka {kfps:7.1f} "
                        f"frames/s, ratio {kfps / fps:.3f}",
                        flush=True,
                    )
                b, k, ratio = (
                    statistics.median(base_fps),
                    statistics.median(kafka_fps),
                    statistics.median(ratios),
                )
                results[name] = {
                    "frames": n_frames,
                    "rounds": rounds,
                    "baseline_fps": round(b, 2),
                    "kafka_fps": round(k, 2),
                    "ratio": round(ratio, 4),
                    "ratio_rounds": [round(x, 4) for x in ratios],
                    "baseline_fps_rounds": [round(x, 2) for x in base_fps],
                    "kafka_fps_rounds": [round(x, 2) for x in kafka_fps],
                    "mean_jpeg_bytes": round(jpeg_bytes),
                }
                print(
                    f"{name}: baseline {b:.1f} frames/s, with Kafka {k:.1f} frames/s (medians), "
                    f"paired ratio {ratio:.3f}",
                    flush=True,
                )
        finally:
            service.stop(10)
            admin.delete_topics(bootstrap, [topic])
    worst = min(results, key=lambda key: float(results[key]["ratio"]))  # type: ignore[arg-type]
    ratio = float(results[worst]["ratio"])  # type: ignore[arg-type]
    benchlib.write_results(
        RESULTS,
        {
            "benchmark": "ingest",
            "quick": args.quick,
            "ratio": ratio,
            "worst_size": worst,
            "target": 0.9,
            "sizes": results,
            "jpeg_quality": QUALITY,
            "broker": "external" if os.environ.get("FACEFLOW_KAFKA_BOOTSTRAP") else "private local broker",
            "machine": benchlib.machine(),
        },
    )
    print(f"ingest: ratio={ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
