"""``face_detect`` and ``face_analyze`` on the real Triton: together they equal ``face_pipeline``,
and ``face_analyze`` refuses faces that do not fit their frames with a clear per-request error."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from support_triton import OUTPUTS, encode, infer, photo, pipeline
from tritonclient.utils import InferenceServerException

from faceflow.models import contract

pytestmark = pytest.mark.integration

DETECT = list(contract.FACE_DETECT_OUTPUT_NAMES)
ANALYZE = list(contract.FACE_ANALYZE_OUTPUT_NAMES)


@pytest.fixture(scope="module")
def client(triton_url: str) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(triton_url)
    yield c
    c.close()


def analyze(
    client: grpcclient.InferenceServerClient,
    frames: list[bytes],
    index: np.ndarray,
    boxes: np.ndarray,
    kps: np.ndarray,
) -> dict[str, np.ndarray]:
    inputs = {
        "IMAGES": np.array(frames, dtype=object),
        "FRAME_INDEX": index.astype(np.int32),
        "BOXES": boxes.astype(np.float32),
        "KEYPOINTS5": kps.astype(np.float32),
    }
    tensors = []
    for name, value in inputs.items():
        dtype = {"object": "BYTES", "int32": "INT32", "float32": "FP32"}[str(value.dtype)]
        t = grpcclient.InferInput(name, list(value.shape), dtype)
        t.set_data_from_numpy(value)
        tensors.append(t)
    result = client.infer(
        contract.FACE_ANALYZE,
        tensors,
        outputs=[grpcclient.InferRequestedOutput(n) for n in ANALYZE],
        client_timeout=300,
    )
    return {n: result.as_numpy(n) for n in ANALYZE}


def test_detect_then_analyze_every_face_equals_face_pipeline(
    client: grpcclient.InferenceServerClient,
) -> None:
    frames = [encode(photo("astronaut")), b"junk", encode(photo("grace_hopper")), encode(photo("camera"))]
    whole = pipeline(client, frames)
    det = infer(client, contract.FACE_DETECT, {"IMAGES": np.array(frames, dtype=object)}, DETECT)
    assert det["FRAME_STATUS"].tolist() == [0, 1, 0, 0]
    ana = analyze(client, frames, det["FRAME_INDEX"], det["BOXES"], det["KEYPOINTS5"])
    combined = {**det, **ana}
    for name in OUTPUTS:
        np.testing.assert_allclose(whole[name], combined[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_analyze_takes_a_subset_in_the_callers_order(client: grpcclient.InferenceServerClient) -> None:
    frames = [encode(photo("astronaut")), encode(photo("grace_hopper"))]
    det = infer(client, contract.FACE_DETECT, {"IMAGES": np.array(frames, dtype=object)}, DETECT)
    both = analyze(client, frames, det["FRAME_INDEX"], det["BOXES"], det["KEYPOINTS5"])
    order = np.array([1])
    one = analyze(client, frames, det["FRAME_INDEX"][order], det["BOXES"][order], det["KEYPOINTS5"][order])
    for name in ANALYZE:
        np.testing.assert_allclose(one[name], both[name][order], rtol=1e-5, atol=1e-5, err_msg=name)
    empty = analyze(client, frames, np.zeros(0), np.zeros((0, 4)), np.zeros((0, 5, 2)))
    assert empty["EMBEDDING"].shape == (0, 128) and empty["PARSING"].shape == (0, 224, 224)


BOX = np.array([[181.5, 58.2, 269.9, 177.8]])
KPS = np.full((1, 5, 2), 200.0)


@pytest.mark.parametrize(
    ("index", "boxes", "kps", "message"),
    [
        (np.array([1]), BOX, KPS, r"FRAME_INDEX\[0\] = 1: expected a frame index in 0..0 \(1 frames\)"),
        (
            np.array([0]),
            np.array([[400.0, 300.0, 700.0, 600.0]]),
            KPS,
            r"expected a box inside frame 0 \(512x512\)",
        ),
        (
            np.array([0, 0]),
            BOX,
            KPS,
            r"expected FRAME_INDEX \[F\], BOXES \[F,4\] and KEYPOINTS5 \[F,5,2\] with one F",
        ),
    ],
)
def test_analyze_refuses_inconsistent_faces_and_goes_on(
    client: grpcclient.InferenceServerClient,
    index: np.ndarray,
    boxes: np.ndarray,
    kps: np.ndarray,
    message: str,
) -> None:
    frames = [encode(photo("astronaut"))]
    with pytest.raises(InferenceServerException, match=message) as info:
        analyze(client, frames, index, boxes, kps)
    assert "face_analyze" in str(info.value)
    # the instance is fine: a good request right after is answered
    det = infer(client, contract.FACE_DETECT, {"IMAGES": np.array(frames, dtype=object)}, DETECT)
    assert analyze(client, frames, det["FRAME_INDEX"], det["BOXES"], det["KEYPOINTS5"])[
        "EMBEDDING"
    ].shape == (1, 128)
