"""Hostile pictures against the real Triton (the local runtime's tritonserver): small PNGs that
decode to tens of megapixels get TOO_LARGE per frame within an answered request and leave the
``face_detector`` process no larger; a 16-bit grayscale photo is analysed, not seen as white; a
request whose deadline passes stops and the server answers the next one correctly.

The bound on resident memory: the stub's VmRSS is read after a warm-up request whose frames give
the detector the same input size as the batch's admitted frames (so onnxruntime's arena, which
keeps its largest call's activations, is already at that size), then after the batch. The batch
admits two 30-megapixel frames (the request's 66-megapixel budget) and decodes them to 3000x2500
RGB (22.5 MB each) after a 30 MB full-size decode; kept, they would add at least 2 x 22.5 + 30 MB.
The bound, 48 MB, is under that and leaves room for the allocator's own caching.

The bound on the peak (VmHWM, restarted through ``/proc/PID/clear_refs`` before the batch): 200 MB.
Decoding the two admitted frames at full size would hold 2 x 6000 x 5000 x 3 B = 180 MB of RGB on
top of their 30 MB decoder buffers and the detector's copies (measured: +319 MB with
``decode_min_side`` 0, +103 MB with the default 2560).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from models.test_imaging_samples import astronaut, encode, gray16, iou, png_header, png_zeros
from support_triton import OUTPUTS, infer
from tritonclient.utils import InferenceServerException

from faceflow.models import contract
from faceflow.models.contract import FrameStatus as S
from faceflow.runtime.procs import wait_until
from faceflow.runtime.settings import DevSettings

pytestmark = pytest.mark.integration

ASTRONAUT_BOX = (181.5, 58.2, 269.9, 177.8)
DETECTOR_OUTPUTS = [*contract.FACE_DETECT_OUTPUT_NAMES, "CROP_BOXES", "FACE_CROPS", "ID_CHIPS"]
RSS_BOUND_MB = 48
PEAK_BOUND_MB = 200


@pytest.fixture(scope="module")
def client(runtime: DevSettings) -> Iterator[grpcclient.InferenceServerClient]:
    if runtime.external_triton:
        pytest.fail(
            "these tests read the memory and the log of the Triton they start: unset FACEFLOW_TEST_TRITON_URL"
        )
    c = grpcclient.InferenceServerClient(runtime.triton_grpc_url)
    params = c.get_model_config("face_detector", as_json=True)["config"].get("parameters", {})
    if "request_pixels" not in params:
        pytest.fail(
            "build/triton_repo/cpu predates the image limits: run `faceflow models build` (make models)"
        )
    yield c
    c.close()


def _proc_lines(pid: int, name: str) -> str:
    return Path(f"/proc/{pid}/{name}").read_text()


def stub_pid(runtime: DevSettings, model: str) -> int:
    """The python-backend stub serving ``model`` for the runtime's tritonserver."""
    server = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _cmdline(p)[:1] and _cmdline(p)[0].endswith("tritonserver")
        and f"--grpc-port={runtime.triton_grpc_port}" in _cmdline(p)
    ]  # fmt: skip
    assert len(server) == 1, (
        f"expected one tritonserver on grpc port {runtime.triton_grpc_port}, got {server}"
    )
    stubs = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and len(_cmdline(p)) > 1 and _cmdline(p)[1].endswith(f"/{model}/1/model.py")
        and re.search(rf"^PPid:\s+{server[0]}$", _status(p), re.MULTILINE)
    ]  # fmt: skip
    assert len(stubs) == 1, f"expected one triton_python_backend_stub for {model}, got {stubs}"
    return stubs[0]


def _cmdline(p: Path) -> list[str]:
    try:
        return (p / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _status(p: Path) -> str:
    try:
        return (p / "status").read_text()
    except OSError:
        return ""


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    match = re.search(rf"^{field}:\s+(\d+) kB", _proc_lines(pid, "status"), re.MULTILINE)
    assert match is not None, f"no {field} for pid {pid}"
    return int(match.group(1)) / 1024


def images(frames: list[bytes]) -> dict[str, np.ndarray]:
    return {"IMAGES": np.array(frames, dtype=object)}


FACE = encode(astronaut(), "JPEG")
#: 6000 x 5000 gray: 30 MP each (under the 33.2 MP frame limit); two fill the 66.4 MP request budget
THIRTY_MP = png_zeros(6000, 5000)
#: one pixel wider than 8K: over the frame limit, refused from the header
OVER_8K = png_zeros(7681, 4320)
BOMB_BATCH = [THIRTY_MP] * 4 + [png_header(40_000, 40_000)] * 4 + [OVER_8K] * 2 + [FACE]
BOMB_STATUSES = [S.OK, S.OK] + [S.TOO_LARGE] * 8 + [S.OK]


def test_a_batch_of_png_bombs_is_answered_frame_by_frame_and_leaves_no_memory_behind(
    client: grpcclient.InferenceServerClient, runtime: DevSettings
) -> None:
    assert sum(len(f) for f in BOMB_BATCH) < 300_000  # 11 frames, 200+ megapixels, in a few hundred KB
    pid = stub_pid(runtime, "face_detector")
    # the admitted bombs are worked on at 3000 x 2500 (shrunk by 2): warm up at that detector input
    same_input = encode(np.zeros((2500, 3000, 3), np.uint8), "JPEG")
    warm = infer(client, "face_detector", images([same_input, same_input, FACE]), DETECTOR_OUTPUTS)
    assert warm["FRAME_STATUS"].tolist() == [S.OK, S.OK, S.OK]
    before = rss_mb(pid)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the stub's VmHWM restarts from its VmRSS
    for _ in range(2):
        out = infer(client, "face_detector", images(BOMB_BATCH), DETECTOR_OUTPUTS)
        assert out["FRAME_STATUS"].tolist() == BOMB_STATUSES
        assert out["FRAME_INDEX"].tolist() == [10]  # the face in the last frame is still found
        assert iou(out["BOXES"][0].tolist(), ASTRONAUT_BOX) > 0.8
    after, peak = rss_mb(pid), rss_mb(pid, "VmHWM")
    print(  # the numbers the bounds are judged against, in the test's output
        f"face_detector stub {pid}: VmRSS {before:.0f} MB before, {after:.0f} MB after two bomb batches, "
        f"peak {peak:.0f} MB"
    )
    assert after - before < RSS_BOUND_MB, f"VmRSS grew from {before:.0f} MB to {after:.0f} MB"
    assert peak - before < PEAK_BOUND_MB, f"VmHWM reached {peak:.0f} MB from {before:.0f} MB"


def test_face_pipeline_answers_the_same_bomb_batch(client: grpcclient.InferenceServerClient) -> None:
    out = infer(client, contract.FACE_PIPELINE, images(BOMB_BATCH), OUTPUTS)
    assert out["FRAME_STATUS"].tolist() == BOMB_STATUSES
    assert out["FRAME_INDEX"].tolist() == [10]
    assert out["EMBEDDING"].shape == (1, contract.IDENTITY_DIM)


@pytest.mark.parametrize("model", [contract.FACE_PIPELINE, contract.FACE_DETECT])
def test_a_16_bit_grayscale_photo_has_its_face_found(
    client: grpcclient.InferenceServerClient, model: str
) -> None:
    picture = gray16(astronaut())
    assert picture.mode == "I;16"
    names = OUTPUTS if model == contract.FACE_PIPELINE else list(contract.FACE_DETECT_OUTPUT_NAMES)
    out = infer(client, model, images([encode(picture, "PNG")]), names)
    assert out["FRAME_STATUS"].tolist() == [S.OK]
    assert out["FRAME_INDEX"].tolist() == [0]
    assert iou(out["BOXES"][0].tolist(), ASTRONAUT_BOX) > 0.8
    assert out["SCORES"][0] > 0.5


def _log_has(log: Path, pattern: str, start: int) -> bool:
    return re.search(pattern, log.read_text(errors="replace")[start:]) is not None


def test_a_request_past_its_deadline_stops_and_the_next_is_answered(
    client: grpcclient.InferenceServerClient, runtime: DevSettings
) -> None:
    log = runtime.run_dir / "triton" / "triton.log"
    start = len(log.read_text(errors="replace"))
    frames = [encode(astronaut(1280), "JPEG")] * 40  # 40 detector calls at 1280 x 1280: seconds of work
    tensor = grpcclient.InferInput("IMAGES", [len(frames)], "BYTES")
    tensor.set_data_from_numpy(np.array(frames, dtype=object))
    outputs = [grpcclient.InferRequestedOutput(n) for n in contract.FACE_DETECT_OUTPUT_NAMES]
    with pytest.raises(InferenceServerException, match="Deadline Exceeded"):
        client.infer(contract.FACE_DETECT, [tensor], outputs=outputs, client_timeout=0.5)
    # the model says where it stopped (Triton's log, through pb_utils.Logger)
    stopped = (
        r"face_detect stopped a request: request cancelled before (it ran|frame \d+ of 40|detecting 1 of 40)"
    )
    wait_until(
        "face_detect to stop the cancelled request", lambda: _log_has(log, stopped, start), timeout_s=120
    )
    good = infer(client, contract.FACE_DETECT, images([FACE]), list(contract.FACE_DETECT_OUTPUT_NAMES))
    assert good["FRAME_STATUS"].tolist() == [S.OK]
    assert iou(good["BOXES"][0].tolist(), ASTRONAUT_BOX) > 0.8
