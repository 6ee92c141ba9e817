"""Helpers shared by the Triton python-backend models in ``triton_repo/`` (stdlib + numpy only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
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


class TritonLogHandler(logging.Handler):
    """Forwards log records to Triton's own log (``pb_utils.Logger``) at the matching level."""

    def __init__(self, pb: Any) -> None:
        super().__init__()
        self.pb = pb

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            log = self.pb.Logger
            if record.levelno >= logging.ERROR:
                log.log_error(message)
            elif record.levelno >= logging.WARNING:
                log.log_warn(message)
            elif record.levelno >= logging.INFO:
                log.log_info(message)
            else:
                log.log_verbose(message)
        except Exception:  # noqa: BLE001 - logging must never fail a request
            self.handleError(record)


def log_to_triton(pb: Any, logger: logging.Logger, level: int = logging.INFO) -> None:
    """Send ``logger``'s records of ``level`` and up to Triton's log (once; a model's ``initialize``
    calls it, as a service's ``main`` configures logging)."""
    if not any(isinstance(h, TritonLogHandler) for h in logger.handlers):
        logger.addHandler(TritonLogHandler(pb))
    logger.setLevel(level)
    logger.propagate = False


class RequestInputError(ValueError):
    """A request's inputs break the model's contract: answered as INVALID_ARG, never a crash."""


def triton_error(pb: Any, message: str, *, code: str | None = None) -> Any:
    """A ``TritonError`` with the named code (``"INVALID_ARG"``, ``"CANCELLED"``) where this python
    backend has it, else without a code."""
    value = getattr(pb.TritonError, code, None) if code is not None else None
    return pb.TritonError(message) if value is None else pb.TritonError(message, value)


def is_cancelled(request: Any) -> bool:
    """Whether Triton has cancelled ``request`` (deadline passed, client gone); False where the
    backend cannot tell (python backends before 23.10)."""
    check = getattr(request, "is_cancelled", None)
    return bool(check()) if callable(check) else False


class _Cancelled(Exception):  # noqa: N818
    """Raised inside :func:`answer_each` for a request Triton cancelled before it ran."""


def answer_each(
    pb: Any,
    requests: list[Any],
    handle: Callable[[Any], Mapping[str, Any]],
    *,
    model: str,
    log: logging.Logger,
    invalid: tuple[type[Exception], ...] = (RequestInputError,),
    cancelled: tuple[type[Exception], ...] = (),
) -> list[Any]:
    """Answer every request with ``handle(request)``'s tensors; a failure becomes that request's error.

    An exception of an ``invalid`` type is the client's fault (INVALID_ARG, logged at INFO); one of
    a ``cancelled`` type, or a request already cancelled before ``handle`` runs, is answered with
    CANCELLED (logged at INFO); any other is logged with its traceback. Either way the instance and
    the other requests go on.
    """
    stopped: tuple[type[Exception], ...] = (_Cancelled, *cancelled)
    responses = []
    for request in requests:
        try:
            if is_cancelled(request):
                raise _Cancelled("request cancelled before it ran")
            tensors = handle(request)
            responses.append(
                pb.InferenceResponse(output_tensors=[pb.Tensor(n, v) for n, v in tensors.items()])
            )
        except invalid as exc:
            log.info("%s refused a request: %s", model, exc)
            responses.append(
                pb.InferenceResponse(error=triton_error(pb, f"{model}: {exc}", code="INVALID_ARG"))
            )
        except stopped as exc:
            log.info("%s stopped a request: %s", model, exc)
            responses.append(
                pb.InferenceResponse(error=triton_error(pb, f"{model}: {exc}", code="CANCELLED"))
            )
        except Exception as exc:
            log.exception("%s request failed", model)
            responses.append(pb.InferenceResponse(error=triton_error(pb, f"{model}: {exc}")))
    return responses


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim: Callable[[int], int] | None = getattr(libc, "malloc_trim", None)
    return trim


def release_freed_memory() -> bool:
    """Hand the C heap's free pages back to the OS (glibc's ``malloc_trim(0)``); False without glibc.

    Pillow and numpy free a request's buffers into the heap, which keeps them resident; a model
    calls this after each batch so that one large request does not leave its process large.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
