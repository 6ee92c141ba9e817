"""Fuzz the Triton contract: a few hundred hostile pictures through the real ``face_detect`` and
``face_analyze`` (and a sample through ``face_pipeline``).

Seeded and bounded. Each request mixes hostile cases with one real face photo, and the properties
checked are those every client relies on: the request is answered, one FRAME_STATUS per frame; JPEG
and PNG in any mode decode, other formats are UNDECODABLE, every bomb is TOO_LARGE; the photo's face
is still found in the same request; and the model processes' resident memory stays within a bound
of what it was before.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from fuzz.cases import Case, astronaut, bomb_cases, broken_cases, encode, mode_cases
from models.test_imaging_samples import iou
from models.test_triton_images import rss_mb, stub_pid
from support_triton import OUTPUTS, infer
from tritonclient.utils import InferenceServerException

from faceflow.models import contract
from faceflow.models.contract import FRAME_FORMATS
from faceflow.models.contract import FrameStatus as S
from faceflow.runtime.settings import DevSettings

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

SEED = 20261201
BATCH = 8
ASTRONAUT_BOX = (181.5, 58.2, 269.9, 177.8)
FACE = encode(astronaut(), "JPEG")
#: Growth of a model process's resident memory over the whole suite (MB). The detector's arena is
#: capped at one 1280x1280 call and decoded frames are handed back after each batch
#: (docs/models.md), so the suite must leave each process about where it found it.
RSS_GROWTH_MB = 150


@pytest.fixture(scope="module")
def client(runtime: DevSettings) -> Iterator[grpcclient.InferenceServerClient]:
    if runtime.external_triton:
        pytest.fail("the fuzz suite reads the memory of the Triton it starts: unset FACEFLOW_TEST_TRITON_URL")
    c = grpcclient.InferenceServerClient(runtime.triton_grpc_url)
    yield c
    c.close()


def cases() -> list[Case]:
    return mode_cases() + bomb_cases() + broken_cases(SEED, 160)


def expected_status(case: Case) -> set[int]:
    """What a case may be answered with (a broken picture may still decode, or not)."""
    if case.name.startswith(("PNG ", "JPEG claiming")) and ("MP" in case.name or "claiming" in case.name):
        return {S.TOO_LARGE}
    if " as " in case.name:
        fmt = case.name.rsplit(" as ", 1)[1]
        return {S.OK} if fmt in FRAME_FORMATS else {S.UNDECODABLE}
    return {S.OK, S.UNDECODABLE, S.TOO_LARGE}


def batches(items: list[Case]) -> Iterator[list[Case]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def detect(client: grpcclient.InferenceServerClient, frames: list[bytes]) -> dict[str, np.ndarray]:
    return infer(
        client, "face_detect", {"IMAGES": np.array(frames, dtype=object)}, contract.FACE_DETECT_OUTPUT_NAMES
    )


def test_face_detect_answers_every_hostile_picture_and_still_finds_the_face(
    client: grpcclient.InferenceServerClient, runtime: DevSettings
) -> None:
    pid = stub_pid(runtime, "face_detect")
    detect(client, [FACE])  # warm: the arena's one full-size call
    before = rss_mb(pid)
    all_cases = cases()
    assert len(all_cases) >= 200
    wrong: list[str] = []
    for group in batches(all_cases):
        out = detect(client, [c.data for c in group] + [FACE])
        status = out["FRAME_STATUS"].tolist()
        assert len(status) == len(group) + 1
        wrong += [
            f"{c.name}: {s}" for c, s in zip(group, status, strict=False) if s not in expected_status(c)
        ]
        assert status[-1] == S.OK, [c.name for c in group]
        faces = [i for i, f in enumerate(out["FRAME_INDEX"].tolist()) if f == len(group)]
        assert len(faces) == 1 and iou(out["BOXES"][faces[0]].tolist(), ASTRONAUT_BOX) > 0.8, (
            f"the photo's face was not found beside {[c.name for c in group]}"
        )
        assert all(0 <= f <= len(group) for f in out["FRAME_INDEX"].tolist())
    assert not wrong, wrong
    after = rss_mb(pid)
    assert after - before < RSS_GROWTH_MB, f"face_detect grew from {before:.0f} MB to {after:.0f} MB"


def test_face_analyze_refuses_faces_on_hostile_frames_and_answers_the_next(
    client: grpcclient.InferenceServerClient, runtime: DevSettings
) -> None:
    pid = stub_pid(runtime, "face_cropper")
    good = detect(client, [FACE])
    box, kps = good["BOXES"][:1], good["KEYPOINTS5"][:1]
    inputs = {
        "FRAME_INDEX": np.zeros(1, np.int32),
        "BOXES": box.astype(np.float32),
        "KEYPOINTS5": kps.astype(np.float32),
    }
    outputs = list(contract.FACE_ANALYZE_OUTPUT_NAMES)
    infer(client, "face_analyze", {"IMAGES": np.array([FACE], dtype=object), **inputs}, outputs)
    before = rss_mb(pid)
    sample = bomb_cases() + broken_cases(SEED + 1, 24)
    for case in sample:
        # the face is on the hostile frame: refused as the request's error, never a crash
        with pytest.raises(InferenceServerException) as refused:
            infer(client, "face_analyze", {"IMAGES": np.array([case.data], dtype=object), **inputs}, outputs)
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT", (case.name, str(refused.value))
        assert "frame 0" in str(refused.value), (case.name, str(refused.value))
    # the same face on the real photo, beside hostile frames, is answered
    for case in (sample[0], sample[-1]):
        frames = np.array([case.data, FACE], dtype=object)
        shifted = inputs | {"FRAME_INDEX": np.ones(1, np.int32)}
        out = infer(client, "face_analyze", {"IMAGES": frames, **shifted}, outputs)
        assert out["CROP_BOXES"].shape == (1, 4), case.name
    assert rss_mb(pid) - before < RSS_GROWTH_MB


def test_face_pipeline_answers_a_hostile_sample(client: grpcclient.InferenceServerClient) -> None:
    sample = bomb_cases()[:3] + broken_cases(SEED + 2, 5)
    frames = np.array([c.data for c in sample] + [FACE], dtype=object)
    out = infer(client, "face_pipeline", {"IMAGES": frames}, OUTPUTS)
    status = out["FRAME_STATUS"].tolist()
    assert status[:3] == [S.TOO_LARGE] * 3 and status[-1] == S.OK
    assert out["FRAME_INDEX"].tolist().count(len(sample)) == 1
