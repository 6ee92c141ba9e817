"""The analyzer's per-record rules on a fake Triton: poison, repeats, end-of-stream, schedules."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from faceflow.analyzer.backends import PipelineBackend, ScheduledBackend
from faceflow.analyzer.processor import AnalyzerProcessor
from faceflow.core.scheduling import SchedulePolicy
from faceflow.errors import Unavailable
from faceflow.service.consume import InRecord, Result
from faceflow.service.triton_fake import FakeTritonClient
from faceflow.v1 import analysis_pb2, frame_pb2


def frame(
    stream: str,
    seq: int,
    image: bytes = b"FACE-a",
    *,
    eos: bool = False,
    pts_s: float | None = None,
    shot: int = 0,
) -> bytes:
    f = frame_pb2.Frame(
        stream_id=stream,
        seq=seq,
        image=b"" if eos else image,
        end_of_stream=eos,
        width=64,
        height=48,
        shot_start_seq=shot,
    )
    f.pts.FromNanoseconds(round((seq * 0.2 if pts_s is None else pts_s) * 1e9))
    return f.SerializeToString()


def record(value: bytes | None, offset: int, key: bytes = b"cam") -> InRecord:
    return InRecord(
        topic="frames", partition=0, offset=offset, key=key, value=value, headers=[], timestamp_ms=0
    )


def processor(
    schedule: str = "all", fake: FakeTritonClient | None = None
) -> tuple[AnalyzerProcessor, FakeTritonClient]:
    fake = fake or FakeTritonClient()
    backend = (
        PipelineBackend(fake) if schedule == "all" else ScheduledBackend(fake, SchedulePolicy(max_age_s=1.0))
    )
    return AnalyzerProcessor(backend, analyses_topic="analyses", models=fake.model_infos), fake


def analysis(result: Result) -> analysis_pb2.FrameAnalysis:
    (out,) = result.outputs
    assert out.topic == "analyses"
    return analysis_pb2.FrameAnalysis.FromString(out.value)


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (None, b"cam", "an empty record (tombstone)"),
        (b"\xff\xff not a protobuf", b"cam", "not a faceflow.v1.Frame"),
        (frame("bad id", 1), b"bad id", "stream id: expected 1 to 64 characters"),
        (frame("cam", 1), b"other", "record key 'other' differs from the frame's stream_id 'cam'"),
        (frame("cam", 1, image=b""), b"cam", "stream cam seq 1: no image and not an end-of-stream marker"),
        (frame("cam", 1, image=b"JUNK"), b"cam", "FRAME_STATUS 1 (undecodable)"),
        (frame("cam", 1, image=b"HUGE"), b"cam", "FRAME_STATUS 2 (too_large)"),
    ],
)
def test_poison_goes_to_the_dlq_with_its_reason_and_the_rest_goes_on(
    value: bytes | None, key: bytes, reason: str
) -> None:
    proc, _ = processor()
    results = proc.process([record(value, 0, key), record(frame("cam", 7), 1)])
    assert results[0].dlq_reason is not None and reason in results[0].dlq_reason
    assert not results[0].outputs
    assert analysis(results[1]).seq == 7


def test_a_model_failure_on_one_frame_is_isolated_by_splitting_the_batch() -> None:
    proc, fake = processor()
    records = [record(frame("cam", s, b"FACE-" + bytes([65 + s])), s) for s in range(3)]
    records.insert(1, record(frame("cam", 9, b"POISON"), 3))
    results = proc.process(records)
    assert [r.dlq_reason is not None for r in results] == [False, True, False, False]
    assert "a model failed" in (results[1].dlq_reason or "")
    assert fake.calls == [("pipeline", 1, 1)] * 3  # the batch failed, then one frame at a time


def test_repeats_are_dropped_only_after_delivery_and_end_of_stream_passes_through_in_order() -> None:
    proc, _ = processor()
    first = proc.process([record(frame("cam", 1), 0), record(frame("cam", 2, eos=True), 1)])
    assert analysis(first[1]).end_of_stream and not analysis(first[1]).faces
    again = proc.process([record(frame("cam", 1), 2)])
    assert again[0].outputs, "not delivered yet: processed again"
    proc.delivered(first)
    repeat = proc.process([record(frame("cam", 1), 3), record(frame("cam", 3), 4)])
    assert repeat[0].outputs == () and repeat[0].dlq_reason is None
    assert analysis(repeat[1]).seq == 3


def test_triton_unavailable_fails_the_batch_for_the_loop_to_retry() -> None:
    proc, fake = processor()
    fake.unavailable = True
    with pytest.raises(Unavailable):
        proc.process([record(frame("cam", 1), 0)])


def test_every_face_carries_its_task_results_and_the_models_provenance() -> None:
    proc, _ = processor()
    (result,) = proc.process([record(frame("cam", 5, b"FACE2-x"), 0)])
    message = analysis(result)
    assert [f.face_index for f in message.faces] == [0, 1]
    face = message.faces[0]
    assert face.analyzed and face.results_seq == 5
    assert len(face.landmarks68) == 68 and len(face.attributes) == 40 and len(face.embedding) == 128
    assert face.parsing.compression == face.parsing.compression.__class__(2)  # zlib
    assert message.schedule == "all"
    assert any(m.name == "facexformer" and m.random_init for m in message.models)
    assert message.timings.batch_size == 1 and message.timings.faces_analyzed == 2


def run(proc: AnalyzerProcessor, frames: Sequence[tuple[int, float]]) -> list[analysis_pb2.FrameAnalysis]:
    out = []
    for offset, (seq, pts) in enumerate(frames):
        results = proc.process([record(frame("cam", seq, b"FACE-a", pts_s=pts), offset)])
        proc.delivered(results)
        out.append(analysis(results[0]))
    return out


def test_adaptive_analyzes_a_steady_face_about_once_per_max_age_and_says_what_stands_for_the_rest() -> None:
    proc, fake = processor("adaptive")
    messages = run(proc, [(s, s * 0.2) for s in range(12)])  # 5 fps, 2.4 s
    analyzed = [m.seq for m in messages if m.faces[0].analyzed]
    assert analyzed == [0, 6]  # strictly older than 1 s: every sixth frame at 5 fps
    skipped = [m.faces[0] for m in messages if not m.faces[0].analyzed]
    assert all(f.results_seq in (0, 6) and not f.embedding and not f.landmarks68 for f in skipped)
    assert [f.results_seq for f in skipped][:4] == [0, 0, 0, 0]
    assert all(m.schedule == "adaptive" for m in messages)
    analyzed_faces = sum(c[2] for c in fake.calls if c[0] == "analyze")
    assert analyzed_faces == 2


def test_adaptive_state_lost_costs_one_extra_analysis_never_a_wrong_result() -> None:
    proc, _ = processor("adaptive")
    run(proc, [(0, 0.0), (1, 0.2)])
    proc.backend.forget({"cam"})
    after = run(proc, [(2, 0.4), (3, 0.6)])
    assert [m.faces[0].analyzed for m in after] == [True, False]
    assert after[1].faces[0].results_seq == 2


def run_shots(
    proc: AnalyzerProcessor, frames: Sequence[tuple[int, int]], image: bytes = b"FACE2-a"
) -> list[analysis_pb2.FrameAnalysis]:
    """Feed (seq, shot_start_seq) frames of the same two faces at 5 fps, one per batch."""
    out = []
    for offset, (seq, shot) in enumerate(frames):
        results = proc.process([record(frame("cam", seq, image, pts_s=seq * 0.2, shot=shot), offset)])
        proc.delivered(results)
        out.append(analysis(results[0]))
    return out


def test_adaptive_analyzes_every_face_of_the_first_frame_of_a_new_shot() -> None:
    # two faces at the very same boxes before and after a hard cut at seq 13 (shot / reverse shot):
    # by position they are the same faces, but a new shot makes them new
    proc, fake = processor("adaptive")
    messages = run_shots(proc, [(10, 10), (11, 10), (12, 10), (13, 13), (14, 13), (15, 13)])
    assert [[f.analyzed for f in m.faces] for m in messages] == [
        [True, True],
        [False, False],
        [False, False],
        [True, True],  # the cut: both faces analyzed again
        [False, False],
        [False, False],
    ]
    assert [f.results_seq for f in messages[4].faces] == [13, 13]  # never the old shot's results
    assert [m.shot_start_seq for m in messages] == [10, 10, 10, 13, 13, 13]
    assert sum(c[2] for c in fake.calls if c[0] == "analyze") == 4
    assert proc.backend.scheduler.stats()["cuts"] == 1  # type: ignore[attr-defined]


def test_a_new_shot_is_seen_even_when_its_first_frame_was_dropped() -> None:
    proc, _ = processor("adaptive")
    messages = run_shots(proc, [(0, 0), (1, 0), (2, 0), (4, 3), (5, 3)])  # seq 3 started it, then lost
    assert [m.faces[0].analyzed for m in messages] == [True, False, False, True, False]
    assert messages[4].faces[0].results_seq == 4


def test_shot_start_seq_is_forwarded_by_every_schedule_and_on_end_of_stream() -> None:
    for schedule in ("all", "adaptive"):
        proc, _ = processor(schedule)
        results = proc.process(
            [record(frame("cam", 7, shot=5), 0), record(frame("cam", 8, eos=True, shot=5), 1)]
        )
        assert [analysis(r).shot_start_seq for r in results] == [5, 5]
        assert analysis(results[1]).end_of_stream


def test_adaptive_sends_face_analyze_only_the_frames_its_chosen_faces_are_on() -> None:
    # a batch: a frame without faces, a new face, the same face again (skipped), another stream's
    # new face; face_analyze gets the two frames with chosen faces, renumbered, and nothing else
    proc, fake = processor("adaptive")
    batch = [
        record(frame("cam", 0, b"none-0"), 0),
        record(frame("cam", 1, b"FACE-a"), 1),
        record(frame("cam", 2, b"FACE-a"), 2),
        record(frame("door", 0, b"FACE-b"), 3, key=b"door"),
    ]
    results = proc.process(batch)
    assert [c for c in fake.calls if c[0] == "analyze"] == [("analyze", 2, 2)]
    messages = [analysis(r) for r in results]
    assert [[f.analyzed for f in m.faces] for m in messages] == [[], [True], [False], [True]]
    # each analyzed face got its own frame's results (the fake's embedding follows the image bytes)
    alone, _ = processor("adaptive")
    for i, image, key in ((1, b"FACE-a", b"cam"), (3, b"FACE-b", b"door")):
        stream = key.decode()
        (expected,) = alone.process([record(frame(stream, 9, image), 9, key=key)])
        assert messages[i].faces[0].embedding == analysis(expected).faces[0].embedding


def test_adaptive_calls_no_face_analyze_when_no_face_is_chosen() -> None:
    proc, fake = processor("adaptive")
    results = proc.process([record(frame("cam", 0, b"none-0"), 0), record(frame("cam", 1, b"none-1"), 1)])
    assert [c[0] for c in fake.calls] == ["detect"]
    assert [len(analysis(r).faces) for r in results] == [0, 0]
