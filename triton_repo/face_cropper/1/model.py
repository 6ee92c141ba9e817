"""Triton python model ``face_cropper``: the first step of ``face_analyze``.

Decodes the frames the request's faces belong to, checks the faces against them (a FRAME_INDEX out
of range, a box outside its frame or mismatched counts is the request's INVALID_ARG error, naming
the face), and crops and aligns them. A thin adapter around
:class:`faceflow.models.pipeline.CropperStage`, with the decoding limits of its config
(``max_pixels``, ``request_pixels``, ``decode_min_side``), read as ``face_detect`` reads them, so
that the crops match the boxes ``face_detect`` found. A request Triton cancels while it runs
(checked between frames) is answered with CANCELLED. Memory freed by a batch is handed back to the
OS after it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from faceflow.models.identity import IdentityEmbedder
from faceflow.models.pipeline import CropperStage, FaceRequestError, RequestCancelled
from faceflow.models.triton_detector import frame_limits
from faceflow.models.triton_support import (
    RequestInputError,
    answer_each,
    input_array,
    is_cancelled,
    log_to_triton,
    model_parameters,
    release_freed_memory,
)

logger = logging.getLogger("faceflow.triton.face_cropper")


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        log_to_triton(pb_utils, logger)
        params = model_parameters(args)
        self.stage = CropperStage(chips=IdentityEmbedder().chips, limits=frame_limits(params))

    def _handle(self, request: Any) -> dict[str, Any]:
        images = input_array(pb_utils, request, "IMAGES").reshape(-1)
        index = input_array(pb_utils, request, "FRAME_INDEX").astype(np.int32)
        boxes = input_array(pb_utils, request, "BOXES").astype(np.float32)
        keypoints = input_array(pb_utils, request, "KEYPOINTS5").astype(np.float32)
        frames = [bytes(x) for x in images]
        return self.stage.run(
            frames, index, boxes, keypoints, cancelled=lambda: is_cancelled(request)
        ).as_tensors()

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = answer_each(
            pb_utils,
            requests,
            self._handle,
            model="face_analyze",
            log=logger,
            invalid=(RequestInputError, FaceRequestError),
            cancelled=(RequestCancelled,),
        )
        release_freed_memory()  # the batch's decoded frames go back to the OS, not to a heap it keeps
        return responses
