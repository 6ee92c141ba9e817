"""Constant-velocity Kalman filter over face boxes, time-aware and vectorised over K boxes.

The state of a box is ``(cx, cy, w, h)`` in pixels and their velocities in pixels per second.
Measurement, process and initial noise are all diagonal per coordinate, so the four coordinates
never correlate: the filter is four independent 2x2 filters (position, velocity), and a
covariance is stored as ``[K, 3, 4]``: ``var(position)``, ``cov(position, velocity)`` and
``var(velocity)`` of each coordinate. Noise scales with the face height (a face twice as large
moves twice as many pixels), as in ByteTrack / BoT-SORT.

The process noise is the continuous white-noise acceleration model, whose discretisations
compose: predicting over ``dt1`` then ``dt2`` gives the covariance of predicting over
``dt1 + dt2``. So a track keeps its posterior at the time of its last match and is predicted
straight to any later frame time, with no per-frame step for unmatched tracks.

These functions sit on the tracker's hot path and do not validate their inputs (the tracker
validates its :class:`~faceflow.core.tracking.Observation` s). Pure: numpy only.
"""

from __future__ import annotations

import logging

import numpy as np

from faceflow.core.geometry import FloatArray, to_cxcywh

logger = logging.getLogger(__name__)

__all__ = ["correct", "initiate", "predict"]


def _scale(h: FloatArray) -> FloatArray:
    """Face height used to scale the noise, at least 1 px, as a column ``[K, 1]``."""
    return np.maximum(h.reshape(-1, 1), 1.0)


def initiate(
    boxes: FloatArray, *, measurement_noise: float, initial_velocity_std: float
) -> tuple[FloatArray, FloatArray]:
    """State of new tracks from their first boxes ``[K, 4]`` (x1, y1, x2, y2): mean ``[K, 8]``, cov.

    The velocity starts at 0 with std ``initial_velocity_std`` face heights per second; the
    position with twice the measurement std.
    """
    z = to_cxcywh(boxes)
    h = _scale(z[:, 3])
    mean = np.zeros((z.shape[0], 8))
    mean[:, :4] = z
    cov = np.zeros((z.shape[0], 3, 4))
    cov[:, 0] = (2.0 * measurement_noise * h) ** 2
    cov[:, 2] = (initial_velocity_std * h) ** 2
    return mean, cov


def predict(
    mean: FloatArray,
    cov: FloatArray,
    dt: FloatArray,
    *,
    acceleration_noise: float,
    max_extrapolation_s: float,
) -> tuple[FloatArray, FloatArray]:
    """Predicted ``(cx, cy, w, h)`` ``[K, 4]`` and covariance ``[K, 3, 4]`` after ``dt`` s ``[K]``.

    The position moves with the velocity for at most ``max_extrapolation_s`` (a face that stays
    hidden does not drift away for ever); the uncertainty grows with the whole ``dt``. Negative
    ``dt`` counts as 0. Velocities are unchanged by a prediction, so they are not returned.
    """
    dt = np.maximum(dt, 0.0).reshape(-1, 1)
    pos = mean[:, :4] + mean[:, 4:] * np.minimum(dt, max_extrapolation_s)
    q = (acceleration_noise * _scale(mean[:, 3])) ** 2
    pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
    out = np.empty_like(cov)
    out[:, 0] = pp + 2.0 * dt * pv + dt * dt * vv + q * dt**3 / 3.0
    out[:, 1] = pv + dt * vv + q * dt * dt / 2.0
    out[:, 2] = vv + q * dt
    return pos, out


def correct(
    mean: FloatArray,
    pos: FloatArray,
    cov: FloatArray,
    boxes: FloatArray,
    *,
    measurement_noise: float,
) -> tuple[FloatArray, FloatArray]:
    """Posterior mean ``[K, 8]`` and covariance after measuring ``boxes`` ``[K, 4]`` (x1, y1, x2, y2).

    ``pos`` and ``cov`` are the prediction (from :func:`predict`) at the measurement's time;
    ``mean`` supplies the velocities. The measurement std is ``measurement_noise`` times the
    measured face height.
    """
    z = to_cxcywh(boxes)
    r = (measurement_noise * _scale(z[:, 3])) ** 2
    pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
    s = pp + r
    k_pos = pp / s
    k_vel = pv / s
    innovation = z - pos
    out_mean = np.empty((z.shape[0], 8))
    out_mean[:, :4] = pos + k_pos * innovation
    out_mean[:, 4:] = mean[:, 4:] + k_vel * innovation
    out_cov = np.empty_like(cov)
    out_cov[:, 0] = (1.0 - k_pos) * pp
    out_cov[:, 1] = (1.0 - k_pos) * pv
    out_cov[:, 2] = vv - k_vel * pv
    return out_mean, out_cov
