"""Tests for faceflow.models.decode on hand-made head outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faceflow.models.contract import AGE_BINS, ATTRIBUTES, GENDERS, PARSING_CLASSES, RACES, VISIBILITY_POINTS
from faceflow.models.decode import (
    Distribution,
    FaceResult,
    HeadOutputs,
    HeadPose,
    decode_heads,
    sigmoid,
    softmax,
)


def one_hot_logits(n: int, index: int, high: float = 6.0, low: float = -6.0) -> np.ndarray:
    v = np.full(n, low, np.float32)
    v[index] = high
    return v


def raw_heads(f: int = 2) -> dict[str, np.ndarray]:
    """Raw FaceXFormer outputs for f faces with known answers.

    Face i: attributes Smiling and Male present; COFW point 3 occluded; age bin 3 (30-39);
    gender female; race asian; parsing skin everywhere but a hair band on the top rows.
    """
    attributes = np.full((f, 40), -4.0, np.float32)
    attributes[:, ATTRIBUTES.index("Smiling")] = 4.0
    attributes[:, ATTRIBUTES.index("Male")] = 0.0  # sigmoid(0) = 0.5: present (>= 0.5)
    visibility = np.full((f, 29), -3.0, np.float32)
    visibility[:, 3] = 3.0
    parsing = np.zeros((f, 11, 224, 224), np.float32)
    parsing[:, PARSING_CLASSES.index("skin")] = 1.0
    parsing[:, PARSING_CLASSES.index("hair"), :56] = 2.0
    return {
        "landmarks": np.zeros((f, 136), np.float32),
        "head_pose": np.tile(np.array([[0.1, -0.2, 0.3]], np.float32), (f, 1)),
        "attributes": attributes,
        "visibility": visibility,
        "age": np.tile(one_hot_logits(8, 3), (f, 1)),
        "gender": np.tile(one_hot_logits(2, 1, 2.0, 0.0), (f, 1)),
        "race": np.tile(one_hot_logits(5, RACES.index("asian")), (f, 1)),
        "parsing": parsing,
        "crop_boxes": np.tile(np.array([[100, 50, 324, 274]], np.float32), (f, 1)),
    }


# --- helpers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "want"),
    [
        (0.0, 0.5),
        (1000.0, 1.0),
        (-1000.0, 0.0),
        (np.log(3.0), 0.75),
    ],
)
def test_sigmoid(x: float, want: float) -> None:
    out = sigmoid(np.array([x]))
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out[0] == pytest.approx(want, abs=1e-6)


def test_softmax_is_stable_and_normalised() -> None:
    x = np.array([[1000.0, 1000.0, -1000.0], [0.0, np.log(3.0), -np.inf]])
    out = softmax(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]], atol=1e-6)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
    assert softmax(np.zeros((0, 8))).shape == (0, 8)


# --- decode_heads ------------------------------------------------------------------------------------


def test_decode_heads_contract_tensors() -> None:
    heads = decode_heads(**raw_heads(2))
    assert len(heads) == 2
    assert heads.landmarks68.shape == (2, 68, 2)
    assert heads.parsing.shape == (2, 224, 224)
    assert heads.parsing.dtype == np.uint8
    for name, width in [("attributes", 40), ("visibility", 29), ("age", 8), ("gender", 2), ("race", 5)]:
        value = getattr(heads, name)
        assert value.shape == (2, width) and value.dtype == np.float32
    np.testing.assert_allclose(heads.age.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(heads.head_pose[0], [0.1, -0.2, 0.3], atol=1e-6)
    # raw 0 = crop centre (111.5 crop px); crop 224 px wide at x=100, so frame 100 + 112 - 0.5
    np.testing.assert_allclose(heads.landmarks68[0, 0], [211.5, 161.5], atol=1e-4)
    assert set(np.unique(heads.parsing)) == {PARSING_CLASSES.index("skin"), PARSING_CLASSES.index("hair")}


def test_decode_heads_zero_faces() -> None:
    raw = {k: v[:0] for k, v in raw_heads(1).items()}
    heads = decode_heads(**raw)
    assert len(heads) == 0
    assert heads.parsing.shape == (0, 224, 224)
    assert heads.results() == []
    assert len(HeadOutputs.empty()) == 0


@pytest.mark.parametrize(
    ("name", "bad", "match"),
    [
        ("attributes", np.zeros((2, 39)), r"raw attributes of shape \[F,40\], got \[2, 39\]"),
        ("age", np.zeros((2, 8, 1)), r"raw age of shape \[F,8\]"),
        ("race", np.zeros((2, 4)), r"raw race of shape \[F,5\]"),
        (
            "parsing",
            np.zeros((2, 10, 224, 224)),
            r"raw parsing of shape \[F,11,224,224\], got \[2, 10, 224, 224\]",
        ),
        ("landmarks", np.zeros((2, 68)), r"raw landmarks of shape \[F,136\]"),
        ("crop_boxes", np.zeros((3, 4)), r"points of shape \[3,K,2\], got \[2, 68, 2\]"),
        ("gender", np.zeros((3, 2)), r"expected gender of shape \[2,2\], got \[3, 2\]"),
    ],
)
def test_decode_heads_validation(name: str, bad: np.ndarray, match: str) -> None:
    raw = raw_heads(2)
    raw[name] = bad
    with pytest.raises(ValueError, match=match):
        decode_heads(**raw)


# --- HeadOutputs -------------------------------------------------------------------------------------


def test_head_outputs_triton_round_trip() -> None:
    heads = decode_heads(**raw_heads(2))
    tensors = heads.to_triton()
    assert set(tensors) == {
        "LANDMARKS68",
        "HEAD_POSE",
        "ATTRIBUTES",
        "VISIBILITY",
        "AGE",
        "GENDER",
        "RACE",
        "PARSING",
    }
    tensors["BOXES"] = np.zeros((2, 4), np.float32)  # extra tensors are ignored
    again = HeadOutputs.from_triton(tensors)
    for name in tensors:
        if name != "BOXES":
            np.testing.assert_array_equal(again.to_triton()[name], tensors[name])
    del tensors["AGE"]
    with pytest.raises(KeyError, match="expected tensors"):
        HeadOutputs.from_triton(tensors)


@pytest.mark.parametrize(
    ("field", "value", "error", "match"),
    [
        ("age", np.zeros((2, 7), np.float32), ValueError, r"expected age of shape \[2,8\], got \[2, 7\]"),
        ("age", np.zeros((2, 8), np.float64), TypeError, "expected age dtype float32, got float64"),
        ("parsing", np.zeros((2, 224, 224), np.int32), TypeError, "expected parsing dtype uint8"),
        ("parsing", np.full((2, 224, 224), 11, np.uint8), ValueError, "class ids < 11, got 11"),
        (
            "attributes",
            np.full((2, 40), 1.5, np.float32),
            ValueError,
            r"attributes probabilities in \[0, 1\]",
        ),
        ("head_pose", np.full((2, 3), np.nan, np.float32), ValueError, "finite head_pose"),
        ("race", [[0.2] * 5] * 2, TypeError, "expected race to be a numpy array, got list"),
    ],
)
def test_head_outputs_validation(field: str, value: object, error: type[Exception], match: str) -> None:
    tensors = decode_heads(**raw_heads(2)).to_triton()
    fields = {
        "landmarks68": tensors["LANDMARKS68"],
        "head_pose": tensors["HEAD_POSE"],
        "attributes": tensors["ATTRIBUTES"],
        "visibility": tensors["VISIBILITY"],
        "age": tensors["AGE"],
        "gender": tensors["GENDER"],
        "race": tensors["RACE"],
        "parsing": tensors["PARSING"],
    }
    fields[field] = value  # type: ignore[assignment]
    with pytest.raises(error, match=match):
        HeadOutputs(**fields)  # type: ignore[arg-type]


# --- FaceResult --------------------------------------------------------------------------------------


def test_face_results_are_labelled() -> None:
    result = decode_heads(**raw_heads(1)).results()[0]
    assert result.present_attributes == ("Male", "Smiling")  # CelebA order
    assert result.attributes["Smiling"] == pytest.approx(0.982, abs=1e-3)
    assert list(result.attributes) == list(ATTRIBUTES)
    assert result.occluded_points == ("cofw_03",)
    assert result.age.label == "30-39"
    assert result.gender.label == "female"
    assert result.gender.probability == pytest.approx(0.881, abs=1e-3)
    assert result.race.label == "asian"
    pose = result.head_pose
    assert isinstance(pose, HeadPose)
    assert (pose.pitch, pose.yaw, pose.roll) == pytest.approx((0.1, -0.2, 0.3), abs=1e-6)
    assert result.head_pose.degrees()[0] == pytest.approx(5.7296, abs=1e-3)
    assert result.parsing_fractions is not None
    assert result.parsing_fractions["hair"] == pytest.approx(0.25)
    assert result.parsing_fractions["skin"] == pytest.approx(0.75)
    assert len(result.landmarks68) == 68


def test_face_result_to_dict_is_json() -> None:
    result = decode_heads(**raw_heads(1)).results()[0]
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["age"]["label"] == "30-39"
    assert doc["present_attributes"] == ["Male", "Smiling"]
    assert doc["head_pose"]["yaw"] == pytest.approx(-0.2)
    assert set(doc["race"]["distribution"]) == set(RACES)


def _face_arrays() -> dict[str, object]:
    return {
        "landmarks68": np.zeros((68, 2)),
        "head_pose": np.zeros(3),
        "attributes": np.full(40, 0.2),
        "visibility": np.full(29, 0.1),
        "age": np.full(8, 1 / 8),
        "gender": np.array([0.5, 0.5]),
        "race": np.full(5, 0.2),
    }


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({}, None, None),
        ({"landmarks68": np.zeros((5, 2))}, ValueError, r"landmarks68 of shape \[68,2\], got \[5, 2\]"),
        ({"head_pose": np.zeros(2)}, ValueError, r"head_pose of shape \[3\], got \[2\]"),
        ({"head_pose": np.array([np.inf, 0, 0])}, ValueError, "finite pitch"),
        ({"attributes": np.full(39, 0.2)}, ValueError, r"attributes of shape \[40\], got \[39\]"),
        ({"attributes": np.full(40, 2.0)}, ValueError, r"attributes probabilities in \[0, 1\]"),
        ({"visibility": np.full(30, 0.1)}, ValueError, r"visibility of shape \[29\]"),
        ({"age": np.full(8, 0.5)}, ValueError, "summing to 1, got 4.000000"),
        ({"gender": np.array([1.0])}, ValueError, r"gender of shape \[2\], got \[1\]"),
        ({"race": np.array([1.2, -0.2, 0, 0, 0])}, ValueError, r"probabilities in \[0, 1\]"),
        ({"parsing": np.full((4, 4), 12)}, ValueError, "class ids < 11, got 12"),
        ({"parsing": np.zeros(4)}, ValueError, r"parsing of shape \[H,W\]"),
    ],
)
def test_face_result_validation(
    change: dict[str, object], error: type[Exception] | None, match: str | None
) -> None:
    args = _face_arrays()
    args.update(change)
    if error is None:
        result = FaceResult.from_arrays(**args)  # type: ignore[arg-type]
        assert result.present_attributes == ()
        assert result.age.label == AGE_BINS[0]  # ties go to the first label
        assert result.parsing_fractions is None
    else:
        with pytest.raises(error, match=match):
            FaceResult.from_arrays(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("labels", "probabilities", "match"),
    [
        ((), (), "at least one label"),
        (GENDERS, (1.0,), "expected 2 probabilities, got 1"),
        (GENDERS, (0.7, 0.7), "summing to 1"),
    ],
)
def test_distribution_validation(
    labels: tuple[str, ...], probabilities: tuple[float, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Distribution(labels=labels, probabilities=probabilities)


def test_face_result_rejects_wrong_labels() -> None:
    result = FaceResult.from_arrays(**_face_arrays())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected gender labels"):
        FaceResult(
            landmarks68=result.landmarks68,
            head_pose=result.head_pose,
            attributes=result.attributes,
            occlusion=result.occlusion,
            age=result.age,
            gender=Distribution(labels=("a", "b"), probabilities=(0.5, 0.5)),
            race=result.race,
        )
    with pytest.raises(ValueError, match="expected occlusion keys"):
        FaceResult(
            landmarks68=result.landmarks68,
            head_pose=result.head_pose,
            attributes=result.attributes,
            occlusion=dict(reversed(list(result.occlusion.items()))),
            age=result.age,
            gender=result.gender,
            race=result.race,
        )
    assert tuple(result.occlusion) == VISIBILITY_POINTS
