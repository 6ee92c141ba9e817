"""Frames pushed by edge clients (``Ingest.PushFrames``): checks, encoding and the call's tally.

What happens to a pushed frame, and what the client is told:

* a stream id that breaks the naming rule, or that a pulled source is using: the whole call is
  refused (:class:`~faceflow.ingest.errors.InvalidStreamId` -> ``INVALID_ARGUMENT``,
  :class:`StreamBusy` -> ``ALREADY_EXISTS``): it is a client bug, not a bad frame;
* image bytes over the topic's payload limit: the whole call is refused (:class:`PushTooLarge`
  -> ``RESOURCE_EXHAUSTED``), like a message over gRPC's own limit, which gRPC refuses with the
  same code before it reaches us;
* bytes that are not a JPEG or PNG picture, or a picture that cannot be made to fit: that frame
  is rejected (``REJECT_REASON_NOT_AN_IMAGE`` / ``REJECT_REASON_TOO_LARGE`` with a detail) and the
  call goes on: one bad frame from a camera must not cut the stream;
* a frame the broker does not take or acknowledge in time: rejected with
  ``REJECT_REASON_BACKPRESSURE``; when the broker cannot be reached at all the call ends with
  ``UNAVAILABLE`` (:class:`BrokerUnavailable`) so that the client backs off.

A call that ends with an error says how many of its frames were taken before it: the status
message ends with "; N frames of this call were taken before the error" and the gRPC adapter adds
the trailing metadata ``faceflow-frames-taken: N``. Frames 0..N-1 of the call were each sent to
the topic or rejected as a bad frame; frame N (the one that failed) and later were not taken.

``accepted`` in the reply counts frames the broker acknowledged (``acks=all``): the reply is sent
once every frame of the call is acknowledged or failed. A JPEG that already fits (RGB, no EXIF
rotation to apply, longest side within ``max_side``, under the byte limit) is passed through
untouched; anything else is decoded (:func:`faceflow.models.imaging.decode_picture`: pixel limit
from the header, every image mode to 8-bit RGB) and re-encoded as JPEG. Each pushed stream gets
its own ``seq`` counter (kept for the ``max_push_streams`` most recently seen streams), starting at
the wall clock in microseconds, and its own shot-cut detector
(:class:`~faceflow.core.shots.StreamShots`): every pushed frame carries ``shot_start_seq``. The
detector needs pixels, and every pushed picture is decoded anyway (to check it and to know its
size), a passed-through JPEG too: the detector reads that decode (DCT-scaled for a JPEG far over
``max_side``), so pass-through costs no extra decode. A forgotten (evicted) stream that comes back
starts a new shot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from faceflow.core.shots import ShotStep, StreamShots
from faceflow.errors import AlreadyExists, ResourceExhausted, Unavailable
from faceflow.ingest.encode import EncodeSettings, bound_size, fit_under, log_cut
from faceflow.ingest.errors import FrameTooLarge, IngestError, client_text
from faceflow.ingest.frames import JPEG, EncodedFrame
from faceflow.ingest.metrics import DropCause, IngestMetrics, RefusalCause
from faceflow.ingest.reconnect import SeqCounter
from faceflow.models.contract import FRAME_FORMATS, MAX_FRAME_PIXELS
from faceflow.models.imaging import (
    DecodeLimits,
    PictureTooLarge,
    PictureUndecodable,
    UnsupportedFormat,
    decode_picture,
)
from faceflow.v1 import ingest_pb2

logger = logging.getLogger(__name__)

#: The most rejections listed in one reply (``rejected`` still counts them all).
MAX_LISTED_REJECTIONS = 1000


class NotAnImage(IngestError):  # noqa: N818
    """Pushed bytes are not a JPEG or PNG picture."""


class PushTooLarge(IngestError, ResourceExhausted):  # noqa: N818
    """A pushed image is over the payload limit: the call is refused (``RESOURCE_EXHAUSTED``)."""


class StreamBusy(IngestError, AlreadyExists):  # noqa: N818
    """The stream id belongs to a running pulled source (``ALREADY_EXISTS``)."""


class BrokerUnavailable(IngestError, Unavailable):  # noqa: N818
    """The broker cannot be reached (``UNAVAILABLE``)."""


@dataclass(frozen=True)
class PreparedImage:
    """A pushed picture ready for the topic.

    Attributes:
        data: the JPEG that goes on the topic.
        width, height: its size.
        passed_through: ``data`` is the pushed JPEG itself.
        pixels: the picture as decoded (oriented RGB, possibly DCT-scaled): what the shot-cut
            detector looks at.
    """

    data: bytes
    width: int
    height: int
    passed_through: bool
    pixels: npt.NDArray[np.uint8] = field(compare=False, repr=False)


def prepare_image(image: bytes, settings: EncodeSettings) -> PreparedImage:
    """Check that ``image`` is a JPEG or PNG picture and bound it like a decoded frame.

    It is decoded by :func:`faceflow.models.imaging.decode_picture` (pixel limit from the header,
    every mode to 8-bit RGB, EXIF orientation applied; a JPEG is DCT-scaled down while its longest
    side stays at least ``settings.max_side``). A JPEG is passed through untouched when it is RGB,
    needs no rotation, fits ``settings.max_side`` and ``settings.max_bytes``.

    Raises:
        NotAnImage: not a (complete) JPEG or PNG picture.
        FrameTooLarge: it cannot be encoded under ``settings.max_bytes``, or it has more pixels than
            :data:`~faceflow.models.contract.MAX_FRAME_PIXELS` or Pillow's bomb limit (checked
            before decoding).
    """
    if not image:
        raise NotAnImage("expected JPEG or PNG bytes, got an empty image")
    limits = DecodeLimits(max_pixels=MAX_FRAME_PIXELS, min_side=settings.max_side, formats=FRAME_FORMATS)
    try:
        picture = decode_picture(image, limits)
    except PictureTooLarge as exc:
        raise FrameTooLarge(f"picture refused: {exc}") from exc
    except UnsupportedFormat as exc:
        raise NotAnImage(f"expected a JPEG or PNG picture, got a {exc.format} picture") from exc
    except PictureUndecodable as exc:
        raise NotAnImage(
            f"expected a JPEG or PNG picture, got {len(image)} bytes starting with {image[:8]!r} "
            f"that do not decode ({exc})"
        ) from exc
    fits = settings.max_side is None or max(picture.width, picture.height) <= settings.max_side
    plain = picture.format == "JPEG" and picture.mode == "RGB" and picture.orientation == 1
    if plain and fits and len(image) <= settings.max_bytes:
        return PreparedImage(image, picture.width, picture.height, passed_through=True, pixels=picture.rgb)
    bounded = bound_size(picture.rgb, settings.max_side)
    fitted = fit_under(bounded, settings.quality, settings.max_bytes, min_quality=settings.min_quality)
    return PreparedImage(fitted.jpeg, fitted.width, fitted.height, passed_through=False, pixels=picture.rgb)


@dataclass
class _PushStream:
    """A pushed stream's seq counter, time origin and shot; :meth:`stamp` keeps seq and shot in step
    when two calls push the same stream at once."""

    seq: SeqCounter
    first_arrival_ns: int
    shots: StreamShots = field(default_factory=StreamShots)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def stamp(self, pixels: npt.NDArray[np.uint8]) -> tuple[int, int, ShotStep | None]:
        """The next seq for a frame with ``pixels``, its shot's first seq, and what the detector
        measured when the frame is a hard cut (None otherwise)."""
        with self._lock:
            seq = self.seq.next()
            start = self.shots.observe(pixels, seq)
            return seq, start, self.shots.last if self.shots.cut else None

    def end_seq(self) -> tuple[int, int]:
        """The next seq, for an end-of-stream marker, and the current shot's first seq (0: none)."""
        with self._lock:
            return self.seq.next(), self.shots.shot_start_seq or 0


class PushStreams:
    """Sequence counters and time origins of pushed streams, the most recent ``capacity`` kept."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._streams: OrderedDict[str, _PushStream] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, stream_id: str, now_ns: int) -> _PushStream:
        with self._lock:
            stream = self._streams.get(stream_id)
            if stream is None:
                # Always from the clock: an evicted stream that comes back stays increasing.
                stream = _PushStream(SeqCounter.starting_now(), now_ns)
                self._streams[stream_id] = stream
                while len(self._streams) > self.capacity:
                    evicted, _ = self._streams.popitem(last=False)
                    logger.info("stream %s: forgetting pushed stream (capacity %d)", evicted, self.capacity)
            self._streams.move_to_end(stream_id)
            return stream

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)


def pushed_frame(
    request: ingest_pb2.PushFramesRequest,
    prepared: PreparedImage,
    stream: _PushStream,
    now_ns: int,
    *,
    metrics: IngestMetrics | None = None,
) -> EncodedFrame:
    """The :class:`EncodedFrame` of a pushed picture: pts and capture time from the request, or
    from the arrival time (pts counted from the stream's first arrival); seq and shot from the
    stream (a hard cut is counted in ``metrics``)."""
    pts_s = (
        request.pts.ToNanoseconds() / 1e9
        if request.HasField("pts")
        else (now_ns - stream.first_arrival_ns) / 1e9
    )
    capture_ns = request.capture_time.ToNanoseconds() if request.HasField("capture_time") else now_ns
    seq, shot_start, cut = stream.stamp(prepared.pixels)
    if cut is not None:
        if metrics is not None:
            metrics.shot_cut(request.stream_id)
        log_cut(request.stream_id, seq, cut)
    return EncodedFrame(
        stream_id=request.stream_id,
        seq=seq,
        pts_s=pts_s,
        capture_time_ns=max(0, capture_ns),
        jpeg=prepared.data,
        width=prepared.width,
        height=prepared.height,
        content_type=JPEG,
        shot_start_seq=shot_start,
    )


_REASONS = {
    RefusalCause.NOT_AN_IMAGE: ingest_pb2.REJECT_REASON_NOT_AN_IMAGE,
    RefusalCause.TOO_LARGE: ingest_pb2.REJECT_REASON_TOO_LARGE,
}


def frames_taken_note(taken: int) -> str:
    """The words that end the message of a call that failed after ``taken`` of its frames."""
    if taken == 1:
        return "1 frame of this call was taken before the error"
    return f"{taken} frames of this call were taken before the error"


def add_frames_taken(exc: BaseException, taken: int) -> None:
    """End the message of ``exc`` (its ``args``, which ``str`` shows) with :func:`frames_taken_note`."""
    exc.args = (f"{exc}; {frames_taken_note(taken)}",)


@dataclass
class PushTally:
    """What one ``PushFrames`` call did; the reply is built from it once every send settled."""

    accepted: int = 0
    rejected: int = 0
    rejections: list[ingest_pb2.FrameRejection] = field(default_factory=list)
    pending: int = 0
    taken: int = 0  # frames of the call handled so far: sent to the topic or rejected
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def reject(self, index: int, stream_id: str, cause: DropCause | RefusalCause, detail: str) -> None:
        """List frame ``index`` as rejected: a refused frame by its cause, any drop as backpressure;
        ``detail`` goes to the client without object reprs (:func:`~faceflow.ingest.errors.client_text`)."""
        reason = (
            _REASONS.get(cause, ingest_pb2.REJECT_REASON_UNSPECIFIED)
            if isinstance(cause, RefusalCause)
            else ingest_pb2.REJECT_REASON_BACKPRESSURE
        )
        with self._cond:
            self.rejected += 1
            if len(self.rejections) < MAX_LISTED_REJECTIONS:
                self.rejections.append(
                    ingest_pb2.FrameRejection(
                        index=index, stream_id=stream_id, reason=reason, detail=client_text(detail)
                    )
                )

    def took(self, index: int) -> None:
        """Frame ``index`` of the call was handled (sent or rejected)."""
        with self._cond:
            self.taken = index + 1

    def sent(self) -> None:
        with self._cond:
            self.pending += 1

    def settle(self, index: int, stream_id: str, error: str | None) -> None:
        if error is not None:
            self.reject(
                index, stream_id, DropCause.DELIVERY_FAILED, f"not acknowledged by the broker: {error}"
            )
        with self._cond:
            self.pending -= 1
            if error is None:
                self.accepted += 1
            self._cond.notify_all()

    def settle_uncounted(self) -> None:
        """A send that does not count in the reply (an end-of-stream marker, a refused send) settled."""
        with self._cond:
            self.pending -= 1
            self._cond.notify_all()

    def wait(self, timeout_s: float) -> int:
        """Wait until every sent frame settled; return how many are still pending."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self.pending

    def reply(self) -> ingest_pb2.PushFramesResponse:
        with self._cond:
            return ingest_pb2.PushFramesResponse(
                accepted=self.accepted, rejected=self.rejected, rejections=list(self.rejections)
            )
