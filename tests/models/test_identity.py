"""Tests for faceflow.models.identity: dlib ResNet descriptors on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image
from skimage import data

from faceflow.models.centerface import CenterFaceDetector
from faceflow.models.centerface_decode import Detections
from faceflow.models.identity import IdentityEmbedder, model_paths
from faceflow.models.identity_geometry import (
    DLIB_5POINT_TEMPLATE,
    embedding_distance,
    keypoint_square,
    square_around,
    template_points_from_eyes,
)

SAME_PERSON_MAX = 0.4
DIFFERENT_PEOPLE_MIN = 0.6


def astronaut() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut())


def astronaut_flipped_dark() -> np.ndarray:
    """Horizontal flip, darkened by 0.6."""
    return np.ascontiguousarray((data.astronaut()[:, ::-1].astype(np.float32) * 0.6).round().astype(np.uint8))


def grace_hopper() -> np.ndarray:
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(str(path)) as im:
        return np.asarray(im.convert("RGB")).copy()


def camera_rgb() -> np.ndarray:
    return np.ascontiguousarray(np.stack([data.camera()] * 3, axis=-1))


@pytest.fixture(scope="module")
def faces() -> dict[str, tuple[np.ndarray, Detections]]:
    detector = CenterFaceDetector(intra_op_threads=1)
    out = {}
    for name, build in [
        ("astronaut", astronaut),
        ("flipped", astronaut_flipped_dark),
        ("grace_hopper", grace_hopper),
        ("camera", camera_rgb),
    ]:
        img = build()
        det = detector.detect(img)
        assert len(det) == 1, name
        out[name] = (img, det)
    return out


@pytest.fixture(scope="module")
def embedders() -> dict[str, IdentityEmbedder]:
    sp = IdentityEmbedder()
    return {"shape_predictor": sp, "keypoints": IdentityEmbedder(alignment="keypoints")}


def embed(
    embedder: IdentityEmbedder, face: tuple[np.ndarray, Detections], use_boxes: bool = True
) -> np.ndarray:
    img, det = face
    out = embedder.embed(img, det.keypoints5, det.boxes if use_boxes else None)
    assert out.shape == (1, 128)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    return out[0]


def test_model_files_ship_in_the_wheel() -> None:
    resnet, predictor = model_paths()
    assert resnet.name == "dlib_face_recognition_resnet_model_v1.dat"
    assert predictor.name == "shape_predictor_5_face_landmarks.dat"
    assert resnet.stat().st_size > 20_000_000


@pytest.mark.parametrize("alignment", ["shape_predictor", "keypoints"])
def test_same_person_is_close(
    embedders: dict[str, IdentityEmbedder], faces: dict[str, tuple[np.ndarray, Detections]], alignment: str
) -> None:
    e = embedders[alignment]
    d = embedding_distance(embed(e, faces["astronaut"]), embed(e, faces["flipped"]))
    assert d < SAME_PERSON_MAX, d


@pytest.mark.parametrize("alignment", ["shape_predictor", "keypoints"])
@pytest.mark.parametrize("other", ["grace_hopper", "camera"])
def test_different_people_are_far(
    embedders: dict[str, IdentityEmbedder],
    faces: dict[str, tuple[np.ndarray, Detections]],
    alignment: str,
    other: str,
) -> None:
    e = embedders[alignment]
    d = embedding_distance(embed(e, faces["astronaut"]), embed(e, faces[other]))
    assert d > DIFFERENT_PEOPLE_MIN, d


def test_keypoint_square_without_boxes_agrees(
    embedders: dict[str, IdentityEmbedder], faces: dict[str, tuple[np.ndarray, Detections]]
) -> None:
    e = embedders["shape_predictor"]
    for name in ("astronaut", "grace_hopper"):
        with_boxes = embed(e, faces[name])
        without = embed(e, faces[name], use_boxes=False)
        assert embedding_distance(with_boxes, without) < 0.15, name


def test_several_faces_in_one_frame(embedders: dict[str, IdentityEmbedder]) -> None:
    img = np.ascontiguousarray(np.concatenate([astronaut(), grace_hopper()[:512]], axis=1))
    det = CenterFaceDetector(intra_op_threads=1).detect(img)
    assert len(det) == 2
    out = embedders["shape_predictor"].embed(img, det.keypoints5, det.boxes)
    assert out.shape == (2, 128)
    assert embedding_distance(out[0], out[1]) > DIFFERENT_PEOPLE_MIN


def test_chips_are_aligned_crops(
    embedders: dict[str, IdentityEmbedder], faces: dict[str, tuple[np.ndarray, Detections]]
) -> None:
    img, det = faces["astronaut"]
    chips = embedders["shape_predictor"].chips(img, det.keypoints5, det.boxes)
    assert chips.shape == (1, 150, 150, 3)
    assert chips.dtype == np.uint8
    assert embedders["shape_predictor"].chips(img, np.zeros((0, 5, 2))).shape == (0, 150, 150, 3)


@pytest.mark.parametrize("alignment", ["shape_predictor", "keypoints"])
def test_zero_faces(embedders: dict[str, IdentityEmbedder], alignment: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out = embedders[alignment].embed(noise, np.zeros((0, 5, 2), np.float32), np.zeros((0, 4), np.float32))
    assert out.shape == (0, 128)
    assert out.dtype == np.float32
    assert embedders[alignment].embed(noise, []).shape == (0, 128)


@pytest.mark.parametrize(
    ("image", "keypoints", "boxes", "error", "match"),
    [
        (np.zeros((10, 10), np.uint8), np.zeros((0, 5, 2)), None, ValueError, r"\[H,W,3\], got \[10, 10\]"),
        (np.zeros((10, 10, 3), np.float64), np.zeros((0, 5, 2)), None, ValueError, "uint8, got float64"),
        (
            np.zeros((10, 10, 3), np.uint8),
            np.zeros((1, 4, 2)),
            None,
            ValueError,
            r"\[F,5,2\], got \[1, 4, 2\]",
        ),
        (
            np.zeros((10, 10, 3), np.uint8),
            np.zeros((1, 5, 2)),
            np.zeros((2, 4)),
            ValueError,
            r"\[1,4\], got \[2, 4\]",
        ),
        (np.zeros((10, 10, 3), np.uint8), np.full((1, 5, 2), np.nan), None, ValueError, "finite keypoints5"),
        ("image", np.zeros((0, 5, 2)), None, ValueError, "got str"),
    ],
)
def test_embed_validation(
    embedders: dict[str, IdentityEmbedder],
    image: object,
    keypoints: np.ndarray,
    boxes: np.ndarray | None,
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        embedders["shape_predictor"].embed(image, keypoints, boxes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alignment": "affine"}, "got 'affine'"),
        ({"num_jitters": -1}, "num_jitters >= 0, got -1"),
    ],
)
def test_embedder_settings_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        IdentityEmbedder(**kwargs)  # type: ignore[arg-type]


def test_template_points_follow_the_eyes() -> None:
    # template eye centres in a 100 px square: image-left (22.73, 22.14), image-right (75.28, 22.12)
    t = DLIB_5POINT_TEMPLATE * 100
    left = (t[2] + t[3]) / 2
    right = (t[0] + t[1]) / 2
    kp = np.zeros((1, 5, 2))
    kp[0, 0], kp[0, 1] = left, right
    np.testing.assert_allclose(template_points_from_eyes(kp)[0], t, atol=1e-9)
    kp2 = kp * 2 + 7  # scaled and shifted face: template scaled and shifted the same way
    np.testing.assert_allclose(template_points_from_eyes(kp2)[0], t * 2 + 7, atol=1e-9)


def test_squares() -> None:
    np.testing.assert_allclose(square_around([[0, 0, 10, 30]]), [[-5, 5, 15, 25]])  # centre (5, 15), side 20
    kp = np.array([[[10, 10], [30, 10], [20, 20], [10, 30], [30, 30]]], float)
    # eye midpoint (20, 10), mouth midpoint (20, 30): centre (20, 20), side 2.2 * 20 = 44
    np.testing.assert_allclose(keypoint_square(kp), [[-2, -2, 42, 42]])
