"""Face crops for the face model: the pixels (Pillow). Crop boxes and coordinates are in
:mod:`faceflow.models.boxes` (pure).

The contract (DESIGN.md "Model semantics", values from :mod:`faceflow.models.contract`): the crop
is the detector box grown by ``CROP_MARGIN`` (25%) of its width / height on each side, clamped to
the frame, resized to ``CROP_SIZE`` x ``CROP_SIZE`` bicubic (not aspect-preserving), RGB, ImageNet
mean/std, CHW.
"""

from __future__ import annotations

import logging
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceflow.models.boxes import as_boxes
from faceflow.models.contract import CROP_SIZE, IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)

__all__ = ["crop_faces"]

FloatArray = npt.NDArray[np.float32]

_MEAN: Final[FloatArray] = np.asarray(IMAGENET_MEAN, np.float32).reshape(3, 1, 1)
_STD: Final[FloatArray] = np.asarray(IMAGENET_STD, np.float32).reshape(3, 1, 1)


def crop_faces(image_rgb: np.ndarray, crop_boxes: npt.ArrayLike, size: int = CROP_SIZE) -> FloatArray:
    """Cut, resize (bicubic) and normalise every crop box: ``[H,W,3]`` uint8 -> ``[F,3,size,size]`` float32.

    Crop boxes are in frame pixels (usually from :func:`expand_box`); a box must lie inside the
    frame and have positive width and height. F may be 0.
    """
    if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        got = list(image_rgb.shape) if isinstance(image_rgb, np.ndarray) else type(image_rgb).__name__
        raise ValueError(f"expected an RGB image of shape [H,W,3], got {got}")
    if image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an image of dtype uint8, got {image_rgb.dtype}")
    boxes = as_boxes(crop_boxes, "crop_boxes")
    if bool(((boxes[:, 2] - boxes[:, 0] <= 0) | (boxes[:, 3] - boxes[:, 1] <= 0)).any()):
        raise ValueError("expected crop boxes with positive width and height, got an empty box")
    h, w = image_rgb.shape[:2]
    outside = (boxes[:, :2] < 0).any(axis=1) | (boxes[:, 2] > w) | (boxes[:, 3] > h)
    if bool(outside.any()):
        raise ValueError(
            f"expected crop boxes inside the {w}x{h} frame (see expand_box), got {boxes[outside][0].tolist()}"
        )
    out = np.empty((boxes.shape[0], 3, size, size), dtype=np.float32)
    if boxes.shape[0] == 0:
        return out
    pil = Image.fromarray(np.ascontiguousarray(image_rgb))
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        crop = pil.resize((size, size), Image.Resampling.BICUBIC, box=(x1, y1, x2, y2))
        chw = np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
        out[i] = (chw - _MEAN) / _STD
    return out
