"""Triton python model ``face_detect``: decode -> CenterFace, for face-aware scheduling.

Clients detect every frame with it and send only the faces that need analysis to
``face_analyze``. A thin adapter around :class:`faceflow.models.pipeline.LocatorStage`, with the
decoding limits of its config (``max_pixels``, ``request_pixels``, ``decode_min_side``,
``detect_batch_pixels``). A request Triton cancels while it runs (checked between frames) is
answered with CANCELLED. Memory freed by a batch is handed back to the OS after it.
"""

from __future__ import annotations

import logging
from typing import Any

import triton_python_backend_utils as pb_utils

from faceflow.models.pipeline import LocatorStage, RequestCancelled
from faceflow.models.triton_detector import detector_from_config, frame_limits
from faceflow.models.triton_support import (
    answer_each,
    input_array,
    is_cancelled,
    log_to_triton,
    model_parameters,
    release_freed_memory,
)

logger = logging.getLogger("faceflow.triton.face_detect")


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        log_to_triton(pb_utils, logger)
        params = model_parameters(args)
        self.stage = LocatorStage(
            detector=detector_from_config(pb_utils, args, params), limits=frame_limits(params)
        )

    def _handle(self, request: Any) -> dict[str, Any]:
        images = input_array(pb_utils, request, "IMAGES").reshape(-1)
        frames = [bytes(x) for x in images]
        return self.stage.run(frames, cancelled=lambda: is_cancelled(request)).as_tensors()

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = answer_each(
            pb_utils, requests, self._handle, model="face_detect", log=logger, cancelled=(RequestCancelled,)
        )
        release_freed_memory()  # the batch's decoded frames go back to the OS, not to a heap it keeps
        return responses
