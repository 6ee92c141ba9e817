"""Triton python model ``facexformer``: FaceXFormer heads for the crops, decoded to the contract.

CPU variant: the ONNX runs on onnxruntime in this process. GPU variant: the raw heads come from
the native ``facexformer_onnx`` model through BLS (dynamic batching, TensorRT fp16 there), and
this model only decodes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from faceflow.models.contract import FACEXFORMER_INPUT, FACEXFORMER_OUTPUTS
from faceflow.models.pipeline import FaceModelStage
from faceflow.models.triton_support import (
    answer_each,
    as_numpy_cpu,
    bls_target,
    input_array,
    int_param,
    model_parameters,
    version_dir,
)

logger = logging.getLogger("faceflow.triton.facexformer")


def _bls_runner(model: str) -> Any:
    def run_raw(crops: np.ndarray) -> Sequence[np.ndarray]:
        request = pb_utils.InferenceRequest(
            model_name=model,
            requested_output_names=list(FACEXFORMER_OUTPUTS),
            inputs=[pb_utils.Tensor(FACEXFORMER_INPUT, crops)],
        )
        response = request.exec()
        if response.has_error():
            raise pb_utils.TritonModelException(response.error().message())
        return [as_numpy_cpu(pb_utils.get_output_tensor_by_name(response, n)) for n in FACEXFORMER_OUTPUTS]

    return run_raw


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = model_parameters(args)
        max_batch = int_param(params, "max_batch", 16)
        target = bls_target(params, "face_model_backend")
        if target is None:
            self.stage = FaceModelStage.from_onnx(
                version_dir(args) / "facexformer.onnx",
                intra_op_threads=int_param(params, "cpu_threads", 0),
                max_batch=max_batch,
            )
        else:
            self.stage = FaceModelStage(_bls_runner(target), max_batch=max_batch)
        if params.get("facexformer_weights") == "random-init":
            logger.warning(
                "FaceXFormer weights are RANDOM-INIT: every face attribute, landmark, pose and parsing "
                "result is meaningless. Build with --facexformer-weights to serve the released checkpoint."
            )

    def _handle(self, request: Any) -> dict[str, Any]:
        crops = input_array(pb_utils, request, "FACE_CROPS")
        boxes = input_array(pb_utils, request, "CROP_BOXES")
        return self.stage.run(crops, boxes).to_triton()

    def execute(self, requests: list[Any]) -> list[Any]:
        return answer_each(pb_utils, requests, self._handle, model="facexformer", log=logger)
