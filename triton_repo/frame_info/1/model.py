"""Triton python-backend model ``frame_info``: decode each encoded frame, report its size.

FRAME_STATUS follows the ``face_pipeline`` codes (0 ok, 1 undecodable, 2 too large). A bad frame
never fails the request: it gets its status and the rest of the batch is answered.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image

from faceflow.models.contract import MAX_FRAME_PIXELS as MAX_PIXELS

logger = logging.getLogger(__name__)


def _probe(data: bytes) -> tuple[int, int, int]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                return 2, height, width
            img.load()
            return 0, height, width
    except Exception:  # noqa: BLE001 - any decoder failure is data, not a crash
        return 1, 0, 0


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        Image.MAX_IMAGE_PIXELS = None  # we enforce MAX_PIXELS ourselves, as a status

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGES").as_numpy().reshape(-1)
            results = np.array([_probe(bytes(item)) for item in images], dtype=np.int32).reshape(-1, 3)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("FRAME_STATUS", results[:, 0].copy()),
                        pb_utils.Tensor("HEIGHT", results[:, 1].copy()),
                        pb_utils.Tensor("WIDTH", results[:, 2].copy()),
                    ]
                )
            )
        return responses
