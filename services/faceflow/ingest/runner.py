"""One pulled source at run time: a decode thread and a produce thread around a bounded queue.

::

    decode thread:  run_with_reconnect(open) -> FpsSampler -> StreamShots -> encode_frame(seq)
                    -> BoundedFrameQueue
    produce thread: BoundedFrameQueue -> FrameSink (Kafka) -> acknowledgements

The decode thread never waits on the broker: it only puts into the queue, which drops the oldest
frame (live sources) or waits at most ``block_timeout_s`` (files). ``seq`` comes from the
stream's :class:`~faceflow.ingest.reconnect.SeqCounter`, owned by the service, so it keeps
increasing across reconnects and across restarts of the same stream id; a frame dropped after it
was given a seq leaves a gap that consumers can see (and that a drop counter explains).

Every sampled frame goes through the stream's shot-cut detector
(:class:`~faceflow.core.shots.StreamShots`, on the decoded pixels, so that consecutive *sent* frames
are compared) before it is encoded, and carries ``shot_start_seq``: the seq of the first frame of
its shot. The detector lives as long as the
runner, across reconnects (a reconnect that lands in another scene is a cut like any other).

A finite source that reaches its end gets an end-of-stream ``Frame`` after its last frame; the
source is ``ENDED`` once every frame it sent, that marker included, is acknowledged or failed.
A source that cannot be opened or decoded is ``FAILED`` with ``last_error``; a live source that
drops is ``RECONNECTING`` (with the reason in ``last_error``) until it delivers a frame again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from faceflow.core.shots import StreamShots
from faceflow.ingest.backpressure import BoundedFrameQueue, DropReason
from faceflow.ingest.config import IngestConfig, SourceConfig
from faceflow.ingest.encode import EncodeSettings, encode_frame, log_cut
from faceflow.ingest.errors import FrameTooLarge, QueueClosed, SourceError
from faceflow.ingest.frames import DecodedFrame, EncodedFrame
from faceflow.ingest.metrics import DropCause, IngestMetrics
from faceflow.ingest.producer import Delivery, FrameSink, SinkRefused
from faceflow.ingest.reconnect import Backoff, EndReason, SeqCounter, run_with_reconnect
from faceflow.ingest.sampling import FpsSampler
from faceflow.ingest.sources import FrameSource, open_source

logger = logging.getLogger(__name__)

#: The window of the decode-rate gauge, seconds.
FPS_WINDOW_S = 5.0

_QUEUE_CAUSES = {
    DropReason.OLDEST: DropCause.QUEUE_OLDEST,
    DropReason.TIMEOUT: DropCause.QUEUE_TIMEOUT,
    DropReason.CLOSED: DropCause.QUEUE_CLOSED,
}

Opener = Callable[[SourceConfig], FrameSource]


class SourceState(StrEnum):
    """Lifecycle of a pulled source (the proto's ``SourceState``)."""

    STARTING = "starting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"
    STOPPED = "stopped"
    #: Recorded in the sources topic but not running here (over the cap, or no owner now).
    WAITING = "waiting"

    @property
    def active(self) -> bool:
        return self in (SourceState.STARTING, SourceState.RUNNING, SourceState.RECONNECTING)


@dataclass(frozen=True)
class SourceSnapshot:
    """A source's state and counters at one instant."""

    spec: SourceConfig
    state: SourceState
    frames_decoded: int
    frames_produced: int
    frames_dropped: int
    next_seq: int
    reconnects: int
    last_error: str
    queue_depth: int
    decode_fps: float
    #: Whether the source is live, once decided (None before it first opened).
    live: bool | None = None
    #: The replica that runs it (its advertised address; "" without a sources topic).
    owner: str = ""


def opener_for(config: IngestConfig) -> Opener:
    """Open a configured source with the service's timeouts."""

    def open_configured(spec: SourceConfig) -> FrameSource:
        return open_source(
            spec.uri,
            spec.stream_id,
            is_live=spec.live,
            image_fps=spec.folder_fps,
            open_timeout_s=config.open_timeout_s,
            read_timeout_s=config.read_timeout_s,
        )

    return open_configured


class _RateMeter:
    """Events per second over the last :data:`FPS_WINDOW_S` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._times: deque[float] = deque()
        self._started = clock()
        self._lock = threading.Lock()

    def tick(self) -> None:
        now = self._clock()
        with self._lock:
            self._times.append(now)
            self._trim(now)

    def rate(self) -> float:
        now = self._clock()
        with self._lock:
            self._trim(now)
            span = min(FPS_WINDOW_S, now - self._started)
            return len(self._times) / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - FPS_WINDOW_S:
            self._times.popleft()


class _Recorded:
    """A source wrapper that records the reason of a failure before it propagates."""

    def __init__(self, source: FrameSource, record: Callable[[SourceError], None]) -> None:
        self._source = source
        self._record = record

    @property
    def uri(self) -> str:
        return self._source.uri

    @property
    def stream_id(self) -> str:
        return self._source.stream_id

    @property
    def is_live(self) -> bool:
        return self._source.is_live

    def __iter__(self) -> Iterator[DecodedFrame]:
        return self

    def __next__(self) -> DecodedFrame:
        try:
            return next(self._source)
        except SourceError as exc:
            self._record(exc)
            raise

    def close(self) -> None:
        self._source.close()


class SourceRunner:
    """Pulls one source into the frames topic until it ends, fails or is stopped.

    Args:
        spec: the source and its sampling settings.
        config: the service settings (queue, timeouts, reconnects).
        sink: where encoded frames go.
        metrics: counters and the drop log.
        seq: the stream's sequence counter (outlives this runner).
        opener: opens the source; default :func:`opener_for` ``(config)``.
    """

    def __init__(
        self,
        spec: SourceConfig,
        *,
        config: IngestConfig,
        sink: FrameSink,
        metrics: IngestMetrics,
        seq: SeqCounter,
        opener: Opener | None = None,
    ) -> None:
        self.spec = spec
        self.stream_id = spec.stream_id
        self._config = config
        self._sink = sink
        self._metrics = metrics
        self._seq = seq
        self._open = opener or opener_for(config)
        self._settings = EncodeSettings(
            max_side=spec.max_side, quality=spec.jpeg_quality, min_quality=min(50, spec.jpeg_quality)
        )
        self._sampler = FpsSampler(spec.target_fps)
        self._shots = StreamShots()  # decode thread only (the end marker reads it after a join)
        self.policy = config.policy_for(spec.is_live)
        self.queue: BoundedFrameQueue[EncodedFrame] = BoundedFrameQueue(
            config.queue_size,
            self.policy,
            config.block_timeout_s,
            on_drop=self._on_queue_drop,
            name=spec.stream_id,
        )
        self._stop = threading.Event()  # stop decoding; queued frames are still sent
        self._abandon = threading.Event()  # stop sending too (the grace period is over)
        self._lock = threading.Lock()
        self._state = SourceState.STARTING
        self._last_error = ""
        self._decoded = self._produced = self._dropped = self._reconnects = 0
        self._outstanding = 0
        self._settled = threading.Condition(self._lock)
        self._eos_pending = False
        self._eos_seq = -1
        self._eos_error: str | None = None
        self._last_pts_s = 0.0
        self._fps = _RateMeter()
        self._live: bool | None = spec.live
        self._done = threading.Event()
        self._decode_thread = threading.Thread(
            target=self._decode_loop, name=f"ingest-decode-{spec.stream_id}", daemon=True
        )
        self._produce_thread = threading.Thread(
            target=self._produce_loop, name=f"ingest-produce-{spec.stream_id}", daemon=True
        )

    # -- control ------------------------------------------------------------------------------
    def start(self) -> None:
        logger.info(
            "stream %s: starting %s (fps %s, max side %s, quality %d, queue %d %s)",
            self.stream_id,
            self.spec.safe_uri,
            self.spec.target_fps or "all",
            self.spec.max_side or "source",
            self.spec.jpeg_quality,
            self._config.queue_size,
            self.policy,
        )
        self._produce_thread.start()
        self._decode_thread.start()

    def stop(self) -> None:
        """Stop decoding; frames already queued are still sent (see :meth:`abandon`)."""
        if not self._stop.is_set() and not self.done:
            logger.info("stream %s: stopping", self.stream_id)
        self._stop.set()
        self.queue.close()

    def abandon(self) -> None:
        """Stop sending as well: what is still queued is dropped (the grace period is over)."""
        self.stop()
        self._abandon.set()
        with self._lock:
            self._settled.notify_all()

    def join(self, timeout_s: float) -> bool:
        """Wait until both threads have finished; True if they did within ``timeout_s``."""
        return self._done.wait(timeout_s)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def state(self) -> SourceState:
        with self._lock:
            return self._state

    def snapshot(self) -> SourceSnapshot:
        with self._lock:
            return SourceSnapshot(
                spec=self.spec,
                state=self._state,
                frames_decoded=self._decoded,
                frames_produced=self._produced,
                frames_dropped=self._dropped,
                next_seq=self._seq.peek,
                reconnects=self._reconnects,
                last_error=self._last_error,
                queue_depth=len(self.queue),
                decode_fps=self._fps.rate(),
                live=self._live,
            )

    # -- state --------------------------------------------------------------------------------
    def _set_state(self, state: SourceState, error: str | None = None) -> None:
        with self._lock:
            if error is not None:
                self._last_error = error
            if self._state is state:
                return
            self._state = state
        if state is SourceState.FAILED:
            logger.error("stream %s: failed: %s", self.stream_id, self._last_error)
        else:
            logger.info("stream %s: %s", self.stream_id, state)

    def _record_error(self, exc: SourceError) -> None:
        with self._lock:
            self._last_error = str(exc)

    def _count_drop(self, cause: DropCause) -> None:
        with self._lock:
            self._dropped += 1
        self._metrics.drop(self.stream_id, cause)

    # -- decode thread ------------------------------------------------------------------------
    def _open_source(self) -> FrameSource:
        try:
            source = self._open(self.spec)
        except SourceError as exc:
            self._record_error(exc)
            raise
        if self.spec.live is None:  # the source decided from its container (faceflow.ingest.sources)
            with self._lock:
                changed = self._live is not source.is_live
                self._live = source.is_live
            if changed:
                self.policy = self.queue.policy = self._config.policy_for(source.is_live)
                logger.info(
                    "stream %s: %s by its container; queue %s",
                    self.stream_id,
                    "live" if source.is_live else "finite",
                    self.policy,
                )
        return _Recorded(source, self._record_error)

    def _on_reconnect(self, attempt: int) -> None:
        with self._lock:
            self._reconnects += 1
        self._metrics.reconnect(self.stream_id)
        self._sampler.reset()
        self._set_state(SourceState.RECONNECTING)
        logger.info(
            "stream %s: reconnecting (attempt %d), next seq %d", self.stream_id, attempt, self._seq.peek
        )

    def _on_frame(self, frame: DecodedFrame) -> None:
        self._fps.tick()
        self._metrics.frame_in(self.stream_id)
        with self._lock:
            self._decoded += 1
            self._last_pts_s = frame.pts_s
            running = self._state is SourceState.RUNNING
        if not running:
            self._set_state(SourceState.RUNNING)
        if not self._sampler.keep(frame.pts_s):
            return
        seq = self._seq.next()
        shot_start = self._shots.observe(frame.rgb, seq)
        if self._shots.cut:
            self._metrics.shot_cut(self.stream_id)
            log_cut(self.stream_id, seq, self._shots.last)
        try:
            encoded = encode_frame(frame, seq, self._settings, shot_start_seq=shot_start)
        except FrameTooLarge as exc:
            logger.warning("stream %s seq %d: frame dropped: %s", self.stream_id, seq, exc)
            self._count_drop(DropCause.TOO_LARGE)
            return
        self.queue.put(encoded)

    def _on_queue_drop(self, frame: EncodedFrame, reason: DropReason) -> None:
        self._count_drop(_QUEUE_CAUSES[reason])

    def _decode_loop(self) -> None:
        max_attempts = self._config.max_reconnect_attempts or None
        backoff = Backoff(self._config.reconnect_initial_s, self._config.reconnect_max_s)
        try:
            result = run_with_reconnect(
                self._open_source,
                self._on_frame,
                self._stop,
                backoff,
                self.spec.is_live,
                stream_id=self.stream_id,
                max_attempts=max_attempts,
                on_reconnect=self._on_reconnect,
                probe_live=self.spec.live is None,
            )
        except SourceError as exc:
            self._set_state(SourceState.FAILED, str(exc))
        except Exception as exc:
            logger.exception("stream %s: unexpected error while decoding", self.stream_id)
            self._set_state(SourceState.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        else:
            if result.reason is EndReason.ENDED:
                with self._lock:
                    self._eos_pending = True
            elif result.reason is EndReason.DISCONNECTED:
                with self._lock:
                    error = self._last_error or "the source broke off"
                self._set_state(SourceState.FAILED, error)
        finally:
            self.queue.close()

    # -- produce thread -----------------------------------------------------------------------
    def _produce_loop(self) -> None:
        try:
            while not self._abandon.is_set():
                try:
                    frame = self.queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                except QueueClosed:
                    break
                self._send(frame)
            self._drop_leftovers()
            self._decode_thread.join()
            with self._lock:
                eos = self._eos_pending
                last_pts = self._last_pts_s
            if eos:
                self._send_end_marker(last_pts)
            self._wait_settled()
            self._finish(eos)
        except Exception as exc:
            logger.exception("stream %s: unexpected error while producing", self.stream_id)
            self._set_state(SourceState.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._done.set()

    def _drop_leftovers(self) -> None:
        """Count what is still queued when the grace period ended (nothing is lost silently)."""
        left = 0
        while True:
            try:
                self.queue.get(timeout=0)
            except (queue.Empty, QueueClosed):
                break
            left += 1
            self._count_drop(DropCause.QUEUE_CLOSED)
        if left:
            logger.warning("stream %s: %d queued frames dropped at shutdown", self.stream_id, left)

    def _send(self, frame: EncodedFrame) -> bool:
        with self._lock:
            self._outstanding += 1
        try:
            self._sink.send(frame, source_uri=self.spec.safe_uri, on_delivery=self._delivered)
        except SinkRefused as exc:
            logger.debug("stream %s seq %d: %s", self.stream_id, frame.seq, exc)
            with self._lock:
                self._outstanding -= 1
                self._dropped += 1  # the sink counted the metric
                self._settled.notify_all()
            return False
        return True

    def _delivered(self, delivery: Delivery) -> None:
        with self._lock:
            self._outstanding -= 1
            if delivery.seq != self._eos_seq:
                if delivery.ok:
                    self._produced += 1
                else:
                    self._dropped += 1
            elif not delivery.ok:
                self._eos_error = delivery.error
            self._settled.notify_all()

    def _send_end_marker(self, last_pts_s: float) -> None:
        seq = self._seq.next()
        with self._lock:
            self._eos_seq = seq
        shot = self._shots.shot_start_seq  # the decode thread has ended
        marker = EncodedFrame.end_marker(
            self.stream_id, seq, last_pts_s, time.time_ns(), shot_start_seq=shot or 0
        )
        while not self._abandon.is_set():
            if self._send(marker):
                logger.info("stream %s seq %d: end of stream sent", self.stream_id, seq)
                return
            with self._lock:
                self._dropped -= 1  # a refused marker is retried, not a dropped frame
        logger.warning("stream %s seq %d: end-of-stream marker not sent (stopping)", self.stream_id, seq)

    def _wait_settled(self) -> None:
        deadline = time.monotonic() + self._config.delivery_timeout_s + 5.0
        with self._lock:
            while self._outstanding > 0 and not self._abandon.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logger.warning(
                        "stream %s: %d frames still unacknowledged", self.stream_id, self._outstanding
                    )
                    return
                self._settled.wait(min(remaining, 0.5))

    def _finish(self, eos: bool) -> None:
        with self._lock:
            state = self._state
            eos_error = self._eos_error
        if state is SourceState.FAILED:
            return
        if not eos or self._abandon.is_set():
            self._set_state(SourceState.STOPPED)
        elif eos_error:
            self._set_state(SourceState.FAILED, f"end-of-stream marker not acknowledged: {eos_error}")
        else:
            self._set_state(SourceState.ENDED)
