"""Frame sources: video files and streams (PyAV), image folders, and an in-memory fake.

Every source is a single-pass iterator of :class:`~faceflow.ingest.frames.DecodedFrame` with
``uri``, ``is_live`` and ``close()`` (:class:`FrameSource`). Opening happens in the constructor,
so a missing or unreadable source fails at once with a :class:`~faceflow.ingest.errors.SourceError`:

* :class:`~faceflow.ingest.errors.SourceNotFound`: no such file or folder, HTTP 4xx;
* :class:`~faceflow.ingest.errors.SourceUndecodable`: empty, corrupt, no video stream, unsupported
  codec or URL scheme (the message carries FFmpeg's reason);
* :class:`~faceflow.ingest.errors.SourceDisconnected`: a live source is unreachable, times out or
  drops mid-stream (also when it simply ends: a live stream does not end by itself).
  :func:`faceflow.ingest.reconnect.run_with_reconnect` retries these.

Live or finite, unless the caller says (``is_live``), is decided by what opens, not by the URL
scheme (:func:`container_is_live`): a container that declares a duration (an MP4 or MKV file
whether read from disk or over HTTP, an MPEG-TS file served with its size, HLS whose playlist has
``#EXT-X-ENDLIST``) is finite and ends once; RTSP, RTMP, UDP, SRT, RTP and TCP streams, live HLS
and any input without a duration (an MPEG-TS or MJPEG stream over HTTP) are live. A local path is
finite when it is a regular file (a named pipe or device is live).

This module is the PyAV adapter of the ingest core; nothing else in :mod:`faceflow.ingest`
imports PyAV. A source is not thread-safe: iterate and close it from one thread. Passwords in
URLs never reach logs or error messages (:func:`redact_uri`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable
from urllib.parse import urlsplit

import av
import av.error

from faceflow.ingest.checks import check_number
from faceflow.ingest.errors import (
    IngestConfigError,
    SourceDisconnected,
    SourceError,
    SourceNotFound,
    SourceUndecodable,
)
from faceflow.ingest.frames import DecodedFrame, RGBImage, check_rgb
from faceflow.ingest.uris import URL_SCHEMES, redact_uri
from faceflow.models.contract import MAX_FRAME_PIXELS
from faceflow.models.imaging import STILL_FORMATS, DecodeLimits, ImageError, PictureTooLarge, decode_picture
from faceflow.streams import validate_stream_id

logger = logging.getLogger(__name__)

#: URL schemes whose streams are live whatever they declare (an RTSP server may give a duration).
LIVE_PROTOCOLS = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt", "rtp"})
DEFAULT_OPEN_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 10.0

Clock = Callable[[], int]


@runtime_checkable
class FrameSource(Protocol):
    """A single-pass iterator of decoded frames from one stream."""

    @property
    def uri(self) -> str:
        """Where the frames come from (passwords redacted)."""
        ...

    @property
    def stream_id(self) -> str:
        """The stream id every frame carries."""
        ...

    @property
    def is_live(self) -> bool:
        """True for a camera or stream that has no end and may be reconnected."""
        ...

    def __iter__(self) -> Iterator[DecodedFrame]: ...

    def __next__(self) -> DecodedFrame: ...

    def close(self) -> None:
        """Release the source; idempotent. Iteration after ``close()`` stops."""
        ...


class _SourceBase:
    """Iterator plumbing shared by the sources: lazy generator, close, context manager."""

    def __init__(self, uri: str, stream_id: str, is_live: bool, clock: Clock) -> None:
        self._uri = uri
        self._stream_id = validate_stream_id(stream_id)
        self._is_live = is_live
        self._clock = clock
        self._frames: Iterator[DecodedFrame] | None = None
        self.closed = False
        self.frames_decoded = 0

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def stream_id(self) -> str:
        return self._stream_id

    @property
    def is_live(self) -> bool:
        return self._is_live

    def _generate(self) -> Iterator[DecodedFrame]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[DecodedFrame]:
        return self

    def __next__(self) -> DecodedFrame:
        if self.closed:
            raise StopIteration
        if self._frames is None:
            self._frames = self._generate()
        frame = next(self._frames)
        self.frames_decoded += 1
        return frame

    def _release(self) -> None:
        """Free the resources behind the source (subclasses)."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._frames is not None:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
        self._release()
        logger.debug(
            "stream %s: closed source %s after %d frames", self._stream_id, self._uri, self.frames_decoded
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(uri={self._uri!r}, stream_id={self._stream_id!r}, live={self._is_live})"
        )


def _ffmpeg_reason(exc: av.error.FFmpegError) -> str:
    reason = exc.strerror or str(exc)
    return f"{reason} ({type(exc).__name__})"


def classify_av_error(
    exc: av.error.FFmpegError, uri: str, *, is_live: bool, opening: bool, frames: int = 0
) -> SourceError:
    """Turn a PyAV/FFmpeg error into the :class:`SourceError` that says what a caller can do.

    Args:
        exc: what PyAV raised.
        uri: the source, already redacted.
        is_live: whether the source is live (transient failures become ``SourceDisconnected``).
        opening: True while opening the container, False while reading it.
        frames: frames decoded before the error (for the message).
    """
    reason = _ffmpeg_reason(exc)
    where = "cannot open" if opening else f"failed after {frames} frames"
    if isinstance(exc, FileNotFoundError | PermissionError | av.error.HTTPClientError):
        return SourceNotFound(uri, f"{where}: {reason}")
    permanent = (
        av.error.DecoderNotFoundError,
        av.error.DemuxerNotFoundError,
        av.error.ProtocolNotFoundError,
        av.error.PatchWelcomeError,
        IsADirectoryError,
    )
    if isinstance(exc, permanent):
        return SourceUndecodable(uri, f"{where}: unsupported input: {reason}")
    if isinstance(exc, av.error.InvalidDataError) and (opening or not is_live):
        return SourceUndecodable(uri, f"{where}: not a decodable video: {reason}")
    if is_live:
        return SourceDisconnected(uri, f"{where}: {reason}")
    return SourceUndecodable(uri, f"{where}: {reason}")


def container_is_live(scheme: str, duration_us: int | None) -> bool:
    """Whether an opened input is live: a stream protocol (:data:`LIVE_PROTOCOLS`) always is;
    otherwise it is live exactly when the container declares no duration (FFmpeg's HLS demuxer
    gives one only for a playlist with ``#EXT-X-ENDLIST``; an MPEG-TS stream of unknown size has
    none), finite when it does."""
    if scheme in LIVE_PROTOCOLS:
        return True
    return not (duration_us is not None and duration_us > 0)


def _frame_rate(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


class VideoSource(_SourceBase):
    """Frames of the first video stream of a file or URL, decoded by PyAV (FFmpeg).

    Args:
        uri: a file path, or an ``rtsp://``, ``http(s)://`` (progressive, MJPEG or HLS ``.m3u8``),
            ``rtmp://``, ``udp://``, ``srt://`` ... URL.
        stream_id: the stream id the frames carry.
        is_live: whether the source is live; default: for a URL, decided once it opens
            (:func:`container_is_live`), False for a path. A live source that ends or fails
            mid-stream raises ``SourceDisconnected``.
        open_timeout_s: the most time opening (connect + probe) may take.
        read_timeout_s: the most time one read may block; a silent live source is
            disconnected after this.
        options: extra FFmpeg format/protocol options; RTSP gets ``rtsp_transport=tcp`` unless set.
        clock: wall clock in nanoseconds for ``capture_time_ns``.

    ``pts_s`` is the frame's presentation time in seconds (from the stream's time base), counted
    from the stream's start time (or the first frame when a live stream has none).

    Raises:
        SourceNotFound, SourceUndecodable, SourceDisconnected: see the module docstring.
    """

    def __init__(
        self,
        uri: str | os.PathLike[str],
        stream_id: str,
        *,
        is_live: bool | None = None,
        open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        options: Mapping[str, str] | None = None,
        clock: Clock = time.time_ns,
    ) -> None:
        target = os.fspath(uri)
        scheme = urlsplit(target).scheme.lower() if "://" in target else ""
        probe = is_live is None and bool(scheme) and scheme != "file"
        live = scheme in LIVE_PROTOCOLS or probe if is_live is None else is_live
        super().__init__(redact_uri(target), stream_id, live, clock)
        self._raw_uri = target
        check_number("open_timeout_s", open_timeout_s, minimum=0.0, inclusive=False)
        check_number("read_timeout_s", read_timeout_s, minimum=0.0, inclusive=False)
        opts = dict(options or {})
        if scheme in ("rtsp", "rtsps"):
            opts.setdefault("rtsp_transport", "tcp")
        logger.info(
            "stream %s: opening %s (live=%s)", self.stream_id, self.uri, "by its container" if probe else live
        )
        try:
            self._container = av.open(
                target, mode="r", options=opts, timeout=(open_timeout_s, read_timeout_s)
            )
        except av.error.FFmpegError as exc:
            raise classify_av_error(exc, self.uri, is_live=live, opening=True) from self._cause(exc)
        if probe:
            live = self._is_live = container_is_live(scheme, self._container.duration)
        if not self._container.streams.video:
            self._container.close()
            raise SourceUndecodable(self.uri, "cannot open: no video stream in the input")
        self._stream = self._container.streams.video[0]
        if self._stream.codec_context is None:
            self._container.close()
            raise SourceUndecodable(self.uri, f"cannot open: no decoder for codec of {self._stream}")
        self._time_base = self._stream.time_base
        self._frame_step_s = 1.0 / rate if (rate := _frame_rate(self._stream)) > 0 else 0.0
        start = self._stream.start_time
        self._start_s: float | None = (
            float(start * self._time_base) if start is not None and self._time_base else None
        )
        logger.info(
            "stream %s: opened %s: %s %dx%d, %.3f fps, live=%s",
            self.stream_id,
            self.uri,
            self._stream.codec_context.name,
            self._stream.codec_context.width,
            self._stream.codec_context.height,
            _frame_rate(self._stream),
            live,
        )

    def _cause(self, exc: av.error.FFmpegError) -> BaseException | None:
        """The exception to chain: PyAV's messages carry the raw URL, so none if it has a password."""
        return exc if self._raw_uri == self.uri else None

    def _generate(self) -> Iterator[DecodedFrame]:
        last_pts_s: float | None = None
        frames = 0
        try:
            for frame in self._container.decode(self._stream):
                media_s = frame.time
                if media_s is None:
                    media_s = (last_pts_s or 0.0) + self._frame_step_s
                elif self._start_s is None:
                    self._start_s = media_s
                    media_s = 0.0
                else:
                    media_s -= self._start_s
                last_pts_s = media_s
                rgb = check_rgb(frame.to_ndarray(format="rgb24"))
                frames += 1
                yield DecodedFrame(self.stream_id, media_s, self._clock(), rgb)
        except av.error.FFmpegError as exc:
            error = classify_av_error(exc, self.uri, is_live=self.is_live, opening=False, frames=frames)
            logger.warning("stream %s: %s", self.stream_id, error)
            raise error from self._cause(exc)
        if self.is_live:
            raise SourceDisconnected(self.uri, f"live stream ended after {frames} frames")
        declared = self._stream.frames
        if declared and frames < declared:
            logger.warning(
                "stream %s: %s ended after %d of the %d frames its header declares (truncated?)",
                self.stream_id,
                self.uri,
                frames,
                declared,
            )
        else:
            logger.info("stream %s: %s ended after %d frames", self.stream_id, self.uri, frames)

    def _release(self) -> None:
        self._container.close()


_DIGITS = re.compile(r"(\d+)")


def _natural_key(path: Path) -> list[tuple[int, int | str]]:
    """Sort key so that ``img2.png`` comes before ``img10.png``."""
    return [(1, int(part)) if part.isdigit() else (0, part) for part in _DIGITS.split(path.name)]


#: How an image folder's files are decoded: still-image formats, the models' per-frame pixel limit
#: (checked from the header), full size (the encoder bounds the size later).
IMAGE_FILE_LIMITS = DecodeLimits(max_pixels=MAX_FRAME_PIXELS, formats=STILL_FORMATS)


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, links resolved, is in ``root`` (itself resolved)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        logger.warning("ignoring %s: it leads out of the folder, to %s", path, resolved)
        return False
    return True


class ImageFolderSource(_SourceBase):
    """The images of a folder, in natural name order, as a stream at ``fps`` frames per second.

        Frame ``i`` (counting decoded images only) has ``pts_s = i / fps``. Files are decoded by
        :func:`faceflow.models.imaging.decode_picture` within :data:`IMAGE_FILE_LIMITS` (every mode to
        8-bit RGB, EXIF orientation applied); files that are not images of those formats, or that have
        more pixels than the limit, are logged and skipped; hidden files, sub-folders and symbolic links
    that lead out of the folder are ignored (a folder the source policy allows can not be used to read
    pictures elsewhere).

        Raises:
            SourceNotFound: the folder does not exist or is not a folder.
            SourceUndecodable: the folder has no files.
            IngestConfigError: ``fps`` is not a finite number > 0.
    """

    def __init__(
        self, path: str | os.PathLike[str], stream_id: str, *, fps: float = 1.0, clock: Clock = time.time_ns
    ) -> None:
        folder = Path(path)
        super().__init__(str(folder), stream_id, False, clock)
        self.fps = check_number("fps", fps, minimum=0.0, inclusive=False)
        if not folder.is_dir():
            raise SourceNotFound(self.uri, "cannot open: no such folder")
        root = folder.resolve()
        self.files = sorted(
            (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and _inside(p, root)),
            key=_natural_key,
        )
        if not self.files:
            raise SourceUndecodable(self.uri, "cannot open: the folder has no files")
        self.skipped: list[Path] = []
        logger.info(
            "stream %s: image folder %s with %d files at %.3f fps", stream_id, self.uri, len(self.files), fps
        )

    def _generate(self) -> Iterator[DecodedFrame]:
        index = 0
        for path in self.files:
            try:
                rgb: RGBImage = decode_picture(path, IMAGE_FILE_LIMITS).rgb
            except PictureTooLarge as exc:
                self.skipped.append(path)
                logger.warning("stream %s: skipping %s: too large (%s)", self.stream_id, path, exc)
                continue
            except ImageError as exc:
                self.skipped.append(path)
                logger.warning("stream %s: skipping %s: not a readable image (%s)", self.stream_id, path, exc)
                continue
            yield DecodedFrame(self.stream_id, index / self.fps, self._clock(), rgb)
            index += 1
        if index == 0:
            logger.warning("stream %s: no readable images in %s", self.stream_id, self.uri)
        logger.info(
            "stream %s: %s ended after %d images (%d skipped)",
            self.stream_id,
            self.uri,
            index,
            len(self.skipped),
        )


class InMemorySource(_SourceBase):
    """A fake source over a list of RGB arrays, for tests (STYLE.md #11).

    Args:
        images: HxWx3 uint8 arrays, yielded in order.
        stream_id: the stream id the frames carry.
        fps: frame ``i`` gets ``pts_s = i / fps`` unless ``pts_s`` is given.
        pts_s: explicit media times, one per image.
        is_live: what ``is_live`` reports.
        disconnect_after: raise ``SourceDisconnected`` after yielding this many frames (to test
            reconnects); None yields them all and ends.
        uri: what ``uri`` reports; default ``memory://<stream_id>``.
    """

    def __init__(
        self,
        images: Sequence[RGBImage],
        stream_id: str = "memory",
        *,
        fps: float = 25.0,
        pts_s: Sequence[float] | None = None,
        is_live: bool = False,
        disconnect_after: int | None = None,
        uri: str | None = None,
        clock: Clock = time.time_ns,
    ) -> None:
        super().__init__(uri or f"memory://{stream_id}", stream_id, is_live, clock)
        check_number("fps", fps, minimum=0.0, inclusive=False)
        if pts_s is not None and len(pts_s) != len(images):
            raise IngestConfigError(f"pts_s: expected {len(images)} values (one per image), got {len(pts_s)}")
        self._images = list(images)
        self._pts = list(pts_s) if pts_s is not None else [i / fps for i in range(len(images))]
        self._disconnect_after = disconnect_after

    def _generate(self) -> Iterator[DecodedFrame]:
        for index, (rgb, pts) in enumerate(zip(self._images, self._pts, strict=True)):
            if self._disconnect_after is not None and index >= self._disconnect_after:
                raise SourceDisconnected(self.uri, f"simulated disconnect after {index} frames")
            yield DecodedFrame(self.stream_id, float(pts), self._clock(), rgb)


def open_source(
    uri: str | os.PathLike[str],
    stream_id: str,
    *,
    is_live: bool | None = None,
    image_fps: float = 1.0,
    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    options: Mapping[str, str] | None = None,
) -> FrameSource:
    """Open the right source for ``uri``: a URL or video file -> :class:`VideoSource`, a folder ->
    :class:`ImageFolderSource` (at ``image_fps``).

    Raises:
        SourceNotFound: the path does not exist.
        SourceUndecodable: the URL scheme is not supported, or the input cannot be decoded.
        SourceDisconnected: a live URL cannot be reached now.
    """
    target = os.fspath(uri)
    if "://" in target:
        scheme = urlsplit(target).scheme.lower()
        if scheme == "file":
            target = urlsplit(target).path
        elif scheme in URL_SCHEMES:
            return VideoSource(
                target,
                stream_id,
                is_live=is_live,
                open_timeout_s=open_timeout_s,
                read_timeout_s=read_timeout_s,
                options=options,
            )
        else:
            raise SourceUndecodable(
                redact_uri(target),
                f"unsupported URL scheme {scheme!r}: expected a path or one of {sorted(URL_SCHEMES)}",
            )
    path = Path(target)
    if path.is_dir():
        return ImageFolderSource(path, stream_id, fps=image_fps)
    if not path.exists():
        raise SourceNotFound(target, "cannot open: no such file or folder")
    return VideoSource(
        path,
        stream_id,
        is_live=(not path.is_file()) if is_live is None else is_live,
        open_timeout_s=open_timeout_s,
        read_timeout_s=read_timeout_s,
        options=options,
    )
