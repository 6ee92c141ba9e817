"""The stages of the Triton models as plain library code.

Triton's python models (``triton_repo/<model>/1/model.py``) are thin wrappers around these
classes, so the same code runs in tests without Triton and behind it:

* :class:`LocatorStage` (Triton model ``face_detect``): decodes the encoded frames and runs
  CenterFace: statuses, boxes, scores, 5 keypoints.
* :class:`CropStage`: from decoded frames and given faces, the FaceXFormer crops (box grown 25% per
  side, 224 bicubic, ImageNet mean/std) and the 5-point aligned 150x150 identity chips.
* :class:`DetectorStage` (``face_detector``, the first step of ``face_pipeline``): both of the
  above on one decode of each frame.
* :class:`CropperStage` (``face_cropper``, the first step of ``face_analyze``): decodes the frames
  the request names and crops exactly the faces it gives, after checking them.
* :class:`FaceModelStage` (``facexformer``): the FaceXFormer ONNX on onnxruntime, heads decoded
  into the contract's tensors (probabilities, frame-pixel landmarks, parsing class ids).
* :class:`EmbedderStage` (``face_embedder``): dlib ResNet descriptors of the chips.

A frame that cannot be decoded, is too large, or has too many faces gets its ``FRAME_STATUS``;
it never fails the batch. A ``face_analyze`` request whose faces do not fit its frames fails as a
whole with :class:`FaceRequestError`, whose message names the face and the rule it breaks.

Frames are decoded by :mod:`faceflow.models.imaging` within :class:`FrameLimits`: a per-frame pixel
limit from the header, a pixel budget per request (frames past it get TOO_LARGE), a working size
no smaller than ``min_side`` (JPEG DCT scaling, then an integer shrink) and a cap on the pixels of
one detector call. Boxes, keypoints and crop boxes are always in the pixels of the full frame. A
stage given ``cancelled`` checks it before each frame, each detector call and each frame's crops,
and raises :class:`RequestCancelled` once it answers True.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from faceflow.errors import FaceflowError
from faceflow.models.boxes import expand_box
from faceflow.models.centerface_decode import Detections
from faceflow.models.contract import (
    CROP_MARGIN,
    CROP_SIZE,
    DECODE_MIN_SIDE,
    DETECT_BATCH_PIXELS,
    DETECT_MAX_SIDE,
    FACEXFORMER_INPUT,
    FACEXFORMER_OUTPUTS,
    FRAME_FORMATS,
    IDENTITY_CHIP_SIZE,
    IDENTITY_DIM,
    MAX_FRAME_PIXELS,
    REQUEST_PIXEL_BUDGET,
    FrameStatus,
)
from faceflow.models.crops import crop_faces
from faceflow.models.decode import HeadOutputs, decode_heads
from faceflow.models.imaging import DecodedPicture, DecodeLimits, ImageError, PictureTooLarge, decode_picture

logger = logging.getLogger(__name__)

#: How far (pixels) a given face box may reach outside its frame before face_analyze refuses it.
BOX_TOLERANCE_PX: Final[float] = 1.0

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]


class FaceRequestError(ValueError):
    """A ``face_analyze`` request whose faces do not fit its frames (the request's error)."""


class RequestCancelled(FaceflowError):  # noqa: N818
    """The request was cancelled (its deadline passed or its client went away) while it ran."""


#: Asked between frames: True once the request is cancelled (``request.is_cancelled`` in Triton).
CancelCheck = Callable[[], bool]


def _stop_if_cancelled(cancelled: CancelCheck | None, where: str) -> None:
    if cancelled is not None and cancelled():
        raise RequestCancelled(f"request cancelled {where}")


@dataclass(frozen=True, kw_only=True)
class FrameLimits:
    """What decoding and detecting one request's frames may cost (the models' ``max_pixels``,
    ``request_pixels``, ``decode_min_side`` and ``detect_batch_pixels`` parameters).

    Attributes:
        max_pixels: most pixels of one frame, from its header.
        request_pixels: most pixels decoded over all frames of one request.
        min_side: a frame is decoded smaller (JPEG DCT scaling, then an integer shrink) while its
            longest side stays at least this; None decodes every frame at full size.
        detect_batch_pixels: most detector-input pixels in one detector call (a frame counts at
            most ``DETECT_MAX_SIDE`` squared).
    """

    max_pixels: int = MAX_FRAME_PIXELS
    request_pixels: int = REQUEST_PIXEL_BUDGET
    min_side: int | None = DECODE_MIN_SIDE
    detect_batch_pixels: int = DETECT_BATCH_PIXELS
    decode: DecodeLimits = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("request_pixels", "detect_batch_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        limits = DecodeLimits(max_pixels=self.max_pixels, min_side=self.min_side, formats=FRAME_FORMATS)
        object.__setattr__(self, "decode", limits)


def decode_status(
    data: bytes, limits: DecodeLimits, *, max_decoded_pixels: int | None = None
) -> tuple[FrameStatus, DecodedPicture | None]:
    """Encoded bytes -> (status, picture or None): a refusal becomes the frame's status."""
    try:
        return FrameStatus.OK, decode_picture(data, limits, max_decoded_pixels=max_decoded_pixels)
    except PictureTooLarge as exc:
        logger.debug("frame too large (%d bytes): %s", len(data), exc)
        return FrameStatus.TOO_LARGE, None
    except ImageError as exc:
        logger.debug("undecodable frame (%d bytes): %s", len(data), exc)
        return FrameStatus.UNDECODABLE, None


def decode_frame(data: bytes, *, max_pixels: int = MAX_FRAME_PIXELS) -> tuple[FrameStatus, np.ndarray | None]:
    """Encoded bytes -> (status, ``[H,W,3]`` uint8 RGB at full size, or None).

    Every Pillow mode becomes RGB by :data:`faceflow.models.imaging.MODE_TABLE`; EXIF orientation
    is applied. The pixel limit is checked from the header, before anything large is allocated.
    """
    status, picture = decode_status(data, DecodeLimits(max_pixels=max_pixels, formats=FRAME_FORMATS))
    return status, None if picture is None else picture.rgb


def decode_request(
    encoded: Sequence[bytes],
    limits: FrameLimits,
    *,
    wanted: set[int] | None = None,
    cancelled: CancelCheck | None = None,
) -> tuple[I32, list[DecodedPicture | None]]:
    """Decode a request's frames in order within ``limits`` (those in ``wanted`` only, if given).

    A frame that would take more than what is left of ``limits.request_pixels`` gets TOO_LARGE;
    later frames that fit are still decoded.
    """
    statuses = np.zeros(len(encoded), np.int32)
    pictures: list[DecodedPicture | None] = []
    left = limits.request_pixels
    for i, data in enumerate(encoded):
        _stop_if_cancelled(cancelled, f"before frame {i} of {len(encoded)}")
        if wanted is not None and i not in wanted:
            pictures.append(None)  # not needed: never decoded
            continue
        status, picture = decode_status(bytes(data), limits.decode, max_decoded_pixels=left)
        statuses[i] = int(status)
        if picture is not None:
            left -= picture.decoded_pixels
        pictures.append(picture)
    return statuses, pictures


def _rescale(values: F32, picture: DecodedPicture, *, to_frame: bool) -> F32:
    """Boxes ``[...,4]`` or points ``[...,2]`` from the decoded picture's pixels to the full frame's
    (``to_frame``) or back; unchanged when the picture was decoded at full size."""
    if not picture.reduced:
        return values
    sx, sy = picture.scale
    factors = np.tile(np.array([sx, sy]), values.shape[-1] // 2)
    wide = values.astype(np.float64)
    scaled: F32 = (wide * factors if to_frame else wide / factors).astype(np.float32)
    return scaled


def _cat(parts: list[np.ndarray], shape: tuple[int, ...], dtype: type[np.generic]) -> np.ndarray:
    if not parts:
        return np.zeros((0, *shape), dtype)
    return np.ascontiguousarray(np.concatenate(parts).astype(dtype, copy=False))


@dataclass(frozen=True)
class LocatedFaces:
    """What ``face_detect`` returns for N frames with F faces in all (F may be 0), in full-frame
    pixels, plus the decoded frames (None where not decoded) for a crop stage in the same process."""

    frame_status: I32  # [N]
    frame_index: I32  # [F]
    boxes: F32  # [F,4]
    scores: F32  # [F]
    keypoints5: F32  # [F,5,2]
    pictures: tuple[DecodedPicture | None, ...]

    def __post_init__(self) -> None:
        f = self.frame_index.shape[0]
        expected = {"boxes": (f, 4), "scores": (f,), "keypoints5": (f, 5, 2)}
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"expected {name} of shape {list(shape)}, got {list(got)}")
        if len(self.pictures) != self.frame_status.shape[0]:
            raise ValueError(f"expected {self.frame_status.shape[0]} pictures, got {len(self.pictures)}")

    def as_tensors(self) -> dict[str, np.ndarray]:
        return {
            "FRAME_STATUS": self.frame_status,
            "FRAME_INDEX": self.frame_index,
            "BOXES": self.boxes,
            "SCORES": self.scores,
            "KEYPOINTS5": self.keypoints5,
        }


@dataclass(frozen=True)
class CroppedFaces:
    """The face model's and the embedder's inputs for F faces."""

    crop_boxes: F32  # [F,4]
    face_crops: F32  # [F,3,224,224]
    id_chips: U8  # [F,150,150,3]

    def __post_init__(self) -> None:
        f = self.crop_boxes.shape[0]
        expected = {
            "crop_boxes": (f, 4),
            "face_crops": (f, 3, CROP_SIZE, CROP_SIZE),
            "id_chips": (f, IDENTITY_CHIP_SIZE, IDENTITY_CHIP_SIZE, 3),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"expected {name} of shape {list(shape)}, got {list(got)}")

    def as_tensors(self) -> dict[str, np.ndarray]:
        return {"CROP_BOXES": self.crop_boxes, "FACE_CROPS": self.face_crops, "ID_CHIPS": self.id_chips}


@dataclass(frozen=True)
class DetectorOutput:
    """What ``face_detector`` returns: located faces and their crops."""

    located: LocatedFaces
    cropped: CroppedFaces

    def as_tensors(self) -> dict[str, np.ndarray]:
        out = self.located.as_tensors()
        out["CROP_BOXES"] = self.cropped.crop_boxes
        out["FACE_CROPS"] = self.cropped.face_crops
        out["ID_CHIPS"] = self.cropped.id_chips
        return out

    @property
    def frame_status(self) -> I32:
        return self.located.frame_status

    @property
    def frame_index(self) -> I32:
        return self.located.frame_index

    @property
    def crop_boxes(self) -> F32:
        return self.cropped.crop_boxes

    @property
    def face_crops(self) -> F32:
        return self.cropped.face_crops

    @property
    def id_chips(self) -> U8:
        return self.cropped.id_chips


class BatchDetector(Protocol):
    """What :class:`LocatorStage` needs of a detector (:class:`CenterFaceDetector`, or a fake)."""

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


class LocatorStage:
    """Decode and detect. Thread-safe (no per-call state on ``self``)."""

    def __init__(self, *, detector: BatchDetector, limits: FrameLimits | None = None) -> None:
        self.detector = detector
        self.limits = limits or FrameLimits()

    def run(self, encoded: Sequence[bytes], *, cancelled: CancelCheck | None = None) -> LocatedFaces:
        statuses, pictures = decode_request(encoded, self.limits, cancelled=cancelled)
        decoded = [(i, p) for i, p in enumerate(pictures) if p is not None]
        per_frame = self._detect([p.rgb for _, p in decoded], cancelled)
        idx: list[np.ndarray] = []
        box: list[np.ndarray] = []
        score: list[np.ndarray] = []
        kp: list[np.ndarray] = []
        for (i, picture), det in zip(decoded, per_frame, strict=True):
            if det.truncated:
                statuses[i] = int(FrameStatus.TOO_MANY_FACES)
            if len(det) == 0:
                continue
            idx.append(np.full(len(det), i, np.int32))
            box.append(_rescale(det.boxes, picture, to_frame=True))
            score.append(det.scores)
            kp.append(_rescale(det.keypoints5, picture, to_frame=True))
        return LocatedFaces(
            frame_status=statuses,
            frame_index=_cat(idx, (), np.int32),
            boxes=_cat(box, (4,), np.float32),
            scores=_cat(score, (), np.float32),
            keypoints5=_cat(kp, (5, 2), np.float32),
            pictures=tuple(pictures),
        )

    def _detect(self, images: list[np.ndarray], cancelled: CancelCheck | None) -> list[Detections]:
        """One detector call per group of equal-sized frames (padding mixed sizes together wastes
        work), split so that no call holds more than ``limits.detect_batch_pixels`` input pixels."""
        results: list[Detections | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.shape, []).append(i)
        for indices in groups.values():
            h, w = images[indices[0]].shape[:2]
            per_call = max(
                1, self.limits.detect_batch_pixels // min(h * w, DETECT_MAX_SIDE * DETECT_MAX_SIDE)
            )
            for start in range(0, len(indices), per_call):
                chunk = indices[start : start + per_call]
                _stop_if_cancelled(cancelled, f"before detecting {len(chunk)} of {len(images)} frames")
                for i, det in zip(chunk, self.detector.detect_batch([images[i] for i in chunk]), strict=True):
                    results[i] = det
        return [r if r is not None else Detections.empty() for r in results]


ChipFn = Callable[[np.ndarray, np.ndarray, np.ndarray], U8]


class CropStage:
    """Face-model crops and identity chips of given faces (full-frame pixels) of decoded frames."""

    def __init__(self, *, chips: ChipFn) -> None:
        self.chips = chips

    def run(
        self,
        pictures: Sequence[DecodedPicture | None],
        frame_index: I32,
        boxes: F32,
        keypoints5: F32,
        *,
        cancelled: CancelCheck | None = None,
    ) -> CroppedFaces:
        crop_parts: list[np.ndarray] = []
        face_parts: list[np.ndarray] = []
        chip_parts: list[np.ndarray] = []
        order: list[np.ndarray] = []
        for i in np.unique(frame_index):
            _stop_if_cancelled(cancelled, f"before cropping the faces of frame {int(i)}")
            rows = np.flatnonzero(frame_index == i)
            picture = pictures[int(i)]
            if picture is None:
                raise FaceRequestError(f"frame {int(i)} has no pixels (undecodable or too large)")
            rgb = picture.rgb
            h, w = rgb.shape[:2]
            face_boxes = _rescale(boxes[rows], picture, to_frame=False)
            face_keypoints = _rescale(keypoints5[rows], picture, to_frame=False)
            crop_boxes = expand_box(face_boxes, CROP_MARGIN, width=w, height=h)
            crop_boxes = crop_boxes.astype(np.float32).reshape(-1, 4)
            face_parts.append(crop_faces(rgb, crop_boxes))
            chip_parts.append(self.chips(rgb, face_keypoints, face_boxes))
            crop_parts.append(_rescale(crop_boxes, picture, to_frame=True))
            order.append(rows)
        crops = _cat(crop_parts, (4,), np.float32)
        faces = _cat(face_parts, (3, CROP_SIZE, CROP_SIZE), np.float32)
        chips = _cat(chip_parts, (IDENTITY_CHIP_SIZE, IDENTITY_CHIP_SIZE, 3), np.uint8)
        if order:
            # back to the request's face order (frames were visited in index order)
            inverse = np.argsort(np.concatenate(order), kind="stable")
            crops, faces, chips = crops[inverse], faces[inverse], chips[inverse]
        return CroppedFaces(crop_boxes=crops, face_crops=faces, id_chips=chips)


class DetectorStage:
    """``face_detector``: decode, detect, crop and align, with one decode per frame."""

    def __init__(self, *, detector: BatchDetector, chips: ChipFn, limits: FrameLimits | None = None) -> None:
        self.locator = LocatorStage(detector=detector, limits=limits)
        self.cropper = CropStage(chips=chips)

    def run(self, encoded: Sequence[bytes], *, cancelled: CancelCheck | None = None) -> DetectorOutput:
        located = self.locator.run(encoded, cancelled=cancelled)
        cropped = self.cropper.run(
            located.pictures, located.frame_index, located.boxes, located.keypoints5, cancelled=cancelled
        )
        return DetectorOutput(located=located, cropped=cropped)


def check_faces(
    frame_status: I32, sizes: Sequence[tuple[int, int] | None], frame_index: I32, boxes: F32, keypoints5: F32
) -> None:
    """Check that the faces given to ``face_analyze`` fit its frames.

    ``sizes`` holds (width, height) of each decoded frame (None when it has no pixels).

    Raises:
        FaceRequestError: naming the first face that breaks a rule and the rule.
    """
    f = frame_index.shape[0] if frame_index.ndim == 1 else -1
    if frame_index.ndim != 1 or boxes.shape != (f, 4) or keypoints5.shape != (f, 5, 2):
        raise FaceRequestError(
            f"expected FRAME_INDEX [F], BOXES [F,4] and KEYPOINTS5 [F,5,2] with one F, got "
            f"{list(frame_index.shape)}, {list(boxes.shape)} and {list(keypoints5.shape)}"
        )
    n = len(sizes)
    for face in range(f):
        index = int(frame_index[face])
        if not 0 <= index < n:
            raise FaceRequestError(
                f"FRAME_INDEX[{face}] = {index}: expected a frame index in 0..{n - 1} ({n} frames)"
            )
        size = sizes[index]
        if size is None:
            raise FaceRequestError(
                f"FRAME_INDEX[{face}] = {index}: frame {index} has FRAME_STATUS {int(frame_status[index])} "
                f"(no pixels to analyze)"
            )
        w, h = size
        x1, y1, x2, y2 = (float(v) for v in boxes[face])
        t = BOX_TOLERANCE_PX
        if not np.isfinite(boxes[face]).all() or not np.isfinite(keypoints5[face]).all():
            raise FaceRequestError(f"face {face}: expected finite BOXES and KEYPOINTS5, got NaN or inf")
        if not (x2 > x1 and y2 > y1):
            raise FaceRequestError(f"BOXES[{face}] = {[x1, y1, x2, y2]}: expected x2 > x1 and y2 > y1")
        if x1 < -t or y1 < -t or x2 > w + t or y2 > h + t:
            raise FaceRequestError(
                f"BOXES[{face}] = {[round(v, 1) for v in (x1, y1, x2, y2)]}: expected a box inside frame "
                f"{index} ({w}x{h})"
            )


class CropperStage:
    """``face_cropper``: decode the frames of a ``face_analyze`` request, check its faces, crop them."""

    def __init__(self, *, chips: ChipFn, limits: FrameLimits | None = None) -> None:
        self.cropper = CropStage(chips=chips)
        self.limits = limits or FrameLimits()

    def run(
        self,
        encoded: Sequence[bytes],
        frame_index: I32,
        boxes: F32,
        keypoints5: F32,
        *,
        cancelled: CancelCheck | None = None,
    ) -> CroppedFaces:
        wanted = set(int(i) for i in frame_index.reshape(-1)) if frame_index.size else set()
        statuses, pictures = decode_request(encoded, self.limits, wanted=wanted, cancelled=cancelled)
        sizes = [None if p is None else (p.width, p.height) for p in pictures]
        check_faces(statuses, sizes, frame_index.astype(np.int32), boxes.astype(np.float32), keypoints5)
        return self.cropper.run(pictures, frame_index, boxes, keypoints5, cancelled=cancelled)


RawHeadsFn = Callable[[F32], Sequence[np.ndarray]]


class FaceModelStage:
    """FaceXFormer heads for a batch of crops, decoded to the contract's tensors."""

    def __init__(self, run_raw: RawHeadsFn, *, max_batch: int = 16) -> None:
        if max_batch < 1:
            raise ValueError(f"expected max_batch >= 1, got {max_batch}")
        self.run_raw = run_raw
        self.max_batch = max_batch

    @classmethod
    def from_onnx(cls, path: Path, *, intra_op_threads: int = 0, max_batch: int = 16) -> FaceModelStage:
        import onnxruntime as ort  # noqa: PLC0415 - the adapter edge

        from faceflow.models.threads import session_options  # noqa: PLC0415

        options = session_options(intra_op_threads)  # threads sized for the cores, no spinning
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        logger.info("FaceXFormer ONNX %s loaded (max_batch=%d)", path, max_batch)

        def run_raw(crops: F32) -> Sequence[np.ndarray]:
            outputs: list[np.ndarray] = session.run(list(FACEXFORMER_OUTPUTS), {FACEXFORMER_INPUT: crops})
            return outputs

        return cls(run_raw, max_batch=max_batch)

    def run(self, face_crops: F32, crop_boxes: F32) -> HeadOutputs:
        f = face_crops.shape[0]
        if face_crops.shape[1:] != (3, CROP_SIZE, CROP_SIZE):
            raise ValueError(
                f"expected FACE_CROPS of shape [F,3,{CROP_SIZE},{CROP_SIZE}], got {list(face_crops.shape)}"
            )
        if crop_boxes.shape != (f, 4):
            raise ValueError(f"expected CROP_BOXES of shape [{f},4], got {list(crop_boxes.shape)}")
        if f == 0:
            return HeadOutputs.empty()
        chunks: list[HeadOutputs] = []
        for start in range(0, f, self.max_batch):
            sl = slice(start, start + self.max_batch)
            raw = self.run_raw(np.ascontiguousarray(face_crops[sl], dtype=np.float32))
            named = dict(zip(FACEXFORMER_OUTPUTS, raw, strict=True))
            chunks.append(decode_heads(**named, crop_boxes=crop_boxes[sl]))
        if len(chunks) == 1:
            return chunks[0]
        merged = {
            name: np.concatenate([c.to_triton()[name] for c in chunks]) for name in chunks[0].to_triton()
        }
        return HeadOutputs.from_triton(merged)


class EmbedderStage:
    """128-D dlib ResNet descriptors of 5-point aligned 150x150 chips."""

    def __init__(self, model_path: Path | None = None) -> None:
        import dlib  # noqa: PLC0415 - the adapter edge

        from faceflow.models.identity import model_paths  # noqa: PLC0415

        path = model_path or model_paths()[0]
        self._net = dlib.face_recognition_model_v1(str(path))
        logger.info("dlib ResNet loaded from %s", path)

    def run(self, chips: U8) -> F32:
        if chips.ndim != 4 or chips.shape[1:] != (IDENTITY_CHIP_SIZE, IDENTITY_CHIP_SIZE, 3):
            raise ValueError(
                f"expected ID_CHIPS of shape [F,{IDENTITY_CHIP_SIZE},{IDENTITY_CHIP_SIZE},3], "
                f"got {list(chips.shape)}"
            )
        if chips.shape[0] == 0:
            return np.zeros((0, IDENTITY_DIM), np.float32)
        batch = [np.ascontiguousarray(chip, dtype=np.uint8) for chip in chips]
        vectors = self._net.compute_face_descriptor(batch)
        return np.asarray([np.asarray(v) for v in vectors], np.float32).reshape(-1, IDENTITY_DIM)
