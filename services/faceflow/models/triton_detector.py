"""What the detector-side Triton python models share: CenterFace built from a model's config, on
onnxruntime (cpu variant) or on the native ``centerface_onnx`` model through BLS (gpu variant).

Used by ``triton_repo/face_detector`` and ``triton_repo/face_detect``; imports
``triton_python_backend_utils`` only through the ``pb`` module object it is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from faceflow.models.centerface import CenterFaceDetector
from faceflow.models.contract import (
    DECODE_MIN_SIDE,
    DETECT_BATCH_PIXELS,
    DETECT_MAX_SIDE,
    DETECTOR_NMS_IOU,
    DETECTOR_THRESHOLD,
    MAX_FACES_PER_FRAME,
    MAX_FRAME_PIXELS,
    REQUEST_PIXEL_BUDGET,
)
from faceflow.models.pipeline import FrameLimits
from faceflow.models.triton_support import as_numpy_cpu, bls_target, float_param, int_param, version_dir


class BlsCenterFace:
    """CenterFace served by a native Triton model (gpu variant), called through BLS."""

    def __init__(self, pb: Any, model: str) -> None:
        self.pb = pb
        self.model = model

    def run(self, output_names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        pb = self.pb
        request = pb.InferenceRequest(
            model_name=self.model,
            requested_output_names=list(output_names),
            inputs=[pb.Tensor(name, blob) for name, blob in feeds.items()],
        )
        response = request.exec()
        if response.has_error():
            raise pb.TritonModelException(response.error().message())
        return [as_numpy_cpu(pb.get_output_tensor_by_name(response, n)) for n in output_names]


def detector_from_config(pb: Any, args: Mapping[str, str], params: Mapping[str, str]) -> CenterFaceDetector:
    """The CenterFace detector a detector model's config asks for."""
    target = bls_target(params, "detector_backend")
    return CenterFaceDetector(
        None if target is not None else version_dir(args) / "centerface.onnx",
        threshold=float_param(params, "threshold", DETECTOR_THRESHOLD),
        nms_iou=float_param(params, "nms_iou", DETECTOR_NMS_IOU),
        max_faces=int_param(params, "max_faces", MAX_FACES_PER_FRAME),
        max_side=int_param(params, "detect_max_side", DETECT_MAX_SIDE) or None,
        intra_op_threads=int_param(params, "cpu_threads", 0),
        runner=None if target is None else BlsCenterFace(pb, target),
    )


def max_pixels(params: Mapping[str, str]) -> int:
    """The per-frame pixel limit (parameter ``max_pixels``)."""
    return int_param(params, "max_pixels", MAX_FRAME_PIXELS)


def frame_limits(params: Mapping[str, str]) -> FrameLimits:
    """The limits of a model's config: ``max_pixels`` (per frame), ``request_pixels`` (per request),
    ``decode_min_side`` (0: every frame at full size) and ``detect_batch_pixels`` (per detector
    call); missing ones take the contract's defaults."""
    min_side = int_param(params, "decode_min_side", DECODE_MIN_SIDE)
    return FrameLimits(
        max_pixels=max_pixels(params),
        request_pixels=int_param(params, "request_pixels", REQUEST_PIXEL_BUDGET),
        min_side=min_side if min_side > 0 else None,
        detect_batch_pixels=int_param(params, "detect_batch_pixels", DETECT_BATCH_PIXELS),
    )
