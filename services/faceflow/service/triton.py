"""The Triton client every faceflow service uses: a deadline on every call, errors sorted by whose fault.

:class:`TritonClient` wraps ``tritonclient.grpc`` so that:

* every call, metadata included, has a deadline (``client_timeout``);
* a failure is one of two kinds: :class:`TritonUnavailable` (the server is down, overloaded, a
  model is not loaded, the deadline passed: retry later, do not blame the input) or
  :class:`TritonRefused` (the server answered that *this request* is wrong or made a model fail:
  retrying the same input will not help; the caller may split the batch to find the culprit);
* the answers of ``face_pipeline``, ``face_detect`` and ``face_analyze`` come back as the
  validated types of :mod:`faceflow.models.response`;
* model provenance (which weights, random-init or not) is read from the served model config, so
  every result can say what produced it (:meth:`TritonClient.model_infos`);
* readiness is a real inference (:meth:`TritonClient.probe`): Triton's own health stays green
  when a python stub dies.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from faceflow.errors import FaceflowError, Unavailable
from faceflow.models.contract import (
    FACE_ANALYZE,
    FACE_ANALYZE_OUTPUT_NAMES,
    FACE_DETECT,
    FACE_DETECT_OUTPUT_NAMES,
    FACE_PIPELINE,
    FACE_PIPELINE_OUTPUTS,
    NUMPY_DTYPES,
)
from faceflow.models.response import DetectedFaces, FaceAnalyses, PipelineResponse, ResponseError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: gRPC codes that mean "not now" rather than "not this input".
_TRANSIENT = frozenset(
    f"StatusCode.{code}"
    for code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "UNKNOWN", "ABORTED")
)
_NOT_READY = ("is not ready", "unknown model", "not found", "failed to connect", "unavailable")

#: numpy dtype name -> Triton datatype, the inverse of the contract's table.
_DTYPES = {numpy_name: triton for triton, numpy_name in NUMPY_DTYPES.items()}
_PIPELINE_OUTPUT_NAMES = tuple(t.name for t in FACE_PIPELINE_OUTPUTS)


class TritonUnavailable(Unavailable):
    """Triton cannot answer now (down, overloaded, model not loaded, deadline passed): retry later."""


class TritonRefused(FaceflowError):  # noqa: N818
    """Triton answered that this request failed (its input breaks a model, or a model raised on it)."""


@dataclass(frozen=True, kw_only=True)
class ServedModel:
    """One model behind an entry point and the weights it runs, as the served config reports them."""

    name: str
    version: str
    weights: str
    random_init: bool
    variant: str = ""


class FaceModels(Protocol):
    """The entry points of the served face models (:class:`TritonClient`, or the fake in
    :mod:`faceflow.service.triton_fake`)."""

    def pipeline(self, frames: Sequence[bytes], *, timeout_s: float | None = None) -> PipelineResponse: ...

    def detect(self, frames: Sequence[bytes], *, timeout_s: float | None = None) -> DetectedFaces: ...

    def analyze(
        self,
        frames: Sequence[bytes],
        frame_index: np.ndarray,
        boxes: np.ndarray,
        keypoints5: np.ndarray,
        *,
        timeout_s: float | None = None,
    ) -> FaceAnalyses: ...

    def probe(self, *, timeout_s: float = 30.0) -> PipelineResponse: ...

    def model_infos(self, model: str = FACE_PIPELINE) -> list[ServedModel]: ...

    def close(self) -> None: ...


def _classify(model: str, exc: Exception) -> FaceflowError:
    status = str(getattr(exc, "status", lambda: "")() or "")
    message = str(getattr(exc, "message", lambda: str(exc))() or exc)
    text = f"Triton {model}: {message}"
    if status in _TRANSIENT or any(marker in message.lower() for marker in _NOT_READY) or not status:
        return TritonUnavailable(text)
    return TritonRefused(text)


class TritonClient:
    """A Triton gRPC client with deadlines (thread-safe: calls may run concurrently).

    Args:
        url: ``host:port`` of Triton's gRPC endpoint.
        timeout_s: deadline of an inference call.
        metadata_timeout_s: deadline of a config or health call.
    """

    def __init__(self, url: str, *, timeout_s: float = 60.0, metadata_timeout_s: float = 5.0) -> None:
        import tritonclient.grpc as grpcclient  # noqa: PLC0415 - heavy import, only where Triton is used

        if timeout_s <= 0 or metadata_timeout_s <= 0:
            raise ValueError(f"timeouts: expected > 0, got {timeout_s} and {metadata_timeout_s}")
        self.url = url
        self.timeout_s = timeout_s
        self.metadata_timeout_s = metadata_timeout_s
        self._grpc = grpcclient
        self._client = grpcclient.InferenceServerClient(url)
        self._lock = threading.Lock()
        self._params: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        self._client.close()

    # -- raw calls --------------------------------------------------------------------------------
    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        *,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, np.ndarray]:
        """One inference with a deadline; the named outputs as numpy arrays.

        Raises:
            TritonUnavailable: the server cannot answer now.
            TritonRefused: the server answered with an error for this request.
        """
        from tritonclient.utils import InferenceServerException  # noqa: PLC0415

        tensors = []
        for name, value in inputs.items():
            t = self._grpc.InferInput(name, list(value.shape), _DTYPES[str(value.dtype)])
            t.set_data_from_numpy(value)
            tensors.append(t)
        try:
            result = self._client.infer(
                model,
                tensors,
                outputs=[self._grpc.InferRequestedOutput(n) for n in outputs],
                client_timeout=timeout_s if timeout_s is not None else self.timeout_s,
                headers=dict(headers) if headers else None,
            )
        except InferenceServerException as exc:
            raise _classify(model, exc) from exc
        return {name: result.as_numpy(name) for name in outputs}

    def model_parameters(self, model: str) -> dict[str, str]:
        """The ``parameters`` of a served model's config (cached; a deadline on the call)."""
        from tritonclient.utils import InferenceServerException  # noqa: PLC0415

        with self._lock:
            cached = self._params.get(model)
        if cached is not None:
            return cached
        try:
            config = self._client.get_model_config(
                model, as_json=True, client_timeout=self.metadata_timeout_s
            )
        except InferenceServerException as exc:
            raise _classify(model, exc) from exc
        params = {k: v.get("string_value", "") for k, v in config["config"].get("parameters", {}).items()}
        with self._lock:
            self._params[model] = params
        return params

    # -- the entry points ------------------------------------------------------------------------
    def pipeline(self, frames: Sequence[bytes], *, timeout_s: float | None = None) -> PipelineResponse:
        """``face_pipeline`` on encoded frames."""
        out = self.infer(
            FACE_PIPELINE, {"IMAGES": _images(frames)}, _PIPELINE_OUTPUT_NAMES, timeout_s=timeout_s
        )
        return _validated(FACE_PIPELINE, lambda: PipelineResponse.from_triton(out, frames=len(frames)))

    def detect(self, frames: Sequence[bytes], *, timeout_s: float | None = None) -> DetectedFaces:
        """``face_detect`` on encoded frames."""
        out = self.infer(
            FACE_DETECT, {"IMAGES": _images(frames)}, FACE_DETECT_OUTPUT_NAMES, timeout_s=timeout_s
        )
        return _validated(FACE_DETECT, lambda: DetectedFaces.from_triton(out, frames=len(frames)))

    def analyze(
        self,
        frames: Sequence[bytes],
        frame_index: np.ndarray,
        boxes: np.ndarray,
        keypoints5: np.ndarray,
        *,
        timeout_s: float | None = None,
    ) -> FaceAnalyses:
        """``face_analyze`` for the given faces (frame index, box, keypoints each), in that order."""
        if frame_index.shape[0] == 0:
            return FaceAnalyses.empty()
        inputs = {
            "IMAGES": _images(frames),
            "FRAME_INDEX": np.ascontiguousarray(frame_index, np.int32),
            "BOXES": np.ascontiguousarray(boxes, np.float32),
            "KEYPOINTS5": np.ascontiguousarray(keypoints5, np.float32),
        }
        out = self.infer(FACE_ANALYZE, inputs, FACE_ANALYZE_OUTPUT_NAMES, timeout_s=timeout_s)
        return _validated(
            FACE_ANALYZE, lambda: FaceAnalyses.from_triton(out, faces=int(frame_index.shape[0]))
        )

    def probe(self, *, timeout_s: float = 30.0) -> PipelineResponse:
        """A real ``face_pipeline`` inference on a tiny picture: proves the python stubs run."""
        from PIL import Image  # noqa: PLC0415

        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (128, 96, 64)).save(buf, format="JPEG")
        answer = self.pipeline([buf.getvalue()], timeout_s=timeout_s)
        if answer.detected.frame_status.tolist() != [0]:
            raise TritonRefused(
                f"Triton probe: expected FRAME_STATUS [0], got {answer.detected.frame_status}"
            )
        return answer

    def model_infos(self, model: str = FACE_PIPELINE) -> list[ServedModel]:
        """Detector, face model and embedder behind ``model``, with their weights provenance."""
        params = self.model_parameters(model)
        weights = params.get("facexformer_weights", "unknown")
        random_init = _json_bool(params.get("facexformer_random_init", "false")) or weights == "random-init"
        return [
            ServedModel(
                name="centerface",
                version="1",
                weights=params.get("detector", "centerface"),
                random_init=False,
            ),
            ServedModel(
                name="facexformer",
                version="1",
                weights=weights,
                random_init=random_init,
                variant=params.get("facexformer_variant") or params.get("facexformer_backbone", ""),
            ),
            ServedModel(
                name="dlib_resnet",
                version="1",
                weights=params.get("embedder", "dlib"),
                random_init=False,
                variant="128d",
            ),
        ]


def _images(frames: Sequence[bytes]) -> np.ndarray:
    return np.array([bytes(f) for f in frames], dtype=object)


def _json_bool(text: str) -> bool:
    try:
        return bool(json.loads(text))
    except ValueError:
        return text.strip().lower() == "true"


def _validated(model: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except ResponseError as exc:
        raise TritonRefused(f"Triton {model} answered outside its contract: {exc}") from exc
