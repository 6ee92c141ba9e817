"""GPU section of bench/pipeline.py: FaceXFormer fp32 vs fp16 by batch, where CUDA is visible.

Kept apart from the CPU benchmark so each file stays readable; imported by bench/pipeline.py.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from faceflow.models.facexformer import FaceXFormer

FloatArray = npt.NDArray[np.float32]


def measure_gpu(
    model: FaceXFormer,
    crops: FloatArray,
    fp32_onnx: Path | None,
    *,
    iters: int,
    batch_sizes: Sequence[int],
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Per-face ms on the GPU: eager fp32/fp16 and ORT-CUDA by batch, vs eager fp32 batch 1."""
    import onnxruntime as ort  # noqa: PLC0415

    device = device or torch.device("cuda")
    on_cuda = device.type == "cuda"
    variants: dict[str, Callable[[np.ndarray], object]] = {}
    notes: list[str] = []

    def eager(dtype: torch.dtype) -> Callable[[np.ndarray], object]:
        # fp16 through autocast (mixed precision, what a serving path would use).
        m = copy.deepcopy(model).to(device).eval()
        autocast = dtype != torch.float32

        def run(x: np.ndarray) -> object:
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
                out = m(torch.from_numpy(x).to(device))
            if on_cuda:
                torch.cuda.synchronize(device)
            return out

        return run

    def ort_cuda(path: Path) -> Callable[[np.ndarray], object]:
        session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
        half = any(i.type == "tensor(float16)" for i in session.get_inputs())
        return lambda x: session.run(None, {"images": x.astype(np.float16) if half else x})

    variants["eager_fp32"] = eager(torch.float32)
    variants["eager_fp16"] = eager(torch.float16)
    if fp32_onnx is None or "CUDAExecutionProvider" not in ort.get_available_providers():
        notes.append("ORT-CUDA skipped: no CUDAExecutionProvider in this onnxruntime")
    else:
        variants["ort_cuda_fp32"] = ort_cuda(fp32_onnx)
        try:
            import onnx  # noqa: PLC0415
            from onnxconverter_common import float16  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

            fp16_path = fp32_onnx.with_name(fp32_onnx.stem + "-fp16.onnx")
            if not fp16_path.exists():
                onnx.save(float16.convert_float_to_float16(onnx.load(str(fp32_onnx))), str(fp16_path))
            variants["ort_cuda_fp16"] = ort_cuda(fp16_path)
        except ImportError:
            notes.append("ORT-CUDA fp16 skipped: onnxconverter-common is not installed")
    name = torch.cuda.get_device_name(device) if on_cuda else f"none ({device})"
    figures: dict[str, Any] = {"gpu": name, "per_face_ms": {}, "notes": notes}
    for variant, run in variants.items():
        for batch in tqdm(batch_sizes, desc=f"gpu {variant}", unit="batch size"):
            x = np.ascontiguousarray(crops[np.arange(batch) % len(crops)])
            for _ in range(2):
                run(x)
            started = time.perf_counter()
            for _ in range(iters):
                run(x)
            per_face = (time.perf_counter() - started) * 1000 / (iters * batch)
            figures["per_face_ms"][f"{variant}_batch{batch}"] = round(per_face, 3)
    base = figures["per_face_ms"]["eager_fp32_batch1"]
    figures["speedup_vs_eager_fp32_batch1"] = {
        k: round(base / v, 2) for k, v in figures["per_face_ms"].items()
    }
    return figures
