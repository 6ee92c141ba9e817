"""``face_pipeline`` served by the real Triton (the local runtime's bundled tritonserver).

Reference boxes were checked once by eye (drawn on the photos) and recorded in
tests/models/test_centerface.py; the ensemble must find the same faces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from support_triton import OUTPUTS, encode, infer, iou, photo, pipeline

from faceflow.models import contract
from faceflow.models.identity_geometry import embedding_distance

pytestmark = pytest.mark.integration

REFERENCE_BOXES = {
    "astronaut": (181.5, 58.2, 269.9, 177.8),
    "camera": (202.3, 118.9, 257.6, 196.9),
    "grace_hopper": (174.8, 131.5, 357.0, 336.3),
}


@pytest.fixture(scope="module")
def client(triton_url: str) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(triton_url)
    yield c
    c.close()


@pytest.mark.parametrize("name", sorted(REFERENCE_BOXES))
def test_faces_in_real_photos_match_the_reference_boxes(
    client: grpcclient.InferenceServerClient, name: str
) -> None:
    out = pipeline(client, [encode(photo(name))])
    assert out["FRAME_STATUS"].tolist() == [0]
    assert out["FRAME_INDEX"].tolist() == [0], f"expected exactly one face in {name}"
    assert iou(out["BOXES"][0].tolist(), REFERENCE_BOXES[name]) >= 0.5
    assert out["SCORES"][0] > 0.5


def test_same_person_is_close_and_different_people_are_far(client: grpcclient.InferenceServerClient) -> None:
    astronaut = photo("astronaut")
    flipped_darker = (astronaut[:, ::-1].astype(np.float32) * 0.6).astype(np.uint8)
    out = pipeline(client, [encode(astronaut), encode(flipped_darker), encode(photo("grace_hopper"))])
    assert out["FRAME_INDEX"].tolist() == [0, 1, 2]
    emb = out["EMBEDDING"]
    same, different = embedding_distance(emb[0], emb[1]), embedding_distance(emb[0], emb[2])
    assert same < 0.4, same
    assert different > 0.6, different


def test_every_output_has_its_documented_shape_dtype_and_range(
    client: grpcclient.InferenceServerClient,
) -> None:
    frames = [encode(photo("astronaut")), encode(photo("grace_hopper"), "PNG"), encode(photo("camera"))]
    out = pipeline(client, frames)
    n, f = len(frames), len(out["FRAME_INDEX"])
    assert f == 3
    for spec in contract.FACE_PIPELINE_OUTPUTS:
        value = out[spec.name]
        dims = tuple(n if d == "N" else f if d == "F" else d for d in spec.shape)
        assert value.shape == dims, spec.name
        assert value.dtype == np.dtype(spec.numpy_dtype), spec.name
        if value.dtype == np.float32:
            assert np.isfinite(value).all(), spec.name
    for name in ("ATTRIBUTES", "VISIBILITY", "AGE", "GENDER", "RACE", "SCORES"):
        assert out[name].min() >= 0.0 and out[name].max() <= 1.0, name
    for name in ("AGE", "GENDER", "RACE"):
        np.testing.assert_allclose(out[name].sum(axis=1), 1.0, rtol=1e-4, err_msg=name)
    assert out["PARSING"].max() < len(contract.PARSING_CLASSES)
    # dlib descriptors are not unit-normalised (norms ~1.3-1.5 measured); they must be distinct per face.
    assert (np.linalg.norm(out["EMBEDDING"], axis=1) > 0.5).all()
    assert len({tuple(np.round(e, 4)) for e in out["EMBEDDING"]}) == f
    assert (np.abs(out["HEAD_POSE"]) <= np.pi).all()
    for i in range(f):
        x1, y1, x2, y2 = out["CROP_BOXES"][i]
        bx1, by1, bx2, by2 = out["BOXES"][i]
        assert x1 <= bx1 and y1 <= by1 and x2 >= bx2 and y2 >= by2, "crop box must contain the face box"
        kp = out["KEYPOINTS5"][i]
        assert (kp[:, 0] >= bx1 - 5).all() and (kp[:, 0] <= bx2 + 5).all()


def test_ensemble_equals_the_models_called_one_by_one(client: grpcclient.InferenceServerClient) -> None:
    frames = np.array([encode(photo("astronaut")), b"junk", encode(photo("grace_hopper"))], dtype=object)
    whole = pipeline(client, list(frames))
    det_names = [
        "FRAME_STATUS",
        "FRAME_INDEX",
        "BOXES",
        "SCORES",
        "KEYPOINTS5",
        "CROP_BOXES",
        "FACE_CROPS",
        "ID_CHIPS",
    ]
    det = infer(client, "face_detector", {"IMAGES": frames}, det_names)
    face_names = ["LANDMARKS68", "HEAD_POSE", "ATTRIBUTES", "VISIBILITY", "AGE", "GENDER", "RACE", "PARSING"]
    face = infer(
        client, "facexformer", {"FACE_CROPS": det["FACE_CROPS"], "CROP_BOXES": det["CROP_BOXES"]}, face_names
    )
    emb = infer(client, "face_embedder", {"ID_CHIPS": det["ID_CHIPS"]}, ["EMBEDDING"])
    one_by_one = {**det, **face, **emb}
    for name in OUTPUTS:
        np.testing.assert_allclose(whole[name], one_by_one[name], rtol=1e-5, atol=1e-5, err_msg=name)


def _tiled_faces(count: int) -> Image.Image:
    face = Image.fromarray(photo("astronaut")[40:200, 160:290]).resize((52, 64))
    cols = 20
    canvas = Image.new("RGB", (cols * 64, ((count + cols - 1) // cols) * 80), (200, 200, 200))
    for k in range(count):
        canvas.paste(face, ((k % cols) * 64 + 6, (k // cols) * 80 + 8))
    return canvas


def test_bad_frames_get_a_status_and_the_rest_of_the_batch_is_answered(
    client: grpcclient.InferenceServerClient,
) -> None:
    huge = encode(Image.new("L", (10_000, 10_000)))
    cmyk = encode(Image.fromarray(photo("astronaut")).convert("CMYK"))
    gray = encode(Image.fromarray(photo("astronaut")).convert("L"), "PNG")
    alpha = encode(Image.fromarray(photo("astronaut")).convert("RGBA"), "PNG")
    no_face = encode(np.full((120, 160, 3), 127, np.uint8))
    frames = [encode(photo("astronaut")), b"\x00garbage", b"", huge, cmyk, gray, alpha, no_face]
    out = pipeline(client, frames)
    assert out["FRAME_STATUS"].tolist() == [0, 1, 1, 2, 0, 0, 0, 0]
    assert out["FRAME_INDEX"].tolist() == [0, 4, 5, 6]
    for i in range(1, 4):
        assert iou(out["BOXES"][i].tolist(), out["BOXES"][0].tolist()) > 0.8
    # The instance survived: the next request is answered normally.
    assert pipeline(client, [encode(photo("grace_hopper"))])["FRAME_INDEX"].tolist() == [0]


def test_zero_faces_everywhere_gives_empty_tensors_with_their_trailing_dims(
    client: grpcclient.InferenceServerClient,
) -> None:
    out = pipeline(client, [encode(np.full((64, 64, 3), 200, np.uint8)), b"junk"])
    assert out["FRAME_STATUS"].tolist() == [0, 1]
    assert out["PARSING"].shape == (0, 224, 224)
    assert out["EMBEDDING"].shape == (0, 128)
    assert out["LANDMARKS68"].shape == (0, 68, 2)


@pytest.mark.slow
def test_too_many_faces_are_truncated_with_status_3(client: grpcclient.InferenceServerClient) -> None:
    config = client.get_model_config("face_detector", as_json=True)["config"]
    max_faces = int(config["parameters"]["max_faces"]["string_value"])
    out = pipeline(client, [encode(_tiled_faces(300)), encode(photo("astronaut"))])
    assert out["FRAME_STATUS"].tolist() == [3, 0]
    assert (out["FRAME_INDEX"] == 0).sum() == max_faces
    assert (out["FRAME_INDEX"] == 1).sum() == 1


def test_model_metadata_names_labels_preprocessing_and_weights(
    client: grpcclient.InferenceServerClient,
) -> None:
    config = client.get_model_config("face_pipeline", as_json=True)["config"]
    params = {k: v["string_value"] for k, v in config["parameters"].items()}
    assert json.loads(params["attributes"])[0] == "5_o_Clock_Shadow"
    assert json.loads(params["parsing_classes"]) == list(contract.PARSING_CLASSES)
    assert json.loads(params["crop_margin"]) == 0.25 and json.loads(params["crop_size"]) == 224
    weights = params["facexformer_weights"]
    assert weights == "random-init" or (weights.startswith("sha256:") and len(weights) == 71)
    assert json.loads(params["facexformer_random_init"]) == (weights == "random-init")
