"""Triton python model ``face_cropper``: the first step of ``face_analyze``.

Decodes the frames the request's faces belong to, checks the faces against them (a FRAME_INDEX out
of range, a box outside its frame or mismatched counts is the request's INVALID_ARG error, naming
the face), and crops and aligns them. A thin adapter around
:class:`faceflow.models.pipeline.CropperStage`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from faceflow.models.identity import IdentityEmbedder
from faceflow.models.pipeline import CropperStage, FaceRequestError
from faceflow.models.triton_detector import max_pixels
from faceflow.models.triton_support import RequestInputError, answer_each, input_array, model_parameters

logger = logging.getLogger("faceflow.triton.face_cropper")


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = model_parameters(args)
        self.stage = CropperStage(chips=IdentityEmbedder().chips, max_pixels=max_pixels(params))

    def _handle(self, request: Any) -> dict[str, Any]:
        images = input_array(pb_utils, request, "IMAGES").reshape(-1)
        index = input_array(pb_utils, request, "FRAME_INDEX").astype(np.int32)
        boxes = input_array(pb_utils, request, "BOXES").astype(np.float32)
        keypoints = input_array(pb_utils, request, "KEYPOINTS5").astype(np.float32)
        return self.stage.run([bytes(x) for x in images], index, boxes, keypoints).as_tensors()

    def execute(self, requests: list[Any]) -> list[Any]:
        return answer_each(
            pb_utils, requests, self._handle, model="face_analyze", log=logger,
            invalid=(RequestInputError, FaceRequestError),
        )  # fmt: skip
