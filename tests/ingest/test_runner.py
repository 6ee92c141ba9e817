"""Tests for faceflow.ingest.runner: one source's decode and produce threads, with fakes and real files."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from support_ingest import wait_until
from support_shots import shot_frames

from faceflow.ingest import runner as runner_module
from faceflow.ingest.config import IngestConfig, SourceConfig
from faceflow.ingest.errors import FrameTooLarge, SourceDisconnected, SourceUndecodable
from faceflow.ingest.frames import EncodedFrame
from faceflow.ingest.metrics import DropCause, IngestMetrics
from faceflow.ingest.producer import InMemoryFrameSink
from faceflow.ingest.reconnect import SeqCounter
from faceflow.ingest.runner import SourceRunner, SourceState
from faceflow.ingest.sources import FrameSource, InMemorySource

PIXELS = np.full((24, 32, 3), 128, np.uint8)
CONFIG = IngestConfig(reconnect_initial_s=0.01, reconnect_max_s=0.02, queue_size=4, seq_start="zero")


def memory(
    frames: int, *, live: bool, disconnect_after: int | None = None
) -> Callable[[SourceConfig], FrameSource]:
    return lambda spec: InMemorySource(
        [PIXELS] * frames, spec.stream_id, fps=10, is_live=live, disconnect_after=disconnect_after
    )


def script(*steps: Callable[[SourceConfig], FrameSource]) -> Callable[[SourceConfig], FrameSource]:
    """An opener that plays ``steps`` in order, then repeats the last one."""
    calls = {"n": 0}

    def open_next(spec: SourceConfig) -> FrameSource:
        step = steps[min(calls["n"], len(steps) - 1)]
        calls["n"] += 1
        return step(spec)

    return open_next


def failing(error: Exception) -> Callable[[SourceConfig], FrameSource]:
    def raise_it(spec: SourceConfig) -> FrameSource:
        raise error

    return raise_it


def run(
    opener: Callable[[SourceConfig], FrameSource],
    *,
    uri: str = "memory://cam",
    fps: float = 0.0,
    config: IngestConfig = CONFIG,
    sink: InMemoryFrameSink | None = None,
    seq: SeqCounter | None = None,
    wait: bool = True,
) -> tuple[SourceRunner, InMemoryFrameSink, IngestMetrics]:
    metrics = IngestMetrics()
    sink = sink or InMemoryFrameSink(metrics)
    spec = config.source("cam", uri, target_fps=fps)
    runner = SourceRunner(
        spec, config=config, sink=sink, metrics=metrics, seq=seq or SeqCounter(), opener=opener
    )
    runner.start()
    if wait:
        assert runner.join(30), "the runner did not finish"
    return runner, sink, metrics


def test_a_file_ends_with_an_end_of_stream_marker() -> None:
    runner, sink, _ = run(memory(10, live=False), uri="/clip.mp4", fps=5.0)
    frames = sink.of("cam")
    assert [(f.seq, f.end_of_stream) for f in frames] == [(i, False) for i in range(5)] + [(5, True)]
    assert [f.pts_s for f in frames[:5]] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert frames[-1].jpeg == b"" and frames[-1].pts_s == pytest.approx(0.9)
    snap = runner.snapshot()
    assert (snap.state, snap.frames_decoded, snap.frames_produced, snap.frames_dropped) == (
        SourceState.ENDED,
        10,
        5,
        0,
    )
    assert snap.next_seq == 6


def test_a_live_source_reconnects_and_seq_continues() -> None:
    opener = script(memory(5, live=True, disconnect_after=3), memory(5, live=True, disconnect_after=2))
    runner, sink, metrics = run(opener, uri="rtsp://cam/x", wait=False)
    wait_until(lambda: runner.snapshot().reconnects >= 3, what="three reconnects")
    runner.stop()
    assert runner.join(10)
    frames = sink.of("cam")
    seqs = [f.seq for f in frames]
    assert seqs == list(range(len(seqs)))
    assert len(seqs) >= 3 + 2 + 2
    assert not any(f.end_of_stream for f in frames)  # a live stream has no end
    snap = runner.snapshot()
    assert snap.state is SourceState.STOPPED
    assert "simulated disconnect" in snap.last_error
    assert "faceflow_ingest_reconnects_total" in metrics.render()


@pytest.mark.parametrize(
    ("opener", "uri", "message_part"),
    [
        (
            failing(SourceDisconnected("rtsp://cam/x", "Connection refused")),
            "rtsp://cam/x",
            "Connection refused",
        ),
        (
            failing(SourceUndecodable("/a.mp4", "cannot open: not a decodable video")),
            "/a.mp4",
            "not a decodable",
        ),
    ],
)
def test_sources_that_cannot_be_opened_fail_with_the_reason(
    opener: Callable[[SourceConfig], FrameSource], uri: str, message_part: str
) -> None:
    config = CONFIG.with_overrides(max_reconnect_attempts=2)
    runner, sink, _ = run(opener, uri=uri, config=config)
    snap = runner.snapshot()
    assert snap.state is SourceState.FAILED
    assert message_part in snap.last_error
    assert sink.frames == []


@pytest.mark.parametrize(
    ("name", "message_part"),
    [
        ("zero", "not a decodable video"),
        ("random", "not a decodable video"),
        ("audio_only", "no video stream"),
        ("missing", "no such file or folder"),
    ],
)
def test_bad_files_fail_with_a_clear_error(media: object, name: str, message_part: str) -> None:
    path: Path = getattr(media, name)
    config = CONFIG
    spec = config.source("cam", str(path))
    metrics = IngestMetrics()
    runner = SourceRunner(spec, config=config, sink=InMemoryFrameSink(), metrics=metrics, seq=SeqCounter())
    runner.start()
    assert runner.join(30)
    snap = runner.snapshot()
    assert snap.state is SourceState.FAILED
    assert message_part in snap.last_error
    assert str(path) in snap.last_error


def test_a_real_file_and_folder(media: object) -> None:
    for name, fps, expected in (("mp4", 5.0, 10), ("folder", 0.0, 3)):
        spec = CONFIG.source("cam", str(getattr(media, name)), target_fps=fps)
        sink = InMemoryFrameSink()
        runner = SourceRunner(spec, config=CONFIG, sink=sink, metrics=IngestMetrics(), seq=SeqCounter())
        runner.start()
        assert runner.join(30)
        frames = sink.of("cam")
        assert runner.snapshot().state is SourceState.ENDED, runner.snapshot().last_error
        assert len(frames) == expected + 1 and frames[-1].end_of_stream
        assert all(f.jpeg.startswith(b"\xff\xd8\xff") for f in frames[:-1])


def test_a_frame_that_cannot_fit_is_dropped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    real = runner_module.encode_frame

    def encode(frame: object, seq: int, settings: object, **kwargs: object) -> EncodedFrame:
        if seq == 2:
            raise FrameTooLarge("frame 32x24: expected a JPEG of at most 1 bytes")
        return real(frame, seq, settings, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner_module, "encode_frame", encode)
    runner, sink, metrics = run(memory(4, live=False), uri="/clip.mp4")
    assert [f.seq for f in sink.of("cam")] == [0, 1, 3, 4]  # the gap is the dropped frame
    assert runner.snapshot().frames_dropped == 1
    assert metrics.dropped_total("cam", DropCause.TOO_LARGE) == 1


def test_a_stalled_sink_bounds_the_queue_and_counts_drops() -> None:
    """Live source, drop-oldest: the decode thread never waits; the queue stays within its size."""
    gate = threading.Event()
    sent: list[int] = []

    class SlowSink(InMemoryFrameSink):
        def send(self, frame: EncodedFrame, **kwargs: object) -> None:  # type: ignore[override]
            gate.wait(30)
            sent.append(frame.seq)
            super().send(frame, **kwargs)  # type: ignore[arg-type]

    depths: list[int] = []
    runner, _, metrics = run(
        memory(200, live=True, disconnect_after=200), uri="rtsp://cam/x", sink=SlowSink(), wait=False
    )
    # frames_decoded counts a frame before it is encoded and queued, so wait on the drops themselves:
    # with one frame held by the stalled sink and the queue full, every further frame drops the oldest.
    expected_drops = 200 - CONFIG.queue_size - 1
    wait_until(
        lambda: (
            runner.snapshot().frames_decoded >= 200
            and metrics.dropped_total("cam", DropCause.QUEUE_OLDEST) >= expected_drops
        ),
        what=f"200 frames decoded and {expected_drops} dropped while the sink stalls",
    )
    depths.append(runner.snapshot().queue_depth)
    stats = runner.queue.stats()
    gate.set()
    runner.stop()
    assert runner.join(10)
    assert stats.high_watermark <= CONFIG.queue_size
    assert max(depths) <= CONFIG.queue_size
    assert metrics.dropped_total("cam", DropCause.QUEUE_OLDEST) >= expected_drops
    assert sent == sorted(sent)


def test_refused_sends_are_counted_and_the_source_goes_on() -> None:
    sink = InMemoryFrameSink(refuse=lambda f: DropCause.BROKER_STALLED if f.seq % 2 else None)
    runner, sink, _ = run(memory(6, live=False), uri="/clip.mp4", sink=sink)
    assert [f.seq for f in sink.of("cam")] == [0, 2, 4, 6]  # 6: the end-of-stream marker, retried until sent
    assert runner.snapshot().frames_dropped == 3
    assert runner.snapshot().state is SourceState.ENDED


def shot_cuts(metrics: IngestMetrics, stream_id: str = "cam") -> float:
    """The value of faceflow_ingest_shot_cuts_total for ``stream_id`` (0 when not exported)."""
    prefix = f'faceflow_ingest_shot_cuts_total{{stream_id="{stream_id}"}} '
    return next(
        (float(line[len(prefix) :]) for line in metrics.render().splitlines() if line.startswith(prefix)), 0.0
    )


def test_a_cut_in_the_content_starts_a_new_shot_exactly_at_the_cut() -> None:
    frames = shot_frames("male", "female")  # 12 + 12 frames of real footage, a hard cut between
    _, sink, metrics = run(
        lambda spec: InMemorySource(frames, spec.stream_id, fps=10, is_live=False), uri="/edited.mp4"
    )
    sent = sink.of("cam")
    assert [f.shot_start_seq for f in sent[:-1]] == [0] * 12 + [12] * 12
    assert sent[-1].end_of_stream and sent[-1].shot_start_seq == 12  # the marker is in the last shot
    assert shot_cuts(metrics) == 1


def test_the_detector_compares_the_frames_sent_after_sampling() -> None:
    # 10 fps sampled to 5: every other frame is sent, and the cut moves to the seq it was sent at
    frames = shot_frames("walking", "walking_pause")  # 12 + 6 frames, same corridor, other people
    _, sink, metrics = run(
        lambda spec: InMemorySource(frames, spec.stream_id, fps=10, is_live=False), uri="/a.mp4", fps=5.0
    )
    assert [f.shot_start_seq for f in sink.of("cam")[:-1]] == [0] * 6 + [6] * 3
    assert shot_cuts(metrics) == 1


def test_a_continuous_shot_keeps_one_shot() -> None:
    frames = shot_frames("one_by_one", "one_by_one")[:12]  # an auto-exposure ramp
    _, sink, metrics = run(lambda spec: InMemorySource(frames, spec.stream_id, fps=10), uri="/a.mp4")
    assert {f.shot_start_seq for f in sink.of("cam")} == {0}
    assert shot_cuts(metrics) == 0


def test_a_real_edited_file_gets_a_new_shot_at_the_cut(tmp_path: Path) -> None:
    path = tmp_path / "edited.mp4"
    frames = shot_frames("female", "male", scale=4)  # 256x144
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 256, 144, "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    spec = CONFIG.source("cam", str(path), target_fps=5.0)
    sink = InMemoryFrameSink()
    runner = SourceRunner(spec, config=CONFIG, sink=sink, metrics=IngestMetrics(), seq=SeqCounter(100))
    runner.start()
    assert runner.join(30)
    sent = sink.of("cam")
    assert runner.snapshot().state is SourceState.ENDED, runner.snapshot().last_error
    # 10 fps sampled to 5: 6 frames of each shot, then the marker, in the last shot
    assert [f.shot_start_seq for f in sent] == [100] * 6 + [106] * 7
