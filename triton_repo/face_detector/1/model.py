"""Triton python model ``face_detector``: decode -> CenterFace -> crops and identity chips.

A thin adapter around :class:`faceflow.models.pipeline.DetectorStage`. A bad frame gets its
FRAME_STATUS; the rest of the request is answered; an exception inside one request becomes that
request's error, never the instance's death.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from faceflow.models.centerface import CenterFaceDetector
from faceflow.models.identity import IdentityEmbedder
from faceflow.models.pipeline import DetectorStage
from faceflow.models.triton_support import (
    as_numpy_cpu,
    bls_target,
    float_param,
    int_param,
    model_parameters,
    version_dir,
)

logger = logging.getLogger("faceflow.triton.face_detector")


class _BlsCenterFace:
    """CenterFace served by a native Triton model (GPU variant), called through BLS."""

    def __init__(self, model: str) -> None:
        self.model = model

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        ((name, blob),) = feeds.items()
        request = pb_utils.InferenceRequest(
            model_name=self.model, requested_output_names=output_names, inputs=[pb_utils.Tensor(name, blob)]
        )
        response = request.exec()
        if response.has_error():
            raise pb_utils.TritonModelException(response.error().message())
        return [as_numpy_cpu(pb_utils.get_output_tensor_by_name(response, n)) for n in output_names]


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = model_parameters(args)
        threads = int_param(params, "cpu_threads", 0)
        detector = CenterFaceDetector(
            version_dir(args) / "centerface.onnx",
            threshold=float_param(params, "threshold", 0.5),
            nms_iou=float_param(params, "nms_iou", 0.3),
            max_faces=int_param(params, "max_faces", 64),
            max_side=int_param(params, "detect_max_side", 1280) or None,
            intra_op_threads=threads,
        )
        target = bls_target(params, "detector_backend")
        if target is not None:
            detector._session = _BlsCenterFace(target)  # type: ignore[assignment]
        self.stage = DetectorStage(
            detector=detector,
            chips=IdentityEmbedder().chips,
            max_pixels=int_param(params, "max_pixels", 40_000_000),
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                images = pb_utils.get_input_tensor_by_name(request, "IMAGES").as_numpy().reshape(-1)
                out = self.stage.run([bytes(x) for x in images])
                tensors = [pb_utils.Tensor(name, value) for name, value in out.as_tensors().items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:
                logger.exception("face_detector request failed")
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(f"face_detector: {exc}"))
                )
        return responses
