"""Helpers shared by the Triton python-backend models in ``triton_repo/`` (stdlib + numpy only)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def model_parameters(args: Mapping[str, str]) -> dict[str, str]:
    """The ``parameters`` of a model's config as plain strings."""
    config = json.loads(args["model_config"])
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def version_dir(args: Mapping[str, str]) -> Path:
    """The folder of the model version being loaded (where its ONNX file lies)."""
    return Path(args["model_repository"]) / args["model_version"]


def int_param(params: Mapping[str, str], key: str, default: int) -> int:
    raw = params.get(key, "")
    return int(raw) if raw.strip() else default


def float_param(params: Mapping[str, str], key: str, default: float) -> float:
    raw = params.get(key, "")
    return float(raw) if raw.strip() else default


def bls_target(params: Mapping[str, str], key: str) -> str | None:
    """``"bls:<model>"`` -> ``"<model>"``; ``"onnxruntime"`` (in-process) -> None."""
    value = params.get(key, "onnxruntime")
    if value.startswith("bls:"):
        return value[4:]
    if value != "onnxruntime":
        raise ValueError(f"expected {key} 'onnxruntime' or 'bls:<model>', got {value!r}")
    return None


def as_numpy_cpu(tensor: Any) -> Any:
    """A python-backend tensor as a numpy array, moving it off the GPU if needed (BLS outputs)."""
    if tensor.is_cpu():
        return tensor.as_numpy()
    from torch.utils import dlpack  # noqa: PLC0415 - only in GPU deployments

    return dlpack.from_dlpack(tensor.to_dlpack()).cpu().numpy()
