"""The ensemble's stages as library code (no Triton): decoding, statuses, shapes, chunking."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from faceflow.models.centerface_decode import Detections
from faceflow.models.contract import FACEXFORMER_HEADS, FACEXFORMER_OUTPUTS, FrameStatus
from faceflow.models.pipeline import (
    CropperStage,
    DetectorStage,
    FaceModelStage,
    FaceRequestError,
    LocatorStage,
    decode_frame,
)


def encode(mode: str, size: tuple[int, int] = (40, 30), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "status", "shape"),
    [
        (encode("RGB", fmt="JPEG"), FrameStatus.OK, (30, 40, 3)),
        (encode("L"), FrameStatus.OK, (30, 40, 3)),
        (encode("LA"), FrameStatus.OK, (30, 40, 3)),
        (encode("RGBA"), FrameStatus.OK, (30, 40, 3)),
        (encode("P"), FrameStatus.OK, (30, 40, 3)),
        (encode("CMYK", fmt="JPEG"), FrameStatus.OK, (30, 40, 3)),
        (encode("I;16"), FrameStatus.OK, (30, 40, 3)),
        (b"", FrameStatus.UNDECODABLE, None),
        (b"\xff\xd8\xff\xe0 truncated jpeg", FrameStatus.UNDECODABLE, None),
        (b"not an image at all", FrameStatus.UNDECODABLE, None),
        (encode("RGB", size=(3000, 2000)), FrameStatus.TOO_LARGE, None),  # over the 5 MP limit below
    ],
)
def test_decode_frame(data: bytes, status: FrameStatus, shape: tuple[int, ...] | None) -> None:
    got, rgb = decode_frame(data, max_pixels=5_000_000)
    assert got == status
    assert (rgb.shape if rgb is not None else None) == shape
    if rgb is not None:
        assert rgb.dtype == np.uint8


class FakeDetector:
    """Returns canned detections: one face per frame, or a truncated frame."""

    def __init__(self, faces_per_frame: int, truncated: bool = False) -> None:
        self.faces, self.truncated = faces_per_frame, truncated

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        out = []
        for img in images:
            h, w = img.shape[:2]
            boxes = np.tile(np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]], np.float32), (self.faces, 1))
            kps = np.tile(np.array([[[w * 0.4, h * 0.4]] * 5], np.float32), (self.faces, 1, 1))
            out.append(Detections(boxes, np.full(self.faces, 0.9, np.float32), kps, truncated=self.truncated))
        return out


def fake_chips(rgb: np.ndarray, kps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    return np.zeros((len(kps), 150, 150, 3), np.uint8)


@pytest.mark.parametrize(("faces", "truncated"), [(0, False), (1, False), (3, True)])
def test_detector_stage_statuses_and_shapes(faces: int, truncated: bool) -> None:
    stage = DetectorStage(detector=FakeDetector(faces, truncated), chips=fake_chips)  # type: ignore[arg-type]
    frames = [encode("RGB", (64, 48), "JPEG"), b"junk", encode("RGB", (32, 32), "PNG")]
    out = stage.run(frames)
    ok = int(FrameStatus.TOO_MANY_FACES if truncated else FrameStatus.OK)
    assert out.frame_status.tolist() == [ok, int(FrameStatus.UNDECODABLE), ok]
    assert out.frame_index.tolist() == [0] * faces + [2] * faces
    assert out.face_crops.shape == (2 * faces, 3, 224, 224) and out.face_crops.dtype == np.float32
    assert out.id_chips.shape == (2 * faces, 150, 150, 3)
    if faces:
        # crop box = detector box grown by 25% of its size on each side, clamped to the frame
        np.testing.assert_allclose(out.crop_boxes[0], [8, 6, 56, 42])


def test_detector_stage_with_no_decodable_frame_returns_empty_tensors() -> None:
    out = DetectorStage(detector=FakeDetector(2), chips=fake_chips).run([b"", b"x"])  # type: ignore[arg-type]
    assert out.frame_status.tolist() == [1, 1]
    assert {k: v.shape[0] for k, v in out.as_tensors().items()} == {
        "FRAME_STATUS": 2, "FRAME_INDEX": 0, "BOXES": 0, "SCORES": 0, "KEYPOINTS5": 0,
        "CROP_BOXES": 0, "FACE_CROPS": 0, "ID_CHIPS": 0,
    }  # fmt: skip


HEAD_SHAPES = dict(FACEXFORMER_HEADS)


def _raw_heads(crops: np.ndarray) -> list[np.ndarray]:
    """Deterministic per face (seeded by its crop), so chunking cannot change the results."""
    heads = []
    for i, name in enumerate(FACEXFORMER_OUTPUTS):
        per_face = [
            np.random.default_rng(int(abs(c.sum()) * 1e3) % 2**32 + i).standard_normal(HEAD_SHAPES[name])
            for c in crops
        ]
        stacked = np.stack(per_face) if per_face else np.zeros((0, *HEAD_SHAPES[name]))
        heads.append(stacked.astype(np.float32))
    return heads


def test_face_model_stage_chunking_equals_one_batch() -> None:
    rng = np.random.default_rng(0)
    crops = rng.standard_normal((5, 3, 224, 224)).astype(np.float32)
    boxes = np.tile(np.array([[10, 10, 110, 130]], np.float32), (5, 1))
    one = FaceModelStage(_raw_heads, max_batch=16).run(crops, boxes).to_triton()
    chunked = FaceModelStage(_raw_heads, max_batch=2).run(crops, boxes).to_triton()
    for name in one:
        np.testing.assert_array_equal(one[name], chunked[name], err_msg=name)
    assert one["PARSING"].dtype == np.uint8 and one["PARSING"].max() < 11
    np.testing.assert_allclose(one["AGE"].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("crops", "boxes", "error"),
    [
        (np.zeros((0, 3, 224, 224), np.float32), np.zeros((0, 4), np.float32), None),
        (
            np.zeros((1, 3, 112, 112), np.float32),
            np.zeros((1, 4), np.float32),
            "expected FACE_CROPS of shape",
        ),
        (
            np.zeros((2, 3, 224, 224), np.float32),
            np.zeros((1, 4), np.float32),
            "expected CROP_BOXES of shape",
        ),
    ],
)
def test_face_model_stage_validates(crops: np.ndarray, boxes: np.ndarray, error: str | None) -> None:
    stage = FaceModelStage(_raw_heads)
    if error:
        with pytest.raises(ValueError, match=error):
            stage.run(crops, boxes)
    else:
        assert len(stage.run(crops, boxes)) == 0


def located(frames: list[bytes], faces: int = 2) -> tuple[object, DetectorStage]:
    detector = FakeDetector(faces)
    return LocatorStage(detector=detector).run(frames), DetectorStage(detector=detector, chips=fake_chips)  # type: ignore[arg-type]


def test_locate_then_crop_equals_the_detector_stage_and_keeps_the_request_order() -> None:
    frames = [encode("RGB", (64, 48), "JPEG"), b"junk", encode("RGB", (80, 40), "PNG")]
    loc, detector_stage = located(frames)
    whole = detector_stage.run(frames)
    for name, value in loc.as_tensors().items():  # type: ignore[attr-defined]
        np.testing.assert_array_equal(value, whole.as_tensors()[name], err_msg=name)
    cropper = CropperStage(chips=fake_chips)
    cropped = cropper.run(frames, loc.frame_index, loc.boxes, loc.keypoints5)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(cropped.crop_boxes, whole.crop_boxes)
    np.testing.assert_array_equal(cropped.face_crops, whole.face_crops)
    # a subset in another order comes back in that order
    order = np.array([3, 0], np.intp)
    sub = cropper.run(frames, loc.frame_index[order], loc.boxes[order], loc.keypoints5[order])  # type: ignore[attr-defined]
    np.testing.assert_array_equal(sub.crop_boxes, whole.crop_boxes[order])


GOOD_BOX = [[10.0, 10.0, 40.0, 40.0]]
KP = np.full((1, 5, 2), 20.0, np.float32)


@pytest.mark.parametrize(
    ("frames", "index", "boxes", "kps", "message"),
    [
        (2, [0], GOOD_BOX, KP, None),
        (2, [2], GOOD_BOX, KP, r"FRAME_INDEX\[0\] = 2: expected a frame index in 0..1 \(2 frames\)"),
        (2, [-1], GOOD_BOX, KP, r"FRAME_INDEX\[0\] = -1"),
        (
            2,
            [0],
            [[10.0, 10.0, 90.0, 40.0]],
            KP,
            r"BOXES\[0\] = \[10.0, 10.0, 90.0, 40.0\]: expected a box inside frame 0 \(64x48\)",
        ),
        (2, [0], [[30.0, 10.0, 20.0, 40.0]], KP, r"expected x2 > x1 and y2 > y1"),
        (2, [0], [[np.nan, 10.0, 20.0, 40.0]], KP, "expected finite BOXES"),
        (2, [0, 1], GOOD_BOX, KP, r"with one F, got \[2\], \[1, 4\] and \[1, 5, 2\]"),
        (2, [1], GOOD_BOX, KP, r"frame 1 has FRAME_STATUS 1"),
        (2, [], np.zeros((0, 4)), np.zeros((0, 5, 2)), None),
    ],
)
def test_cropper_refuses_faces_that_do_not_fit_their_frames(
    frames: int, index: list[int], boxes: object, kps: object, message: str | None
) -> None:
    images = [encode("RGB", (64, 48), "JPEG"), b"junk"][:frames]
    stage = CropperStage(chips=fake_chips)
    args = (
        np.array(index, np.int32),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(kps, np.float32).reshape(-1, 5, 2),
    )
    if message is None:
        assert stage.run(images, *args).crop_boxes.shape == (len(index), 4)
    else:
        with pytest.raises(FaceRequestError, match=message):
            stage.run(images, *args)
