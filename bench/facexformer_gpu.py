"""FaceXFormer (swin_b) on a GPU: eager fp32 vs fp16 (and torch.compile fp16) by batch size.

    python bench/facexformer_gpu.py                 # ~2-4 min on one data-centre GPU
    python bench/facexformer_gpu.py --no-compile    # eager only (~1 min)

Needs only PyTorch, torchvision and numpy: it imports ``faceflow.models.facexformer`` straight
from ``services/`` (that module, ``facexformer_layers``, ``contract`` and ``errors`` import nothing
else), so a bare CUDA machine with ``pip install torch torchvision numpy`` runs it.
Without CUDA it exits 2 and says so (``--allow-cpu`` runs a tiny smoke pass instead, never a result).

Measures faces/s (batch / wall time of a synchronised forward, median of the timed iterations)
at batch 1/8/32/128 for eager fp32, eager fp16 (``model.half()``) and, unless ``--no-compile``,
``torch.compile``'d fp16; plus fp16's drift from fp32 per head and the peak memory. Writes
``bench/results/facexformer_gpu.json``; the last line is
``facexformer_gpu: ratio=<best fp16 faces/s / eager fp32 batch-1 faces/s>``.
Exit 0 with a ratio, 1 when the baseline or every fp16 run failed, 2 when CUDA (or torch) is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "facexformer_gpu.json"
BATCH_SIZES = (1, 8, 32, 128)


def fail(message: str, code: int) -> None:
    print(f"facexformer_gpu: {message}", file=sys.stderr)
    raise SystemExit(code)


def import_facexformer() -> types.ModuleType:
    """faceflow.models.facexformer from services/: that chain imports only torch, torchvision, numpy."""
    sys.path.insert(0, str(ROOT / "services"))
    from faceflow.models import facexformer  # noqa: PLC0415 - after the path insert

    return facexformer


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    p.add_argument("--min-time-s", type=float, default=2.0, help="timed seconds per point (default 2)")
    p.add_argument("--max-iters", type=int, default=200)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument(
        "--budget-s", type=float, default=300.0, help="skip what would start after this (default 300)"
    )
    p.add_argument(
        "--weights", type=Path, help="the released checkpoint (drift on real weights); default random"
    )
    p.add_argument("--device", default="cuda")
    p.add_argument("--allow-cpu", action="store_true", help="smoke-test the script on CPU (no result)")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        import numpy as np  # noqa: PLC0415 - a missing torch is exit 2 with a message
        import torch  # noqa: PLC0415
    except ImportError as exc:
        fail(f"needs PyTorch and numpy ({exc}): pip install torch torchvision numpy", 2)
    smoke = args.allow_cpu and not torch.cuda.is_available()
    if not torch.cuda.is_available() and not smoke:
        fail(
            f"no CUDA device visible to PyTorch {torch.__version__} (built for CUDA {torch.version.cuda}); "
            "run this on a GPU machine (check the NVIDIA driver and CUDA_VISIBLE_DEVICES), "
            "or pass --allow-cpu for a smoke test",
            2,
        )
    device = torch.device("cpu" if smoke else args.device)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if smoke:
        batch_sizes, args.min_time_s, args.max_iters, args.warmup, args.no_compile = [1, 2], 0.0, 1, 0, True
    facexformer = import_facexformer()
    started = time.monotonic()
    torch.manual_seed(0)
    config = facexformer.FaceXFormerConfig(backbone="swin_b")
    model, info = facexformer.load_facexformer(config, args.weights)  # None: seeded random init
    weights = info.provenance
    model = model.eval().to(device)
    size = facexformer.INPUT_SIZE
    generator = np.random.default_rng(0)
    crops = torch.from_numpy(generator.standard_normal((max(batch_sizes), 3, size, size), dtype=np.float32))
    crops = crops.to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def measure(run: Callable[[Any], Any], x: Any) -> dict[str, Any]:
        for _ in range(args.warmup):
            run(x)
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times: list[float] = []
        spent = 0.0
        while (spent < args.min_time_s or not times) and len(times) < args.max_iters:
            t0 = time.perf_counter()
            run(x)
            sync()
            times.append(time.perf_counter() - t0)
            spent += times[-1]
        median = statistics.median(times)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        return {
            "faces_per_s": x.shape[0] / median,
            "median_ms": median * 1e3,
            "iters": len(times),
            "peak_mib": peak,
        }

    fp32 = model
    fp16 = facexformer.FaceXFormer(config).to(device).eval()
    fp16.load_state_dict(model.state_dict())
    fp16 = fp16.half()

    def forward(m: Any) -> Callable[[Any], Any]:
        def run(x: Any) -> Any:
            with torch.inference_mode():
                return m(x)

        return run

    variants: dict[str, tuple[Callable[[Any], Any], Any]] = {
        "eager_fp32": (forward(fp32), torch.float32),
        "eager_fp16": (forward(fp16), torch.float16),
    }
    notes: list[str] = []
    if not args.no_compile:
        variants["compile_fp16"] = (forward(torch.compile(fp16, dynamic=False)), torch.float16)
    figures: dict[str, dict[str, Any]] = {name: {} for name in variants}
    for name, (run, dtype) in variants.items():
        for batch in batch_sizes:
            if time.monotonic() - started > args.budget_s:
                notes.append(f"{name} batch {batch}: skipped, over the {args.budget_s:.0f} s budget")
                continue
            x = crops[:batch].to(dtype)
            try:
                t0 = time.monotonic()
                figures[name][str(batch)] = measure(run, x)
                figures[name][str(batch)]["wall_s"] = round(time.monotonic() - t0, 1)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:  # OOM, compile failure
                notes.append(f"{name} batch {batch}: failed: {str(exc).splitlines()[0][:200]}")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            point = figures[name][str(batch)]
            print(
                f"  {name:13s} batch {batch:4d}: {point['faces_per_s']:9.1f} faces/s  "
                f"{point['median_ms']:8.2f} ms/batch  ({point['iters']} iters)",
                flush=True,
            )

    # fp16 vs fp32 on the same crops: how far each head moves.
    drift: dict[str, float] = {}
    with torch.inference_mode():
        n = min(8, max(batch_sizes))
        ref = fp32(crops[:n])
        half = fp16(crops[:n].half())
    for head in ref._fields:
        a, b = getattr(ref, head).float(), getattr(half, head).float()
        drift[head] = float((a - b).abs().max())
        if not torch.isfinite(b).all():
            notes.append(f"fp16 {head}: non-finite values")

    baseline = figures["eager_fp32"].get("1", {}).get("faces_per_s")
    best_fp16 = max(
        (p["faces_per_s"] for name, pts in figures.items() if name.endswith("fp16") for p in pts.values()),
        default=None,
    )
    ratio = best_fp16 / baseline if baseline and best_fp16 else float("nan")
    result = {
        "benchmark": "facexformer_gpu",
        "smoke_test_on_cpu": smoke,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "python": platform.python_version(),
        "backbone": "swin_b",
        "weights": weights,
        "input": f"[B,3,{size},{size}] standard normal (normalised crops), seed 0",
        "batch_sizes": batch_sizes,
        "figures": figures,
        "fp16_max_abs_drift_per_head": drift,
        "baseline": "eager_fp32 batch 1",
        "ratio": None if smoke or math.isnan(ratio) else ratio,
        "notes": notes,
        "wall_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  wrote {args.out}")
    for note in notes:
        print(f"  note: {note}")
    if smoke:
        print("facexformer_gpu: ratio=nan (a smoke test on CPU, not a measurement)")
        return 0
    print(f"facexformer_gpu: ratio={ratio:.2f}")
    return 1 if math.isnan(ratio) else 0  # NaN: no baseline or no fp16 figure


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
