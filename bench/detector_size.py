"""Detector input size: CenterFace's recall on the real-footage set and its time per frame, by size.

``faceflow models build --detector-size N`` sets the longest side of the picture CenterFace sees
(``detect_max_side``; a larger frame is downscaled for detection, boxes come back in frame
pixels; a smaller one is never upscaled). This measures what a smaller size costs in recall and
buys in time, in the same run, on every labelled frame of ``eval/`` (272 frames, 628 faces):

* the detector is :class:`~faceflow.models.centerface.CenterFaceDetector` on onnxruntime, with the
  session options the served model uses (:func:`faceflow.models.threads.session_options`),
  threshold and NMS at the contract's defaults (what ``models build`` serves), one frame per call;
* **recall** at IoU 0.5: labelled faces matched one-to-one by a detection, overall, per clip and by
  face width (< 24 px, 24-48 px, >= 48 px); **precision**: detections that match a labelled face;
* **time per frame**: the median over rounds of the mean ``detect()`` time (decode excluded), the
  sizes taking turns within each round so that other load on a shared machine hits them alike.

``ratio`` = default size's ms per frame / the second size's (``--sizes``, default 320): how much
faster the smaller input is; its recall is printed on the line before. Caveats, printed too: the
clips are 480x270, so the default (1280) runs them at full size; and the ground truth was made from
CenterFace's own proposals (threshold 0.2, full size) labelled by a person, so it favours the
default size's boxes.

    .venv/bin/python bench/detector_size.py [--quick] [--sizes 1280,320,240]

Writes bench/results/detector_size.json; the last line printed is ``detector_size: ratio=<x>``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

import benchlib
import numpy as np
from evalset import MANIFEST, LabelledFrame, labelled_frames

from faceflow.models.agreement import detection_recall
from faceflow.models.centerface import CenterFaceDetector
from faceflow.models.contract import CENTERFACE_SIZE_MULTIPLE, DETECT_MAX_SIDE, DETECTOR_THRESHOLD
from faceflow.models.threads import intra_op_threads

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "detector_size.json"
DEFAULT_SIZES: Final = (DETECT_MAX_SIDE, 320, 240)
IOU: Final = 0.5
#: Face-width buckets, px: (name, lower bound inclusive, upper bound exclusive).
WIDTHS: Final = (("<24px", 0.0, 24.0), ("24-48px", 24.0, 48.0), (">=48px", 48.0, float("inf")))


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1280,320,240, got {text!r}") from None
    if len(sizes) < 2 or any(s < CENTERFACE_SIZE_MULTIPLE for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected at least two sizes, each >= {CENTERFACE_SIZE_MULTIPLE}, got {text!r}"
        )
    return sizes


def input_dims(frame: LabelledFrame, size: int) -> tuple[int, int]:
    """The picture CenterFace sees at ``size``, before padding to multiples of 32 (width, height)."""
    h, w = frame.rgb.shape[:2]
    s = min(1.0, size / max(h, w))
    return max(1, round(w * s)), max(1, round(h * s))


def score(frames: list[LabelledFrame], boxes: list[np.ndarray]) -> dict[str, Any]:
    """Recall (overall, per clip, per face width) and precision of one size's detections."""
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # key -> [matched, total]
    detections = matched_detections = 0
    for frame, det in zip(frames, boxes, strict=True):
        matched, per_face = detection_recall(frame.boxes, det, iou_threshold=IOU)
        detections += len(det)
        matched_detections += matched
        widths = frame.boxes[:, 2] - frame.boxes[:, 0]
        for hit, width in zip(per_face, widths, strict=True):
            bucket = next(name for name, lo, hi in WIDTHS if lo <= width < hi)
            for key in ("all", f"clip:{frame.clip}", f"width:{bucket}"):
                found[key][0] += int(hit)
                found[key][1] += 1
    recall = {k: {"recall": round(m / t, 4), "found": m, "faces": t} for k, (m, t) in sorted(found.items())}
    return {
        "recall": recall,
        "detections": detections,
        "precision": round(matched_detections / detections, 4) if detections else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every 2nd frame, 2 rounds (< 1 minute)")
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=DEFAULT_SIZES,
        help="longest sides to measure, the first is the baseline "
        f"(default {','.join(map(str, DEFAULT_SIZES))})",
    )
    parser.add_argument("--rounds", type=int, help="timed rounds (default 2 quick, 3 full)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: as served)")
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rounds = args.rounds or (2 if args.quick else 3)
    started = time.perf_counter()
    frames = list(labelled_frames(args.manifest, every=2 if args.quick else 1))
    print(f"{len(frames)} labelled frames, {sum(len(f.boxes) for f in frames)} faces from {args.manifest}")
    threads = intra_op_threads(args.threads)
    detectors = {s: CenterFaceDetector(max_side=s, intra_op_threads=threads) for s in args.sizes}
    boxes: dict[int, list[np.ndarray]] = {}
    for size, det in detectors.items():  # also the warm-up
        boxes[size] = [det.detect(f.rgb).boxes for f in frames]
    per_round: dict[int, list[float]] = {s: [] for s in args.sizes}
    for r in range(rounds):
        order = args.sizes if r % 2 == 0 else args.sizes[::-1]
        spent = dict.fromkeys(args.sizes, 0.0)
        for frame in frames:
            for size in order:
                t0 = time.perf_counter()
                detectors[size].detect(frame.rgb)
                spent[size] += time.perf_counter() - t0
        for size in args.sizes:
            per_round[size].append(spent[size] / len(frames) * 1e3)
    base = args.sizes[0]
    results: dict[str, Any] = {}
    for size in args.sizes:
        dims = sorted({input_dims(f, size) for f in frames})
        ms = statistics.median(per_round[size])
        results[str(size)] = {
            "detect_max_side": size,
            "input_dims": [f"{w}x{h}" for w, h in dims],
            "ms_per_frame": round(ms, 2),
            "ms_per_frame_rounds": [round(x, 2) for x in per_round[size]],
            "speedup_vs_default": round(statistics.median(per_round[base]) / ms, 3),
            **score(frames, boxes[size]),
        }
    print(f"\n{'size':>6} {'input':>10} {'ms/frame':>9} {'speedup':>8} {'recall':>7} "
          f"{'<24px':>6} {'24-48':>6} {'>=48':>6} {'precision':>9}")  # fmt: skip
    for size in args.sizes:
        r = results[str(size)]
        rec = r["recall"]
        print(
            f"{size:>6} {','.join(r['input_dims']):>10} {r['ms_per_frame']:>9.1f} "
            f"{r['speedup_vs_default']:>8.2f} {rec['all']['recall']:>7.3f} "
            + " ".join(f"{rec.get(f'width:{b}', {}).get('recall', float('nan')):>6.3f}" for b, _, _ in WIDTHS)
            + f" {r['precision'] or float('nan'):>9.3f}"
        )
    print("per clip recall: " + "; ".join(
        f"{size}: " + ", ".join(f"{k[5:]} {v['recall']:.3f}" for k, v in results[str(size)]["recall"].items()
                                if k.startswith("clip:"))
        for size in args.sizes
    ))  # fmt: skip
    note = (
        "caveats: the eval clips are 480x270, so the default size runs them at full size; the ground "
        "truth was made from CenterFace's own full-size proposals (threshold 0.2), so it favours the "
        "default size's boxes. Shared machine: timings move with other load."
    )
    print(note)
    second = args.sizes[1]
    ratio = results[str(second)]["speedup_vs_default"]
    payload = {
        "benchmark": "detector_size",
        "quick": args.quick,
        "ratio": ratio,
        "ratio_means": f"ms per frame at {base} / at {second}",
        "seconds": round(time.perf_counter() - started, 1),
        "frames": len(frames),
        "faces": sum(len(f.boxes) for f in frames),
        "iou_threshold": IOU,
        "detector_threshold": DETECTOR_THRESHOLD,
        "intra_op_threads": threads,
        "rounds": rounds,
        "sizes": results,
        "note": note,
        "machine": benchlib.machine(onnxruntime=version("onnxruntime")),
    }
    benchlib.write_results(RESULTS, payload)
    recall = {s: results[str(s)]["recall"]["all"]["recall"] for s in (base, second)}
    print(f"{second} px vs {base} px: {ratio:.2f}x faster, recall {recall[second]:.3f} vs {recall[base]:.3f}")
    print(f"detector_size: ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
