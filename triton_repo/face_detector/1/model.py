"""Triton python model ``face_detector``: decode -> CenterFace -> crops and identity chips.

The first step of ``face_pipeline``; a thin adapter around
:class:`faceflow.models.pipeline.DetectorStage`. A bad frame gets its FRAME_STATUS; the rest of the
request is answered; an exception inside one request becomes that request's error.
"""

from __future__ import annotations

import logging
from typing import Any

import triton_python_backend_utils as pb_utils

from faceflow.models.identity import IdentityEmbedder
from faceflow.models.pipeline import DetectorStage
from faceflow.models.triton_detector import detector_from_config, max_pixels
from faceflow.models.triton_support import answer_each, input_array, model_parameters

logger = logging.getLogger("faceflow.triton.face_detector")


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = model_parameters(args)
        self.stage = DetectorStage(
            detector=detector_from_config(pb_utils, args, params),
            chips=IdentityEmbedder().chips,
            max_pixels=max_pixels(params),
        )

    def _handle(self, request: Any) -> dict[str, Any]:
        images = input_array(pb_utils, request, "IMAGES").reshape(-1)
        return self.stage.run([bytes(x) for x in images]).as_tensors()

    def execute(self, requests: list[Any]) -> list[Any]:
        return answer_each(pb_utils, requests, self._handle, model="face_detector", log=logger)
