"""Triton python-backend model ``frame_info``: decode each encoded frame, report its size.

FRAME_STATUS follows the ``face_pipeline`` codes (0 ok, 1 undecodable, 2 too large), from the same
decoder the pipeline uses (:func:`faceflow.models.imaging.decode_picture`: JPEG and PNG, the
per-frame pixel limit checked from the header, Pillow's bomb limit). HEIGHT and WIDTH are the
oriented size. A bad frame never fails the request: it gets its status and the rest of the batch
is answered.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from faceflow.models.contract import FrameStatus
from faceflow.models.imaging import DecodeLimits, PictureTooLarge, decode_picture

logger = logging.getLogger(__name__)
LIMITS = DecodeLimits()


def _probe(data: bytes) -> tuple[int, int, int]:
    try:
        picture = decode_picture(data, LIMITS)
    except PictureTooLarge:
        return int(FrameStatus.TOO_LARGE), 0, 0
    except Exception:  # noqa: BLE001 - any decoder failure is data, not a crash
        return int(FrameStatus.UNDECODABLE), 0, 0
    return int(FrameStatus.OK), picture.height, picture.width


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        logger.info("frame_info: pixel limit %d", LIMITS.max_pixels)

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
