"""Helpers for tests against the real Triton (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import tritonclient.grpc as grpcclient
from matplotlib import cbook
from PIL import Image
from skimage import data

from faceflow.models import contract

OUTPUTS = [t.name for t in contract.FACE_PIPELINE_OUTPUTS]
TRITON_DTYPES = {"float32": "FP32", "uint8": "UINT8", "int32": "INT32"}


def photo(name: str) -> np.ndarray:
    if name == "grace_hopper":
        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            return np.asarray(Image.open(fh).convert("RGB"))
    rgb = np.asarray(getattr(data, name)())
    return np.stack([rgb] * 3, axis=-1) if rgb.ndim == 2 else rgb


def encode(rgb: np.ndarray | Image.Image, fmt: str = "JPEG") -> bytes:
    img = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=95) if fmt == "JPEG" else img.save(buf, format=fmt)
    return buf.getvalue()


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def infer(
    client: grpcclient.InferenceServerClient,
    model: str,
    inputs: dict[str, np.ndarray],
    outputs: Sequence[str],
) -> dict[str, np.ndarray]:
    tensors = []
    for name, value in inputs.items():
        dtype = "BYTES" if value.dtype == object else TRITON_DTYPES[str(value.dtype)]
        t = grpcclient.InferInput(name, list(value.shape), dtype)
        t.set_data_from_numpy(value)
        tensors.append(t)
    result = client.infer(
        model, tensors, outputs=[grpcclient.InferRequestedOutput(n) for n in outputs], client_timeout=300
    )
    return {n: result.as_numpy(n) for n in outputs}


def pipeline(client: grpcclient.InferenceServerClient, frames: Sequence[bytes]) -> dict[str, np.ndarray]:
    return infer(client, "face_pipeline", {"IMAGES": np.array(frames, dtype=object)}, OUTPUTS)
