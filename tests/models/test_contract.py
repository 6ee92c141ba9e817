"""Tests for faceflow.models.contract: label lists, tensor table, config parameters."""

from __future__ import annotations

import json

import pytest

from faceflow.models import contract as c
from faceflow.models.contract import FrameStatus, TensorSpec


@pytest.mark.parametrize(
    ("labels", "length", "first", "last"),
    [
        (c.ATTRIBUTES, 40, "5_o_Clock_Shadow", "Young"),
        (c.VISIBILITY_POINTS, 29, "cofw_00", "cofw_28"),
        (c.AGE_BINS, 8, "0-9", "70+"),
        (c.GENDERS, 2, "male", "female"),
        (c.RACES, 5, "white", "others"),
        (c.PARSING_CLASSES, 11, "background", "hair"),
        (c.HEAD_POSE, 3, "pitch", "roll"),
        (c.KEYPOINTS5, 5, "left_eye", "mouth_right"),
    ],
)
def test_label_lists(labels: tuple[str, ...], length: int, first: str, last: str) -> None:
    assert len(labels) == length
    assert len(set(labels)) == length
    assert (labels[0], labels[-1]) == (first, last)


def test_celeba_order_spot_checks() -> None:
    assert c.ATTRIBUTES.index("Male") == 20
    assert c.ATTRIBUTES.index("Smiling") == 31
    assert c.ATTRIBUTES.index("Eyeglasses") == 15
    assert tuple(sorted(c.ATTRIBUTES, key=str.lower)) == c.ATTRIBUTES  # CelebA is alphabetical


def test_races_keep_the_authors_order() -> None:
    assert c.RACES == ("white", "black", "indian", "asian", "others")


def test_parsing_classes_design_order() -> None:
    assert c.PARSING_CLASSES == (
        "background",
        "skin",
        "r_brow",
        "l_brow",
        "r_eye",
        "l_eye",
        "nose",
        "upper_lip",
        "inner_mouth",
        "lower_lip",
        "hair",
    )


def test_preprocessing_constants() -> None:
    assert c.CROP_MARGIN == 0.25
    assert c.CROP_SIZE == 224
    assert c.CROP_INTERPOLATION == "bicubic"
    assert c.IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert c.IMAGENET_STD == (0.229, 0.224, 0.225)
    assert c.NUM_LANDMARKS == 68


def test_frame_status_codes() -> None:
    assert [(s.name, int(s)) for s in FrameStatus] == [
        ("OK", 0),
        ("UNDECODABLE", 1),
        ("TOO_LARGE", 2),
        ("TOO_MANY_FACES", 3),
    ]


def test_tensor_table_matches_design() -> None:
    table = {t.name: (t.direction, t.dtype, t.shape) for t in c.FACE_PIPELINE_TENSORS}
    assert table == {
        "IMAGES": ("input", "BYTES", ("N",)),
        "FRAME_STATUS": ("output", "INT32", ("N",)),
        "FRAME_INDEX": ("output", "INT32", ("F",)),
        "BOXES": ("output", "FP32", ("F", 4)),
        "SCORES": ("output", "FP32", ("F",)),
        "KEYPOINTS5": ("output", "FP32", ("F", 5, 2)),
        "CROP_BOXES": ("output", "FP32", ("F", 4)),
        "LANDMARKS68": ("output", "FP32", ("F", 68, 2)),
        "HEAD_POSE": ("output", "FP32", ("F", 3)),
        "ATTRIBUTES": ("output", "FP32", ("F", 40)),
        "VISIBILITY": ("output", "FP32", ("F", 29)),
        "AGE": ("output", "FP32", ("F", 8)),
        "GENDER": ("output", "FP32", ("F", 2)),
        "RACE": ("output", "FP32", ("F", 5)),
        "PARSING": ("output", "UINT8", ("F", 224, 224)),
        "EMBEDDING": ("output", "FP32", ("F", 128)),
    }
    assert [t.name for t in c.FACE_PIPELINE_INPUTS] == ["IMAGES"]
    assert len(c.FACE_PIPELINE_OUTPUTS) == len(c.FACE_PIPELINE_TENSORS) - 1


@pytest.mark.parametrize(
    ("name", "triton_dims", "numpy_dtype"),
    [
        ("IMAGES", (-1,), "object"),
        ("FRAME_STATUS", (-1,), "int32"),
        ("KEYPOINTS5", (-1, 5, 2), "float32"),
        ("PARSING", (-1, 224, 224), "uint8"),
    ],
)
def test_tensor_spec_views(name: str, triton_dims: tuple[int, ...], numpy_dtype: str) -> None:
    spec = c.tensor_spec(name)
    assert spec.triton_dims == triton_dims
    assert spec.numpy_dtype == numpy_dtype


def test_tensor_spec_unknown_name() -> None:
    with pytest.raises(KeyError, match="got 'NOPE'"):
        c.tensor_spec("NOPE")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, None, None),
        ({"name": ""}, ValueError, "non-empty tensor name"),
        ({"direction": "both"}, ValueError, "got 'both'"),
        ({"dtype": "FP16"}, ValueError, "got 'FP16'"),
        ({"shape": ()}, ValueError, "at least one dim"),
        ({"shape": ("F", 0)}, ValueError, "positive fixed dims"),
        ({"shape": ("B", 4)}, ValueError, "got 'B'"),
    ],
)
def test_tensor_spec_validation(
    kwargs: dict[str, object], error: type[Exception] | None, match: str | None
) -> None:
    base: dict[str, object] = {
        "name": "X",
        "direction": "output",
        "dtype": "FP32",
        "shape": ("F", 4),
        "meaning": "",
    }
    base.update(kwargs)
    if error is None:
        TensorSpec(**base)  # type: ignore[arg-type]
    else:
        with pytest.raises(error, match=match):
            TensorSpec(**base)  # type: ignore[arg-type]


def test_tensor_spec_is_frozen() -> None:
    spec = c.tensor_spec("BOXES")
    with pytest.raises(AttributeError):
        spec.name = "OTHER"  # type: ignore[misc]


def test_config_parameters_round_trip() -> None:
    params = c.to_config_parameters()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
    decoded = {k: json.loads(v) for k, v in params.items()}
    assert decoded["attributes"] == list(c.ATTRIBUTES)
    assert decoded["visibility_points"] == list(c.VISIBILITY_POINTS)
    assert decoded["age_bins"] == list(c.AGE_BINS)
    assert decoded["genders"] == list(c.GENDERS)
    assert decoded["races"] == list(c.RACES)
    assert decoded["parsing_classes"] == list(c.PARSING_CLASSES)
    assert decoded["imagenet_mean"] == list(c.IMAGENET_MEAN)
    assert decoded["imagenet_std"] == list(c.IMAGENET_STD)
    assert decoded["crop_margin"] == c.CROP_MARGIN
    assert decoded["crop_size"] == c.CROP_SIZE
    assert decoded["crop_interpolation"] == "bicubic"
    assert decoded["num_landmarks"] == 68
    assert decoded["landmark_scheme"] == "ibug300w_68"
    assert decoded["presence_threshold"] == c.PRESENCE_THRESHOLD
    assert decoded["frame_status"] == {"ok": 0, "undecodable": 1, "too_large": 2, "too_many_faces": 3}
