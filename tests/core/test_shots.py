"""Tests for faceflow.core.shots: the shot-cut detector on real footage (tests/data/shots)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from support_shots import SHOTS, shot_frames

from faceflow.core.shots import ShotConfig, ShotDetector, StreamShots

CLIPS = SHOTS


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {name: np.stack(shot_frames(name)) for name in CLIPS}


def cuts(frames: list[np.ndarray], config: ShotConfig | None = None) -> list[int]:
    detector = ShotDetector(config)
    return [i for i, frame in enumerate(frames) if detector.update(frame)]


def gain(frame: np.ndarray, k: float) -> np.ndarray:
    return np.clip(frame.astype(np.float64) * k, 0, 255).astype(np.uint8)


def upscale(frame: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)


@pytest.mark.parametrize("clip", CLIPS)
def test_a_continuous_real_shot_has_no_cut_after_its_first_frame(
    clips: dict[str, np.ndarray], clip: str
) -> None:
    # head turns (male, female), people walking (walking, walking_pause), auto exposure (one_by_one)
    assert cuts(list(clips[clip])) == [0]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("male", "female"),  # shot / reverse shot: another person, same grey wall, same place
        ("female", "male"),
        ("walking", "walking_pause"),  # same corridor, same camera, other people
        ("walking_pause", "walking"),
        ("one_by_one", "male"),
        ("male", "walking"),
    ],
)
def test_a_hard_cut_between_two_real_shots_fires_exactly_at_the_join(
    clips: dict[str, np.ndarray], first: str, second: str
) -> None:
    frames = list(clips[first]) + list(clips[second])
    assert cuts(frames) == [0, len(clips[first])]


def test_lighting_flicker_is_not_a_cut(clips: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(3)
    frames = [gain(f, 1.0 + rng.uniform(-0.12, 0.12)) for f in clips["female"]]
    assert cuts(frames) == [0]
    # without gain compensation the same flicker cuts
    assert len(cuts(frames, ShotConfig(max_gain=1.0))) > 1


def test_a_cut_is_found_through_flicker(clips: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(4)
    frames = [gain(f, 1.0 + rng.uniform(-0.12, 0.12)) for f in [*clips["female"], *clips["male"]]]
    assert cuts(frames) == [0, 12]


def test_a_slow_pan_is_not_a_cut(clips: dict[str, np.ndarray]) -> None:
    wide = upscale(clips["walking"][0], 4)  # 256 x 144
    frames = [np.ascontiguousarray(wide[:, 4 * k : 4 * k + 180]) for k in range(18)]  # 2.2 % per frame
    assert cuts(frames) == [0]


def test_frame_size_does_not_matter(clips: dict[str, np.ndarray]) -> None:
    frames = [upscale(f, 5) for f in [*clips["male"], *clips["female"]]]  # 320 x 180
    assert cuts(frames) == [0, 12]


def test_a_one_frame_flash_of_another_shot_is_one_cut_not_two(clips: dict[str, np.ndarray]) -> None:
    male, female = list(clips["male"]), list(clips["female"])
    frames = [*male[:6], female[0], *male[6:]]
    assert cuts(frames) == [0, 6]  # the return to the first shot is within min_shot_frames
    assert cuts(frames, ShotConfig(min_shot_frames=1)) == [0, 6, 7]


def test_the_second_frame_of_a_detector_may_be_a_cut(clips: dict[str, np.ndarray]) -> None:
    assert cuts([clips["male"][0], clips["female"][0], clips["female"][1]]) == [0, 1]


def test_busy_footage_needs_a_larger_jump() -> None:
    rng = np.random.default_rng(0)
    blocks = [upscale(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), 8) for _ in range(12)]
    # every frame of random colour blocks differs a lot from the last: the first jump cuts, then
    # the running level is as high as the jumps and nothing more does
    assert cuts(blocks) == [0, 1]
    # with a ratio of 1 a jump only has to match the running level: many more cuts
    assert len(cuts(blocks, ShotConfig(ratio=1.0))) >= 5


def test_step_reports_what_it_measured(clips: dict[str, np.ndarray]) -> None:
    detector = ShotDetector()
    first = detector.step(clips["male"][0])
    assert first.cut and first.score == 0.0
    same = detector.step(clips["male"][1])
    assert not same.cut and 0.0 <= same.cells < 0.18 and 0.0 <= same.whole < 0.3
    assert same.level == 0.0  # no earlier frame in the shot yet
    cut = detector.step(clips["female"][0])
    assert cut.cut and cut.cells >= 0.18 and cut.score >= 1.0 and cut.level == pytest.approx(same.score)
    brighter = detector.step(gain(clips["female"][1], 1.1))
    assert not brighter.cut and brighter.gain == pytest.approx(1.1, abs=0.03)


def test_reset_starts_a_new_shot(clips: dict[str, np.ndarray]) -> None:
    detector = ShotDetector()
    assert detector.update(clips["male"][0]) and not detector.update(clips["male"][1])
    detector.reset()
    assert detector.update(clips["male"][2])


def test_stream_shots_keeps_the_seq_of_the_first_frame_of_the_shot(clips: dict[str, np.ndarray]) -> None:
    shots = StreamShots()
    assert shots.shot_start_seq is None
    frames = [*clips["male"][:4], *clips["female"][:3]]
    starts = [shots.observe(f, seq) for seq, f in enumerate(frames, start=1000)]
    assert starts == [1000] * 4 + [1004] * 3
    assert shots.shot_start_seq == 1004 and shots.cuts == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sample_width": 2}, "sample_width: expected an int in 4..1024, got 2"),
        ({"sample_height": 36.0}, "sample_height: expected an int"),
        ({"grid": 0}, "grid: expected an int in 1..8"),
        ({"bins": 1}, "bins: expected an int in 2..16"),
        ({"cells_changed": 10}, r"cells_changed: expected an int in 1\.\.9, got 10"),
        ({"cell_threshold": 0.0}, r"cell_threshold: expected a number in \(0.0, 1.0\]"),
        ({"global_threshold": float("nan")}, "global_threshold: expected a number"),
        ({"ratio": 0.5}, r"ratio: expected a number in \[1.0, 1000.0\]"),
        ({"window": True}, "window: expected an int"),
        ({"min_shot_frames": 0}, "min_shot_frames: expected an int in 1..10000"),
        ({"max_gain": 0.9}, "max_gain: expected a number"),
    ],
)
def test_config_is_validated(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ShotConfig(**kwargs)


@pytest.mark.parametrize(
    ("rgb", "error", "match"),
    [
        ([[[0, 0, 0]]], TypeError, "rgb: expected a numpy array"),
        (np.zeros((4, 4), np.uint8), ValueError, r"rgb: expected shape \[H,W,3\]"),
        (np.zeros((0, 4, 3), np.uint8), ValueError, r"rgb: expected shape \[H,W,3\] with H, W >= 1"),
        (np.zeros((4, 4, 3), np.float32), ValueError, "rgb: expected dtype uint8, got float32"),
    ],
)
def test_bad_frames_are_refused(rgb: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ShotDetector().update(rgb)  # type: ignore[arg-type]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="config: expected a ShotConfig, got dict"):
        ShotDetector({})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seq: expected an int >= 0, got -1"):
        StreamShots().observe(np.zeros((4, 4, 3), np.uint8), -1)
