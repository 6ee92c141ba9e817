"""Builders and fixtures for the ingest tests: test videos made with PyAV, an image folder made
from scikit-image's sample photos, and a small HTTP server that plays a live stream and can drop
or stall it.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

FPS = 25
SECONDS = 2.0
WIDTH, HEIGHT = 320, 240
N_FRAMES = int(FPS * SECONDS)
BAR_COLOURS = np.array(
    [
        [255, 255, 255],
        [255, 255, 0],
        [0, 255, 255],
        [0, 255, 0],
        [255, 0, 255],
        [255, 0, 0],
        [0, 0, 255],
        [0, 0, 0],
    ],
    dtype=np.uint8,
)


def colour_bars(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Eight vertical colour bars, shifted right by 4 pixels per frame."""
    columns = (np.arange(width) - 4 * index) % width * len(BAR_COLOURS) // width
    return np.broadcast_to(BAR_COLOURS[columns], (height, width, 3)).copy()


def write_clip(
    path: Path,
    *,
    codec: str = "mpeg4",
    container_format: str | None = None,
    frames: int = N_FRAMES,
    options: dict[str, str] | None = None,
) -> Path:
    """Write ``frames`` frames of moving colour bars at 25 fps, 320x240, with PyAV."""
    with av.open(str(path), mode="w", format=container_format, options=options) as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(colour_bars(i), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def truncate(source: Path, target: Path, fraction: float = 0.5) -> Path:
    payload = source.read_bytes()
    target.write_bytes(payload[: int(len(payload) * fraction)])
    return target


@dataclass(frozen=True)
class Media:
    """Paths of the generated test inputs (built once per session)."""

    mp4: Path  # mpeg4 in MP4 (index at the end)
    mkv: Path  # H.264 in Matroska
    ts: Path  # mpeg4 in MPEG-TS (streamable)
    zero: Path
    random: Path
    truncated_mp4: Path  # cut in half: the index is missing
    truncated_mkv: Path  # cut in half: the first half still decodes
    truncated_faststart: Path  # MP4 with its index first, cut in half: decodes part, declares 50
    audio_only: Path
    folder: Path  # astronaut, camera, coffee as PNG + a text file + a hidden file
    missing: Path


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    root = tmp_path_factory.mktemp("media")
    mp4 = write_clip(root / "bars.mp4")
    mkv = write_clip(root / "bars.mkv", codec="libx264")
    ts = write_clip(root / "bars.ts", container_format="mpegts")
    zero = root / "zero.mp4"
    zero.write_bytes(b"")
    random = root / "random.mp4"
    random.write_bytes(np.random.default_rng(0).bytes(50_000))
    folder = root / "images"
    folder.mkdir()
    Image.fromarray(skdata.astronaut()).save(folder / "img10.png")
    Image.fromarray(skdata.camera()).save(folder / "img2.png")  # grayscale
    Image.fromarray(skdata.coffee()).save(folder / "img1.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\0\1")
    (folder / "subdir").mkdir()
    return Media(
        mp4=mp4,
        mkv=mkv,
        ts=ts,
        zero=zero,
        random=random,
        truncated_mp4=truncate(mp4, root / "truncated.mp4"),
        truncated_mkv=truncate(mkv, root / "truncated.mkv"),
        truncated_faststart=truncate(
            write_clip(root / "faststart.mp4", options={"movflags": "faststart"}), root / "truncated-fs.mp4"
        ),
        audio_only=write_audio_only(root / "audio.wav"),
        folder=folder,
        missing=root / "missing.mp4",
    )


@dataclass
class StreamServer:
    """An HTTP server that serves an MPEG-TS clip the way a flaky live camera would.

    Paths: ``/live`` the whole clip; ``/drop`` half of it, then the connection closes;
    ``/hang`` half of it, then silence; ``/flaky`` drops the first ``flaky_drops`` requests, then
    serves the whole clip; anything else 404.
    """

    payload: bytes
    flaky_drops: int = 2
    requests: list[str] = field(default_factory=list)
    port: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _handler(server: StreamServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            server.requests.append(self.path)
            if self.path not in ("/live", "/drop", "/hang", "/flaky"):
                self.send_error(404)
                return
            payload = server.payload
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            drop = self.path == "/drop" or (
                self.path == "/flaky" and server.requests.count("/flaky") <= server.flaky_drops
            )
            if drop or self.path == "/hang":
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                if self.path == "/hang":
                    server.stop.wait(10)
                self.close_connection = True
                return
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def stream_server(media: Media) -> Iterator[StreamServer]:
    state = StreamServer(payload=media.ts.read_bytes())
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="stream-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ClipSpec:
    """What :func:`write_clip` writes, for tests that check decoded content."""

    fps: int = FPS
    frames: int = N_FRAMES
    width: int = WIDTH
    height: int = HEIGHT

    @staticmethod
    def bars(index: int) -> np.ndarray:
        return colour_bars(index)


@pytest.fixture(scope="session")
def clip() -> ClipSpec:
    return ClipSpec()
