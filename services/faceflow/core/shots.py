"""Hard cuts in edited video (TV, interviews, shot / reverse-shot): which frame starts a new shot.

Why: a face tracker and the analyzer's scheduler (:mod:`faceflow.core.scheduling`) follow faces by
position. After a hard cut the next person's face often lies where the previous one was, so
without a cut signal the new person would inherit the old person's track and analysis. Ingest runs
one :class:`ShotDetector` per stream on the frames it sends and stamps every ``Frame`` with
``shot_start_seq`` (:class:`StreamShots`); the analyzer starts afresh when it changes.

Method (in the spirit of PySceneDetect's content / adaptive detectors, for one frame at a time):

1. **Sample.** The frame is point-sampled on a fixed ``sample_width`` x ``sample_height`` grid
   (64 x 36 by default: 2,304 pixels whatever the frame size; no resize, no full-resolution pass).
2. **Gain.** Auto exposure and lighting flicker scale the whole picture. The gain ``k`` between the
   previous sample and this one is the median over pixels of their luma ratio (pixels that are
   neither near black nor near white, where the ratio means something); the previous sample is
   multiplied by ``k`` (clamped to ``[1/max_gain, max_gain]``; within 1 % of 1 nothing is done and
   the previous frame's histograms are reused) before it is compared. A median of
   ratios is robust to motion (most pixels are static) and does not cancel a cut (the content
   differs, whatever the gain).
3. **Histograms.** RGB colour histograms with ``bins`` levels per channel (8: 512 bins), soft
   (trilinear) binning so that a colour near a bin edge does not flip bins on noise, one per cell
   of a ``grid`` x ``grid`` split (3 x 3) and one of the whole sample.
4. **Dissimilarity.** Total variation distance (half the L1 distance, in [0, 1]: the share of the
   colour mass that moved) between this frame's histograms and the previous frame's, per cell and
   global. ``cells`` is the ``cells_changed``-th largest cell distance (the 4th of 9: at least
   four cells changed that much). Four rather than a strict majority, because a reverse shot in
   front of the same wall leaves the wall cells, about half the picture, alike; a person moving,
   turning the head or entering changes fewer cells, a slow pan changes many cells a little.
5. **Decision.** The score is ``max(cells / cell_threshold, global / global_threshold)`` (1 = at a
   threshold). This frame starts a new shot when the score is at least 1 (an absolute change, in
   most cells or globally), at least ``ratio`` times the mean score of the last ``window`` frames
   of the current shot (adaptive: busy footage needs a larger jump), and the current shot already
   has ``min_shot_frames`` frames (no double cut on a one-frame flash). The first frame of a
   detector starts a shot.

Measured on real footage (Intel IoT DevKit sample-videos, 480x270: 10 continuous clips at every
frame and every 2nd / 3rd frame, also re-encoded at JPEG quality 30, with +-12 % random gain
flicker, and panned by up to 3.6 % of the width per frame) and on the generated demo clips: no
false cut; inside shots ``cells`` stays <= 0.14 and ``global`` <= 0.14. Every join of two
different clips (90 ordered pairs, every frame and every 3rd, plain, JPEG and flicker) is found:
``cells`` >= 0.28 there (the weakest: the same corridor with different people, and two people in
turn in front of the same grey wall), the score >= 6 times the running level.

State is soft and small (the previous sample, the recent scores): a detector that is recreated
(an ingest restart) misses no cut; its first frame starts a shot, which costs at most one
spurious cut (consumers re-analyze once). Pure: numpy only. Not thread-safe: one detector per
stream, fed in order.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = ["ShotConfig", "ShotDetector", "ShotStep", "StreamShots"]

RGB = npt.NDArray[np.uint8]
_Sample = npt.NDArray[np.uint8]

#: BT.601 luma weights (what the gain estimate compares).
_LUMA: Final = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Pixels whose luma is outside this range in either frame do not vote on the gain (clipped or
#: too dark for a ratio to mean anything).
_GAIN_LUMA: Final[tuple[float, float]] = (16.0, 240.0)
#: Fewer voting pixels than this share of the sample: no gain compensation for this pair.
_GAIN_MIN_SHARE: Final[float] = 0.1
#: A gain within this of 1 is not compensated (the previous frame's histograms are reused: one
#: histogram per frame instead of two on a steady exposure).
_GAIN_TOLERANCE: Final[float] = 0.01


def _int(value: object, name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: expected an int in {low}..{high}, got {value!r}")


def _real(value: object, name: str, low: float, high: float, *, low_open: bool = True) -> None:
    ok = False
    if not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value):
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        rng = f"{'(' if low_open else '['}{low}, {high}]"
        raise ValueError(f"{name}: expected a number in {rng}, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ShotConfig:
    """The shot-cut detector's knobs (see the module docstring for the method).

    Attributes:
        sample_width, sample_height: the point-sampling grid (cost grows with its area).
        grid: the picture is split into ``grid`` x ``grid`` cells for local histograms.
        bins: histogram levels per RGB channel (``bins**3`` colour bins).
        cells_changed: how many cells must have changed by ``cell_threshold``: the statistic is the
            ``cells_changed``-th largest cell distance. Lower fires on more local changes.
        cell_threshold: that cell distance (share of a cell's colour mass that moved) at which a
            frame is a cut candidate. Measured: <= 0.14 inside real shots, >= 0.28 at joins.
        global_threshold: the global distance at which a frame is a candidate on its own
            (measured: <= 0.14 inside shots, >= 0.15 at joins, so it rarely decides alone; kept as
            a second way in because a missed cut costs a wrong inherited result, a false cut only
            extra analyses).
        ratio: the score must be at least this many times the mean score of the recent frames of
            the shot (1 disables the adaptive test).
        window: how many recent frames make that mean.
        min_shot_frames: a detected shot has at least this many frames; a second cut sooner is
            ignored (the first shot of a detector may be cut after its first frame).
        max_gain: largest exposure gain compensated between two frames (1 disables compensation).
    """

    sample_width: int = 64
    sample_height: int = 36
    grid: int = 3
    bins: int = 8
    cells_changed: int = 4
    cell_threshold: float = 0.18
    global_threshold: float = 0.30
    ratio: float = 3.0
    window: int = 8
    min_shot_frames: int = 2
    max_gain: float = 2.0

    def __post_init__(self) -> None:
        _int(self.sample_width, "sample_width", 4, 1024)
        _int(self.sample_height, "sample_height", 4, 1024)
        _int(self.grid, "grid", 1, min(8, self.sample_width, self.sample_height))
        _int(self.bins, "bins", 2, 16)
        _int(self.cells_changed, "cells_changed", 1, self.grid * self.grid)
        _real(self.cell_threshold, "cell_threshold", 0.0, 1.0)
        _real(self.global_threshold, "global_threshold", 0.0, 1.0)
        _real(self.ratio, "ratio", 1.0, 1000.0, low_open=False)
        _int(self.window, "window", 1, 10_000)
        _int(self.min_shot_frames, "min_shot_frames", 1, 10_000)
        _real(self.max_gain, "max_gain", 1.0, 16.0, low_open=False)


@dataclass(frozen=True, slots=True)
class ShotStep:
    """What :meth:`ShotDetector.step` measured on one frame.

    Attributes:
        cut: this frame starts a new shot.
        cells: the ``cells_changed``-th largest cell distance to the previous frame, in [0, 1].
        whole: the global distance to the previous frame, in [0, 1].
        score: ``max(cells / cell_threshold, whole / global_threshold)``.
        level: the mean score of the recent frames of the shot (0 when there are none).
        gain: the exposure gain compensated (1.0 when none).
    """

    cut: bool
    cells: float
    whole: float
    score: float
    level: float
    gain: float


class ShotDetector:
    """Hard-cut detector for one stream's frames, in order (see the module docstring)."""

    def __init__(self, config: ShotConfig | None = None) -> None:
        if config is None:
            config = ShotConfig()
        if not isinstance(config, ShotConfig):
            raise TypeError(f"config: expected a ShotConfig, got {type(config).__name__}")
        self._config = c = config
        rows = np.arange(c.sample_height) * c.grid // c.sample_height
        cols = np.arange(c.sample_width) * c.grid // c.sample_width
        cells = (rows[:, None] * c.grid + cols[None, :]).reshape(-1)
        self._cell_offset = (cells * c.bins**3).astype(np.intp)  # [N]: each pixel's cell's first bin
        self._cell_sizes = np.bincount(cells, minlength=c.grid * c.grid).astype(np.float64)
        # soft binning per 8-bit level: the two nearest bin centres and their weights
        x = (np.arange(256, dtype=np.float64) + 0.5) * (c.bins / 256.0) - 0.5
        lo = np.floor(x)
        low = np.clip(lo, 0, c.bins - 1).astype(np.intp)
        self._level_bins = np.stack([low, np.minimum(low + 1, c.bins - 1)])  # [2,256]
        self._level_weights = np.stack([1.0 - (x - lo), x - lo])  # [2,256]
        self._prev: _Sample | None = None
        self._prev_hist: npt.NDArray[np.float64] | None = None
        self._recent: deque[float] = deque(maxlen=c.window)
        self._frames_in_shot = 0
        self._grid_cache: dict[tuple[int, int], tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] = {}

    @property
    def config(self) -> ShotConfig:
        return self._config

    def reset(self) -> None:
        """Forget the stream: the next frame starts a shot."""
        self._prev = self._prev_hist = None
        self._recent.clear()
        self._frames_in_shot = 0

    def update(self, rgb: RGB) -> bool:
        """True when ``rgb`` (``[H,W,3]`` uint8, the stream's next frame) starts a new shot."""
        return self.step(rgb).cut

    def step(self, rgb: RGB) -> ShotStep:
        """Like :meth:`update`, with what was measured.

        Raises:
            TypeError, ValueError: ``rgb`` is not a ``[H,W,3]`` uint8 array with H, W >= 1.
        """
        sample = self._sample(rgb)
        after = self._histograms(sample)
        prev, before = self._prev, self._prev_hist
        self._prev, self._prev_hist = sample, after
        if prev is None or before is None:
            # the first shot may be cut after one frame: its start was not a detected cut
            self._frames_in_shot = self._config.min_shot_frames
            return ShotStep(cut=True, cells=0.0, whole=0.0, score=0.0, level=0.0, gain=1.0)
        c = self._config
        gain = self._gain(prev, sample)
        if gain != 1.0:
            scaled = prev.astype(np.float32) * np.float32(gain) + np.float32(0.5)
            before = self._histograms(np.minimum(scaled, np.float32(255.0)).astype(np.uint8))
        cell_d = 0.5 * np.abs(before - after).sum(axis=1)
        sizes = self._cell_sizes[:, None]
        whole = float(0.5 * np.abs(((before - after) * sizes).sum(axis=0)).sum() / self._cell_sizes.sum())
        k = cell_d.size - c.cells_changed
        cells = float(np.partition(cell_d, k)[k])
        score = max(cells / c.cell_threshold, whole / c.global_threshold)
        level = float(np.mean(self._recent)) if self._recent else 0.0
        cut = score >= 1.0 and score >= c.ratio * level and self._frames_in_shot >= c.min_shot_frames
        if cut:
            self._recent.clear()
            self._frames_in_shot = 1
        else:
            self._recent.append(score)
            self._frames_in_shot += 1
        return ShotStep(cut=cut, cells=cells, whole=whole, score=score, level=level, gain=gain)

    # -- steps ---------------------------------------------------------------------------------
    def _sample(self, rgb: object) -> _Sample:
        """``rgb`` point-sampled on the config's grid: ``[N,3]`` uint8, row-major."""
        if not isinstance(rgb, np.ndarray):
            raise TypeError(f"rgb: expected a numpy array [H,W,3] uint8, got {type(rgb).__name__}")
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
            raise ValueError(f"rgb: expected shape [H,W,3] with H, W >= 1, got {list(rgb.shape)}")
        if rgb.dtype != np.uint8:
            raise ValueError(f"rgb: expected dtype uint8, got {rgb.dtype}")
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        index = self._grid_cache.get((h, w))
        if index is None:
            c = self._config
            rows = ((np.arange(c.sample_height) + 0.5) * h / c.sample_height).astype(np.intp)
            cols = ((np.arange(c.sample_width) + 0.5) * w / c.sample_width).astype(np.intp)
            index = (rows[:, None], cols[None, :])
            if len(self._grid_cache) >= 4:  # a stream changes size rarely; keep the cache tiny
                self._grid_cache.clear()
            self._grid_cache[(h, w)] = index
        return np.ascontiguousarray(rgb[index].reshape(-1, 3))

    def _gain(self, prev: _Sample, cur: _Sample) -> float:
        """The exposure gain from ``prev`` to ``cur`` (1.0 when off, unmeasurable or within 1 %)."""
        c = self._config
        if c.max_gain == 1.0:
            return 1.0
        lp = prev.astype(np.float32) @ _LUMA
        lc = cur.astype(np.float32) @ _LUMA
        low, high = _GAIN_LUMA
        ok = (lp > low) & (lp < high) & (lc > low) & (lc < high)
        if ok.sum() < _GAIN_MIN_SHARE * ok.size:
            return 1.0
        k = float(np.median(lc[ok] / lp[ok]))
        if abs(k - 1.0) <= _GAIN_TOLERANCE:
            return 1.0  # the previous frame's histograms are reused as they are
        return min(c.max_gain, max(1.0 / c.max_gain, k))

    def _histograms(self, sample: _Sample) -> npt.NDArray[np.float64]:
        """Soft-binned colour histograms of every cell, ``[cells, bins**3]``, each summing to 1."""
        n = self._config.bins
        channels = sample.T  # [3,N]
        idx = self._level_bins[:, channels]  # [2,3,N]: the two nearest levels of each channel
        wts = self._level_weights[:, channels]  # [2,3,N]: their weights
        # the 8 (r, g, b) corners around each pixel's colour, pixel axis last (contiguous)
        red = idx[:, 0] * (n * n) + self._cell_offset
        bins = (red[:, None, None] + idx[None, :, None, 1] * n) + idx[None, None, :, 2]
        weights = (wts[:, None, None, 0] * wts[None, :, None, 1]) * wts[None, None, :, 2]
        cells = self._cell_sizes.size
        counts = np.bincount(bins.reshape(-1), weights=weights.reshape(-1), minlength=cells * n**3)
        return counts.reshape(cells, n**3) / self._cell_sizes[:, None]


class StreamShots:
    """One stream's current shot: the seq of its first frame, from a :class:`ShotDetector`.

    Feed it every frame that is sent, in seq order; frames that are not sent (sampled out) must not
    be fed, so that consecutive *sent* frames are compared.

    Attributes:
        cuts: hard cuts found so far (the stream's first frame is not one).
        cut: whether the frame last observed was a hard cut.
        last: what the detector measured on the frame last observed (None before any).
    """

    def __init__(self, config: ShotConfig | None = None) -> None:
        self._detector = ShotDetector(config)
        self._start: int | None = None
        self.cuts = 0
        self.cut = False
        self.last: ShotStep | None = None

    @property
    def shot_start_seq(self) -> int | None:
        """The seq of the first frame of the current shot (None before any frame)."""
        return self._start

    def observe(self, rgb: RGB, seq: int) -> int:
        """Feed frame ``seq``; return the seq of the first frame of the shot it belongs to.

        Raises:
            TypeError, ValueError: ``rgb`` is not ``[H,W,3]`` uint8, or ``seq`` not an int >= 0.
        """
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"seq: expected an int >= 0, got {seq!r}")
        self.last = self._detector.step(rgb)
        self.cut = self.last.cut and self._start is not None
        if self._start is None or self.cut:
            self.cuts += int(self.cut)
            self._start = seq
        return self._start
