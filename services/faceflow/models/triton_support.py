"""Helpers shared by the Triton python-backend models in ``triton_repo/`` (stdlib + numpy only)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
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


def input_array(pb: Any, request: Any, name: str) -> Any:
    """A request's input tensor as a numpy array (BYTES as a flat object array)."""
    tensor = pb.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise RequestInputError(f"missing input tensor {name}")
    return tensor.as_numpy()


class RequestInputError(ValueError):
    """A request's inputs break the model's contract: answered as INVALID_ARG, never a crash."""


def triton_error(pb: Any, message: str, *, invalid_argument: bool = False) -> Any:
    """A ``TritonError``, with the INVALID_ARG code where this python backend supports codes."""
    if invalid_argument and hasattr(pb.TritonError, "INVALID_ARG"):
        return pb.TritonError(message, pb.TritonError.INVALID_ARG)
    return pb.TritonError(message)


def answer_each(
    pb: Any,
    requests: list[Any],
    handle: Callable[[Any], Mapping[str, Any]],
    *,
    model: str,
    log: logging.Logger,
    invalid: tuple[type[Exception], ...] = (RequestInputError,),
) -> list[Any]:
    """Answer every request with ``handle(request)``'s tensors; a failure becomes that request's error.

    An exception of an ``invalid`` type is the client's fault (INVALID_ARG, logged at INFO); any
    other is logged with its traceback. Either way the instance and the other requests go on.
    """
    responses = []
    for request in requests:
        try:
            tensors = handle(request)
            responses.append(
                pb.InferenceResponse(output_tensors=[pb.Tensor(n, v) for n, v in tensors.items()])
            )
        except invalid as exc:
            log.info("%s refused a request: %s", model, exc)
            responses.append(
                pb.InferenceResponse(error=triton_error(pb, f"{model}: {exc}", invalid_argument=True))
            )
        except Exception as exc:
            log.exception("%s request failed", model)
            responses.append(pb.InferenceResponse(error=triton_error(pb, f"{model}: {exc}")))
    return responses
