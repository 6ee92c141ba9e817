"""Triton python model ``face_embedder``: dlib ResNet 128-D descriptors of aligned chips."""

from __future__ import annotations

import logging
from typing import Any

import triton_python_backend_utils as pb_utils

from faceflow.models.pipeline import EmbedderStage

logger = logging.getLogger("faceflow.triton.face_embedder")


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.stage = EmbedderStage()

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                chips = pb_utils.get_input_tensor_by_name(request, "ID_CHIPS").as_numpy()
                embedding = self.stage.run(chips)
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("EMBEDDING", embedding)])
                )
            except Exception as exc:
                logger.exception("face_embedder request failed")
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(f"face_embedder: {exc}"))
                )
        return responses
