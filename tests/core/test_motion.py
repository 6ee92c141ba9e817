"""Tests for faceflow.core.motion."""

from __future__ import annotations

import numpy as np
import pytest

from faceflow.core import motion
from faceflow.core.geometry import from_cxcywh

NOISE = {"acceleration_noise": 1.0, "max_extrapolation_s": 10.0}


def start(boxes: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    return motion.initiate(np.asarray(boxes, float), measurement_noise=0.05, initial_velocity_std=2.0)


def test_initiate() -> None:
    mean, cov = start([[0, 0, 40, 80], [10, 10, 20, 20]])
    np.testing.assert_allclose(mean[:, :4], [[20, 40, 40, 80], [15, 15, 10, 10]])
    np.testing.assert_allclose(mean[:, 4:], 0.0)
    np.testing.assert_allclose(cov[0, 0], (2 * 0.05 * 80) ** 2)
    np.testing.assert_allclose(cov[0, 2], (2.0 * 80) ** 2)
    np.testing.assert_allclose(cov[:, 1], 0.0)


@pytest.mark.parametrize(("dt1", "dt2"), [(0.2, 0.3), (1.0, 0.0), (0.05, 2.0)])
def test_predictions_compose(dt1: float, dt2: float) -> None:
    """Predicting over dt1 then dt2 equals predicting over dt1 + dt2 (what the tracker relies on)."""
    mean, cov = start([[0, 0, 40, 80]])
    mean[:, 4:] = [[30.0, -10.0, 1.0, 0.0]]  # h constant: the noise scales with it
    cov[:, 1] = 5.0
    pos1, cov1 = motion.predict(mean, cov, np.array([dt1]), **NOISE)
    mid = mean.copy()
    mid[:, :4] = pos1
    pos2, cov2 = motion.predict(mid, cov1, np.array([dt2]), **NOISE)
    pos12, cov12 = motion.predict(mean, cov, np.array([dt1 + dt2]), **NOISE)
    np.testing.assert_allclose(pos2, pos12)
    np.testing.assert_allclose(cov2, cov12, rtol=1e-9)


def test_predict_caps_extrapolation_and_ignores_negative_dt() -> None:
    mean, cov = start([[0, 0, 40, 80]])
    mean[:, 4:] = [[100.0, 0.0, 0.0, 0.0]]
    pos, _ = motion.predict(mean, cov, np.array([5.0]), acceleration_noise=1.0, max_extrapolation_s=1.0)
    assert pos[0, 0] == pytest.approx(20 + 100)
    pos, grown = motion.predict(mean, cov, np.array([-1.0]), **NOISE)
    np.testing.assert_allclose(pos, mean[:, :4])
    np.testing.assert_allclose(grown, cov)


def test_filter_learns_a_constant_velocity() -> None:
    mean, cov = start([[0, 0, 50, 50]])
    velocity = np.array([120.0, -40.0, 2.0, 2.0])
    truth = np.array([25.0, 25.0, 50.0, 50.0])
    for _ in range(20):
        truth = truth + velocity * 0.2
        pos, pred_cov = motion.predict(mean, cov, np.array([0.2]), **NOISE)
        mean, new_cov = motion.correct(mean, pos, pred_cov, from_cxcywh(truth[None]), measurement_noise=0.05)
        assert (new_cov[:, 0] < pred_cov[:, 0]).all()  # a measurement always helps
        cov = new_cov
    np.testing.assert_allclose(mean[0, 4:], velocity, rtol=0.02)
    np.testing.assert_allclose(mean[0, :4], truth, atol=0.5)
