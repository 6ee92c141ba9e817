"""Tests for faceflow.ingest.sources against real files, folders and a real HTTP stream."""

from __future__ import annotations

import errno
import logging
import time
from pathlib import Path

import av.error
import numpy as np
import pytest
from PIL import Image

from faceflow.ingest.errors import (
    IngestConfigError,
    SourceDisconnected,
    SourceError,
    SourceNotFound,
    SourceUndecodable,
)
from faceflow.ingest.sources import (
    FrameSource,
    ImageFolderSource,
    InMemorySource,
    VideoSource,
    classify_av_error,
    open_source,
)
from faceflow.ingest.uris import redact_uri


def drain(source: FrameSource) -> list:
    with source:
        return list(source)


def fake_clock() -> object:
    ticks = iter(range(10**9, 10**12, 1000))
    return lambda: next(ticks)


@pytest.mark.parametrize("name", ["mp4", "mkv", "ts"])
def test_video_files_decode_every_frame(media, clip, name: str) -> None:
    source = VideoSource(getattr(media, name), "cam1", clock=fake_clock())
    assert isinstance(source, FrameSource)
    assert not source.is_live
    frames = drain(source)
    assert len(frames) == clip.frames
    assert all(f.rgb.shape == (clip.height, clip.width, 3) and f.stream_id == "cam1" for f in frames)
    pts = np.array([f.pts_s for f in frames])
    assert pts[0] == pytest.approx(0.0, abs=1e-6)
    assert np.diff(pts) == pytest.approx(1 / clip.fps, abs=1e-3)
    captured = [f.capture_time_ns for f in frames]
    assert captured == sorted(captured)
    # Content survives the round trip (lossy codecs: compare the mean error).
    for index in (0, 25, 49):
        error = np.abs(frames[index].rgb.astype(int) - clip.bars(index).astype(int)).mean()
        assert error < 12, (index, error)


@pytest.mark.parametrize(
    ("name", "expected_error", "message_part"),
    [
        ("missing", SourceNotFound, "No such file or directory"),
        ("zero", SourceUndecodable, "Invalid data found when processing input"),
        ("random", SourceUndecodable, "Invalid data found"),
        ("truncated_mp4", SourceUndecodable, "not a decodable video"),
        ("audio_only", SourceUndecodable, "no video stream"),
    ],
)
def test_bad_files_fail_at_open_with_the_reason(
    media, name: str, expected_error: type[SourceError], message_part: str
) -> None:
    path = getattr(media, name)
    with pytest.raises(expected_error) as info:
        VideoSource(path, "cam1")
    assert str(path) in str(info.value)
    assert message_part in str(info.value)
    assert info.value.uri == str(path)


@pytest.mark.parametrize(
    ("name", "declares_frames"), [("truncated_mkv", False), ("truncated_faststart", True)]
)
def test_truncated_streamable_file_yields_what_it_has(
    media, clip, caplog, name: str, declares_frames: bool
) -> None:
    with caplog.at_level(logging.INFO, logger="faceflow.ingest.sources"):
        frames = drain(VideoSource(getattr(media, name), "cam1"))
    assert 0 < len(frames) < clip.frames
    if declares_frames:
        assert f"ended after {len(frames)} of the {clip.frames} frames its header declares" in caplog.text


def test_close_stops_iteration_and_is_idempotent(media) -> None:
    source = VideoSource(media.mp4, "cam1")
    assert next(source).pts_s == 0.0
    source.close()
    source.close()
    assert source.closed
    assert list(source) == []


def test_invalid_settings(media) -> None:
    with pytest.raises(IngestConfigError, match="open_timeout_s"):
        VideoSource(media.mp4, "cam1", open_timeout_s=0)
    with pytest.raises(IngestConfigError, match="read_timeout_s"):
        VideoSource(media.mp4, "cam1", read_timeout_s=float("nan"))


def av_error(cls: type[av.error.FFmpegError], code: int, message: str) -> av.error.FFmpegError:
    return cls(code, message, "http://cam")


@pytest.mark.parametrize(
    ("error", "is_live", "opening", "expected"),
    [
        (av_error(av.error.FileNotFoundError, errno.ENOENT, "No such file"), False, True, SourceNotFound),
        (av_error(av.error.HTTPNotFoundError, -1, "Server returned 404"), True, True, SourceNotFound),
        (av_error(av.error.HTTPForbiddenError, -1, "Server returned 403"), True, True, SourceNotFound),
        (av_error(av.error.PermissionError, errno.EACCES, "Permission denied"), False, True, SourceNotFound),
        (av_error(av.error.DecoderNotFoundError, -1, "Decoder not found"), False, True, SourceUndecodable),
        (av_error(av.error.DecoderNotFoundError, -1, "Decoder not found"), True, True, SourceUndecodable),
        (av_error(av.error.ProtocolNotFoundError, -1, "Protocol not found"), True, True, SourceUndecodable),
        (av_error(av.error.InvalidDataError, -1, "Invalid data"), False, True, SourceUndecodable),
        (av_error(av.error.InvalidDataError, -1, "Invalid data"), True, True, SourceUndecodable),
        (av_error(av.error.InvalidDataError, -1, "Invalid data"), False, False, SourceUndecodable),
        (av_error(av.error.InvalidDataError, -1, "Invalid data"), True, False, SourceDisconnected),
        (
            av_error(av.error.ConnectionRefusedError, errno.ECONNREFUSED, "refused"),
            True,
            True,
            SourceDisconnected,
        ),
        (av_error(av.error.ConnectionResetError, errno.ECONNRESET, "reset"), True, False, SourceDisconnected),
        (av_error(av.error.ExitError, -1, "Immediate exit requested"), True, False, SourceDisconnected),
        (av_error(av.error.OSError, errno.EIO, "Input/output error"), True, False, SourceDisconnected),
        (av_error(av.error.HTTPServerError, -1, "Server returned 5XX"), True, True, SourceDisconnected),
        (av_error(av.error.OSError, errno.EIO, "Input/output error"), False, False, SourceUndecodable),
    ],
)
def test_classify_av_error(
    error: av.error.FFmpegError, is_live: bool, opening: bool, expected: type[SourceError]
) -> None:
    result = classify_av_error(error, "http://cam", is_live=is_live, opening=opening, frames=3)
    assert type(result) is expected
    assert error.strerror in str(result)
    assert ("cannot open" if opening else "failed after 3 frames") in str(result)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("rtsp://admin:secret@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
        ("http://user:p%40ss@cam.local/video?x=1", "http://user:***@cam.local/video?x=1"),
        ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
        ("rtsp://admin@10.0.0.5/s", "rtsp://admin@10.0.0.5/s"),
        ("/videos/a:b@c.mp4", "/videos/a:b@c.mp4"),
        ("rtsp://admin:secret@Cam.Local:99999/s", "rtsp://admin:***@Cam.Local:99999/s"),  # a bad port
        ("rtsp://admin:secret@[::1/s", "rtsp://***"),  # does not parse: only the scheme is kept
    ],
)
def test_redact_uri(uri: str, expected: str) -> None:
    assert redact_uri(uri) == expected


# --- live HTTP ---------------------------------------------------------------------------------


def test_live_http_stream_then_end_is_a_disconnect(stream_server, clip) -> None:
    source = VideoSource(stream_server.url("/live"), "cam1", open_timeout_s=5, read_timeout_s=2)
    assert source.is_live
    frames = []
    with source, pytest.raises(SourceDisconnected, match="live stream ended after 50 frames"):
        for frame in source:
            frames.append(frame)
    assert len(frames) == clip.frames


def test_http_url_can_be_declared_not_live(stream_server, clip) -> None:
    source = VideoSource(stream_server.url("/live"), "cam1", is_live=False, read_timeout_s=2)
    assert len(drain(source)) == clip.frames


def test_live_stream_dropping_mid_way_raises_disconnected(stream_server, clip) -> None:
    frames = []
    source = VideoSource(stream_server.url("/drop"), "cam1", open_timeout_s=5, read_timeout_s=2)
    with source, pytest.raises(SourceDisconnected) as info:
        for frame in source:
            frames.append(frame)
    assert 0 < len(frames) < clip.frames
    assert f"failed after {len(frames)} frames" in str(info.value)


def test_silent_live_stream_times_out(stream_server) -> None:
    source = VideoSource(stream_server.url("/hang"), "cam1", open_timeout_s=5, read_timeout_s=0.5)
    began = time.monotonic()
    with source, pytest.raises(SourceDisconnected):
        for _ in source:
            pass
    assert time.monotonic() - began < 5


@pytest.mark.parametrize(
    ("path", "expected_error", "message_part"),
    [
        ("/nope", SourceNotFound, "404"),
    ],
)
def test_http_errors_at_open(
    stream_server, path: str, expected_error: type[SourceError], message_part: str
) -> None:
    with pytest.raises(expected_error, match=message_part):
        VideoSource(stream_server.url(path), "cam1", open_timeout_s=5)


def test_unreachable_live_source_is_a_disconnect(closed_port: int) -> None:
    with pytest.raises(SourceDisconnected, match="Connection refused"):
        VideoSource(f"http://127.0.0.1:{closed_port}/x", "cam1", open_timeout_s=2)


def test_rtsp_gets_tcp_transport_and_a_redacted_uri(closed_port: int) -> None:
    with pytest.raises(SourceDisconnected) as info:
        VideoSource(f"rtsp://admin:hunter2@127.0.0.1:{closed_port}/s", "cam1", open_timeout_s=2)
    assert "hunter2" not in str(info.value)
    assert info.value.__cause__ is None  # PyAV's message would carry the password
    assert info.value.uri == f"rtsp://admin:***@127.0.0.1:{closed_port}/s"


# --- image folders -----------------------------------------------------------------------------


def test_image_folder_in_natural_order_skipping_non_images(media, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="faceflow.ingest.sources"):
        source = ImageFolderSource(media.folder, "photos", fps=2.0)
        frames = drain(source)
    assert [p.name for p in source.files] == ["img1.png", "img2.png", "img10.png", "notes.txt"]
    assert [f.pts_s for f in frames] == [0.0, 0.5, 1.0]
    assert [f.rgb.shape for f in frames] == [(400, 600, 3), (512, 512, 3), (512, 512, 3)]
    assert np.array_equal(frames[1].rgb[..., 0], frames[1].rgb[..., 2])  # grayscale -> RGB
    assert [p.name for p in source.skipped] == ["notes.txt"]
    assert "stream photos: skipping" in caplog.text
    assert "notes.txt" in caplog.text


def test_image_folder_ignores_links_that_lead_out_of_it(tmp_path: Path, caplog) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(outside / "secret.png")
    folder = tmp_path / "camera"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (32, 24), (10, 200, 10)).save(folder / "a.png")
    Image.new("RGB", (32, 24), (10, 10, 200)).save(folder / "sub" / "b.png")
    (folder / "link-out.png").symlink_to(outside / "secret.png")
    (folder / "link-in.png").symlink_to(folder / "sub" / "b.png")
    with caplog.at_level(logging.WARNING, logger="faceflow.ingest.sources"):
        source = ImageFolderSource(folder, "cam", fps=1.0)
        frames = drain(source)
    assert [p.name for p in source.files] == ["a.png", "link-in.png"]
    assert [tuple(f.rgb[0, 0]) for f in frames] == [(10, 200, 10), (10, 10, 200)]
    assert "link-out.png: it leads out of the folder" in caplog.text


@pytest.mark.parametrize(
    ("make", "fps", "expected_error", "message_part"),
    [
        ("missing", 1.0, SourceNotFound, "no such folder"),
        ("file", 1.0, SourceNotFound, "no such folder"),
        ("empty", 1.0, SourceUndecodable, "no files"),
        ("ok", 0.0, IngestConfigError, "fps"),
        ("ok", -2, IngestConfigError, "fps"),
    ],
)
def test_image_folder_errors(
    tmp_path: Path, make: str, fps: float, expected_error: type[Exception], message_part: str
) -> None:
    target = tmp_path / "target"
    if make == "file":
        target.write_bytes(b"x")
    elif make == "empty":
        target.mkdir()
    elif make == "ok":
        target.mkdir()
        Image.new("RGB", (4, 4)).save(target / "a.png")
    with pytest.raises(expected_error, match=message_part):
        ImageFolderSource(target, "photos", fps=fps)


# --- in-memory fake ----------------------------------------------------------------------------


def test_in_memory_source() -> None:
    images = [np.full((2, 3, 3), i, np.uint8) for i in range(4)]
    source = InMemorySource(images, "mem", fps=10)
    assert isinstance(source, FrameSource)
    assert (source.uri, source.is_live) == ("memory://mem", False)
    frames = drain(source)
    assert [f.pts_s for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert [int(f.rgb[0, 0, 0]) for f in frames] == [0, 1, 2, 3]


def test_in_memory_source_disconnects_on_request() -> None:
    images = [np.zeros((2, 2, 3), np.uint8)] * 5
    source = InMemorySource(images, "mem", pts_s=[5.0, 5.1, 5.2, 5.3, 5.4], is_live=True, disconnect_after=2)
    got = []
    with pytest.raises(SourceDisconnected, match="after 2 frames"):
        for frame in source:
            got.append(frame.pts_s)
    assert got == [5.0, 5.1]


@pytest.mark.parametrize(
    ("kwargs", "expected_error"),
    [
        ({"fps": 0}, IngestConfigError),
        ({"pts_s": [0.0]}, IngestConfigError),
        ({"stream_id": "no spaces"}, ValueError),
    ],
)
def test_in_memory_source_validation(kwargs: dict[str, object], expected_error: type[Exception]) -> None:
    with pytest.raises(expected_error):
        InMemorySource([np.zeros((2, 2, 3), np.uint8)] * 2, **kwargs)


# --- open_source -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected_type", "expected_live", "expected_error"),
    [
        ("mp4", VideoSource, False, None),
        ("file_url", VideoSource, False, None),
        ("folder", ImageFolderSource, False, None),
        ("http", VideoSource, True, None),
        ("missing", None, None, SourceNotFound),
        ("zero", None, None, SourceUndecodable),
        ("ftp://example.com/a.mp4", None, None, SourceUndecodable),
        ("gopher://x/y", None, None, SourceUndecodable),
    ],
)
def test_open_source_picks_by_scheme_and_path(
    request: pytest.FixtureRequest,
    media,
    target: str,
    expected_type: type | None,
    expected_live: bool | None,
    expected_error: type[Exception] | None,
) -> None:
    uri = {
        "mp4": str(media.mp4),
        "file_url": f"file://{media.mp4}",
        "folder": str(media.folder),
        "missing": str(media.missing),
        "zero": str(media.zero),
    }.get(target, target)
    if target == "http":
        uri = request.getfixturevalue("stream_server").url("/live")
    if expected_error is not None:
        with pytest.raises(expected_error):
            open_source(uri, "cam1")
        return
    source = open_source(uri, "cam1", image_fps=5.0, read_timeout_s=2)
    with source:
        assert type(source) is expected_type
        assert source.is_live is expected_live
        assert next(source).stream_id == "cam1"
