"""Tracker benchmark: ``StreamTracker.update()`` time against faces per frame, vs a naive matcher.

For each number of faces per frame (1, 5, 10, 20, 50, 100, 200) a seeded synthetic scene is
generated: faces of 40-120 px walk at up to 150 px/s (8 fps) over a canvas that grows with the
crowd (constant density), bounce off its edges, cross each other, are missed by the "detector"
3% of the time, and are replaced by newcomers 1% of the time (so tracks start, get lost and end).
Two variants: no embeddings, and a dlib-like embedding on 20% of the observations.

In the same run and on the same frames:

* **tracker**: a fresh :class:`~faceflow.core.tracking.StreamTracker` (default config) per round,
  each ``update()`` timed alone (``perf_counter_ns``, GC off); the first 10 frames are warm-up;
* **naive**: a pure-Python greedy matcher written here (IoU of every track-face pair in Python
  loops, pairs sorted by IoU, greedily assigned, new ids for the rest): what a first version in
  plain Python would be, to show what vectorising buys.

Per size: median and p90 ms per update and per face (a frame's time / its faces), the naive
matcher's figures, their ratio, and the tracker's IDF1 against the scene's ground truth
(:func:`faceflow.core.evaluation.evaluate`). The headline is the target 0.2 ms per face at 50
faces: ``ratio = 0.2 / (median ms per face at 50 faces)``, the worse of the two variants; above 1
meets it.

    .venv/bin/python bench/tracker.py [--quick]      # --quick: < 1 minute on 2 busy cores

Writes bench/results/tracker.json; the last line printed is ``tracker: ratio=<x>``. Sections
(``SECTIONS``) each return a dict merged into the JSON, so more can be added before that line.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

import benchlib
import numpy as np

from faceflow.core.evaluation import EvalFrame, evaluate
from faceflow.core.tracking import Observation, StreamTracker, TrackerConfig
from faceflow.models.contract import IDENTITY_DIM

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "tracker.json"
SIZES: Final = (1, 5, 10, 20, 50, 100, 200)
HEADLINE_FACES: Final = 50
TARGET_MS_PER_FACE: Final = 0.2
FPS: Final = 8.0
WARMUP: Final = 10
EMBED_SHARE: Final = 0.2
IDF1_FRAMES: Final = 150

Box = tuple[float, float, float, float]


@dataclass
class Scene:
    """Pre-built frames: the tracker's observations, the same boxes as tuples, and the truth."""

    observations: list[list[Observation]]
    boxes: list[list[Box]]
    truth: list[list[str]]


def make_scene(n_faces: int, n_frames: int, embed_share: float, seed: int) -> Scene:
    """Seeded walkers at constant density; see the module docstring.

    The geometry depends on ``seed`` only; embeddings come from a second generator, so both
    variants of a size see the very same boxes.
    """
    rng = np.random.default_rng(seed)
    emb_rng = np.random.default_rng(seed + 10_000)
    scale = max(1.0, math.sqrt(n_faces / 20.0))
    width, height = 1920.0 * scale, 1080.0 * scale
    persons = rng.standard_normal((n_faces * 4 + 16, IDENTITY_DIM)) * 0.6 / math.sqrt(IDENTITY_DIM)
    pos = rng.uniform((0, 0), (width, height), (n_faces, 2))
    vel = rng.uniform(-150, 150, (n_faces, 2))
    size = rng.uniform(40, 120, n_faces)
    who = np.arange(n_faces)
    next_person = n_faces
    scene = Scene([], [], [])
    for _ in range(n_frames):
        vel += rng.normal(0, 15, vel.shape)  # people change pace and direction gradually
        np.clip(vel, -150, 150, out=vel)
        pos += vel / FPS + rng.normal(0, 1.5, pos.shape)
        # Someone walks out of the picture (or leaves at random): a newcomer walks in at an edge.
        gone = (pos < 0).any(axis=1) | (pos > (width, height)).any(axis=1) | (rng.random(n_faces) < 0.01)
        for i in np.flatnonzero(gone):
            side = int(rng.integers(4))
            pos[i] = rng.uniform((0, 0), (width, height))
            pos[i, side % 2] = 0.0 if side < 2 else (width, height)[side % 2]
            vel[i] = rng.uniform(-150, 150, 2)
            vel[i, side % 2] = abs(vel[i, side % 2]) * (1 if side < 2 else -1)  # inwards
            size[i] = rng.uniform(40, 120)
            who[i] = next_person % len(persons)
            next_person += 1
        frame: list[Observation] = []
        boxes: list[Box] = []
        truth: list[str] = []
        for i in np.flatnonzero(rng.random(n_faces) > 0.03):  # the detector misses 3% of faces
            half = size[i] / 2
            jitter = rng.normal(0, 1.5, 4)
            b: Box = (
                float(pos[i, 0] - half + jitter[0]),
                float(pos[i, 1] - half + jitter[1]),
                float(pos[i, 0] + half + jitter[2]),
                float(pos[i, 1] + half + jitter[3]),
            )
            score = float(rng.uniform(0.45, 1.0))
            quality = float(rng.uniform(0.3, 1.0))
            emb = None
            if emb_rng.random() < embed_share:
                emb = persons[who[i]] + emb_rng.standard_normal(IDENTITY_DIM) * 0.15 / math.sqrt(IDENTITY_DIM)
            frame.append(Observation.create(len(frame), b, score, quality, emb))
            boxes.append(b)
            truth.append(f"p{who[i]}")
        scene.observations.append(frame)
        scene.boxes.append(boxes)
        scene.truth.append(truth)
    return scene


def _py_iou(a: Box, b: Box) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class NaiveTracker:
    """The baseline: pure-Python per-pair IoU, greedy matching, tracks kept ``max_age`` frames."""

    def __init__(self, iou_gate: float = 0.2, max_age: int = 16) -> None:
        self.iou_gate = iou_gate
        self.max_age = max_age
        self.tracks: dict[int, tuple[Box, int]] = {}
        self.next_id = 1

    def update(self, boxes: list[Box]) -> list[int]:
        pairs = []
        for tid, (tbox, _) in self.tracks.items():
            for j, b in enumerate(boxes):
                v = _py_iou(tbox, b)
                if v >= self.iou_gate:
                    pairs.append((-v, tid, j))
        pairs.sort()
        out = [0] * len(boxes)
        used: set[int] = set()
        for _, tid, j in pairs:
            if tid in used or out[j]:
                continue
            used.add(tid)
            out[j] = tid
        for j, b in enumerate(boxes):
            if not out[j]:
                out[j] = self.next_id
                self.next_id += 1
            self.tracks[out[j]] = (b, 0)
        for tid, (tbox, age) in list(self.tracks.items()):
            if tid not in out:
                if age + 1 > self.max_age:
                    del self.tracks[tid]
                else:
                    self.tracks[tid] = (tbox, age + 1)
        return out


def _timed(update: Callable[[int], object], n_frames: int) -> list[int]:
    """ns of each call ``update(k)`` for k in range(n_frames), with the GC off."""
    times = []
    gc.collect()
    gc.disable()
    try:
        for k in range(n_frames):
            t0 = time.perf_counter_ns()
            update(k)
            times.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    return times


def _stats(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=10) if len(ms) >= 2 else [ms[0]] * 9
    return {"median": round(statistics.median(ms), 5), "p90": round(q[8], 5)}


def _run_tracker(scene: Scene) -> tuple[list[int], list[tuple[str, ...]]]:
    tracker = StreamTracker(TrackerConfig())
    assignments: list[tuple[str, ...]] = []

    def step(k: int) -> None:
        assignments.append(tracker.update(scene.observations[k], t=k / FPS, seq=k).assignments)

    return _timed(step, len(scene.observations)), assignments


def _idf1(scene: Scene, assignments: list[tuple[str, ...]], n_frames: int) -> float:
    frames = [
        EvalFrame(
            key=k,
            gt=list(zip(scene.truth[k], scene.boxes[k], strict=True)),
            hyp=list(zip(assignments[k], scene.boxes[k], strict=True)),
        )
        for k in range(min(n_frames, len(assignments)))
    ]
    return evaluate(frames).idf1


def section_tracker(args: argparse.Namespace) -> dict[str, Any]:
    """StreamTracker.update() vs faces per frame, both variants, against the naive matcher."""
    n_frames = args.frames or (150 if args.quick else 400)
    rounds = args.rounds or (1 if args.quick else 3)
    sizes: dict[str, Any] = {}
    for n in SIZES:
        row: dict[str, Any] = {"faces": n, "frames": n_frames, "rounds": rounds}
        scenes = {
            "no_embeddings": make_scene(n, n_frames + WARMUP, 0.0, seed=n),
            "embeddings_20pct": make_scene(n, n_frames + WARMUP, EMBED_SHARE, seed=n),
        }
        naive_ms: list[float] = []
        naive_face: list[float] = []
        per_variant: dict[str, dict[str, list[float]]] = {v: {"ms": [], "face": []} for v in scenes}
        idf1: dict[str, float] = {}
        for _ in range(rounds):
            for variant, scene in scenes.items():
                times, assignments = _run_tracker(scene)
                for k, ns in list(enumerate(times))[WARMUP:]:
                    faces = max(len(scene.observations[k]), 1)
                    per_variant[variant]["ms"].append(ns / 1e6)
                    per_variant[variant]["face"].append(ns / 1e6 / faces)
                if variant not in idf1:
                    idf1[variant] = round(_idf1(scene, assignments, IDF1_FRAMES), 4)
            scene = scenes["no_embeddings"]
            naive = NaiveTracker()
            boxes = scene.boxes
            times = _timed(lambda k: naive.update(boxes[k]), len(boxes))  # noqa: B023 (runs now)
            for k, ns in list(enumerate(times))[WARMUP:]:
                naive_ms.append(ns / 1e6)
                naive_face.append(ns / 1e6 / max(len(scene.boxes[k]), 1))
        naive_stats = {"ms_per_update": _stats(naive_ms), "ms_per_face": _stats(naive_face)}
        row["naive"] = naive_stats
        for variant, values in per_variant.items():
            stats: dict[str, Any] = {
                "ms_per_update": _stats(values["ms"]),
                "ms_per_face": _stats(values["face"]),
            }
            stats["speedup_vs_naive"] = round(
                naive_stats["ms_per_update"]["median"] / stats["ms_per_update"]["median"], 3
            )
            stats["idf1"] = idf1[variant]
            row[variant] = stats
        sizes[str(n)] = row
        print(
            f"{n:4d} faces: tracker {row['no_embeddings']['ms_per_update']['median']:8.3f} ms/update "
            f"({row['no_embeddings']['ms_per_face']['median']:.4f} ms/face), with 20% embeddings "
            f"{row['embeddings_20pct']['ms_per_update']['median']:8.3f} ms "
            f"({row['embeddings_20pct']['ms_per_face']['median']:.4f} ms/face); naive "
            f"{naive_stats['ms_per_update']['median']:8.3f} ms "
            f"(x{row['no_embeddings']['speedup_vs_naive']:.1f}); "
            f"IDF1 {idf1['no_embeddings']:.3f} / {idf1['embeddings_20pct']:.3f}",
            flush=True,
        )
    head = sizes[str(HEADLINE_FACES)]
    worst = max(head[v]["ms_per_face"]["median"] for v in ("no_embeddings", "embeddings_20pct"))
    ratio = TARGET_MS_PER_FACE / worst
    return {
        "tracker": {
            "ratio": ratio,
            "target_ms_per_face": TARGET_MS_PER_FACE,
            "headline_faces": HEADLINE_FACES,
            "headline_ms_per_face": worst,
            "fps": FPS,
            "warmup_frames": WARMUP,
            "sizes": sizes,
        }
    }


Section = Callable[[argparse.Namespace], dict[str, Any]]
#: (title, section): each returns a dict merged into the JSON. The headline comes from "tracker".
SECTIONS: list[tuple[str, Section]] = [("StreamTracker.update", section_tracker)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and one round (< 1 minute)")
    parser.add_argument("--frames", type=int, help="measured frames per size (default 60 quick, 300 full)")
    parser.add_argument("--rounds", type=int, help="rounds per size (default 1 quick, 3 full)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for title, section in SECTIONS:
        print(f"== {title}", flush=True)
        results.update(section(args))
    ratio = float(results["tracker"]["ratio"])
    payload = {
        "benchmark": "tracker",
        "quick": args.quick,
        "ratio": round(ratio, 4),
        "seconds": round(time.perf_counter() - started, 1),
        **results,
        "machine": benchlib.machine(
            numpy=version("numpy"), scipy=version("scipy"), processor=platform.processor()
        ),
    }
    benchlib.write_results(RESULTS, payload)
    print(f"tracker: ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
