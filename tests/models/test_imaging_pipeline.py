"""The pipeline stages' frame limits: a per-request pixel budget, reduced frames answered in full-frame
coordinates, and work that stops when the request is cancelled."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pytest
from models.test_imaging_samples import encode, png_header, png_zeros
from PIL import Image

from faceflow.models import triton_config
from faceflow.models.boxes import expand_box
from faceflow.models.centerface_decode import Detections
from faceflow.models.contract import (
    CROP_MARGIN,
    DECODE_MIN_SIDE,
    DETECT_BATCH_PIXELS,
    MAX_FRAME_PIXELS,
    REQUEST_PIXEL_BUDGET,
)
from faceflow.models.contract import FrameStatus as S
from faceflow.models.pipeline import (
    CropperStage,
    DetectorStage,
    FaceRequestError,
    FrameLimits,
    LocatorStage,
    RequestCancelled,
    decode_frame,
)
from faceflow.models.triton_detector import frame_limits


class CenterBoxDetector:
    """One face per frame, the middle half of the frame it is given; records the frame sizes."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.calls: list[int] = []

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        self.calls.append(len(images))
        out = []
        for img in images:
            h, w = img.shape[:2]
            self.seen.append((w, h))
            boxes = np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]], np.float32)
            kps = np.array([[[w * 0.4, h * 0.4], [w * 0.6, h * 0.4], [w * 0.5, h * 0.5],
                             [w * 0.4, h * 0.6], [w * 0.6, h * 0.6]]], np.float32)  # fmt: skip
            out.append(Detections(boxes, np.full(1, 0.9, np.float32), kps))
        return out


def fake_chips(rgb: np.ndarray, kps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    return np.zeros((len(kps), 150, 150, 3), np.uint8)


SMALL = encode(Image.new("RGB", (64, 48), (80, 90, 100)), "JPEG")
SIX_MP = png_zeros(3000, 2000)


def test_the_defaults_are_the_contract_values() -> None:
    limits = FrameLimits()
    assert (limits.max_pixels, limits.request_pixels, limits.min_side) == (
        MAX_FRAME_PIXELS, REQUEST_PIXEL_BUDGET, DECODE_MIN_SIDE
    )  # fmt: skip
    assert MAX_FRAME_PIXELS == 7680 * 4320 and REQUEST_PIXEL_BUDGET == 8 * 3840 * 2160


@pytest.mark.parametrize(
    ("frames", "limits", "statuses"),
    [
        # frames past the budget get TOO_LARGE; a later frame that still fits is answered
        (
            [SIX_MP, SIX_MP, SIX_MP, SMALL],
            FrameLimits(max_pixels=10**7, request_pixels=13 * 10**6),
            [0, 0, 2, 0],
        ),
        ([SIX_MP, SIX_MP, SIX_MP], FrameLimits(max_pixels=10**7, request_pixels=18 * 10**6), [0, 0, 0]),
        # over the per-frame limit: refused from the header, nothing counted against the budget
        ([png_header(40_000, 40_000), SMALL, b"junk"], FrameLimits(), [2, 0, 1]),
        ([png_header(7681, 4320, "L"), SMALL], FrameLimits(), [2, 0]),
        ([SIX_MP, SMALL], FrameLimits(max_pixels=5_999_999), [2, 0]),
    ],
)
def test_request_budget_and_frame_limit(
    frames: list[bytes], limits: FrameLimits, statuses: list[int]
) -> None:
    detector = CenterBoxDetector()
    out = DetectorStage(detector=detector, chips=fake_chips, limits=limits).run(frames)
    assert out.frame_status.tolist() == statuses
    answered = [i for i, s in enumerate(statuses) if s == S.OK]
    assert out.frame_index.tolist() == answered
    assert len(detector.seen) == len(answered)


@pytest.mark.parametrize(
    ("size", "count", "limits", "calls"),
    [
        (
            (1000, 1000),
            3,
            FrameLimits(),
            [1, 1, 1, 3],
        ),  # one 1280x1280 input per call; the small frames share one
        ((640, 480), 7, FrameLimits(), [5, 2, 3]),  # 5 VGA frames fill 1280 x 1280
        (
            (2000, 2000),
            2,
            FrameLimits(detect_batch_pixels=2 * DETECT_BATCH_PIXELS),
            [2, 3],
        ),  # counted at 1280^2
        ((640, 480), 7, FrameLimits(detect_batch_pixels=1), [1] * 10),
    ],
)
def test_detector_calls_hold_at_most_detect_batch_pixels(
    size: tuple[int, int], count: int, limits: FrameLimits, calls: list[int]
) -> None:
    frames = [encode(Image.new("RGB", size, (9, 9, 9)), "JPEG")] * count + [SMALL] * 3
    detector = CenterBoxDetector()
    out = LocatorStage(detector=detector, limits=limits).run(frames)
    assert detector.calls == calls  # grouped by size, the 64x48 frames last
    assert out.frame_index.tolist() == list(range(count + 3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"request_pixels": 0}, "request_pixels: expected an int >= 1, got 0"),
        ({"request_pixels": 1.5}, "request_pixels: expected an int >= 1, got 1.5"),
        ({"max_pixels": 0}, "max_pixels: expected an int >= 1, got 0"),
        ({"min_side": 0}, "min_side: expected an int >= 1 or None, got 0"),
        ({"detect_batch_pixels": 0}, "detect_batch_pixels: expected an int >= 1, got 0"),
    ],
)
def test_frame_limits_validate(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FrameLimits(**kwargs)  # type: ignore[arg-type]


BIG_JPEG = encode(Image.new("RGB", (4000, 3000), (120, 110, 100)), "JPEG")
REDUCED = FrameLimits(min_side=1280)  # 4000 x 3000 decodes at 2000 x 1500


def test_a_reduced_frame_is_answered_in_full_frame_pixels() -> None:
    detector = CenterBoxDetector()
    out = DetectorStage(detector=detector, chips=fake_chips, limits=REDUCED).run([BIG_JPEG, SMALL])
    assert detector.seen == [(2000, 1500), (64, 48)]
    np.testing.assert_allclose(out.located.boxes[0], [1000, 750, 3000, 2250], rtol=1e-6)
    np.testing.assert_allclose(out.located.keypoints5[0, 2], [2000, 1500], rtol=1e-6)
    expected_crop = expand_box(out.located.boxes[:1], CROP_MARGIN, width=4000, height=3000)
    np.testing.assert_allclose(out.crop_boxes[:1], expected_crop.reshape(1, 4), rtol=1e-5)
    # the small frame is decoded at full size: exactly what the detector returned
    np.testing.assert_array_equal(out.located.boxes[1], [16, 12, 48, 36])


def test_analyze_on_reduced_frames_equals_the_detector_stage() -> None:
    frames = [BIG_JPEG, SMALL]
    whole = DetectorStage(detector=CenterBoxDetector(), chips=fake_chips, limits=REDUCED).run(frames)
    loc = whole.located
    cropped = CropperStage(chips=fake_chips, limits=REDUCED).run(
        frames, loc.frame_index, loc.boxes, loc.keypoints5
    )
    np.testing.assert_allclose(cropped.crop_boxes, whole.crop_boxes, rtol=1e-5)
    np.testing.assert_allclose(cropped.face_crops, whole.face_crops, atol=1e-5)


def test_cropper_checks_boxes_against_the_full_frame_size() -> None:
    stage = CropperStage(chips=fake_chips, limits=REDUCED)
    inside = np.array([[3000, 2000, 3990, 2990]], np.float32)  # outside the 2000x1500 decoded picture
    kps = np.full((1, 5, 2), 3500, np.float32)
    assert stage.run([BIG_JPEG], np.array([0], np.int32), inside, kps).crop_boxes.shape == (1, 4)
    with pytest.raises(FaceRequestError, match=r"expected a box inside frame 0 \(4000x3000\)"):
        stage.run([BIG_JPEG], np.array([0], np.int32), inside + 20, kps)


def test_decode_frame_still_returns_the_full_frame() -> None:
    status, rgb = decode_frame(BIG_JPEG)
    assert status == S.OK and rgb is not None and rgb.shape == (3000, 4000, 3)


class CancelAfter:
    """A ``cancelled`` check that answers True from its ``n``-th call on; counts its calls."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls >= self.n


FRAMES = [SMALL, SMALL, encode(Image.new("RGB", (80, 40)), "PNG")]


@pytest.mark.parametrize(
    ("n", "detector_calls", "where"),
    [
        (1, 0, "before frame 0 of 3"),
        (3, 0, "before frame 2 of 3"),
        (4, 0, "before detecting 2 of 3 frames"),  # three frame checks, then the first detector group
        (5, 2, "before detecting 1 of 3 frames"),  # the second group (the 80x40 frame)
        (6, 3, "before cropping the faces of frame 0"),
    ],
)
def test_a_cancelled_request_stops_between_frames(n: int, detector_calls: int, where: str) -> None:
    detector = CenterBoxDetector()
    check = CancelAfter(n)
    with pytest.raises(RequestCancelled, match=f"request cancelled {where}"):
        DetectorStage(detector=detector, chips=fake_chips).run(FRAMES, cancelled=check)
    assert check.calls == n
    assert len(detector.seen) == detector_calls


def test_a_request_never_cancelled_is_answered_in_full() -> None:
    check = CancelAfter(10**6)
    out = DetectorStage(detector=CenterBoxDetector(), chips=fake_chips).run(FRAMES, cancelled=check)
    assert out.frame_index.tolist() == [0, 1, 2]
    assert check.calls == 3 + 2 + 3  # frames, detector groups, frames cropped


def test_the_locator_and_cropper_stop_too() -> None:
    with pytest.raises(RequestCancelled):
        LocatorStage(detector=CenterBoxDetector()).run(FRAMES, cancelled=CancelAfter(2))
    index, boxes, kps = (
        np.array([0], np.int32),
        np.array([[1, 1, 9, 9]], np.float32),
        np.ones((1, 5, 2), np.float32),
    )
    with pytest.raises(RequestCancelled, match="before frame 1 of 3"):
        CropperStage(chips=fake_chips).run(FRAMES, index, boxes, kps, cancelled=CancelAfter(2))


def _config_parameters(text: str) -> dict[str, str]:
    return dict(re.findall(r'parameters \{ key: "([^"]+)" value: \{ string_value: "([^"]*)" \} \}', text))


@pytest.mark.parametrize("variant", triton_config.VARIANTS)
@pytest.mark.parametrize("build", [triton_config.detector_config, triton_config.locator_config])
def test_the_detector_configs_carry_the_limits_and_the_models_read_them_back(
    variant: triton_config.Variant, build: object
) -> None:
    params = triton_config.BuildParameters(backbone="swin_t", weights="random-init")
    text = build(params, variant).text  # type: ignore[operator]
    assert frame_limits(_config_parameters(text)) == FrameLimits()
    custom = triton_config.BuildParameters(
        backbone="swin_t", weights="random-init", max_pixels=10**6, request_pixels=3 * 10**6,
        decode_min_side=0, detect_batch_pixels=5,
    )  # fmt: skip
    expected = FrameLimits(max_pixels=10**6, request_pixels=3 * 10**6, min_side=None, detect_batch_pixels=5)
    assert frame_limits(_config_parameters(build(custom, variant).text)) == expected  # type: ignore[operator]


def test_the_cropper_config_carries_the_decoding_limits() -> None:
    params = _config_parameters(
        triton_config.cropper_config(
            triton_config.BuildParameters(backbone="swin_t", weights="x"), "cpu"
        ).text
    )
    assert params == {
        "max_pixels": str(MAX_FRAME_PIXELS),
        "request_pixels": str(REQUEST_PIXEL_BUDGET),
        "decode_min_side": str(DECODE_MIN_SIDE),
    }
