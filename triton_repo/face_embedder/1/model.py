"""Triton python model ``face_embedder``: dlib ResNet 128-D descriptors of aligned chips."""

from __future__ import annotations

import logging
from typing import Any

import triton_python_backend_utils as pb_utils

from faceflow.models.pipeline import EmbedderStage
from faceflow.models.triton_support import answer_each, input_array

logger = logging.getLogger("faceflow.triton.face_embedder")


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.stage = EmbedderStage()

    def _handle(self, request: Any) -> dict[str, Any]:
        return {"EMBEDDING": self.stage.run(input_array(pb_utils, request, "ID_CHIPS"))}

    def execute(self, requests: list[Any]) -> list[Any]:
        return answer_each(pb_utils, requests, self._handle, model="face_embedder", log=logger)
