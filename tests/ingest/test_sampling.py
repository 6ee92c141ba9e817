"""Tests for faceflow.ingest.sampling: frames are picked by timestamp."""

from __future__ import annotations

import numpy as np
import pytest

from faceflow.ingest.errors import IngestConfigError, InvalidFrame
from faceflow.ingest.frames import DecodedFrame
from faceflow.ingest.sampling import FpsSampler


def kept(sampler: FpsSampler, pts: list[float] | np.ndarray) -> list[float]:
    return [float(p) for p in pts if sampler.keep(float(p))]


def regular(fps: float, seconds: float, start: float = 0.0) -> np.ndarray:
    return start + np.arange(round(fps * seconds)) / fps


@pytest.mark.parametrize(
    ("source_fps", "target_fps", "expected_count"),
    [
        (30, 5, 10),
        (25, 10, 20),
        (25, 1, 2),
        (60, 30, 60),
        (30, 29.97, 60),
        (10, 10, 20),
        (5, 10, 10),  # slower source than target: keep all
        (30, None, 60),
        (30, 0, 60),
        (24, 7, 14),
    ],
)
def test_regular_sources_over_two_seconds(
    source_fps: float, target_fps: float | None, expected_count: int
) -> None:
    sampler = FpsSampler(target_fps)
    out = kept(sampler, regular(source_fps, 2.0))
    assert len(out) == expected_count
    if target_fps and target_fps < source_fps:
        gaps = np.diff(out)
        # No lookahead: a gap may be short by up to one source period, never more.
        assert gaps.min() >= 1 / target_fps - 1 / source_fps - 1e-9
        assert gaps.mean() == pytest.approx(1 / target_fps, rel=0.1)


def test_irregular_timestamps_keep_the_target_rate() -> None:
    rng = np.random.default_rng(1)
    # 30 fps with +-8 ms jitter and 10% of the frames missing.
    pts = regular(30, 2.0) + rng.uniform(-0.008, 0.008, 60)
    pts = np.sort(pts[rng.random(60) > 0.1])
    out = kept(FpsSampler(5), pts)
    assert 9 <= len(out) <= 11
    assert np.diff(out).min() > 0.15


def test_jittery_source_at_the_target_rate_keeps_every_frame() -> None:
    rng = np.random.default_rng(2)
    pts = regular(10, 3.0) + rng.uniform(-0.005, 0.005, 30)
    assert len(kept(FpsSampler(10), pts)) == 30


def test_backwards_timestamps_reset_the_clock() -> None:
    sampler = FpsSampler(5)
    first = kept(sampler, regular(30, 1.0, start=50.0))
    second = kept(sampler, regular(30, 1.0))  # reconnect: the clock restarts at 0
    assert len(first) == len(second) == 5
    assert second[0] == 0.0
    assert sampler.clock_resets == 1


def test_forward_jump_re_anchors_at_the_new_frame() -> None:
    sampler = FpsSampler(5)
    kept(sampler, regular(30, 1.0))
    after = kept(sampler, regular(30, 1.0, start=1000.01))
    assert after[0] == pytest.approx(1000.01)
    assert len(after) == 5
    assert np.diff(after).min() == pytest.approx(0.2, abs=1e-9)


def test_reset_keeps_the_next_frame() -> None:
    sampler = FpsSampler(1)
    assert sampler.keep(0.0)
    assert not sampler.keep(0.5)
    sampler.reset()
    assert sampler.keep(0.6)
    assert not sampler.keep(1.0)
    assert sampler.keep(1.6)


def test_equal_timestamps_keep_only_the_first() -> None:
    sampler = FpsSampler(5)
    assert kept(sampler, [1.0, 1.0, 1.0]) == [1.0]


@pytest.mark.parametrize(
    ("target_fps", "expected_error"),
    [
        (None, None),
        (0, None),
        (0.5, None),
        (120, None),
        (-1, IngestConfigError),
        (float("nan"), IngestConfigError),
        (float("inf"), IngestConfigError),
        ("5", IngestConfigError),
        (True, IngestConfigError),
    ],
)
def test_target_fps_validation(target_fps: object, expected_error: type[Exception] | None) -> None:
    if expected_error is None:
        sampler = FpsSampler(target_fps)
        assert sampler.keeps_all == (not target_fps)
        return
    with pytest.raises(expected_error, match="target_fps: expected a finite number"):
        FpsSampler(target_fps)


def test_non_finite_pts_is_rejected() -> None:
    with pytest.raises(InvalidFrame, match="expected a finite float, got nan"):
        FpsSampler(5).keep(float("nan"))


def test_sample_filters_decoded_frames_lazily() -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    frames = (DecodedFrame("cam1", float(p), 0, rgb) for p in regular(30, 2.0))
    out = list(FpsSampler(5).sample(frames))
    assert [f.pts_s for f in out] == pytest.approx([i * 0.2 for i in range(10)])


@pytest.mark.parametrize(
    ("source_fps", "target_fps"), [(24, 7), (30, 29.97), (25, 3), (59.94, 15), (12.5, 12)]
)
def test_long_run_rate_matches_the_target(source_fps: float, target_fps: float) -> None:
    out = kept(FpsSampler(target_fps), regular(source_fps, 60.0))
    assert abs(len(out) - 60 * target_fps) <= 1
