"""Frame-rate sampling by timestamp.

:class:`FpsSampler` decides from each frame's media time whether to keep it, so the output rate
is right whatever the source's frame rate, its jitter or its dropped frames (counting frames
would be wrong for variable-rate streams). Time is cut into slots of ``1 / target_fps`` seconds
from an anchor (the first frame); a frame is kept when it is the first one in a new slot. A frame
may arrive a little early (:data:`SLOT_TOLERANCE` of a slot, at most :data:`MAX_TOLERANCE_S`) and
still count for that slot, so a source running at about the target rate with some timestamp
jitter keeps every frame. Without lookahead, the gaps between kept frames vary by up to one
source frame period when the rates are not multiples of each other; their mean is the target.

Timestamps that go backwards (a live source reconnected and restarted its clock) or jump forward
past a whole slot re-anchor the grid at the new frame, which is kept. The state is three numbers;
it needs no snapshot: after a restart the first frame simply anchors a new grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from faceflow.ingest.checks import check_number
from faceflow.ingest.errors import InvalidFrame
from faceflow.ingest.frames import DecodedFrame

#: How early (as a fraction of the slot length) a frame may arrive and still fill the next slot.
SLOT_TOLERANCE = 0.1
#: ... but never more than this many seconds early (timestamp jitter is absolute, not relative).
MAX_TOLERANCE_S = 0.010
#: Timestamps this much smaller than the previous one count as "backwards" (seconds).
BACKWARDS_EPSILON_S = 1e-6


class FpsSampler:
    """Keep frames at (at most) ``target_fps`` by their timestamps.

    Args:
        target_fps: wanted output rate in frames per second; ``None`` or ``0`` keeps every frame.

    Raises:
        IngestConfigError: ``target_fps`` is negative, infinite or NaN.
    """

    def __init__(self, target_fps: float | None) -> None:
        fps = None if target_fps is None else check_number("target_fps", target_fps, minimum=0.0)
        self.target_fps: float | None = fps or None
        self._interval_s = 1.0 / self.target_fps if self.target_fps else 0.0
        self._tolerance_s = min(SLOT_TOLERANCE * self._interval_s, MAX_TOLERANCE_S)
        self._anchor_s: float | None = None
        self._last_slot = 0
        self._last_pts_s = 0.0
        self.clock_resets = 0  # times the timestamps went backwards

    @property
    def keeps_all(self) -> bool:
        """True when no target rate is set, so every frame is kept."""
        return self.target_fps is None

    def reset(self) -> None:
        """Forget the clock: the next frame is kept and anchors a new slot grid."""
        self._anchor_s = None

    def keep(self, pts_s: float) -> bool:
        """Return whether the frame with media time ``pts_s`` (seconds) should be kept.

        Raises:
            InvalidFrame: ``pts_s`` is not finite.
        """
        if not math.isfinite(pts_s):
            raise InvalidFrame(f"pts_s: expected a finite float, got {pts_s}")
        if self.target_fps is None:
            return True
        if self._anchor_s is None or pts_s < self._last_pts_s - BACKWARDS_EPSILON_S:
            if self._anchor_s is not None:
                self.clock_resets += 1
            return self._anchor(pts_s)
        self._last_pts_s = pts_s
        slot = math.floor((pts_s - self._anchor_s + self._tolerance_s) / self._interval_s)
        if slot <= self._last_slot:
            return False
        if slot > self._last_slot + 1:
            # A whole slot went by without a frame (gap, forward jump, or a source slower than
            # the target): re-anchor so the next kept frame is a full slot after this one.
            return self._anchor(pts_s)
        self._last_slot = slot
        return True

    def _anchor(self, pts_s: float) -> bool:
        self._anchor_s = pts_s
        self._last_slot = 0
        self._last_pts_s = pts_s
        return True

    def sample(self, frames: Iterable[DecodedFrame]) -> Iterator[DecodedFrame]:
        """Yield the frames of ``frames`` that :meth:`keep` accepts, lazily."""
        for frame in frames:
            if self.keep(frame.pts_s):
                yield frame
