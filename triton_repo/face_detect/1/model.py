"""Triton python model ``face_detect``: decode -> CenterFace, for face-aware scheduling.

Clients detect every frame with it and send only the faces that need analysis to
``face_analyze``. A thin adapter around :class:`faceflow.models.pipeline.LocatorStage`.
"""

from __future__ import annotations

import logging
from typing import Any

import triton_python_backend_utils as pb_utils

from faceflow.models.pipeline import LocatorStage
from faceflow.models.triton_detector import detector_from_config, max_pixels
from faceflow.models.triton_support import answer_each, input_array, model_parameters

logger = logging.getLogger("faceflow.triton.face_detect")


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = model_parameters(args)
        self.stage = LocatorStage(
            detector=detector_from_config(pb_utils, args, params), max_pixels=max_pixels(params)
        )

    def _handle(self, request: Any) -> dict[str, Any]:
        images = input_array(pb_utils, request, "IMAGES").reshape(-1)
        return self.stage.run([bytes(x) for x in images]).as_tensors()

    def execute(self, requests: list[Any]) -> list[Any]:
        return answer_each(pb_utils, requests, self._handle, model="face_detect", log=logger)
