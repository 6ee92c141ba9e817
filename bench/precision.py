"""FaceXFormer int8 vs fp32 on this CPU: time per face and agreement per head, on real face crops.

``faceflow models build --precision int8`` serves onnxruntime's dynamic quantization of the
FaceXFormer export (QInt8 weights of MatMul / Gemm) in the cpu repository. This measures, in the
same run, what that buys and what it changes:

* **models**: the fp32 export and its int8 file as ``models build`` writes them (the same code,
  :func:`faceflow.models.build.build_facexformer`, in ``--artifacts``, default ``build/artifacts``:
  an up-to-date export is reused, a missing int8 file is written beside it);
* **crops**: real faces, the labelled boxes of the ``eval/`` clips cut as the served model cuts a
  detector box (``expand_box`` + ``crop_faces``: +25% per side, 224 bicubic, ImageNet mean/std);
  ``--faces`` of them (default 32 quick, 96 full), spread evenly over the clips;
* **time**: onnxruntime directly, one session per precision with the served model's session
  options (:func:`faceflow.models.threads.session_options`), ms per face at batch 1 and 8 (the
  served model takes up to 16 faces per call), the precisions taking turns within each round;
* **agreement** (:func:`faceflow.models.agreement.head_agreement`): both precisions' raw heads
  decoded by the served decoder on the crop's own pixels; label (argmax) agreement for age, gender
  and race, decision agreement at 0.5 for the 40 attributes and 29 visibility points, landmark
  distance in crop pixels (of 224), head-pose difference in degrees, parsing pixel agreement and
  mean IoU.

``ratio`` = fp32 ms per face / int8 ms per face at batch 8 (above 1: int8 is faster). Without a
checkpoint the weights are RANDOM-INIT (seed 0, as ``models build``): the agreement figures are
then a numeric check of the quantization on this network, not of the released model's
predictions; the output and the JSON say so.

    .venv/bin/python bench/precision.py [--quick]

Writes bench/results/precision.json; the last line printed is ``precision: ratio=<x>``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

import benchlib
import numpy as np
import onnxruntime as ort
from evalset import MANIFEST, labelled_frames

from faceflow.models.agreement import head_agreement
from faceflow.models.boxes import expand_box
from faceflow.models.build import build_facexformer, quantize_facexformer
from faceflow.models.contract import CROP_SIZE, FACEXFORMER_INPUT, FACEXFORMER_OUTPUTS
from faceflow.models.crops import crop_faces
from faceflow.models.decode import HeadOutputs, decode_heads
from faceflow.models.threads import intra_op_threads, session_options

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "precision.json"
BATCHES: Final = (1, 8)
HEADLINE_BATCH: Final = 8
RANDOM_WARNING: Final = (
    "WARNING: FaceXFormer weights are RANDOM-INIT (no checkpoint): the agreement below checks the "
    "int8 arithmetic on a random network, not the released model's predictions."
)


def eval_crops(manifest: Path, count: int) -> tuple[np.ndarray, list[str]]:
    """``count`` face crops [count,3,224,224] spread evenly over the labelled faces, and their clips."""
    crops, clips = [], []
    for frame in labelled_frames(manifest, every=3):
        if len(frame.boxes) == 0:
            continue
        h, w = frame.rgb.shape[:2]
        crops.append(crop_faces(frame.rgb, expand_box(frame.boxes, width=w, height=h)))
        clips += [frame.clip] * len(frame.boxes)
    every = np.concatenate(crops)
    pick = np.unique(np.linspace(0, len(every) - 1, min(count, len(every))).round().astype(int))
    return np.ascontiguousarray(every[pick]), [clips[i] for i in pick]


def session(path: Path, threads: int) -> ort.InferenceSession:
    """An onnxruntime session exactly as the served ``facexformer`` model makes it."""
    return ort.InferenceSession(
        str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )


def signature(s: ort.InferenceSession) -> list[tuple[str, str, list[Any]]]:
    return [(t.name, t.type, list(t.shape)) for t in (*s.get_inputs(), *s.get_outputs())]


def heads(s: ort.InferenceSession, crops: np.ndarray, batch: int = HEADLINE_BATCH) -> HeadOutputs:
    """Every crop through ``s``, decoded on the crop's own pixels (landmarks in crop px)."""
    parts = []
    for start in range(0, len(crops), batch):
        chunk = crops[start : start + batch]
        raw = s.run(list(FACEXFORMER_OUTPUTS), {FACEXFORMER_INPUT: chunk})
        unit = np.tile(np.array([[0, 0, CROP_SIZE, CROP_SIZE]], np.float32), (len(chunk), 1))
        parts.append(decode_heads(**dict(zip(FACEXFORMER_OUTPUTS, raw, strict=True)), crop_boxes=unit))
    tensors = [p.to_triton() for p in parts]
    return HeadOutputs.from_triton({k: np.concatenate([t[k] for t in tensors]) for k in tensors[0]})


def timed(
    sessions: dict[str, ort.InferenceSession], crops: np.ndarray, *, rounds: int, calls: dict[int, int]
) -> dict[str, dict[str, Any]]:
    """ms per face by precision and batch: median over every call, precisions taking turns."""
    per_face: dict[tuple[str, int], list[float]] = {(p, b): [] for p in sessions for b in calls}
    names = list(sessions)
    for r in range(rounds):
        for batch, n in calls.items():
            for i in range(n):
                index = np.arange(i * batch, (i + 1) * batch) % len(crops)
                feed = {FACEXFORMER_INPUT: np.ascontiguousarray(crops[index])}
                for name in names if (r + i) % 2 == 0 else names[::-1]:
                    t0 = time.perf_counter()
                    sessions[name].run(list(FACEXFORMER_OUTPUTS), feed)
                    per_face[(name, batch)].append((time.perf_counter() - t0) / batch * 1e3)
    out: dict[str, dict[str, Any]] = {name: {} for name in sessions}
    for (name, batch), ms in per_face.items():
        out[name][f"batch{batch}"] = {
            "ms_per_face_median": round(statistics.median(ms), 1),
            "ms_per_face_min": round(min(ms), 1),
            "calls": len(ms),
        }
    return out


def cpu_flags() -> dict[str, bool]:
    """The x86 features onnxruntime's int8 kernels use (VNNI: no u8s8 saturation, faster dot products)."""
    try:
        flags = set(
            next(
                line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
            ).split()
        )
    except (OSError, StopIteration):
        return {}
    return {f: f in flags for f in ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")}


def resolve_weights(given: Path | None) -> Path | None:
    """What ``faceflow models build`` would use: the flag, else the fetched checkpoint, else None."""
    if given is not None:
        return given
    from faceflow.models.fetch import DEFAULT_WEIGHTS_DIR, fetched_checkpoint  # noqa: PLC0415

    return fetched_checkpoint(Path(os.environ.get("FACEFLOW_WEIGHTS_DIR") or DEFAULT_WEIGHTS_DIR))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="32 faces, 1 timed round (about 1 minute on 2 cores)")
    p.add_argument("--faces", type=int, help="face crops to compare (default 32 quick, 96 full)")
    p.add_argument("--rounds", type=int, help="timed rounds (default 1 quick, 3 full)")
    p.add_argument(
        "--backbone",
        choices=["swin_b", "swin_t"],
        default=os.environ.get("FACEFLOW_FACEXFORMER_BACKBONE", "swin_b"),
        help="default $FACEFLOW_FACEXFORMER_BACKBONE or swin_b (as models build)",
    )
    p.add_argument(
        "--facexformer-weights",
        type=Path,
        default=Path(os.environ["FACEFLOW_FACEXFORMER_WEIGHTS"])
        if os.environ.get("FACEFLOW_FACEXFORMER_WEIGHTS")
        else None,
        help="checkpoint (default: as models build: the fetched one, else random-init)",
    )
    p.add_argument(
        "--artifacts", type=Path, default=REPO / "build" / "artifacts", help="default build/artifacts"
    )
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: as served)")
    p.add_argument("--manifest", type=Path, default=MANIFEST)
    args = p.parse_args(argv)
    if args.faces is not None and args.faces < HEADLINE_BATCH:
        p.error(f"--faces: expected at least {HEADLINE_BATCH}, got {args.faces}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    weights = resolve_weights(args.facexformer_weights)
    fp32, provenance = build_facexformer(
        args.artifacts, backbone=args.backbone, weights=weights, precision="fp32", say=print
    )
    paths = {"fp32": fp32, "int8": quantize_facexformer(fp32, print)}  # as build --precision int8
    random_init = provenance == "random-init"
    if random_init:
        print(RANDOM_WARNING, flush=True)
    crops, clips = eval_crops(args.manifest, args.faces or (32 if args.quick else 96))
    print(f"{len(crops)} face crops from {args.manifest} ({', '.join(sorted(set(clips)))})", flush=True)
    threads = intra_op_threads(args.threads)
    sessions = {p: session(path, threads) for p, path in paths.items()}
    same_io = signature(sessions["fp32"]) == signature(sessions["int8"])
    if not same_io:
        print(f"int8 inputs/outputs differ from fp32: {signature(sessions['int8'])}")
    outputs = {p: heads(s, crops) for p, s in sessions.items()}  # also the warm-up
    agreement = head_agreement(outputs["fp32"], outputs["int8"])
    rounds = args.rounds or (1 if args.quick else 3)
    speed = timed(sessions, crops, rounds=rounds, calls={1: 4, 8: 2} if args.quick else {1: 8, 8: 4})
    speedup = {
        f"batch{b}": round(
            speed["fp32"][f"batch{b}"]["ms_per_face_median"]
            / speed["int8"][f"batch{b}"]["ms_per_face_median"],
            3,
        )
        for b in BATCHES
    }
    ratio = speedup[f"batch{HEADLINE_BATCH}"]

    print(f"\nms per face ({args.backbone}, {threads} intra-op threads, median):")
    for b in BATCHES:
        f32, i8 = speed["fp32"][f"batch{b}"], speed["int8"][f"batch{b}"]
        print(f"  batch {b}: fp32 {f32['ms_per_face_median']:.1f}  int8 {i8['ms_per_face_median']:.1f}  "
              f"speedup {speedup[f'batch{b}']:.2f}")  # fmt: skip
    a = agreement
    print(f"agreement int8 vs fp32 on {a.faces} faces{' (RANDOM-INIT weights)' if random_init else ''}:")
    print(f"  labels (argmax): age {a.age_agreement:.3f}  gender {a.gender_agreement:.3f}  "
          f"race {a.race_agreement:.3f}  (max prob diff {a.label_max_prob_diff:.4f})")  # fmt: skip
    print(
        f"  decisions at 0.5: attributes {a.attributes_agreement:.4f}  "
        f"visibility {a.visibility_agreement:.4f}"
    )
    print(f"  landmarks: mean {a.landmarks_mean_px:.3f} px, max {a.landmarks_max_px:.3f} px (of a 224 crop)")
    print(f"  head pose: mean {a.head_pose_mean_deg:.3f} deg, max {a.head_pose_max_deg:.3f} deg")
    print(f"  parsing: pixel agreement {a.parsing_pixel_agreement:.4f}, mean IoU {a.parsing_mean_iou:.4f}")
    sizes = {p: round(path.stat().st_size / 1e6, 1) for p, path in paths.items()}
    print(f"  files: fp32 {sizes['fp32']} MB, int8 {sizes['int8']} MB; same inputs/outputs: {same_io}")
    if random_init:
        print(RANDOM_WARNING)
    payload = {
        "benchmark": "precision",
        "quick": args.quick,
        "ratio": ratio,
        "ratio_means": f"fp32 ms per face / int8 ms per face at batch {HEADLINE_BATCH}",
        "seconds": round(time.perf_counter() - started, 1),
        "backbone": args.backbone,
        "weights": provenance,
        "random_init": random_init,
        **({"warning": RANDOM_WARNING} if random_init else {}),
        "quantization": "onnxruntime quantize_dynamic, QInt8 weights, MatMul/Gemm "
        "(models build --precision int8)",
        "models": {p: {"path": str(path), "mb": sizes[p]} for p, path in paths.items()},
        "same_inputs_outputs": same_io,
        "faces": len(crops),
        "faces_per_clip": {c: clips.count(c) for c in sorted(set(clips))},
        "intra_op_threads": threads,
        "rounds": rounds,
        "speed": speed,
        "speedup": speedup,
        "agreement_int8_vs_fp32": agreement.to_json(),
        "machine": benchlib.machine(onnxruntime=version("onnxruntime"), cpu_flags=cpu_flags()),
    }
    benchlib.write_results(RESULTS, payload)
    print(f"precision: ratio={ratio:.2f}")
    return 0 if same_io else 1


if __name__ == "__main__":
    raise SystemExit(main())
